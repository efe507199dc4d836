//! `deployctl-policy`: who may deploy, approve, roll back or read the audit
//! trail where, and proof that they are who they say (S1, J1, J2, J4, J6,
//! R9, O11).
//!
//! - [`access`]: the access file (`kind: Access`) that names people, their
//!   roles, the approval roles plan gates ask for and the protected
//!   environments; [`Access::may`] decides every request with a reason.
//! - [`mfa`]: TOTP enrollments in an encrypted SQLite store, each code
//!   accepted once, lockout after repeated wrong codes, expiring
//!   unconfirmed enrollments, a terminal QR code for enrolling.
//! - [`approval`]: the four-eyes rule for approval gates.
//!
//! The crate does no network IO and depends on no cloud SDK or HTTP
//! client (checked by the CLI's architecture test). Secrets never appear in
//! errors or `Debug` output.

pub mod access;
pub mod approval;
pub mod mfa;
mod names;

pub use access::{Access, AccessError, Action, Decision, EnvironmentPolicy, Role};
pub use approval::{Denied, check_approval};
pub use mfa::{
    Enrollment, KeyError, KeyProvider, KeySource, MasterKey, MfaError, MfaPolicy, MfaStatus,
    MfaStore, VerifiedStep,
};
pub use names::MAX_NAME_LEN;
