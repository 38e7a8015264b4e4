//! The bed's route from moto's Step Functions to our Rust Lambdas: a state machine's Task runs the
//! real handler binary, and a `Catch` routes on the handler's stable error name.

use spot_domain::ErrorName;
use std::time::Duration;

use anyhow::{Result, bail};
use aws_sdk_sfn::types::ExecutionStatus;
use serde_json::{Value, json};
use testbed::{Bed, Launch};

use crate::support::*;

async fn run(
    sfn: &aws_sdk_sfn::Client,
    machine: &str,
    input: &Value,
) -> Result<(ExecutionStatus, Value, Vec<String>)> {
    let started = sfn
        .start_execution()
        .state_machine_arn(machine)
        .name(unique_id())
        .input(input.to_string())
        .send()
        .await?;
    for _ in 0..300 {
        let execution = sfn
            .describe_execution()
            .execution_arn(started.execution_arn())
            .send()
            .await?;
        if execution.status() != &ExecutionStatus::Running {
            let history = sfn
                .get_execution_history()
                .execution_arn(started.execution_arn())
                .send()
                .await?;
            let entered = history
                .events()
                .iter()
                .filter_map(|e| e.state_entered_event_details().map(|d| d.name().to_owned()))
                .collect();
            let output = execution
                .output()
                .map(serde_json::from_str)
                .transpose()?
                .unwrap_or(Value::Null);
            return Ok((execution.status().clone(), output, entered));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("execution did not finish")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_machine_task_runs_the_rust_handler_and_catches_its_named_errors() -> Result<()> {
    let h = Harness::start("sfn").await?;
    let function = format!("interruption-handler-{}", &unique_id()[..8]);
    h.bed
        .register_function(
            &function,
            &h.tables.function("interruption-handler", &h.bed.endpoint)?,
        )
        .await?;
    let definition = json!({
        "StartAt": "Quarantine",
        "States": {
            "Quarantine": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": format!("arn:aws:lambda:us-east-1:123456789012:function:{function}"), "Payload.$": "$"},
                "ResultSelector": {"action.$": "$.Payload.action", "pool.$": "$.Payload.pool"},
                "Catch": [{"ErrorEquals": [ErrorName::InvalidEvent.as_str()], "ResultPath": "$.error", "Next": "Rejected"}],
                "End": true
            },
            "Rejected": {"Type": "Pass", "End": true}
        }
    });
    let sfn = aws_sdk_sfn::Client::new(&Bed::connect().await?.home);
    let machine = sfn
        .create_state_machine()
        .name(format!("bed-{function}"))
        .definition(definition.to_string())
        .role_arn("arn:aws:iam::123456789012:role/bed-states")
        .send()
        .await?;
    let instance = Launch::new("m5.large")
        .in_az("us-east-1c")
        .spot()
        .run(&h.bed.ec2())
        .await?;

    let (status, output, path) = run(
        &sfn,
        machine.state_machine_arn(),
        event(WARNING, &instance)?.json(),
    )
    .await?;
    assert_eq!(status, ExecutionStatus::Succeeded, "{output}");
    assert_eq!(
        output,
        json!({"action": "quarantined", "pool": "us-east-1#use1-az2#m5.large"})
    );
    assert_eq!(path, ["Quarantine"]);

    let mut bad = event(WARNING, &instance)?;
    bad.0["detail"]
        .as_object_mut()
        .unwrap()
        .remove("instance-id");
    let (status, output, path) = run(&sfn, machine.state_machine_arn(), bad.json()).await?;
    assert_eq!(status, ExecutionStatus::Succeeded, "{output}");
    assert_eq!(path, ["Quarantine", "Rejected"]);
    assert_eq!(
        output["error"]["Error"],
        ErrorName::InvalidEvent.as_str(),
        "{output}"
    );
    Ok(())
}
