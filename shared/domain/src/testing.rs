//! In-memory ports for unit tests of the rules and handlers (never the proof that a feature works:
//! integration tests run against the local AWS bed).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::account::AccountRegistry;
use crate::account::{Access, Account};
use crate::error::AwsError;
use crate::instance::{InstanceDirectory, Placement};
use crate::pool::PoolKey;
use crate::pool::quarantine::{QuarantineRecord, QuarantineStore, Write};

/// A quarantine table with the same conditional-write rule as DynamoDB's adapter.
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<HashMap<PoolKey, QuarantineRecord>>,
    /// Writes to refuse with a conflict before accepting, to exercise retries.
    pub conflicts: AtomicUsize,
    pub puts: AtomicUsize,
}

impl MemoryStore {
    pub fn snapshot(&self) -> HashMap<PoolKey, QuarantineRecord> {
        self.records.lock().unwrap().clone()
    }
}

impl QuarantineStore for MemoryStore {
    async fn get(&self, pool: &PoolKey) -> Result<Option<QuarantineRecord>, AwsError> {
        Ok(self.records.lock().unwrap().get(pool).cloned())
    }

    async fn put(&self, record: &QuarantineRecord) -> Result<Write, AwsError> {
        self.puts.fetch_add(1, Ordering::SeqCst);
        if self
            .conflicts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Ok(Write::Conflict);
        }
        let mut records = self.records.lock().unwrap();
        let stored = records.get(&record.pool).map(|r| r.version);
        let expected = record.version.checked_sub(1).filter(|v| *v > 0);
        if stored != expected {
            return Ok(Write::Conflict);
        }
        records.insert(record.pool.clone(), record.clone());
        Ok(Write::Written)
    }

    async fn all(&self) -> Result<Vec<QuarantineRecord>, AwsError> {
        Ok(self.records.lock().unwrap().values().cloned().collect())
    }

    async fn get_many(&self, pools: &[PoolKey]) -> Result<Vec<QuarantineRecord>, AwsError> {
        let records = self.records.lock().unwrap();
        Ok(pools
            .iter()
            .filter_map(|p| records.get(p).cloned())
            .collect())
    }
}

#[derive(Debug, Default)]
pub struct MemoryRegistry(pub HashMap<String, Account>);

impl AccountRegistry for MemoryRegistry {
    async fn account(&self, account_id: &str) -> Result<Option<Account>, AwsError> {
        Ok(self.0.get(account_id).cloned())
    }

    async fn all(&self) -> Result<Vec<Account>, AwsError> {
        Ok(self.0.values().cloned().collect())
    }
}

/// Instances by id, and the credentials each lookup used.
#[derive(Debug, Default)]
pub struct MemoryInstances {
    pub instances: HashMap<String, Placement>,
    pub lookups: Mutex<Vec<(Access, String, String)>>,
}

impl InstanceDirectory for MemoryInstances {
    async fn placement(
        &self,
        access: &Access,
        region: &str,
        instance_id: &str,
    ) -> Result<Option<Placement>, AwsError> {
        self.lookups.lock().unwrap().push((
            access.clone(),
            region.to_owned(),
            instance_id.to_owned(),
        ));
        Ok(self.instances.get(instance_id).cloned())
    }
}

/// A running on-demand m5.large in us-east-1a (use1-az6), VPC `vpc-1`: a switch candidate.
pub fn source_instance() -> crate::instance::SourceInstance {
    crate::instance::SourceInstance {
        instance_id: "i-0source".into(),
        instance_type: "m5.large".into(),
        state: "running".into(),
        lifecycle: None,
        architecture: "x86_64".into(),
        vcpus: 2,
        memory_mib: 8192,
        az_name: "us-east-1a".into(),
        az_id: "use1-az6".into(),
        vpc_id: "vpc-1".into(),
        subnet_id: "subnet-a".into(),
        security_group_ids: vec!["sg-1".into()],
        iam_instance_profile_arn: None,
        key_name: None,
        ebs_optimized: true,
        root_device_type: "ebs".into(),
        block_devices: vec![],
        elastic_ip: None,
        tags: crate::tags::Tags::new(),
        metadata: None,
        detailed_monitoring: false,
        termination_protection: false,
        stop_protection: false,
        drivers: Some(crate::instance::Drivers {
            ena: true,
            nvme: true,
            boot_mode: "legacy-bios".into(),
            virtualization: "hvm".into(),
        }),
        platform: Some("Linux/UNIX".into()),
        image_id: Some("ami-0source".into()),
    }
}

/// Failovers started (by name) and events published, in memory; `fail_starts` makes every start
/// fail as Step Functions being unreachable would.
#[derive(Debug, Default)]
pub struct MemoryReactions {
    pub started: Mutex<Vec<(String, crate::saga::failover::FailoverRequest)>>,
    pub published: Mutex<Vec<(String, serde_json::Value)>>,
    pub fail_starts: bool,
}

impl crate::saga::failover::Reactions for MemoryReactions {
    async fn start_failover(
        &self,
        name: &str,
        request: &crate::saga::failover::FailoverRequest,
    ) -> Result<bool, AwsError> {
        if self.fail_starts {
            return Err(AwsError::new(
                crate::AwsErrorKind::Transient,
                "StartExecution",
                None,
                "unreachable",
            ));
        }
        let mut started = self.started.lock().unwrap();
        if started.iter().any(|(n, _)| n == name) {
            return Ok(false);
        }
        started.push((name.to_owned(), request.clone()));
        Ok(true)
    }

    async fn publish(&self, events: &[(String, serde_json::Value)]) -> Result<(), AwsError> {
        self.published
            .lock()
            .unwrap()
            .extend(events.iter().cloned());
        Ok(())
    }
}
