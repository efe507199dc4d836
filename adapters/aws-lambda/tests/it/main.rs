//! deployctl-aws-lambda's tests, one binary, against moto's server mode
//! (`tests/moto.sh`; `bash tests/run.sh` starts it and sets
//! `DEPLOYCTL_TEST_MOTO_URL`). Without that variable every test here is
//! skipped with a message, so a plain `cargo test` still passes.
//!
//! Tests run in parallel on one moto server: each test works in its own AWS
//! account (the `x-moto-account-id` header, added by an interceptor), so no
//! test resets or sees another's state.

mod lambda;
mod lambda_release;
mod lambda_s3;
mod support;
