//! Audit or live: who may switch a scheduled function to destructive actions, and where.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// `audit` finds and records (and tags, which destroys nothing); `live` also deletes or
/// terminates once grace periods have passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Audit,
    Live,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Audit => "audit",
            Self::Live => "live",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("mode `{0}` is neither audit nor live")]
pub struct ModeError(pub String);

impl FromStr for Mode {
    type Err = ModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "audit" => Ok(Self::Audit),
            "live" => Ok(Self::Live),
            _ => Err(ModeError(s.to_owned())),
        }
    }
}

/// The deployment's switch (`MODE`) and allowlist (`LIVE_ACCOUNTS`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LiveSwitch {
    pub mode: Mode,
    pub live_accounts: BTreeSet<String>,
}

impl LiveSwitch {
    /// The mode for one account: live only if the deployment is live, the account is on the
    /// allowlist, and the request (if it names a mode) asks for live. A request can lower the mode
    /// to audit, never raise it.
    pub fn effective(&self, requested: Option<Mode>, account: &str) -> Mode {
        let live = self.mode == Mode::Live
            && self.live_accounts.contains(account)
            && requested != Some(Mode::Audit);
        if live { Mode::Live } else { Mode::Audit }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn switch(mode: Mode, accounts: &[&str]) -> LiveSwitch {
        LiveSwitch {
            mode,
            live_accounts: accounts.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    #[test]
    fn live_needs_the_switch_and_the_allowlist() {
        let live = switch(Mode::Live, &["111111111111"]);
        assert_eq!(live.effective(None, "111111111111"), Mode::Live);
        assert_eq!(live.effective(Some(Mode::Live), "111111111111"), Mode::Live);
        assert_eq!(
            live.effective(None, "222222222222"),
            Mode::Audit,
            "not allowlisted"
        );
        let audit = switch(Mode::Audit, &["111111111111"]);
        assert_eq!(
            audit.effective(None, "111111111111"),
            Mode::Audit,
            "switch off"
        );
    }

    #[test]
    fn a_request_can_lower_but_never_raise_the_mode() {
        let live = switch(Mode::Live, &["111111111111"]);
        assert_eq!(
            live.effective(Some(Mode::Audit), "111111111111"),
            Mode::Audit
        );
        let audit = switch(Mode::Audit, &[]);
        assert_eq!(
            audit.effective(Some(Mode::Live), "111111111111"),
            Mode::Audit
        );
    }

    #[test]
    fn parses_case_insensitively() {
        assert_eq!("LIVE".parse::<Mode>(), Ok(Mode::Live));
        assert_eq!(" audit".parse::<Mode>(), Ok(Mode::Audit));
        assert!("yolo".parse::<Mode>().is_err());
        assert_eq!(Mode::default(), Mode::Audit);
    }
}
