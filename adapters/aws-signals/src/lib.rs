//! `deployctl-aws-signals`: health in and news out on AWS.
//!
//! - [`CloudWatchProbe`] measures `cloudwatch` gates (R7): every named
//!   alarm must be OK (ALARM fails; INSUFFICIENT_DATA or a missing alarm is
//!   inconclusive, never a pass) and every metric threshold must hold on
//!   the newest `GetMetricData` datapoint of its last `period` (none is
//!   inconclusive).
//! - [`SnsNotifier`] publishes run events to an SNS topic (S5, O8) with a
//!   Subject and MessageAttributes subscribers can filter on.
//!
//! Both build their client from the standard AWS chain on first use
//! (`deployctl_aws::config`: one attempt per call, bounded call times), so
//! the binary can create them synchronously; `new` takes a ready client for
//! tests. Start at `cloudwatch/mod.rs` for the gate and `sns.rs` for the
//! notifier. Tests run against moto (`tests/moto.sh`); moto does not
//! evaluate alarms from data, so they drive alarm states with SetAlarmState.

mod cloudwatch;
mod error;
mod finding;
pub mod iam;
mod lazy;
mod sns;

pub use cloudwatch::{CloudWatchProbe, cloudwatch_config};
pub use error::SignalsError;
pub use sns::{SnsNotifier, TopicArn, attributes, event_name, severity, sns_config, subject};
