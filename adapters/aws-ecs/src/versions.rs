//! Version labels ↔ task definitions.
//!
//! The engine speaks in the plan's version labels (`Deploy { version: "v2" }`,
//! `Rollback { to: "v1" }`); ECS runs task definitions. The plan's artifact
//! (and its pinned stable artifact) give the pairs; a label the plan does
//! not know is taken to be a task definition itself (`family:revision` or
//! an ARN), so a service whose stable task set predates deployctl still has
//! a name for its version.

/// The known label → task definition pairs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Versions {
    known: Vec<(String, String)>,
    /// The label of the plan's artifact (the version this target releases).
    pub(crate) release: Option<String>,
}

impl Versions {
    pub(crate) fn add(&mut self, label: String, task_definition: String, release: bool) {
        if release {
            self.release = Some(label.clone());
        }
        self.known.retain(|(known, _)| *known != label);
        self.known.push((label, task_definition));
    }

    /// The task definition the plan pairs with a label.
    pub(crate) fn known_task_definition(&self, label: &str) -> Option<String> {
        self.known
            .iter()
            .find(|(known, _)| known == label)
            .map(|(_, td)| td.clone())
    }

    /// The label of a task definition as ECS reports it (an ARN): the
    /// plan's label when it knows the task definition, else `family:revision`.
    pub(crate) fn label(&self, task_definition: &str) -> String {
        let short = short(task_definition);
        self.known
            .iter()
            .find(|(_, td)| short_eq(td, short))
            .map(|(label, _)| label.clone())
            .unwrap_or_else(|| short.to_owned())
    }
}

/// `family:revision` of a task definition ARN (the input when it is not one).
pub(crate) fn short(task_definition: &str) -> &str {
    match task_definition.rsplit_once("task-definition/") {
        Some((_, rest)) => rest,
        None => task_definition,
    }
}

/// Whether two task definition references name the same revision.
pub(crate) fn short_eq(a: &str, b: &str) -> bool {
    short(a) == short(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_task_definitions_map_both_ways() {
        let mut versions = Versions::default();
        versions.add("v1".into(), "web:1".into(), false);
        versions.add(
            "v2".into(),
            "arn:aws:ecs:us-east-1:1:task-definition/web:2".into(),
            true,
        );
        assert_eq!(
            versions.known_task_definition("v1").as_deref(),
            Some("web:1")
        );
        assert_eq!(versions.known_task_definition("web:7"), None);
        assert_eq!(
            versions.label("arn:aws:ecs:us-east-1:1:task-definition/web:1"),
            "v1"
        );
        assert_eq!(versions.label("web:2"), "v2");
        assert_eq!(
            versions.label("arn:aws:ecs:us-east-1:1:task-definition/web:3"),
            "web:3"
        );
        assert_eq!(versions.release.as_deref(), Some("v2"));
    }
}
