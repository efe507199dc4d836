//! deployctl-aws-ecs's tests, one binary, over HTTP with the real SDK:
//! task sets (EXTERNAL controller) against moto (`DEPLOYCTL_TEST_MOTO_URL`),
//! rolling updates against the repo's ECS emulator
//! (`tests/emulators/ecs.py`, `DEPLOYCTL_TEST_ECS_URL`). `bash tests/moto.sh
//! -- cargo test -p deployctl-aws-ecs` starts both; without the variables
//! every test here is skipped with a message.
//!
//! Each test works in its own AWS account (`x-moto-account-id`, honoured by
//! moto and by the emulator), so tests run in parallel on one server.

mod iam;
mod rolling;
mod support;
mod task_sets;
