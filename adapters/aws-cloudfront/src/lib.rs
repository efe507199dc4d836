//! `deployctl-aws-cloudfront`: CloudFront releases by continuous deployment.
//!
//! Start at [`CloudFrontTarget`] (the `Target` for a primary distribution:
//! a staging copy carries the new configuration, a continuous deployment
//! policy sends it a weighted share of the traffic, promotion copies it
//! into the primary; built by [`CloudFrontTarget::from_spec`], refused
//! with a [`ConstructError`]). [`Release`] is what gets deployed (from the plan's
//! artifact: a new origin domain, or a whole DistributionConfig read from
//! a JSON file in the format `aws cloudfront get-distribution-config`
//! prints, see [`Release::config_file`]), [`WaitOptions`] bounds the wait for CloudFront's propagation,
//! and [`traffic_guard`] keeps a health gate from passing on a staging
//! distribution that received no requests.
//!
//! Everything the target needs to find its way back after a restart lives
//! on the platform, in tags ([`tags`]): nothing is kept on local disk.

mod config_file;
mod error;
mod guard;
pub mod iam;
mod platform;
mod release;
pub mod tags;
mod target;
mod wait;

pub use error::ConstructError;
pub use guard::{StagingTrafficGuard, cloudwatch_config, traffic_guard};
pub use release::Release;
pub use target::{CloudFrontTarget, TRAFFIC_WINDOW, cloudfront_config};
pub use wait::{ProgressFn, WaitOptions, WaitProgress};
