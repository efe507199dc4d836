//! The signed manifest: a DSSE envelope (the in-toto Dead Simple Signing
//! Envelope). The signature covers the pre-authentication encoding of the
//! payload type and the payload's exact bytes, so a verifier never
//! re-serializes JSON to check it and a payload of another type cannot be
//! passed off as a manifest.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::keys::{KeyError, Signer};
use crate::manifest::{Manifest, PAYLOAD_TYPE};

/// The envelope as written to `IMAGE.manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// Base64 of the manifest's JSON bytes.
    pub payload: String,
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    pub keyid: String,
    /// Base64 of the signature.
    pub sig: String,
}

/// DSSE's pre-authentication encoding:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Signs `manifest` into an envelope's JSON text (what gets published).
pub async fn sign(manifest: &Manifest, signer: &dyn Signer) -> Result<String, KeyError> {
    let payload = serde_json::to_vec_pretty(manifest)
        .map_err(|e| KeyError::Crypto(format!("manifest does not serialize: {e}")))?;
    let sig = signer.sign(&pae(PAYLOAD_TYPE, &payload)).await?;
    let envelope = Envelope {
        payload: STANDARD.encode(&payload),
        payload_type: PAYLOAD_TYPE.to_owned(),
        signatures: vec![EnvelopeSignature {
            keyid: signer.key_id(),
            sig: STANDARD.encode(sig),
        }],
    };
    let mut text = serde_json::to_string_pretty(&envelope)
        .map_err(|e| KeyError::Crypto(format!("envelope does not serialize: {e}")))?;
    text.push('\n');
    Ok(text)
}

pub(crate) fn decode(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text).ok()
}
