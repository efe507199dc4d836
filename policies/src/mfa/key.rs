//! The key that encrypts MFA secrets at rest (AES-256-GCM, aws-lc-rs), and
//! where it comes from.
//!
//! Sources: a key file readable by its owner only, or an environment
//! variable, each holding 32 bytes (raw in a file, or as base64 / hex
//! text). The key never appears in errors or `Debug` output.
//!
//! Extension point: a key held in a KMS (AWS KMS arrives with the AWS
//! issue) is another [`KeyProvider`], implemented in the AWS adapter crate:
//! it decrypts a wrapped data key with the SDK and hands the 32 bytes to
//! [`MasterKey::from_bytes`]. This crate stays free of cloud SDKs.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use base64::Engine;
use zeroize::Zeroizing;

/// Length of the master key in bytes (AES-256).
pub const KEY_LEN: usize = 32;
/// The variable deployctl reads the key from when told to use the
/// environment (`KeySource::Env(KEY_ENV_VAR.into())`).
pub const KEY_ENV_VAR: &str = "DEPLOYCTL_MFA_KEY";

/// Why no usable key could be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the MFA key file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the MFA key file {} has mode {mode:04o}, so others may read it; it must be readable by its owner only (chmod 600 {})",
        path.display(),
        path.display()
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error("the MFA key file {} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("environment variable {var} is not set (or not UTF-8); it must hold the MFA key")]
    EnvMissing { var: String },
    #[error("{origin} does not hold a usable MFA key: {reason}")]
    Malformed {
        origin: String,
        reason: &'static str,
    },
    #[error("cannot create the MFA key file {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the system random number generator failed")]
    Random,
}

/// Anything that can produce the master key.
pub trait KeyProvider {
    /// Where the key comes from, for messages (never the key itself).
    fn describe(&self) -> String;
    fn load_key(&self) -> Result<MasterKey, KeyError>;
}

/// Where a wrapped master key (a data key encrypted by a KMS, not secret
/// by itself) is kept: a file on this PC, or the team backend so every
/// deploy PC unwraps the same key. Written once: the first writer wins.
pub trait WrappedKeyPlace: Send + Sync {
    /// Where it is, for messages.
    fn place(&self) -> PathBuf;
    /// The wrapped key, if one was stored.
    fn read(&self) -> std::io::Result<Option<Vec<u8>>>;
    /// Stores `wrapped` unless a key is there already, and returns the
    /// key that stands (the other one when another writer was first).
    fn create(&self, wrapped: &[u8]) -> std::io::Result<Vec<u8>>;
}

/// The built-in key sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A file with mode 0600 (or stricter): 32 raw bytes, or 32 bytes as
    /// base64 or hex text.
    File(PathBuf),
    /// An environment variable holding 32 bytes as base64 or hex text.
    Env(String),
}

impl KeyProvider for KeySource {
    fn describe(&self) -> String {
        match self {
            KeySource::File(path) => format!("key file {}", path.display()),
            KeySource::Env(var) => format!("environment variable {var}"),
        }
    }

    fn load_key(&self) -> Result<MasterKey, KeyError> {
        let origin = self.describe();
        match self {
            KeySource::File(path) => {
                let bytes = read_key_file(path)?;
                let key = if bytes.len() == KEY_LEN {
                    Zeroizing::new(bytes.to_vec())
                } else {
                    let text = std::str::from_utf8(&bytes).map_err(|_| KeyError::Malformed {
                        origin: origin.clone(),
                        reason: "expected 32 raw bytes, or 32 bytes as base64 or hex text",
                    })?;
                    decode_key_text(text).map_err(|reason| KeyError::Malformed {
                        origin: origin.clone(),
                        reason,
                    })?
                };
                MasterKey::from_bytes(&key, origin)
            }
            KeySource::Env(var) => {
                let text = Zeroizing::new(
                    std::env::var(var).map_err(|_| KeyError::EnvMissing { var: var.clone() })?,
                );
                let key = decode_key_text(&text).map_err(|reason| KeyError::Malformed {
                    origin: origin.clone(),
                    reason,
                })?;
                MasterKey::from_bytes(&key, origin)
            }
        }
    }
}

/// Reads a key file after checking that nobody but its owner can read it.
fn read_key_file(path: &Path) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let read_error = |source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    };
    let metadata = std::fs::metadata(path).map_err(read_error)?;
    if !metadata.is_file() {
        return Err(KeyError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    std::fs::read(path).map(Zeroizing::new).map_err(read_error)
}

/// 32 bytes written as 64 hex digits or as base64 (padded or not).
pub(crate) fn decode_key_text(text: &str) -> Result<Zeroizing<Vec<u8>>, &'static str> {
    let text = text.trim();
    let decoded = if text.len() == 2 * KEY_LEN && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        decode_hex(text)
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .map(Zeroizing::new)
            .map_err(|_| "expected 32 bytes as base64 or as 64 hex digits")?
    };
    if decoded.len() != KEY_LEN {
        return Err("the key must be exactly 32 bytes (256 bits)");
    }
    Ok(decoded)
}

fn decode_hex(text: &str) -> Zeroizing<Vec<u8>> {
    let digit = |b: u8| match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    };
    Zeroizing::new(
        text.as_bytes()
            .chunks_exact(2)
            .map(|pair| digit(pair[0]) << 4 | digit(pair[1]))
            .collect(),
    )
}

/// Writes a new random key to `path` as base64 text, mode 0600. Refuses to
/// overwrite an existing file: that would orphan every enrolled secret.
pub fn create_key_file(path: &Path) -> Result<(), KeyError> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    aws_lc_rs::rand::fill(key.as_mut()).map_err(|_| KeyError::Random)?;
    let text = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(key.as_ref()));
    let create_error = |source| KeyError::Create {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(create_error)?;
    file.write_all(text.as_bytes()).map_err(create_error)?;
    file.write_all(b"\n").map_err(create_error)?;
    file.sync_all().map_err(create_error)
}

/// The AES-256-GCM key, ready to use. Each seal draws a fresh random
/// nonce; sealed values are `nonce || ciphertext || tag`.
pub struct MasterKey {
    key: RandomizedNonceKey,
    origin: String,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("origin", &self.origin)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl MasterKey {
    /// A key from its 32 bytes; `origin` says where it came from, for
    /// messages. This is how other providers (a KMS) hand a key in.
    pub fn from_bytes(bytes: &[u8], origin: impl Into<String>) -> Result<MasterKey, KeyError> {
        let origin = origin.into();
        if bytes.len() != KEY_LEN {
            return Err(KeyError::Malformed {
                origin,
                reason: "the key must be exactly 32 bytes (256 bits)",
            });
        }
        let key =
            RandomizedNonceKey::new(&AES_256_GCM, bytes).map_err(|_| KeyError::Malformed {
                origin: origin.clone(),
                reason: "AES-256-GCM refused the key",
            })?;
        Ok(MasterKey { key, origin })
    }

    /// Where this key came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Encrypts `plaintext`, binding it to `aad` (which must be given again
    /// to open it).
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut in_out = plaintext.to_vec();
        let nonce = self
            .key
            .seal_in_place_append_tag(Aad::from(aad), &mut in_out)
            .map_err(|_| KeyError::Random)?;
        let mut sealed = Vec::with_capacity(NONCE_LEN + in_out.len());
        sealed.extend_from_slice(nonce.as_ref());
        sealed.extend_from_slice(&in_out);
        Ok(sealed)
    }

    /// Decrypts a sealed value; `None` when the key or `aad` is wrong or
    /// the value was altered (GCM cannot tell these apart).
    pub(crate) fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut in_out = Zeroizing::new(ciphertext.to_vec());
        let plaintext_len = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut in_out)
            .ok()?
            .len();
        in_out.truncate(plaintext_len);
        Some(in_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn keys_decode_from_hex_and_base64() {
        let from_hex = decode_key_text(HEX).unwrap();
        assert_eq!(from_hex.as_slice(), (0u8..32).collect::<Vec<_>>());
        let b64 = base64::engine::general_purpose::STANDARD.encode(from_hex.as_slice());
        assert_eq!(decode_key_text(&format!("{b64}\n")).unwrap(), from_hex);
        let unpadded = b64.trim_end_matches('=');
        assert_eq!(decode_key_text(unpadded).unwrap(), from_hex);
        assert_eq!(
            decode_key_text(&HEX.to_uppercase()).unwrap(),
            from_hex,
            "hex is case-insensitive"
        );
    }

    #[test]
    fn short_or_garbled_keys_are_refused() {
        assert!(decode_key_text("").is_err());
        assert!(decode_key_text(&HEX[..62]).is_err());
        assert!(decode_key_text("not a key at all!").is_err());
        let sixteen = base64::engine::general_purpose::STANDARD.encode([7u8; 16]);
        assert!(decode_key_text(&sixteen).is_err());
    }

    #[test]
    fn an_unset_variable_is_named_in_the_error() {
        let error = KeySource::Env("DEPLOYCTL_TEST_SURELY_UNSET_MFA_KEY".into())
            .load_key()
            .unwrap_err();
        assert!(matches!(error, KeyError::EnvMissing { .. }));
        assert!(
            error
                .to_string()
                .contains("DEPLOYCTL_TEST_SURELY_UNSET_MFA_KEY")
        );
    }

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_aad() {
        let key = MasterKey::from_bytes(&[1; KEY_LEN], "test").unwrap();
        let sealed = key.seal(b"alice", b"secret bytes").unwrap();
        assert!(!sealed.windows(12).any(|w| w == b"secret bytes"));
        assert_eq!(
            key.open(b"alice", &sealed).unwrap().as_slice(),
            b"secret bytes"
        );
        assert!(key.open(b"bob", &sealed).is_none(), "bound to its user");
        let other = MasterKey::from_bytes(&[2; KEY_LEN], "other").unwrap();
        assert!(other.open(b"alice", &sealed).is_none());
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(key.open(b"alice", &tampered).is_none());
        assert!(key.open(b"alice", &sealed[..5]).is_none());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = MasterKey::from_bytes(&[0xAB; KEY_LEN], "test").unwrap();
        let shown = format!("{key:?}");
        assert!(shown.contains("redacted"));
        assert!(!shown.contains("171") && !shown.to_lowercase().contains("ab, "));
    }
}
