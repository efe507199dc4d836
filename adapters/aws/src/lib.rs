//! `deployctl-aws`: AWS deploy targets. Today: Lambda aliases
//! ([`LambdaTarget`]); CloudFront, ECS, CloudWatch gates and SNS come with
//! the rest of the AWS issue.
//!
//! Clients come from the standard AWS chain (credentials, region, profile)
//! and take their endpoint from `AWS_ENDPOINT_URL`, so the same code talks to
//! AWS or to an emulator (the tests use moto, `tests/moto.sh`).

mod error;
mod lambda;

pub use lambda::{LambdaTarget, lambda_config};
