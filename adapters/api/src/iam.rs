//! Least privilege (S6, O10): each adapter states the IAM permissions its
//! calls need for one plan entry, next to the code that makes the calls;
//! `deployctl iam-policy` joins them into one policy for a release.
//!
//! Adapter tests record the calls the real SDK clients make
//! (`deployctl_aws::testing::CallRecorder`) and check each against the
//! adapter's statements, so a new call without a permission fails a test
//! instead of a production release.

use std::collections::BTreeSet;

use serde::Serialize;

/// One `Allow` statement: these actions on these resources.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Statement {
    /// What the statement is for, in words; becomes the `Sid` (letters and
    /// digits only, as IAM requires).
    pub purpose: String,
    /// `service:Operation`, e.g. `lambda:UpdateAlias`.
    pub actions: BTreeSet<String>,
    /// ARNs, or `*` where the service has no resource-level permissions
    /// for these actions.
    pub resources: BTreeSet<String>,
}

impl Statement {
    pub fn new<A, R>(purpose: impl Into<String>, actions: A, resources: R) -> Statement
    where
        A: IntoIterator,
        A::Item: Into<String>,
        R: IntoIterator,
        R::Item: Into<String>,
    {
        Statement {
            purpose: purpose.into(),
            actions: actions.into_iter().map(Into::into).collect(),
            resources: resources.into_iter().map(Into::into).collect(),
        }
    }
}

/// Where the ARNs point: the plan names resources, not always accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `aws`, `aws-cn`, `aws-us-gov`.
    pub partition: String,
    /// The 12-digit account, or `*` when the caller did not say.
    pub account: String,
    /// Used where the plan entry names no region.
    pub default_region: String,
}

impl Scope {
    /// The resource for KMS key `key`: the key's ARN when it is named by
    /// one, else every key of the account in the default region (IAM
    /// matches key policies on the key ARN, which an alias or bare ID does
    /// not give; name the key by ARN for an exact grant).
    pub fn kms_key(&self, key: &str) -> String {
        if key.starts_with("arn:") && key.contains(":key/") {
            key.to_owned()
        } else {
            self.arn("kms", &self.default_region, "key/*")
        }
    }

    /// `arn:{partition}:{service}:{region}:{account}:{resource}`.
    pub fn arn(&self, service: &str, region: &str, resource: &str) -> String {
        format!(
            "arn:{}:{service}:{region}:{}:{resource}",
            self.partition, self.account
        )
    }

    /// The plan's region when it names one, else the default.
    pub fn region<'a>(&'a self, region: Option<&'a str>) -> &'a str {
        region.unwrap_or(&self.default_region)
    }
}

/// The policy document: statements with the same purpose and the same
/// resources (or actions) are merged; actions and resources are sorted and
/// statements keep the order the adapters gave, so the output is stable
/// and reviewable.
pub fn policy_document(statements: &[Statement]) -> PolicyDocument {
    let mut merged: Vec<Statement> = Vec::new();
    for statement in statements {
        match merged.iter_mut().find(|s| {
            s.purpose == statement.purpose
                && (s.resources == statement.resources || s.actions == statement.actions)
        }) {
            Some(existing) if existing.resources == statement.resources => {
                existing.actions.extend(statement.actions.iter().cloned());
            }
            Some(existing) => existing
                .resources
                .extend(statement.resources.iter().cloned()),
            None => merged.push(statement.clone()),
        }
    }
    let mut used = BTreeSet::new();
    PolicyDocument {
        version: "2012-10-17",
        statement: merged
            .into_iter()
            .map(|s| PolicyStatement {
                sid: unique_sid(&s.purpose, &mut used),
                effect: "Allow",
                action: s.actions.into_iter().collect(),
                resource: s.resources.into_iter().collect(),
            })
            .collect(),
    }
}

/// An IAM policy document, its fields in the order AWS's own examples
/// use, so the printed JSON reads like one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyDocument {
    pub version: &'static str,
    pub statement: Vec<PolicyStatement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyStatement {
    pub sid: String,
    pub effect: &'static str,
    pub action: Vec<String>,
    pub resource: Vec<String>,
}

/// Whether `action` (`service:Operation`) is allowed by some statement.
pub fn allows(statements: &[Statement], action: &str) -> bool {
    statements.iter().any(|s| s.actions.contains(action))
}

fn unique_sid(purpose: &str, used: &mut BTreeSet<String>) -> String {
    let base: String = purpose
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect();
    let base = if base.is_empty() {
        "Statement".into()
    } else {
        base
    };
    let mut sid = base.clone();
    let mut n = 2;
    while !used.insert(sid.clone()) {
        sid = format!("{base}{n}");
        n += 1;
    }
    sid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_for_the_same_resources_merge_and_sids_are_iam_safe() {
        let policy = policy_document(&[
            Statement::new("lambda alias api:live", ["lambda:GetAlias"], ["arn:a"]),
            Statement::new("lambda alias api:live", ["lambda:UpdateAlias"], ["arn:a"]),
            Statement::new("lambda alias api:live", ["lambda:GetAlias"], ["arn:b"]),
        ]);
        let statements = &policy.statement;
        assert_eq!(statements.len(), 2, "{policy:#?}");
        assert_eq!(statements[0].sid, "LambdaAliasApiLive");
        assert_eq!(statements[1].sid, "LambdaAliasApiLive2");
        assert_eq!(
            statements[0].action,
            ["lambda:GetAlias", "lambda:UpdateAlias"]
        );
        assert_eq!(statements[1].resource, ["arn:b"]);
        let json = serde_json::to_string(&policy).unwrap();
        assert!(
            json.starts_with(r#"{"Version":"2012-10-17","Statement":[{"Sid":"LambdaAliasApiLive","Effect":"Allow","Action":"#),
            "{json}"
        );
    }

    #[test]
    fn allows_only_listed_actions() {
        let statements = [Statement::new("x", ["sns:Publish"], ["*"])];
        assert!(allows(&statements, "sns:Publish"));
        assert!(!allows(&statements, "sns:DeleteTopic"));
    }
}
