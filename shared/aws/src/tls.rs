//! The HTTPS client every SDK client shares: the SDK's own default (rustls with aws-lc, proxy
//! settings from the environment), trusting only the roots AWS's API endpoints chain to.
//!
//! Why not the system's roots: loading them reads and parses every file of the system's
//! certificate directory before the first request (on the bench machine 292 files and a bundle of
//! 146 certificates: 5 ms of an 8.7 ms cold start, docs/benchmark.md). Every AWS API endpoint
//! presents an Amazon Trust Services certificate, so these five roots are all a function needs;
//! they are valid until 2037-2040.

use std::sync::OnceLock;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore, rustls_provider::CryptoMode};
use aws_smithy_http_client::{Builder, Connector, ConnectorBuilder};
use aws_smithy_runtime_api::client::http::{HttpConnectorSettings, SharedHttpClient};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

/// Amazon Root CA 1-4 and Starfield Services Root CA - G2, in PEM.
pub const AMAZON_ROOTS: &str = include_str!("../certs/amazon-trust-services.pem");

/// The trust: the Amazon roots, not the system's.
fn amazon_roots() -> TlsContext {
    TlsContext::builder()
        .with_trust_store(
            TrustStore::empty()
                .with_native_roots(false)
                .with_pem_certificate(AMAZON_ROOTS.as_bytes()),
        )
        .build()
        // `build` cannot fail today; if it ever did, the default is the system's store.
        .unwrap_or_default()
}

/// A connector as the SDK's default builds it (its settings and sleep; proxy from the
/// environment), with `context` as its trust. Parses the roots.
fn connector(
    context: &TlsContext,
    settings: Option<&HttpConnectorSettings>,
    components: Option<&RuntimeComponents>,
) -> Connector {
    let mut builder = ConnectorBuilder::default()
        .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
        .tls_context(context.clone());
    builder.set_connector_settings(settings.cloned());
    if let Some(components) = components {
        builder.set_sleep_impl(components.sleep_impl());
    }
    builder.set_proxy_config(Some(ProxyConfig::from_env()));
    builder.build()
}

/// The SDK's default HTTPS client, trusting only [`AMAZON_ROOTS`].
pub fn https_client() -> SharedHttpClient {
    let context = amazon_roots();
    Builder::new().build_with_connector_fn(move |settings, components| {
        connector(&context, settings, components)
    })
}

/// The SDK's default configuration chain, with [`https_client`]; loaded once per process (a step
/// and its runner share it, and with it one connection pool and credentials cache).
pub async fn load() -> SdkConfig {
    static LOADED: OnceLock<SdkConfig> = OnceLock::new();
    if let Some(config) = LOADED.get() {
        return config.clone();
    }
    let config = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .load()
        .await;
    LOADED.get_or_init(|| config).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_roots_are_the_five_amazon_trust_services_roots_and_parse() {
        assert_eq!(
            AMAZON_ROOTS.matches("-----BEGIN CERTIFICATE-----").count(),
            5
        );
        for name in ["Amazon_Root_CA_1", "Amazon_Root_CA_4", "Starfield_Services"] {
            assert!(AMAZON_ROOTS.contains(name), "{name}");
        }
        // Building a connector parses the roots (rustls panics on an unparsable one).
        let _ = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(async { connector(&amazon_roots(), None, None) });
    }
}
