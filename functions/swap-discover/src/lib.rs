//! Step 1 of the ASG swap: read the group, refuse what must not be swapped (with every reason),
//! list the on-demand members to replace in order, and, in live mode, take the group's lock so a
//! second swap of the same group cannot start.

use spot_domain::asg::{self, Discovered, OptIn, SwapInput};
use spot_domain::ports::{AccountRegistry, GroupFleet, GroupFleets, SwitchFleets, SwitchLedger};
use spot_domain::saga::{Reach, Settings, StepError, errors};
use spot_domain::settings::{ConfigError, Env};
use spot_domain::switch::SwitchMode;
use spot_domain::{Clock, scope};
use tracing::info;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub opt_in: OptIn,
    /// Replace this share of the group's desired capacity at a time (default: one instance).
    pub batch_percent: Option<u32>,
    pub settings: Settings,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        let batch_percent: u32 = env.parsed("BATCH_PERCENT", 0)?;
        if batch_percent > 100 {
            return Err(ConfigError(format!(
                "BATCH_PERCENT={batch_percent} is not a percentage"
            )));
        }
        Ok(Self {
            opt_in: OptIn {
                allowlist: env.list("ASG_ALLOWLIST", |n| !n.is_empty() && n.len() <= 255)?,
                allow_protected: env.parsed("ALLOW_PROTECTED", false)?,
            },
            batch_percent: (batch_percent > 0).then_some(batch_percent),
            settings: Settings::from_env(env)?,
        })
    }
}

pub struct Discoverer<R, F, L, C> {
    pub reach: Reach<R, F>,
    /// Holds the per-group locks.
    pub ledger: L,
    pub clock: C,
    pub config: Config,
}

impl<R, F, L, C> Discoverer<R, F, L, C>
where
    R: AccountRegistry,
    F: SwitchFleets + GroupFleets,
    L: SwitchLedger,
    C: Clock,
{
    pub async fn handle(&self, input: SwapInput) -> Result<Discovered, StepError> {
        let request = &input.state.request;
        if request.asg_name.is_empty()
            || request.asg_name.len() > 255
            || !scope::is_region(&request.region)
        {
            return Err(StepError::new(
                "InvalidRequest",
                format!(
                    "group `{}` in `{}` is malformed",
                    request.asg_name, request.region
                ),
            ));
        }
        let reach = self.reach.group(request).await?;
        let group = reach
            .groups
            .inspect(&request.asg_name)
            .await?
            .ok_or_else(|| {
                StepError::new(
                    errors::NOT_ELIGIBLE,
                    format!(
                        "no Auto Scaling group {} in {}",
                        request.asg_name, request.region
                    ),
                )
            })?;
        let refusals = asg::refusals(&group, &self.config.opt_in);
        if !refusals.is_empty() {
            return Err(StepError::new(
                errors::NOT_ELIGIBLE,
                format!("group {}: {}", group.name, refusals.join("; ")),
            ));
        }
        let (candidates, excluded) = asg::candidates(&group, &self.config.opt_in);
        if candidates.is_empty() {
            let why: Vec<String> = excluded
                .iter()
                .map(|e| format!("{}: {}", e.what, e.reason))
                .collect();
            return Err(StepError::new(
                errors::NOT_ELIGIBLE,
                format!(
                    "group {}: no on-demand member to replace ({})",
                    group.name,
                    why.join("; ")
                ),
            ));
        }
        let batch_size =
            asg::batch_size(group.desired, candidates.len(), self.config.batch_percent);
        let settings = input
            .state
            .settings
            .clone()
            .unwrap_or_default()
            .resolve(self.config.settings);
        if request.mode == SwitchMode::Live {
            let now = self.clock.now();
            let batches = i32::try_from(candidates.len().div_ceil(batch_size)).unwrap_or(i32::MAX);
            let until = now + settings.longest_run() * batches.max(1);
            if let Some(holder) = self
                .ledger
                .lock(&asg::lock_key(request), &input.execution, until, now)
                .await?
            {
                return Err(StepError::new(
                    errors::NOT_ELIGIBLE,
                    format!("group {}: swap {holder} is in progress", group.name),
                ));
            }
        }
        info!(
            swap_id = %input.execution,
            group = %group.name,
            candidates = candidates.len(),
            batch_size,
            in_service = group.in_service(),
            "discovered"
        );
        Ok(Discovered {
            start_in_service: group.in_service(),
            environment: reach.view.environment,
            group,
            candidates,
            excluded,
            batch_size,
            settings,
        })
    }
}
