//! `deployctl audit verify | show | export`: reading the trail.
//!
//! The files are readable only by the deploy account (0600 in a 0700
//! directory, J4); role-based access for auditors arrives with the access
//! policy.

use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use deployctl_audit::{Filter, export_csv, export_json, keys, show, verify};

use crate::audit_bridge::audit_dir;
use crate::exit;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain and the signed checkpoints; names the first bad record.
    Verify {
        /// A shipped copy (a directory sink or a JSON Lines file) to detect truncation against.
        #[arg(long, value_name = "PATH")]
        against: Option<PathBuf>,
        /// The public key to check signatures with (default: the trail's own).
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
    },
    /// Print records, oldest first.
    Show {
        #[arg(long)]
        run: Option<String>,
        /// RFC 3339 time (e.g. 2026-11-24T09:00:00Z).
        #[arg(long)]
        since: Option<String>,
    },
    /// Export every record.
    Export {
        #[arg(long, value_enum, default_value_t = Format::Json)]
        format: Format,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Csv,
    Json,
}

/// J4: where an access file exists, only auditors may read the trail.
fn may_read(access_file: &Path) -> Result<(), u8> {
    if !access_file.exists() {
        return Ok(());
    }
    let access = deployctl_policy::Access::load(access_file).map_err(|error| {
        eprintln!("error: {error}");
        exit::INVALID_INPUT
    })?;
    let initiator = deployctl_engine::run::initiator();
    let user = initiator.split('@').next().unwrap_or_default();
    if access.has_role(user, deployctl_policy::Role::Auditor) {
        Ok(())
    } else {
        eprintln!(
            "error: `{user}` is not an auditor in {}; only auditors may read the audit trail",
            access_file.display()
        );
        Err(exit::INVALID_INPUT)
    }
}

pub fn run(command: &AuditCommand, state_dir: &Path, access_file: &Path, json: bool) -> u8 {
    if let Err(code) = may_read(access_file) {
        return code;
    }
    let dir = audit_dir(state_dir);
    if !dir.exists() {
        eprintln!("no audit trail in {} yet", dir.display());
        return exit::INVALID_INPUT;
    }
    match command {
        AuditCommand::Verify {
            against,
            public_key,
        } => {
            let key = public_key
                .clone()
                .unwrap_or_else(|| dir.join(keys::PUBLIC_KEY_FILE));
            match verify(&dir, &key, against.as_deref()) {
                Ok(report) => {
                    out!("{report}");
                    if report.is_ok() {
                        exit::OK
                    } else {
                        exit::FAILED
                    }
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    exit::FAILED
                }
            }
        }
        AuditCommand::Show { run, since } => {
            let mut filter = Filter::default();
            if let Some(run) = run {
                filter = filter.run(run.clone());
            }
            if let Some(since) = since {
                match deployctl_audit::time::parse_time(since) {
                    Ok(ms) => filter.since = Some(ms),
                    Err(error) => {
                        eprintln!("error: --since {since}: {error}");
                        return exit::INVALID_INPUT;
                    }
                }
            }
            match show(&dir, &filter) {
                Ok(records) if json => {
                    let mut out = std::io::stdout().lock();
                    match export_json(&records, &mut out) {
                        Ok(()) => exit::OK,
                        Err(error) => {
                            eprintln!("error: {error}");
                            exit::FAILED
                        }
                    }
                }
                Ok(records) => {
                    for record in records {
                        outln!(
                            "{:>6}  {}  {:<24} {:<10} {} {}{}",
                            record.seq,
                            record.time,
                            record.what.action.as_str(),
                            record.outcome.status.as_str(),
                            record.who.operator,
                            record.what.run.as_deref().unwrap_or("-"),
                            record
                                .what
                                .stage
                                .as_deref()
                                .map(|stage| format!("/{stage}"))
                                .unwrap_or_default()
                        );
                    }
                    exit::OK
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    exit::FAILED
                }
            }
        }
        AuditCommand::Export { format } => {
            let records = match show(&dir, &Filter::default()) {
                Ok(records) => records,
                Err(error) => {
                    eprintln!("error: {error}");
                    return exit::FAILED;
                }
            };
            let mut out = std::io::stdout().lock();
            let result = match format {
                Format::Csv => export_csv(&records, &mut out).map_err(|e| e.to_string()),
                Format::Json => export_json(&records, &mut out).map_err(|e| e.to_string()),
            };
            match result {
                Ok(()) => exit::OK,
                Err(error) => {
                    eprintln!("error: {error}");
                    exit::FAILED
                }
            }
        }
    }
}
