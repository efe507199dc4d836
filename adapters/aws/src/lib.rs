//! `deployctl-aws`: what every AWS adapter shares, and the Lambda target.
//!
//! Start at [`config::load`] (the standard AWS chain: credentials, region,
//! profile, and the endpoint from `AWS_ENDPOINT_URL`, so the same code talks
//! to AWS or to an emulator) and [`map_sdk_error`] (SDK failures → the
//! engine's error classes). [`LambdaTarget`] releases a Lambda alias by
//! weighted routing. The other AWS adapters live in their own crates
//! (`deployctl-aws-cloudfront`, `-ecs`, `-signals`, `-audit`) and build on
//! these two. The `testing` feature has the moto fixtures all of them use.

pub mod config;
mod error;
pub mod iam;
pub mod identity;
mod lambda;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::map_sdk_error;
pub use lambda::{LambdaTarget, lambda_config};
