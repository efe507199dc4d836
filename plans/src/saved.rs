//! Saved plans (`deployctl plan --out FILE`): the exact plan text that was
//! reviewed, so that `apply` executes what was seen and nothing else.
//!
//! A saved plan embeds the plan file's bytes and their SHA-256. Applying it
//! re-validates the embedded text and refuses to go on if the plan file on
//! disk no longer has that digest: someone edited the plan after review, so
//! the review no longer covers it (Terraform's "saved plan is stale").

use serde::{Deserialize, Serialize};

use crate::{Loaded, Rejected, sha256_hex};

pub const SAVED_PLAN_KIND: &str = "SavedPlan";

/// The wire format of a saved plan file (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SavedPlan {
    pub api_version: String,
    pub kind: String,
    /// The plan file as it was named when saved.
    pub plan_file: String,
    /// The same file, relative to the saved plan's directory (when both
    /// resolved when it was saved), so `apply` finds it from anywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_file_from_saved: Option<String>,
    /// SHA-256 of `plan_source`, hex.
    pub plan_digest: String,
    /// The plan file's text, exactly.
    pub plan_source: String,
    /// The deployctl version that validated it.
    pub deployctl_version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    #[error("not a saved plan: {0}")]
    Malformed(#[source] serde_json::Error),
    #[error("not a saved plan: kind is `{kind}`, apiVersion `{api_version}`")]
    WrongKind { kind: String, api_version: String },
    #[error("saved plan is corrupt: its embedded plan does not match its digest")]
    Corrupt,
    #[error(
        "plan file {file} changed since the plan was saved (saved sha256:{saved}, now sha256:{now}); run `deployctl plan` again and review it"
    )]
    Changed {
        file: String,
        saved: String,
        now: String,
    },
    #[error(
        "plan file {file} is gone or unreadable since the plan was saved (tried {}); the saved plan is refused",
        tried.join(", ")
    )]
    Missing { file: String, tried: Vec<String> },
    #[error("the saved plan no longer validates")]
    Invalid(Box<Rejected>),
}

impl SavedPlan {
    pub fn new(plan_file: &str, loaded: &Loaded) -> SavedPlan {
        SavedPlan {
            api_version: crate::raw::API_VERSION.to_string(),
            kind: SAVED_PLAN_KIND.to_string(),
            plan_file: plan_file.to_string(),
            plan_file_from_saved: None,
            plan_digest: loaded.plan.digest.clone(),
            plan_source: loaded.source.text.clone().unwrap_or_default(),
            deployctl_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// Whether `bytes` look like a saved plan rather than a YAML plan.
    pub fn looks_saved(bytes: &[u8]) -> bool {
        bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
            && bytes
                .windows(SAVED_PLAN_KIND.len() + 2)
                .any(|w| w == format!("\"{SAVED_PLAN_KIND}\"").as_bytes())
    }

    pub fn from_json(bytes: &[u8]) -> Result<SavedPlan, SavedPlanError> {
        let saved: SavedPlan = serde_json::from_slice(bytes).map_err(SavedPlanError::Malformed)?;
        if saved.kind != SAVED_PLAN_KIND || saved.api_version != crate::raw::API_VERSION {
            return Err(SavedPlanError::WrongKind {
                kind: saved.kind,
                api_version: saved.api_version,
            });
        }
        if sha256_hex(saved.plan_source.as_bytes()) != saved.plan_digest {
            return Err(SavedPlanError::Corrupt);
        }
        Ok(saved)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a saved plan always serializes")
    }

    /// Validates the embedded plan, given the plan file's current bytes
    /// (`None` when it can no longer be read). Refuses a changed file.
    pub fn load(&self, current_file: Option<&[u8]>) -> Result<Loaded, SavedPlanError> {
        let Some(current) = current_file else {
            return Err(SavedPlanError::Missing {
                file: self.plan_file.clone(),
                tried: vec![self.plan_file.clone()],
            });
        };
        let now = sha256_hex(current);
        if now != self.plan_digest {
            return Err(SavedPlanError::Changed {
                file: self.plan_file.clone(),
                saved: self.plan_digest.clone(),
                now,
            });
        }
        crate::load(&self.plan_file, self.plan_source.as_bytes())
            .map_err(|rejected| SavedPlanError::Invalid(Box::new(rejected)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: &str = "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {name: demo, environment: staging}\ntargets: {api: {sim: {}}}\nartifacts: {api: {version: v2}}\nstages:\n  - {name: api, target: api, canary: {steps: [{setWeight: 100}]}}\n";

    fn saved() -> SavedPlan {
        let loaded = crate::load("plan.yaml", PLAN.as_bytes()).unwrap();
        SavedPlan::new("plan.yaml", &loaded)
    }

    #[test]
    fn round_trips_and_loads_when_the_file_is_unchanged() {
        let json = saved().to_json();
        assert!(SavedPlan::looks_saved(json.as_bytes()));
        let back = SavedPlan::from_json(json.as_bytes()).unwrap();
        let loaded = back.load(Some(PLAN.as_bytes())).unwrap();
        assert_eq!(loaded.plan.metadata.name, "demo");
    }

    #[test]
    fn refuses_a_changed_or_missing_plan_file() {
        let saved = saved();
        let edited = PLAN.replace("v2", "v3");
        assert!(matches!(
            saved.load(Some(edited.as_bytes())),
            Err(SavedPlanError::Changed { .. })
        ));
        assert!(matches!(
            saved.load(None),
            Err(SavedPlanError::Missing { .. })
        ));
    }

    #[test]
    fn refuses_a_tampered_saved_plan() {
        let mut saved = saved();
        saved.plan_source = saved.plan_source.replace("v2", "v9");
        let json = saved.to_json();
        assert!(matches!(
            SavedPlan::from_json(json.as_bytes()),
            Err(SavedPlanError::Corrupt)
        ));
    }
}
