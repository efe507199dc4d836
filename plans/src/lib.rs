//! `deployctl-plan`: the plan language — parse a plan file, validate it,
//! and turn it into an execution graph and an impact report.
//!
//! Start at [`load`]: bytes in, a [`ValidatedPlan`] or every diagnostic out.
//! The stages a plan goes through are distinct types, so nothing downstream
//! can act on a plan that was not checked:
//!
//! 1. bytes → [`raw::RawPlan`] ([`load`]'s parse: size, encoding, YAML with
//!    tight limits, unknown fields rejected),
//! 2. `RawPlan` → [`ValidatedPlan`] (only [`validate`] makes one; it collects
//!    every problem, each with a field path),
//! 3. `ValidatedPlan` → [`graph::ExecutionGraph`] (acyclic by construction)
//!    and [`report::ImpactReport`] (what `deployctl plan` prints).
//!
//! Everything one target kind brings (its wire sections, its checks, its
//! capabilities, its report text) is in one module, `kinds/<kind>.rs`;
//! `kinds/mod.rs` is the one place a kind is chosen. Adding a kind starts
//! there.
//!
//! This crate does no IO beyond what the caller hands it and depends on no
//! cloud SDK: it is the vocabulary the engine and the adapters share.

mod check;
pub mod diagnostic;
pub mod duration;
pub mod graph;
mod kinds;
mod load;
pub mod model;
pub mod raw;
mod repair;
pub mod report;
pub mod saved;
pub mod spans;
mod validate;

pub use diagnostic::{Diagnostic, Location, Renderer, Severity};
pub use load::{MAX_DEPTH, MAX_PLAN_BYTES};
pub use model::ValidatedPlan;

/// A plan file as read: its name for messages and its text when decodable.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: Option<String>,
}

impl SourceFile {
    /// Renders `diagnostics` against this file, compiler style.
    pub fn render(&self, diagnostics: &[Diagnostic], color: bool) -> String {
        Renderer {
            file_name: &self.name,
            source: self.text.as_deref(),
            color,
        }
        .render_all(diagnostics)
    }
}

/// A plan that passed validation, with any warnings about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub plan: ValidatedPlan,
    pub warnings: Vec<Diagnostic>,
    pub source: SourceFile,
}

/// A plan that did not: every diagnostic, errors and warnings, in file order.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub source: SourceFile,
    pub diagnostics: Vec<Diagnostic>,
}

impl Rejected {
    pub fn render(&self, color: bool) -> String {
        self.source.render(&self.diagnostics, color)
    }
}

/// Parses and validates a plan file's bytes. `name` is used in messages.
pub fn load(name: &str, bytes: &[u8]) -> Result<Loaded, Rejected> {
    let digest = sha256_hex(bytes);
    let (text, parsed) = load::parse(bytes).map_err(|failure| Rejected {
        source: SourceFile {
            name: name.to_string(),
            text: failure.text,
        },
        diagnostics: failure.diagnostics,
    })?;
    // Positions are only needed when there is something to report, so the
    // index over the YAML events is built then and not on every load.
    let locate = |mut diagnostics: Vec<Diagnostic>| {
        if diagnostics.is_empty() {
            return diagnostics;
        }
        let spans = spans::SpanIndex::build(&text, MAX_DEPTH);
        for diagnostic in &mut diagnostics {
            if diagnostic.location.is_none() {
                diagnostic.location = spans.locate(&diagnostic.path);
            }
        }
        diagnostics.sort_by(|a, b| {
            (a.location.map(|l| (l.line, l.column)), &a.path, &a.message).cmp(&(
                b.location.map(|l| (l.line, l.column)),
                &b.path,
                &b.message,
            ))
        });
        diagnostics
    };
    let result = validate::validate(&parsed.plan, digest);
    let (outcome, diagnostics) = match (result, parsed.repairs) {
        (Ok((plan, warnings)), None) => (Some(plan), locate(warnings)),
        (Err(errors), None) => (None, locate(errors)),
        // Values of the wrong type were stood in for: report them, and
        // what validation found about everything else.
        (result, Some(repairs)) => {
            let found = match result {
                Ok((_, warnings)) => warnings,
                Err(diagnostics) => diagnostics,
            };
            let mut diagnostics = repairs.diagnostics.clone();
            diagnostics.extend(
                found
                    .into_iter()
                    .filter(|diagnostic| !repairs.is_repaired(&diagnostic.path)),
            );
            (None, locate(diagnostics))
        }
    };
    let source = SourceFile {
        name: name.to_string(),
        text: Some(text),
    };
    match outcome {
        Some(plan) => Ok(Loaded {
            plan,
            warnings: diagnostics,
            source,
        }),
        None => Err(Rejected {
            source,
            diagnostics,
        }),
    }
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}
