//! Signing keys and the public keys that verify them: Ed25519 and ECDSA
//! P-256 (SHA-256, ASN.1 DER signatures, the form AWS KMS returns).
//! Private keys are PKCS#8 PEM, public keys SubjectPublicKeyInfo PEM: the
//! formats `openssl` and KMS `GetPublicKey` use.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair, ParsedPublicKey,
};

use crate::BoxFuture;

/// A manifest signature algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Ed25519,
    EcdsaP256,
}

impl Algorithm {
    /// The plan language's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::EcdsaP256 => "ecdsa-p256",
        }
    }

    pub fn from_name(name: &str) -> Option<Algorithm> {
        match name {
            "ed25519" => Some(Algorithm::Ed25519),
            "ecdsa-p256" => Some(Algorithm::EcdsaP256),
            _ => None,
        }
    }

    fn verification(self) -> &'static dyn signature::VerificationAlgorithm {
        match self {
            Algorithm::Ed25519 => &signature::ED25519,
            Algorithm::EcdsaP256 => &ECDSA_P256_SHA256_ASN1,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What went wrong with a key or a key service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a key this build reads: {0}")]
    Malformed(String),
    #[error("the key service refused: {0}")]
    Service(String),
    #[error("{0}")]
    Crypto(String),
}

/// A public key that verifies manifest signatures.
#[derive(Clone)]
pub struct PublicKey {
    algorithm: Algorithm,
    spki: Vec<u8>,
    parsed: ParsedPublicKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}, {})", self.algorithm, self.key_id())
    }
}

impl PublicKey {
    /// From SubjectPublicKeyInfo DER (what KMS `GetPublicKey` returns);
    /// the algorithm is the key's own.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, KeyError> {
        for algorithm in [Algorithm::Ed25519, Algorithm::EcdsaP256] {
            // A raw 32-byte Ed25519 key would also parse; only SPKI is a key file.
            if der.len() <= 32 {
                break;
            }
            if let Ok(parsed) = ParsedPublicKey::new(algorithm.verification(), der) {
                return Ok(PublicKey {
                    algorithm,
                    spki: der.to_vec(),
                    parsed,
                });
            }
        }
        Err(KeyError::Malformed(
            "expected an Ed25519 or ECDSA P-256 SubjectPublicKeyInfo".into(),
        ))
    }

    /// From a `PUBLIC KEY` PEM file's text.
    pub fn from_pem(text: &str) -> Result<PublicKey, KeyError> {
        let der = crate::pem::decode("PUBLIC KEY", text)
            .ok_or_else(|| KeyError::Malformed("no `-----BEGIN PUBLIC KEY-----` block".into()))?;
        PublicKey::from_spki_der(&der)
    }

    pub fn to_pem(&self) -> String {
        crate::pem::encode("PUBLIC KEY", &self.spki)
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// `sha256:` and the digest of the SubjectPublicKeyInfo: names the
    /// key in envelopes and the audit trail without trusting a label.
    pub fn key_id(&self) -> String {
        format!("sha256:{}", crate::sha256_hex(&self.spki))
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.parsed.verify_sig(message, signature).is_ok()
    }
}

/// Something that signs manifests: a local key, or a KMS key.
pub trait Signer: Send + Sync {
    fn algorithm(&self) -> Algorithm;
    /// The `keyid` written beside the signature (the trail's "signer").
    fn key_id(&self) -> String;
    fn sign<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, KeyError>>;
}

enum Pair {
    Ed25519(Ed25519KeyPair),
    EcdsaP256(EcdsaKeyPair),
}

/// A signing key from a PKCS#8 PEM file.
pub struct LocalSigner {
    pair: Pair,
    public: PublicKey,
}

impl fmt::Debug for LocalSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalSigner({:?})", self.public)
    }
}

impl LocalSigner {
    /// A new key; returns it with its PKCS#8 PEM text (to be written 0600).
    pub fn generate(algorithm: Algorithm) -> Result<(LocalSigner, String), KeyError> {
        let rng = SystemRandom::new();
        let der = match algorithm {
            Algorithm::Ed25519 => Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| KeyError::Crypto("Ed25519 key generation failed".into()))?
                .as_ref()
                .to_vec(),
            Algorithm::EcdsaP256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
                    .map_err(|_| KeyError::Crypto("P-256 key generation failed".into()))?
                    .as_ref()
                    .to_vec()
            }
        };
        let pem = crate::pem::encode("PRIVATE KEY", &der);
        Ok((LocalSigner::from_pkcs8_der(&der)?, pem))
    }

    /// From a `PRIVATE KEY` (PKCS#8) PEM file's text.
    pub fn from_pem(text: &str) -> Result<LocalSigner, KeyError> {
        let der = crate::pem::decode("PRIVATE KEY", text).ok_or_else(|| {
            KeyError::Malformed("no `-----BEGIN PRIVATE KEY-----` (PKCS#8) block".into())
        })?;
        LocalSigner::from_pkcs8_der(&der)
    }

    fn from_pkcs8_der(der: &[u8]) -> Result<LocalSigner, KeyError> {
        let (pair, spki) = if let Ok(pair) = Ed25519KeyPair::from_pkcs8(der) {
            let spki = spki_of(pair.public_key().as_der())?;
            (Pair::Ed25519(pair), spki)
        } else if let Ok(pair) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, der) {
            let spki = spki_of(pair.public_key().as_der())?;
            (Pair::EcdsaP256(pair), spki)
        } else {
            return Err(KeyError::Malformed(
                "expected an Ed25519 or ECDSA P-256 PKCS#8 private key".into(),
            ));
        };
        Ok(LocalSigner {
            pair,
            public: PublicKey::from_spki_der(&spki)?,
        })
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }
}

fn spki_of(
    der: Result<aws_lc_rs::encoding::PublicKeyX509Der<'static>, aws_lc_rs::error::Unspecified>,
) -> Result<Vec<u8>, KeyError> {
    der.map(|der| der.as_ref().to_vec())
        .map_err(|_| KeyError::Crypto("could not encode the public key".into()))
}

impl Signer for LocalSigner {
    fn algorithm(&self) -> Algorithm {
        self.public.algorithm
    }

    fn key_id(&self) -> String {
        self.public.key_id()
    }

    fn sign<'a>(&'a self, message: &'a [u8]) -> BoxFuture<'a, Result<Vec<u8>, KeyError>> {
        let signed = match &self.pair {
            Pair::Ed25519(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            Pair::EcdsaP256(pair) => pair
                .sign(&SystemRandom::new(), message)
                .map(|sig| sig.as_ref().to_vec())
                .map_err(|_| KeyError::Crypto("ECDSA signing failed".into())),
        };
        Box::pin(async move { signed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block_on;

    #[test]
    fn both_algorithms_sign_and_verify_through_their_pem_files() {
        for algorithm in [Algorithm::Ed25519, Algorithm::EcdsaP256] {
            let (signer, pem) = LocalSigner::generate(algorithm).unwrap();
            let reread = LocalSigner::from_pem(&pem).unwrap();
            assert_eq!(reread.key_id(), signer.key_id());
            let public = PublicKey::from_pem(&signer.public_key().to_pem()).unwrap();
            assert_eq!(public.algorithm(), algorithm);
            let signature = block_on(reread.sign(b"manifest")).unwrap();
            assert!(public.verify(b"manifest", &signature), "{algorithm}");
            assert!(!public.verify(b"manifesT", &signature), "{algorithm}");
        }
    }

    #[test]
    fn another_key_does_not_verify() {
        let (a, _) = LocalSigner::generate(Algorithm::Ed25519).unwrap();
        let (b, _) = LocalSigner::generate(Algorithm::Ed25519).unwrap();
        let signature = block_on(a.sign(b"m")).unwrap();
        assert!(!b.public_key().verify(b"m", &signature));
        assert_ne!(a.key_id(), b.key_id());
    }

    #[test]
    fn garbage_is_a_malformed_key_not_a_panic() {
        assert!(matches!(
            PublicKey::from_pem("nope"),
            Err(KeyError::Malformed(_))
        ));
        let fake = crate::pem::encode("PUBLIC KEY", &[0u8; 91]);
        assert!(matches!(
            PublicKey::from_pem(&fake),
            Err(KeyError::Malformed(_))
        ));
        let fake = crate::pem::encode("PRIVATE KEY", &[1u8; 48]);
        assert!(matches!(
            LocalSigner::from_pem(&fake),
            Err(KeyError::Malformed(_))
        ));
    }
}
