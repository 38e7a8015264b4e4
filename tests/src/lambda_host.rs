//! A local Lambda: runs a function's real binary as a child process behind an emulated Lambda
//! Runtime API, so it starts and runs exactly as on Lambda (bootstrap → `/invocation/next` loop).
//! Used by the integration tests, the gateway Step Functions calls, the demo and the benchmark.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex as StdMutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio::task::JoinHandle;

const API: &str = "/2018-06-01/runtime";

/// An invocation's outcome as Lambda reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Ok(Value),
    /// The function returned an error (`errorType`, `errorMessage`).
    Err(FunctionError),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionError {
    pub error_type: String,
    pub error_message: String,
}

impl Outcome {
    pub fn ok(self) -> Result<Value> {
        match self {
            Self::Ok(v) => Ok(v),
            Self::Err(e) => bail!("function error {}: {}", e.error_type, e.error_message),
        }
    }

    pub fn err(self) -> Result<FunctionError> {
        match self {
            Self::Err(e) => Ok(e),
            Self::Ok(v) => bail!("expected a function error, got {v}"),
        }
    }
}

struct Pending {
    id: String,
    payload: Bytes,
    reply: oneshot::Sender<Outcome>,
}

struct Runtime {
    queue: Mutex<mpsc::Receiver<Pending>>,
    in_flight: StdMutex<HashMap<String, oneshot::Sender<Outcome>>>,
    first_next: OnceLock<Instant>,
    init_error: StdMutex<Option<String>>,
    function_arn: String,
}

/// How to start a function.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub binary: PathBuf,
    pub name: String,
    /// The function's own environment (from the template) plus AWS endpoint and credentials.
    pub env: BTreeMap<String, String>,
    pub memory_mb: u32,
    pub timeout: Duration,
}

impl FunctionSpec {
    pub fn new(binary: impl Into<PathBuf>, env: BTreeMap<String, String>) -> Self {
        let binary = binary.into();
        let name = binary
            .file_name()
            .map_or_else(|| "function".into(), |n| n.to_string_lossy().into_owned());
        Self {
            binary,
            name,
            env,
            memory_mb: 128,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A running function process and its Runtime API.
pub struct LambdaHost {
    spec: FunctionSpec,
    runtime: Arc<Runtime>,
    sender: mpsc::Sender<Pending>,
    child: Child,
    pid: u32,
    spawned_at: Instant,
    logs: Arc<StdMutex<Vec<String>>>,
    server: JoinHandle<()>,
    next_id: u64,
}

impl LambdaHost {
    pub async fn start(spec: FunctionSpec) -> Result<Self> {
        if !spec.binary.is_file() {
            bail!(
                "{} is not built (run `make build-debug`, or `make build` for release)",
                spec.binary.display()
            );
        }
        let (sender, receiver) = mpsc::channel(64);
        let runtime = Arc::new(Runtime {
            queue: Mutex::new(receiver),
            in_flight: StdMutex::default(),
            first_next: OnceLock::new(),
            init_error: StdMutex::default(),
            function_arn: format!(
                "arn:aws:lambda:us-east-1:123456789012:function:{}",
                spec.name
            ),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .route(&format!("{API}/invocation/next"), get(next))
            .route(&format!("{API}/invocation/{{id}}/response"), post(respond))
            .route(&format!("{API}/invocation/{{id}}/error"), post(fail))
            .route(&format!("{API}/init/error"), post(init_error))
            .with_state(runtime.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        let logs = Arc::new(StdMutex::new(Vec::new()));
        let spawned_at = Instant::now();
        let mut child = command(&spec, addr)
            .spawn()
            .with_context(|| format!("starting {}", spec.binary.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("{} exited at once", spec.name))?;
        for pipe in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let logs = logs.clone();
            let echo = std::env::var_os("BED_ECHO_LOGS").is_some();
            let name = spec.name.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if echo {
                        eprintln!("[{name}] {line}");
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        Ok(Self {
            spec,
            runtime,
            sender,
            child,
            pid,
            spawned_at,
            logs,
            server,
            next_id: 0,
        })
    }

    /// The function's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `payload` (any bytes: a malformed event is a valid test) and waits for the outcome.
    pub async fn invoke_raw(&mut self, payload: impl Into<Bytes>) -> Result<Outcome> {
        self.next_id += 1;
        let id = format!("{:08x}-0000-4000-8000-{:012x}", self.pid, self.next_id);
        let (reply, outcome) = oneshot::channel();
        self.sender
            .send(Pending {
                id,
                payload: payload.into(),
                reply,
            })
            .await
            .map_err(|_| anyhow!("runtime API closed"))?;
        tokio::select! {
            outcome = outcome => outcome.map_err(|_| anyhow!("invocation dropped")),
            status = self.child.wait() => {
                let init_error = self.runtime.init_error.lock().unwrap().clone();
                Err(anyhow!("{} exited ({status:?}) during the invocation; init error: {init_error:?}; logs:\n{}", self.spec.name, self.logs().join("\n")))
            }
            _ = tokio::time::sleep(self.spec.timeout) => Err(anyhow!("{} timed out after {:?}", self.spec.name, self.spec.timeout)),
        }
    }

    pub async fn invoke(&mut self, event: &Value) -> Result<Outcome> {
        self.invoke_raw(serde_json::to_vec(event)?).await
    }

    /// Process start → first `GET /invocation/next`: the function's init time.
    pub fn init_duration(&self) -> Option<Duration> {
        self.runtime
            .first_next
            .get()
            .map(|t| t.duration_since(self.spawned_at))
    }

    /// Waits until the function has initialised (asked for its first event).
    pub async fn wait_ready(&mut self) -> Result<Duration> {
        let deadline = Instant::now() + self.spec.timeout;
        loop {
            if let Some(init) = self.init_duration() {
                return Ok(init);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited during init ({status}); logs:\n{}",
                    self.spec.name,
                    self.logs().join("\n")
                );
            }
            if Instant::now() > deadline {
                bail!("{} did not initialise", self.spec.name);
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }

    /// Peak resident memory of the process so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }

    /// CPU time (user + system) the process has used so far.
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // USER_HZ is 100 on Linux.
        Some(Duration::from_millis(ticks * 10))
    }

    /// Everything the function wrote to stdout and stderr, a line each.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// The log lines that are JSON objects.
    pub fn json_logs(&self) -> Vec<Value> {
        self.logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(Value::is_object)
            .collect()
    }

    pub fn binary(&self) -> &Path {
        &self.spec.binary
    }
}

impl Drop for LambdaHost {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        self.server.abort();
    }
}

fn command(spec: &FunctionSpec, api: SocketAddr) -> Command {
    let mut command = Command::new(&spec.binary);
    // Only what Lambda would set, and the function's own variables: nothing leaks from the shell.
    command
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("AWS_LAMBDA_RUNTIME_API", api.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", &spec.name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            spec.memory_mb.to_string(),
        )
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{}", spec.name),
        )
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn next(State(runtime): State<Arc<Runtime>>) -> Response {
    let _ = runtime.first_next.set(Instant::now());
    let Some(pending) = runtime.queue.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    runtime
        .in_flight
        .lock()
        .unwrap()
        .insert(pending.id.clone(), pending.reply);
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() + 30_000)
        .unwrap_or_default();
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    };
    set("lambda-runtime-aws-request-id", pending.id);
    set("lambda-runtime-deadline-ms", deadline.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        runtime.function_arn.clone(),
    );
    set(
        "lambda-runtime-trace-id",
        "Root=1-00000000-000000000000000000000000;Sampled=0".into(),
    );
    (StatusCode::OK, headers, pending.payload).into_response()
}

async fn respond(
    State(runtime): State<Arc<Runtime>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    let outcome = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    complete(&runtime, &id, Outcome::Ok(outcome))
}

async fn fail(
    State(runtime): State<Arc<Runtime>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    let error = serde_json::from_slice(&body).unwrap_or_else(|_| FunctionError {
        error_type: "Runtime.Unknown".into(),
        error_message: String::from_utf8_lossy(&body).into_owned(),
    });
    complete(&runtime, &id, Outcome::Err(error))
}

async fn init_error(State(runtime): State<Arc<Runtime>>, body: Bytes) -> StatusCode {
    *runtime.init_error.lock().unwrap() = Some(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
}

fn complete(runtime: &Runtime, id: &str, outcome: Outcome) -> StatusCode {
    match runtime.in_flight.lock().unwrap().remove(id) {
        Some(reply) => {
            let _ = reply.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::NOT_FOUND,
    }
}
