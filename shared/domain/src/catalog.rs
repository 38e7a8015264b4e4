//! Offline market data shipped with the optimizer: AWS's Spot Instance Advisor feed (interruption
//! frequency band and savings per region, OS and instance type) and Linux on-demand prices for
//! us-east-1. Parsed once, on first use.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

const ADVISOR_JSON: &str = include_str!("../data/spot-advisor-data.json");
const ON_DEMAND_JSON: &str = include_str!("../data/ondemand-prices-us-east-1.json");

/// Interruption frequency of a pool, from the advisor's bands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Band {
    /// 0 (`<5%`) to 4 (`>20%`).
    pub index: u8,
    pub label: String,
    /// Savings over on-demand the advisor reports, in percent (negative: Spot costs more).
    pub savings_pct: i16,
}

#[derive(Debug, Deserialize)]
struct Advisor {
    ranges: Vec<Range>,
    spot_advisor: HashMap<String, HashMap<String, HashMap<String, Entry>>>,
}

#[derive(Debug, Deserialize)]
struct Range {
    index: u8,
    label: String,
}

#[derive(Debug, Deserialize)]
struct Entry {
    s: i16,
    r: u8,
}

#[derive(Debug, Deserialize)]
struct OnDemand {
    region: String,
    prices: HashMap<String, f64>,
}

/// Instance type → (savings %, band index), per OS, per region.
type AdvisorTable = HashMap<String, HashMap<String, HashMap<String, (i16, u8)>>>;

/// The shipped snapshots, as one lookup.
#[derive(Debug)]
pub struct Catalog {
    labels: Vec<String>,
    /// region → OS → instance type → (savings %, band)
    advisor: AdvisorTable,
    on_demand_region: String,
    on_demand: HashMap<String, f64>,
}

impl Catalog {
    /// The shipped data (parsed on first call; a malformed snapshot is a build defect, caught by
    /// the tests, so it yields an empty catalog rather than a panic).
    pub fn shipped() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            Catalog::parse(ADVISOR_JSON, ON_DEMAND_JSON).unwrap_or_else(|_| Catalog::empty())
        })
    }

    fn empty() -> Self {
        Self {
            labels: Vec::new(),
            advisor: HashMap::new(),
            on_demand_region: String::new(),
            on_demand: HashMap::new(),
        }
    }

    pub fn parse(advisor: &str, on_demand: &str) -> Result<Self, serde_json::Error> {
        let a: Advisor = serde_json::from_str(advisor)?;
        let o: OnDemand = serde_json::from_str(on_demand)?;
        let mut labels = vec![
            String::new();
            a.ranges
                .iter()
                .map(|r| r.index as usize + 1)
                .max()
                .unwrap_or(0)
        ];
        for r in a.ranges {
            labels[r.index as usize] = r.label;
        }
        let advisor = a
            .spot_advisor
            .into_iter()
            .map(|(region, oses)| {
                let oses = oses
                    .into_iter()
                    .map(|(os, types)| {
                        (
                            os,
                            types.into_iter().map(|(t, e)| (t, (e.s, e.r))).collect(),
                        )
                    })
                    .collect();
                (region, oses)
            })
            .collect();
        Ok(Self {
            labels,
            advisor,
            on_demand_region: o.region,
            on_demand: o.prices,
        })
    }

    /// The interruption band of a Linux pool of `instance_type` in `region`, if the advisor knows it.
    pub fn band(&self, region: &str, instance_type: &str) -> Option<Band> {
        let (savings_pct, index) = *self.advisor.get(region)?.get("Linux")?.get(instance_type)?;
        let label = self
            .labels
            .get(index as usize)
            .cloned()
            .unwrap_or_else(|| "?".into());
        Some(Band {
            index,
            label,
            savings_pct,
        })
    }

    /// Linux on-demand USD/hour. The shipped table covers one region; elsewhere `None` (production
    /// reads the Price List API).
    pub fn on_demand(&self, region: &str, instance_type: &str) -> Option<f64> {
        (region == self.on_demand_region)
            .then(|| self.on_demand.get(instance_type).copied())
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_snapshots_parse_and_answer() {
        let c = Catalog::parse(ADVISOR_JSON, ON_DEMAND_JSON).expect("shipped data parses");
        let band = c.band("us-east-1", "c5.large").unwrap();
        assert_eq!((band.index, band.label.as_str()), (0, "<5%"));
        assert_eq!(c.band("us-east-1", "m5.large").unwrap().label, "15-20%");
        assert!(c.band("us-east-1", "no.such").is_none());
        assert!(
            c.band("eu-west-1", "m5.large").is_some(),
            "every advisor region"
        );
        assert_eq!(c.on_demand("us-east-1", "m5.large"), Some(0.096));
        assert_eq!(c.on_demand("eu-west-1", "m5.large"), None);
        assert!(std::ptr::eq(Catalog::shipped(), Catalog::shipped()));
        assert!(Catalog::shipped().band("us-east-1", "c5.large").is_some());
    }
}
