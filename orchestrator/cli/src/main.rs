//! `deployctl`: the command-line binary. It parses arguments, wires the
//! libraries together and maps outcomes to the exit-code contract in
//! [`exit`]; the work itself lives in the library crates (start with
//! `deployctl-plan`).

mod exit;
mod input;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use deployctl_plan::report::ImpactReport;
use deployctl_plan::saved::SavedPlan;
use deployctl_plan::{Diagnostic, Loaded, SourceFile};

#[derive(Parser)]
#[command(
    name = "deployctl",
    version,
    about = "Zero-downtime deployments: blue-green and canary releases gated by health checks and approvals",
    propagate_version = true
)]
struct Cli {
    /// Where runs, locks and the journal are kept.
    #[arg(long, global = true, env = "DEPLOYCTL_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Never colour output (also: the NO_COLOR environment variable).
    #[arg(long, global = true)]
    no_color: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Check plan files; prints every problem with its line and column.
    Validate {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<String>,
    },
    /// Show what applying a plan would do, without touching anything.
    Plan {
        #[arg(value_name = "FILE")]
        file: String,
        /// Save the reviewed plan so `apply` executes exactly it.
        #[arg(long, value_name = "SAVED")]
        out: Option<PathBuf>,
    },
    /// Print the JSON Schema of the plan format (for editors).
    Schema,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let color =
        !cli.no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
    let code = match &cli.command {
        Command::Validate { files } => validate(files, cli.output, color),
        Command::Plan { file, out } => plan(file, out.as_deref(), cli.output, color),
        Command::Schema => schema(),
    };
    ExitCode::from(code)
}

/// Reads and validates one plan file, printing diagnostics (and warnings)
/// to stderr in text mode.
fn load_plan(file: &str, output: Output, color: bool) -> Result<Loaded, Vec<Diagnostic>> {
    let bytes = match input::read_plan_file(file) {
        Ok(bytes) => bytes,
        Err(diagnostic) => {
            if output == Output::Text {
                let source = SourceFile {
                    name: file.to_string(),
                    text: None,
                };
                eprint!(
                    "{}",
                    source.render(std::slice::from_ref(&diagnostic), color)
                );
            }
            return Err(vec![diagnostic]);
        }
    };
    match deployctl_plan::load(file, &bytes) {
        Ok(loaded) => {
            if output == Output::Text && !loaded.warnings.is_empty() {
                eprint!("{}", loaded.source.render(&loaded.warnings, color));
            }
            Ok(loaded)
        }
        Err(rejected) => {
            if output == Output::Text {
                eprint!("{}", rejected.render(color));
            }
            Err(rejected.diagnostics)
        }
    }
}

fn validate(files: &[String], output: Output, color: bool) -> u8 {
    let mut all_valid = true;
    let mut results = Vec::new();
    for file in files {
        match load_plan(file, output, color) {
            Ok(loaded) => {
                if output == Output::Text {
                    println!(
                        "valid: {file} ({} stage{}, {} target{})",
                        loaded.plan.stages.len(),
                        if loaded.plan.stages.len() == 1 {
                            ""
                        } else {
                            "s"
                        },
                        loaded.plan.targets.len(),
                        if loaded.plan.targets.len() == 1 {
                            ""
                        } else {
                            "s"
                        },
                    );
                }
                results.push(serde_json::json!({
                    "file": file, "valid": true, "diagnostics": loaded.warnings,
                }));
            }
            Err(diagnostics) => {
                all_valid = false;
                results.push(serde_json::json!({
                    "file": file, "valid": false, "diagnostics": diagnostics,
                }));
            }
        }
    }
    if output == Output::Json {
        print_json(&serde_json::Value::Array(results));
    }
    if all_valid {
        exit::OK
    } else {
        exit::INVALID_INPUT
    }
}

fn plan(file: &str, out: Option<&std::path::Path>, output: Output, color: bool) -> u8 {
    let Ok(loaded) = load_plan(file, output, color) else {
        return exit::INVALID_INPUT;
    };
    let report = ImpactReport::new(&loaded.plan);
    match output {
        Output::Text => print!("{}", report.render_text()),
        Output::Json => print_json(&report),
    }
    if let Some(out) = out {
        let saved = SavedPlan::new(file, &loaded);
        if let Err(error) = std::fs::write(out, saved.to_json() + "\n") {
            eprintln!("error: cannot write saved plan {}: {error}", out.display());
            return exit::INVALID_INPUT;
        }
        eprintln!(
            "Saved plan to {}; `deployctl apply {}` executes exactly this plan.",
            out.display(),
            out.display()
        );
    }
    exit::OK
}

fn schema() -> u8 {
    let schema = schemars::schema_for!(deployctl_plan::raw::RawPlan);
    print_json(&schema);
    exit::OK
}

fn print_json<T: serde::Serialize>(value: &T) {
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`deployctl plan --output json | head`) is not an error
    // worth a panic; the reader has what it wanted.
    let _ = serde_json::to_writer_pretty(&mut stdout, value);
    let _ = writeln!(stdout);
}
