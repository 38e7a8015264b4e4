//! An HTTP proxy in front of the emulator that records every AWS call (service and operation) and
//! can fail chosen operations, so production code carries no fault switches and the benchmark counts
//! real API calls.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One AWS API call seen by the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// SigV4 signing name: `ec2`, `dynamodb`, `sts`, `states`...
    pub service: String,
    /// SigV4 signing region.
    pub region: String,
    /// `DescribeInstances`, `GetItem`...
    pub operation: String,
    /// The DynamoDB table a call reads or writes (the first, for batch calls).
    pub table: Option<String>,
    /// For `AssumeRole`: the role asked for and the session name, `<role ARN> <session>`.
    pub role: Option<String>,
    /// Time the upstream (the emulator) took to answer; zero for an injected fault.
    pub upstream: std::time::Duration,
    /// When it was sent upstream (none for an injected fault).
    pub sent: Option<std::time::Instant>,
}

/// Wall time during which at least one of `calls` was waiting on the upstream (overlapping calls
/// counted once).
pub fn busy(calls: &[Call]) -> std::time::Duration {
    let mut spans: Vec<(std::time::Instant, std::time::Instant)> = calls
        .iter()
        .filter_map(|c| c.sent.map(|s| (s, s + c.upstream)))
        .collect();
    spans.sort();
    let mut total = std::time::Duration::ZERO;
    let mut current: Option<(std::time::Instant, std::time::Instant)> = None;
    for (start, end) in spans {
        current = match current {
            Some((s, e)) if start <= e => Some((s, e.max(end))),
            Some((s, e)) => {
                total += e - s;
                Some((start, end))
            }
            None => Some((start, end)),
        };
    }
    total + current.map_or(std::time::Duration::ZERO, |(s, e)| e - s)
}

impl std::fmt::Display for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.service, self.operation)
    }
}

/// A fault: answer `operation` with an error `code` instead of forwarding it.
#[derive(Debug, Clone)]
pub struct Fault {
    pub operation: String,
    pub code: String,
    pub message: String,
    pub status: u16,
    /// How many calls to fail; `None` fails them all.
    pub times: Option<u32>,
    /// Only calls signed for this region.
    pub region: Option<String>,
    /// Only calls whose body contains this (e.g. a role ARN's account id).
    pub body_contains: Option<String>,
    /// Answer with this body (and `status`) instead of an error: a canned success, e.g. impaired
    /// status checks. `{Name}` is replaced by the request's form parameter `Name`.
    pub body: Option<String>,
    /// Forward the call (its effect happens), then POST here (the gateway's kill of the calling
    /// function) before answering: the process dies right after its AWS call.
    pub kill: Option<String>,
    /// Forward the call, then replace the first text with the second in moto's answer: a field
    /// EC2 gives that moto leaves out (e.g. an instance's `platformDetails`).
    pub rewrite: Option<(String, String)>,
    /// Forward the call (its effect happens), then keep its answer until the test releases it:
    /// the test acts at a known point of a run (e.g. pauses everything between two deletions).
    pub hold: Option<Hold>,
}

/// The two sides of a held call: the proxy says it was reached, the test releases it.
#[derive(Debug, Clone, Default)]
pub struct Hold {
    reached: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

impl Hold {
    /// Waits until the held call was forwarded.
    pub async fn reached(&self) {
        self.reached.notified().await;
    }

    /// Lets the held call answer.
    pub fn release(&self) {
        self.release.notify_one();
    }
}

impl Fault {
    pub fn new(operation: &str, code: &str, status: u16) -> Self {
        Self {
            operation: operation.into(),
            code: code.into(),
            message: format!("injected by the test bed: {code}"),
            status,
            times: None,
            region: None,
            body_contains: None,
            body: None,
            kill: None,
            rewrite: None,
            hold: None,
        }
    }

    /// Lets the first `operation` through and holds its answer until the test releases it (see
    /// [`Fault::hold`]).
    pub fn hold(operation: &str) -> (Self, Hold) {
        let hold = Hold::default();
        let fault = Self {
            hold: Some(hold.clone()),
            ..Self::new(operation, "", 200)
        }
        .times(1);
        (fault, hold)
    }

    /// Lets `operation` through, then kills the calling function's process by POSTing to
    /// `kill_url` (see [`crate::saga::SagaBed::kill_after`]).
    pub fn kill_after(operation: &str, kill_url: &str) -> Self {
        Self {
            kill: Some(kill_url.into()),
            ..Self::new(operation, "", 200)
        }
    }

    /// A canned answer for `operation` (XML for query protocols, JSON for JSON protocols), see
    /// [`Fault::body`].
    pub fn respond(operation: &str, body: &str) -> Self {
        Self {
            body: Some(body.into()),
            ..Self::new(operation, "", 200)
        }
    }

    /// Lets `operation` through and edits its answer, see [`Fault::rewrite`].
    pub fn rewrite(operation: &str, from: &str, to: &str) -> Self {
        Self {
            rewrite: Some((from.into(), to.into())),
            ..Self::new(operation, "", 200)
        }
    }

    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    pub fn in_region(mut self, region: &str) -> Self {
        self.region = Some(region.into());
        self
    }

    pub fn when_body_contains(mut self, text: &str) -> Self {
        self.body_contains = Some(text.into());
        self
    }

    fn matches(&self, call: &Call, body: &[u8]) -> bool {
        self.operation == call.operation
            && self.region.as_ref().is_none_or(|r| *r == call.region)
            && self
                .body_contains
                .as_ref()
                .is_none_or(|text| String::from_utf8_lossy(body).contains(text.as_str()))
    }
}

#[derive(Default)]
struct Recorder {
    calls: Vec<Call>,
    faults: Vec<Fault>,
    /// Added before each call goes upstream: a region's network round trip, which the emulator
    /// on this machine does not have (benchmarks of concurrency).
    latency: std::time::Duration,
}

/// Records calls and injects faults; shared by [`AwsProxy`] and the bed's gateway.
#[derive(Clone)]
pub struct Forwarder {
    upstream: String,
    client: Client<HttpConnector, Full<Bytes>>,
    state: Arc<Mutex<Recorder>>,
    /// Held while a DynamoDB write is with the emulator: DynamoDB applies each write to an item
    /// atomically (a condition is checked and the item written as one step), moto checks a
    /// condition and writes in two steps on concurrent request threads, so two racing
    /// `attribute_not_exists` puts could both succeed there and never in AWS.
    dynamodb_writes: Arc<tokio::sync::Mutex<()>>,
}

impl Forwarder {
    /// `upstream` like `http://127.0.0.1:5000`.
    pub fn new(upstream: &str) -> Self {
        Self {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            state: Arc::default(),
            dynamodb_writes: Arc::default(),
        }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// How many `operation` calls were seen (answered by AWS or by a fault).
    pub fn count(&self, operation: &str) -> usize {
        let state = self.state.lock().unwrap();
        state
            .calls
            .iter()
            .filter(|c| c.operation == operation)
            .count()
    }

    /// Every `AssumeRole` seen, as `<role ARN> <session name>`.
    pub fn assumed_roles(&self) -> Vec<String> {
        self.calls().into_iter().filter_map(|c| c.role).collect()
    }

    /// Calls recorded since `calls().len()` was `since`.
    pub fn calls_since(&self, since: usize) -> Vec<Call> {
        self.state
            .lock()
            .unwrap()
            .calls
            .get(since..)
            .unwrap_or_default()
            .to_vec()
    }

    pub fn inject(&self, fault: Fault) {
        self.state.lock().unwrap().faults.push(fault);
    }

    /// Every call forwarded from now on waits `latency` first (see [`Recorder`]).
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.state.lock().unwrap().latency = latency;
    }

    pub fn clear_faults(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    pub async fn forward(&self, request: Request) -> Response {
        match self.try_forward(request).await {
            Ok(response) => response,
            Err(err) => {
                (StatusCode::BAD_GATEWAY, format!("test bed proxy: {err:#}")).into_response()
            }
        }
    }

    async fn try_forward(&self, request: Request) -> Result<Response> {
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .context("reading request body")?
            .to_bytes();
        let call = identify(&parts.headers, &body);
        let mut kill = None;
        let mut rewrite = None;
        let mut hold = None;
        if let Some(call) = &call {
            let fault = take_fault(&mut self.state.lock().unwrap().faults, call, &body);
            match fault {
                Some(Fault {
                    kill: Some(url), ..
                }) => kill = Some(url),
                Some(Fault {
                    rewrite: Some(edit),
                    ..
                }) => rewrite = Some(edit),
                Some(Fault {
                    hold: Some(held), ..
                }) => hold = Some(held),
                Some(fault) => {
                    self.state.lock().unwrap().calls.push(call.clone());
                    return Ok(match &fault.body {
                        Some(template) => canned(template, &body, fault.status),
                        None => error_response(&parts.headers, &fault),
                    });
                }
                None => {}
            }
        }
        // An API rule moto does not keep: Auto Scaling takes at most 20 instance ids per
        // AttachInstances / DetachInstances, and answers more with a ValidationError.
        if let Some(call) = &call
            && matches!(
                call.operation.as_str(),
                "AttachInstances" | "DetachInstances"
            )
            && form_urlencoded::parse(&body).any(|(key, _)| key == "InstanceIds.member.21")
        {
            let refusal = Fault {
                message: "The number of instance ids that may be passed in is limited to 20 \
                    (enforced by the test bed, as AWS does)"
                    .into(),
                ..Fault::new(&call.operation, "ValidationError", 400)
            };
            self.state.lock().unwrap().calls.push(call.clone());
            return Ok(error_response(&parts.headers, &refusal));
        }
        let _write = match &call {
            Some(call) if is_dynamodb_write(call) => Some(self.dynamodb_writes.lock().await),
            _ => None,
        };
        let latency = self.state.lock().unwrap().latency;
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let started = std::time::Instant::now();
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let uri: Uri = format!("{}{path}", self.upstream).parse()?;
        let mut upstream = hyper::Request::builder().method(parts.method).uri(uri);
        for (name, value) in &parts.headers {
            upstream = upstream.header(name, value);
        }
        let answer = self.client.request(upstream.body(Full::new(body))?).await?;
        let (mut parts, body) = answer.into_parts();
        let mut body = body.collect().await?.to_bytes();
        if let Some((from, to)) = rewrite {
            body = Bytes::from(String::from_utf8_lossy(&body).replacen(&from, &to, 1));
            parts.headers.remove(hyper::header::CONTENT_LENGTH);
        }
        if let Some(call) = call {
            let upstream = started.elapsed();
            self.state.lock().unwrap().calls.push(Call {
                upstream,
                sent: Some(started),
                ..call
            });
        }
        if let Some(hold) = hold {
            hold.reached.notify_one();
            hold.release.notified().await;
        }
        if let Some(url) = kill {
            let request = hyper::Request::post(url.as_str()).body(Full::new(Bytes::new()))?;
            let answer = self.client.request(request).await?;
            anyhow::ensure!(
                answer.status().is_success(),
                "kill {url}: {}",
                answer.status()
            );
        }
        Ok(Response::from_parts(parts, Body::from(body)))
    }
}

fn is_dynamodb_write(call: &Call) -> bool {
    call.service == "dynamodb"
        && matches!(
            call.operation.as_str(),
            "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems"
        )
}

fn take_fault(faults: &mut Vec<Fault>, call: &Call, body: &[u8]) -> Option<Fault> {
    let index = faults.iter().position(|f| f.matches(call, body))?;
    let fault = faults[index].clone();
    match &mut faults[index].times {
        Some(1) => {
            faults.remove(index);
        }
        Some(n) => *n -= 1,
        None => {}
    }
    Some(fault)
}

/// Service from the SigV4 credential scope; operation from `X-Amz-Target` (JSON protocols) or the
/// `Action` form field (query protocols).
fn identify(headers: &HeaderMap, body: &[u8]) -> Option<Call> {
    let authorization = headers.get("authorization")?.to_str().ok()?;
    let scope = authorization
        .split("Credential=")
        .nth(1)?
        .split(',')
        .next()?;
    let region = scope.split('/').nth(2)?.to_owned();
    let service = scope.split('/').nth(3)?.to_owned();
    let operation = match headers.get("x-amz-target").and_then(|t| t.to_str().ok()) {
        Some(target) => target.rsplit('.').next()?.to_owned(),
        None => std::str::from_utf8(body)
            .ok()?
            .split('&')
            .find_map(|pair| pair.strip_prefix("Action="))?
            .to_owned(),
    };
    let table = (service == "dynamodb")
        .then(|| serde_json::from_slice::<serde_json::Value>(body).ok())
        .flatten()
        .and_then(|json| match json.get("TableName") {
            Some(name) => name.as_str().map(str::to_owned),
            None => json
                .get("RequestItems")?
                .as_object()?
                .keys()
                .next()
                .cloned(),
        });
    let role = (operation == "AssumeRole").then(|| {
        let field = |name: &str| {
            form_urlencoded::parse(body)
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.into_owned())
                .unwrap_or_default()
        };
        format!("{} {}", field("RoleArn"), field("RoleSessionName"))
    });
    Some(Call {
        service,
        region,
        operation,
        table,
        role,
        upstream: std::time::Duration::ZERO,
        sent: None,
    })
}

/// A canned XML answer, with `{Name}` replaced by the request's form parameter `Name`.
fn canned(template: &str, request: &[u8], status: u16) -> Response {
    let mut body = template.to_owned();
    for (name, value) in form_urlencoded::parse(request) {
        body = body.replace(&format!("{{{name}}}"), &value);
    }
    let json = body.starts_with('{');
    let mut response =
        (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response();
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static(if json {
            "application/x-amz-json-1.1"
        } else {
            "text/xml"
        }),
    );
    response
}

/// The error as the service's protocol spells it, so the SDK parses its code.
fn error_response(headers: &HeaderMap, fault: &Fault) -> Response {
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::BAD_REQUEST);
    let (content_type, body) = if headers.contains_key("x-amz-target") {
        (
            "application/x-amz-json-1.0",
            serde_json::json!({"__type": fault.code, "message": fault.message}).to_string(),
        )
    } else if headers
        .get("authorization")
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("/ec2/"))
    {
        (
            "text/xml",
            format!(
                "<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>bed</RequestID></Response>",
                fault.code, fault.message
            ),
        )
    } else {
        (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>bed</RequestId></ErrorResponse>",
                fault.code, fault.message
            ),
        )
    };
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    response
}

/// A [`Forwarder`] listening on its own loopback port: give its [`endpoint`](Self::endpoint) to one
/// process to count and fail that process's calls only.
pub struct AwsProxy {
    pub forwarder: Forwarder,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl AwsProxy {
    pub async fn start(upstream: &str) -> Result<Self> {
        let forwarder = Forwarder::new(upstream);
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .fallback(|State(f): State<Forwarder>, request: Request| async move {
                f.forward(request).await
            })
            .with_state(forwarder.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            forwarder,
            addr,
            task,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for AwsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_query_and_json_calls() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "authorization",
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AKID/20261122/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=x",
            ),
        );
        let call = identify(&headers, b"Action=DescribeInstances&Version=2016-11-15").unwrap();
        assert_eq!(call.to_string(), "ec2:DescribeInstances");

        headers.insert(
            "authorization",
            HeaderValue::from_static(
                "AWS4-HMAC-SHA256 Credential=AKID/20261122/us-east-1/dynamodb/aws4_request, SignedHeaders=host, Signature=x",
            ),
        );
        headers.insert(
            "x-amz-target",
            HeaderValue::from_static("DynamoDB_20120810.GetItem"),
        );
        assert_eq!(
            identify(&headers, b"{}").unwrap().to_string(),
            "dynamodb:GetItem"
        );
        assert!(identify(&HeaderMap::new(), b"Action=X").is_none());
    }

    fn call(operation: &str, region: &str) -> Call {
        Call {
            service: "ec2".into(),
            region: region.into(),
            operation: operation.into(),
            table: None,
            role: None,
            upstream: std::time::Duration::ZERO,
            sent: None,
        }
    }

    #[test]
    fn busy_time_counts_overlapping_calls_once() {
        let t = std::time::Instant::now();
        let ms = std::time::Duration::from_millis;
        let at = |start: u64, length: u64| Call {
            sent: Some(t + ms(start)),
            upstream: ms(length),
            ..call("X", "r")
        };
        assert_eq!(busy(&[at(0, 10), at(5, 10), at(30, 5)]), ms(20));
        assert_eq!(busy(&[]), ms(0));
    }

    #[test]
    fn counted_faults_run_out() {
        let mut faults =
            vec![Fault::new("RunInstances", "InsufficientInstanceCapacity", 500).times(2)];
        let run = call("RunInstances", "us-east-1");
        assert!(take_fault(&mut faults, &run, b"").is_some());
        assert!(take_fault(&mut faults, &call("DescribeInstances", "us-east-1"), b"").is_none());
        assert!(take_fault(&mut faults, &run, b"").is_some());
        assert!(take_fault(&mut faults, &run, b"").is_none());
    }

    #[test]
    fn faults_can_be_scoped_to_a_region_or_a_body() {
        let mut faults = vec![
            Fault::new("DescribeVolumes", "Throttling", 400).in_region("us-west-2"),
            Fault::new("AssumeRole", "AccessDenied", 403).when_body_contains("222222222222"),
        ];
        assert!(take_fault(&mut faults, &call("DescribeVolumes", "us-east-1"), b"").is_none());
        assert!(take_fault(&mut faults, &call("DescribeVolumes", "us-west-2"), b"").is_some());
        assert!(
            take_fault(
                &mut faults,
                &call("AssumeRole", "us-east-1"),
                b"RoleArn=333333333333"
            )
            .is_none()
        );
        assert!(
            take_fault(
                &mut faults,
                &call("AssumeRole", "us-east-1"),
                b"RoleArn=222222222222"
            )
            .is_some()
        );
    }
}
