//! Simulated deploy targets (in progress).
