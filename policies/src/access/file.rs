//! The access file on disk: `kind: Access`, YAML, parsed with the same
//! strictness as plans (serde-saphyr, strict booleans, duplicate and
//! unknown keys rejected, bounded resources) and then checked for
//! consistency. Every problem carries `file:line:column`.
//!
//! ```yaml
//! apiVersion: deployctl.io/v1
//! kind: Access
//! users:
//!   alice:
//!     roles: [operator]
//!     # The AWS identities alice deploys as (`*` matches anything); with a
//!     # team backend, a protected environment's operator must be one.
//!     awsPrincipals: ["arn:aws:sts::123456789012:assumed-role/Deployer/alice"]
//!   bob: {roles: [approver]}
//!   carol: {roles: [approver, auditor]}
//! environments:
//!   production:
//!     operators: [alice]
//!     approverRole: release-approver
//!     auditors: [carol]
//! roles:
//!   release-approver: [bob, carol]
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::{Budget, MessageFormatter, Spanned, UserMessageFormatter};

use super::{Access, EnvironmentPolicy, Role};
use crate::names::{self, NameKind};

pub const API_VERSION: &str = "deployctl.io/v1";
pub const KIND: &str = "Access";
/// An access file names a few dozen people; anything this large is a
/// mistake or an attack and is refused unread.
pub const MAX_ACCESS_FILE_BYTES: usize = 1024 * 1024;
const MAX_DEPTH: usize = 16;

/// One thing wrong with an access file, where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// Why an access file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("cannot read access file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Every problem found, in file order.
    #[error("{}", Rendered { path, problems })]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

struct Rendered<'a> {
    path: &'a Path,
    problems: &'a [Problem],
}

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                problem.line,
                problem.column,
                problem.message
            )?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Header {
    #[serde(default)]
    api_version: Option<Spanned<String>>,
    #[serde(default)]
    kind: Option<Spanned<String>>,
}

// Map keys are `Spanned` so problems with a name point at the name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawAccess {
    #[allow(dead_code)] // checked through `Header`, before this parse
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[serde(default)]
    users: HashMap<Spanned<String>, RawUser>,
    #[serde(default)]
    environments: HashMap<Spanned<String>, RawEnvironment>,
    #[serde(default)]
    roles: HashMap<Spanned<String>, Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawUser {
    roles: Vec<Spanned<Role>>,
    #[serde(default)]
    aws_principals: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawEnvironment {
    #[serde(default)]
    operators: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    approver_role: Option<Spanned<String>>,
    #[serde(default)]
    auditors: Option<Vec<Spanned<String>>>,
}

impl Access {
    /// Reads and checks the access file at `path`.
    pub fn load(path: &Path) -> Result<Access, AccessError> {
        let read_error = |source| AccessError::Read {
            path: path.to_path_buf(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read_error)?.len();
        if size > MAX_ACCESS_FILE_BYTES as u64 {
            return Err(invalid(
                path,
                vec![problem_at(
                    1,
                    1,
                    format!(
                        "the access file is {size} bytes; files over {} KiB are refused",
                        MAX_ACCESS_FILE_BYTES / 1024
                    ),
                )],
            ));
        }
        let bytes = std::fs::read(path).map_err(read_error)?;
        Access::parse(&bytes, path)
    }

    /// Checks an access file's bytes; `origin` names it in errors.
    pub fn parse(bytes: &[u8], origin: &Path) -> Result<Access, AccessError> {
        parse(bytes).map_err(|problems| invalid(origin, problems))
    }
}

fn invalid(path: &Path, mut problems: Vec<Problem>) -> AccessError {
    problems.sort_by_key(|problem| (problem.line, problem.column));
    AccessError::Invalid {
        path: path.to_path_buf(),
        problems,
    }
}

fn problem_at(line: usize, column: usize, message: impl Into<String>) -> Problem {
    Problem {
        line: line.max(1),
        column: column.max(1),
        message: message.into(),
    }
}

fn problem<T>(spanned: &Spanned<T>, message: impl Into<String>) -> Problem {
    problem_at(
        spanned.referenced.line() as usize,
        spanned.referenced.column() as usize,
        message,
    )
}

fn parse(bytes: &[u8]) -> Result<Access, Vec<Problem>> {
    if bytes.len() > MAX_ACCESS_FILE_BYTES {
        return Err(vec![problem_at(1, 1, "the access file is too large")]);
    }
    let text = std::str::from_utf8(bytes).map_err(|error| {
        let (line, column) = byte_position(bytes, error.valid_up_to());
        vec![problem_at(
            line,
            column,
            "the access file is not valid UTF-8; save it as UTF-8",
        )]
    })?;
    if text
        .lines()
        .all(|line| line.trim().is_empty() || line.trim_start().starts_with('#'))
    {
        return Err(vec![problem_at(1, 1, "the access file is empty")]);
    }

    // The document kind first, so a plan or a Kubernetes manifest passed
    // by mistake is named as such rather than as a pile of unknown fields.
    let header: Header = serde_saphyr::from_str_with_options(text, options())
        .map_err(|error| vec![yaml_problem(&error)])?;
    check_header(&header)?;

    let raw: RawAccess = serde_saphyr::from_str_with_options(text, options())
        .map_err(|error| vec![yaml_problem(&error)])?;
    check(raw)
}

fn options() -> serde_saphyr::Options {
    let mut budget = Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_nodes = 100_000;
    budget.max_events = 200_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_total_scalar_bytes = MAX_ACCESS_FILE_BYTES;
    serde_saphyr::options! {
        strict_booleans: true,
        with_snippet: false,
        budget: Some(budget),
    }
}

fn check_header(header: &Header) -> Result<(), Vec<Problem>> {
    let Some(api_version) = &header.api_version else {
        return Err(vec![problem_at(
            1,
            1,
            format!("missing `apiVersion: {API_VERSION}`"),
        )]);
    };
    if api_version.value != API_VERSION {
        return Err(vec![problem(
            api_version,
            format!(
                "`{}` is not a deployctl access file version; expected `{API_VERSION}`",
                api_version.value.escape_debug()
            ),
        )]);
    }
    match &header.kind {
        None => Err(vec![problem_at(1, 1, format!("missing `kind: {KIND}`"))]),
        Some(kind) if kind.value != KIND => Err(vec![problem(
            kind,
            format!(
                "`{}` is not an access file; expected `kind: {KIND}`",
                kind.value.escape_debug()
            ),
        )]),
        Some(_) => Ok(()),
    }
}

/// A YAML or shape error as a located problem.
fn yaml_problem(error: &serde_saphyr::Error) -> Problem {
    let mut inner = error;
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = inner
    {
        inner = error;
    }
    // Control characters from the input must not reach a terminal.
    let message: String = UserMessageFormatter
        .format_message(inner)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let (line, column) = error.location().map_or((1, 1), |location| {
        (location.line() as usize, location.column() as usize)
    });
    let message = if message.to_ascii_lowercase().contains("bool") {
        format!("{message} (booleans are `true` or `false`)")
    } else {
        message
    };
    problem_at(line, column, message)
}

/// Consistency: names are well formed, every reference resolves, and each
/// list names the people who hold the base role it needs.
fn check(raw: RawAccess) -> Result<Access, Vec<Problem>> {
    let mut problems = Vec::new();

    let mut users = BTreeMap::new();
    let mut aws_principals = BTreeMap::new();
    for (name, user) in &raw.users {
        if let Err(message) = names::check(NameKind::User, &name.value) {
            problems.push(problem(name, message));
        }
        if user.roles.is_empty() {
            problems.push(problem(
                name,
                format!(
                    "`{}` has no roles; give them at least one of {} or remove them",
                    name.value,
                    role_list()
                ),
            ));
        }
        let mut roles = BTreeSet::new();
        for role in &user.roles {
            if !roles.insert(role.value) {
                problems.push(problem(
                    role,
                    format!("role `{}` is listed twice", role.value),
                ));
            }
        }
        users.insert(name.value.clone(), roles);
        let mut principals = Vec::new();
        for principal in &user.aws_principals {
            let arn = principal.value.trim();
            if !arn.starts_with("arn:") || arn.split(':').count() < 6 {
                problems.push(problem(
                    principal,
                    format!(
                        "`{}` is not an AWS principal ARN; write one as `aws sts get-caller-identity` prints it, e.g. `arn:aws:sts::123456789012:assumed-role/Deployer/{}` (`*` matches anything)",
                        principal.value.escape_debug(),
                        name.value
                    ),
                ));
            } else if principals.iter().any(|known| known == arn) {
                problems.push(problem(principal, format!("`{arn}` is listed twice")));
            } else {
                principals.push(arn.to_owned());
            }
        }
        aws_principals.insert(name.value.clone(), principals);
    }

    let mut approval_roles = BTreeMap::new();
    for (role, members) in &raw.roles {
        if let Err(message) = names::check(NameKind::Role, &role.value) {
            problems.push(problem(role, message));
        }
        if Role::ALL.iter().any(|base| base.as_str() == role.value) {
            problems.push(problem(
                role,
                format!(
                    "`{}` is a base role; name approval roles after what they approve (e.g. `release-approver`)",
                    role.value
                ),
            ));
        }
        if members.is_empty() {
            problems.push(problem(
                role,
                format!(
                    "approval role `{}` has no members, so no gate asking for it could ever pass",
                    role.value
                ),
            ));
        }
        let members = member_set(members, Role::Approver, &users, &mut problems);
        approval_roles.insert(role.value.clone(), members);
    }

    let mut environments = BTreeMap::new();
    for (name, environment) in &raw.environments {
        if let Err(message) = names::check(NameKind::Environment, &name.value) {
            problems.push(problem(name, message));
        }
        let operators = environment
            .operators
            .as_ref()
            .map(|list| member_set(list, Role::Operator, &users, &mut problems));
        let auditors = environment
            .auditors
            .as_ref()
            .map(|list| member_set(list, Role::Auditor, &users, &mut problems));
        if let Some(role) = &environment.approver_role
            && !approval_roles.contains_key(&role.value)
        {
            problems.push(problem(
                role,
                format!(
                    "no approval role `{}` under `roles:`{}",
                    role.value,
                    known(approval_roles.keys())
                ),
            ));
        }
        environments.insert(
            name.value.clone(),
            EnvironmentPolicy {
                operators,
                approver_role: environment
                    .approver_role
                    .as_ref()
                    .map(|role| role.value.clone()),
                auditors,
            },
        );
    }

    if problems.is_empty() {
        Ok(Access {
            users,
            aws_principals,
            environments,
            approval_roles,
        })
    } else {
        Err(problems)
    }
}

/// A list of people who must all be users holding `needed`.
fn member_set(
    list: &[Spanned<String>],
    needed: Role,
    users: &BTreeMap<String, BTreeSet<Role>>,
    problems: &mut Vec<Problem>,
) -> BTreeSet<String> {
    let mut members = BTreeSet::new();
    for member in list {
        let message = match users.get(&member.value) {
            _ if members.contains(&member.value) => {
                Some(format!("`{}` is listed twice", member.value))
            }
            None => Some(format!(
                "`{}` is not a user; name them under `users:` first",
                member.value.escape_debug()
            )),
            Some(roles) if !roles.contains(&needed) => Some(format!(
                "`{}` is listed here but does not hold the {needed} role",
                member.value
            )),
            Some(_) => None,
        };
        if let Some(message) = message {
            problems.push(problem(member, message));
        }
        members.insert(member.value.clone());
    }
    members
}

fn role_list() -> String {
    Role::ALL
        .iter()
        .map(|role| format!("`{role}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn known<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<String> = names.map(|name| format!("`{name}`")).collect();
    if names.is_empty() {
        " (none are defined)".to_string()
    } else {
        format!(" (defined: {})", names.join(", "))
    }
}

/// Line and column of a byte offset, for inputs that are not valid text.
fn byte_position(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    (line, offset - line_start + 1)
}
