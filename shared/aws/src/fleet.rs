//! The [`Fleet`] port over the EC2 and Auto Scaling adapters of one account and region.

use std::sync::Arc;

use spot_domain::AwsError;
use spot_domain::governance::enforcement::{EnforceAction, Instance};
use spot_domain::governance::ports::{Deleted, Deletion, Enforced, Fleet, Fleets};
use spot_domain::governance::scope::Target;
use spot_domain::governance::waste::{Inventory, Usage};

use crate::autoscaling::AutoScaling;
use crate::clients::AwsContext;
use crate::ec2::Ec2;

#[derive(Debug, Clone)]
pub struct AwsFleet {
    ec2: Ec2,
    autoscaling: AutoScaling,
}

impl Fleet for AwsFleet {
    async fn waste_resources(&self) -> Result<Inventory, AwsError> {
        let (addresses, volumes, snapshots, images, stopped_sources) = futures::try_join!(
            self.ec2.addresses(),
            self.ec2.volumes(),
            self.ec2.snapshots(),
            self.ec2.images(),
            self.ec2.stopped_sources(),
        )?;
        Ok(Inventory {
            addresses,
            volumes,
            snapshots,
            images,
            usage: Usage::default(),
            stopped_sources,
        })
    }

    async fn usage(&self, images: &[String]) -> Result<Usage, AwsError> {
        // Read concurrently; any failure fails the lookup, because a missing list of users would
        // make used resources look like waste.
        let mut instance_usage = Usage::default();
        let mut template_usage = Usage::default();
        let mut configuration_usage = Usage::default();
        futures::try_join!(
            self.ec2.instance_images(images, &mut instance_usage),
            self.ec2.launch_template_usage(&mut template_usage),
            self.autoscaling
                .launch_configuration_usage(&mut configuration_usage),
        )?;
        let mut usage = instance_usage;
        for other in [template_usage, configuration_usage] {
            for (image, by) in other.images {
                usage.images.entry(image).or_insert(by);
            }
            for (snapshot, by) in other.snapshots {
                usage.snapshots.entry(snapshot).or_insert(by);
            }
        }
        Ok(usage)
    }

    async fn running_instances(&self) -> Result<Vec<Instance>, AwsError> {
        self.ec2.running_instances().await
    }

    async fn set_tag(
        &self,
        resource_ids: &[String],
        key: &str,
        value: &str,
    ) -> Result<(), AwsError> {
        self.ec2.set_tag(resource_ids, key, value).await
    }

    async fn remove_tag(&self, resource_ids: &[String], key: &str) -> Result<(), AwsError> {
        self.ec2.remove_tag(resource_ids, key).await
    }

    async fn delete(&self, deletion: &Deletion) -> Result<Deleted, AwsError> {
        self.ec2.delete(deletion).await
    }

    async fn enforce(
        &self,
        instance_id: &str,
        action: EnforceAction,
    ) -> Result<Enforced, AwsError> {
        self.ec2.enforce(instance_id, action).await
    }
}

/// Builds fleets from the function's context (own credentials or the member role).
#[derive(Debug, Clone)]
pub struct AwsFleets {
    ctx: Arc<AwsContext>,
}

impl AwsFleets {
    pub fn new(ctx: Arc<AwsContext>) -> Self {
        Self { ctx }
    }
}

impl Fleets for AwsFleets {
    type Fleet = AwsFleet;

    async fn fleet(&self, target: &Target) -> AwsFleet {
        let config = self.ctx.config_for_target(target).await;
        AwsFleet {
            ec2: Ec2::new(aws_sdk_ec2::Client::new(&config)),
            autoscaling: AutoScaling::new(aws_sdk_autoscaling::Client::new(&config)),
        }
    }
}
