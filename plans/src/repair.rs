//! Type errors reported together: when the typed parse stops at a value of
//! the wrong type, that value is reported, replaced in a working copy of the
//! text by a placeholder of the right type, and the parse runs again, until
//! it succeeds or meets an error no placeholder can stand in for.
//!
//! The typed parse itself stops at its first error (serde has no way to go
//! on), yet a plan with a wrong type, an unknown target and a bad duration
//! must get all three back at once. Repairing the copy keeps the wire types
//! plain (no "maybe a number" wrappers through the validator) and costs
//! nothing on the success path, where the first parse is the only one.
//!
//! Placeholders are padded to the width of what they replace, so every
//! later position in the copy is the same as in the file; only wrapping a
//! single value in `[…]` widens its line, and that shift is undone when a
//! later error on the same line is located.

use serde_saphyr::Error;

use crate::diagnostic::{Diagnostic, Location};
use crate::spans::{SpanIndex, parent_path};

/// At most this many values are repaired: a file with more type errors is
/// not a plan with a few mistakes, and each repair costs one more parse.
pub const MAX_REPAIRS: usize = 32;

/// The working copy and what was reported while repairing it.
#[derive(Debug)]
pub struct Repairs {
    text: String,
    /// (line, column after the edit, columns added): undoes wrap shifts.
    shifts: Vec<(usize, usize, usize)>,
    /// Paths whose values are placeholders: the validator's findings about
    /// them are about the placeholder, not the file, and are dropped.
    repaired_paths: Vec<String>,
    /// The copy's position index, kept while repairs leave positions as
    /// they were (padded replacements) and rebuilt after a wrap.
    spans: Option<SpanIndex>,
    pub diagnostics: Vec<Diagnostic>,
}

/// The kind of value a field wanted, read from the parser's error.
#[derive(Clone, Copy, PartialEq)]
enum Wanted {
    WholeNumber,
    Number,
    Boolean,
    List,
}

impl Repairs {
    pub fn new(text: &str) -> Repairs {
        Repairs {
            text: text.to_string(),
            shifts: Vec::new(),
            repaired_paths: Vec::new(),
            spans: None,
            diagnostics: Vec::new(),
        }
    }

    /// The working copy, to parse again.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether a validator finding at `path` is about a placeholder.
    pub fn is_repaired(&self, path: &str) -> bool {
        self.repaired_paths.iter().any(|repaired| {
            path == repaired
                || path
                    .strip_prefix(repaired.as_str())
                    .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
        })
    }

    /// Where a position in the working copy is in the file.
    pub fn original(&self, location: Location) -> Location {
        let shift: usize = self
            .shifts
            .iter()
            .filter(|(line, after, _)| *line == location.line && *after <= location.column)
            .map(|(_, _, added)| added)
            .sum();
        Location {
            column: location.column.saturating_sub(shift).max(1),
            ..location
        }
    }

    /// Reports the type error `error` and repairs its value in the working
    /// copy. Returns false (reporting nothing) when the error is not a
    /// wrong-typed value this module can stand in for.
    pub fn repair(&mut self, error: &Error) -> bool {
        if self.diagnostics.len() >= MAX_REPAIRS {
            return false;
        }
        let Some(wanted) = wanted(innermost(error)) else {
            return false;
        };
        let Some(at) = error.location().filter(|l| l.line() > 0).map(|l| Location {
            line: l.line() as usize,
            column: l.column().max(1) as usize,
            width: 1,
        }) else {
            return false;
        };
        let spans = self
            .spans
            .get_or_insert_with(|| SpanIndex::build(&self.text, crate::load::MAX_DEPTH));
        let Some(path) = spans.path_at(at).map(str::to_string) else {
            return false;
        };
        // Only a scalar written on one line, exactly where the error is, is
        // replaced: anything else (an alias, a block, a collection) might
        // not be what the error is about.
        let Some(value) = spans
            .locate(&path)
            .filter(|value| (value.line, value.column) == (at.line, at.column))
        else {
            return false;
        };
        let Some(start) = byte_offset(&self.text, value.line, value.column) else {
            return false;
        };
        let Some(found) = self.text.get(start..).and_then(|rest| {
            let end = rest
                .char_indices()
                .nth(value.width)
                .map_or(rest.len(), |(i, _)| i);
            let found = &rest[..end];
            let plain_scalar =
                !found.contains('\n') && !found.starts_with(['{', '[', '&', '*', '!', '|', '>']);
            plain_scalar.then(|| found.to_string())
        }) else {
            return false;
        };
        if self.repaired_paths.contains(&path) {
            // The placeholder itself was refused: stop rather than loop.
            return false;
        }
        // What stands in for the value: a placeholder of the wanted type
        // padded to its width, or the value wrapped in a flow list.
        let pad = |placeholder: &str| format!("{placeholder:<width$}", width = found.len());
        let replacement = match wanted {
            Wanted::WholeNumber | Wanted::Number => pad("0"),
            // The narrower placeholder where it fits, so fewer lines shift.
            Wanted::Boolean if found.len() < 5 => pad("true"),
            Wanted::Boolean => pad("false"),
            Wanted::List => format!("[{found}]"),
        };
        let added = replacement.len().saturating_sub(found.len());
        if added > 0 {
            self.spans = None;
            self.shifts
                .push((value.line, value.column + found.chars().count(), added));
        }
        self.text
            .replace_range(start..start + found.len(), &replacement);
        let location = self.original(value);
        self.diagnostics
            .push(type_diagnostic(&path, &found, wanted).at(location));
        self.repaired_paths.push(path);
        true
    }
}

fn innermost(error: &Error) -> &Error {
    let mut inner = error;
    while let Error::WithSnippet { error, .. } | Error::AliasError { error, .. } = inner {
        inner = error;
    }
    inner
}

/// What the field wanted, when the error is a value of the wrong type.
fn wanted(error: &Error) -> Option<Wanted> {
    let from_type = |ty: &str| {
        let ty = ty.to_ascii_lowercase();
        if [
            "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "integer",
        ]
        .iter()
        .any(|name| ty == *name || ty.contains(&format!("{name} ")) || ty.ends_with(name))
        {
            Some(Wanted::WholeNumber)
        } else if ty.contains("f64") || ty.contains("f32") || ty.contains("float") {
            Some(Wanted::Number)
        } else if ty.contains("bool") {
            Some(Wanted::Boolean)
        } else if ty.contains("sequence") {
            Some(Wanted::List)
        } else {
            None
        }
    };
    match error {
        Error::InvalidScalar { ty, .. } => from_type(ty),
        Error::InvalidBooleanStrict { .. } => Some(Wanted::Boolean),
        Error::Unexpected { expected, .. } if expected.contains("sequence") => Some(Wanted::List),
        Error::SerdeInvalidType {
            unexpected,
            expected,
            ..
        }
        | Error::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => {
            let wanted = from_type(expected)?;
            // Only a scalar found where a scalar (or a list of them) was
            // wanted: a mapping in the wrong place is not a typo in a value.
            let scalar_found = ["string", "integer", "float", "boolean", "char"]
                .iter()
                .any(|kind| unexpected.starts_with(kind));
            scalar_found.then_some(wanted)
        }
        _ => None,
    }
}

/// The message for a value of the wrong type, in the plan's words.
fn type_diagnostic(path: &str, found: &str, wanted: Wanted) -> Diagnostic {
    let field = path.rsplit(['.', '[']).next().unwrap_or(path);
    let shown = found.trim();
    let percentage = matches!(field, "setWeight");
    match wanted {
        Wanted::WholeNumber if percentage => Diagnostic::error(
            path,
            format!("expected a whole percentage 0–100, found `{shown}`"),
        )
        .with_hint(format!(
            "write a number without quotes or decimals, e.g. `{field}: 50`"
        )),
        Wanted::WholeNumber => {
            Diagnostic::error(path, format!("expected a whole number, found `{shown}`")).with_hint(
                format!("write a number without quotes or decimals, e.g. `{field}: 3`"),
            )
        }
        Wanted::Number => Diagnostic::error(path, format!("expected a number, found `{shown}`"))
            .with_hint(format!(
                "write a number without quotes, e.g. `{field}: 99.5`"
            )),
        Wanted::Boolean => {
            Diagnostic::error(path, format!("expected `true` or `false`, found `{shown}`"))
                .with_hint("booleans are `true` or `false` (not yes/no/on/off)")
        }
        Wanted::List => {
            let key = if field.ends_with(']') {
                parent_path(path)
            } else {
                field
            };
            Diagnostic::error(
                path,
                format!("`{key}` is a list, but a single value was written"),
            )
            .with_hint(format!("write a list: `{key}: [{shown}]`"))
        }
    }
}

/// The byte offset of a 1-based line and (character) column.
fn byte_offset(text: &str, line: usize, column: usize) -> Option<usize> {
    let line_start = if line == 1 {
        0
    } else {
        text.match_indices('\n').nth(line - 2)?.0 + 1
    };
    let rest = &text[line_start..];
    let within = rest
        .char_indices()
        .nth(column - 1)
        .map(|(i, _)| i)
        .or((column - 1 == rest.chars().count()).then_some(rest.len()))?;
    Some(line_start + within)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_count_characters_not_bytes() {
        let text = "a: é\nb: 1\n";
        assert_eq!(byte_offset(text, 2, 4), Some(text.find('1').unwrap()));
        assert_eq!(byte_offset(text, 1, 4), Some(3));
    }

    #[test]
    fn only_placeholder_paths_and_their_children_count_as_repaired() {
        let mut repairs = Repairs::new("");
        repairs.repaired_paths.push("stages[0].after".into());
        assert!(repairs.is_repaired("stages[0].after"));
        assert!(repairs.is_repaired("stages[0].after[0]"));
        assert!(!repairs.is_repaired("stages[0].afterwards"));
        assert!(!repairs.is_repaired("stages[1].after"));
    }

    #[test]
    fn wrap_shifts_are_undone_only_after_the_edit() {
        let mut repairs = Repairs::new("");
        repairs.shifts.push((3, 12, 2));
        let at = |column| Location {
            line: 3,
            column,
            width: 1,
        };
        assert_eq!(repairs.original(at(14)).column, 12);
        assert_eq!(repairs.original(at(5)).column, 5);
    }
}
