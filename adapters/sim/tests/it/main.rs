//! deployctl-sim's tests, one binary: the adapter conformance suite over
//! every kind and both storage modes, then the simulator's own behaviour.

mod conformance;
mod faults;
mod fleet;
mod persistence;
mod plans;
mod probes;
mod support;
