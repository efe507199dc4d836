//! Why a [`crate::CloudFrontTarget`] cannot be built from the plan:
//! refused before any call, so a bad configuration file touches nothing.

use deployctl_adapter::AdapterError;

/// What is wrong with the plan's release for a CloudFront target. The
/// messages name the artifact and the file; the binary adds which target.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConstructError {
    /// The artifact is no CloudFront release, or its configuration file is
    /// missing, unreadable or has a field deployctl does not understand
    /// ([`crate::Release::from_artifact`], which says which as `Rejected`).
    #[error(transparent)]
    Release(#[from] AdapterError),
}
