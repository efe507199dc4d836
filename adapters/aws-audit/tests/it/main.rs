//! deployctl-aws-audit's tests, one binary, against moto's server mode
//! (`bash tests/moto.sh -- cargo test -p deployctl-aws-audit` sets
//! `DEPLOYCTL_TEST_MOTO_URL`). Without that variable every test that needs
//! moto is skipped with a message.
//!
//! Each test works in its own moto account (`x-moto-account-id`) with its
//! own bucket names. The sink and the key provider are driven the way the
//! binary drives them: from plain threads (the audit shipper thread
//! included), and once from inside a tokio runtime.

mod copy;
mod faults;
mod iam;
mod kms;
mod queue;
mod sink;
mod support;
