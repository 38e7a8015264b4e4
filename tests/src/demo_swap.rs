//! `make demo`, part 4: the ASG swap, executed by the state machine against the real step binaries
//! while the group is read every few milliseconds: a shadow swap, a live swap of a three-member
//! group at its MaxSize behind a target group (capacity shown after each step), a swap that fails
//! at attach and is rolled back.

use anyhow::Result;
use serde_json::{Value, json};

use crate::bed::{HOME_ACCOUNT, REGION};
use crate::proxy::Fault;
use crate::saga::{Execution, SagaBed};
use crate::swap::{GroupSpec, Sample, Sampler, as_of, replacements, snapshot};

fn request(group: &str, mode: &str) -> Value {
    json!({
        "account_id": HOME_ACCOUNT, "region": REGION, "asg_name": group, "mode": mode,
        "settings": {"wait_seconds": 1, "health_checks": 3}
    })
}

/// The group after each Task state (waits and choices change nothing).
fn print_steps(e: &Execution, samples: &[Sample]) {
    let tasks = [
        "Discover",
        "Plan",
        "Prepare",
        "LaunchBatch",
        "CheckHealth",
        "Attach",
        "CheckAttached",
        "Detach",
        "CheckDetached",
        "Terminate",
        "Restore",
        "Rollback",
    ];
    let mut last_checked = String::new();
    for (state, at) in &e.timeline {
        if !tasks.contains(&state.as_str()) {
            continue;
        }
        // A check loop prints once, at its last round.
        if state.starts_with("Check") && *state == last_checked {
            continue;
        }
        last_checked = state.clone();
        if let Some(s) = as_of(samples, *at) {
            println!(
                "       after {state:<14} in service {}  desired {}  max {}",
                s.in_service, s.desired, s.max
            );
        }
    }
}

pub async fn run() -> Result<()> {
    println!(
        "\n== ASG swap: on-demand members replaced by Spot, in-service capacity never below the start ==\n"
    );
    let saga = SagaBed::swap(
        "demo-swap",
        &[("swap-plan", "APPROVAL_THRESHOLD", "CRITICAL")],
    )
    .await?;
    let autoscaling = aws_sdk_autoscaling::Client::new(&saga.bed.home);
    let web = saga.name("web");
    GroupSpec::new(&web)
        .size(3, 3)
        .with_target_group()
        .create(&saga.bed)
        .await?;
    let before = snapshot(&autoscaling, &web).await?;
    println!(
        "1. Group {web}: {} on-demand m5.large (launch template), desired {} = MaxSize {}, behind a target group,",
        before.members.len(),
        before.desired,
        before.max
    );
    println!("   tagged spot-optimizer:enabled=true");

    let e = saga
        .run(&saga.name("web-shadow"), &request(&web, "shadow"))
        .await?;
    println!("\n2. Shadow swap ({:?}): {}", e.status, e.path.join(" → "));
    println!(
        "     {}; nothing changed (in service {})",
        e.output["plan"]["summary"].as_str().unwrap_or("?"),
        snapshot(&autoscaling, &web).await?.in_service
    );

    let name = saga.name("web-live");
    let sampler = Sampler::start(autoscaling.clone(), &web);
    let e = saga.run(&name, &request(&web, "live")).await?;
    let samples = sampler.stop().await?;
    println!(
        "\n3. Live swap ({:?}), the group read {} times while it ran:",
        e.status,
        samples.len()
    );
    print_steps(&e, &samples);
    let after = snapshot(&autoscaling, &web).await?;
    let spot = replacements(&saga.bed.ec2(), &name)
        .await?
        .iter()
        .filter(|(id, state, spot)| *spot && state == "running" && after.members.contains(id))
        .count();
    println!(
        "     lowest in service {}; now {spot} of {} members Spot, desired {}, MaxSize {} (back), suspended processes {:?}",
        samples.iter().map(|s| s.in_service).min().unwrap_or(0),
        after.members.len(),
        after.desired,
        after.max,
        after.suspended
    );
    let batches = e.path.iter().filter(|s| *s == "LaunchBatch").count().max(1);
    println!(
        "     {} state transitions ({} per member), {} Lambda invocations, {:.1} s with waits of 1 s",
        e.path.len(),
        e.path.len().saturating_sub(7) / batches,
        e.invocations,
        e.wall.as_secs_f64()
    );

    let api = saga.name("api");
    GroupSpec::new(&api).size(2, 4).create(&saga.bed).await?;
    saga.proxy
        .forwarder
        .inject(Fault::new("AttachInstances", "ValidationError", 400).times(1));
    let sampler = Sampler::start(autoscaling.clone(), &api);
    let e = saga
        .run(&saga.name("api-live"), &request(&api, "live"))
        .await?;
    let samples = sampler.stop().await?;
    println!(
        "\n4. Live swap of {api} (2 members), AttachInstances refused (injected by the bed): {:?} ({})",
        e.status,
        e.error.as_deref().unwrap_or("-")
    );
    print_steps(&e, &samples);
    for undone in ["Rollback", "RollbackFinish"]
        .iter()
        .filter_map(|state| e.exited[*state]["rollback"]["undone"].as_array())
        .flatten()
    {
        println!("       rollback: {}", undone.as_str().unwrap_or("?"));
    }
    let after = snapshot(&autoscaling, &api).await?;
    println!(
        "     the group as it was: in service {}, desired {}, MaxSize {}, suspended {:?}; lowest in service {}",
        after.in_service,
        after.desired,
        after.max,
        after.suspended,
        samples.iter().map(|s| s.in_service).min().unwrap_or(0)
    );
    Ok(())
}
