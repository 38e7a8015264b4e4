//! Where an instance runs, with its AZ **ID**: the interruption handler's lookup, with clients and
//! AZ maps cached per account and region.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use spot_domain::instance::{InstanceDirectory, Placement};
use spot_domain::{Access, AwsError};

use crate::clients::{AwsContext, lock};
use crate::error::{classify, invalid_data};

type Scope = (Access, String);

/// [`InstanceDirectory`] over DescribeInstances, with clients and AZ name→ID maps cached per
/// account and region for the life of the process (an account's AZ mapping never changes).
#[derive(Debug)]
pub struct Ec2Directory {
    ctx: Arc<AwsContext>,
    clients: Mutex<HashMap<Scope, Client>>,
    az_ids: Mutex<HashMap<Scope, HashMap<String, String>>>,
}

impl Ec2Directory {
    pub fn new(ctx: Arc<AwsContext>) -> Self {
        Self {
            ctx,
            clients: Mutex::default(),
            az_ids: Mutex::default(),
        }
    }

    async fn client(&self, scope: &Scope) -> Client {
        if let Some(client) = lock(&self.clients).get(scope) {
            return client.clone();
        }
        let client = Client::new(&self.ctx.config_for(&scope.0, &scope.1).await);
        lock(&self.clients).insert(scope.clone(), client.clone());
        client
    }

    /// The AZ ID of `az_name` in this account; one DescribeAvailabilityZones per account and region.
    async fn az_id(
        &self,
        client: &Client,
        scope: &Scope,
        az_name: &str,
    ) -> Result<String, AwsError> {
        if let Some(id) = lock(&self.az_ids).get(scope).and_then(|m| m.get(az_name)) {
            return Ok(id.clone());
        }
        let zones = client
            .describe_availability_zones()
            .send()
            .await
            .map_err(|e| classify("DescribeAvailabilityZones", e))?;
        let map: HashMap<String, String> = zones
            .availability_zones()
            .iter()
            .filter_map(|z| Some((z.zone_name()?.to_owned(), z.zone_id()?.to_owned())))
            .collect();
        let id = map.get(az_name).cloned();
        lock(&self.az_ids).insert(scope.clone(), map);
        id.ok_or_else(|| {
            invalid_data(
                "DescribeAvailabilityZones",
                format!("no zone id for `{az_name}` in {}", scope.1),
            )
        })
    }
}

impl InstanceDirectory for Ec2Directory {
    async fn placement(
        &self,
        access: &Access,
        region: &str,
        instance_id: &str,
    ) -> Result<Option<Placement>, AwsError> {
        let scope = (access.clone(), region.to_owned());
        let client = self.client(&scope).await;
        let answer = match client
            .describe_instances()
            .instance_ids(instance_id)
            .send()
            .await
        {
            Ok(answer) => answer,
            Err(err) if err.code() == Some("InvalidInstanceID.NotFound") => return Ok(None),
            Err(err) => return Err(classify("DescribeInstances", err)),
        };
        let Some(instance) = answer
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(instance_id))
        else {
            return Ok(None);
        };
        let missing =
            |what: &str| invalid_data("DescribeInstances", format!("{instance_id} has no {what}"));
        let instance_type = instance
            .instance_type()
            .map(|t| t.as_str().to_owned())
            .ok_or_else(|| missing("instance type"))?;
        let placement = instance.placement().ok_or_else(|| missing("placement"))?;
        let az_name = placement
            .availability_zone()
            .ok_or_else(|| missing("availability zone"))?
            .to_owned();
        // Recent EC2 answers carry the AZ ID; older ones (and emulators) need the account's map.
        let az_id = match placement.availability_zone_id() {
            Some(id) => id.to_owned(),
            None => self.az_id(&client, &scope, &az_name).await?,
        };
        Ok(Some(Placement {
            instance_type,
            az_name,
            az_id,
            state: instance
                .state()
                .and_then(|s| s.name())
                .map_or_else(String::new, |n| n.as_str().to_owned()),
            lifecycle: instance.instance_lifecycle().map(|l| l.as_str().to_owned()),
            tags: instance
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
                .collect(),
        }))
    }
}
