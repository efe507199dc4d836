//! The enrollment URI as a QR code drawn with Unicode half blocks, so an
//! operator can scan it straight from the terminal (the `qrcode` crate with
//! no default features: no image stack, no dependencies).
//!
//! The drawing holds the secret, like the URI: print it only to the person
//! enrolling, never to a log.

use qrcode::render::unicode::Dense1x2;
use qrcode::{EcLevel, QrCode};

/// The terminal's background, which decides which modules are drawn as
/// blocks: a scanner needs dark modules on a light field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Background {
    /// Light text on a dark background (most terminals).
    #[default]
    Dark,
    Light,
}

/// Why a QR code could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw a QR code for this text: {0}")]
pub struct QrError(String);

/// Draws `text` as a QR code, two modules per character cell.
pub fn terminal_qr(text: &str, background: Background) -> Result<String, QrError> {
    // Medium error correction: a phone camera reading a screen needs little,
    // and a smaller code fits a narrow terminal.
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|error| QrError(error.to_string()))?;
    let (dark, light) = match background {
        // Blocks are drawn in the (light) text colour: draw the light
        // modules, and let the dark background be the dark ones.
        Background::Dark => (Dense1x2::Light, Dense1x2::Dark),
        Background::Light => (Dense1x2::Dark, Dense1x2::Light),
    };
    Ok(code
        .render::<Dense1x2>()
        .dark_color(dark)
        .light_color(light)
        .quiet_zone(true)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_square_of_half_blocks() {
        let drawing = terminal_qr(
            "otpauth://totp/deployctl:alice?secret=ABC",
            Background::Dark,
        )
        .unwrap();
        let lines: Vec<&str> = drawing.lines().collect();
        let width = lines[0].chars().count();
        assert!(width >= 21 + 8, "a version-1 code plus its quiet zone");
        assert!(lines.iter().all(|line| line.chars().count() == width));
        // Two modules per line, rounded up.
        assert_eq!(lines.len(), width.div_ceil(2));
        assert!(
            drawing
                .chars()
                .all(|c| matches!(c, ' ' | '\n' | '\u{2580}' | '\u{2584}' | '\u{2588}'))
        );
        let inverted = terminal_qr(
            "otpauth://totp/deployctl:alice?secret=ABC",
            Background::Light,
        )
        .unwrap();
        assert_ne!(drawing, inverted);
    }
}
