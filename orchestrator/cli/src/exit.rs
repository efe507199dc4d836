//! The exit-code contract. Scripts and runbooks branch on these numbers, so
//! they only ever gain meanings; README.md documents the same table.

/// Success: the plan is valid, the run succeeded, the command did what it said.
pub const OK: u8 = 0;
/// The run rolled back or failed cleanly: targets are on their stable versions.
pub const FAILED: u8 = 1;
/// Refused before anything moved: invalid input (a plan, flag or file), a
/// target another run holds, a failed preflight, a strategy the target
/// cannot take. Nothing was touched and no run was recorded.
pub const INVALID_INPUT: u8 = 2;
/// A rollback could not complete: traffic may be split, a human must act.
pub const ROLLBACK_INCOMPLETE: u8 = 3;
/// Interrupted (Ctrl-C): the run is left resumable with `deployctl resume`.
pub const INTERRUPTED: u8 = 130;
