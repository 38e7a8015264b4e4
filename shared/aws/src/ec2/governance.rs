//! EC2 for the scheduled functions: the waste inventory and what uses it, running instances, flag
//! tags, deletions (re-checked first) and enforcement. Every list call is paginated.

use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{Filter, Tag};
use chrono::{DateTime, Utc};
use spot_domain::AwsError;
use spot_domain::governance::enforcement::{EnforceAction, Instance};
use spot_domain::governance::ports::{Deleted, Deletion, Enforced};
use spot_domain::governance::waste::{
    Address, BACKUP_TAG, Image, Snapshot, StoppedSource, Usage, Volume, WasteKind,
};
use spot_domain::tags::{
    CREATED_VIA, PRESERVED_TAG, SWITCH_TAG, SWITCHED_AT_TAG, VIA_SWITCH, WASTE_TAG,
};

use super::{Ec2, PAGE, not_found, tags, time};
use crate::error::{classify, invalid_data};

impl Ec2 {
    pub async fn addresses(&self) -> Result<Vec<Address>, AwsError> {
        let answer = self
            .client
            .describe_addresses()
            .send()
            .await
            .map_err(|e| classify("DescribeAddresses", e))?;
        Ok(answer
            .addresses()
            .iter()
            .filter_map(|a| {
                Some(Address {
                    allocation_id: a.allocation_id()?.to_owned(),
                    public_ip: a.public_ip().unwrap_or_default().to_owned(),
                    association_id: a.association_id().map(str::to_owned),
                    tags: tags(a.tags()),
                })
            })
            .collect())
    }

    pub async fn volumes(&self) -> Result<Vec<Volume>, AwsError> {
        self.volumes_where(None).await
    }

    /// The volumes a failover kept (tagged with the instance they came from).
    pub async fn preserved_volumes(&self) -> Result<Vec<Volume>, AwsError> {
        let kept = Filter::builder()
            .name("tag-key")
            .values(PRESERVED_TAG)
            .build();
        self.volumes_where(Some(kept)).await
    }

    async fn volumes_where(&self, filter: Option<Filter>) -> Result<Vec<Volume>, AwsError> {
        let volumes: Vec<_> = self
            .client
            .describe_volumes()
            .set_filters(filter.map(|f| vec![f]))
            .max_results(PAGE)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeVolumes", e))?;
        Ok(volumes.iter().filter_map(volume).collect())
    }

    pub async fn snapshots(&self) -> Result<Vec<Snapshot>, AwsError> {
        let snapshots: Vec<_> = self
            .client
            .describe_snapshots()
            .owner_ids("self")
            .max_results(PAGE)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeSnapshots", e))?;
        Ok(snapshots.iter().filter_map(snapshot).collect())
    }

    /// The account's own images, disabled and deprecated ones included.
    pub async fn images(&self) -> Result<Vec<Image>, AwsError> {
        let images: Vec<_> = self
            .client
            .describe_images()
            .owners("self")
            .include_deprecated(true)
            .include_disabled(true)
            .max_results(PAGE)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeImages", e))?;
        Ok(images
            .iter()
            .filter_map(|i| {
                Some(Image {
                    image_id: i.image_id()?.to_owned(),
                    created: i
                        .creation_date()
                        .and_then(|d| DateTime::parse_from_rfc3339(d).ok())
                        .map(|d| d.with_timezone(&Utc)),
                    snapshot_ids: i
                        .block_device_mappings()
                        .iter()
                        .filter_map(|m| m.ebs()?.snapshot_id().map(str::to_owned))
                        .collect(),
                    public: i.public().unwrap_or(false),
                    tags: tags(i.tags()),
                })
            })
            .collect())
    }

    /// Which of `images` instances (in any state) use: one filtered, paginated list per 200 images.
    pub async fn instance_images(
        &self,
        images: &[String],
        usage: &mut Usage,
    ) -> Result<(), AwsError> {
        for chunk in images.chunks(200) {
            let reservations: Vec<_> = self
                .client
                .describe_instances()
                .filters(
                    Filter::builder()
                        .name("image-id")
                        .set_values(Some(chunk.to_vec()))
                        .build(),
                )
                .max_results(PAGE)
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| classify("DescribeInstances", e))?;
            for instance in reservations.iter().flat_map(|r| r.instances()) {
                if let (Some(image), Some(id)) = (instance.image_id(), instance.instance_id()) {
                    let state = instance
                        .state()
                        .and_then(|s| s.name())
                        .map_or("", |n| n.as_str());
                    usage.use_image(image, || format!("instance {id} ({state})"));
                }
            }
        }
        Ok(())
    }

    /// Images and snapshots used by any version of any launch template.
    pub async fn launch_template_usage(&self, usage: &mut Usage) -> Result<(), AwsError> {
        let templates: Vec<_> = self
            .client
            .describe_launch_templates()
            .max_results(200)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("DescribeLaunchTemplates", e))?;
        // Versions can only be listed per template; one paginated call each.
        let ids: Vec<String> = templates
            .iter()
            .filter_map(|t| t.launch_template_id().map(str::to_owned))
            .collect();
        let versions = futures::future::try_join_all(ids.iter().map(|id| async move {
            let versions: Vec<_> = self
                .client
                .describe_launch_template_versions()
                .launch_template_id(id)
                .max_results(200)
                .into_paginator()
                .items()
                .send()
                .try_collect()
                .await
                .map_err(|e| classify("DescribeLaunchTemplateVersions", e))?;
            Ok::<_, AwsError>(versions)
        }))
        .await?;
        for version in versions.iter().flatten() {
            let by = || {
                format!(
                    "launch template {} version {}",
                    version.launch_template_id().unwrap_or_default(),
                    version.version_number().unwrap_or_default()
                )
            };
            let Some(data) = version.launch_template_data() else {
                continue;
            };
            if let Some(image) = data.image_id() {
                usage.use_image(image, by);
            }
            for mapping in data.block_device_mappings() {
                if let Some(snapshot) = mapping.ebs().and_then(|e| e.snapshot_id()) {
                    usage.use_snapshot(snapshot, by);
                }
            }
        }
        Ok(())
    }

    pub async fn running_instances(&self) -> Result<Vec<Instance>, AwsError> {
        let reservations: Vec<_> = self
            .client
            .describe_instances()
            .filters(
                Filter::builder()
                    .name("instance-state-name")
                    .values("pending")
                    .values("running")
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
                Some(Instance {
                    instance_id: i.instance_id()?.to_owned(),
                    state: i
                        .state()
                        .and_then(|s| s.name())
                        .map(|n| n.as_str().to_owned())
                        .unwrap_or_default(),
                    instance_type: i
                        .instance_type()
                        .map(|t| t.as_str().to_owned())
                        .unwrap_or_default(),
                    launch_time: time(i.launch_time()),
                    tags: tags(i.tags()),
                })
            })
            .collect())
    }

    pub async fn set_tag(
        &self,
        resource_ids: &[String],
        key: &str,
        value: &str,
    ) -> Result<(), AwsError> {
        self.client
            .create_tags()
            .set_resources(Some(resource_ids.to_vec()))
            .tags(Tag::builder().key(key).value(value).build())
            .send()
            .await
            .map_err(|e| classify("CreateTags", e))?;
        Ok(())
    }

    pub async fn remove_tag(&self, resource_ids: &[String], key: &str) -> Result<(), AwsError> {
        match self
            .client
            .delete_tags()
            .set_resources(Some(resource_ids.to_vec()))
            .tags(Tag::builder().key(key).build())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if not_found(e.code()) => Ok(()),
            Err(e) => Err(classify("DeleteTags", e)),
        }
    }

    pub async fn delete(&self, deletion: &Deletion) -> Result<Deleted, AwsError> {
        // The owner's notice is what the grace period stood on: gone or changed, nothing is deleted.
        let notice = self.tag_of(&deletion.resource_id, WASTE_TAG).await?;
        if deletion.announced.is_empty()
            || !notice
                .as_deref()
                .is_some_and(|n| n.contains(&deletion.announced))
        {
            return Ok(Deleted::Refused(format!(
                "its {WASTE_TAG} tag says {:?}, not the deadline announced",
                notice.unwrap_or_default()
            )));
        }
        match deletion.kind {
            WasteKind::ElasticIp => self.release_address(&deletion.resource_id).await,
            WasteKind::EbsVolume => self.delete_volume(deletion).await,
            WasteKind::EbsSnapshot => {
                self.delete_snapshot(&deletion.resource_id)
                    .await
                    .map(|()| Deleted::Done {
                        backup_snapshot_id: None,
                    })
            }
            WasteKind::SwitchSource => self.terminate_source(deletion, notice.as_deref()).await,
            WasteKind::Ami => {
                match self
                    .client
                    .deregister_image()
                    .image_id(&deletion.resource_id)
                    .send()
                    .await
                {
                    Ok(_) => {}
                    Err(e) if not_found(e.code()) => {}
                    Err(e) => return Err(classify("DeregisterImage", e)),
                }
                for snapshot in &deletion.snapshot_ids {
                    self.delete_snapshot(snapshot).await?;
                }
                Ok(Deleted::Done {
                    backup_snapshot_id: None,
                })
            }
        }
    }

    /// The value of tag `key` on `resource_id`, if it has one.
    async fn tag_of(&self, resource_id: &str, key: &str) -> Result<Option<String>, AwsError> {
        let answer = self
            .client
            .describe_tags()
            .filters(
                Filter::builder()
                    .name("resource-id")
                    .values(resource_id)
                    .build(),
            )
            .filters(Filter::builder().name("key").values(key).build())
            .send()
            .await
            .map_err(|e| classify("DescribeTags", e))?;
        Ok(answer
            .tags()
            .iter()
            .find(|t| t.key() == Some(key))
            .map(|t| t.value().unwrap_or_default().to_owned()))
    }

    /// Re-reads the address first: an address associated since the scan is never released.
    async fn release_address(&self, allocation_id: &str) -> Result<Deleted, AwsError> {
        let current = match self
            .client
            .describe_addresses()
            .allocation_ids(allocation_id)
            .send()
            .await
        {
            Ok(answer) => answer,
            Err(e) if not_found(e.code()) => {
                return Ok(Deleted::Done {
                    backup_snapshot_id: None,
                });
            }
            Err(e) => return Err(classify("DescribeAddresses", e)),
        };
        let Some(address) = current.addresses().first() else {
            return Ok(Deleted::Done {
                backup_snapshot_id: None,
            });
        };
        if let Some(association) = address.association_id() {
            return Ok(Deleted::Refused(format!(
                "associated since the scan ({association})"
            )));
        }
        match self
            .client
            .release_address()
            .allocation_id(allocation_id)
            .send()
            .await
        {
            Ok(_) => Ok(Deleted::Done {
                backup_snapshot_id: None,
            }),
            Err(e) if not_found(e.code()) => Ok(Deleted::Done {
                backup_snapshot_id: None,
            }),
            Err(e) => Err(classify("ReleaseAddress", e)),
        }
    }

    /// Re-reads the volume, snapshots it (once: an earlier run's snapshot is reused), and deletes it
    /// only when the snapshot is complete.
    async fn delete_volume(&self, deletion: &Deletion) -> Result<Deleted, AwsError> {
        let volume_id = &deletion.resource_id;
        let current = match self
            .client
            .describe_volumes()
            .volume_ids(volume_id)
            .send()
            .await
        {
            Ok(answer) => answer,
            Err(e) if not_found(e.code()) => {
                return Ok(Deleted::Done {
                    backup_snapshot_id: deletion.backup_snapshot_id.clone(),
                });
            }
            Err(e) => return Err(classify("DescribeVolumes", e)),
        };
        let state = current
            .volumes()
            .first()
            .and_then(|v| v.state())
            .map(|s| s.as_str().to_owned());
        match state.as_deref() {
            None => {
                return Ok(Deleted::Done {
                    backup_snapshot_id: deletion.backup_snapshot_id.clone(),
                });
            }
            Some("available") => {}
            Some(other) => {
                return Ok(Deleted::Refused(format!(
                    "volume is {other} since the scan"
                )));
            }
        }
        let mut backup = deletion.backup_snapshot_id.clone();
        if deletion.backup {
            let (snapshot_id, complete) = self.backup(volume_id, backup.clone()).await?;
            backup = Some(snapshot_id.clone());
            if !complete {
                return Ok(Deleted::BackupPending {
                    backup_snapshot_id: snapshot_id,
                });
            }
        }
        match self
            .client
            .delete_volume()
            .volume_id(volume_id)
            .send()
            .await
        {
            Ok(_) => Ok(Deleted::Done {
                backup_snapshot_id: backup,
            }),
            Err(e) if not_found(e.code()) => Ok(Deleted::Done {
                backup_snapshot_id: backup,
            }),
            Err(e) => Err(classify("DeleteVolume", e)),
        }
    }

    /// The backup snapshot of `volume_id` (tagged [`BACKUP_TAG`]): `known` or one an earlier run
    /// took (found by its tag: never two), else a new one; and whether it is complete.
    async fn backup(
        &self,
        volume_id: &str,
        known: Option<String>,
    ) -> Result<(String, bool), AwsError> {
        let mut backup = known;
        // A run that crashed after snapshotting left a tagged snapshot: reuse it, never take two.
        if backup.is_none() {
            backup = self
                .client
                .describe_snapshots()
                .owner_ids("self")
                .filters(
                    Filter::builder()
                        .name(format!("tag:{BACKUP_TAG}"))
                        .values(volume_id)
                        .build(),
                )
                .send()
                .await
                .map_err(|e| classify("DescribeSnapshots", e))?
                .snapshots()
                .first()
                .and_then(|s| s.snapshot_id())
                .map(str::to_owned);
        }
        let snapshot_id = match backup {
            Some(id) => id,
            None => self
                .client
                .create_snapshot()
                .volume_id(volume_id)
                .description(format!(
                    "spot-optimizer: backup of {volume_id} before deleting it as waste"
                ))
                .tag_specifications(
                    aws_sdk_ec2::types::TagSpecification::builder()
                        .resource_type(aws_sdk_ec2::types::ResourceType::Snapshot)
                        .tags(Tag::builder().key(BACKUP_TAG).value(volume_id).build())
                        .tags(
                            Tag::builder()
                                .key("ManagedBy")
                                .value("SpotOptimizer")
                                .build(),
                        )
                        .build(),
                )
                .send()
                .await
                .map_err(|e| classify("CreateSnapshot", e))?
                .snapshot_id()
                .map(str::to_owned)
                .ok_or_else(|| invalid_data("CreateSnapshot", "no snapshot id"))?,
        };
        let state = self
            .client
            .describe_snapshots()
            .snapshot_ids(&snapshot_id)
            .send()
            .await
            .map_err(|e| classify("DescribeSnapshots", e))?
            .snapshots()
            .first()
            .and_then(|s| s.state())
            .map(|s| s.as_str().to_owned());
        Ok((snapshot_id, state.as_deref() == Some("completed")))
    }

    /// A switch's stopped source past its retention: re-read (still stopped, still the switch's),
    /// its volumes tagged as part of it and snapshotted (each once), then terminated only when
    /// every backup is complete. The backups' ids, comma-separated, are the record's.
    /// `notice`: its `spot-optimizer:waste` tag, as [`Ec2::delete`] read it.
    async fn terminate_source(
        &self,
        deletion: &Deletion,
        notice: Option<&str>,
    ) -> Result<Deleted, AwsError> {
        let instance_id = &deletion.resource_id;
        let found = self
            .instances_where(vec![super::filter("instance-id", &[instance_id])])
            .await?;
        let Some(instance) = found.first() else {
            return Ok(Deleted::Done {
                backup_snapshot_id: deletion.backup_snapshot_id.clone(),
            });
        };
        let state = instance
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_owned())
            .unwrap_or_default();
        match state.as_str() {
            "terminated" | "shutting-down" => {
                return Ok(Deleted::Done {
                    backup_snapshot_id: deletion.backup_snapshot_id.clone(),
                });
            }
            "stopped" => {}
            other => {
                return Ok(Deleted::Refused(format!(
                    "instance is {other} since the scan"
                )));
            }
        }
        if !tags(instance.tags()).contains_key(SWITCH_TAG) {
            return Ok(Deleted::Refused(format!(
                "no longer carries {SWITCH_TAG}: reverted or taken back"
            )));
        }
        let mut backups = Vec::new();
        if deletion.backup {
            let volumes: Vec<String> = instance
                .block_device_mappings()
                .iter()
                .filter_map(|m| m.ebs()?.volume_id().map(str::to_owned))
                .collect();
            if !volumes.is_empty() {
                // The flag the grace period stood on covers its volumes too: the backup
                // permission is for flagged volumes only.
                self.set_tag(&volumes, WASTE_TAG, notice.unwrap_or_default())
                    .await?;
            }
            let mut pending = false;
            for volume in &volumes {
                let (snapshot, complete) = self.backup(volume, None).await?;
                pending |= !complete;
                backups.push(snapshot);
            }
            if pending {
                return Ok(Deleted::BackupPending {
                    backup_snapshot_id: backups.join(","),
                });
            }
        }
        match self
            .client
            .terminate_instances()
            .instance_ids(instance_id)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if not_found(e.code()) => {}
            Err(e) => return Err(classify("TerminateInstances", e)),
        }
        Ok(Deleted::Done {
            backup_snapshot_id: (!backups.is_empty()).then(|| backups.join(",")),
        })
    }

    /// Stopped instances a switch stopped and kept (they carry [`SWITCH_TAG`]; its clones, which
    /// carry it too, are told apart by `CreatedVia`).
    pub async fn stopped_sources(&self) -> Result<Vec<StoppedSource>, AwsError> {
        Ok(self
            .instances_where(vec![
                super::filter("instance-state-name", &["stopped"]),
                super::filter("tag-key", &[SWITCH_TAG]),
            ])
            .await?
            .iter()
            .filter_map(|i| {
                let tags = tags(i.tags());
                if tags.get(CREATED_VIA).map(String::as_str) == Some(VIA_SWITCH) {
                    return None;
                }
                Some(StoppedSource {
                    instance_id: i.instance_id()?.to_owned(),
                    switch_id: tags.get(SWITCH_TAG)?.clone(),
                    switched_at: tags
                        .get(SWITCHED_AT_TAG)
                        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.with_timezone(&Utc)),
                    volume_ids: i
                        .block_device_mappings()
                        .iter()
                        .filter_map(|m| m.ebs()?.volume_id().map(str::to_owned))
                        .collect(),
                    tags,
                })
            })
            .collect())
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<(), AwsError> {
        match self
            .client
            .delete_snapshot()
            .snapshot_id(snapshot_id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if not_found(e.code()) => Ok(()),
            Err(e) => Err(classify("DeleteSnapshot", e)),
        }
    }

    pub async fn enforce(
        &self,
        instance_id: &str,
        action: EnforceAction,
    ) -> Result<Enforced, AwsError> {
        /// Termination or stop protection (`disableApiTermination` / `disableApiStop`) answers these.
        const REFUSED: [&str; 2] = ["OperationNotPermitted", "UnsupportedOperation"];
        fn outcome<E>(
            operation: &str,
            result: Result<(), SdkError<E, HttpResponse>>,
        ) -> Result<Enforced, AwsError>
        where
            E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        {
            match result {
                Ok(()) => Ok(Enforced::Done),
                Err(e) if not_found(e.code()) => Ok(Enforced::Done),
                Err(e) if e.code().is_some_and(|c| REFUSED.contains(&c)) => Ok(Enforced::Refused(
                    e.message().unwrap_or("refused").to_owned(),
                )),
                Err(e) => Err(classify(operation, e)),
            }
        }
        match action {
            EnforceAction::Terminate => outcome(
                "TerminateInstances",
                self.client
                    .terminate_instances()
                    .instance_ids(instance_id)
                    .send()
                    .await
                    .map(|_| ()),
            ),
            EnforceAction::Stop => outcome(
                "StopInstances",
                self.client
                    .stop_instances()
                    .instance_ids(instance_id)
                    .send()
                    .await
                    .map(|_| ()),
            ),
        }
    }
}

pub(super) fn volume(v: &aws_sdk_ec2::types::Volume) -> Option<Volume> {
    Some(Volume {
        volume_id: v.volume_id()?.to_owned(),
        state: v.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
        volume_type: v
            .volume_type()
            .map(|t| t.as_str().to_owned())
            .unwrap_or_default(),
        size_gb: v
            .size()
            .and_then(|s| u32::try_from(s).ok())
            .unwrap_or_default(),
        iops: v.iops().and_then(|s| u32::try_from(s).ok()),
        throughput: v.throughput().and_then(|s| u32::try_from(s).ok()),
        created: time(v.create_time())?,
        tags: tags(v.tags()),
    })
}

pub(super) fn snapshot(s: &aws_sdk_ec2::types::Snapshot) -> Option<Snapshot> {
    Some(Snapshot {
        snapshot_id: s.snapshot_id()?.to_owned(),
        volume_size_gb: s
            .volume_size()
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or_default(),
        started: time(s.start_time())?,
        state: s.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
        tags: tags(s.tags()),
    })
}
