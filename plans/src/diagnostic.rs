//! Diagnostics: what is wrong, where (file:line:column and field path), and
//! how to fix it, rendered like a compiler message with the offending line
//! and a caret.
//!
//! Rendering is ours rather than a report crate's so that the text is stable
//! enough to snapshot and identical on a terminal and in CI logs (colour is
//! the only difference, and it is off unless asked for).

use std::fmt::Write as _;

use serde::Serialize;

/// How bad a finding is. Any `Error` rejects the whole plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A 1-based line and column, plus how many columns to underline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Location {
    pub line: usize,
    pub column: usize,
    #[serde(skip)]
    pub width: usize,
}

/// One finding about a plan file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Field path such as `stages[2].canary.steps[1].setWeight`; empty for
    /// problems with the document as a whole.
    pub path: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

impl Diagnostic {
    pub fn error(path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            path: path.into(),
            message: message.into(),
            hint: None,
            location: None,
        }
    }

    pub fn warning(path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(path, message)
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn at(mut self, location: Location) -> Self {
        self.location = Some(location);
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Renders diagnostics against the text they refer to.
pub struct Renderer<'a> {
    pub file_name: &'a str,
    /// The file's text when it could be decoded; snippets are skipped otherwise.
    pub source: Option<&'a str>,
    pub color: bool,
}

const RED: &str = "\x1b[1;31m";
const YELLOW: &str = "\x1b[1;33m";
const BLUE: &str = "\x1b[1;34m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

impl Renderer<'_> {
    fn paint(&self, style: &str, text: &str) -> String {
        if self.color {
            format!("{style}{text}{RESET}")
        } else {
            text.to_string()
        }
    }

    /// One diagnostic, ending with a newline.
    pub fn render(&self, diagnostic: &Diagnostic) -> String {
        let mut out = String::new();
        let (label, style) = match diagnostic.severity {
            Severity::Error => ("error", RED),
            Severity::Warning => ("warning", YELLOW),
        };
        let headline = if diagnostic.path.is_empty() {
            diagnostic.message.clone()
        } else {
            format!("{}: {}", diagnostic.path, diagnostic.message)
        };
        let _ = writeln!(
            out,
            "{}{}",
            self.paint(style, &format!("{label}: ")),
            self.paint(BOLD, &headline)
        );
        let line_text = diagnostic.location.and_then(|location| {
            self.source
                .and_then(|source| source.lines().nth(location.line.saturating_sub(1)))
                .map(|text| (location, text))
        });
        let pad = " ".repeat(
            diagnostic
                .location
                .map_or(1, |location| location.line.to_string().len()),
        );
        let _ = match diagnostic.location {
            Some(location) => writeln!(
                out,
                "{pad}{} {}:{}:{}",
                self.paint(BLUE, "-->"),
                self.file_name,
                location.line,
                location.column
            ),
            None => writeln!(out, "{pad}{} {}", self.paint(BLUE, "-->"), self.file_name),
        };
        if let Some((location, text)) = line_text {
            let bar = self.paint(BLUE, "|");
            let _ = writeln!(out, "{pad} {bar}");
            let (shown, caret_start) =
                snippet_window(&sanitize_line(text), location.column.saturating_sub(1));
            let _ = writeln!(
                out,
                "{} {bar} {}",
                self.paint(BLUE, &location.line.to_string()),
                shown
            );
            let shown_len = shown.chars().count();
            let caret_start = caret_start.min(shown_len);
            let width = location
                .width
                .max(1)
                .min(shown_len.saturating_sub(caret_start).max(1));
            let _ = writeln!(
                out,
                "{pad} {bar} {}{}",
                " ".repeat(caret_start),
                self.paint(style, &"^".repeat(width))
            );
        }
        if let Some(hint) = &diagnostic.hint {
            let _ = writeln!(out, "{pad} {} hint: {hint}", self.paint(BLUE, "="));
        }
        out
    }

    /// Every diagnostic, a blank line between them, then a summary line.
    pub fn render_all(&self, diagnostics: &[Diagnostic]) -> String {
        let mut out = String::new();
        for diagnostic in diagnostics {
            out.push_str(&self.render(diagnostic));
            out.push('\n');
        }
        let errors = diagnostics.iter().filter(|d| d.is_error()).count();
        let warnings = diagnostics.len() - errors;
        if errors > 0 {
            let _ = writeln!(
                out,
                "{}: {} rejected: {} error{}{}; nothing was changed",
                self.paint(RED, "error"),
                self.file_name,
                errors,
                plural(errors),
                if warnings > 0 {
                    format!(", {warnings} warning{}", plural(warnings))
                } else {
                    String::new()
                }
            );
        }
        out
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Tabs become spaces (so carets line up) and control characters become
/// `?`, so that a hostile plan cannot drive the terminal through our output.
fn sanitize_line(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' => ' ',
            c if c.is_control() => '?',
            c => c,
        })
        .collect()
}

/// Longest snippet line shown; longer lines (minified or generated files)
/// are cut to a window around the column of interest.
const MAX_SNIPPET_CHARS: usize = 120;

/// The part of `line` to show and where `column` (0-based) falls in it.
fn snippet_window(line: &str, column: usize) -> (String, usize) {
    let length = line.chars().count();
    if length <= MAX_SNIPPET_CHARS {
        return (line.to_string(), column);
    }
    let start = column.saturating_sub(MAX_SNIPPET_CHARS / 3).min(length);
    let end = (start + MAX_SNIPPET_CHARS).min(length);
    let mut shown: String = line.chars().skip(start).take(end - start).collect();
    let mut caret = column - start;
    if start > 0 {
        shown.insert(0, '…');
        caret += 1;
    }
    if end < length {
        shown.push('…');
    }
    (shown, caret)
}

/// Levenshtein distance, for "did you mean" hints.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b_chars: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b_chars.len()).collect();
    let mut current = vec![0; b_chars.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b_chars.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b_chars.len()]
}

/// The closest candidate to `word` if it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word_lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|candidate| {
            (
                edit_distance(&word_lower, &candidate.to_ascii_lowercase()),
                candidate,
            )
        })
        .filter(|(distance, candidate)| {
            *distance <= (candidate.chars().count().max(word.chars().count()) / 3).max(1)
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            suggest("setWieght", ["setWeight", "pause", "analysis"]),
            Some("setWeight")
        );
        assert_eq!(suggest("apii", ["api", "worker"]), Some("api"));
        assert_eq!(suggest("zzzzzz", ["api", "worker"]), None);
    }

    #[test]
    fn renders_snippet_with_caret_under_the_value() {
        let source = "a: 1\nweight: 150\n";
        let diagnostic = Diagnostic::error("weight", "must be at most 100")
            .at(Location {
                line: 2,
                column: 9,
                width: 3,
            })
            .with_hint("use a percentage");
        let renderer = Renderer {
            file_name: "p.yaml",
            source: Some(source),
            color: false,
        };
        assert_eq!(
            renderer.render(&diagnostic),
            "error: weight: must be at most 100\n --> p.yaml:2:9\n  |\n2 | weight: 150\n  |         ^^^\n  = hint: use a percentage\n"
        );
    }

    #[test]
    fn long_lines_are_cut_around_the_column() {
        let line = "x".repeat(1000);
        let (shown, caret) = snippet_window(&line, 500);
        assert_eq!(shown.chars().count(), MAX_SNIPPET_CHARS + 2);
        assert_eq!(caret, MAX_SNIPPET_CHARS / 3 + 1);
        assert_eq!(snippet_window("short", 2), ("short".to_string(), 2));
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        assert_eq!(sanitize_line("a\x1b[31mb\tc"), "a?[31mb c");
    }
}
