//! Firmware artifacts on AWS (O1, O3, O6): the [`deployctl_firmware`]
//! traits over AWS KMS, and the versioned S3 bucket firmware is served
//! from.
//!
//! Start at [`kms::KmsSigner`] (ECDSA P-256 manifest signatures by a KMS
//! key that never leaves KMS) and [`kms::KmsContentKeys`] (content keys
//! from `GenerateDataKey`, unwrapped by `Decrypt`), then [`bucket`]
//! (publishing an image and its manifest, reading them back). Every call
//! an operation makes is declared in [`iam`].

pub mod bucket;
pub mod iam;
pub mod kms;

pub use bucket::{Published, S3Object};
pub use kms::{KmsClient, KmsContentKeys, KmsSigner, kms_client, kms_public_key};
