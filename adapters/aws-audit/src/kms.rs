//! [`KmsKeyProvider`]: the MFA master key as a KMS-wrapped data key.
//!
//! Envelope encryption: on first use (`deployctl mfa enroll`) KMS
//! generates a 256-bit data key (`GenerateDataKey`, AES_256); only its
//! wrapped form (the `CiphertextBlob`) is stored, in `<state>/mfa.key.kms`
//! (0600). Every later use asks KMS to unwrap it (`Decrypt`). So the deploy
//! PC never holds the key at rest: a copy of the state directory is
//! useless without the KMS permission, and revoking that permission (or
//! disabling the key) locks MFA secrets away at once, with CloudTrail
//! logging every unwrap.
//!
//! Both calls carry an encryption context naming deployctl's purpose, so
//! a blob wrapped for something else cannot be passed off as this key, and
//! the unwrap is checked to have used the configured key (AWS enforces
//! that itself; emulators may not). The plaintext key is wiped from memory
//! once handed to [`MasterKey::from_bytes`] and never appears in messages.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use deployctl_policy::mfa::{KeyError, KeyProvider, KeySource, MasterKey, WrappedKeyPlace};
use zeroize::Zeroizing;

use crate::client;
use crate::error::{AwsAuditError, CallFailure};
use deployctl_aws::bridge::Bridge;

/// The variable naming the KMS key (ID, ARN, alias name or alias ARN).
pub const KMS_KEY_ENV: &str = "DEPLOYCTL_MFA_KMS_KEY";
/// The wrapped data key's file name in the state directory.
pub const WRAPPED_KEY_FILE: &str = "mfa.key.kms";
/// The encryption context entry every wrap and unwrap carries.
pub const CONTEXT_PURPOSE: (&str, &str) = ("deployctl:purpose", "mfa-master-key");

/// The MFA master key, unwrapped by AWS KMS.
pub struct KmsKeyProvider {
    key_id: String,
    wrapped: Box<dyn WrappedKeyPlace>,
    create: bool,
    context: HashMap<String, String>,
    client: Client,
    bridge: Bridge,
}

impl KmsKeyProvider {
    /// A provider using the standard AWS chain for KMS, with the wrapped
    /// key at `wrapped_key_file`. Makes no call yet.
    pub fn open(
        key_id: impl Into<String>,
        wrapped_key_file: impl Into<PathBuf>,
    ) -> Result<KmsKeyProvider, AwsAuditError> {
        let bridge = Bridge::new()?;
        let config = client::load(&bridge)?;
        Ok(Self::build(
            bridge,
            Client::new(&config),
            key_id,
            wrapped_key_file,
        ))
    }

    /// [`KmsKeyProvider::open`] with a given client.
    pub fn with_client(
        client: Client,
        key_id: impl Into<String>,
        wrapped_key_file: impl Into<PathBuf>,
    ) -> Result<KmsKeyProvider, AwsAuditError> {
        Ok(Self::build(
            Bridge::new()?,
            client,
            key_id,
            wrapped_key_file,
        ))
    }

    fn build(
        bridge: Bridge,
        client: Client,
        key_id: impl Into<String>,
        wrapped_key_file: impl Into<PathBuf>,
    ) -> KmsKeyProvider {
        let (name, value) = CONTEXT_PURPOSE;
        KmsKeyProvider {
            key_id: key_id.into(),
            wrapped: Box::new(WrappedKeyFile(wrapped_key_file.into())),
            create: false,
            context: HashMap::from([(name.to_string(), value.to_string())]),
            client,
            bridge,
        }
    }

    /// When the wrapped key file does not exist yet, generate one (enroll)
    /// instead of failing (everything else).
    pub fn create_if_missing(mut self, create: bool) -> KmsKeyProvider {
        self.create = create;
        self
    }

    /// Binds the key to one more encryption-context entry (for example the
    /// environment), which every later unwrap must repeat.
    pub fn with_context(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.context.insert(name.into(), value.into());
        self
    }

    /// Keeps the wrapped key in `place` instead of the file (the team
    /// backend, so every deploy PC unwraps the same key).
    pub fn with_place(mut self, place: Box<dyn WrappedKeyPlace>) -> Self {
        self.wrapped = place;
        self
    }

    /// Where the wrapped key is kept.
    pub fn wrapped_key_place(&self) -> PathBuf {
        self.wrapped.place()
    }

    fn context_text(&self) -> String {
        let mut entries: Vec<String> = self
            .context
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        entries.sort();
        format!("{{{}}}", entries.join(", "))
    }

    fn read_error(&self, message: String) -> KeyError {
        KeyError::Read {
            path: self.wrapped.place(),
            source: std::io::Error::other(message),
        }
    }

    /// Decrypt, then the check that the configured key did it.
    fn unwrap_key(&self, blob: Vec<u8>) -> Result<MasterKey, KeyError> {
        let (client, key_id, context) = (
            self.client.clone(),
            self.key_id.clone(),
            self.context.clone(),
        );
        let unwrapped = self
            .bridge
            .run(async move {
                let output = client
                    .decrypt()
                    .ciphertext_blob(Blob::new(blob))
                    .key_id(&key_id)
                    .set_encryption_context(Some(context))
                    .send()
                    .await
                    .map_err(|e| CallFailure::new(e, "KMS Decrypt"))?;
                let used = output.key_id.clone().unwrap_or_default();
                let plaintext =
                    Zeroizing::new(output.plaintext.map(Blob::into_inner).unwrap_or_default());
                let expected = match configured_arn(&key_id, &used) {
                    Some(matches) => Some(matches),
                    // An alias: ask KMS what it points at. Without
                    // kms:DescribeKey the check is AWS's own.
                    None => client
                        .describe_key()
                        .key_id(&key_id)
                        .send()
                        .await
                        .ok()
                        .and_then(|d| d.key_metadata.map(|m| m.arn == Some(used.clone()))),
                };
                Ok::<_, CallFailure>((plaintext, used, expected))
            })
            .map_err(|stopped| self.read_error(stopped.to_string()))?;
        let (plaintext, used, matches) = unwrapped.map_err(|failure| {
            let hint = match failure.code.as_deref() {
                Some("InvalidCiphertextException" | "IncorrectKeyException") => {
                    ": the file was wrapped under another KMS key or encryption context, or it was altered"
                }
                Some("AccessDeniedException") => {
                    ": the identity deployctl runs as lacks kms:Decrypt on this key, or the file was wrapped under another KMS key"
                }
                _ => "",
            };
            self.read_error(format!(
                "{} with key {} and encryption context {}{hint}",
                failure.message,
                self.key_id,
                self.context_text()
            ))
        })?;
        if matches == Some(false) {
            return Err(self.read_error(format!(
                "KMS unwrapped it with key {used}, which is not the configured key {}; \
                 the file belongs to another key (set {KMS_KEY_ENV} to that key, or re-enroll)",
                self.key_id
            )));
        }
        MasterKey::from_bytes(&plaintext, self.describe())
    }

    /// GenerateDataKey, store the wrapped key (0600), use the plaintext.
    fn generate(&self) -> Result<MasterKey, KeyError> {
        let create_error = |message: String| KeyError::Create {
            path: self.wrapped.place(),
            source: std::io::Error::other(message),
        };
        let (client, key_id, context) = (
            self.client.clone(),
            self.key_id.clone(),
            self.context.clone(),
        );
        let generated = self
            .bridge
            .run(async move {
                client
                    .generate_data_key()
                    .key_id(&key_id)
                    .key_spec(DataKeySpec::Aes256)
                    .set_encryption_context(Some(context))
                    .send()
                    .await
                    .map(|output| {
                        (
                            Zeroizing::new(
                                output.plaintext.map(Blob::into_inner).unwrap_or_default(),
                            ),
                            output
                                .ciphertext_blob
                                .map(Blob::into_inner)
                                .unwrap_or_default(),
                        )
                    })
                    .map_err(|e| CallFailure::new(e, "KMS GenerateDataKey"))
            })
            .map_err(|stopped| create_error(stopped.to_string()))?
            .map_err(|failure| {
                create_error(format!("{} with key {}", failure.message, self.key_id))
            })?;
        let (plaintext, wrapped) = generated;
        if wrapped.is_empty() {
            return Err(create_error(
                "KMS GenerateDataKey returned no CiphertextBlob".into(),
            ));
        }
        match self.wrapped.create(&wrapped) {
            Ok(standing) if standing == wrapped => {
                MasterKey::from_bytes(&plaintext, self.describe())
            }
            // Another process (or PC) enrolled at the same moment: its key
            // wins, so both use the same one.
            Ok(standing) => self.unwrap_key(standing),
            Err(source) => Err(KeyError::Create {
                path: self.wrapped.place(),
                source,
            }),
        }
    }
}

/// Whether a key the caller named by ID or key ARN is `used` (an ARN);
/// `None` for aliases, which only KMS can resolve.
fn configured_arn(configured: &str, used: &str) -> Option<bool> {
    if configured.starts_with("alias/") || configured.contains(":alias/") {
        None
    } else if configured.starts_with("arn:") {
        Some(configured == used)
    } else {
        Some(used.ends_with(&format!(":key/{configured}")) || used == configured)
    }
}

/// Writes `bytes` to `path` (0600) atomically and without replacing an
/// existing file: a temporary file, fsynced, hard-linked into place.
fn store_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let temporary = path.with_extension(format!("kms.tmp-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let _ = std::fs::remove_file(&temporary);
    let mut file = options.open(&temporary)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::hard_link(&temporary, path));
    let _ = std::fs::remove_file(&temporary);
    written
}

/// The wrapped key in a file of this PC (0600).
struct WrappedKeyFile(PathBuf);

impl WrappedKeyPlace for WrappedKeyFile {
    fn place(&self) -> PathBuf {
        self.0.clone()
    }

    fn read(&self) -> std::io::Result<Option<Vec<u8>>> {
        match std::fs::read(&self.0) {
            Ok(blob) => Ok(Some(blob)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn create(&self, wrapped: &[u8]) -> std::io::Result<Vec<u8>> {
        match store_new(&self.0, wrapped) {
            Ok(()) => Ok(wrapped.to_vec()),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::read(&self.0)
            }
            Err(error) => Err(error),
        }
    }
}

impl KeyProvider for KmsKeyProvider {
    fn describe(&self) -> String {
        format!(
            "KMS key {} (wrapped data key {})",
            self.key_id,
            self.wrapped.place().display()
        )
    }

    fn load_key(&self) -> Result<MasterKey, KeyError> {
        match self.wrapped.read() {
            Ok(Some(blob)) => self.unwrap_key(blob),
            Ok(None) if self.create => self.generate(),
            Ok(None) => Err(KeyError::Read {
                path: self.wrapped.place(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "no wrapped MFA key yet; `deployctl mfa enroll` creates it with {KMS_KEY_ENV} set"
                    ),
                ),
            }),
            Err(source) => Err(KeyError::Read {
                path: self.wrapped.place(),
                source,
            }),
        }
    }
}

/// A key source the binary can choose at run time: one of
/// deployctl-policy's built-in sources, or KMS. (`MfaStore::open` takes a
/// `&dyn KeyProvider`; this gives callers one concrete type to return.)
pub enum MfaKeySource {
    Local(KeySource),
    Kms(KmsKeyProvider),
}

impl KeyProvider for MfaKeySource {
    fn describe(&self) -> String {
        match self {
            MfaKeySource::Local(source) => source.describe(),
            MfaKeySource::Kms(kms) => kms.describe(),
        }
    }

    fn load_key(&self) -> Result<MasterKey, KeyError> {
        match self {
            MfaKeySource::Local(source) => source.load_key(),
            MfaKeySource::Kms(kms) => kms.load_key(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_and_arns_are_compared_aliases_are_left_to_kms() {
        let arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert_eq!(
            configured_arn("1234abcd-12ab-34cd-56ef-1234567890ab", arn),
            Some(true)
        );
        assert_eq!(configured_arn(arn, arn), Some(true));
        assert_eq!(configured_arn("ffff", arn), Some(false));
        assert_eq!(configured_arn("alias/deployctl", arn), None);
        assert_eq!(
            configured_arn("arn:aws:kms:us-east-1:123456789012:alias/deployctl", arn),
            None
        );
    }

    #[test]
    fn stored_keys_are_private_and_never_replaced() {
        let dir = std::env::temp_dir().join(format!("deployctl-kms-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join(WRAPPED_KEY_FILE);
        store_new(&path, b"first").unwrap();
        let error = store_new(&path, b"second").unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary left"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
