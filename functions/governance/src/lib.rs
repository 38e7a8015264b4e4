//! The scheduled governance functions, one module each: the waste scanner ([`waste`], Lambda
//! `waste-scanner`) and the security enforcer ([`enforce`], Lambda `security-enforcer`). Both run
//! per account and region through `spot_domain::governance::run::scheduled`; the rules they apply
//! live in `spot_domain::governance`. The `fanout` function ([`fanout`]) lists the targets of a
//! scheduled function fanned out on Step Functions and sums up the run; `accounts-verify`
//! ([`verify`]) checks the member roles reach each account.
//!
//! The flows are generic over the governance ports and the clock, so the tests and the demo run
//! them in-process against the bed with a fixed clock (grace periods without sleeping); the Lambda
//! binaries wire the AWS adapters and the system clock.

pub mod enforce;
pub mod fanout;
pub mod verify;
pub mod waste;

use lambda_runtime::Diagnostic;
use spot_domain::governance::run::RunError;

/// The Lambda error of a run that could not start (bad request, unreadable accounts table).
pub fn diagnostic(err: RunError) -> Diagnostic {
    Diagnostic {
        error_type: err.error_name().as_str().to_owned(),
        error_message: err.to_string(),
    }
}
