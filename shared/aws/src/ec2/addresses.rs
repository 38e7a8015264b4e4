//! Elastic IPs: the address moves from the source to its clone at the cut-over, and back at a
//! rollback.

use spot_domain::AwsError;

use super::Ec2;
use crate::error::classify;

impl Ec2 {
    pub async fn move_address(
        &self,
        allocation_id: &str,
        instance_id: &str,
    ) -> Result<(), AwsError> {
        self.client
            .associate_address()
            .allocation_id(allocation_id)
            .instance_id(instance_id)
            .allow_reassociation(true)
            .send()
            .await
            .map_err(|e| classify("AssociateAddress", e))?;
        Ok(())
    }

    /// The Elastic IP associated with `instance_id`, if any: (allocation id, public IP).
    pub async fn address_on(
        &self,
        instance_id: &str,
    ) -> Result<Option<(String, String)>, AwsError> {
        let answer = self
            .client
            .describe_addresses()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("instance-id")
                    .values(instance_id)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify("DescribeAddresses", e))?;
        Ok(answer.addresses().first().and_then(|a| {
            Some((
                a.allocation_id()?.to_owned(),
                a.public_ip().unwrap_or_default().to_owned(),
            ))
        }))
    }

    pub async fn address_holder(&self, allocation_id: &str) -> Result<Option<String>, AwsError> {
        let answer = self
            .client
            .describe_addresses()
            .allocation_ids(allocation_id)
            .send()
            .await
            .map_err(|e| classify("DescribeAddresses", e))?;
        Ok(answer
            .addresses()
            .first()
            .and_then(|a| a.instance_id())
            .map(str::to_owned))
    }
}
