//! Onboarding against the bed: `spotctl accounts discover` lists moto's Organizations (as a role
//! in the management account) and registers what is not registered yet, each with the member
//! role convention and an environment from the OU and tag mapping; `spotctl accounts verify` asks
//! the real `accounts-verify` binary to assume each account's role and read once.

use anyhow::{Context, Result};
use aws_sdk_organizations::types::{OrganizationFeatureSet, Tag};
use chrono::Utc;
use spot_aws::AccountsTable;
use spot_domain::{Account, AccountRegistry, Environment};
use testbed::bed::BED_ADMINISTRATOR;
use testbed::{Bed, Fault};

use crate::governance::Gov;

/// An organisation in a fresh management account: Workloads/Sandbox and Workloads/Prod OUs, three
/// member accounts (one in each OU, one tagged `env=lab` in the root). Returns the management
/// account and the members, in that order: sandbox, prod, tagged.
async fn organisation(bed: &Bed) -> Result<(String, Vec<String>)> {
    let management = format!(
        "{:012}",
        800_000_000_000 + Utc::now().timestamp_micros() as u64 % 100_000_000_000
    );
    let org = aws_sdk_organizations::Client::new(&bed.member(&management).await?);
    org.create_organization()
        .feature_set(OrganizationFeatureSet::All)
        .send()
        .await?;
    let root = org.list_roots().send().await?.roots()[0]
        .id()
        .context("root id")?
        .to_owned();
    let ou = |parent: String, name: &'static str| {
        let org = org.clone();
        async move {
            Ok::<_, anyhow::Error>(
                org.create_organizational_unit()
                    .parent_id(parent)
                    .name(name)
                    .send()
                    .await?
                    .organizational_unit()
                    .and_then(|u| u.id())
                    .context("ou id")?
                    .to_owned(),
            )
        }
    };
    let workloads = ou(root.clone(), "Workloads").await?;
    let sandbox = ou(workloads.clone(), "Sandbox").await?;
    let prod = ou(workloads, "Prod").await?;
    let mut members = Vec::new();
    for (name, destination) in [
        ("sandbox-1", Some(&sandbox)),
        ("prod-1", Some(&prod)),
        ("tagged-1", None),
    ] {
        let status = org
            .create_account()
            .account_name(name)
            .email(format!("{name}@example.com"))
            .send()
            .await?;
        let id = status
            .create_account_status()
            .and_then(|s| s.id())
            .context("create account status")?;
        let account = org
            .describe_create_account_status()
            .create_account_request_id(id)
            .send()
            .await?
            .create_account_status()
            .and_then(|s| s.account_id())
            .context("account id")?
            .to_owned();
        if let Some(destination) = destination {
            org.move_account()
                .account_id(&account)
                .source_parent_id(&root)
                .destination_parent_id(destination)
                .send()
                .await?;
        } else {
            org.tag_resource()
                .resource_id(&account)
                .tags(Tag::builder().key("env").value("lab").build()?)
                .send()
                .await?;
        }
        members.push(account);
    }
    Ok((management, members))
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_registers_the_organisations_accounts_and_verify_says_which_are_reachable()
-> Result<()> {
    let g = Gov::start("onboarding").await?;
    let (management, members) = organisation(&g.bed).await?;
    let (sandbox, prod, tagged) = (&members[0], &members[1], &members[2]);
    let registry = AccountsTable::new(g.bed.dynamodb(), g.tables.name("AccountsTable"));
    let org_role = format!("arn:aws:iam::{management}:role/{BED_ADMINISTRATOR}");
    let discover = |dry_run: bool| {
        let mut args = vec![
            "accounts",
            "discover",
            "--org-role",
            &org_role,
            "--external-id",
            "bed-external-id",
            "--map",
            "ou:Workloads/Sandbox=LAB",
            "--map",
            "tag:env=lab=LAB",
        ];
        if dry_run {
            args.push("--dry-run");
        }
        g.spotctl(&args)
    };

    // A dry run says what it would do and registers nothing
    let out = discover(true)?;
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("would register"), "{shown}");
    assert!(shown.contains("Workloads/Sandbox"), "{shown}");
    assert!(registry.account(sandbox).await?.is_none());

    // The real run registers each with the member role convention and its environment
    let out = discover(false)?;
    assert!(out.status.success(), "{}", text(&out));
    let env = |a: &Option<Account>| a.as_ref().map(|a| a.environment);
    assert_eq!(
        env(&registry.account(sandbox).await?),
        Some(Environment::Lab)
    );
    assert_eq!(
        env(&registry.account(prod).await?),
        Some(Environment::Prod),
        "default"
    );
    assert_eq!(
        env(&registry.account(tagged).await?),
        Some(Environment::Lab),
        "by its tag"
    );
    let item = registry.account(sandbox).await?.unwrap();
    assert_eq!(item.role_arn, Some(Bed::role_arn(sandbox)));
    assert_eq!(item.external_id.as_deref(), Some("bed-external-id"));
    // Asked again: nothing new, nothing changed
    let again = text(&discover(false)?);
    assert_eq!(again.matches("already registered").count(), 4, "{again}");
    assert_eq!(
        again.matches("registered").count(),
        again.matches("already registered").count(),
        "{again}"
    );

    // Verify: one account's role refuses, one registered without a role
    g.proxy
        .forwarder
        .inject(Fault::new("AssumeRole", "AccessDenied", 403).when_body_contains(prod));
    let roleless = format!("{}", g.account.parse::<u64>()? + 1);
    registry
        .put(&Account {
            account_id: roleless.clone(),
            environment: Environment::Prod,
            role_arn: None,
            external_id: None,
            regions: Vec::new(),
        })
        .await?;
    let function = format!("accounts-verify-{}", testbed::bed::unique_suffix());
    let spec = g.tables.function("accounts-verify", &g.proxy.endpoint())?;
    g.bed.register_function(&function, &spec).await?;
    let out = g.spotctl(&["accounts", "verify", "--function", &function])?;
    let shown = text(&out);
    println!("{again}\n{shown}");
    assert_eq!(out.status.code(), Some(3), "{shown}");
    let row = |account: &str| {
        shown
            .lines()
            .find(|l| l.contains(account))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(row(sandbox).contains(" ok "), "{shown}");
    assert!(row(&g.account).contains(" ok "), "{shown}");
    assert!(
        row(prod).contains("FAILS") && row(prod).contains("AccessDenied"),
        "{shown}"
    );
    assert!(
        row(&roleless).contains("FAILS") && row(&roleless).contains("role_arn"),
        "{shown}"
    );
    // One account asked alone
    let out = g.spotctl(&["accounts", "verify", sandbox, "--function", &function])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(prod.as_str()));
    Ok(())
}
