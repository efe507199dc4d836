//! The encrypted image: AES-256-GCM under a fresh content key per image,
//! the content key wrapped by a key-encryption key (envelope encryption).
//!
//! File layout (all lengths big-endian):
//!
//! ```text
//! "DCFW" 0x01 | u16 len, key ID | u16 len, wrapped content key | 12-byte nonce | ciphertext ‖ 16-byte tag
//! ```
//!
//! The whole header is the AEAD's associated data, so swapping in another
//! key ID or wrapped key fails decryption. The wrapped key travels with
//! the image, so the key-encryption key can rotate without re-signing
//! any manifest: a new image gets a key wrapped by the new key.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::BoxFuture;
use crate::keys::KeyError;

/// The manifest's name for the cipher.
pub const ALGORITHM: &str = "AES-256-GCM";

const MAGIC: &[u8; 5] = b"DCFW\x01";
const TAG_LEN: usize = 16;

/// A 256-bit content key, wiped when dropped.
pub struct ContentKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ContentKey(…)")
    }
}

impl ContentKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<ContentKey, KeyError> {
        let key: [u8; 32] = bytes.try_into().map_err(|_| {
            KeyError::Malformed(format!("a content key is 32 bytes, not {}", bytes.len()))
        })?;
        Ok(ContentKey(Zeroizing::new(key)))
    }

    fn aead(&self) -> LessSafeKey {
        // 32 bytes is always a valid AES-256 key.
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, self.0.as_ref()).expect("32-byte AES key"))
    }
}

/// A content key as its key-encryption key wrapped it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub key_id: String,
    pub blob: Vec<u8>,
}

/// Where content keys come from and go back to: KMS, or a local key file.
pub trait ContentKeys: Send + Sync {
    /// The key-encryption key's ID.
    fn key_id(&self) -> String;
    /// A fresh content key and its wrapped form.
    fn generate(&self) -> BoxFuture<'_, Result<(ContentKey, WrappedKey), KeyError>>;
    fn unwrap<'a>(&'a self, wrapped: &'a WrappedKey)
    -> BoxFuture<'a, Result<ContentKey, KeyError>>;
}

/// A key-encryption key in a local file (64 hex digits): for the sandbox
/// and for devices provisioned with a fleet key instead of KMS access.
pub struct LocalKeys {
    kek: ContentKey,
    key_id: String,
}

impl fmt::Debug for LocalKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalKeys({})", self.key_id)
    }
}

impl LocalKeys {
    /// A new key-encryption key and the text of its key file.
    pub fn generate() -> Result<(LocalKeys, String), KeyError> {
        let mut key = Zeroizing::new([0u8; 32]);
        random(key.as_mut())?;
        let text = Zeroizing::new(crate::hex(key.as_ref()) + "\n");
        Ok((LocalKeys::from_bytes(key.as_ref())?, text.to_string()))
    }

    /// From a key file's text (64 hex digits).
    pub fn from_text(text: &str) -> Result<LocalKeys, KeyError> {
        let text = text.trim();
        let bytes: Option<Vec<u8>> = (text.len() == 64)
            .then(|| {
                (0..32)
                    .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
                    .collect()
            })
            .flatten();
        let bytes =
            Zeroizing::new(bytes.ok_or_else(|| {
                KeyError::Malformed("a content key file holds 64 hex digits".into())
            })?);
        LocalKeys::from_bytes(&bytes)
    }

    fn from_bytes(bytes: &[u8]) -> Result<LocalKeys, KeyError> {
        let kek = ContentKey::from_bytes(bytes)?;
        // Names the key without revealing it (a digest of a digest-sized secret).
        let key_id = format!("local:{}", &crate::sha256_hex(bytes)[..16]);
        Ok(LocalKeys { kek, key_id })
    }
}

impl ContentKeys for LocalKeys {
    fn key_id(&self) -> String {
        self.key_id.clone()
    }

    fn generate(&self) -> BoxFuture<'_, Result<(ContentKey, WrappedKey), KeyError>> {
        Box::pin(async move {
            let mut key = Zeroizing::new([0u8; 32]);
            random(key.as_mut())?;
            let blob = seal(&self.kek, self.key_id.as_bytes(), key.as_ref())?;
            Ok((
                ContentKey::from_bytes(key.as_ref())?,
                WrappedKey {
                    key_id: self.key_id.clone(),
                    blob,
                },
            ))
        })
    }

    fn unwrap<'a>(
        &'a self,
        wrapped: &'a WrappedKey,
    ) -> BoxFuture<'a, Result<ContentKey, KeyError>> {
        Box::pin(async move {
            if wrapped.key_id != self.key_id {
                return Err(KeyError::Crypto(format!(
                    "the content key is wrapped by `{}`, not by this key (`{}`)",
                    wrapped.key_id, self.key_id
                )));
            }
            let plain = Zeroizing::new(open(&self.kek, self.key_id.as_bytes(), &wrapped.blob)?);
            ContentKey::from_bytes(&plain)
        })
    }
}

/// Encrypts `image` under a fresh content key from `keys`.
pub async fn encrypt(image: &[u8], keys: &dyn ContentKeys) -> Result<Vec<u8>, KeyError> {
    let (key, wrapped) = keys.generate().await?;
    let mut nonce = [0u8; NONCE_LEN];
    random(&mut nonce)?;
    let mut out = header(&wrapped, &nonce)?;
    let mut body = image.to_vec();
    key.aead()
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(&out[..]),
            &mut body,
        )
        .map_err(|_| KeyError::Crypto("encryption failed".into()))?;
    out.extend_from_slice(&body);
    Ok(out)
}

/// An encrypted image's header, read without any key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub wrapped: WrappedKey,
    nonce: [u8; NONCE_LEN],
    /// Where the ciphertext starts.
    len: usize,
}

impl Header {
    /// Reads the header of an encrypted image; `None` if `file` is not one.
    pub fn read(file: &[u8]) -> Option<Header> {
        let rest = file.strip_prefix(MAGIC.as_slice())?;
        let (key_id, rest) = take_u16(rest)?;
        let key_id = String::from_utf8(key_id.to_vec()).ok()?;
        let (blob, rest) = take_u16(rest)?;
        let nonce: [u8; NONCE_LEN] = rest.get(..NONCE_LEN)?.try_into().ok()?;
        let len = file.len() - rest.len() + NONCE_LEN;
        (file.len() >= len + TAG_LEN).then(|| Header {
            wrapped: WrappedKey {
                key_id,
                blob: blob.to_vec(),
            },
            nonce,
            len,
        })
    }
}

/// Decrypts an image [`encrypt`] wrote, unwrapping its key with `keys`.
pub async fn decrypt(file: &[u8], keys: &dyn ContentKeys) -> Result<Vec<u8>, KeyError> {
    let header = Header::read(file).ok_or_else(|| {
        KeyError::Malformed("not an encrypted firmware image (no DCFW header)".into())
    })?;
    let key = keys.unwrap(&header.wrapped).await?;
    let mut body = file[header.len..].to_vec();
    let plain = key
        .aead()
        .open_in_place(
            Nonce::assume_unique_for_key(header.nonce),
            Aad::from(&file[..header.len]),
            &mut body,
        )
        .map_err(|_| {
            KeyError::Crypto(
                "the image does not decrypt: it was altered or the key is wrong".into(),
            )
        })?;
    let len = plain.len();
    body.truncate(len);
    Ok(body)
}

fn header(wrapped: &WrappedKey, nonce: &[u8; NONCE_LEN]) -> Result<Vec<u8>, KeyError> {
    let mut out = MAGIC.to_vec();
    for field in [wrapped.key_id.as_bytes(), &wrapped.blob] {
        let len = u16::try_from(field.len()).map_err(|_| {
            KeyError::Malformed("key ID or wrapped key longer than 65535 bytes".into())
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(field);
    }
    out.extend_from_slice(nonce);
    Ok(out)
}

fn take_u16(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u16::from_be_bytes(bytes.get(..2)?.try_into().ok()?) as usize;
    let rest = &bytes[2..];
    Some((rest.get(..len)?, &rest[len..]))
}

fn seal(key: &ContentKey, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, KeyError> {
    let mut nonce = [0u8; NONCE_LEN];
    random(&mut nonce)?;
    let mut body = plain.to_vec();
    key.aead()
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )
        .map_err(|_| KeyError::Crypto("key wrapping failed".into()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&body);
    Ok(out)
}

fn open(key: &ContentKey, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(KeyError::Crypto("the wrapped key is truncated".into()));
    }
    let nonce: [u8; NONCE_LEN] = sealed[..NONCE_LEN].try_into().expect("length checked");
    let mut body = sealed[NONCE_LEN..].to_vec();
    let len = key
        .aead()
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )
        .map_err(|_| {
            KeyError::Crypto("the content key does not unwrap: wrong key-encryption key".into())
        })?
        .len();
    body.truncate(len);
    Ok(body)
}

fn random(out: &mut [u8]) -> Result<(), KeyError> {
    SystemRandom::new()
        .fill(out)
        .map_err(|_| KeyError::Crypto("no randomness".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_on;

    #[test]
    fn an_image_round_trips_and_each_encryption_differs() {
        let (keys, text) = LocalKeys::generate().unwrap();
        let keys_again = LocalKeys::from_text(&text).unwrap();
        let image: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let a = block_on(encrypt(&image, &keys)).unwrap();
        let b = block_on(encrypt(&image, &keys)).unwrap();
        assert_ne!(a, b, "fresh key and nonce per image");
        assert_eq!(block_on(decrypt(&a, &keys_again)).unwrap(), image);
        assert_eq!(Header::read(&a).unwrap().wrapped.key_id, keys.key_id());
    }

    #[test]
    fn a_flipped_bit_anywhere_fails_decryption() {
        let (keys, _) = LocalKeys::generate().unwrap();
        let file = block_on(encrypt(b"firmware image bytes", &keys)).unwrap();
        for at in [6, 30, file.len() - 20, file.len() - 1] {
            let mut bad = file.clone();
            bad[at] ^= 1;
            assert!(
                block_on(decrypt(&bad, &keys)).is_err(),
                "flip at {at} decrypted"
            );
        }
    }

    #[test]
    fn another_key_file_cannot_decrypt() {
        let (keys, _) = LocalKeys::generate().unwrap();
        let (other, _) = LocalKeys::generate().unwrap();
        let file = block_on(encrypt(b"image", &keys)).unwrap();
        let error = block_on(decrypt(&file, &other)).unwrap_err();
        assert!(error.to_string().contains("wrapped by"), "{error}");
    }

    #[test]
    fn truncated_or_foreign_files_have_no_header() {
        assert!(Header::read(b"").is_none());
        assert!(Header::read(b"DCFW\x01\x00\x05ab").is_none());
        assert!(Header::read(b"\x7fELF......................................").is_none());
        assert!(LocalKeys::from_text("abc").is_err());
    }
}
