//! A DistributionConfig read from a JSON file (the plan's
//! `cloudfront.configFile`), in the format the AWS CLI prints and takes:
//! the bare DistributionConfig object, or the
//! `{"ETag": ..., "DistributionConfig": {...}}` answer of
//! `aws cloudfront get-distribution-config`, so that a team can take its
//! production configuration, edit it and commit it.
//!
//! The file is read in full before anything moves: an error names the
//! file, the JSON path of the offending field
//! (`DistributionConfig.Origins.Items[0].DomainNme`) and what to do.
//! Fields deployctl does not map are refused by name ([`mirror`]), never
//! dropped: what the file says is what the staging distribution serves.

mod convert;
mod located;
mod mirror;

use std::path::Path;

use aws_sdk_cloudfront::types::DistributionConfig;
use deployctl_adapter::AdapterError;
use serde_json::Value;

/// What is wrong, and where in the JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// The JSON path (`Origins.Items[0].Id`); empty for the document.
    pub path: String,
    pub message: String,
}

impl Problem {
    pub(crate) fn new(path: &str, message: String) -> Problem {
        Problem {
            path: path.to_owned(),
            message,
        }
    }

    fn hint(&self) -> &'static str {
        if self.message.contains("unknown field") {
            "deployctl maps the DistributionConfig fields real configurations use; this one is \
             misspelt or not supported yet: fix its name, or remove it from the file (and manage \
             it on the distribution outside deployctl)"
        } else if self.path.is_empty() || self.message.starts_with("not JSON") {
            "the file must hold the JSON `aws cloudfront get-distribution-config --id <ID>` \
             prints (or its DistributionConfig object alone)"
        } else {
            "fix the field; the format is the JSON `aws cloudfront get-distribution-config` prints"
        }
    }
}

/// The wrapper `get-distribution-config` prints around the configuration.
const WRAPPER_KEY: &str = "DistributionConfig";

/// The DistributionConfig in `text`.
pub(crate) fn parse(text: &str) -> Result<DistributionConfig, Problem> {
    let document: Value = serde_json::from_str(text).map_err(|error| {
        Problem::new(
            "",
            format!(
                "not JSON (line {}, column {}): {error}",
                error.line(),
                error.column()
            ),
        )
    })?;
    let (config, root) = match &document {
        Value::Object(map) if map.contains_key(WRAPPER_KEY) => {
            if let Some(other) = map.keys().find(|k| *k != WRAPPER_KEY && *k != "ETag") {
                return Err(Problem::new(
                    other,
                    format!(
                        "unknown field `{other}` beside DistributionConfig (the \
                         get-distribution-config answer has only ETag and DistributionConfig)"
                    ),
                ));
            }
            (&map[WRAPPER_KEY], WRAPPER_KEY)
        }
        Value::Object(map) if map.contains_key("Distribution") => {
            return Err(Problem::new(
                "Distribution",
                "this is the answer of get-distribution; use `aws cloudfront \
                 get-distribution-config` (or the DistributionConfig object inside \
                 Distribution)"
                    .into(),
            ));
        }
        Value::Object(_) => (&document, ""),
        _ => {
            return Err(Problem::new(
                "",
                "not a JSON object; a DistributionConfig is an object".into(),
            ));
        }
    };
    let mirror: mirror::Config = located::from_value(config, root)
        .map_err(|(path, error)| Problem::new(&path, error.to_string()))?;
    convert::config(mirror, root)
}

/// The DistributionConfig in the JSON file at `file`; refused with the
/// file's path, the field's JSON path and a hint.
pub(crate) fn load(file: &Path) -> Result<DistributionConfig, AdapterError> {
    let text = std::fs::read_to_string(file).map_err(|error| AdapterError::Rejected {
        message: format!(
            "cannot read the CloudFront configuration file {}: {error}; cloudfront.configFile is \
             relative to the plan file's directory",
            file.display()
        ),
        request_id: None,
    })?;
    parse(&text).map_err(|problem| AdapterError::Rejected {
        message: format!(
            "CloudFront configuration file {}: {}{}; {}",
            file.display(),
            if problem.path.is_empty() {
                String::new()
            } else {
                format!("{}: ", problem.path)
            },
            problem.message,
            problem.hint()
        ),
        request_id: None,
    })
}

#[cfg(test)]
#[allow(deprecated)] // reads back the legacy fields the fixture has
mod tests;
