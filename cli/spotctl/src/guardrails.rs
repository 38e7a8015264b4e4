//! `spotctl pause`, `resume`, `pauses`, `accounts resume`, `accounts promote` and `shadow report`:
//! the operator's side of the guardrails. Every pause, resume and promotion is written to the
//! audit trail (function `spotctl`) with who and why.

use anyhow::{Result, bail};
use chrono::{DateTime, TimeDelta, Utc};
use comfy_table::Table;
use spot_aws::{AuditTable, ControlTable, EnforcementTable, LedgerTable, WasteTable};
use spot_domain::audit::{AuditEntry, AuditLog};
use spot_domain::governance::enforcement::AuthStatus;
use spot_domain::governance::mode::Mode;
use spot_domain::guard::{
    self, Activity, Cause, NotYet, Pause, Pauses, Promotion, Scope, ShadowRecord,
};
use spot_domain::saga::SagaMode;

use crate::listings::{enforcement_table, ledger_table, waste_table};
use crate::{or_dash, table};

/// What a pause names, from `--all`, `--account` or `--function` (exactly one).
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// Every function, in every account.
    #[arg(long)]
    pub all: bool,
    /// Every function, in this account.
    #[arg(long)]
    pub account: Option<String>,
    /// One function (e.g. waste-scanner, switch-launch), in every account.
    #[arg(long)]
    pub function: Option<String>,
}

impl Target {
    pub fn scope(&self) -> Result<Scope> {
        match (self.all, &self.account, &self.function) {
            (true, None, None) => Ok(Scope::All),
            (false, Some(account), None) => account_scope(account),
            (false, None, Some(function)) => {
                if !guard::FUNCTIONS.contains(&function.as_str()) {
                    bail!(
                        "`{function}` is no function that reads the pauses; one of: {}",
                        guard::FUNCTIONS.join(", ")
                    );
                }
                Ok(Scope::Function(function.clone()))
            }
            _ => bail!("give exactly one of --all, --account, --function"),
        }
    }
}

pub fn account_scope(account: &str) -> Result<Scope> {
    if !spot_domain::ids::Field::AccountId.accepts(account) {
        bail!("`{account}` is not a 12-digit account id");
    }
    Ok(Scope::Account(account.to_owned()))
}

/// Who acts, and why: both recorded, neither may be empty.
pub struct Operator<'a> {
    pub by: &'a str,
    pub reason: &'a str,
}

impl Operator<'_> {
    fn check(&self) -> Result<()> {
        if self.by.trim().is_empty() || self.reason.trim().is_empty() {
            bail!("--by and --reason must say who and why (both are recorded)");
        }
        Ok(())
    }
}

/// The trail's entry of an operator's guardrail action (one per action and instant).
fn entry(
    action: &str,
    scope: &Scope,
    who: &Operator<'_>,
    pre_state: String,
    at: DateTime<Utc>,
) -> AuditEntry {
    let account = match scope {
        Scope::Account(id) => id.clone(),
        _ => "*".into(),
    };
    AuditEntry {
        action_id: format!("spotctl#{action}#{}#{}", scope.key(), at.timestamp_micros()),
        function: "spotctl".into(),
        action: action.into(),
        account,
        region: "*".into(),
        resource_id: scope.key(),
        reason: format!("{}: {}", who.by, who.reason),
        pre_state,
        mode: Mode::Live,
        request_id: format!("spotctl-{}", at.timestamp_micros()),
        at,
    }
}

async fn audited(audit: &AuditTable, entry: &AuditEntry, outcome: &str) -> Result<()> {
    audit.begin(entry).await?;
    audit.finish(&entry.action_id, outcome).await?;
    Ok(())
}

/// Puts a pause in force (audited). A pause already in force for the scope stays as it is.
pub async fn pause(
    control: &ControlTable,
    audit: &AuditTable,
    scope: Scope,
    who: &Operator<'_>,
    now: DateTime<Utc>,
) -> Result<String> {
    who.check()?;
    let pause = Pause {
        scope: scope.clone(),
        cause: Cause::Operator,
        by: who.by.into(),
        reason: who.reason.into(),
        at: now,
        failures: Vec::new(),
    };
    if !control.pause(&pause).await? {
        let current = control.pauses().await?;
        let held = current.0.iter().find(|p| p.scope == scope);
        return Ok(format!(
            "already paused: {}",
            held.map_or_else(|| scope.to_string(), Pause::explain)
        ));
    }
    audited(
        audit,
        &entry("pause", &scope, who, String::new(), now),
        "done",
    )
    .await?;
    Ok(format!(
        "paused {scope}: nothing it covers changes anything in AWS from now (within \
         PauseCheckSeconds); sagas in flight go to their rollback"
    ))
}

/// Lifts the pause of `scope` (audited); an account's resume also starts its circuit breaker's
/// count again. `None` when nothing was paused there.
pub async fn resume(
    control: &ControlTable,
    audit: &AuditTable,
    scope: Scope,
    who: &Operator<'_>,
    now: DateTime<Utc>,
) -> Result<Option<String>> {
    who.check()?;
    let Some(lifted) = control.resume(&scope).await? else {
        return Ok(None);
    };
    if let Scope::Account(account) = &scope {
        control.clear_failures(account).await?;
    }
    audited(
        audit,
        &entry("resume", &scope, who, lifted.explain(), now),
        "done",
    )
    .await?;
    Ok(Some(format!("resumed {scope} (was: {})", lifted.explain())))
}

pub fn pauses_table(pauses: &Pauses) -> Table {
    let mut t = table(&["scope", "cause", "by", "since (UTC)", "reason", "failures"]);
    for p in &pauses.0 {
        t.add_row(vec![
            p.scope.to_string(),
            match p.cause {
                Cause::Operator => "operator".into(),
                Cause::Breaker => "circuit breaker".into(),
            },
            p.by.clone(),
            p.at.format("%Y-%m-%d %H:%M").to_string(),
            p.reason.clone(),
            or_dash((!p.failures.is_empty()).then(|| {
                p.failures
                    .iter()
                    .map(|f| format!("{} ({})", f.saga_id, f.error))
                    .collect::<Vec<_>>()
                    .join(", ")
            })),
        ]);
    }
    t
}

/// Records an operator's promotion of `account` for `activity`, if its shadow period is over and
/// its shadow report was read since; else why not (and nothing is recorded).
pub async fn promote(
    control: &ControlTable,
    audit: &AuditTable,
    account: &str,
    activity: Activity,
    who: &Operator<'_>,
    period: TimeDelta,
    now: DateTime<Utc>,
) -> Result<Result<Promotion, NotYet>> {
    who.check()?;
    let scope = account_scope(account)?;
    let shadows = control.shadows(account).await?;
    let shadow = shadows.iter().find(|s| s.activity == activity);
    if let Err(why) = guard::may_promote(account, activity, shadow, period, now) {
        return Ok(Err(why));
    }
    let promotion = Promotion {
        account_id: account.into(),
        activity,
        by: who.by.into(),
        at: now,
        shadow_since: shadow.map_or(now, |s| s.since),
    };
    control.promote(&promotion).await?;
    audited(
        audit,
        &entry(
            &format!("promote_{activity}"),
            &scope,
            who,
            serde_json::to_string(&shadow)?,
            now,
        ),
        "done",
    )
    .await?;
    Ok(Ok(promotion))
}

/// Where the report reads what the shadow runs decided.
pub struct Sources {
    pub control: ControlTable,
    pub ledger: LedgerTable,
    pub waste: Option<WasteTable>,
    pub enforcement: Option<EnforcementTable>,
}

/// `spotctl shadow report ACCOUNT`: per activity, the shadow period and promotion; then what the
/// shadow runs would have done and saved. Printing it is the look a promotion needs: the report
/// is recorded as read at `now`.
pub async fn shadow_report(
    sources: &Sources,
    account: &str,
    period: TimeDelta,
    now: DateTime<Utc>,
) -> Result<String> {
    account_scope(account)?;
    let (shadows, promotions) = tokio::try_join!(
        sources.control.shadows(account),
        sources.control.promotions(account)
    )?;
    let mut out = format!(
        "Shadow report for account {account} at {} (shadow period {} days)\n\n",
        now.format("%Y-%m-%d %H:%M UTC"),
        period.num_days()
    );
    out.push_str(&activities_table(&shadows, &promotions, period, now).to_string());
    out.push('\n');

    let mut moves = sources.ledger.switches().await?;
    moves.retain(|r| r.account_id == account && r.mode == SagaMode::Shadow);
    moves.sort_by_key(|r| std::cmp::Reverse(r.at));
    let per_hour: f64 = moves.iter().filter_map(|r| r.saving_per_hour).sum();
    out.push_str(&format!(
        "\nSwitches and swaps it would have made: {} (saving ${per_hour:.4}/h, about ${:.2} a month)\n",
        moves.len(),
        per_hour * 730.0
    ));
    if !moves.is_empty() {
        out.push_str(&ledger_table(&moves).to_string());
        out.push('\n');
    }
    if let Some(waste) = &sources.waste {
        let mut open = waste.all().await?;
        open.retain(|r| r.account == account && r.status.is_open());
        open.sort_by(|a, b| b.monthly_cost_usd.total_cmp(&a.monthly_cost_usd));
        let monthly: f64 = open.iter().map(|r| r.monthly_cost_usd).sum();
        out.push_str(&format!(
            "\nWaste it would delete once its grace ends: {} resources (${monthly:.2} a month)\n",
            open.len()
        ));
        if !open.is_empty() {
            out.push_str(&waste_table(&open).to_string());
            out.push('\n');
        }
    }
    if let Some(enforcement) = &sources.enforcement {
        let mut flagged = enforcement.all().await?;
        flagged.retain(|r| r.account == account && r.auth_status == AuthStatus::Flagged);
        out.push_str(&format!(
            "\nInstances the enforcer would act on once their grace ends: {}\n",
            flagged.len()
        ));
        if !flagged.is_empty() {
            out.push_str(&enforcement_table(&flagged).to_string());
            out.push('\n');
        }
    }
    sources.control.reviewed(account, now).await?;
    Ok(out)
}

fn activities_table(
    shadows: &[ShadowRecord],
    promotions: &[Promotion],
    period: TimeDelta,
    now: DateTime<Utc>,
) -> Table {
    let at = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M").to_string();
    let mut t = table(&[
        "activity",
        "shadow since",
        "runs",
        "last run",
        "promotable from",
        "promoted",
    ]);
    for activity in Activity::ALL {
        let shadow = shadows.iter().find(|s| s.activity == activity);
        let promoted = promotions.iter().find(|p| p.activity == activity);
        t.add_row(vec![
            activity.to_string(),
            or_dash(shadow.map(|s| at(s.since))),
            or_dash(shadow.map(|s| s.runs)),
            or_dash(shadow.map(|s| at(s.last))),
            or_dash(shadow.map(|s| {
                let ready = s.since + period;
                if ready <= now {
                    format!("{} (now)", at(ready))
                } else {
                    at(ready)
                }
            })),
            or_dash(promoted.map(|p| format!("{} by {}", at(p.at), p.by))),
        ]);
    }
    t
}
