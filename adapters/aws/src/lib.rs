//! `deployctl-aws`: what every AWS adapter shares.
//!
//! Start at [`config::load`] (the standard AWS chain: credentials, region,
//! profile, and the endpoint from `AWS_ENDPOINT_URL`, so the same code talks
//! to AWS or to an emulator) and [`map_sdk_error`] (SDK failures → the
//! engine's error classes). [`identity::caller_arn`] names the AWS
//! principal for the audit trail. [`bridge::Bridge`] drives the async SDK
//! from synchronous callers on any thread. The `testing` feature has the moto
//! fixtures every AWS adapter's tests use (accounts, `CallRecorder`).
//!
//! The adapters themselves live in their own crates, one per service
//! (`deployctl-aws-lambda`, `-cloudfront`, `-ecs`, `-signals`, `-audit`):
//! this crate depends on no service's SDK but STS, so an adapter compiles
//! and links only the services it calls.

pub mod bridge;
pub mod config;
mod error;
pub mod identity;
pub mod s3_location;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::map_sdk_error;
