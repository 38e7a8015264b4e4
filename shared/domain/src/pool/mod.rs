//! Spot pools: a pool's key (region, Availability Zone **ID**, instance type), the signals that
//! quarantine it ([`signal`]), the quarantine decision ([`quarantine`]) and the gatekeeper every
//! launch asks first ([`gatekeeper`]).
//!
//! The AZ ID (`use1-az4`) and not the AZ name (`us-east-1a`) is the key, because AZ names are shuffled
//! per account while the quarantine is shared by every tenant.

pub mod gatekeeper;
pub mod quarantine;
pub mod signal;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    region: String,
    az_id: String,
    instance_type: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PoolKeyError {
    #[error("pool key `{0}` is not `region#az_id#instance_type`")]
    Malformed(String),
    #[error("pool key part `{part}` is empty or contains `#`: `{value}`")]
    BadPart { part: &'static str, value: String },
}

impl PoolKey {
    pub fn new(
        region: impl Into<String>,
        az_id: impl Into<String>,
        instance_type: impl Into<String>,
    ) -> Result<Self, PoolKeyError> {
        let key = Self {
            region: region.into(),
            az_id: az_id.into(),
            instance_type: instance_type.into(),
        };
        for (part, value) in [
            ("region", &key.region),
            ("az_id", &key.az_id),
            ("instance_type", &key.instance_type),
        ] {
            if value.is_empty() || value.contains('#') || value.trim() != value {
                return Err(PoolKeyError::BadPart {
                    part,
                    value: value.clone(),
                });
            }
        }
        Ok(key)
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn az_id(&self) -> &str {
        &self.az_id
    }

    pub fn instance_type(&self) -> &str {
        &self.instance_type
    }
}

impl fmt::Display for PoolKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}#{}", self.region, self.az_id, self.instance_type)
    }
}

impl FromStr for PoolKey {
    type Err = PoolKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split('#');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(region), Some(az_id), Some(instance_type), None) => {
                Self::new(region, az_id, instance_type)
            }
            _ => Err(PoolKeyError::Malformed(s.to_owned())),
        }
    }
}

impl Serialize for PoolKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PoolKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_region_az_id_type() {
        let key = PoolKey::new("us-east-1", "use1-az4", "m5.large").unwrap();
        assert_eq!(key.to_string(), "us-east-1#use1-az4#m5.large");
    }

    #[test]
    fn parses_what_it_formats() {
        let key: PoolKey = "eu-west-1#euw1-az2#c6g.xlarge".parse().unwrap();
        assert_eq!(key.region(), "eu-west-1");
        assert_eq!(key.az_id(), "euw1-az2");
        assert_eq!(key.instance_type(), "c6g.xlarge");
        assert_eq!(key.to_string().parse::<PoolKey>().unwrap(), key);
    }

    #[test]
    fn rejects_wrong_shapes() {
        for bad in [
            "",
            "us-east-1",
            "us-east-1#use1-az4",
            "a#b#c#d",
            "#use1-az4#m5.large",
            "us-east-1##m5.large",
        ] {
            assert!(bad.parse::<PoolKey>().is_err(), "accepted `{bad}`");
        }
        assert!(PoolKey::new("us-east-1", "use1-az4", " m5.large").is_err());
    }

    #[test]
    fn serde_uses_the_string_form() {
        let key = PoolKey::new("us-east-1", "use1-az4", "m5.large").unwrap();
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(json, "\"us-east-1#use1-az4#m5.large\"");
        assert_eq!(serde_json::from_str::<PoolKey>(&json).unwrap(), key);
        assert!(serde_json::from_str::<PoolKey>("\"nope\"").is_err());
    }
}
