//! AWS Price List adapter: the Linux on-demand price of an instance type in a region, asked of
//! `GetProducts` once per warm process and pool size, with the shipped table as the fallback.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_pricing::Client;
use aws_sdk_pricing::types::{Filter, FilterType};
use serde_json::Value;
use spot_domain::AwsError;
use spot_domain::market::Catalog;
use tracing::warn;

use crate::error::{classify, invalid_data};

/// The Price List API is served from us-east-1 (also eu-central-1 and ap-south-1).
pub const PRICING_REGION: &str = "us-east-1";

/// Where the Price List API of `region`'s partition is served: cn-northwest-1 in China, us-east-1
/// elsewhere (GovCloud has none: its calls fail and the shipped table answers, or nothing does).
pub fn pricing_region(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "cn-northwest-1"
    } else {
        PRICING_REGION
    }
}

/// On-demand prices change a few times a year; a warm Lambda re-reads them after this long.
const CACHE_FOR: Duration = Duration::from_secs(6 * 3600);

pub struct PriceList {
    client: Client,
    fallback: &'static Catalog,
    cache: Mutex<HashMap<(String, String), (f64, Instant)>>,
}

impl PriceList {
    /// A client of the Price List API of the partition `config`'s region is in
    /// ([`pricing_region`]). One attempt per call: the shipped table answers at once when the API
    /// does not, and without it the step fails `Transient` and the state machine retries it with
    /// backoff.
    pub fn from_config(config: &aws_config::SdkConfig, fallback: &'static Catalog) -> Self {
        let home = config.region().map_or(PRICING_REGION, |r| r.as_ref());
        let conf = aws_sdk_pricing::config::Builder::from(config)
            .region(aws_sdk_pricing::config::Region::new(pricing_region(home)))
            .retry_config(
                aws_sdk_pricing::config::retry::RetryConfig::standard().with_max_attempts(1),
            )
            .build();
        Self::new(Client::from_conf(conf), fallback)
    }

    /// `client` must be configured for the Price List region of its partition ([`pricing_region`]).
    pub fn new(client: Client, fallback: &'static Catalog) -> Self {
        Self {
            client,
            fallback,
            cache: Mutex::default(),
        }
    }

    fn cached(&self, key: &(String, String)) -> Option<f64> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(key)
            .filter(|(_, at)| at.elapsed() < CACHE_FOR)
            .map(|(price, _)| *price)
    }

    async fn ask(&self, region: &str, instance_type: &str) -> Result<Option<f64>, AwsError> {
        let term = |field: &str, value: &str| {
            Filter::builder()
                .r#type(FilterType::TermMatch)
                .field(field)
                .value(value)
                .build()
                .map_err(|e| invalid_data("GetProducts", e.to_string()))
        };
        let answer = self
            .client
            .get_products()
            .service_code("AmazonEC2")
            .filters(term("instanceType", instance_type)?)
            .filters(term("regionCode", region)?)
            .filters(term("operatingSystem", "Linux")?)
            .filters(term("tenancy", "Shared")?)
            .filters(term("preInstalledSw", "NA")?)
            .filters(term("capacitystatus", "Used")?)
            .max_results(10)
            .send()
            .await
            .map_err(|e| classify("GetProducts", e))?;
        Ok(hourly_price(answer.price_list()))
    }
}

/// The on-demand USD/hour in Price List product documents: the lowest positive hourly price of
/// their on-demand terms (licence-included variants cost more).
pub fn hourly_price(documents: &[String]) -> Option<f64> {
    documents
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .flat_map(|doc| {
            let terms = doc["terms"]["OnDemand"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            terms
                .into_values()
                .flat_map(|term| {
                    term["priceDimensions"]
                        .as_object()
                        .cloned()
                        .unwrap_or_default()
                        .into_values()
                })
                .filter(|dim| dim["unit"] == "Hrs")
                .filter_map(|dim| dim["pricePerUnit"]["USD"].as_str()?.parse::<f64>().ok())
                .collect::<Vec<_>>()
        })
        .filter(|usd| *usd > 0.0)
        .min_by(f64::total_cmp)
}

impl PriceList {
    /// Linux on-demand USD per hour (`None`: not sold there, or unknown): the Price List API,
    /// cached, with the shipped table as its fallback.
    pub async fn on_demand(
        &self,
        region: &str,
        instance_type: &str,
    ) -> Result<Option<f64>, AwsError> {
        let key = (region.to_owned(), instance_type.to_owned());
        if let Some(price) = self.cached(&key) {
            return Ok(Some(price));
        }
        let shipped = self.fallback.on_demand(region, instance_type);
        match self.ask(region, instance_type).await {
            Ok(Some(price)) => {
                if let Ok(mut cache) = self.cache.lock() {
                    cache.insert(key, (price, Instant::now()));
                }
                Ok(Some(price))
            }
            Ok(None) => Ok(shipped),
            // Without the live price, the shipped table is the next best; without either, the
            // step fails and is retried.
            Err(e) => {
                warn!(region, instance_type, error = %e, fallback = ?shipped, "price list unavailable");
                match shipped {
                    Some(price) => Ok(Some(price)),
                    None => Err(e),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_price_list_is_asked_in_the_partition_of_the_stack() {
        assert_eq!(pricing_region("eu-west-1"), "us-east-1");
        assert_eq!(pricing_region("cn-north-1"), "cn-northwest-1");
        assert_eq!(pricing_region("cn-northwest-1"), "cn-northwest-1");
    }

    fn document(usd: &str, unit: &str) -> String {
        serde_json::json!({
            "product": {"attributes": {"instanceType": "m5.large", "regionCode": "eu-west-1"}},
            "terms": {"OnDemand": {"SKU.T": {"priceDimensions": {"SKU.T.D": {
                "unit": unit, "pricePerUnit": {"USD": usd},
                "description": "$0.107 per On Demand Linux m5.large Instance Hour"
            }}}}}
        })
        .to_string()
    }

    #[test]
    fn the_lowest_positive_hourly_on_demand_price_is_taken() {
        let docs = [
            document("0.1070000000", "Hrs"),
            document("0.1460000000", "Hrs"),
            document("0.0000000000", "Hrs"),
            document("0.0100000000", "Quantity"),
        ];
        assert_eq!(hourly_price(&docs), Some(0.107));
        assert_eq!(hourly_price(&["not json".into()]), None);
        assert_eq!(hourly_price(&[]), None);
    }
}
