//! Hibernation schedules: instances and groups tagged `spot-optimizer:schedule=<name>` sleep
//! outside their working hours.
//!
//! | module | what lives there |
//! |---|---|
//! | [`week`] | the 168-hour week: periods (`Mon-Fri 7-19; Sat 9-13`) and the matrix they compile to |
//! | [`plan`] | the reconciler's plan for one account and region: batched stops and starts, group sleep and wake |
//! | [`savings`] | hours asleep (DST weeks as long as they really are) at an on-demand price |
//! | [`schedule`] | a schedule (zone, week, options), what it says at an instant (DST-correct), the reconciler's decision per target |
//! | [`targets`] | scheduled instances and groups as AWS describes them; which ones a saga has |
//! | [`state`] | what the reconciler keeps per target between runs (last wish, group record, the sleep in progress, savings) and overrides |

pub mod plan;
pub mod savings;
pub mod schedule;
pub mod state;
pub mod targets;
pub mod week;

pub use schedule::{Decision, Override, Power, Schedule, ScheduleError, Seen, decide};
pub use week::{Week, WeekError};
