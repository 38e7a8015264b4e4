//! The savings refresh, every hour, per account and region: read the ledger once (switches,
//! swapped members, failovers, shadow decisions and their accruals), observe each open line's
//! instance, its pool's Spot price history since the last refresh and what its move keeps, let
//! the rules accrue the interval (`spot_domain::savings`), and write each line back conditionally
//! (a refresh delivered twice, or two at once, never counts an hour twice).
//!
//! Read only in every member account, whatever the mode: it changes nothing in AWS, and writes
//! only its own accrual items in the ledger table. Per run and target: one `DescribeInstances`,
//! one `DescribeVolumes`, one `DescribeSnapshots` and one `DescribeSpotPriceHistory` (paginated,
//! 200 ids a call), however many lines.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use serde_json::{Value, json};
use spot_aws::ec2::Running;
use spot_aws::{AccountsTable, AwsContext, Ec2, LedgerTable, PriceList, SavingsInputs};
use spot_domain::config::{self, Accounts, ConfigError, Env, key};
use spot_domain::governance::mode::{LiveSwitch, Mode};
use spot_domain::governance::pricing::{HOURS_PER_MONTH, PriceTable};
use spot_domain::governance::report::{RunReport, TargetReport};
use spot_domain::governance::run::{self, RunError};
use spot_domain::governance::scope::{Defaults, Target};
use spot_domain::savings::{self, Accrual, Line, Observation, Seen};
use spot_domain::{AwsError, Clock, metrics};
use tracing::{info, warn};

pub const FUNCTION: &str = "savings-refresh";

/// Accrual writes in flight at once per account and region.
const WRITE_CONCURRENCY: usize = 16;

/// EC2 keeps 90 days of Spot price history: an older interval is priced from its start.
const HISTORY: TimeDelta = TimeDelta::days(90);

#[derive(Debug, Clone)]
pub struct Config {
    pub accounts: Accounts,
    pub regions: Vec<String>,
    pub concurrency: usize,
    pub ledger_table: String,
    /// How long a switch keeps its leftovers (a shadow line's counterfactual kept cost lasts this
    /// long; a real switch's lasts as long as the resources do).
    pub source_retention: TimeDelta,
    /// Volume and snapshot prices, as the waste scanner prices them.
    pub prices: PriceTable,
}

impl Config {
    /// Default of `SOURCE_RETENTION_DAYS`.
    pub const DEFAULT_RETENTION: TimeDelta = TimeDelta::days(30);

    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            accounts: Accounts::from_env(env)?,
            regions: config::regions(env)?,
            concurrency: config::concurrency(env)?,
            ledger_table: env.required(key::LEDGER_TABLE)?,
            source_retention: env.duration(
                key::SOURCE_RETENTION_DAYS,
                Self::DEFAULT_RETENTION,
                TimeDelta::days(1),
                0,
            )?,
            prices: PriceTable::from_env(env)?,
        })
    }
}

pub struct Refresher<C> {
    pub registry: AccountsTable,
    pub ctx: Arc<AwsContext>,
    pub ledger: LedgerTable,
    /// On-demand baselines of failover replacements (the switch records carry theirs).
    pub on_demand: PriceList,
    pub clock: C,
    pub home_account: String,
    pub config: Config,
}

impl<C: Clock> Refresher<C> {
    /// The refresh with its tables, reached with `ctx`'s own credentials.
    pub fn new(
        ctx: Arc<AwsContext>,
        on_demand: PriceList,
        clock: C,
        home_account: String,
        config: Config,
    ) -> Self {
        let dynamodb = aws_sdk_dynamodb::Client::new(ctx.base());
        Self {
            registry: AccountsTable::new(dynamodb.clone(), &config.accounts.table),
            ledger: LedgerTable::new(dynamodb, &config.ledger_table),
            ctx,
            on_demand,
            clock,
            home_account,
            config,
        }
    }

    pub async fn run(&self, input: Value, request_id: &str) -> Result<RunReport, RunError> {
        // It changes nothing in AWS: every target is read the same way, whatever the mode.
        let switch = LiveSwitch {
            mode: Mode::Audit,
            live_accounts: BTreeSet::new(),
        };
        let defaults = Defaults {
            home: &self.home_account,
            regions: &self.config.regions,
            switch: &switch,
        };
        let now = self.clock.now();
        // One scan of the ledger for the whole run.
        let inputs = &self
            .ledger
            .savings_inputs()
            .await
            .map_err(|source| RunError::Store {
                what: "the ledger",
                source,
            })?;
        let report = run::scheduled(
            FUNCTION,
            input,
            request_id,
            &self.registry,
            &defaults,
            self.config.concurrency,
            |target| async move {
                let mut report = TargetReport::new(&target);
                match self.refresh(&target, inputs, now, &mut report).await {
                    Ok(rates) => rates.emit(&target, now),
                    Err(e) => {
                        warn!(account = %target.account, region = %target.region, error_type = %e.error_name(), error = %e, "target failed");
                        report.error = Some(e.to_string());
                    }
                }
                report
            },
        )
        .await?;
        info!(
            targets = report.targets.len(),
            errors = report.errors.len(),
            "run finished"
        );
        Ok(report)
    }

    async fn refresh(
        &self,
        target: &Target,
        inputs: &SavingsInputs,
        now: DateTime<Utc>,
        report: &mut TargetReport,
    ) -> Result<Rates, AwsError> {
        let ours =
            |account: &str, region: &str| account == target.account && region == target.region;
        let existing: Vec<Accrual> = inputs
            .accruals
            .iter()
            .filter(|a| ours(&a.account_id, &a.region))
            .cloned()
            .collect();
        let records: Vec<_> = inputs
            .records
            .iter()
            .filter(|r| ours(&r.account_id, &r.region))
            .cloned()
            .collect();
        // A failover's baseline is priced once, when its line opens.
        let known: BTreeSet<&str> = existing.iter().map(|a| a.record.as_str()).collect();
        let mut failovers = Vec::new();
        for f in inputs
            .failovers
            .iter()
            .filter(|f| ours(&f.account_id, &f.region) && !known.contains(f.switch_id.as_str()))
        {
            let on_demand = match &f.instance_type {
                Some(t) => self.on_demand.on_demand(&target.region, t).await?,
                None => None,
            };
            failovers.push((f.clone(), on_demand.unwrap_or_default()));
        }
        let mut lines = savings::open_lines(
            &existing,
            &records,
            &failovers,
            self.config.source_retention,
        );
        report.scanned.insert("line".into(), lines.len() as u64);
        if lines.is_empty() {
            return Ok(Rates::default());
        }
        let sdk = self.ctx.config_for_target(target).await;
        let ec2 = Ec2::new(aws_sdk_ec2::Client::new(&sdk));
        let observed = self.observe(&ec2, &lines, now).await?;
        let prices = self.config.prices.region(&target.region);
        let mut rates = Rates::default();
        let mut changed = Vec::new();
        for line in &mut lines {
            let seen = observed.of(line, prices);
            let before = line.clone();
            line.refresh(now, &seen);
            report.count("line", line.line.as_str());
            // Refreshed already at this instant (a redelivered run): nothing to write.
            if *line == before && line.revision > 0 {
                rates.add(line);
                continue;
            }
            if seen.seen == Seen::Gone {
                report.action("end", &line.instance_id, "its instance is gone");
            }
            changed.push(line.clone());
        }
        // Each line is its own conditional write; a few at a time.
        let written: Vec<(Accrual, Result<bool, AwsError>)> = futures::stream::iter(changed)
            .map(|line| async move {
                let done = self.ledger.put_accrual(&line).await;
                (line, done)
            })
            .buffer_unordered(WRITE_CONCURRENCY)
            .collect()
            .await;
        for (line, done) in written {
            if done? {
                rates.add(&line);
            } else {
                report.action(
                    "accrue",
                    &line.instance_id,
                    "skipped: another refresh wrote this line first",
                );
            }
        }
        Ok(rates)
    }

    /// What EC2 says of the lines: their instances, the kept volumes and snapshots, and the Spot
    /// price history of their pools since the oldest of their last refreshes.
    async fn observe(
        &self,
        ec2: &Ec2,
        lines: &[Accrual],
        now: DateTime<Utc>,
    ) -> Result<Observed, AwsError> {
        let ids: Vec<String> = distinct(lines.iter().map(|l| l.instance_id.clone()));
        // The sources a switch stopped and keeps, and the ones a shadow decision would have.
        let sources: Vec<String> = distinct(
            lines
                .iter()
                .filter(|l| matches!(l.line, Line::Switch | Line::Shadow))
                .map(|l| l.workload.clone()),
        );
        let switches: Vec<String> = distinct(
            lines
                .iter()
                .filter(|l| l.line == Line::Switch)
                .map(|l| l.record.clone()),
        );
        let (instances, volumes, snapshots) = futures::try_join!(
            ec2.seen(&ids),
            async {
                if sources.is_empty() {
                    return Ok(Vec::new());
                }
                ec2.volumes_of(&sources).await
            },
            async {
                if switches.is_empty() {
                    return Ok(Vec::new());
                }
                ec2.switch_snapshots(&switches).await
            },
        )?;
        let instances: BTreeMap<String, Running> = instances
            .into_iter()
            .map(|i| (i.instance_id.clone(), i))
            .collect();
        let on_spot: Vec<&Accrual> = lines.iter().filter(|l| l.on_spot()).collect();
        let types: Vec<String> = distinct(
            on_spot
                .iter()
                .filter_map(|l| instances.get(&l.instance_id))
                .map(|i| i.instance_type.clone()),
        );
        let since = on_spot
            .iter()
            .map(|l| l.accrued_until)
            .min()
            .unwrap_or(now)
            .max(now - HISTORY);
        let history = if types.is_empty() {
            Vec::new()
        } else {
            ec2.spot_prices_since(&types, since).await?
        };
        let mut prices: PriceHistory = BTreeMap::new();
        for p in history {
            prices
                .entry((p.instance_type, p.az_name))
                .or_default()
                .push((p.at, p.usd_per_hour));
        }
        for history in prices.values_mut() {
            history.sort_by_key(|(at, _)| *at);
        }
        Ok(Observed {
            instances,
            volumes,
            snapshots,
            prices,
        })
    }
}

/// (instance type, AZ name) → its price changes, ascending.
type PriceHistory = BTreeMap<(String, String), Vec<(DateTime<Utc>, f64)>>;

/// What one refresh saw in one account and region.
struct Observed {
    instances: BTreeMap<String, Running>,
    /// (instance, volume) attached.
    volumes: Vec<(String, spot_domain::governance::waste::Volume)>,
    /// (switch id, snapshot).
    snapshots: Vec<(String, spot_domain::governance::waste::Snapshot)>,
    prices: PriceHistory,
}

impl Observed {
    /// The observation of one line: its instance, its pool's history, what it keeps.
    fn of(&self, line: &Accrual, prices: &spot_domain::governance::pricing::Prices) -> Observation {
        let instance = self.instances.get(&line.instance_id);
        let pool = instance.map(|i| (i.instance_type.clone(), i.az_name.clone()));
        let mut kept = Vec::new();
        let mut monthly = 0.0;
        if matches!(line.line, Line::Switch | Line::Shadow) {
            for (_, v) in self.volumes.iter().filter(|(i, _)| *i == line.workload) {
                kept.push(v.volume_id.clone());
                monthly += prices.volume_month(&v.volume_type, v.size_gb, v.iops, v.throughput);
                // A shadow line's counterfactual: a real switch would also keep its image.
                if line.line == Line::Shadow {
                    monthly += prices.snapshot_month(v.size_gb);
                }
            }
        }
        if line.line == Line::Switch {
            for (_, s) in self.snapshots.iter().filter(|(id, _)| *id == line.record) {
                kept.push(s.snapshot_id.clone());
                monthly += prices.snapshot_month(s.volume_size_gb);
            }
        }
        Observation {
            seen: instance.map_or(Seen::Gone, |i| i.seen),
            prices: pool
                .as_ref()
                .and_then(|p| self.prices.get(p))
                .cloned()
                .unwrap_or_default(),
            pool,
            kept_per_hour: monthly / HOURS_PER_MONTH,
            kept,
        }
    }
}

fn distinct(values: impl Iterator<Item = String>) -> Vec<String> {
    values.collect::<BTreeSet<_>>().into_iter().collect()
}

/// What one account and region saves per hour now, net, after this refresh.
#[derive(Debug, Default)]
struct Rates {
    realised: f64,
    shadow: f64,
}

impl Rates {
    fn add(&mut self, line: &Accrual) {
        if line.line.realised() {
            self.realised += line.net_per_hour();
        } else {
            self.shadow += line.net_per_hour();
        }
    }

    /// `NetSavingPerHourUsd` and `ShadowSavingPerHourUsd` for one target, no dimension: summed
    /// over the refresh's period, CloudWatch adds the targets up.
    fn emit(&self, target: &Target, now: DateTime<Utc>) {
        for (metric, usd) in [
            (metrics::name::NET_SAVING_PER_HOUR_USD, self.realised),
            (metrics::name::SHADOW_SAVING_PER_HOUR_USD, self.shadow),
        ] {
            println!(
                "{}",
                metrics::measure(
                    metric,
                    json!((usd * 10_000.0).round() / 10_000.0),
                    "None",
                    &[],
                    &[
                        ("account", json!(target.account)),
                        ("region", json!(target.region)),
                    ],
                    now,
                )
            );
        }
    }
}
