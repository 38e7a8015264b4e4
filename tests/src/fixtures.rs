//! Seeding the bed: instances in chosen AZs, registered accounts, and the sample events of
//! `events/` aimed at them.

use anyhow::{Context, Result, anyhow};
use aws_sdk_ec2::types::{
    InstanceMarketOptionsRequest, InstanceType, MarketType, Placement, ResourceType,
    RunInstancesMonitoringEnabled, Tag, TagSpecification,
};
use serde_json::Value;

use crate::template::workspace_root;

/// An AMI id; the bed's EC2 accepts any well-formed one.
pub const IMAGE: &str = "ami-0b5eed0000000000a";

/// An instance to launch, built fluently: `Launch::new("m5.large").in_az("us-east-1d").spot()`.
#[derive(Debug, Clone)]
pub struct Launch {
    pub instance_type: String,
    pub az: String,
    pub spot: bool,
    /// Detailed (1-minute) monitoring.
    pub monitored: bool,
    pub tags: Vec<(String, String)>,
    pub volume_gib: Option<i32>,
}

impl Launch {
    pub fn new(instance_type: &str) -> Self {
        Self {
            instance_type: instance_type.into(),
            az: "us-east-1a".into(),
            spot: false,
            monitored: false,
            tags: Vec::new(),
            volume_gib: None,
        }
    }

    pub fn in_az(mut self, az: &str) -> Self {
        self.az = az.into();
        self
    }

    pub fn spot(mut self) -> Self {
        self.spot = true;
        self
    }

    pub fn monitored(mut self) -> Self {
        self.monitored = true;
        self
    }

    /// With a root volume of `gib` GiB.
    pub fn volume_gib(mut self, gib: i32) -> Self {
        self.volume_gib = Some(gib);
        self
    }

    pub fn tag(mut self, key: &str, value: &str) -> Self {
        self.tags.push((key.into(), value.into()));
        self
    }

    /// Launches it and returns the instance id.
    pub async fn run(&self, ec2: &aws_sdk_ec2::Client) -> Result<String> {
        self.run_from(ec2, IMAGE).await
    }

    /// Launches it from `image`.
    pub async fn run_from(&self, ec2: &aws_sdk_ec2::Client, image: &str) -> Result<String> {
        let mut request = ec2
            .run_instances()
            .image_id(image)
            .min_count(1)
            .max_count(1)
            .instance_type(InstanceType::from(self.instance_type.as_str()))
            .placement(Placement::builder().availability_zone(&self.az).build())
            .monitoring(
                RunInstancesMonitoringEnabled::builder()
                    .enabled(self.monitored)
                    .build(),
            );
        if let Some(gib) = self.volume_gib {
            request = request.block_device_mappings(
                aws_sdk_ec2::types::BlockDeviceMapping::builder()
                    .device_name("/dev/xvda")
                    .ebs(
                        aws_sdk_ec2::types::EbsBlockDevice::builder()
                            .volume_size(gib)
                            .build(),
                    )
                    .build(),
            );
        }
        if self.spot {
            request = request.instance_market_options(
                InstanceMarketOptionsRequest::builder()
                    .market_type(MarketType::Spot)
                    .build(),
            );
        }
        if !self.tags.is_empty() {
            let mut spec = TagSpecification::builder().resource_type(ResourceType::Instance);
            for (k, v) in &self.tags {
                spec = spec.tags(Tag::builder().key(k).value(v).build());
            }
            request = request.tag_specifications(spec.build());
        }
        let answer = request.send().await.context("RunInstances")?;
        answer
            .instances()
            .first()
            .and_then(|i| i.instance_id())
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("RunInstances returned no instance"))
    }
}

/// A sample event from `events/`, to be aimed at a seeded instance.
#[derive(Debug, Clone)]
pub struct Event(pub Value);

impl Event {
    pub fn load(file: &str) -> Result<Self> {
        let path = workspace_root().join("events").join(file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(Self(
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?,
        ))
    }

    /// Sets the instance, in `detail.instance-id` and in `resources`.
    pub fn instance(mut self, instance_id: &str) -> Self {
        let account = self.0["account"].as_str().unwrap_or_default().to_owned();
        let region = self.0["region"].as_str().unwrap_or_default().to_owned();
        self.0["detail"]["instance-id"] = instance_id.into();
        self.0["resources"] = serde_json::json!([format!(
            "arn:aws:ec2:{region}:{account}:instance/{instance_id}"
        )]);
        self
    }

    pub fn account(mut self, account: &str) -> Self {
        self.0["account"] = account.into();
        let instance = self.0["detail"]["instance-id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.instance(&instance)
    }

    pub fn id(mut self, id: &str) -> Self {
        self.0["id"] = id.into();
        self
    }

    pub fn time(mut self, rfc3339: &str) -> Self {
        self.0["time"] = rfc3339.into();
        self
    }

    pub fn json(&self) -> &Value {
        &self.0
    }
}
