//! Why a [`crate::LambdaTarget`] cannot be built from the plan: refused
//! before any call, so a plan that cannot be released touches nothing.

/// What is wrong with the plan's release for a Lambda target. The messages
/// name the plan's values; the binary adds which target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstructError {
    /// The artifact is not Lambda code (validation only offers Lambda
    /// artifacts for Lambda targets; a caller building one by hand may not).
    #[error(
        "artifact {version} is not Lambda code ({given}); give `lambda: {{version | s3 | zipFile}}`"
    )]
    NotLambdaCode { version: String, given: String },
    #[error("a Lambda release needs a version label")]
    NoLabel,
    #[error("`{version}` is not a published Lambda version number")]
    NotAVersionNumber { version: String },
    /// Labels and version numbers share the engine's version strings:
    /// "roll back to 3" must not be ambiguous.
    #[error(
        "release label `{label}` looks like a Lambda version number but is not the version Lambda will route to; \
         use a label that is not a bare number (e.g. `v{label}`) so a version number always means a published version"
    )]
    BareNumberLabel { label: String },
    /// The published version's description carries the release's
    /// identity, and Lambda caps descriptions.
    #[error(
        "release `{label}`: the version description naming it would be {length} characters, over Lambda's {limit}; \
         use a shorter label or S3 key"
    )]
    DescriptionTooLong {
        label: String,
        length: usize,
        limit: usize,
    },
    /// A rollback never publishes code, so what it returns to must exist.
    #[error(
        "the pinned stable version {version} must name a published Lambda version (`lambda: {{version: N}}`): a rollback does not publish code"
    )]
    PinnedNotPublished { version: String },
}
