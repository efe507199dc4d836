//! Target kinds: one module per kind, and the one place a kind is chosen.
//!
//! Each kind's module (`sim`, `lambda`, `cloudfront`, `ecs`, `kubernetes`,
//! `fleet`) is the home of everything the plan language knows about that
//! kind. So far:
//!
//! - its wire sections: the serde structs of its `targets.NAME.<kind>`
//!   section and of the artifact sources it takes (re-exported from
//!   [`crate::raw`], where the schema and every caller find them);
//! - its capabilities: its row of the capability table (strategies, gate
//!   kinds, the highest canary weight);
//! - its name, and its label in the impact report.
//!
//! `image` is the one module that is not a kind: the container image
//! source that `kubernetes` and `ecs` both take, kept once rather than
//! owned by one of them and borrowed by the other.
//!
//! A kind implements [`Kind`], and [`of`] is the one `match` that picks
//! the implementation for a [`TargetKind`]. A trait rather than one
//! function per concern because then a new kind is one module that the
//! compiler checks for completeness plus one arm in [`of`]; with a function
//! per concern it would be an arm in every function, which is the
//! scattering this module exists to end. A trait object rather than
//! generics because the kind is only known at run time, from the plan.

use crate::model::{Capabilities, GateKind, TargetKind};

pub(crate) mod cloudfront;
pub(crate) mod ecs;
pub(crate) mod fleet;
pub(crate) mod image;
pub(crate) mod kubernetes;
pub(crate) mod lambda;
pub(crate) mod sim;

/// What holds for every target of one kind.
pub(crate) trait Kind {
    /// The key that introduces the kind in a plan file
    /// (`targets.NAME.<name>`), and its name in messages.
    fn name(&self) -> &'static str;

    /// What the impact report calls a target of this kind
    /// ("Stage web — CloudFront target `web`").
    fn label(&self) -> &'static str;

    /// The kind's row of the capability table: what its adapter promises.
    fn capabilities(&self) -> Capabilities;
}

/// The gates any service reachable over the network can be checked with;
/// kinds with gates of their own add to these.
const SERVICE_GATES: &[GateKind] = &[GateKind::Http, GateKind::Prometheus, GateKind::CloudWatch];

/// The rules of the kind named `kind`.
pub(crate) fn of(kind: TargetKind) -> &'static dyn Kind {
    match kind {
        TargetKind::Kubernetes => &kubernetes::Kubernetes,
        TargetKind::Lambda => &lambda::Lambda,
        TargetKind::CloudFront => &cloudfront::CloudFront,
        TargetKind::Ecs => &ecs::Ecs,
        TargetKind::Fleet => &fleet::Fleet,
        TargetKind::Sim => &sim::Sim,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kinds_name_is_how_it_is_written_and_serialized() {
        for kind in TargetKind::ALL {
            assert_eq!(
                serde_json::to_value(kind).expect("serializes"),
                serde_json::Value::from(of(kind).name())
            );
        }
    }
}
