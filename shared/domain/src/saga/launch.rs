//! Which pool a launch takes: the first of the ranked candidates that the gatekeeper still allows
//! and that has capacity. Both sagas' launch steps use it, with the gatekeeper read and the launch
//! call passed in, so the choice is tested here in memory and the calls in the bed.

use std::future::Future;

use crate::error::{AwsError, ErrorName};
use crate::instance::Launched;
use crate::market::{Candidate, Exclusion, ExclusionReason};

/// The pool a launch took.
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    /// Index of the candidate in the ranking (it names the idempotency token).
    pub index: usize,
    pub instance_id: String,
    /// Pools passed over before it, and why.
    pub skipped: Vec<Exclusion>,
}

/// Tries `candidates` in order: a pool `quarantined` answers `Some(why)` for is passed over without
/// a launch; one whose `launch` answers no capacity, or refuses this type or AZ, is passed over
/// after it. `Ok(Err(skipped))`:
/// no pool took it, each with its reason. An AWS error other than capacity ends the attempt.
pub async fn first_open_pool<'a, Q, QF, L, LF>(
    candidates: &'a [Candidate],
    mut quarantined: Q,
    mut launch: L,
) -> Result<Result<Taken, Vec<Exclusion>>, AwsError>
where
    Q: FnMut(&'a Candidate) -> QF,
    QF: Future<Output = Result<Option<String>, AwsError>>,
    L: FnMut(usize, &'a Candidate) -> LF,
    LF: Future<Output = Result<Launched, AwsError>>,
{
    let mut skipped = Vec::new();
    for (index, candidate) in candidates.iter().enumerate() {
        if let Some(why) = quarantined(candidate).await? {
            skipped.push(Exclusion::new(
                candidate.pool.to_string(),
                ExclusionReason::Quarantined,
                why,
            ));
            continue;
        }
        match launch(index, candidate).await? {
            Launched::Instance(instance_id) => {
                return Ok(Ok(Taken {
                    index,
                    instance_id,
                    skipped,
                }));
            }
            Launched::NoCapacity(why) => skipped.push(Exclusion::new(
                candidate.pool.to_string(),
                ExclusionReason::NoCapacity,
                why,
            )),
            Launched::Refused(why) => skipped.push(Exclusion::new(
                candidate.pool.to_string(),
                ExclusionReason::LaunchRefused,
                why,
            )),
        }
    }
    Ok(Err(skipped))
}

/// The error when no pool took the launch: `InsufficientCapacity` if capacity (or a quarantine)
/// stopped any pool, else `AwsError`: EC2 refused the request in every pool, which no other pool
/// will fix.
pub fn no_launch_error(skipped: &[Exclusion]) -> ErrorName {
    let refused_everywhere = !skipped.is_empty()
        && skipped
            .iter()
            .all(|e| e.reason == ExclusionReason::LaunchRefused);
    if refused_everywhere {
        ErrorName::AwsError
    } else {
        ErrorName::InsufficientCapacity
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::error::AwsErrorKind;
    use crate::pool::PoolKey;

    fn candidates(types: &[&str]) -> Vec<Candidate> {
        types
            .iter()
            .map(|t| Candidate {
                pool: PoolKey::new("us-east-1", "use1-az6", *t).unwrap(),
                instance_type: (*t).into(),
                az_name: "us-east-1a".into(),
                subnet_id: "subnet-a".into(),
                spot_price: 0.04,
                interruption_band: 0,
                interruption_label: "<5%".into(),
                saving_per_hour: 0.05,
                score: 0.04,
            })
            .collect()
    }

    /// Runs the chooser over pools where `quarantined` are held and `full` have no capacity;
    /// returns its answer and the pools it launched in.
    fn choose(
        types: &[&str],
        quarantined: &[&str],
        full: &[&str],
    ) -> (Result<Taken, Vec<Exclusion>>, Vec<String>) {
        let tried = RefCell::new(Vec::new());
        let answer = futures::executor::block_on(first_open_pool(
            &candidates(types),
            |c| {
                let held = quarantined.contains(&c.instance_type.as_str());
                async move { Ok(held.then(|| "interruption warning".to_owned())) }
            },
            |i, c| {
                tried.borrow_mut().push(c.instance_type.clone());
                let full = full.contains(&c.instance_type.as_str());
                async move {
                    Ok(if full {
                        Launched::NoCapacity("InsufficientInstanceCapacity".into())
                    } else {
                        Launched::Instance(format!("i-{i}"))
                    })
                }
            },
        ))
        .unwrap();
        (answer, tried.into_inner())
    }

    #[test]
    fn the_best_open_pool_is_taken_and_quarantined_pools_are_never_launched_in() {
        let (taken, tried) = choose(&["a.large", "b.large", "c.large"], &["a.large"], &[]);
        let taken = taken.unwrap();
        assert_eq!((taken.index, taken.instance_id.as_str()), (1, "i-1"));
        assert_eq!(tried, ["b.large"]);
        assert_eq!(taken.skipped[0].reason, ExclusionReason::Quarantined);
    }

    #[test]
    fn a_pool_without_capacity_is_passed_over_for_the_next() {
        let (taken, tried) = choose(
            &["a.large", "b.large", "c.large"],
            &["b.large"],
            &["a.large"],
        );
        let taken = taken.unwrap();
        assert_eq!(taken.index, 2);
        assert_eq!(tried, ["a.large", "c.large"]);
        let reasons: Vec<_> = taken.skipped.iter().map(|e| e.reason).collect();
        assert_eq!(
            reasons,
            [ExclusionReason::NoCapacity, ExclusionReason::Quarantined]
        );
    }

    #[test]
    fn no_pool_left_names_every_pool_and_why() {
        let (answer, _) = choose(&["a.large", "b.large"], &["a.large"], &["b.large"]);
        let skipped = answer.unwrap_err();
        assert_eq!(skipped.len(), 2);
        let (answer, tried) = choose(&[], &[], &[]);
        assert!(answer.unwrap_err().is_empty());
        assert!(tried.is_empty());
    }

    #[test]
    fn a_pool_that_refuses_the_type_is_passed_over_and_a_refusal_everywhere_is_an_aws_error() {
        let refused = |types: &[&str], refusing: &'static [&'static str]| {
            futures::executor::block_on(first_open_pool(
                &candidates(types),
                |_| async { Ok(None) },
                |i, c| {
                    let refuses = refusing.contains(&c.instance_type.as_str());
                    async move {
                        Ok(if refuses {
                            Launched::Refused("InvalidParameterCombination: ENA required".into())
                        } else {
                            Launched::Instance(format!("i-{i}"))
                        })
                    }
                },
            ))
            .unwrap()
        };
        let taken = refused(&["a.large", "b.large"], &["a.large"]).unwrap();
        assert_eq!(taken.index, 1);
        assert_eq!(taken.skipped[0].reason, ExclusionReason::LaunchRefused);

        let everywhere = refused(&["a.large", "b.large"], &["a.large", "b.large"]).unwrap_err();
        assert_eq!(no_launch_error(&everywhere), ErrorName::AwsError);
        let (mixed, _) = choose(&["a.large"], &[], &["a.large"]);
        assert_eq!(
            no_launch_error(&mixed.unwrap_err()),
            ErrorName::InsufficientCapacity
        );
        assert_eq!(no_launch_error(&[]), ErrorName::InsufficientCapacity);
    }

    #[test]
    fn any_other_error_ends_the_attempt() {
        let answer = futures::executor::block_on(first_open_pool(
            &candidates(&["a.large", "b.large"]),
            |_| async { Ok(None) },
            |_, _| async {
                Err(AwsError::new(
                    AwsErrorKind::Transient,
                    "RunInstances",
                    None,
                    "throttled",
                ))
            },
        ));
        assert!(answer.is_err());
    }
}
