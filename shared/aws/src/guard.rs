//! The [`Guard`] port over the control table: pauses read at most once per check interval,
//! promotions read only when live is otherwise allowed, shadow runs counted; and the circuit
//! breaker's bookkeeping at the end of a live saga.

use std::sync::Mutex;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use spot_domain::config::Guardrails;
use spot_domain::governance::mode::Mode;
use spot_domain::guard::{self, Activity, Breaker, Failure, Guard, Pause, Pauses};
use spot_domain::saga::StepError;
use spot_domain::{AwsError, ErrorName};

use crate::dynamodb::ControlTable;

/// One function's guard: its name (what a per-function pause names), the control table, and its
/// copy of the pauses.
pub struct Guardian {
    table: ControlTable,
    function: String,
    check: TimeDelta,
    shadow_period: Option<TimeDelta>,
    pauses: Mutex<Option<(Instant, Pauses)>>,
}

impl Guardian {
    /// `shadow_period`: `SHADOW_DAYS` for a function that decides live or shadow, else `None`.
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        config: &Guardrails,
        function: &str,
        shadow_period: Option<TimeDelta>,
    ) -> Self {
        Self {
            table: ControlTable::new(client, &config.table),
            function: function.into(),
            check: config.pause_check,
            shadow_period,
            pauses: Mutex::new(None),
        }
    }

    /// As [`Guardian::new`], with the function's own credentials.
    pub fn of(
        ctx: &crate::AwsContext,
        config: &Guardrails,
        function: &str,
        shadow_period: Option<TimeDelta>,
    ) -> Self {
        Self::new(
            aws_sdk_dynamodb::Client::new(ctx.base()),
            config,
            function,
            shadow_period,
        )
    }

    pub fn table(&self) -> &ControlTable {
        &self.table
    }

    async fn pauses(&self) -> Result<Pauses, AwsError> {
        let fresh = |at: &Instant| {
            self.check > TimeDelta::zero()
                && TimeDelta::from_std(at.elapsed()).unwrap_or(TimeDelta::MAX) < self.check
        };
        if let Some((at, pauses)) = self.lock().as_ref()
            && fresh(at)
        {
            return Ok(pauses.clone());
        }
        let pauses = self.table.pauses().await?;
        *self.lock() = Some((Instant::now(), pauses.clone()));
        Ok(pauses)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, Pauses)>> {
        // The copy holds no invariant a panicking reader could break.
        self.pauses.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A saga step's check before it changes anything in `account`: `Paused`, with the pause's
    /// explanation, when one is in force.
    pub async fn check(&self, account: &str) -> Result<(), StepError> {
        match self.stopping(Some(account)).await? {
            Some(pause) => Err(paused(&pause)),
            None => Ok(()),
        }
    }

    /// A saga's first step, before it starts anything live: as [`Guardian::check`], with the
    /// pauses read now (one read), so a pause the circuit breaker has just put in force refuses
    /// the very next start.
    pub async fn check_now(&self, account: &str) -> Result<(), StepError> {
        let pauses = self.table.pauses().await?;
        *self.lock() = Some((Instant::now(), pauses.clone()));
        match pauses.stopping(Some(account), &self.function) {
            Some(pause) => Err(paused(pause)),
            None => Ok(()),
        }
    }

    /// A live saga of `account` ended as `failure`: counted once per saga. When this failure
    /// opens the breaker, the account's pause it put in force (for the caller to announce).
    pub async fn failed(
        &self,
        account: &str,
        failure: Failure,
        breaker: Breaker,
    ) -> Result<Option<Pause>, AwsError> {
        let failures = self.table.count_failure(account, &failure).await?;
        if !breaker.opens(failures.len()) {
            return Ok(None);
        }
        let pause = breaker.pause(account, failures, failure.at);
        // Only the saga whose failure wrote the pause announces it.
        Ok(self.table.pause(&pause).await?.then_some(pause))
    }

    /// A live saga of `account` completed: the breaker's count starts again.
    pub async fn succeeded(&self, account: &str) -> Result<(), AwsError> {
        self.table.clear_failures(account).await
    }
}

/// The step error of a pause.
pub fn paused(pause: &Pause) -> StepError {
    StepError::new(ErrorName::Paused, pause.explain())
}

impl Guard for Guardian {
    async fn stopping(&self, account: Option<&str>) -> Result<Option<Pause>, AwsError> {
        Ok(self
            .pauses()
            .await?
            .stopping(account, &self.function)
            .cloned())
    }

    async fn mode(
        &self,
        account: &str,
        activity: Activity,
        allowed: Mode,
        at: DateTime<Utc>,
    ) -> Result<Mode, AwsError> {
        let promoted = allowed == Mode::Live
            && self.shadow_period.is_some()
            && self.table.promotion(account, activity).await?.is_some();
        let mode = guard::promoted(allowed, self.shadow_period, promoted);
        if mode == Mode::Audit {
            self.table.shadow_run(account, activity, at).await?;
        }
        Ok(mode)
    }
}

/// How a live saga ended, as its last step tells the circuit breaker.
pub struct SagaEnd<'a> {
    pub kind: spot_domain::notice::Kind,
    pub saga_id: &'a str,
    pub account: &'a str,
    pub region: &'a str,
}

impl SagaEnd<'_> {
    /// A live saga that failed (`error`): counted; when its failure opens the breaker, the
    /// account is paused, its owners are told and the alarmed metric is written.
    pub async fn failed(
        &self,
        guard: &Guardian,
        breaker: Breaker,
        notices: &impl spot_domain::notice::Noticeboard,
        error: &str,
        at: DateTime<Utc>,
    ) -> Result<(), AwsError> {
        let failure = Failure {
            saga_id: self.saga_id.into(),
            error: error.into(),
            at,
        };
        let Some(pause) = guard.failed(self.account, failure, breaker).await? else {
            return Ok(());
        };
        tracing::warn!(account = self.account, pause = %pause.explain(), "circuit breaker opened");
        println!(
            "{}",
            spot_domain::metrics::count(
                spot_domain::metrics::name::CIRCUIT_BREAKER_OPENED,
                1,
                &[],
                &[
                    ("account", serde_json::json!(self.account)),
                    ("saga_id", serde_json::json!(self.saga_id)),
                ],
                at,
            )
        );
        crate::sns::announce(
            notices,
            &[spot_domain::notice::Notice::breaker(
                self.kind,
                &pause,
                self.saga_id,
                self.region,
            )],
        )
        .await;
        Ok(())
    }
}
