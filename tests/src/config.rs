//! Every function's typed configuration against its `Environment` in the template: the keys its
//! `Config::from_env` reads and the ones the template gives it must be the same, both ways (keys
//! Lambda sets itself aside), and every value must be a parameter or a resource, never a literal
//! tunable buried in the template.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, anyhow};
use spot_domain::config::{ConfigError, Env, key};

/// Reads `binary`'s configuration from `env` as its `main` does.
pub fn read_config<F: Fn(&str) -> Option<String>>(
    binary: &str,
    env: &Env<F>,
) -> Result<Result<(), ConfigError>> {
    let done = |r: Result<(), ConfigError>| Ok(r);
    // A saga step's runner reads which executions it serves (`spot_aws::step::run`).
    let step = (binary.starts_with("switch-") && binary != "switch-revert")
        || binary.starts_with("swap-")
        || binary.starts_with("failover-")
        || binary == "saga-approval";
    if step && let Err(e) = spot_domain::config::Executions::from_env(env) {
        return done(Err(e));
    }
    match binary {
        "interruption-handler" => done(interruption::Config::from_env(env).map(drop)),
        "waste-scanner" => done(governance::waste::Config::from_env(env).map(drop)),
        "security-enforcer" => done(governance::enforce::Config::from_env(env).map(drop)),
        "optimizer" => done(router::Config::from_env(env).map(drop)),
        "hibernation-reconciler" => done(hibernation::Config::from_env(env).map(drop)),
        "savings-refresh" => done(savings::Config::from_env(env).map(drop)),
        "saga-approval" => done(approval::Config::from_env(env).map(drop)),
        "approval-link" => done(approval::link::Config::from_env(env).map(drop)),
        "switch-plan" => done(switch::plan::Config::from_env(env).map(drop)),
        "switch-shadow" => done(switch::shadow::Config::from_env(env).map(drop)),
        "switch-image" => done(switch::image::Config::from_env(env).map(drop)),
        "switch-launch" => done(switch::launch::Config::from_env(env).map(drop)),
        "switch-health" => done(switch::health::Config::from_env(env).map(drop)),
        "switch-cutover" => done(switch::cutover::Config::from_env(env).map(drop)),
        "switch-rollback" => done(switch::rollback::Config::from_env(env).map(drop)),
        "switch-revert" => done(switch::revert::Config::from_env(env).map(drop)),
        "swap-discover" => done(swap::discover::Config::from_env(env).map(drop)),
        "swap-plan" => done(swap::plan::Config::from_env(env).map(drop)),
        "swap-shadow" => done(swap::shadow::Config::from_env(env).map(drop)),
        "swap-prepare" => done(swap::prepare::Config::from_env(env).map(drop)),
        "swap-launch" => done(swap::launch::Config::from_env(env).map(drop)),
        "swap-health" => done(swap::health::Config::from_env(env).map(drop)),
        "swap-attach" => done(swap::attach::Config::from_env(env).map(drop)),
        "swap-detach" => done(swap::detach::Config::from_env(env).map(drop)),
        "swap-restore" => done(swap::restore::Config::from_env(env).map(drop)),
        "swap-rollback" => done(swap::rollback::Config::from_env(env).map(drop)),
        "failover-launch" => done(failover::launch::Config::from_env(env).map(drop)),
        "failover-preserve" => done(failover::preserve::Config::from_env(env).map(drop)),
        "failover-health" => done(failover::health::Config::from_env(env).map(drop)),
        "failover-promote" => done(failover::promote::Config::from_env(env).map(drop)),
        "failover-rollback" => done(failover::rollback::Config::from_env(env).map(drop)),
        "failover-standby" => done(failover::standby::Config::from_env(env).map(drop)),
        "fanout" => done(governance::fanout::Config::from_env(env).map(drop)),
        "accounts-verify" => done(governance::verify::Config::from_env(env).map(drop)),
        other => Err(anyhow!(
            "no configuration reader for `{other}`: add it here"
        )),
    }
}

/// The keys `binary`'s configuration reads from `env` (runtime keys aside), and its verdict.
pub fn keys_read(
    binary: &str,
    env: &BTreeMap<String, String>,
) -> Result<(BTreeSet<String>, Result<(), ConfigError>)> {
    let read = RefCell::new(BTreeSet::new());
    let lookup = Env(|k: &str| {
        read.borrow_mut().insert(k.to_owned());
        env.get(k).cloned()
    });
    let verdict = read_config(binary, &lookup)?;
    let mut keys = read.into_inner();
    keys.retain(|k| !key::RUNTIME.contains(&k.as_str()));
    Ok((keys, verdict))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::functions;
    use crate::template::Template;

    /// Each function's environment as deployed with the parameters' defaults, resources standing
    /// for themselves.
    fn deployed(template: &Template, binary: &str) -> BTreeMap<String, String> {
        let mut env = template
            .function_env(binary, |name| {
                (!template.is_parameter(name)).then(|| match name {
                    "AWS::AccountId" => "123456789012".to_owned(),
                    "AWS::StackName" => "spot-optimizer".to_owned(),
                    other => format!("ref-{other}"),
                })
            })
            .unwrap();
        env.insert(key::AWS_REGION.into(), "us-east-1".into());
        env
    }

    #[test]
    fn every_function_reads_exactly_the_environment_the_template_gives_it() {
        let template = Template::load().unwrap();
        let mut problems = Vec::new();
        for binary in functions::binaries().unwrap() {
            let env = deployed(&template, &binary);
            let (read, verdict) = keys_read(&binary, &env).unwrap();
            if let Err(e) = verdict {
                problems.push(format!(
                    "{binary}: the template's defaults are refused: {e}"
                ));
            }
            let given: BTreeSet<String> = env
                .keys()
                .filter(|k| !key::RUNTIME.contains(&k.as_str()))
                .cloned()
                .collect();
            for k in read.difference(&given) {
                problems.push(format!(
                    "{binary} reads {k}, which the template does not set"
                ));
            }
            for k in given.difference(&read) {
                problems.push(format!("{binary} is given {k}, which it never reads"));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// The EMF metric lines are JSON without a `level`, which Lambda's log-level filter files as
    /// INFO: a stack set to WARN would silently lose every metric (and the dashboard with them).
    #[test]
    fn no_log_level_drops_the_metric_lines() {
        let template = Template::load().unwrap();
        let allowed: Vec<String> = template
            .parameter("LogLevel")
            .and_then(|p| p.get("AllowedValues"))
            .and_then(serde_norway::Value::as_sequence)
            .expect("LogLevel lists its values")
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect();
        assert!(!allowed.is_empty());
        for level in &allowed {
            assert!(
                ["TRACE", "DEBUG", "INFO"].contains(&level.as_str()),
                "LogLevel {level} would drop the metric lines"
            );
        }
    }

    /// `sam build` of a `rust-cargolambda` function asks to enable a beta feature and aborts when
    /// nobody answers; the shipped configuration, beside the template, answers for it.
    #[test]
    fn sam_build_runs_unattended() {
        let config =
            std::fs::read_to_string(crate::template::workspace_root().join("infra/samconfig.toml"))
                .expect("infra/samconfig.toml");
        let build = config
            .split("[default.build.parameters]")
            .nth(1)
            .expect("a [default.build.parameters] table");
        let table = build.split("\n[").next().unwrap_or_default();
        assert!(
            table
                .lines()
                .any(|l| l.replace(' ', "") == "beta_features=true"),
            "{table}"
        );
        let template =
            std::fs::read_to_string(crate::template::workspace_root().join("infra/template.yaml"))
                .unwrap();
        assert!(template.contains("BuildMethod: rust-cargolambda"));
    }

    /// Lambda keeps at least 100 concurrent executions unreserved: an account with a lower quota
    /// (new accounts have 10) cannot deploy a stack that reserves any, so reserving is a choice.
    #[test]
    fn reserved_concurrency_is_a_choice_of_the_deployer() {
        let template = Template::load().unwrap();
        let mut reserving = 0;
        for (id, function) in template.resources_of_type("AWS::Serverless::Function") {
            let Some(reserved) = function
                .get("Properties")
                .and_then(|p| p.get("ReservedConcurrentExecutions"))
            else {
                continue;
            };
            reserving += 1;
            assert!(
                matches!(reserved, serde_norway::Value::Tagged(t) if t.tag == "If"),
                "{id} reserves concurrency unconditionally"
            );
        }
        assert_eq!(reserving, 5, "the scheduled functions");
        assert!(template.parameter("ReserveScheduledConcurrency").is_some());
    }

    #[test]
    fn every_tunable_is_a_documented_parameter_with_a_default() {
        let template = Template::load().unwrap();
        let mut problems = template.literal_environment_values();
        let doc = std::fs::read_to_string(
            crate::template::workspace_root().join("docs/configuration.md"),
        )
        .unwrap();
        for (name, default, description) in template.parameter_docs() {
            if description.is_none() {
                problems.push(format!("parameter {name} has no Description"));
            }
            let Some(default) = default else {
                problems.push(format!("parameter {name} has no Default"));
                continue;
            };
            let row = format!("| `{name}` | `{default}` |");
            if !doc.contains(&row) {
                problems.push(format!("docs/configuration.md has no row `{row}`"));
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}
