//! The one reporter: how a command that cannot do what it was asked says
//! so and which exit code it ends with (`exit.rs`, the contract README.md
//! documents). Commands return its codes instead of printing and choosing
//! codes themselves, so the words and the numbers cannot drift apart.

use std::fmt::Display;

use crate::exit;

/// Refused before anything moved: invalid input, a target another run
/// holds, a failed preflight. Prints `error: …` and gives exit code 2.
#[must_use]
pub fn refused(message: impl Display) -> u8 {
    eprintln!("error: {message}");
    exit::INVALID_INPUT
}

/// The command failed (or its run failed cleanly). Prints `error: …` and
/// gives exit code 1.
#[must_use]
pub fn failed(message: impl Display) -> u8 {
    eprintln!("error: {message}");
    exit::FAILED
}
