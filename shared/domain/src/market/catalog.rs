//! Offline market data shipped with the optimizer: AWS's Spot Instance Advisor feed (interruption
//! frequency band and savings per region and instance type, Linux) and Linux on-demand prices for
//! us-east-1. `build.rs` compiles the JSON snapshots in `data/` into sorted static tables, so
//! nothing is parsed at start and a lookup is two binary searches in read-only memory.

mod data {
    include!(concat!(env!("OUT_DIR"), "/market_data.rs"));
}

/// Interruption frequency of a pool, from the advisor's bands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Band {
    /// 0 (`<5%`) to 4 (`>20%`).
    pub index: u8,
    pub label: &'static str,
    /// Savings over on-demand the advisor reports, in percent (negative: Spot costs more).
    pub savings_pct: i16,
}

/// The shipped snapshots, as one lookup.
#[derive(Debug)]
pub struct Catalog {
    _private: (),
}

static SHIPPED: Catalog = Catalog { _private: () };

impl Catalog {
    pub fn shipped() -> &'static Catalog {
        &SHIPPED
    }

    /// The interruption band of a Linux pool of `instance_type` in `region`, if the advisor knows it.
    pub fn band(&self, region: &str, instance_type: &str) -> Option<Band> {
        let type_index = data::TYPES.binary_search(&instance_type).ok()?;
        let (_, rows) = data::REGIONS
            .binary_search_by(|(r, _)| (*r).cmp(region))
            .ok()
            .map(|i| data::REGIONS[i])?;
        let row = rows
            .binary_search_by(|(t, _, _)| usize::from(*t).cmp(&type_index))
            .ok()
            .map(|i| rows[i])?;
        let (_, savings_pct, index) = row;
        Some(Band {
            index,
            label: data::LABELS.get(usize::from(index)).copied().unwrap_or("?"),
            savings_pct,
        })
    }

    /// Linux on-demand USD/hour. The shipped table covers one region; elsewhere `None` (production
    /// reads the Price List API).
    pub fn on_demand(&self, region: &str, instance_type: &str) -> Option<f64> {
        if region != data::ON_DEMAND_REGION {
            return None;
        }
        data::ON_DEMAND
            .binary_search_by(|(t, _)| (*t).cmp(instance_type))
            .ok()
            .map(|i| data::ON_DEMAND[i].1)
    }

    /// Every region the advisor covers.
    pub fn regions(&self) -> impl Iterator<Item = &'static str> {
        data::REGIONS.iter().map(|(r, _)| *r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_snapshots_answer() {
        let c = Catalog::shipped();
        let band = c.band("us-east-1", "c5.large").unwrap();
        assert_eq!((band.index, band.label), (0, "<5%"));
        assert_eq!(c.band("us-east-1", "m5.large").unwrap().label, "15-20%");
        assert!(c.band("us-east-1", "no.such").is_none());
        assert!(c.band("mars-north-1", "m5.large").is_none());
        assert!(
            c.band("eu-west-1", "m5.large").is_some(),
            "every advisor region"
        );
        assert_eq!(c.regions().count(), 33);
        assert_eq!(c.on_demand("us-east-1", "m5.large"), Some(0.096));
        assert_eq!(c.on_demand("us-east-1", "no.such"), None);
        assert_eq!(c.on_demand("eu-west-1", "m5.large"), None);
    }

    #[test]
    fn the_tables_are_sorted_for_binary_search() {
        assert!(data::TYPES.windows(2).all(|w| w[0] < w[1]));
        assert!(data::REGIONS.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(
            data::REGIONS
                .iter()
                .all(|(_, rows)| rows.windows(2).all(|w| w[0].0 < w[1].0))
        );
        assert!(data::ON_DEMAND.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
