//! `spotctl accounts discover` and `spotctl accounts verify`: onboarding from AWS Organizations,
//! and a check that every registered account can be reached.

use std::collections::BTreeSet;

use anyhow::Result;
use comfy_table::Table;
use serde_json::Value;
use spot_aws::AccountsTable;
use spot_aws::organizations::Organization;
use spot_domain::AccountRegistry;
use spot_domain::onboarding::{Decision, Onboarding, OrgAccount};

use crate::table;

/// Every account of the organisation, decided; registered unless `dry_run`.
pub async fn discover(
    organization: &Organization,
    registry: &AccountsTable,
    onboarding: &Onboarding,
    dry_run: bool,
) -> Result<Vec<(OrgAccount, Decision)>> {
    let registered: BTreeSet<String> = registry
        .all()
        .await?
        .into_iter()
        .map(|a| a.account_id)
        .collect();
    let mut rows = Vec::new();
    for account in organization.accounts().await? {
        let decision = onboarding.decide(&account, registered.contains(&account.account_id));
        if let (Decision::Register { account: a, .. }, false) = (&decision, dry_run) {
            registry.put(a).await?;
        }
        rows.push((account, decision));
    }
    Ok(rows)
}

pub fn discover_table(rows: &[(OrgAccount, Decision)], dry_run: bool) -> Table {
    let mut t = table(&[
        "account",
        "name",
        "OU path",
        "decision",
        "environment",
        "why",
    ]);
    for (account, decision) in rows {
        let (what, env, why) = match decision {
            Decision::Register { account: a, by } => (
                if dry_run {
                    "would register"
                } else {
                    "registered"
                }
                .to_owned(),
                a.environment.to_string(),
                by.as_ref().map_or_else(
                    || "no rule matched: the default".to_owned(),
                    |r| r.to_string(),
                ),
            ),
            Decision::Registered => (
                "already registered".into(),
                "-".into(),
                "left as it is".into(),
            ),
            Decision::Skip(why) => ("skipped".into(), "-".into(), why.clone()),
        };
        t.add_row(vec![
            account.account_id.clone(),
            account.name.clone(),
            account.path(),
            what,
            env,
            why,
        ]);
    }
    t
}

/// The verdicts `accounts-verify` answered, as a table; and whether every account is reachable.
pub fn verdicts_table(verdicts: &Value) -> (Table, bool) {
    let mut t = table(&[
        "account",
        "environment",
        "role",
        "region",
        "reach",
        "detail",
    ]);
    let mut all_ok = true;
    for v in verdicts.as_array().into_iter().flatten() {
        let ok = v["ok"].as_bool().unwrap_or(false);
        all_ok &= ok;
        let text = |k: &str| v[k].as_str().unwrap_or("-").to_owned();
        t.add_row(vec![
            text("account"),
            text("environment"),
            text("role_arn"),
            text("region"),
            if ok { "ok" } else { "FAILS" }.to_owned(),
            text("detail"),
        ]);
    }
    (t, all_ok)
}
