//! Integration tests: the real binaries against the local AWS bed (`make test` starts it).

mod failover;
mod fanout;
mod gatekeeper;
mod governance;
mod guardrails;
mod hibernation;
mod iam;
mod interruption;
mod onboarding;
mod revert;
mod router;
mod savings;
mod security;
mod spotctl;
mod stepfunctions;
mod support;
mod swap;
mod switch;
mod waste;
