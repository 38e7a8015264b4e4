//! Integration tests: the real binaries against the local AWS bed (`make test` starts it).

mod gatekeeper;
mod interruption;
mod spotctl;
mod stepfunctions;
mod support;
