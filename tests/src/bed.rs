//! Connection to the local AWS bed (moto behind the bed gateway) and per-test isolation.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, anyhow};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;

use spot_domain::config::key;

use crate::lambda_host::FunctionSpec;
use crate::template::{Template, workspace_root};

/// moto's default account: the account the functions "run in".
pub const HOME_ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-east-1";
/// Name of the role member accounts deploy (infra/member-account.yaml's default).
pub const MEMBER_ROLE: &str = "SpotOptimizerMember";
/// The role the bed seeds member accounts with (infra/local/moto_server.py: it may do anything).
pub const BED_ADMINISTRATOR: &str = "BedAdministrator";

/// Credentials of `role_arn`, assumed with `config`.
async fn assume(config: &SdkConfig, role_arn: &str, session: &str) -> Result<Credentials> {
    let assumed = aws_sdk_sts::Client::new(config)
        .assume_role()
        .role_arn(role_arn)
        .role_session_name(session)
        .send()
        .await
        .with_context(|| format!("AssumeRole {role_arn}"))?;
    let c = assumed
        .credentials()
        .ok_or_else(|| anyhow!("AssumeRole {role_arn}: no credentials"))?;
    Ok(Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_owned()),
        None,
        "bed-role",
    ))
}

/// The bed's endpoint and an SDK configuration for the home account.
#[derive(Clone)]
pub struct Bed {
    pub endpoint: String,
    pub home: SdkConfig,
}

impl Bed {
    /// Uses `AWS_ENDPOINT_URL`, which `infra/local/bed.sh` exports.
    pub async fn connect() -> Result<Self> {
        let endpoint = std::env::var("AWS_ENDPOINT_URL").map_err(|_| {
            anyhow!("AWS_ENDPOINT_URL is not set: run through `make test`, or `infra/local/bed.sh run -- <command>`")
        })?;
        Ok(Self::at(&endpoint).await)
    }

    pub async fn at(endpoint: &str) -> Self {
        Self {
            endpoint: endpoint.to_owned(),
            home: sdk_config(endpoint).await,
        }
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.home)
    }

    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::new(&self.home)
    }

    pub fn role_arn(account: &str) -> String {
        format!("arn:aws:iam::{account}:role/{MEMBER_ROLE}")
    }

    /// A configuration seeding `account` with the bed's administrator role (moto keys its state
    /// by the account of the credentials, and credentials from AssumeRole belong to the role's
    /// account); the functions reach it through the member roles instead.
    pub async fn member(&self, account: &str) -> Result<SdkConfig> {
        let credentials = assume(
            &self.home,
            &format!("arn:aws:iam::{account}:role/{BED_ADMINISTRATOR}"),
            "bed-seed",
        )
        .await?;
        Ok(self
            .home
            .clone()
            .into_builder()
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .build())
    }

    /// The credentials each central function runs with: its own role in the home account, whose
    /// actions the bed's moto takes from the function's template policy (`testbed iam-roles`).
    pub async fn function_credentials(&self) -> Result<&'static HashMap<String, Credentials>> {
        static ROLES: tokio::sync::OnceCell<HashMap<String, Credentials>> =
            tokio::sync::OnceCell::const_new();
        ROLES
            .get_or_try_init(|| async {
                let mut out = HashMap::new();
                for binary in Template::load()?.function_binaries() {
                    let arn = format!("arn:aws:iam::{HOME_ACCOUNT}:role/{binary}");
                    let credentials = assume(&self.home, &arn, &binary).await?;
                    out.insert(binary, credentials);
                }
                Ok(out)
            })
            .await
    }

    /// Makes Lambda invocations of `name` (by Step Functions, through the gateway) run `spec`.
    pub async fn register_function(&self, name: &str, spec: &FunctionSpec) -> Result<()> {
        self.register_delivered(name, spec, 1).await
    }

    /// As [`Bed::register_function`], each invocation delivered `deliveries` times.
    pub async fn register_delivered(
        &self,
        name: &str,
        spec: &FunctionSpec,
        deliveries: u32,
    ) -> Result<()> {
        use http_body_util::{BodyExt, Full};
        let body =
            serde_json::json!({"binary": spec.binary, "env": spec.env, "deliveries": deliveries})
                .to_string();
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<bytes::Bytes>>();
        let request = hyper::Request::put(format!("{}/__bed/functions/{name}", self.endpoint))
            .header("content-type", "application/json")
            .body(Full::new(bytes::Bytes::from(body)))?;
        let answer = client
            .request(request)
            .await
            .context("registering a function with the gateway")?;
        let status = answer.status();
        if !status.is_success() {
            let text = answer.into_body().collect().await?.to_bytes();
            anyhow::bail!(
                "gateway refused {name}: {status} {}",
                String::from_utf8_lossy(&text)
            );
        }
        Ok(())
    }

    /// How many times the gateway ran each function (every delivery counted).
    pub async fn deliveries(&self) -> Result<BTreeMap<String, u32>> {
        use http_body_util::{BodyExt, Empty};
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Empty<bytes::Bytes>>();
        let uri: hyper::Uri = format!("{}/__bed/deliveries", self.endpoint).parse()?;
        let body = client
            .get(uri)
            .await?
            .into_body()
            .collect()
            .await?
            .to_bytes();
        Ok(serde_json::from_slice(&body)?)
    }

    /// Creates every table of the template under unique names for one test (or demo) run.
    pub async fn create_tables(&self, label: &str) -> Result<Tables> {
        let credentials = self.function_credentials().await?;
        let template = Template::load()?;
        let ddb = self.dynamodb();
        let suffix = unique_suffix();
        let mut names = HashMap::new();
        for table in template.tables()? {
            let name = format!("{label}-{}-{suffix}", table.logical_id);
            table.create(&ddb, &name).await?;
            names.insert(table.logical_id.clone(), name);
        }
        // The stack's own topics (owners' notices, alarms): `!Ref` of a topic is its ARN.
        let sns = aws_sdk_sns::Client::new(&self.home);
        for (logical_id, _) in template.resources_of_type("AWS::SNS::Topic") {
            let arn = sns
                .create_topic()
                .name(format!("{label}-{logical_id}-{suffix}"))
                .send()
                .await?
                .topic_arn
                .context("no topic ARN")?;
            names.insert(logical_id.to_owned(), arn);
        }
        Ok(Tables {
            names,
            stack: format!("{label}-{suffix}"),
            template,
            credentials,
        })
    }
}

/// The tables of one run, by the template's logical id.
pub struct Tables {
    pub names: HashMap<String, String>,
    /// What `AWS::StackName` is for this run's functions and state machines.
    pub stack: String,
    template: Template,
    credentials: &'static HashMap<String, Credentials>,
}

impl Tables {
    pub fn name(&self, logical_id: &str) -> &str {
        self.names.get(logical_id).map_or("", String::as_str)
    }

    /// How to start `binary` as the template deploys it, pointed at `endpoint` (the bed, or a
    /// recording proxy in front of it).
    pub fn function(&self, binary: &str, endpoint: &str) -> Result<FunctionSpec> {
        self.function_with(binary, endpoint, &[])
    }

    /// `base` acting as `binary`'s role (for a function's code run in-process).
    pub fn function_config(&self, base: &SdkConfig, binary: &str) -> SdkConfig {
        let credentials = self
            .credentials
            .get(binary)
            .unwrap_or_else(|| panic!("{binary} is no function of the template"));
        base.clone()
            .into_builder()
            .credentials_provider(SharedCredentialsProvider::new(credentials.clone()))
            .build()
    }

    /// The name the template gives state machine `logical_id` in this run's stack.
    pub fn state_machine_name(&self, logical_id: &str) -> Result<String> {
        self.template.state_machine_name(logical_id, |name| {
            (name == "AWS::StackName").then(|| self.stack.clone())
        })
    }

    /// What CloudFormation's `Ref` of the template's state machine `logical_id` returns: its ARN,
    /// whether or not this test created the machine (starting one it did not create fails, as it
    /// would on AWS). `None` for anything else.
    fn state_machine_arn(&self, logical_id: &str) -> Option<String> {
        self.template
            .resources_of_type("AWS::Serverless::StateMachine")
            .any(|(id, _)| id == logical_id)
            .then(|| self.state_machine_name(logical_id).ok())?
            .map(|machine| format!("arn:aws:states:{REGION}:{HOME_ACCOUNT}:stateMachine:{machine}"))
    }

    /// As [`Tables::function`], with more `!Ref`s resolved (e.g. a state machine's ARN).
    pub fn function_with(
        &self,
        binary: &str,
        endpoint: &str,
        refs: &[(&str, &str)],
    ) -> Result<FunctionSpec> {
        let mut env: BTreeMap<String, String> =
            self.template.function_env(binary, |name| match name {
                "AWS::AccountId" => Some(HOME_ACCOUNT.to_owned()),
                "AWS::Region" => Some(REGION.to_owned()),
                "AWS::StackName" => Some(self.stack.clone()),
                // The bed serves no function URLs: the tests call the binary with URL events;
                // links in notices name the URL the deployed stack would give.
                url if url.ends_with(".FunctionUrl") => Some(format!(
                    "https://{}.lambda-url.{REGION}.on.aws/",
                    url.trim_end_matches(".FunctionUrl").to_lowercase()
                )),
                _ => self
                    .names
                    .get(name)
                    .cloned()
                    .or_else(|| {
                        refs.iter()
                            .find(|(logical, _)| *logical == name)
                            .map(|(_, value)| (*value).to_owned())
                    })
                    .or_else(|| self.state_machine_arn(name)),
            })?;
        // The bed's stack is deployed with `ShadowDays=0` (no promotion needed before live), as
        // its home account is on the live allowlists: the tests of shadow before live set it.
        if let Some(days) = env.get_mut(key::SHADOW_DAYS) {
            *days = "0".into();
        }
        let credentials = self
            .credentials
            .get(binary)
            .with_context(|| format!("{binary} is no function of the template"))?;
        env.extend([
            ("AWS_ENDPOINT_URL".to_owned(), endpoint.to_owned()),
            ("AWS_REGION".to_owned(), REGION.to_owned()),
            (
                "AWS_ACCESS_KEY_ID".to_owned(),
                credentials.access_key_id().to_owned(),
            ),
            (
                "AWS_SECRET_ACCESS_KEY".to_owned(),
                credentials.secret_access_key().to_owned(),
            ),
            (
                "AWS_SESSION_TOKEN".to_owned(),
                credentials.session_token().unwrap_or_default().to_owned(),
            ),
        ]);
        Ok(FunctionSpec::new(bin_path(binary), env))
    }
}

/// An SDK configuration for the home account at `endpoint` (the bed, or a proxy in front of it),
/// loaded as production loads it, with the bed's administrator credentials (seeding, operators).
pub async fn sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "bed",
        )))
        .load()
        .await
}

/// Where the function binaries are: `BED_BIN_DIR`, else the workspace's `target/debug`.
pub fn bin_path(name: &str) -> PathBuf {
    std::env::var_os("BED_BIN_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(|t| PathBuf::from(t).join("debug")))
        .unwrap_or_else(|| workspace_root().join("target/debug"))
        .join(name)
}

pub fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}
