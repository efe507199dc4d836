//! Signed and encrypted firmware for over-the-air waves (O1, O3, O6).
//!
//! A release ships two files: the image, encrypted with AES-256-GCM under
//! a content key that a key-encryption key wraps (KMS `GenerateDataKey`,
//! or a local key file), and a **manifest** saying what the image is
//! (firmware, version, hardware models, digest and size, the oldest
//! version it may replace, whether it is a signed rollback, the content
//! key's ID), signed in a DSSE envelope with Ed25519 or ECDSA P-256.
//! Devices, the fleet adapter and `deployctl artifact verify` all check it
//! with [`verify::verify_manifest`] before trusting a byte of the image.
//!
//! Start at [`manifest::Manifest`], then [`envelope`] (the signed form),
//! [`verify`] (what a device and a fleet stage refuse) and [`cipher`] (the
//! encrypted image). Cloud key services plug in through [`keys::Signer`]
//! and [`cipher::ContentKeys`]; this crate has local implementations and
//! no cloud SDK (the KMS ones are in `deployctl-aws-firmware`).

pub mod cipher;
pub mod envelope;
pub mod keys;
pub mod manifest;
mod pem;
pub mod verify;
pub mod version;

use std::future::Future;
use std::pin::Pin;

/// A boxed future, so the key traits stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs a future that is ready at once (the local key implementations
/// never wait), for the unit tests.
#[cfg(test)]
pub(crate) fn block_on<T>(future: impl Future<Output = T>) -> T {
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match std::pin::pin!(future).poll(&mut context) {
        std::task::Poll::Ready(value) => value,
        std::task::Poll::Pending => panic!("local keys answer at once"),
    }
}
