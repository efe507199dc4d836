//! Signed checkpoints: "the log had `seq` records ending in `hash`", signed.
//!
//! The chain alone shows edits, deletions and insertions *inside* the
//! log, but not a cut-off end: a shorter chain is still a valid chain. A
//! checkpoint pins the head at a moment; a log that ends before its last
//! checkpoint was truncated, and a log whose record at `seq` hashes
//! differently was rewritten. One line per checkpoint in
//! `checkpoints.jsonl`, also handed to the sink.
//!
//! The signature covers the checkpoint's line without its `signature`
//! field (see [`crate::canonical`]); to check one with OpenSSL:
//!
//! ```text
//! line=$(tail -n 1 checkpoints.jsonl)
//! printf '%s' "$line" | sed -E 's/,"signature":"[0-9a-f]{128}"}$/}/' > message
//! printf '%s' "$line" | sed -E 's/.*"signature":"([0-9a-f]{128})"}$/\1/' | xxd -r -p > signature
//! openssl pkeyutl -verify -pubin -inkey signing-key.pub -rawin -in message -sigfile signature
//! ```

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::canonical::{signed_message, write_signature};
use crate::keys::{PublicKey, SigningKey};
use crate::record::{ApiVersion, ChainHash};

pub const CHECKPOINTS_FILE: &str = "checkpoints.jsonl";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckpointKind {
    AuditCheckpoint,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Checkpoint {
    pub api_version: ApiVersion,
    pub kind: CheckpointKind,
    /// The last record covered; 0 for an empty log.
    pub seq: u64,
    /// That record's `hash`.
    pub hash: ChainHash,
    pub time: String,
    /// Which key signed ([`PublicKey::key_id`]).
    pub key_id: String,
    pub signature: Signature,
}

/// An Ed25519 signature, written as 128 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signature({})", crate::hex::encode(&self.0))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&crate::hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        let mut bytes = [0; 64];
        if crate::hex::decode_into(text.as_bytes(), &mut bytes) {
            Ok(Signature(bytes))
        } else {
            Err(serde::de::Error::custom(
                "expected 128 lowercase hex digits (an Ed25519 signature)",
            ))
        }
    }
}

impl Checkpoint {
    /// Signs the head `(seq, hash)`; returns the checkpoint and its line
    /// (with `\n`).
    pub(crate) fn sign(
        seq: u64,
        hash: ChainHash,
        time: String,
        key: &SigningKey,
    ) -> Result<(Checkpoint, Vec<u8>), serde_json::Error> {
        let mut checkpoint = Checkpoint {
            api_version: ApiVersion::V1,
            kind: CheckpointKind::AuditCheckpoint,
            seq,
            hash,
            time,
            key_id: key.public().key_id().to_string(),
            signature: Signature([0; 64]),
        };
        let mut line = serde_json::to_vec(&checkpoint)?;
        // The placeholder signature makes the line its final length; the
        // message is everything but the signature field.
        let message = signed_message(&line).unwrap_or_default();
        checkpoint.signature = Signature(key.sign(&message));
        write_signature(&mut line, &checkpoint.signature.0);
        line.push(b'\n');
        Ok((checkpoint, line))
    }

    /// This checkpoint's line (without `\n`).
    pub fn to_line(&self) -> Vec<u8> {
        // Serializing plain structs of strings and numbers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Parses and checks one checkpoint line (without `\n`): canonical form,
/// signature by `key`. `Err` says what is wrong.
pub fn check_line(line: &[u8], key: &PublicKey) -> Result<Checkpoint, String> {
    let checkpoint: Checkpoint =
        serde_json::from_slice(line).map_err(|e| format!("not a checkpoint: {e}"))?;
    if checkpoint.to_line() != line {
        return Err("not in canonical form (it was re-encoded or edited)".into());
    }
    if checkpoint.key_id != key.key_id() {
        return Err(format!(
            "signed by key {}, not by the given key {}",
            checkpoint.key_id,
            key.key_id()
        ));
    }
    let message = signed_message(line).ok_or("no signature at the end of the line")?;
    if !key.verify(&message, &checkpoint.signature.0) {
        return Err("the signature does not match (forged or altered checkpoint)".into());
    }
    Ok(checkpoint)
}
