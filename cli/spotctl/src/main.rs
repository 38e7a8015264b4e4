//! `spotctl`: the operator's view of the shared quarantine, the accounts registry, the approvals,
//! the failovers, the hibernation schedules, and what the functions recorded (waste, enforcement,
//! the ledger, the audit trail).

use anyhow::{Context, Result, bail};
use chrono::Utc;
use clap::{Parser, Subcommand};
use spot_aws::{
    AccountsTable, ApprovalsTable, AuditTable, AwsContext, Ec2, EnforcementTable, HibernationTable,
    LedgerTable, QuarantineTable, SchedulesTable, TaskAnswers, WasteTable,
};
use spot_domain::hibernation::state::{OverrideItem, check_override};
use spot_domain::hibernation::{Override, Power, Schedule, Week};
use spot_domain::pool::gatekeeper::{self, Gate, Release};
use spot_domain::pool::quarantine::QuarantineStore;
use spot_domain::saga::approval::ApprovalStatus;
use spot_domain::saga::failover::{EXECUTION_PREFIX, FailoverRecord, RoleRecord};
use spot_domain::{Account, Environment, PoolKey};
use spot_domain::{AccountRegistry, ErrorName};

#[derive(Parser)]
#[command(
    version,
    about = "Operate the Spot optimizer: quarantined pools, registered accounts, switch approvals, failovers, hibernation schedules"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Quarantined Spot pools (table from QUARANTINE_TABLE or --table).
    #[command(subcommand)]
    Quarantine(QuarantineCommand),
    /// The accounts registry (table from ACCOUNTS_TABLE or --table).
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Switches and swaps waiting for an operator (table from APPROVALS_TABLE or --table).
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// Emergency failovers, the workloads' roles and the volumes they kept (table from
    /// LEDGER_TABLE or --table).
    #[command(subcommand)]
    Failovers(FailoversCommand),
    /// Hibernation schedules.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// What the waste scanner found and did (table from WASTE_TABLE or --table).
    #[command(subcommand)]
    Waste(ListCommand),
    /// What the security enforcer flagged and enforced (table from ENFORCEMENT_TABLE or --table).
    #[command(subcommand)]
    Enforcement(EnforcementCommand),
    /// The switches and swapped members, realised or shadow (table from LEDGER_TABLE or --table).
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Every destructive action, recorded before it was taken, and how it ended (table from
    /// AUDIT_TABLE or --table).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Atomic switches: switch one back.
    #[command(subcommand)]
    Switch(SwitchCommand),
    /// Stops every function (`--all`), every function in one account (`--account`) or one
    /// function everywhere (`--function`) from changing anything in AWS, within PauseCheckSeconds;
    /// sagas in flight go to their rollback. Audited. Table from CONTROL_TABLE or --table.
    Pause {
        #[command(flatten)]
        target: spotctl::guardrails::Target,
        #[command(flatten)]
        who: Who,
    },
    /// Lifts a pause put with `spotctl pause` (or the circuit breaker's, with --account). Audited.
    Resume {
        #[command(flatten)]
        target: spotctl::guardrails::Target,
        #[command(flatten)]
        who: Who,
    },
    /// The pauses in force: what, who (an operator or the circuit breaker), since when, why.
    Pauses {
        #[arg(long, env = "CONTROL_TABLE")]
        table: String,
    },
    /// Shadow before live: what an account's shadow runs would have done and saved.
    #[command(subcommand)]
    Shadow(ShadowCommand),
    /// Net savings per account, region and month: switches, swaps and failovers at the Spot
    /// price in force, net of what they keep (as of the last hourly refresh), hibernation, waste
    /// removed; shadow decisions apart. `--detail`: per workload.
    Savings {
        #[arg(long, env = "LEDGER_TABLE")]
        ledger: String,
        /// Adds the hibernation line (omit to leave it out).
        #[arg(long, env = "HIBERNATION_TABLE")]
        hibernation: Option<String>,
        /// Adds the waste-removed line (omit to leave it out).
        #[arg(long, env = "WASTE_TABLE")]
        waste: Option<String>,
        #[command(flatten)]
        only: spotctl::savings::Only,
        /// One row per workload (switched instance, swapped member, failover, shadow source).
        #[arg(long)]
        detail: bool,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Who acts and why (both recorded in the audit trail), and the tables that hold it.
#[derive(clap::Args)]
struct Who {
    /// Who acts (recorded); defaults to $USER.
    #[arg(long, env = "USER", default_value = "operator")]
    by: String,
    /// Why (recorded).
    #[arg(long)]
    reason: String,
    #[arg(long, env = "CONTROL_TABLE")]
    table: String,
    #[arg(long, env = "AUDIT_TABLE")]
    audit: String,
}

#[derive(Subcommand)]
enum ShadowCommand {
    /// Per activity: shadow runs since when, and whether promoted; then the switches and swaps
    /// the shadow runs would have made (and their saving), the waste they would delete, the
    /// instances the enforcer would act on. Printing it is the look `accounts promote` needs.
    Report {
        account_id: String,
        #[arg(long, env = "CONTROL_TABLE")]
        table: String,
        #[arg(long, env = "LEDGER_TABLE")]
        ledger: String,
        /// Adds the waste the shadow runs would delete (omit to leave it out).
        #[arg(long, env = "WASTE_TABLE")]
        waste: Option<String>,
        /// Adds the instances the enforcer would act on (omit to leave it out).
        #[arg(long, env = "ENFORCEMENT_TABLE")]
        enforcement: Option<String>,
        /// The stack's ShadowDays.
        #[arg(long, env = "SHADOW_DAYS", default_value_t = 7)]
        shadow_days: u32,
    },
}

#[derive(Subcommand)]
enum ListCommand {
    /// Tracked waste, most costly first: kind, status, monthly cost, deletion date, why.
    List {
        #[arg(long, env = "WASTE_TABLE")]
        table: String,
        #[command(flatten)]
        filter: spotctl::listings::Filter,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum EnforcementCommand {
    /// Flagged and enforced instances, nearest deadline first.
    List {
        #[arg(long, env = "ENFORCEMENT_TABLE")]
        table: String,
        #[command(flatten)]
        filter: spotctl::listings::Filter,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum LedgerCommand {
    /// Switch and swap records, newest first: source, clone, status, pool, saving per hour.
    List {
        #[arg(long, env = "LEDGER_TABLE")]
        table: String,
        #[command(flatten)]
        filter: spotctl::listings::Filter,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum SwitchCommand {
    /// Switches a completed switch back, within SourceRetentionDays: the source starts again, its
    /// address moves back once it runs, then the clone is terminated; each action audited, the
    /// ledger record becomes REVERTED, the owner is told. Asks the stack's `switch-revert`
    /// function (output SwitchRevertFunctionName), which acts with the member's switch role.
    Revert {
        /// The switch's id (its execution name, as `spotctl ledger list` shows it).
        switch_id: String,
        #[arg(long, env = "SWITCH_REVERT_FUNCTION")]
        function: String,
        /// Who asks (recorded); defaults to $USER.
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
        /// Why (recorded).
        #[arg(long)]
        reason: String,
        /// The function's answer as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// The audit trail, newest first (--status filters on the outcome: done, failed, started).
    List {
        #[arg(long, env = "AUDIT_TABLE")]
        table: String,
        #[command(flatten)]
        filter: spotctl::listings::Filter,
        /// Only this function's actions (e.g. waste-scanner, hibernation-reconciler).
        #[arg(long)]
        function: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

/// Prints `records` as JSON lines, a table, or `none` when there are none.
impl Who {
    fn tables(&self, dynamodb: &aws_sdk_dynamodb::Client) -> (spot_aws::ControlTable, AuditTable) {
        (
            spot_aws::ControlTable::new(dynamodb.clone(), &self.table),
            AuditTable::new(dynamodb.clone(), &self.audit),
        )
    }

    fn operator(&self) -> spotctl::guardrails::Operator<'_> {
        spotctl::guardrails::Operator {
            by: &self.by,
            reason: &self.reason,
        }
    }
}

/// Lifts the pause of `scope`; nothing paused there exits 3.
async fn resume(
    dynamodb: &aws_sdk_dynamodb::Client,
    scope: spot_domain::guard::Scope,
    who: &Who,
    now: chrono::DateTime<Utc>,
) -> Result<()> {
    let (control, audit) = who.tables(dynamodb);
    let shown = scope.to_string();
    match spotctl::guardrails::resume(&control, &audit, scope, &who.operator(), now).await? {
        Some(text) => println!("{text}"),
        None => {
            eprintln!("spotctl resume: {shown} is not paused");
            std::process::exit(3);
        }
    }
    Ok(())
}

fn print_list<T: serde::Serialize>(
    records: &[T],
    json: bool,
    none: &str,
    table: impl FnOnce(&[T]) -> comfy_table::Table,
) -> Result<()> {
    if json {
        for r in records {
            println!("{}", serde_json::to_string(r)?);
        }
    } else if records.is_empty() {
        println!("{none}");
    } else {
        println!("{}", table(records));
    }
    Ok(())
}

#[derive(Subcommand)]
enum ScheduleCommand {
    /// Writes (or replaces) a schedule; a bad period, zone or matrix is refused and nothing is
    /// written.
    Put {
        #[arg(long, env = "SCHEDULES_TABLE")]
        table: String,
        name: String,
        /// IANA time zone the week is read in.
        #[arg(long, default_value = "UTC")]
        tz: String,
        /// Periods, e.g. "Mon-Fri 7-19; Sat 9-13" (end excluded; 22-02 crosses midnight).
        #[arg(long, conflicts_with = "matrix", required_unless_present = "matrix")]
        awake: Option<String>,
        /// 168 characters of 0 and 1, Monday 00:00 local first.
        #[arg(long)]
        matrix: Option<String>,
        /// Re-apply the desired state every run (default: only at transitions).
        #[arg(long)]
        enforced: bool,
        /// Hibernate instead of stopping where the instance has hibernation configured.
        #[arg(long)]
        hibernate: bool,
        /// Start this long before an awake hour.
        #[arg(long, default_value_t = spot_domain::hibernation::schedule::DEFAULT_WAKE_LEAD_MINUTES)]
        wake_lead_minutes: u32,
    },
    /// A schedule, with its week drawn as a 7 x 24 grid (`#` awake), the hours it keeps a target
    /// asleep this week (wake lead included, DST weeks as long as they are) and, with
    /// `--instance-type`, what that saves per instance at the shipped us-east-1 on-demand price.
    Show {
        #[arg(long, env = "SCHEDULES_TABLE")]
        table: String,
        name: String,
        #[arg(long)]
        instance_type: Option<String>,
    },
    /// Every schedule: zone, awake hours a week, options.
    List {
        #[arg(long, env = "SCHEDULES_TABLE")]
        table: String,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Keeps one target awake (or asleep) until a time, whatever its schedule says; stored with
    /// who and why, read by the reconciler's next run (within 5 minutes). A target is an instance
    /// id or asg/<group name>, in --account (default: the caller's) and --region.
    Override {
        #[arg(long, env = "HIBERNATION_TABLE")]
        table: String,
        target: String,
        #[arg(long)]
        account: Option<String>,
        #[arg(long, env = "AWS_REGION")]
        region: String,
        /// RFC 3339 instant the target stays awake until.
        #[arg(
            long,
            conflicts_with = "asleep_until",
            required_unless_present = "asleep_until"
        )]
        awake_until: Option<String>,
        /// RFC 3339 instant the target stays asleep until.
        #[arg(long)]
        asleep_until: Option<String>,
        /// Who overrides (default: $USER).
        #[arg(long, env = "USER")]
        by: String,
        /// Why (shown in every decision it makes).
        #[arg(long)]
        reason: String,
    },
    /// What schedules saved: per target, the hours asleep and the on-demand dollars not spent,
    /// this month and in total (sleeps the reconciler ended, plus the one in progress), then per
    /// schedule.
    Savings {
        #[arg(long, env = "HIBERNATION_TABLE")]
        table: String,
        /// One JSON object per target and line instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Whether a week of awake hours says `awake` or `asleep` at an instant, read in its time
    /// zone (the matrix alone, no wake lead). Needs no table and no credentials. Exit 2, with why
    /// on stderr, for a bad period, zone, matrix or time.
    Check {
        /// Periods, e.g. "Mon-Fri 7-19; Sat 9-13" (end excluded; 22-02 crosses midnight).
        #[arg(long, conflicts_with = "matrix", required_unless_present = "matrix")]
        awake: Option<String>,
        /// 168 characters of 0 and 1, Monday 00:00 local first.
        #[arg(long)]
        matrix: Option<String>,
        /// IANA time zone, e.g. Europe/Berlin.
        #[arg(long, default_value = "UTC")]
        tz: String,
        /// The instant, RFC 3339 (e.g. 2026-03-29T01:30:00Z).
        #[arg(long)]
        at: String,
    },
}

#[derive(Subcommand)]
enum FailoversCommand {
    /// Every failover, newest first: workload, old and new instance, pool, fallback taken,
    /// seconds from the signal to a healthy replacement, seconds without one.
    List {
        #[arg(long, env = "LEDGER_TABLE")]
        table: String,
        /// Only this workload's failovers.
        #[arg(long)]
        workload: Option<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A workload's instances and their roles (PRIMARY serves it; a REPLICA is its warm standby
    /// in replica mode; a ZOMBIE was interrupted and is kept for audit for 30 days), and what
    /// breaks the rules (exactly one PRIMARY, at most one REPLICA).
    Roles {
        #[arg(long, env = "LEDGER_TABLE")]
        table: String,
        workload: String,
    },
    /// The volumes failovers kept from interrupted instances, in the account and region of the
    /// credentials, with the day the waste scanner may start flagging them.
    Volumes {
        /// As the waste scanner's PRESERVED_RETENTION_DAYS.
        #[arg(long, env = "PRESERVED_RETENTION_DAYS", default_value_t = spot_domain::saga::failover::DEFAULT_PRESERVED_RETENTION_DAYS)]
        retention_days: i64,
    },
}

#[derive(Subcommand)]
enum ApprovalsCommand {
    /// Switches and swaps waiting for an answer, oldest first.
    List {
        #[arg(long, env = "APPROVALS_TABLE")]
        table: String,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Lets a waiting switch or swap go on (Step Functions SendTaskSuccess with its stored token).
    Approve {
        #[arg(long, env = "APPROVALS_TABLE")]
        table: String,
        /// The switch or swap id: the execution name.
        saga_id: String,
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
    /// Stops a waiting switch or swap before it changes anything (SendTaskFailure `ApprovalRejected`).
    Reject {
        #[arg(long, env = "APPROVALS_TABLE")]
        table: String,
        saga_id: String,
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
        /// Why, recorded in the switch ledger.
        #[arg(long, default_value = "rejected by an operator")]
        reason: String,
    },
}

#[derive(Subcommand)]
enum QuarantineCommand {
    /// Pools quarantined now (with --all, also expired and released records still stored).
    List {
        #[arg(long, env = "QUARANTINE_TABLE")]
        table: String,
        #[arg(long)]
        all: bool,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Whether launches may use a pool now (exit code 3 when quarantined).
    Check {
        #[arg(long, env = "QUARANTINE_TABLE")]
        table: String,
        /// `region#az_id#instance_type`, e.g. `us-east-1#use1-az4#m5.large`.
        pool: PoolKey,
    },
    /// Ends a pool's quarantine now; the record keeps who released it and when.
    Release {
        #[arg(long, env = "QUARANTINE_TABLE")]
        table: String,
        pool: PoolKey,
        /// Who releases it (recorded); defaults to $USER.
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
    },
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Registers or replaces an account.
    Put {
        #[arg(long, env = "ACCOUNTS_TABLE")]
        table: String,
        account_id: String,
        #[arg(long)]
        environment: Environment,
        /// Role the central stack assumes (output RoleArn of member-account.yaml).
        #[arg(long)]
        role_arn: Option<String>,
        #[arg(long)]
        external_id: Option<String>,
        /// Regions the scheduled scans cover in this account (comma list); default: their REGIONS.
        #[arg(long, value_delimiter = ',')]
        regions: Vec<String>,
    },
    /// Lifts the account's pause (the circuit breaker's or an operator's) and starts its
    /// breaker's count again. Audited.
    Resume {
        account_id: String,
        #[command(flatten)]
        who: Who,
    },
    /// Records that the account may act live for a capability (switch, swap, waste,
    /// enforcement, hibernation): refused before it ran that capability in shadow for
    /// ShadowDays and someone printed its `spotctl shadow report` after that. Audited.
    Promote {
        account_id: String,
        #[arg(long)]
        capability: spot_domain::guard::Activity,
        /// Who decides (recorded); defaults to $USER.
        #[arg(long, env = "USER", default_value = "operator")]
        by: String,
        /// Why (recorded).
        #[arg(long, default_value = "shadow decisions reviewed")]
        reason: String,
        #[arg(long, env = "CONTROL_TABLE")]
        table: String,
        #[arg(long, env = "AUDIT_TABLE")]
        audit: String,
        /// The stack's ShadowDays.
        #[arg(long, env = "SHADOW_DAYS", default_value_t = 7)]
        shadow_days: u32,
    },
    /// Registers the accounts of the AWS Organization not registered yet (ACTIVE ones), each
    /// with the member role name convention and an environment from the first matching --map
    /// (else --default). Lists with the operator's credentials, or --org-role's (a role in the
    /// management account or a delegated administrator). --dry-run registers nothing.
    Discover {
        #[arg(long, env = "ACCOUNTS_TABLE")]
        table: String,
        /// The member stacks' role name (the stack's MemberRoleName).
        #[arg(long, env = "MEMBER_ROLE_NAME", default_value = "SpotOptimizerMember")]
        role_name: String,
        /// The member stacks' ExternalId.
        #[arg(long, env = "MEMBER_EXTERNAL_ID")]
        external_id: Option<String>,
        /// `ou:<name or path>=PROD|LAB` or `tag:<key>=<value>=PROD|LAB`; the first match wins.
        #[arg(long = "map")]
        rules: Vec<spot_domain::onboarding::Rule>,
        /// The environment of an account no --map matches.
        #[arg(long, default_value = "PROD")]
        default: Environment,
        /// A role to list the organisation with (assumed from the operator's credentials).
        #[arg(long)]
        org_role: Option<String>,
        #[arg(long)]
        dry_run: bool,
    },
    /// Asks the stack's accounts-verify function (output AccountsVerifyFunctionName) to assume
    /// each registered account's member role with its ExternalId and make one read; prints what
    /// works and what does not, and why. Exit 3 when one fails.
    Verify {
        /// Only this account.
        account_id: Option<String>,
        #[arg(long, env = "ACCOUNTS_VERIFY_FUNCTION")]
        function: String,
    },
    /// Shows one account as the handler sees it.
    Get {
        #[arg(long, env = "ACCOUNTS_TABLE")]
        table: String,
        account_id: String,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    // Table-free: answered before any AWS configuration is read.
    if let Command::Schedule(ScheduleCommand::Check {
        awake,
        matrix,
        tz,
        at,
    }) = &cli.command
    {
        match spotctl::schedule_check(awake.as_deref(), matrix.as_deref(), tz, at) {
            Ok(power) => {
                println!("{power}");
                return Ok(());
            }
            Err(why) => {
                eprintln!("spotctl schedule check: {why}");
                std::process::exit(2);
            }
        }
    }
    let ctx = AwsContext::load(spot_domain::Capability::Read, "spotctl").await;
    let dynamodb = aws_sdk_dynamodb::Client::new(ctx.base());
    let now = Utc::now();
    match cli.command {
        Command::Quarantine(QuarantineCommand::List { table, all, json }) => {
            let store = QuarantineTable::new(dynamodb, table);
            let records = if all {
                let mut records = store.all().await?;
                records.sort_by_key(|r| r.expires_at);
                records
            } else {
                gatekeeper::active(&store, now).await?
            };
            if json {
                for r in &records {
                    println!("{}", serde_json::to_string(r)?);
                }
            } else if records.is_empty() {
                println!("no quarantined pools");
            } else {
                println!("{}", spotctl::quarantine_table(&records, now));
            }
        }
        Command::Quarantine(QuarantineCommand::Check { table, pool }) => {
            match gatekeeper::check(&QuarantineTable::new(dynamodb, table), &pool, now).await? {
                Gate::Open => println!("{pool}: open"),
                Gate::Quarantined(r) => {
                    println!(
                        "{pool}: quarantined until {} ({} signals)",
                        r.expires_at, r.interruptions
                    );
                    std::process::exit(3);
                }
            }
        }
        Command::Quarantine(QuarantineCommand::Release { table, pool, by }) => {
            match gatekeeper::release(&QuarantineTable::new(dynamodb, table), &pool, now, &by)
                .await?
            {
                Release::Released(r) => println!(
                    "{pool}: released by {by} (was quarantined for {} signals)",
                    r.interruptions
                ),
                Release::NotQuarantined => bail!("{pool} is not quarantined"),
            }
        }
        Command::Accounts(AccountsCommand::Put {
            table,
            account_id,
            environment,
            role_arn,
            external_id,
            regions,
        }) => {
            if !spot_domain::ids::Field::AccountId.accepts(&account_id) {
                bail!("`{account_id}` is not a 12-digit account id");
            }
            if let Some(bad) = regions
                .iter()
                .find(|r| !spot_domain::ids::Field::Region.accepts(r))
            {
                bail!("`{bad}` is not a region");
            }
            let account = Account {
                account_id,
                environment,
                role_arn,
                external_id,
                regions,
            };
            AccountsTable::new(dynamodb, table).put(&account).await?;
            println!(
                "registered {} as {}",
                account.account_id, account.environment
            );
        }
        Command::Pause { target, who } => {
            let (control, audit) = who.tables(&dynamodb);
            let scope = target.scope()?;
            println!(
                "{}",
                spotctl::guardrails::pause(&control, &audit, scope, &who.operator(), now).await?
            );
        }
        Command::Resume { target, who } => {
            resume(&dynamodb, target.scope()?, &who, now).await?;
        }
        Command::Accounts(AccountsCommand::Resume { account_id, who }) => {
            let scope = spotctl::guardrails::account_scope(&account_id)?;
            resume(&dynamodb, scope, &who, now).await?;
        }
        Command::Pauses { table } => {
            let pauses = spot_aws::ControlTable::new(dynamodb, table)
                .pauses()
                .await?;
            if pauses.0.is_empty() {
                println!("nothing is paused");
            } else {
                println!("{}", spotctl::guardrails::pauses_table(&pauses));
            }
        }
        Command::Accounts(AccountsCommand::Promote {
            account_id,
            capability,
            by,
            reason,
            table,
            audit,
            shadow_days,
        }) => {
            let who = spotctl::guardrails::Operator {
                by: &by,
                reason: &reason,
            };
            match spotctl::guardrails::promote(
                &spot_aws::ControlTable::new(dynamodb.clone(), table),
                &AuditTable::new(dynamodb, audit),
                &account_id,
                capability,
                &who,
                chrono::TimeDelta::days(i64::from(shadow_days)),
                now,
            )
            .await?
            {
                Ok(p) => println!(
                    "promoted {} for {} by {} (shadow since {}): live where the stack's \
                     allowlist and mode allow it",
                    p.account_id, p.activity, p.by, p.shadow_since
                ),
                Err(why) => {
                    eprintln!("spotctl accounts promote: refused: {why}");
                    std::process::exit(3);
                }
            }
        }
        Command::Shadow(ShadowCommand::Report {
            account_id,
            table,
            ledger,
            waste,
            enforcement,
            shadow_days,
        }) => {
            let sources = spotctl::guardrails::Sources {
                control: spot_aws::ControlTable::new(dynamodb.clone(), table),
                ledger: LedgerTable::new(dynamodb.clone(), ledger),
                waste: waste.map(|t| WasteTable::new(dynamodb.clone(), t)),
                enforcement: enforcement.map(|t| EnforcementTable::new(dynamodb.clone(), t)),
            };
            print!(
                "{}",
                spotctl::guardrails::shadow_report(
                    &sources,
                    &account_id,
                    chrono::TimeDelta::days(i64::from(shadow_days)),
                    now,
                )
                .await?
            );
        }
        Command::Accounts(AccountsCommand::Discover {
            table,
            role_name,
            external_id,
            rules,
            default,
            org_role,
            dry_run,
        }) => {
            let config = match org_role {
                Some(role_arn) => {
                    let access = spot_domain::Access::AssumeRole {
                        role_arn,
                        external_id: None,
                    };
                    ctx.config_for(&access, "us-east-1").await
                }
                None => ctx.base().clone(),
            };
            let organization = spot_aws::organizations::Organization::new(
                aws_sdk_organizations::Client::new(&config),
            );
            let region = ctx
                .base()
                .region()
                .map(|r| r.to_string())
                .unwrap_or_default();
            let onboarding = spot_domain::onboarding::Onboarding {
                rules,
                default,
                role_name,
                external_id,
                partition: spot_domain::config::partition(&region).into(),
            };
            let rows = spotctl::onboarding::discover(
                &organization,
                &AccountsTable::new(dynamodb, table),
                &onboarding,
                dry_run,
            )
            .await?;
            println!("{}", spotctl::onboarding::discover_table(&rows, dry_run));
        }
        Command::Accounts(AccountsCommand::Verify {
            account_id,
            function,
        }) => {
            let ask = match &account_id {
                Some(id) => serde_json::json!({"accounts": [id]}),
                None => serde_json::json!({}),
            };
            let functions =
                spot_aws::lambda::Functions::new(aws_sdk_lambda::Client::new(ctx.base()));
            match functions.invoke(&function, &ask).await? {
                Ok(verdicts) => {
                    let (table, all_ok) = spotctl::onboarding::verdicts_table(&verdicts);
                    println!("{table}");
                    if !all_ok {
                        std::process::exit(3);
                    }
                }
                Err((name, message)) => {
                    eprintln!("spotctl accounts verify: {name}: {message}");
                    std::process::exit(3);
                }
            }
        }
        Command::Accounts(AccountsCommand::Get { table, account_id }) => {
            let account = AccountsTable::new(dynamodb, table)
                .account(&account_id)
                .await
                .context("reading the accounts table")?;
            match account {
                Some(a) => println!(
                    "{}: {} role={} external_id={} regions={}",
                    a.account_id,
                    a.environment,
                    a.role_arn.as_deref().unwrap_or("-"),
                    if a.external_id.is_some() { "set" } else { "-" },
                    if a.regions.is_empty() {
                        "default".to_owned()
                    } else {
                        a.regions.join(",")
                    }
                ),
                None => println!("{account_id}: not registered"),
            }
        }
        Command::Failovers(FailoversCommand::List {
            table,
            workload,
            json,
        }) => {
            let mut records: Vec<FailoverRecord> = LedgerTable::new(dynamodb, table)
                .with_prefix(EXECUTION_PREFIX)
                .await?;
            records.retain(|r| workload.is_none() || r.workload == workload);
            records.sort_by_key(|r| std::cmp::Reverse(r.received_at));
            if json {
                for r in &records {
                    println!("{}", serde_json::to_string(r)?);
                }
            } else if records.is_empty() {
                println!("no failover recorded");
            } else {
                println!("{}", spotctl::failovers_table(&records));
            }
        }
        Command::Failovers(FailoversCommand::Roles { table, workload }) => {
            let mut roles: Vec<RoleRecord> = LedgerTable::new(dynamodb, table)
                .with_prefix("role#")
                .await?;
            roles.retain(|r| r.workload == workload);
            roles.sort_by_key(|r| (r.role as u8, std::cmp::Reverse(r.since)));
            if roles.is_empty() {
                println!("{workload}: no roles recorded");
            } else {
                println!("{}", spotctl::roles_table(&roles));
                // A workload whose first failover has not come yet has no PRIMARY recorded.
                for wrong in spot_domain::saga::failover::role_violations(&roles) {
                    println!("check: {wrong}");
                }
            }
        }
        Command::Schedule(ScheduleCommand::Check { .. }) => {}
        Command::Schedule(ScheduleCommand::Put {
            table,
            name,
            tz,
            awake,
            matrix,
            enforced,
            hibernate,
            wake_lead_minutes,
        }) => {
            let week = match (&awake, &matrix) {
                (Some(periods), _) => Week::from_periods(periods),
                (None, Some(cells)) => Week::from_matrix(cells),
                (None, None) => bail!("give --awake or --matrix"),
            }?;
            let schedule = Schedule {
                enforced,
                hibernate,
                wake_lead_minutes,
                ..Schedule::new(&name, &tz, week)?
            };
            schedule.check()?;
            SchedulesTable::new(dynamodb, table).put(&schedule).await?;
            println!(
                "{name}: {} awake hours a week in {tz}\n{}",
                schedule.awake.awake_hours(),
                schedule.awake.grid()
            );
        }
        Command::Schedule(ScheduleCommand::Show {
            table,
            name,
            instance_type,
        }) => {
            let Some(schedule) = SchedulesTable::new(dynamodb, table).get(&name).await? else {
                bail!("no schedule named {name}");
            };
            println!("{}", spotctl::schedule_text(&schedule));
            println!(
                "{}",
                spotctl::schedule_week_saving(&schedule, instance_type.as_deref(), now)?
            );
        }
        Command::Schedule(ScheduleCommand::List { table, json }) => {
            let all = SchedulesTable::new(dynamodb, table).all().await?;
            if json {
                for s in &all {
                    println!("{}", serde_json::to_string(s)?);
                }
            } else if all.is_empty() {
                println!("no schedules");
            } else {
                println!("{}", spotctl::schedules_table(&all));
            }
        }
        Command::Schedule(ScheduleCommand::Override {
            table,
            target,
            account,
            region,
            awake_until,
            asleep_until,
            by,
            reason,
        }) => {
            let (power, until) = match (awake_until, asleep_until) {
                (Some(t), None) => (Power::Awake, t),
                (None, Some(t)) => (Power::Asleep, t),
                _ => bail!("give --awake-until or --asleep-until"),
            };
            let until = chrono::DateTime::parse_from_rfc3339(&until)
                .with_context(|| format!("`{until}` is no RFC 3339 time"))?
                .with_timezone(&Utc);
            let over = Override {
                power,
                until,
                by,
                why: reason,
            };
            check_override(&target, &over, now)?;
            spot_domain::ids::Field::Region.check(&region)?;
            let account = match account {
                Some(a) => a,
                None => ctx.own_account_id().await?,
            };
            spot_domain::ids::Field::AccountId.check(&account)?;
            let item = OverrideItem::new(&account, &region, &target, over, now);
            HibernationTable::new(dynamodb, table)
                .put_override(&item)
                .await?;
            println!(
                "{target} ({account}/{region}) stays {power} until {until}, by {} ({}); the \
                 reconciler applies it at its next run",
                item.over.by, item.over.why
            );
        }
        Command::Switch(SwitchCommand::Revert {
            switch_id,
            function,
            by,
            reason,
            json,
        }) => {
            let functions =
                spot_aws::lambda::Functions::new(aws_sdk_lambda::Client::new(ctx.base()));
            let request = serde_json::json!({"switch_id": switch_id, "by": by, "reason": reason});
            match functions.invoke(&function, &request).await? {
                Ok(answer) if json => println!("{answer}"),
                Ok(answer) => {
                    let reverted: spot_domain::saga::switch::Reverted =
                        serde_json::from_value(answer)?;
                    println!("{}", spotctl::reverted_text(&reverted));
                }
                Err((name, message)) => {
                    eprintln!("spotctl switch revert: {name}: {message}");
                    std::process::exit(3);
                }
            }
        }
        Command::Savings {
            ledger,
            hibernation,
            waste,
            only,
            detail,
            json,
        } => {
            use spot_domain::savings;
            let accruals = LedgerTable::new(dynamodb.clone(), ledger)
                .accruals()
                .await?;
            if detail {
                let kept = only.accruals(accruals);
                if json {
                    for line in spotctl::savings::detail_json(&kept)? {
                        println!("{line}");
                    }
                } else if kept.is_empty() {
                    println!("no saving accrued yet (the savings refresh runs hourly)");
                } else {
                    println!("{}", spotctl::savings::detail_table(&kept));
                }
                return Ok(());
            }
            let mut totals = std::collections::BTreeMap::new();
            savings::add_accruals(&mut totals, &accruals);
            if let Some(table) = hibernation {
                let all = HibernationTable::new(dynamodb.clone(), table).all().await?;
                savings::add_hibernation(&mut totals, &all.targets, now);
            }
            if let Some(table) = waste {
                let records = WasteTable::new(dynamodb.clone(), table).all().await?;
                let prices = spot_domain::governance::pricing::PriceTable::from_env(
                    &spot_domain::config::Env::process(),
                )?;
                savings::add_waste(&mut totals, &records, now, &prices);
            }
            let totals = only.totals(totals);
            if json {
                for line in spotctl::savings::totals_json(&totals) {
                    println!("{line}");
                }
            } else if totals.is_empty() {
                println!("no saving recorded yet");
            } else {
                println!("{}", spotctl::savings::totals_table(&totals));
            }
        }
        Command::Schedule(ScheduleCommand::Savings { table, json }) => {
            let all = HibernationTable::new(dynamodb, table).all().await?;
            if json {
                for line in spotctl::savings_json(&all.targets, now) {
                    println!("{line}");
                }
            } else if all.targets.is_empty() {
                println!("no scheduled target seen yet");
            } else {
                let (targets, schedules) = spotctl::savings_tables(&all.targets, now);
                println!("{targets}\n\nper schedule:\n{schedules}");
            }
        }
        Command::Waste(ListCommand::List {
            table,
            filter,
            json,
        }) => {
            let all = WasteTable::new(dynamodb, table).all().await?;
            let kept = spotctl::listings::waste(all, &filter);
            print_list(
                &kept,
                json,
                "no waste recorded",
                spotctl::listings::waste_table,
            )?;
        }
        Command::Enforcement(EnforcementCommand::List {
            table,
            filter,
            json,
        }) => {
            let all = EnforcementTable::new(dynamodb, table).all().await?;
            let kept = spotctl::listings::enforcement(all, &filter);
            print_list(
                &kept,
                json,
                "no instance flagged",
                spotctl::listings::enforcement_table,
            )?;
        }
        Command::Ledger(LedgerCommand::List {
            table,
            filter,
            json,
        }) => {
            let all = LedgerTable::new(dynamodb, table).switches().await?;
            let kept = spotctl::listings::ledger(all, &filter);
            print_list(
                &kept,
                json,
                "no switch recorded",
                spotctl::listings::ledger_table,
            )?;
        }
        Command::Audit(AuditCommand::List {
            table,
            filter,
            function,
            json,
        }) => {
            let all = AuditTable::new(dynamodb, table).all().await?;
            let kept = spotctl::listings::audit(all, &filter, function.as_deref());
            print_list(
                &kept,
                json,
                "no audited action",
                spotctl::listings::audit_table,
            )?;
        }
        Command::Failovers(FailoversCommand::Volumes { retention_days }) => {
            let volumes = Ec2::new(aws_sdk_ec2::Client::new(ctx.base()))
                .preserved_volumes()
                .await?;
            if volumes.is_empty() {
                println!("no kept volumes");
            } else {
                let retention = chrono::TimeDelta::days(retention_days);
                println!("{}", spotctl::kept_volumes_table(&volumes, retention, now));
            }
        }
        Command::Approvals(ApprovalsCommand::List { table, json }) => {
            let pending = ApprovalsTable::new(dynamodb, table).pending().await?;
            if json {
                for r in &pending {
                    println!("{}", serde_json::to_string(r)?);
                }
            } else if pending.is_empty() {
                println!("no switch waits for approval");
            } else {
                println!("{}", spotctl::approvals_table(&pending, now));
            }
        }
        Command::Approvals(ApprovalsCommand::Approve { table, saga_id, by }) => {
            let approvals = ApprovalsTable::new(dynamodb, table);
            let token = waiting(&approvals, &saga_id, now).await?;
            // Step Functions first: it takes one answer per task, so two operators never both
            // answer, and a refused answer leaves the request pending, as it is.
            TaskAnswers::new(aws_sdk_sfn::Client::new(ctx.base()))
                .approve(&token, &serde_json::json!({"approved_by": by, "at": now}))
                .await
                .with_context(|| format!("answering {saga_id} (did it time out?)"))?;
            record(
                &approvals,
                &saga_id,
                ApprovalStatus::Approved,
                &by,
                "approved",
            )
            .await;
            println!("{saga_id}: approved by {by}; it goes on");
        }
        Command::Approvals(ApprovalsCommand::Reject {
            table,
            saga_id,
            by,
            reason,
        }) => {
            let approvals = ApprovalsTable::new(dynamodb, table);
            let token = waiting(&approvals, &saga_id, now).await?;
            TaskAnswers::new(aws_sdk_sfn::Client::new(ctx.base()))
                .reject(
                    &token,
                    ErrorName::ApprovalRejected.as_str(),
                    &format!("{reason} ({by})"),
                )
                .await
                .with_context(|| format!("answering {saga_id} (did it time out?)"))?;
            record(&approvals, &saga_id, ApprovalStatus::Rejected, &by, &reason).await;
            println!("{saga_id}: rejected by {by}; nothing was changed");
        }
    }
    Ok(())
}

/// The task token of a request still waiting for its answer.
async fn waiting(
    approvals: &ApprovalsTable,
    saga_id: &str,
    now: chrono::DateTime<Utc>,
) -> Result<String> {
    let Some(request) = approvals
        .pending()
        .await?
        .into_iter()
        .find(|r| r.saga_id == saga_id)
    else {
        bail!("{saga_id} does not wait for approval (answered, expired, or unknown)");
    };
    if request.expires_at <= now {
        bail!(
            "{saga_id}: the approval expired at {}; it was rejected",
            request.expires_at
        );
    }
    Ok(request.task_token)
}

/// Records the answer Step Functions took. A failure here changes nothing the saga does (it already
/// goes on, or rolls back, and closes its request itself): it is reported, not fatal.
async fn record(
    approvals: &ApprovalsTable,
    saga_id: &str,
    status: ApprovalStatus,
    by: &str,
    note: &str,
) {
    match approvals.answer(saga_id, status, by, note).await {
        Ok(true) => {}
        Ok(false) => eprintln!("{saga_id}: the request was closed meanwhile; the answer stands"),
        Err(e) => eprintln!("{saga_id}: answered, but recording it failed: {e}"),
    }
}
