//! Manifest signatures and content keys from AWS KMS.
//!
//! The signing key is an asymmetric KMS key (`ECC_NIST_P256`,
//! `SIGN_VERIFY`): `Sign` returns a DER ECDSA signature, and `GetPublicKey`
//! the SubjectPublicKeyInfo anyone verifies it with, offline. Content keys
//! are data keys of a symmetric KMS key; both calls carry an encryption
//! context naming their purpose, so a blob wrapped for something else
//! (the MFA store's key, say) is not unwrapped as a firmware key.

use std::collections::HashMap;

use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeyUsageType, MessageType, SigningAlgorithmSpec};
use deployctl_adapter::AdapterError;
use deployctl_aws::map_sdk_error;
use deployctl_firmware::BoxFuture;
use deployctl_firmware::cipher::{ContentKey, ContentKeys, WrappedKey};
use deployctl_firmware::keys::{Algorithm, KeyError, PublicKey, Signer};
use zeroize::Zeroizing;

/// The KMS client type, for callers that do not link the SDK themselves.
pub type KmsClient = Client;

/// A KMS client for `sdk` (the standard chain's configuration).
pub fn kms_client(sdk: &aws_config::SdkConfig) -> Client {
    Client::new(sdk)
}

/// The encryption context entry of every content-key wrap and unwrap.
pub const CONTEXT_PURPOSE: (&str, &str) = ("deployctl:purpose", "firmware-content-key");

/// KMS signs `RAW` messages up to 4096 bytes; longer ones go as a digest.
const MAX_RAW_MESSAGE: usize = 4096;

/// The public key of KMS key `key` (ID, ARN or alias), for verifying.
pub async fn kms_public_key(client: &Client, key: &str) -> Result<PublicKey, AdapterError> {
    let answer = client
        .get_public_key()
        .key_id(key)
        .send()
        .await
        .map_err(|e| map_sdk_error(e, &format!("KMS GetPublicKey {key}")))?;
    let refuse = |what: String| AdapterError::Rejected {
        message: format!(
            "KMS key {key} is {what}: firmware manifests are signed by an ECC_NIST_P256 SIGN_VERIFY key"
        ),
        request_id: None,
    };
    if answer.key_usage() != Some(&KeyUsageType::SignVerify) {
        return Err(refuse(format!(
            "for {}",
            answer.key_usage().map_or("no stated use", |u| u.as_str())
        )));
    }
    // The key's own SubjectPublicKeyInfo says its curve (the `KeySpec`
    // field is not filled by every KMS-compatible service).
    let der = answer.public_key().map(Blob::as_ref).unwrap_or_default();
    let public = PublicKey::from_spki_der(der)
        .ok()
        .filter(|public| public.algorithm() == Algorithm::EcdsaP256)
        .ok_or_else(|| {
            refuse(
                answer
                    .key_spec()
                    .map_or("not a P-256 key".into(), |s| s.as_str().to_owned()),
            )
        })?;
    Ok(public)
}

/// Signs manifests with an ECDSA P-256 KMS key.
#[derive(Debug, Clone)]
pub struct KmsSigner {
    client: Client,
    key_arn: String,
    public: PublicKey,
}

impl KmsSigner {
    /// Checks the key is a P-256 signing key and reads its public key and
    /// ARN (what envelopes and the trail name, whatever alias was given).
    pub async fn new(client: Client, key: &str) -> Result<KmsSigner, AdapterError> {
        let public = kms_public_key(&client, key).await?;
        let described = client
            .describe_key()
            .key_id(key)
            .send()
            .await
            .map_err(|e| map_sdk_error(e, &format!("KMS DescribeKey {key}")))?;
        let key_arn = described
            .key_metadata()
            .and_then(|m| m.arn())
            .unwrap_or(key)
            .to_owned();
        Ok(KmsSigner {
            client,
            key_arn,
            public,
        })
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }
}

impl Signer for KmsSigner {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EcdsaP256
    }

    /// The key's ARN: who signed, in CloudTrail's words too.
    fn key_id(&self) -> String {
        self.key_arn.clone()
    }

    fn sign<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, KeyError>> {
        Box::pin(async move {
            let (message, message_type) = if message.len() <= MAX_RAW_MESSAGE {
                (message.to_vec(), MessageType::Raw)
            } else {
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message);
                (digest.as_ref().to_vec(), MessageType::Digest)
            };
            let answer = self
                .client
                .sign()
                .key_id(&self.key_arn)
                .message(Blob::new(message))
                .message_type(message_type)
                .signing_algorithm(SigningAlgorithmSpec::EcdsaSha256)
                .send()
                .await
                .map_err(|e| {
                    KeyError::Service(
                        map_sdk_error(e, &format!("KMS Sign {}", self.key_arn)).to_string(),
                    )
                })?;
            answer
                .signature()
                .map(|sig| sig.as_ref().to_vec())
                .ok_or_else(|| KeyError::Service("KMS Sign returned no signature".into()))
        })
    }
}

/// Content keys wrapped by a symmetric KMS key.
#[derive(Debug, Clone)]
pub struct KmsContentKeys {
    client: Client,
    key: String,
}

impl KmsContentKeys {
    /// Makes no call: the key is checked by its first use.
    pub fn new(client: Client, key: impl Into<String>) -> KmsContentKeys {
        KmsContentKeys {
            client,
            key: key.into(),
        }
    }

    fn context() -> HashMap<String, String> {
        HashMap::from([(CONTEXT_PURPOSE.0.to_owned(), CONTEXT_PURPOSE.1.to_owned())])
    }
}

impl ContentKeys for KmsContentKeys {
    fn key_id(&self) -> String {
        self.key.clone()
    }

    fn generate(&self) -> BoxFuture<'_, Result<(ContentKey, WrappedKey), KeyError>> {
        Box::pin(async move {
            let answer = self
                .client
                .generate_data_key()
                .key_id(&self.key)
                .key_spec(DataKeySpec::Aes256)
                .set_encryption_context(Some(Self::context()))
                .send()
                .await
                .map_err(|e| {
                    KeyError::Service(
                        map_sdk_error(e, &format!("KMS GenerateDataKey {}", self.key)).to_string(),
                    )
                })?;
            let plain = Zeroizing::new(
                answer
                    .plaintext()
                    .map(|b| b.as_ref().to_vec())
                    .unwrap_or_default(),
            );
            let blob = answer
                .ciphertext_blob()
                .map(|b| b.as_ref().to_vec())
                .ok_or_else(|| {
                    KeyError::Service("GenerateDataKey returned no ciphertext".into())
                })?;
            let key_id = answer.key_id().unwrap_or(&self.key).to_owned();
            Ok((ContentKey::from_bytes(&plain)?, WrappedKey { key_id, blob }))
        })
    }

    fn unwrap<'a>(
        &'a self,
        wrapped: &'a WrappedKey,
    ) -> BoxFuture<'a, Result<ContentKey, KeyError>> {
        Box::pin(async move {
            // Decrypt with the key the image names: the one that wrapped it,
            // even after the configured key rotated to another.
            let answer = self
                .client
                .decrypt()
                .key_id(&wrapped.key_id)
                .ciphertext_blob(Blob::new(wrapped.blob.clone()))
                .set_encryption_context(Some(Self::context()))
                .send()
                .await
                .map_err(|e| {
                    KeyError::Service(
                        map_sdk_error(e, &format!("KMS Decrypt with {}", wrapped.key_id))
                            .to_string(),
                    )
                })?;
            if let Some(used) = answer.key_id()
                && used != wrapped.key_id
            {
                return Err(KeyError::Crypto(format!(
                    "KMS unwrapped the content key with {used}, not {}",
                    wrapped.key_id
                )));
            }
            let plain = Zeroizing::new(
                answer
                    .plaintext()
                    .map(|b| b.as_ref().to_vec())
                    .unwrap_or_default(),
            );
            ContentKey::from_bytes(&plain)
        })
    }
}
