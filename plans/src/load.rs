//! Bytes → [`RawPlan`]: size, encoding and document checks, then the typed
//! YAML parse under tight resource limits.
//!
//! Everything here is defensive: plan files come from people in a hurry and
//! from git, so any input must end in either a plan or diagnostics, quickly,
//! without a panic and without reading past the limits below.

use serde_saphyr::{Budget, MessageFormatter, UserMessageFormatter};

use crate::diagnostic::{Diagnostic, Location, suggest};
use crate::raw::{API_VERSION, KIND, RawPlan};
use crate::repair::Repairs;
use crate::spans::{RootKind, SpanIndex};

/// Plan files larger than this are refused unread: a real plan is a few
/// kilobytes and a 5,000-stage plan about 1 MiB.
pub const MAX_PLAN_BYTES: usize = 8 * 1024 * 1024;
/// Deepest nesting a plan may use; real plans need about eight levels.
pub const MAX_DEPTH: usize = 32;

/// Events that aliases may replay in one plan, all aliases together.
pub const MAX_REPLAYED_EVENTS: usize = 100_000;

/// A plan file's text once it has been decoded.
#[derive(Debug)]
pub struct Parsed {
    pub plan: RawPlan,
    /// Set when values of the wrong type were reported and stood in for:
    /// the plan is then only good for finding the remaining problems.
    pub repairs: Option<Repairs>,
}

/// The outcome of a failed load: the decoded text when there was one (for
/// snippets) and what was wrong.
#[derive(Debug)]
pub struct LoadFailure {
    pub text: Option<String>,
    pub diagnostics: Vec<Diagnostic>,
}

fn fail(text: Option<String>, diagnostic: Diagnostic) -> LoadFailure {
    LoadFailure {
        text,
        diagnostics: vec![diagnostic],
    }
}

/// Decodes and parses a plan file's bytes.
pub fn parse(bytes: &[u8]) -> Result<(String, Parsed), LoadFailure> {
    if bytes.len() > MAX_PLAN_BYTES {
        return Err(fail(
            None,
            Diagnostic::error(
                "",
                format!(
                    "plan file is {} bytes; plans larger than {} MiB are refused",
                    bytes.len(),
                    MAX_PLAN_BYTES / (1024 * 1024)
                ),
            )
            .with_hint("split the release into several plans"),
        ));
    }
    if let Some(offset) = bytes.iter().position(|b| *b == 0) {
        return Err(fail(
            None,
            Diagnostic::error(
                "",
                format!("this is a binary file, not a YAML plan (NUL byte at offset {offset})"),
            )
            .at(byte_location(bytes, offset)),
        ));
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(error) => {
            let offset = error.valid_up_to();
            return Err(fail(
                None,
                Diagnostic::error(
                    "",
                    format!("plan file is not valid UTF-8 (invalid byte at offset {offset})"),
                )
                .at(byte_location(bytes, offset))
                .with_hint("save the file as UTF-8"),
            ));
        }
    };
    let content = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if content
        .lines()
        .all(|line| line.trim().is_empty() || line.trim_start().starts_with('#'))
    {
        return Err(fail(
            Some(text.clone()),
            Diagnostic::error("", "plan file is empty")
                .with_hint("start from `deployctl schema` or examples/quickstart.yaml"),
        ));
    }

    // The typed parse comes first: on the success path it is the only
    // parse (the position index is built later, and only if there is
    // something to report). A value of the wrong type is reported and
    // stood in for, and the parse runs again, so that every type error
    // (and then every validation error) is reported at once.
    let mut repairs = Repairs::new(&text);
    let result = loop {
        match serde_saphyr::from_str_with_options::<RawPlan>(repairs.text(), options()) {
            Err(error) if repairs.repair(&error) => continue,
            result => break result,
        }
    };
    match result {
        Ok(plan) if plan.api_version == API_VERSION && plan.kind == KIND => Ok((
            text,
            Parsed {
                plan,
                repairs: (!repairs.diagnostics.is_empty()).then_some(repairs),
            },
        )),
        result => {
            let spans = SpanIndex::build(&text, MAX_DEPTH);
            if let Some(diagnostic) = document_diagnostic(&spans) {
                return Err(fail(Some(text), diagnostic));
            }
            let mut diagnostics = std::mem::take(&mut repairs.diagnostics);
            diagnostics.push(match result {
                Err(error) => {
                    // Located in the working copy, which differs from the
                    // file only where values were repaired.
                    let copy_spans = SpanIndex::build(repairs.text(), MAX_DEPTH);
                    let mut diagnostic = yaml_error_diagnostic(&error, &copy_spans, repairs.text());
                    diagnostic.location = diagnostic.location.map(|at| repairs.original(at));
                    diagnostic
                }
                Ok(_) => Diagnostic::error("", "plan has a wrong apiVersion or kind"),
            });
            Err(LoadFailure {
                text: Some(text),
                diagnostics,
            })
        }
    }
}

/// Problems with the document as a whole, which explain a failed parse
/// better than the parser's own message: too deep, not a mapping, or not a
/// deployctl plan at all.
fn document_diagnostic(spans: &SpanIndex) -> Option<Diagnostic> {
    if let Some(location) = spans.too_deep() {
        return Some(
            Diagnostic::error(
                "",
                format!("the document nests deeper than {MAX_DEPTH} levels"),
            )
            .at(location)
            .with_hint("a plan needs about eight levels; this looks generated or malicious"),
        );
    }
    match spans.root() {
        Some(RootKind::Mapping) | None => check_document_kind(spans),
        Some(other) => {
            let found = if other == RootKind::Sequence {
                "a list"
            } else {
                "a single value"
            };
            Some(
                Diagnostic::error(
                    "",
                    format!(
                        "a plan is a YAML mapping (apiVersion, kind, metadata, …) but this document is {found}"
                    ),
                )
                .at(spans.locate("").unwrap_or(Location {
                    line: 1,
                    column: 1,
                    width: 1,
                }))
                .with_hint("start from `deployctl schema` or examples/quickstart.yaml"),
            )
        }
    }
}

fn options() -> serde_saphyr::Options {
    let mut budget = Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_nodes = 2_000_000;
    budget.max_events = 4_000_000;
    budget.max_aliases = 10_000;
    budget.max_anchors = 10_000;
    budget.max_total_scalar_bytes = MAX_PLAN_BYTES;
    // Anchors in a real plan share a gate or a step list: hundreds of
    // replayed events, not millions. The default (a million) let a small
    // alias bomb that type-checks cost seconds before it was refused.
    let alias_limits = serde_saphyr::alias_limits! {
        max_total_replayed_events: MAX_REPLAYED_EVENTS,
        max_replay_stack_depth: 16,
    };
    serde_saphyr::options! {
        alias_limits: alias_limits,
        strict_booleans: true,
        leading_zero_numbers_as_strings: true,
        budget: Some(budget),
    }
}

/// When the typed parse fails, `apiVersion` and `kind` are looked at
/// first, so that a Kubernetes manifest or an Argo Rollout passed by
/// mistake is named as such instead of drowning in unknown-field errors.
fn check_document_kind(spans: &SpanIndex) -> Option<Diagnostic> {
    let located = |path: &str, diagnostic: Diagnostic| match spans.locate(path) {
        Some(location) => diagnostic.at(location),
        None => diagnostic,
    };
    if let Some(api_version) = spans.top_level_scalar("apiVersion")
        && api_version != API_VERSION
    {
        let mut diagnostic = Diagnostic::error(
            "apiVersion",
            format!("`{api_version}` is not a deployctl plan version; expected `{API_VERSION}`"),
        );
        diagnostic = if api_version.starts_with("deployctl.io/") {
            diagnostic.with_hint(format!(
                "this deployctl reads `{API_VERSION}` plans; upgrade deployctl or convert the plan"
            ))
        } else {
            diagnostic.with_hint("this file does not look like a deployctl plan")
        };
        return Some(located("apiVersion", diagnostic));
    }
    if let Some(kind) = spans.top_level_scalar("kind")
        && kind != KIND
    {
        return Some(located(
            "kind",
            Diagnostic::error(
                "kind",
                format!("`{kind}` is not a deployctl document kind; expected `{KIND}`"),
            )
            .with_hint("deployctl plans have `kind: Plan`"),
        ));
    }
    None
}

/// Turns a YAML/serde error into a diagnostic with a field path and, for
/// unknown fields, a "did you mean" hint.
fn yaml_error_diagnostic(error: &serde_saphyr::Error, spans: &SpanIndex, text: &str) -> Diagnostic {
    let mut inner = error;
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = inner
    {
        inner = error;
    }
    let message: String = UserMessageFormatter
        .format_message(inner)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let location = error.location().and_then(|location| {
        (location.line() > 0).then(|| Location {
            line: location.line() as usize,
            column: location.column().max(1) as usize,
            width: 1,
        })
    });
    let tab = message
        .contains("tab")
        .then(|| location.and_then(|at| tab_near(text, at)))
        .flatten();
    let location = tab.or(location);
    let mut path = location
        .and_then(|location| spans.path_at(location))
        .unwrap_or_default()
        .to_string();
    let mut location = location;
    // A missing field is reported at a key of the mapping that lacks it
    // (or at the mapping itself): name the missing field, under that
    // mapping, and point at the mapping.
    if let Some(field) = missing_field(&message)
        && let Some(at) = location
    {
        let mapping = if spans.is_key_at(at) {
            crate::spans::parent_path(&path).to_string()
        } else {
            path.clone()
        };
        location = spans.locate(&mapping).or(location);
        path = if mapping.is_empty() {
            field
        } else {
            format!("{mapping}.{field}")
        };
    }
    let is_syntax_error = matches!(
        inner,
        serde_saphyr::Error::ExternalMessage { source, .. }
            if matches!(**source, serde_saphyr::ExternalMessageSource::Parser(_))
    );
    // Whole-document problems are not about the field where they surfaced.
    let (path, shown) = match inner {
        serde_saphyr::Error::Budget { breach, .. } => (
            String::new(),
            format!(
                "the document is too large or complex once YAML anchors and aliases are expanded (budget exceeded: {breach:?})"
            ),
        ),
        serde_saphyr::Error::AliasReplayLimitExceeded { .. }
        | serde_saphyr::Error::AliasExpansionLimitExceeded { .. }
        | serde_saphyr::Error::AliasReplayStackDepthExceeded { .. }
        | serde_saphyr::Error::AliasReplayCounterOverflow { .. } => (
            String::new(),
            format!(
                "the document is too large or complex once YAML anchors and aliases are expanded (aliases may replay at most {MAX_REPLAYED_EVENTS} events, nested at most 16 deep)"
            ),
        ),
        serde_saphyr::Error::MultipleDocuments { .. } => (
            String::new(),
            "a plan file holds one YAML document, but this one has several (`---` separators)"
                .to_string(),
        ),
        _ if is_syntax_error => (path, format!("YAML syntax error: {message}")),
        _ => (path, message.clone()),
    };
    let mut diagnostic = Diagnostic::error(path, shown);
    if let Some(location) = location {
        diagnostic = diagnostic.at(location);
    }
    if let Some((field, expected)) = parse_unknown_field(&message) {
        diagnostic.location = diagnostic.location.map(|location| Location {
            width: field.chars().count(),
            ..location
        });
        diagnostic = match suggest(&field, expected.iter().map(String::as_str)) {
            Some(best) => diagnostic.with_hint(format!("did you mean `{best}`?")),
            None if !expected.is_empty() => {
                diagnostic.with_hint(format!("allowed here: {}", expected.join(", ")))
            }
            None => diagnostic,
        };
    } else if tab.is_some() {
        diagnostic =
            diagnostic.with_hint("YAML indents with spaces only; replace the tab with spaces");
    } else if message.contains("duplicate mapping key") {
        diagnostic = diagnostic.with_hint("each key may appear once; remove or merge the repeats");
    } else if matches!(
        inner,
        serde_saphyr::Error::Budget { .. }
            | serde_saphyr::Error::AliasReplayLimitExceeded { .. }
            | serde_saphyr::Error::AliasExpansionLimitExceeded { .. }
            | serde_saphyr::Error::AliasReplayStackDepthExceeded { .. }
    ) || message.contains("depth")
    {
        diagnostic = diagnostic.with_hint(format!(
            "plans are limited to {MAX_DEPTH} levels of nesting and bounded alias expansion"
        ));
    } else if message.to_ascii_lowercase().contains("bool") {
        diagnostic = diagnostic.with_hint("booleans are `true` or `false` (not yes/no/on/off)");
    }
    diagnostic
}

/// The tab a "found a tab" error is about. The parser reports such an
/// error where the scalar before the tab began, often on the line before,
/// so the first tab from the start of that line (within two more lines)
/// is where the reader must look.
fn tab_near(text: &str, at: Location) -> Option<Location> {
    let line_start = if at.line == 1 {
        0
    } else {
        text.match_indices('\n').nth(at.line - 2)?.0 + 1
    };
    let offset = line_start + text.get(line_start..)?.find('\t')?;
    let location = byte_location(text.as_bytes(), offset);
    (location.line <= at.line + 2).then_some(Location {
        // Columns count characters, as everywhere else.
        column: text[..offset]
            .rsplit('\n')
            .next()
            .map_or(0, |l| l.chars().count())
            + 1,
        ..location
    })
}

/// `missing field `x`` → "x".
fn missing_field(message: &str) -> Option<String> {
    let rest = message.split("missing field `").nth(1)?;
    let (field, _) = rest.split_once('`')?;
    Some(field.to_string())
}

/// `unknown field `x`, expected one of `a`, `b`` → ("x", ["a", "b"]).
fn parse_unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.split("unknown field `").nth(1)?;
    let (field, after) = rest.split_once('`')?;
    let expected = after
        .split_once("expected")
        .map(|(_, list)| {
            list.split(|c: char| c == ',' || c.is_whitespace())
                .map(|item| item.trim_matches('`').trim())
                .filter(|item| !item.is_empty() && *item != "one" && *item != "of")
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    Some((field.to_string(), expected))
}

/// Line and column of a byte offset, for inputs that are not valid text.
fn byte_location(bytes: &[u8], offset: usize) -> Location {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |p| p + 1);
    Location {
        line,
        column: offset - line_start + 1,
        width: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_field_messages_are_split() {
        let (field, expected) =
            parse_unknown_field("unknown field `wieght`, expected one of `name`, `weight`")
                .unwrap();
        assert_eq!(field, "wieght");
        assert_eq!(expected, ["name", "weight"]);
    }

    #[test]
    fn byte_locations_count_lines_and_columns() {
        let location = byte_location(b"ab\ncd\xff", 5);
        assert_eq!((location.line, location.column), (2, 3));
    }
}
