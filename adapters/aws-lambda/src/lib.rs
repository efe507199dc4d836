//! `deployctl-aws-lambda`: a Lambda function's alias as a deploy target.
//!
//! Start at [`LambdaTarget`] (`target.rs`: the alias's `FunctionVersion`
//! is the stable version, its one `AdditionalVersionWeights` entry the
//! candidate; built by [`LambdaTarget::from_spec`], refused with a
//! [`ConstructError`]), then `publish.rs` (a release's code published as a version
//! exactly once, across retries and restarts) and [`iam`] (the permissions
//! those calls need, checked by the tests against the calls the SDK makes).
//!
//! Its own crate, apart from the shared AWS plumbing in `deployctl-aws`,
//! so the other AWS adapters do not compile and link `aws-sdk-lambda`, and
//! a change here rebuilds only this crate and the binary.

mod error;
pub mod iam;
mod publish;
mod target;

pub use error::ConstructError;
pub use target::{LambdaTarget, lambda_config};
