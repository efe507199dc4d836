//! The one reporter: how a command that cannot do what it was asked says
//! so and which exit code it ends with (`exit.rs`, the contract README.md
//! documents). Commands return its codes instead of printing and choosing
//! codes themselves, so the words and the numbers cannot drift apart.
//!
//! With `--output json` a script reads stdout, so a command that ends
//! non-zero without having printed its own document prints one there
//! (`finish`): a versioned `CommandError` with the exit code, the error
//! messages and the plan diagnostics, the same words as the human text,
//! which still goes to stderr.

use std::fmt::Display;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use deployctl_plan::{Diagnostic, Severity};
use serde::Serialize;

use crate::exit;

/// Whether anything was written on stdout (the `out!`/`outln!` macros
/// and `print_json` say so), so a failing command prints at most one
/// document there.
static WROTE_STDOUT: AtomicBool = AtomicBool::new(false);

/// What went wrong, in the order it was said.
static SAID: Mutex<Said> = Mutex::new(Said {
    errors: Vec::new(),
    diagnostics: Vec::new(),
});

struct Said {
    errors: Vec<String>,
    diagnostics: Vec<DiagnosticView>,
}

/// A plan diagnostic as the JSON document carries it: where (file, line,
/// column, field path), what, and the fix.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiagnosticView {
    pub severity: &'static str,
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    pub path: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl DiagnosticView {
    pub fn new(file: &str, diagnostic: &Diagnostic) -> DiagnosticView {
        DiagnosticView {
            severity: match diagnostic.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            },
            file: file.to_string(),
            line: diagnostic.location.as_ref().map(|l| l.line),
            column: diagnostic.location.as_ref().map(|l| l.column),
            path: diagnostic.path.clone(),
            message: diagnostic.message.clone(),
            hint: diagnostic.hint.clone(),
        }
    }
}

/// `CommandError` (apiVersion deployctl.io/v1): what a failing command
/// prints on stdout with `--output json` when it printed nothing else.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CommandError<'a> {
    api_version: &'static str,
    kind: &'static str,
    exit_code: u8,
    /// Refused before anything moved (exit 2): nothing was touched.
    refused: bool,
    message: String,
    errors: &'a [String],
    diagnostics: &'a [DiagnosticView],
}

fn said() -> std::sync::MutexGuard<'static, Said> {
    SAID.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Notes that stdout carries output of the command's own.
pub fn wrote_stdout() {
    WROTE_STDOUT.store(true, Ordering::Relaxed);
}

/// Keeps `diagnostics` of `file` for the JSON document (the caller
/// rendered them for humans on stderr).
pub fn plan_diagnostics(file: &str, diagnostics: &[Diagnostic]) {
    said()
        .diagnostics
        .extend(diagnostics.iter().map(|d| DiagnosticView::new(file, d)));
}

fn say(message: String) {
    eprintln!("error: {message}");
    said().errors.push(message);
}

/// Refused before anything moved: invalid input, a target another run
/// holds, a failed preflight. Prints `error: …` and gives exit code 2.
#[must_use]
pub fn refused(message: impl Display) -> u8 {
    say(message.to_string());
    exit::INVALID_INPUT
}

/// The command failed (or its run failed cleanly). Prints `error: …` and
/// gives exit code 1.
#[must_use]
pub fn failed(message: impl Display) -> u8 {
    say(message.to_string());
    exit::FAILED
}

/// The end of every command: with `--output json`, a command that ends
/// non-zero without a document of its own prints a `CommandError` on
/// stdout. Returns `code`.
pub fn finish(code: u8, json: bool) -> u8 {
    if json && code != exit::OK && !WROTE_STDOUT.load(Ordering::Relaxed) {
        let said = said();
        let message = said
            .errors
            .first()
            .cloned()
            .or_else(|| {
                let errors = said
                    .diagnostics
                    .iter()
                    .filter(|d| d.severity == "error")
                    .count();
                (errors > 0).then(|| {
                    format!(
                        "the plan does not validate: {errors} error{}",
                        if errors == 1 { "" } else { "s" }
                    )
                })
            })
            .unwrap_or_else(|| format!("exit code {code}; stderr says why"));
        let document = CommandError {
            api_version: "deployctl.io/v1",
            kind: "CommandError",
            exit_code: code,
            refused: code == exit::INVALID_INPUT,
            message,
            errors: &said.errors,
            diagnostics: &said.diagnostics,
        };
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        let _ = serde_json::to_writer_pretty(&mut stdout, &document);
        let _ = writeln!(stdout);
    }
    code
}
