//! The exit-code contract. Scripts and runbooks branch on these numbers, so
//! they only ever gain meanings; README.md documents the same table.

/// Success: the plan is valid, the run succeeded, the command did what it said.
pub const OK: u8 = 0;
/// Invalid input: a plan, flag or file that was refused. Nothing was touched.
pub const INVALID_INPUT: u8 = 2;
