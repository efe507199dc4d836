//! PEM armour (RFC 7468) for key files, so `openssl` reads what we write.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

pub(crate) fn encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER inside the first `label` block of `text`.
pub(crate) fn decode(label: &str, text: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let body: String = text[start..stop].split_whitespace().collect();
    STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_and_finds_the_block_among_other_text() {
        let der: Vec<u8> = (0..=255).collect();
        let text = format!("comment\n{}trailer\n", super::encode("PUBLIC KEY", &der));
        assert_eq!(super::decode("PUBLIC KEY", &text), Some(der));
        assert_eq!(super::decode("PRIVATE KEY", &text), None);
    }
}
