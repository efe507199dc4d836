//! The canonical form: what exactly is hashed and signed.
//!
//! A record's line in `audit.jsonl` is `serde_json`'s compact serialization
//! of [`AuditRecord`] (fields in struct order, absent optional fields left
//! out, no spaces, strings escaped as `serde_json` does) followed by `\n`.
//! `hash` is the last field, so every line ends in `,"hash":"<64 hex>"}`.
//!
//! **The canonical bytes of a record are its line without that suffix,
//! closed with `}`** — the same JSON object without its `hash` field.
//! `hash` is the SHA-256 of those bytes, and `prev` is the previous
//! record's `hash`. So an auditor needs no deployctl to check a line:
//!
//! ```text
//! sed -n 42p audit.jsonl | sed -E 's/,"hash":"[0-9a-f]{64}"}$/}/' | tr -d '\n' | sha256sum
//! ```
//!
//! prints line 42's `hash`, which line 43 repeats as its `prev`.
//!
//! Checkpoints are built the same way around their last field: the signed
//! message is the checkpoint's line without `,"signature":"<128 hex>"}`,
//! closed with `}` ([`crate::checkpoint`]).
//!
//! Why the bytes as written, not a re-serialization of the parsed record:
//! the verifier then never parses a line into structs (that costs about
//! three times the hash; see `BENCHMARKS.md`), and what an auditor hashes
//! with `sha256sum` is exactly what deployctl hashed. The writer only
//! writes `serde_json`'s output, and readers (`show`, the shipper) parse
//! every field strictly, so a line that is not a valid record is refused
//! there even when its hash is right.

use aws_lc_rs::digest::{Context, SHA256};

use crate::record::{AuditRecord, ChainHash};

/// How every record line starts; `seq` follows.
pub(crate) const RECORD_PREFIX: &[u8] =
    br#"{"apiVersion":"deployctl.io/v1","kind":"AuditRecord","seq":"#;
const PREV_FIELD: &[u8] = br#","prev":""#;
const HASH_FIELD: &[u8] = br#","hash":""#;
const SIGNATURE_FIELD: &[u8] = br#","signature":""#;

/// `,"hash":"<64 hex>"}`
const HASH_SUFFIX: usize = HASH_FIELD.len() + 64 + 2;
/// `,"prev":"<64 hex>","hash":"<64 hex>"}`
const CHAIN_SUFFIX: usize = PREV_FIELD.len() + 64 + 1 + HASH_SUFFIX;
/// `,"signature":"<128 hex>"}`
pub(crate) const SIGNATURE_SUFFIX: usize = SIGNATURE_FIELD.len() + 128 + 2;

/// Serializes `record` as its line (with `\n`) onto `out`, computing and
/// setting its `hash` on the way.
pub fn seal_record(record: &mut AuditRecord, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
    // Serialize once with a placeholder, hash the bytes before it, then
    // write the digits over the placeholder: the hashed bytes are exactly
    // the written ones, by construction.
    record.hash = ChainHash::ZERO;
    let start = out.len();
    serde_json::to_writer(&mut *out, &record)?;
    let line = &mut out[start..];
    let hash = body_hash(line);
    let end = line.len();
    crate::hex::encode_into(&hash.0, &mut line[end - 2 - 64..end - 2]);
    record.hash = hash;
    out.push(b'\n');
    Ok(())
}

/// SHA-256 of a record line's canonical bytes (`line` without `\n`, at
/// least as long as the hash suffix: [`parse_record_line`] checks that).
pub fn body_hash(line: &[u8]) -> ChainHash {
    let mut context = Context::new(&SHA256);
    context.update(&line[..line.len() - HASH_SUFFIX]);
    context.update(b"}");
    let mut hash = [0; 32];
    hash.copy_from_slice(context.finish().as_ref());
    ChainHash(hash)
}

/// What the chain needs from a line, read from fixed places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLine {
    pub seq: u64,
    pub prev: ChainHash,
    /// The hash as written (not recomputed).
    pub hash: ChainHash,
}

/// Reads `seq`, `prev` and `hash` from a record line (without `\n`) by
/// position, without a JSON parse: a line this crate wrote starts with
/// [`RECORD_PREFIX`] and ends with `prev` and `hash`. Anything else is not
/// a canonical record line.
pub fn parse_record_line(line: &[u8]) -> Result<RecordLine, &'static str> {
    let rest = line
        .strip_prefix(RECORD_PREFIX)
        .ok_or("not an AuditRecord line of deployctl.io/v1 in canonical form")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0
        || digits > 19
        || (digits > 1 && rest[0] == b'0')
        || rest.get(digits) != Some(&b',')
    {
        return Err("`seq` is not a canonical number");
    }
    let seq = rest[..digits]
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    if line.len() < RECORD_PREFIX.len() + digits + CHAIN_SUFFIX {
        return Err("line too short for `prev` and `hash`");
    }
    let tail = &line[line.len() - CHAIN_SUFFIX..];
    let (prev_field, tail) = tail.split_at(PREV_FIELD.len());
    let (prev_hex, tail) = tail.split_at(64);
    let (quote, tail) = tail.split_at(1);
    let (hash_field, tail) = tail.split_at(HASH_FIELD.len());
    let (hash_hex, close) = tail.split_at(64);
    if prev_field != PREV_FIELD || quote != b"\"" || hash_field != HASH_FIELD || close != b"\"}" {
        return Err("the line does not end with `prev` and `hash`");
    }
    let mut prev = ChainHash::ZERO;
    let mut hash = ChainHash::ZERO;
    if !crate::hex::decode_into(prev_hex, &mut prev.0)
        || !crate::hex::decode_into(hash_hex, &mut hash.0)
    {
        return Err("`prev` or `hash` is not 64 lowercase hex digits");
    }
    Ok(RecordLine { seq, prev, hash })
}

/// The message a checkpoint line's signature covers: the line (without
/// `\n`) minus its `signature` suffix, closed with `}`.
pub(crate) fn signed_message(line: &[u8]) -> Option<Vec<u8>> {
    let body_end = line.len().checked_sub(SIGNATURE_SUFFIX)?;
    if !line[body_end..].starts_with(SIGNATURE_FIELD) || !line.ends_with(b"\"}") {
        return None;
    }
    let mut message = Vec::with_capacity(body_end + 1);
    message.extend_from_slice(&line[..body_end]);
    message.push(b'}');
    Some(message)
}

/// Writes the 128 hex digits of `signature` over the placeholder at the
/// end of a checkpoint line (without `\n`).
pub(crate) fn write_signature(line: &mut [u8], signature: &[u8; 64]) {
    let end = line.len();
    crate::hex::encode_into(signature, &mut line[end - 2 - 128..end - 2]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::*;

    fn record(seq: u64) -> AuditRecord {
        AuditRecord {
            api_version: ApiVersion::V1,
            kind: RecordKind::AuditRecord,
            seq,
            time: "2026-11-24T09:15:23.123Z".into(),
            who: Who {
                operator: "alice".into(),
                os_user: "alice".into(),
                host: "deploy-pc".into(),
                aws_caller_arn: None,
            },
            what: What::new(Action::StageWeightSet)
                .run("r1")
                .stage("canary")
                .change("10", "50")
                .detail("quote \" and newline \n survive"),
            outcome: Outcome::ok(),
            request_ids: vec!["req-1".into()],
            prev: ChainHash::ZERO,
            hash: ChainHash::ZERO,
        }
    }

    #[test]
    fn sealed_line_hash_is_sha256_of_the_line_without_hash() {
        let mut record = record(7);
        let mut line = Vec::new();
        seal_record(&mut record, &mut line).unwrap();
        assert_eq!(line.pop(), Some(b'\n'));
        let text = std::str::from_utf8(&line).unwrap();
        let suffix = format!(",\"hash\":\"{}\"}}", record.hash);
        assert!(text.ends_with(&suffix), "{text}");
        let body = format!("{}}}", &text[..text.len() - suffix.len()]);
        let expected = aws_lc_rs::digest::digest(&SHA256, body.as_bytes());
        assert_eq!(record.hash.0.as_slice(), expected.as_ref());

        // The line is the record's serialization, and reads back as it.
        assert_eq!(serde_json::to_vec(&record).unwrap(), line);
        let parsed: AuditRecord = serde_json::from_slice(&line).unwrap();
        assert_eq!(parsed, record);

        let fast = parse_record_line(&line).unwrap();
        assert_eq!(
            (fast.seq, fast.prev, fast.hash),
            (7, ChainHash::ZERO, record.hash)
        );
        assert_eq!(body_hash(&line), record.hash);
    }

    #[test]
    fn non_canonical_lines_are_refused() {
        let mut record = record(12);
        let mut line = Vec::new();
        seal_record(&mut record, &mut line).unwrap();
        line.pop();
        let text = String::from_utf8(line).unwrap();
        for bad in [
            text.replacen("\"seq\":12", "\"seq\":012", 1),
            text.replacen("\"seq\":12", "\"seq\": 12", 1),
            text.replacen("{\"apiVersion\"", "{ \"apiVersion\"", 1),
            text.to_uppercase(),
            format!("{text} "),
            text[..text.len() - 1].to_string(),
        ] {
            assert!(parse_record_line(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
