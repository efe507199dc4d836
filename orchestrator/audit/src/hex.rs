//! Lowercase hex, the only encoding in the trail's files (hashes, signatures).

const DIGITS: &[u8; 16] = b"0123456789abcdef";

pub fn encode(bytes: &[u8]) -> String {
    let mut text = vec![0; bytes.len() * 2];
    encode_into(bytes, &mut text);
    text.into_iter().map(char::from).collect()
}

/// Writes `2 × bytes.len()` digits into `out`.
pub fn encode_into(bytes: &[u8], out: &mut [u8]) {
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
}

/// Decodes exactly `2 × out.len()` lowercase digits; false otherwise.
/// Uppercase is refused so that every value has one spelling: the hash
/// covers the bytes as written.
pub fn decode_into(text: &[u8], out: &mut [u8]) -> bool {
    if text.len() != out.len() * 2 {
        return false;
    }
    for (pair, byte) in text.chunks_exact(2).zip(out.iter_mut()) {
        match (nibble(pair[0]), nibble(pair[1])) {
            (Some(high), Some(low)) => *byte = high << 4 | low,
            _ => return false,
        }
    }
    true
}

/// Digit value, or 0xff. A table because `verify` decodes two hashes per
/// record: with a `match` per digit, reading `seq`/`prev`/`hash` took
/// 265 ns a record, with the table ≈ 40 ns (`BENCHMARKS.md`).
const VALUES: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 16 {
        table[DIGITS[i] as usize] = i as u8;
        i += 1;
    }
    table
};

fn nibble(digit: u8) -> Option<u8> {
    let value = VALUES[usize::from(digit)];
    (value != 0xff).then_some(value)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips_and_refuses_uppercase() {
        let bytes = [0x00, 0x7f, 0xab, 0xff];
        assert_eq!(super::encode(&bytes), "007fabff");
        let mut out = [0; 4];
        assert!(super::decode_into(b"007fabff", &mut out));
        assert_eq!(out, bytes);
        assert!(!super::decode_into(b"007FABFF", &mut out));
        assert!(!super::decode_into(b"007fab", &mut out));
    }
}
