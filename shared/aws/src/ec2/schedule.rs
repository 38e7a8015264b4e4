//! Scheduled instances for the hibernation reconciler: one paginated `DescribeInstances` pass over
//! every instance tagged `spot-optimizer:schedule`, and batched stops and starts.

use std::collections::BTreeSet;

use aws_sdk_ec2::types::Filter;
use spot_domain::AwsError;
use spot_domain::hibernation::targets::ScheduledInstance;
use spot_domain::tags::SCHEDULE_TAG;

use super::{Ec2, PAGE, tags, time};
use crate::error::classify;

/// The most instance ids one stop or start call is given.
pub const BATCH: usize = 500;

/// One instance's outcome in a batch: done, or why not.
pub type Outcome = (String, Result<(), String>);

impl Ec2 {
    /// Every instance carrying the schedule tag, in any state but terminated.
    pub async fn scheduled(&self) -> Result<Vec<ScheduledInstance>, AwsError> {
        let reservations: Vec<_> = self
            .client
            .describe_instances()
            .filters(
                Filter::builder()
                    .name("tag-key")
                    .values(SCHEDULE_TAG)
                    .build(),
            )
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .set_values(Some(
                        ["pending", "running", "stopping", "stopped"]
                            .map(str::to_owned)
                            .to_vec(),
                    ))
                    .build(),
            )
            .max_results(PAGE)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeInstances", e))?;
        Ok(reservations
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| {
                Some(ScheduledInstance {
                    instance_id: i.instance_id()?.to_owned(),
                    instance_type: i
                        .instance_type()
                        .map(|t| t.as_str().to_owned())
                        .unwrap_or_default(),
                    state: i
                        .state()
                        .and_then(|s| s.name())
                        .map(|n| n.as_str().to_owned())
                        .unwrap_or_default(),
                    tags: tags(i.tags()),
                    spot_request: i.spot_instance_request_id().map(str::to_owned),
                    spot: i.instance_lifecycle().map(|l| l.as_str()) == Some("spot"),
                    hibernation_configured: i
                        .hibernation_options()
                        .and_then(|h| h.configured())
                        .unwrap_or(false),
                    launched_at: time(i.launch_time()),
                })
            })
            .collect())
    }

    /// Which of `requests` are one-time Spot requests (their instances cannot be stopped). A
    /// request EC2 no longer knows counts as one-time: stopping is then never tried.
    pub async fn one_time_requests(
        &self,
        requests: &[String],
    ) -> Result<BTreeSet<String>, AwsError> {
        if requests.is_empty() {
            return Ok(BTreeSet::new());
        }
        let answer = self
            .client
            .describe_spot_instance_requests()
            .set_spot_instance_request_ids(Some(requests.to_vec()))
            .send()
            .await;
        let found = match answer {
            Ok(a) => a.spot_instance_requests().to_vec(),
            Err(e) if super::not_found(aws_sdk_ec2::error::ProvideErrorMetadata::code(&e)) => {
                Vec::new()
            }
            Err(e) => return Err(classify("DescribeSpotInstanceRequests", e)),
        };
        let persistent: BTreeSet<&str> = found
            .iter()
            .filter(|r| r.r#type().map(|t| t.as_str()) == Some("persistent"))
            .filter_map(|r| r.spot_instance_request_id())
            .collect();
        Ok(requests
            .iter()
            .filter(|r| !persistent.contains(r.as_str()))
            .cloned()
            .collect())
    }

    /// Stops (or hibernates) `ids`, [`BATCH`] per call. A refused batch is retried one instance
    /// at a time, so one instance that cannot stop never keeps the others running.
    pub async fn stop_all(&self, ids: &[String], hibernate: bool) -> Vec<Outcome> {
        self.batched(ids, "StopInstances", |chunk| async move {
            self.client
                .stop_instances()
                .set_instance_ids(Some(chunk))
                .hibernate(hibernate)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("StopInstances", e))
        })
        .await
    }

    /// Starts `ids`, as [`Ec2::stop_all`] stops them.
    pub async fn start_all(&self, ids: &[String]) -> Vec<Outcome> {
        self.batched(ids, "StartInstances", |chunk| async move {
            self.client
                .start_instances()
                .set_instance_ids(Some(chunk))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify("StartInstances", e))
        })
        .await
    }

    async fn batched<F, Fut>(&self, ids: &[String], operation: &str, call: F) -> Vec<Outcome>
    where
        F: Fn(Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Result<(), AwsError>>,
    {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH) {
            match call(chunk.to_vec()).await {
                Ok(()) => out.extend(chunk.iter().map(|id| (id.clone(), Ok(())))),
                Err(e) if chunk.len() == 1 => out.push((chunk[0].clone(), Err(e.to_string()))),
                Err(e) => {
                    tracing::warn!(operation, error = %e, "batch refused; one at a time");
                    for id in chunk {
                        let one = call(vec![id.clone()]).await.map_err(|e| e.to_string());
                        out.push((id.clone(), one));
                    }
                }
            }
        }
        out
    }
}
