//! deployctl-aws-cloudfront's tests, one binary, against the repo's CloudFront
//! emulator (`tests/emulators/cloudfront.py`, URL in
//! `DEPLOYCTL_TEST_CLOUDFRONT_URL`) and moto for CloudWatch
//! (`DEPLOYCTL_TEST_MOTO_URL`); `bash tests/moto.sh -- cargo test -p
//! deployctl-aws-cloudfront` starts both. Without the variables every test
//! here is skipped with a message.
//!
//! `config_file.rs` releases whole DistributionConfig files
//! (`tests/fixtures/get-distribution-config.json`).
//!
//! Each test works in its own account (`x-moto-account-id`), so tests run in
//! parallel on one emulator without seeing each other.

mod config_file;
mod emulator;
mod guard;
mod iam;
mod support;
mod target;
