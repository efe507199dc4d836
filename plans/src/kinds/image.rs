//! Container images: the artifact source `kubernetes` and `ecs` targets
//! both take. Not a kind of its own; it lives here once so that neither of
//! the two kinds owns what the other borrows.
//!
//! Only digests are accepted: a tag can move between review and release.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Source;
use crate::check::{Checker, is_hex_digest};
use crate::model::ArtifactSource;
use crate::raw;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ImageArtifact {
    /// `registry/repository@sha256:<64 hex>` (a tag alone is refused).
    pub reference: String,
    /// Container to update; the Deployment's only container when omitted.
    #[serde(default)]
    pub container: Option<String>,
}

pub(crate) const IMAGE: Source = Source {
    key: "image",
    written: |artifact| artifact.image.is_some(),
    check,
};

fn check(checker: &mut Checker, path: &str, artifact: &raw::Artifact) -> Option<ArtifactSource> {
    let image = artifact.image.as_ref()?;
    let reference = &image.reference;
    let pinned = reference
        .split_once("@sha256:")
        .is_some_and(|(repo, digest)| !repo.is_empty() && is_hex_digest(digest));
    if !pinned {
        checker.error(
            format!("{path}.image.reference"),
            format!("`{reference}` is not pinned by digest"),
        )
        .hint = Some(
            "tags move; write `registry/repo@sha256:<64 hex digits>` so the release is exactly what was reviewed"
                .into(),
        );
    }
    Some(ArtifactSource::Image {
        reference: reference.clone(),
        container: image.container.clone(),
    })
}
