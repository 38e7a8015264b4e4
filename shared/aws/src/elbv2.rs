//! Elastic Load Balancing v2: where an instance stands in its group's target groups, and its
//! deregistration (connection draining starts).

use aws_sdk_elasticloadbalancingv2::Client;
use aws_sdk_elasticloadbalancingv2::error::ProvideErrorMetadata;
use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
use spot_domain::AwsError;

use crate::ec2::not_found;
use crate::error::classify;

/// ELB's deregistration delay when a target group does not say.
const DEFAULT_DEREGISTRATION_DELAY: u32 = 300;

/// ELBv2 in one account and region.
#[derive(Debug, Clone)]
pub struct LoadBalancing {
    client: Client,
}

impl LoadBalancing {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    pub async fn target_states(
        &self,
        target_groups: &[String],
        instance: &str,
    ) -> Result<Vec<(String, String)>, AwsError> {
        let mut states = Vec::new();
        for tg in target_groups {
            let answer = self
                .client
                .describe_target_health()
                .target_group_arn(tg)
                .targets(TargetDescription::builder().id(instance).build())
                .send()
                .await
                .map_err(|e| classify("DescribeTargetHealth", e))?;
            let state = answer
                .target_health_descriptions()
                .iter()
                .find(|d| d.target().and_then(|t| t.id()) == Some(instance))
                .and_then(|d| d.target_health())
                .and_then(|h| h.state())
                .map_or_else(|| "unused".to_owned(), |s| s.as_str().to_owned());
            states.push((tg.clone(), state));
        }
        Ok(states)
    }

    /// The longest deregistration delay of `target_groups`, in seconds (0 without any): how
    /// long a deregistered target drains before it leaves (ELB's default is 300 s).
    pub async fn deregistration_delay(&self, target_groups: &[String]) -> Result<u32, AwsError> {
        let mut longest = 0;
        for tg in target_groups {
            let answer = self
                .client
                .describe_target_group_attributes()
                .target_group_arn(tg)
                .send()
                .await
                .map_err(|e| classify("DescribeTargetGroupAttributes", e))?;
            let delay = answer
                .attributes()
                .iter()
                .find(|a| a.key() == Some("deregistration_delay.timeout_seconds"))
                .and_then(|a| a.value()?.parse().ok())
                .unwrap_or(DEFAULT_DEREGISTRATION_DELAY);
            longest = longest.max(delay);
        }
        Ok(longest)
    }

    /// The target groups (of instance targets) that have `instance` registered, in any state.
    pub async fn groups_of(&self, instance: &str) -> Result<Vec<String>, AwsError> {
        let mut arns = Vec::new();
        let mut marker = None;
        loop {
            let page = self
                .client
                .describe_target_groups()
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| classify("DescribeTargetGroups", e))?;
            arns.extend(
                page.target_groups()
                    .iter()
                    .filter(|g| g.target_type().is_none_or(|t| t.as_str() == "instance"))
                    .filter_map(|g| g.target_group_arn().map(str::to_owned)),
            );
            marker = page.next_marker().map(str::to_owned);
            if marker.is_none() {
                break;
            }
        }
        Ok(self
            .target_states(&arns, instance)
            .await?
            .into_iter()
            .filter(|(_, state)| state != "unused")
            .map(|(tg, _)| tg)
            .collect())
    }

    /// Registers `instance` in each of `target_groups` (idempotent: registering twice is a no-op).
    pub async fn register(&self, target_groups: &[String], instance: &str) -> Result<(), AwsError> {
        for tg in target_groups {
            self.client
                .register_targets()
                .target_group_arn(tg)
                .targets(TargetDescription::builder().id(instance).build())
                .send()
                .await
                .map_err(|e| classify("RegisterTargets", e))?;
        }
        Ok(())
    }

    pub async fn deregister(
        &self,
        target_groups: &[String],
        instance: &str,
    ) -> Result<(), AwsError> {
        for tg in target_groups {
            let target = TargetDescription::builder().id(instance).build();
            match self
                .client
                .deregister_targets()
                .target_group_arn(tg)
                .targets(target)
                .send()
                .await
            {
                Ok(_) => {}
                Err(e) if e.code() == Some("InvalidTarget") || not_found(e.code()) => {}
                Err(e) => return Err(classify("DeregisterTargets", e)),
            }
        }
        Ok(())
    }
}
