//! Target kinds: one module per kind, and the one place a kind is chosen.
//!
//! Each kind's module (`sim`, `lambda`, `cloudfront`, `ecs`, `kubernetes`,
//! `fleet`) holds everything the plan language knows about that kind:
//!
//! - its wire sections: the serde structs of its `targets.NAME.<kind>`
//!   section and of the artifact sources it takes (re-exported from
//!   [`crate::raw`], where the schema and every caller find them);
//! - its checks: what validation asks of that section and of its artifacts
//!   beyond what every target shares;
//! - its capabilities: its row of the capability table (strategies, gate
//!   kinds, the highest canary weight);
//! - its report text: its label and how the impact report says a stage on
//!   it is rolled back.
//!
//! `image` is the one module that is not a kind: the container image
//! source that `kubernetes` and `ecs` both take, kept once rather than
//! owned by one of them and borrowed by the other.
//!
//! # Why two traits and two `match`es
//!
//! A kind is known in two shapes: as a [`TargetKind`] (named in a plan,
//! before anything is checked) and as a [`TargetSpec`] (a checked target,
//! carrying that kind's data). So there are two traits, [`Kind`] for what
//! holds for every target of the kind and [`Spec`] for what needs one
//! target's data, and one `match` for each shape: [`of`] and [`spec`].
//! They are the only `match`es over target kinds in the crate; everything
//! else asks them. Traits rather than one function per concern because
//! then a new kind is one module that the compiler checks for
//! completeness (every required method, with defaults only for the hooks
//! most kinds leave alone) plus one arm in each `match` below; with a
//! function per concern it would be an arm in every function, which is the
//! scattering this module exists to end. Trait objects rather than
//! generics because the kind is only known at run time, from the plan.
//!
//! Adding a kind: write `kinds/<kind>.rs` with its sections and both
//! impls, add its variant to `TargetKind` (and `TargetKind::ALL`) and to
//! `TargetSpec`, its field to `raw::Target` (and the re-export beside it),
//! and an arm to [`of`] and [`spec`]; a new artifact source also goes into
//! `raw::Artifact`, `ArtifactSource` and [`SOURCES`].

use crate::check::Checker;
use crate::model::{ArtifactSource, Capabilities, GateKind, StrategyKind, TargetKind, TargetSpec};
use crate::raw;

pub(crate) mod cloudfront;
pub(crate) mod ecs;
pub(crate) mod fleet;
pub(crate) mod image;
pub(crate) mod kubernetes;
pub(crate) mod lambda;
pub(crate) mod sim;

/// What holds for every target of one kind: its name, its capabilities,
/// the artifacts it takes and the checks of its section.
pub(crate) trait Kind {
    /// The key that introduces the kind in a plan file
    /// (`targets.NAME.<name>`), and its name in messages.
    fn name(&self) -> &'static str;

    /// What the impact report calls a target of this kind
    /// ("Stage web — CloudFront target `web`").
    fn label(&self) -> &'static str;

    /// The kind's row of the capability table: what its adapter promises.
    fn capabilities(&self) -> Capabilities;

    /// The artifact sources a target of this kind takes, in the order
    /// messages list them. None means a `version` label is all it needs.
    fn artifact_sources(&self) -> &'static [&'static Source];

    /// Whether `target` writes this kind's section.
    fn is_written(&self, target: &raw::Target) -> bool;

    /// Checks this kind's section of `target` (at `path`, `targets.NAME`),
    /// which [`Kind::is_written`] said is there.
    fn check(&self, checker: &mut Checker, path: &str, target: &raw::Target) -> Option<TargetSpec>;

    /// Called for a stage (its `target` field at `path`) that moves a
    /// target of this kind which `rollback.stable` does not pin. A kind
    /// whose stable version cannot be read back from the platform reports
    /// it here; most can, and leave this alone.
    fn check_unpinned(&self, _checker: &mut Checker, _path: &str, _target: &str) {}

    /// Completes "…, the most <receiver> can receive", the error for a
    /// canary weight above `capabilities().max_canary_weight`. Only a kind
    /// with a cap below 100 is ever asked; it names what takes the share.
    fn canary_receiver(&self) -> String {
        format!("a {} canary", self.name())
    }
}

/// What needs one checked target's data. Implemented by each kind's
/// [`TargetSpec`] payload.
pub(crate) trait Spec {
    fn kind(&self) -> TargetKind;

    /// Checks a stage's `strategy` (at `path`) against this target
    /// (`target` is its name) beyond what the capability table says.
    fn check_strategy(
        &self,
        _checker: &mut Checker,
        _target: &str,
        _path: &str,
        _strategy: StrategyKind,
    ) {
    }

    /// Why this target cannot send requests to its canary by header
    /// (`setHeaderRoute`), with the fix; `None` when it can.
    fn header_routes_refused(&self, target: &str) -> Option<(String, String)> {
        Some((
            format!(
                "target `{target}` cannot route requests by header: only a Kubernetes target with an HTTPRoute can"
            ),
            "remove the `setHeaderRoute` step".into(),
        ))
    }

    /// The stable version known without observing the platform, if any.
    fn known_stable(&self) -> Option<&str> {
        None
    }

    /// How the impact report says a stage with `strategy` on this target
    /// is undone; `stable` is the version it returns to.
    fn rollback(&self, strategy: StrategyKind, stable: &str) -> String;
}

/// One artifact source section (`image:`, `lambda:`, `taskDefinition:` …):
/// its key, whether an artifact writes it, and its check. Each lives in the
/// module of the kind that takes it.
pub(crate) struct Source {
    /// The section's key in an artifact.
    pub(crate) key: &'static str,
    pub(crate) written: fn(&raw::Artifact) -> bool,
    /// Checks the section (written) of the artifact at the given path.
    pub(crate) check: fn(&mut Checker, &str, &raw::Artifact) -> Option<ArtifactSource>,
}

/// Every artifact source, in `raw::Artifact`'s field order: a section that
/// does not suit the target is reported in this order.
pub(crate) const SOURCES: [&Source; 5] = [
    &image::IMAGE,
    &lambda::LAMBDA,
    &cloudfront::CLOUDFRONT,
    &ecs::TASK_DEFINITION,
    &fleet::FIRMWARE,
];

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

/// A checked target's own section, seen through what every kind provides.
pub(crate) fn spec(spec: &TargetSpec) -> &dyn Spec {
    match spec {
        TargetSpec::Kubernetes(kubernetes) => kubernetes,
        TargetSpec::Lambda(lambda) => lambda,
        TargetSpec::CloudFront(cloudfront) => cloudfront,
        TargetSpec::Ecs(ecs) => ecs,
        TargetSpec::Fleet(fleet) => fleet,
        TargetSpec::Sim(sim) => sim,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_takes_only_listed_sources() {
        for kind in TargetKind::ALL {
            for source in of(kind).artifact_sources() {
                assert!(
                    SOURCES.iter().any(|listed| listed.key == source.key),
                    "{} takes `{}`, which SOURCES does not list",
                    kind.name(),
                    source.key
                );
            }
        }
    }

    #[test]
    fn every_source_is_taken_by_some_kind() {
        for source in SOURCES {
            assert!(
                TargetKind::ALL.iter().any(|kind| of(*kind)
                    .artifact_sources()
                    .iter()
                    .any(|s| s.key == source.key)),
                "no kind takes `{}`",
                source.key
            );
        }
    }

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
