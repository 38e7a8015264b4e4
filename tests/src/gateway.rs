//! The bed gateway: the one endpoint (`AWS_ENDPOINT_URL`) of the local bed.
//!
//! - Lambda's Invoke API (`POST /2015-03-31/functions/{name or ARN}/invocations`) runs the named
//!   function's real binary under a [`LambdaHost`]; errors come back as real Lambda sends them
//!   (HTTP 200 with `X-Amz-Function-Error`), so Step Functions' `Retry`/`Catch` route on them.
//!   moto's Step Functions call this gateway because moto runs with `MOTO_PORT` set to its port.
//! - `/__bed/...`: health, function registration (binary and environment per function name, so
//!   tests run isolated copies; each may be delivered more than once), recorded calls.
//! - Everything else is forwarded to moto through a recording [`Forwarder`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use anyhow::Result;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::Mutex;

use crate::bed::bin_path;
use crate::lambda_host::{FunctionSpec, LambdaHost, Outcome};
use crate::proxy::Forwarder;

#[derive(Debug, Clone, Deserialize)]
pub struct Registration {
    /// Binary name under the bed's bin dir, or a path.
    pub binary: String,
    pub env: BTreeMap<String, String>,
    /// Times each invocation is delivered (at least once, as Lambda and Step Functions deliver):
    /// the step runs again after it did its work, and only the last answer goes back.
    #[serde(default = "once")]
    pub deliveries: u32,
}

fn once() -> u32 {
    1
}

#[derive(Clone)]
struct Gateway {
    forwarder: Forwarder,
    endpoint: String,
    registrations: Arc<Mutex<HashMap<String, Registration>>>,
    /// Per function, its running copies: an invocation takes an idle one, else a new one starts
    /// (as Lambda scales a function out), so a `Map` state's concurrency is real.
    hosts: Arc<Mutex<HashMap<String, Vec<Host>>>>,
    /// Invocations run per function name, each delivery counted.
    delivered: Arc<Mutex<BTreeMap<String, u32>>>,
    /// The processes of each running function, to kill them mid-invocation (outside the hosts'
    /// locks, which the invocations hold).
    pids: Arc<std::sync::Mutex<HashMap<String, Vec<u32>>>>,
}

type Host = Arc<Mutex<LambdaHost>>;

pub async fn serve(listen: &str, moto: &str) -> Result<()> {
    let listener = TcpListener::bind(listen).await?;
    let gateway = Gateway {
        forwarder: Forwarder::new(moto),
        endpoint: format!("http://{}", listener.local_addr()?),
        registrations: Arc::default(),
        hosts: Arc::default(),
        delivered: Arc::default(),
        pids: Arc::default(),
    };
    let hosts = gateway.hosts.clone();
    let app = Router::new()
        .route("/2015-03-31/functions/{function}/invocations", post(invoke))
        .route("/__bed/health", get(|| async { "ok" }))
        .route("/__bed/functions/{name}", put(register))
        .route("/__bed/functions/{name}/kill", post(kill))
        .route("/__bed/calls", get(calls))
        .route("/__bed/deliveries", get(deliveries))
        .fallback(|State(g): State<Gateway>, request: Request| async move {
            g.forwarder.forward(request).await
        })
        .with_state(gateway);
    eprintln!("bed gateway on {listen}, forwarding to {moto}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { if let Some(t) = term.as_mut() { t.recv().await; } else { std::future::pending::<()>().await } } => {}
            }
        })
        .await?;
    // Dropping the hosts kills the function processes.
    hosts.lock().await.clear();
    Ok(())
}

/// `arn:aws:lambda:region:account:function:name[:qualifier]` or a plain name → the name.
fn function_name(function: &str) -> &str {
    match function.split(':').collect::<Vec<_>>().as_slice() {
        ["arn", _, "lambda", _, _, "function", name, ..] => name,
        _ => function,
    }
}

async fn register(State(g): State<Gateway>, Path(name): Path<String>, body: Bytes) -> Response {
    match serde_json::from_slice::<Registration>(&body) {
        Ok(registration) => {
            g.registrations
                .lock()
                .await
                .insert(name.clone(), registration);
            // A new registration replaces the running copies.
            g.hosts.lock().await.remove(&name);
            g.pids.lock().unwrap().remove(&name);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

async fn calls(State(g): State<Gateway>) -> Response {
    let calls: Vec<String> = g
        .forwarder
        .calls()
        .iter()
        .map(ToString::to_string)
        .collect();
    axum::Json(calls).into_response()
}

/// Kills the function's processes, as Lambda's sandbox may end at any instant: the invocation under
/// way ends with `Runtime.ExitError`, and the next starts a fresh process.
async fn kill(State(g): State<Gateway>, Path(name): Path<String>) -> Response {
    let pids = g
        .pids
        .lock()
        .unwrap()
        .get(&name)
        .cloned()
        .unwrap_or_default();
    if pids.is_empty() {
        return (StatusCode::NOT_FOUND, format!("{name} is not running")).into_response();
    }
    let killed = pids.iter().filter(|pid| {
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success())
    });
    if killed.count() == 0 {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("kill {pids:?}: none was running"),
        )
            .into_response();
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn deliveries(State(g): State<Gateway>) -> Response {
    axum::Json(g.delivered.lock().await.clone()).into_response()
}

/// An idle copy of function `name`, locked for one invocation, else a new one.
async fn host(g: &Gateway, name: &str) -> Result<(Host, tokio::sync::OwnedMutexGuard<LambdaHost>)> {
    if let Some(copies) = g.hosts.lock().await.get(name) {
        for host in copies {
            if let Ok(guard) = host.clone().try_lock_owned() {
                return Ok((host.clone(), guard));
            }
        }
    }
    let spec = match g.registrations.lock().await.get(name) {
        Some(r) => FunctionSpec {
            name: name.to_owned(),
            ..FunctionSpec::new(
                if r.binary.contains('/') {
                    r.binary.clone().into()
                } else {
                    bin_path(&r.binary)
                },
                r.env.clone(),
            )
        },
        // Unregistered: the binary of that name, with the gateway's AWS settings.
        None => FunctionSpec::new(
            bin_path(name),
            std::env::vars()
                .filter(|(k, _)| k.starts_with("AWS_"))
                .chain([("AWS_ENDPOINT_URL".to_owned(), g.endpoint.clone())])
                .collect(),
        ),
    };
    let started = LambdaHost::start(spec).await?;
    g.pids
        .lock()
        .unwrap()
        .entry(name.to_owned())
        .or_default()
        .push(started.pid());
    let host = Arc::new(Mutex::new(started));
    let guard = host.clone().try_lock_owned()?;
    g.hosts
        .lock()
        .await
        .entry(name.to_owned())
        .or_default()
        .push(host.clone());
    Ok((host, guard))
}

/// Forgets a copy that died (the next invocation starts another).
async fn forget(g: &Gateway, name: &str, host: &Host, pid: u32) {
    if let Some(copies) = g.hosts.lock().await.get_mut(name) {
        copies.retain(|h| !Arc::ptr_eq(h, host));
    }
    if let Some(pids) = g.pids.lock().unwrap().get_mut(name) {
        pids.retain(|p| *p != pid);
    }
}

async fn invoke(State(g): State<Gateway>, Path(function): Path<String>, body: Bytes) -> Response {
    let name = function_name(&function).to_owned();
    let deliveries = g
        .registrations
        .lock()
        .await
        .get(&name)
        .map_or(1, |r| r.deliveries.max(1));
    let mut outcome = Err(anyhow::anyhow!("not delivered"));
    for _ in 0..deliveries {
        *g.delivered.lock().await.entry(name.clone()).or_default() += 1;
        outcome = match host(&g, &name).await {
            Ok((host, mut running)) => {
                let pid = running.pid();
                let answer = running.invoke_raw(body.clone()).await;
                drop(running);
                if answer.is_err() {
                    // The copy died or could not answer: the next invocation starts afresh.
                    forget(&g, &name, &host, pid).await;
                }
                answer
            }
            Err(e) => Err(e),
        };
    }
    match outcome {
        Ok(Outcome::Ok(value)) => (StatusCode::OK, [("x-amz-executed-version", "$LATEST")], axum::Json(value)).into_response(),
        Ok(Outcome::Err(error)) => (
            StatusCode::OK,
            [("x-amz-function-error", "Unhandled"), ("x-amz-executed-version", "$LATEST")],
            axum::Json(serde_json::json!({"errorType": error.error_type, "errorMessage": error.error_message})),
        )
            .into_response(),
        Err(e) => {
            (
                StatusCode::OK,
                [("x-amz-function-error", "Unhandled")],
                axum::Json(serde_json::json!({"errorType": "Runtime.ExitError", "errorMessage": format!("{e:#}")})),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::function_name;

    #[test]
    fn reduces_arns_to_names() {
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:123456789012:function:plan"),
            "plan"
        );
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:123456789012:function:plan:$LATEST"),
            "plan"
        );
        assert_eq!(function_name("plan"), "plan");
    }
}
