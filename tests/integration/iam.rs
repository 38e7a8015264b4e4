//! The bed enforces IAM (infra/local/moto_server.py): each function runs as a role holding the
//! actions of its template policy, and each member account holds the member template's roles, so a
//! policy that misses an action fails a test. What moto does not evaluate (resource ARNs,
//! conditions, the Deny guards) is checked statically in tests/src/iam.rs.

use anyhow::Result;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::InstanceType;
use spot_domain::{Environment, ErrorName};
use testbed::{Bed, HOME_ACCOUNT, Launch};

use crate::support::*;

fn code<E: ProvideErrorMetadata>(e: &E) -> String {
    e.code().unwrap_or("(none)").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_may_call_only_the_actions_of_its_template_policy() -> Result<()> {
    let bed = Bed::connect().await?;
    let tables = bed.create_tables("iam-actions").await?;
    let handler = tables.function_config(&bed.home, "interruption-handler");

    let ec2 = aws_sdk_ec2::Client::new(&handler);
    ec2.describe_instances().send().await?;
    let refused = ec2
        .terminate_instances()
        .instance_ids("i-0123456789abcdef0")
        .send()
        .await
        .expect_err("the interruption handler may not terminate instances");
    assert_eq!(code(&refused.into_service_error()), "UnauthorizedOperation");

    let quarantine = tables.name("QuarantineTable");
    let dynamodb = aws_sdk_dynamodb::Client::new(&handler);
    let key = aws_sdk_dynamodb::types::AttributeValue::S("pool".into());
    dynamodb
        .get_item()
        .table_name(quarantine)
        .key("pool", key.clone())
        .send()
        .await?;
    let refused = dynamodb
        .delete_item()
        .table_name(quarantine)
        .key("pool", key)
        .send()
        .await
        .expect_err("the interruption handler may not delete quarantines");
    assert_eq!(code(&refused.into_service_error()), "AccessDeniedException");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_account_holds_the_member_templates_roles_with_their_actions_only() -> Result<()> {
    let bed = Bed::connect().await?;
    let tables = bed.create_tables("iam-member").await?;
    let member = "616161616161";
    let instance = Launch::new("m5.large")
        .run(&aws_sdk_ec2::Client::new(&bed.member(member).await?))
        .await?;
    let switch_plan = tables.function_config(&bed.home, "switch-plan");
    let sts = aws_sdk_sts::Client::new(&switch_plan);
    let as_role = |suffix: &str| {
        let sts = sts.clone();
        let arn = format!("{}{suffix}", Bed::role_arn(member));
        let home = bed.home.clone();
        async move {
            let c = sts
                .assume_role()
                .role_arn(arn)
                .role_session_name("iam-test")
                .send()
                .await?
                .credentials
                .ok_or_else(|| anyhow::anyhow!("no credentials"))?;
            anyhow::Ok(
                home.into_builder()
                    .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                        c.access_key_id,
                        c.secret_access_key,
                        Some(c.session_token),
                        None,
                        "member",
                    )))
                    .build(),
            )
        }
    };

    // The read role reads, and stops nothing.
    let read = aws_sdk_ec2::Client::new(&as_role("").await?);
    read.describe_instances()
        .instance_ids(&instance)
        .send()
        .await?;
    let refused = read
        .stop_instances()
        .instance_ids(&instance)
        .send()
        .await
        .expect_err("the read role may not stop instances");
    assert_eq!(code(&refused.into_service_error()), "UnauthorizedOperation");

    // The switch role images and launches; it may not change an Auto Scaling group's members.
    let switch = as_role("-switch").await?;
    let ec2 = aws_sdk_ec2::Client::new(&switch);
    ec2.create_image()
        .instance_id(&instance)
        .name("iam-test")
        .send()
        .await?;
    ec2.run_instances()
        .image_id(testbed::fixtures::IMAGE)
        .instance_type(InstanceType::M5Large)
        .min_count(1)
        .max_count(1)
        .send()
        .await?;
    let refused = aws_sdk_autoscaling::Client::new(&switch)
        .detach_instances()
        .auto_scaling_group_name("any")
        .instance_ids(&instance)
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .expect_err("the switch role may not detach group members");
    assert_eq!(code(&refused.into_service_error()), "AccessDenied");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_run_with_a_role_that_misses_an_action_fails_with_access_denied() -> Result<()> {
    let bed = Bed::connect().await?;
    // The approval function's role: no ec2:DescribeInstances, no quarantine table.
    let approval = &bed.function_credentials().await?["saga-approval"];
    let mut h = Harness::start_with(
        "iam-missing",
        &[
            ("AWS_ACCESS_KEY_ID", approval.access_key_id()),
            ("AWS_SECRET_ACCESS_KEY", approval.secret_access_key()),
            (
                "AWS_SESSION_TOKEN",
                approval.session_token().unwrap_or_default(),
            ),
        ],
    )
    .await?;
    let instance = Launch::new("m5.large").spot().run(&bed.ec2()).await?;
    h.register(HOME_ACCOUNT, Environment::Prod).await?;

    let error = h
        .invoke(&event(WARNING, &instance)?.account(HOME_ACCOUNT))
        .await?
        .err()?;

    assert_eq!(
        error.error_type,
        ErrorName::AccessDenied.as_str(),
        "{}",
        error.error_message
    );
    assert!(h.items().await?.is_empty());
    Ok(())
}
