//! Monthly cost estimates of idle resources (us-east-1 list prices, overridable per region).

use std::collections::BTreeMap;

/// AWS bills a month as 730 hours.
pub const HOURS_PER_MONTH: f64 = 730.0;

#[derive(Debug, Clone, PartialEq)]
pub struct Prices {
    /// USD per GB-month by volume type.
    pub volume_gb_month: BTreeMap<String, f64>,
    /// USD per provisioned IOPS-month for io1 (io2 is tiered: this rate up to 32,000).
    pub piops_month: f64,
    /// gp3 IOPS above the 3,000 included, USD per IOPS-month.
    pub gp3_iops_month: f64,
    /// gp3 throughput above the 125 MiB/s included, USD per MiB/s-month.
    pub gp3_throughput_month: f64,
    /// An upper bound: snapshots are incremental and usually cost less than their volume size.
    pub snapshot_gb_month: f64,
    /// Public IPv4 addresses, associated or not, since February 2024.
    pub elastic_ip_hour: f64,
}

impl Default for Prices {
    fn default() -> Self {
        Self {
            volume_gb_month: [
                ("gp3", 0.08),
                ("gp2", 0.10),
                ("io1", 0.125),
                ("io2", 0.125),
                ("st1", 0.045),
                ("sc1", 0.015),
                ("standard", 0.05),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            piops_month: 0.065,
            gp3_iops_month: 0.005,
            gp3_throughput_month: 0.04,
            snapshot_gb_month: 0.05,
            elastic_ip_hour: 0.005,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "price override `{0}` is unknown (volume types, piops_month, gp3_iops_month, gp3_throughput_month, snapshot_gb_month, elastic_ip_hour)"
)]
pub struct UnknownPrice(pub String);

impl Prices {
    /// This table with some prices replaced, e.g. `{"gp3": 0.088, "elastic_ip_hour": 0.005}`.
    pub fn with(&self, overrides: &BTreeMap<String, f64>) -> Result<Self, UnknownPrice> {
        let mut prices = self.clone();
        for (key, value) in overrides {
            match key.as_str() {
                "piops_month" => prices.piops_month = *value,
                "gp3_iops_month" => prices.gp3_iops_month = *value,
                "gp3_throughput_month" => prices.gp3_throughput_month = *value,
                "snapshot_gb_month" => prices.snapshot_gb_month = *value,
                "elastic_ip_hour" => prices.elastic_ip_hour = *value,
                volume_type if prices.volume_gb_month.contains_key(volume_type) => {
                    prices
                        .volume_gb_month
                        .insert(volume_type.to_owned(), *value);
                }
                other => return Err(UnknownPrice(other.to_owned())),
            }
        }
        Ok(prices)
    }

    pub fn elastic_ip_month(&self) -> f64 {
        self.elastic_ip_hour * HOURS_PER_MONTH
    }

    pub fn snapshot_month(&self, size_gb: u32) -> f64 {
        f64::from(size_gb) * self.snapshot_gb_month
    }

    /// Storage plus provisioned performance. An unknown volume type is priced as gp2, the dearest
    /// general-purpose type, so waste is not understated.
    pub fn volume_month(
        &self,
        volume_type: &str,
        size_gb: u32,
        iops: Option<u32>,
        throughput: Option<u32>,
    ) -> f64 {
        let gb = self
            .volume_gb_month
            .get(volume_type)
            .or_else(|| self.volume_gb_month.get("gp2"))
            .copied()
            .unwrap_or_default();
        let storage = f64::from(size_gb) * gb;
        let iops = f64::from(iops.unwrap_or(0));
        let performance = match volume_type {
            "io1" => iops * self.piops_month,
            // io2: full rate to 32,000 IOPS, 70 % to 64,000, 49 % beyond.
            "io2" => {
                let tier = |from: f64, to: f64| (iops.min(to) - from).max(0.0);
                self.piops_month
                    * (tier(0.0, 32_000.0)
                        + 0.7 * tier(32_000.0, 64_000.0)
                        + 0.49 * tier(64_000.0, f64::MAX))
            }
            "gp3" => {
                (iops - 3_000.0).max(0.0) * self.gp3_iops_month
                    + (f64::from(throughput.unwrap_or(0)) - 125.0).max(0.0)
                        * self.gp3_throughput_month
            }
            _ => 0.0,
        };
        storage + performance
    }
}

/// Default prices with per-region overrides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PriceTable {
    pub default: Prices,
    pub regions: BTreeMap<String, Prices>,
}

impl PriceTable {
    /// The list prices with `PRICE_OVERRIDES` (JSON: region → price name → USD) applied.
    pub fn from_env<F: Fn(&str) -> Option<String>>(
        env: &crate::config::Env<F>,
    ) -> Result<Self, crate::config::ConfigError> {
        use crate::config::{ConfigError, key};
        let overrides: BTreeMap<String, BTreeMap<String, f64>> =
            match env.optional(key::PRICE_OVERRIDES) {
                None => BTreeMap::new(),
                Some(json) => serde_json::from_str(&json)
                    .map_err(|e| ConfigError(format!("PRICE_OVERRIDES: {e}")))?,
            };
        Self::with_overrides(&overrides).map_err(|e| ConfigError(e.to_string()))
    }

    /// `overrides`: region → price name → USD, as in env `PRICE_OVERRIDES`.
    pub fn with_overrides(
        overrides: &BTreeMap<String, BTreeMap<String, f64>>,
    ) -> Result<Self, UnknownPrice> {
        let default = Prices::default();
        let regions = overrides
            .iter()
            .map(|(region, o)| Ok((region.clone(), default.with(o)?)))
            .collect::<Result<_, UnknownPrice>>()?;
        Ok(Self { default, regions })
    }

    pub fn region(&self, region: &str) -> &Prices {
        self.regions.get(region).unwrap_or(&self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn an_idle_elastic_ip_costs_3_65_a_month() {
        assert!(close(Prices::default().elastic_ip_month(), 3.65));
    }

    #[test]
    fn volumes_cost_storage_plus_provisioned_performance() {
        let p = Prices::default();
        assert!(close(p.volume_month("gp2", 100, None, None), 10.0));
        assert!(
            close(p.volume_month("gp3", 100, Some(3000), Some(125)), 8.0),
            "baseline included"
        );
        assert!(close(
            p.volume_month("gp3", 100, Some(4000), Some(225)),
            8.0 + 5.0 + 4.0
        ));
        assert!(close(
            p.volume_month("io1", 100, Some(1000), None),
            12.5 + 65.0
        ));
        assert!(close(
            p.volume_month("io2", 10, Some(40_000), None),
            1.25 + 0.065 * (32_000.0 + 0.7 * 8_000.0)
        ));
        assert!(close(p.volume_month("sc1", 1000, None, None), 15.0));
        assert!(
            close(p.volume_month("mystery", 10, None, None), 1.0),
            "priced as gp2"
        );
    }

    #[test]
    fn snapshots_are_priced_at_their_full_size_as_an_upper_bound() {
        assert!(close(Prices::default().snapshot_month(200), 10.0));
    }

    #[test]
    fn regions_can_override_prices() {
        let overrides = BTreeMap::from([(
            "eu-west-1".to_owned(),
            BTreeMap::from([
                ("gp3".to_owned(), 0.088),
                ("elastic_ip_hour".to_owned(), 0.006),
            ]),
        )]);
        let table = PriceTable::with_overrides(&overrides).unwrap();
        assert!(close(
            table
                .region("eu-west-1")
                .volume_month("gp3", 100, None, None),
            8.8
        ));
        assert!(close(table.region("eu-west-1").elastic_ip_month(), 4.38));
        assert!(close(
            table
                .region("us-east-1")
                .volume_month("gp3", 100, None, None),
            8.0
        ));
        let bad = BTreeMap::from([("x".to_owned(), BTreeMap::from([("gp9".to_owned(), 1.0)]))]);
        assert_eq!(
            PriceTable::with_overrides(&bad),
            Err(UnknownPrice("gp9".into()))
        );
    }
}
