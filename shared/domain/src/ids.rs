//! The syntax of every identifier an event or a request carries, checked in one place before any
//! AWS call: a value that breaks its rule is refused (`InvalidEvent` for an event, `InvalidRequest`
//! for a request) and never sent to AWS, where it would fail as an AWS error (retried, then
//! dead-lettered) or, worse, match something.
//!
//! Each rule is AWS's own where AWS documents one, never looser; the lengths are the longest value
//! AWS issues, so a 5,000-character "region" stops here.

use std::fmt;

/// A kind of identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// 12 digits.
    AccountId,
    /// `us-east-1`, `us-gov-west-1`, `eu-isoe-west-1`: at most 32 characters.
    Region,
    /// `use1-az1`, `usw2-lax1-az1`: at most 32 characters.
    AzId,
    /// `i-` and 8 or 17 hexadecimal digits.
    InstanceId,
    /// `m5.large`, `u-6tb1.metal`: at most 32 characters.
    InstanceType,
    /// An Auto Scaling group's name: 1-255 characters, no control characters.
    AsgName,
    /// `arn:<partition>:<service>:<region>:<account>:<resource>`, at most 2,048 characters.
    Arn,
    /// A Step Functions execution (or state machine) name as this project makes them: 1-80 of
    /// letters, digits, `-` and `_`.
    ExecutionName,
    /// An EventBridge event id: 1-64 of letters, digits and `-`.
    EventId,
}

/// A value that breaks its field's rule; shows at most 40 characters of it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{field} `{shown}` is malformed ({rule})")]
pub struct FieldError {
    pub field: Field,
    pub shown: String,
    pub rule: &'static str,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AccountId => "account id",
            Self::Region => "region",
            Self::AzId => "AZ id",
            Self::InstanceId => "instance id",
            Self::InstanceType => "instance type",
            Self::AsgName => "group name",
            Self::Arn => "ARN",
            Self::ExecutionName => "execution name",
            Self::EventId => "event id",
        })
    }
}

impl Field {
    /// The rule, as an error message states it.
    pub fn rule(self) -> &'static str {
        match self {
            Self::AccountId => "12 digits",
            Self::Region => "like us-east-1, at most 32 characters",
            Self::AzId => "like use1-az1, at most 32 characters",
            Self::InstanceId => "i- and 8 or 17 hexadecimal digits",
            Self::InstanceType => "like m5.large, at most 32 characters",
            Self::AsgName => "1-255 characters, no control characters",
            Self::Arn => "arn:partition:service:region:account:resource, at most 2048 characters",
            Self::ExecutionName => "1-80 letters, digits, - or _",
            Self::EventId => "1-64 letters, digits or -",
        }
    }

    pub fn accepts(self, value: &str) -> bool {
        match self {
            Self::AccountId => value.len() == 12 && value.bytes().all(|b| b.is_ascii_digit()),
            Self::Region => is_region(value),
            Self::AzId => is_az_id(value),
            Self::InstanceId => value.strip_prefix("i-").is_some_and(|hex| {
                matches!(hex.len(), 8 | 17) && hex.bytes().all(|b| b.is_ascii_hexdigit())
            }),
            Self::InstanceType => is_instance_type(value),
            Self::AsgName => {
                !value.is_empty()
                    && value.chars().count() <= 255
                    && !value.chars().any(char::is_control)
            }
            Self::Arn => is_arn(value),
            Self::ExecutionName => {
                (1..=80).contains(&value.len())
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            }
            Self::EventId => {
                (1..=64).contains(&value.len())
                    && value
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }
        }
    }

    /// `Ok` when `value` keeps the rule, else the error that names the field and the rule.
    pub fn check(self, value: &str) -> Result<(), FieldError> {
        if self.accepts(value) {
            return Ok(());
        }
        Err(FieldError {
            field: self,
            shown: value.chars().take(40).collect(),
            rule: self.rule(),
        })
    }
}

/// Lowercase words joined by `-`, the first of two letters, the last a number of 1-2 digits.
fn is_region(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let word = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    value.len() <= 32
        && parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1].iter().all(word)
        && parts
            .last()
            .is_some_and(|n| (1..=2).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Lowercase letters and digits joined by `-`, ending `-az<digits>`.
fn is_az_id(value: &str) -> bool {
    value.len() <= 32
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && value.rsplit_once("-az").is_some_and(|(zone, n)| {
            !zone.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
        })
}

/// `<family>.<size>`: lowercase letters, digits and `-`.
fn is_instance_type(value: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    value.len() <= 32
        && value
            .split_once('.')
            .is_some_and(|(f, s)| part(f) && part(s))
}

fn is_arn(value: &str) -> bool {
    let parts: Vec<&str> = value.splitn(6, ':').collect();
    value.len() <= 2048
        && parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && !parts[2].is_empty()
        && !parts[5].is_empty()
        && !value.chars().any(|c| c.is_control() || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refuses(field: Field, values: &[&str]) {
        for v in values {
            assert!(!field.accepts(v), "{field} accepted `{v}`");
            let e = field.check(v).unwrap_err();
            assert!(e.shown.chars().count() <= 40);
        }
    }

    #[test]
    fn every_kind_accepts_what_aws_issues() {
        let cases: [(Field, &[&str]); 9] = [
            (Field::AccountId, &["123456789012", "000000000000"]),
            (
                Field::Region,
                &[
                    "us-east-1",
                    "us-gov-west-1",
                    "eu-isoe-west-1",
                    "ap-southeast-5",
                    "cn-north-1",
                ],
            ),
            (Field::AzId, &["use1-az1", "usw2-lax1-az1", "apne1-az4"]),
            (Field::InstanceId, &["i-0123abcd", "i-0123456789abcdef0"]),
            (
                Field::InstanceType,
                &[
                    "m5.large",
                    "u-6tb1.metal",
                    "c7gn.16xlarge",
                    "mac2-m2pro.metal",
                ],
            ),
            (
                Field::AsgName,
                &["web", "eks-nodes-2a3b-4c5d", "a group with spaces"],
            ),
            (
                Field::Arn,
                &[
                    "arn:aws:iam::123456789012:role/SpotOptimizerMember",
                    "arn:aws-cn:states:cn-north-1:123456789012:execution:m:e",
                ],
            ),
            (
                Field::ExecutionName,
                &["switch-i-0123abcd-20261128-live", "a_b"],
            ),
            (Field::EventId, &["7bf73129-1428-4cd3-a780-95db273d1602"]),
        ];
        for (field, values) in cases {
            for v in values {
                assert!(field.accepts(v), "{field} refused `{v}`");
            }
        }
    }

    #[test]
    fn over_long_or_malformed_values_are_refused_with_their_rule() {
        let long = "a".repeat(5000);
        refuses(
            Field::AccountId,
            &["12345678901", "12345678901a", "", &long],
        );
        refuses(
            Field::Region,
            &[
                "",
                "us-east",
                "us-east-x",
                "US-EAST-1",
                "us-east-1; DROP",
                "u-east-1",
                &format!("us-{long}-1"),
            ],
        );
        refuses(
            Field::AzId,
            &[
                "use1",
                "use1-az",
                "us-east-1a",
                "USE1-AZ1",
                &format!("{long}-az1"),
            ],
        );
        refuses(
            Field::InstanceId,
            &["i-zzzz", "i-0123abc", "vol-0123abcd", &format!("i-{long}")],
        );
        refuses(
            Field::InstanceType,
            &["m5", ".large", "m5.", "M5.LARGE", &format!("m5.{long}")],
        );
        refuses(Field::AsgName, &["", "web\n", &"g".repeat(256)]);
        refuses(
            Field::Arn,
            &[
                "",
                "arn:aws:iam",
                "arn:gcp:iam::1:role/x",
                "arn:aws::::x",
                "arn:aws:iam::1:role/a b",
                &format!("arn:aws:s3:::{}", "b".repeat(2048)),
            ],
        );
        refuses(Field::ExecutionName, &["", "a:b", "../x", &"x".repeat(81)]);
        refuses(Field::EventId, &["", "a b", &"e".repeat(65)]);
        let e = Field::Region.check(&long).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "region `{}` is malformed (like us-east-1, at most 32 characters)",
                &long[..40]
            )
        );
    }
}
