//! The checkpoint signing key (Ed25519, aws-lc-rs).
//!
//! Generated on first use: the private key as PKCS#8 v2 DER in
//! `<dir>/signing-key.pk8` (0600) and the public key beside it in
//! `<dir>/signing-key.pub` as a PEM `PUBLIC KEY` (SubjectPublicKeyInfo),
//! which `openssl pkeyutl -verify -pubin -inkey signing-key.pub -rawin`
//! reads as is.
//!
//! The pair may instead live outside the log directory
//! ([`crate::AuditOptions::signing_key`]): then whoever can write the state
//! directory cannot re-sign a rewritten trail, and the public half beside
//! that key (`<key>.pub`) is what `verify` checks against by default.
//!
//! The private key sits on the deploy PC, so a local administrator could
//! re-sign a rewritten log. What stops that is the copy shipped off the
//! machine (S2) and a public key pinned somewhere else: `verify` takes the
//! public key as a path for that reason, not from the log directory.

use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

use crate::error::{AuditError, io};
use crate::fsutil;

pub const PRIVATE_KEY_FILE: &str = "signing-key.pk8";
pub const PUBLIC_KEY_FILE: &str = "signing-key.pub";

/// Where the public half of a private key kept at `private` is written:
/// beside it, named `<file>.pub` (`audit-key.pk8` → `audit-key.pk8.pub`).
pub fn public_key_path(private: &Path) -> PathBuf {
    let mut name = private.as_os_str().to_os_string();
    name.push(".pub");
    PathBuf::from(name)
}

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410); the 32 key
/// bytes follow.
const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// The private half, loaded by the writer.
pub(crate) struct SigningKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl SigningKey {
    /// Loads the private key at `location` (by default
    /// `<dir>/signing-key.pk8`), generating the pair if there is none.
    /// Called with the log's lock held, so two processes cannot both create it.
    pub(crate) fn load_or_create(
        dir: &Path,
        location: Option<&Path>,
    ) -> Result<SigningKey, AuditError> {
        let (private_path, public_path) = match location {
            Some(private) => (private.to_path_buf(), public_key_path(private)),
            None => (dir.join(PRIVATE_KEY_FILE), dir.join(PUBLIC_KEY_FILE)),
        };
        if let Some(parent) = private_path.parent().filter(|p| !p.as_os_str().is_empty())
            && !parent.exists()
        {
            return Err(AuditError::Key {
                path: private_path.clone(),
                message: "its directory does not exist; create it (readable by the deploy user only) or name another path".into(),
            });
        }
        let key_error = |message: String| AuditError::Key {
            path: private_path.clone(),
            message,
        };
        let pair = if private_path.exists() {
            fsutil::tighten(&private_path, 0o600)?;
            let der = std::fs::read(&private_path).map_err(io("read", &private_path))?;
            Ed25519KeyPair::from_pkcs8(&der)
                .map_err(|e| key_error(format!("not an Ed25519 PKCS#8 key: {e}")))?
        } else {
            let pair = Ed25519KeyPair::generate()
                .map_err(|_| key_error("cannot generate a key pair".into()))?;
            let der = pair
                .to_pkcs8()
                .map_err(|_| key_error("cannot encode the key pair".into()))?;
            fsutil::write_atomic(&private_path, der.as_ref())?;
            pair
        };
        let public = PublicKey::from_raw(pair.public_key().as_ref())
            .ok_or_else(|| key_error("unexpected public key length".into()))?;
        // The public file is derived data: rewrite it when missing, refuse
        // when it names another key (someone swapped one of the two).
        match std::fs::read(&public_path) {
            Ok(existing) => {
                let existing = PublicKey::parse(&existing).map_err(|message| AuditError::Key {
                    path: public_path.clone(),
                    message,
                })?;
                if existing != public {
                    return Err(AuditError::Key {
                        path: public_path,
                        message: format!("is not the public half of {}", private_path.display()),
                    });
                }
                fsutil::tighten(&public_path, 0o600)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fsutil::write_atomic(&public_path, public.to_pem().as_bytes())?;
            }
            Err(e) => return Err(io("read", &public_path)(e)),
        }
        Ok(SigningKey { pair, public })
    }

    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut signature = [0; 64];
        signature.copy_from_slice(self.pair.sign(message).as_ref());
        signature
    }

    pub(crate) fn public(&self) -> &PublicKey {
        &self.public
    }
}

/// An Ed25519 public key that checkpoints are verified with.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    raw: [u8; 32],
    key_id: String,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.key_id)
    }
}

impl PublicKey {
    /// Reads a PEM `PUBLIC KEY` (as written beside the private key) or 64
    /// hex digits of the raw key.
    pub fn load(path: &Path) -> Result<PublicKey, AuditError> {
        let bytes = std::fs::read(path).map_err(io("read", path))?;
        PublicKey::parse(&bytes).map_err(|message| AuditError::Key {
            path: PathBuf::from(path),
            message,
        })
    }

    pub fn parse(bytes: &[u8]) -> Result<PublicKey, String> {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| "expected a PEM public key or hex text".to_string())?
            .trim();
        let mut raw = [0; 32];
        if crate::hex::decode_into(text.as_bytes(), &mut raw) {
            return Ok(PublicKey::from_array(raw));
        }
        let body: String = text
            .strip_prefix("-----BEGIN PUBLIC KEY-----")
            .and_then(|rest| rest.strip_suffix("-----END PUBLIC KEY-----"))
            .ok_or_else(|| "expected a PEM `PUBLIC KEY` or 64 hex digits".to_string())?
            .split_whitespace()
            .collect();
        let der = base64_decode(&body).ok_or_else(|| "the PEM body is not base64".to_string())?;
        der.strip_prefix(&SPKI_PREFIX)
            .and_then(PublicKey::from_raw)
            .ok_or_else(|| "not an Ed25519 public key".to_string())
    }

    pub(crate) fn from_raw(raw: &[u8]) -> Option<PublicKey> {
        Some(PublicKey::from_array(raw.try_into().ok()?))
    }

    fn from_array(raw: [u8; 32]) -> PublicKey {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &raw);
        PublicKey {
            raw,
            key_id: crate::hex::encode(&digest.as_ref()[..8]),
        }
    }

    /// The first 8 bytes of the key's SHA-256, in hex: names the key in
    /// each checkpoint, so a rotated key is told apart from a forged one.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub fn to_pem(&self) -> String {
        let mut der = SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.raw);
        format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64_encode(&der)
        )
    }

    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.raw)
            .verify(message, signature)
            .is_ok()
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(BASE64[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::new();
    let (mut bits, mut count) = (0u32, 0);
    for c in text.bytes() {
        let value = BASE64.iter().position(|&d| d == c)? as u32;
        bits = bits << 6 | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for len in 0..10 {
            let bytes: Vec<u8> = (0..len).map(|i: u32| (i * 37) as u8).collect();
            assert_eq!(base64_decode(&base64_encode(&bytes)).unwrap(), bytes);
        }
        assert_eq!(base64_encode(b"Man"), "TWFu");
        assert_eq!(base64_encode(b"Ma"), "TWE=");
    }

    #[test]
    fn pem_and_hex_read_back() {
        let key = PublicKey::from_raw(&[7; 32]).unwrap();
        assert_eq!(PublicKey::parse(key.to_pem().as_bytes()).unwrap(), key);
        assert_eq!(
            PublicKey::parse(crate::hex::encode(&[7; 32]).as_bytes()).unwrap(),
            key
        );
        assert!(PublicKey::parse(b"nonsense").is_err());
    }
}
