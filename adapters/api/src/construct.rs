//! What every adapter's constructor is given besides its own section of
//! the plan, so that all of them have one shape:
//!
//! ```text
//! async fn from_spec(name, &raw::XTarget, &PlanRelease) -> Result<Self, ConstructError>
//! ```
//!
//! with `ConstructError` a `thiserror` enum of the adapter's crate, whose
//! messages say what is wrong with the plan for this target (the binary
//! adds which target). Constructors check everything they can without a
//! call (the artifact's kind, labels, files the plan names) so a plan
//! this build cannot run is refused before anything moves.

use std::path::Path;

use deployctl_plan::model::{Artifact, StrategyKind, Target, Waves};

/// The plan's release for one target: what its stages deploy, what a
/// rollback returns to, and where files the plan names are found.
#[derive(Debug, Clone, Copy)]
pub struct PlanRelease<'a> {
    /// The version the plan's stages deploy to this target; `None` when no
    /// stage does (then only `observe`, `preflight` and `Rollback` act).
    pub artifact: Option<&'a Artifact>,
    /// The version a rollback returns to, when the plan pins one
    /// (`rollback.stable`).
    pub pinned_stable: Option<&'a Artifact>,
    /// How the plan's stage moves this target, when one does.
    pub strategy: Option<StrategyKind>,
    /// That stage's wave settings, when it moves the target in waves.
    pub waves: Option<&'a Waves>,
    /// The plan file's directory: relative paths in the plan (a Lambda
    /// `zipFile`, a CloudFront `configFile`) are relative to it.
    pub plan_dir: &'a Path,
}

impl<'a> PlanRelease<'a> {
    /// The release a validated plan gives `target`, its files found from
    /// `plan_dir`.
    pub fn of(target: &'a Target, plan_dir: &'a Path) -> Self {
        PlanRelease {
            artifact: target.artifact.as_ref(),
            pinned_stable: target.pinned_stable.as_ref(),
            waves: target.waves.as_ref(),
            strategy: target.strategy,
            plan_dir,
        }
    }

    /// Nothing to release (a target that is only observed or rolled back).
    pub fn none(plan_dir: &'a Path) -> Self {
        PlanRelease {
            artifact: None,
            pinned_stable: None,
            waves: None,
            strategy: None,
            plan_dir,
        }
    }
}
