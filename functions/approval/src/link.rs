//! Lambda `approval-link`, behind a function URL: the approve and reject links of an approval
//! notice. A link's token is 32 random bytes whose SHA-256 digest the request stores; the link
//! works once, until the request expires. Opening it (GET) only shows what is asked and a button:
//! mail scanners that fetch links answer nothing. Pressing the button (POST) checks the token again,
//! answers Step Functions first (which takes one answer per task) and then records the answer. A
//! forged, replayed or expired link changes nothing and says why.

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use spot_aws::{ApprovalsTable, AwsContext, TaskAnswers};
use spot_domain::ErrorName;
use spot_domain::config::{ConfigError, Env, key};
use spot_domain::saga::approval::{ApprovalRequest, ApprovalStatus, Decision, LinkVerdict, judge};
use tracing::{info, warn};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub approvals_table: String,
}

impl Config {
    pub fn from_env<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Self, ConfigError> {
        Ok(Self {
            approvals_table: env.required(key::APPROVALS_TABLE)?,
        })
    }
}

/// The approve and reject links of `saga_id` at the function URL `url`.
pub fn links(url: &str, saga_id: &str, approve: &str, reject: &str) -> (String, String) {
    let link = |decision: &str, token: &str| {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("saga", saga_id)
            .append_pair("decision", decision)
            .append_pair("token", token)
            .finish();
        format!("{}/?{query}", url.trim_end_matches('/'))
    };
    (link("approve", approve), link("reject", reject))
}

pub struct Links {
    pub approvals: ApprovalsTable,
    pub answers: TaskAnswers,
}

/// What a link or its button sends.
struct Asked {
    saga: String,
    decision: Decision,
    token: String,
}

impl Links {
    pub async fn connect(config: Config) -> Self {
        let ctx = AwsContext::load(spot_domain::Capability::Read, "approval-link").await;
        Self::new(&ctx, config)
    }

    pub fn new(ctx: &AwsContext, config: Config) -> Self {
        Self {
            approvals: ApprovalsTable::new(
                aws_sdk_dynamodb::Client::new(ctx.base()),
                config.approvals_table,
            ),
            answers: TaskAnswers::new(aws_sdk_sfn::Client::new(ctx.base())),
        }
    }

    /// A function URL event in, its HTTP answer out (never an error: every refusal is a page).
    pub async fn handle(&self, event: &Value, now: DateTime<Utc>) -> Value {
        let method = event["requestContext"]["http"]["method"]
            .as_str()
            .unwrap_or_default();
        let form = match method {
            "GET" => event["rawQueryString"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            "POST" => body(event),
            _ => return page(405, "Not allowed", "Open the link from the notice."),
        };
        let Some(asked) = parse(&form) else {
            return page(400, "Not an approval link", "Nothing was changed.");
        };
        let request = match self.approvals.get(&asked.saga).await {
            Ok(request) => request,
            Err(e) => {
                warn!(error = %e, "approvals table unreadable");
                return page(
                    503,
                    "Try again",
                    "The approvals could not be read; nothing was changed.",
                );
            }
        };
        let verdict = judge(request.as_ref(), asked.decision, &asked.token, now);
        info!(saga_id = %asked.saga, decision = asked.decision.as_str(), method, verdict = ?verdict, "approval link");
        let status = match verdict {
            LinkVerdict::Forged => {
                return page(
                    403,
                    "This link is not valid",
                    "It does not match any approval request: nothing was changed.",
                );
            }
            LinkVerdict::Expired => {
                return page(
                    410,
                    "This request has expired",
                    "Its time is over and the timeout rejects it: nothing was changed.",
                );
            }
            LinkVerdict::Answered(was) => {
                return page(
                    410,
                    "Already answered",
                    &format!(
                        "This request was {} already; a link works once. Nothing was changed.",
                        was.as_str().to_lowercase()
                    ),
                );
            }
            LinkVerdict::Answer(status) => status,
        };
        let Some(request) = request else {
            return page(403, "This link is not valid", "Nothing was changed.");
        };
        if method == "GET" {
            return confirm(&request, &asked);
        }
        self.answer(&request, status, now).await
    }

    async fn answer(
        &self,
        request: &ApprovalRequest,
        status: ApprovalStatus,
        now: DateTime<Utc>,
    ) -> Value {
        let by = "approval link";
        let sent = match status {
            ApprovalStatus::Approved => {
                self.answers
                    .approve(&request.task_token, &json!({"approved_by": by, "at": now}))
                    .await
            }
            _ => {
                self.answers
                    .reject(
                        &request.task_token,
                        ErrorName::ApprovalRejected.as_str(),
                        &format!("rejected ({by})"),
                    )
                    .await
            }
        };
        if let Err(e) = sent {
            warn!(saga_id = %request.saga_id, error = %e, "Step Functions refused the answer");
            return page(
                410,
                "The saga no longer waits",
                "Step Functions took no answer (answered or timed out): nothing was changed.",
            );
        }
        if let Err(e) = self
            .approvals
            .answer(&request.saga_id, status, by, status.as_str())
            .await
        {
            warn!(saga_id = %request.saga_id, error = %e, "answer not recorded");
        }
        match status {
            ApprovalStatus::Approved => page(
                200,
                "Approved",
                &format!("{} of {} goes on.", request.saga, request.target),
            ),
            _ => page(
                200,
                "Rejected",
                &format!(
                    "{} of {} stops; nothing was changed.",
                    request.saga, request.target
                ),
            ),
        }
    }
}

fn body(event: &Value) -> String {
    let text = event["body"].as_str().unwrap_or_default();
    if event["isBase64Encoded"].as_bool() == Some(true) {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default()
    } else {
        text.to_owned()
    }
}

fn parse(form: &str) -> Option<Asked> {
    let mut saga = None;
    let mut decision = None;
    let mut token = None;
    for (k, v) in form_urlencoded::parse(form.as_bytes()) {
        match k.as_ref() {
            "saga" => saga = Some(v.into_owned()),
            "decision" => decision = Decision::parse(&v),
            "token" => token = Some(v.into_owned()),
            _ => {}
        }
    }
    let saga = saga.filter(|s| !s.is_empty() && s.len() <= 80)?;
    Some(Asked {
        saga,
        decision: decision?,
        token: token.filter(|t| t.len() <= 128)?,
    })
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn page(status: u16, title: &str, text: &str) -> Value {
    html(
        status,
        &format!("<h1>{}</h1><p>{}</p>", escape(title), escape(text)),
    )
}

fn html(status: u16, content: &str) -> Value {
    json!({
        "statusCode": status,
        "headers": {
            "content-type": "text/html; charset=utf-8",
            "cache-control": "no-store",
            "referrer-policy": "no-referrer",
            "x-frame-options": "DENY",
            "content-security-policy": "default-src 'none'; form-action 'self'",
        },
        "body": format!("<!doctype html><html><head><meta charset=\"utf-8\"><title>Spot optimizer</title></head><body>{content}</body></html>"),
    })
}

/// What is asked, with the one button that answers it.
fn confirm(request: &ApprovalRequest, asked: &Asked) -> Value {
    let verb = asked.decision.as_str();
    let button = match asked.decision {
        Decision::Approve => "Approve",
        Decision::Reject => "Reject",
    };
    let reasons: String = request
        .reasons
        .iter()
        .map(|r| format!("<li>{}</li>", escape(r)))
        .collect();
    html(
        200,
        &format!(
            "<h1>{button} {}?</h1><p>{} risk, account {}, {}; waits until {}.</p><ul>{reasons}</ul><p>{}</p>\
             <form method=\"post\"><input type=\"hidden\" name=\"saga\" value=\"{}\">\
             <input type=\"hidden\" name=\"decision\" value=\"{verb}\">\
             <input type=\"hidden\" name=\"token\" value=\"{}\">\
             <button type=\"submit\">{button}</button></form>",
            escape(&format!("{} of {}", request.saga, request.target)),
            request.risk,
            escape(&request.account_id),
            escape(&request.region),
            request.expires_at.format("%Y-%m-%d %H:%M UTC"),
            escape(&request.summary),
            escape(&asked.saga),
            escape(&asked.token),
        ),
    )
}
