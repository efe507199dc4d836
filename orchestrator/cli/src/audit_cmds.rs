//! `deployctl audit verify | show | export`: reading the trail.
//!
//! The files are readable only by the deploy account (0600 in a 0700
//! directory, J4); role-based access for auditors arrives with the access
//! policy.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};
use deployctl_audit::{Filter, export_csv, export_json, show, verify, verify_against_files};

use crate::exit;
use deployctl_trail::audit_dir;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain and the signed checkpoints; names the first bad record.
    Verify {
        /// A shipped copy to detect truncation and rewriting against: a
        /// directory sink, a JSON Lines file, or the S3 sink's
        /// `s3://BUCKET/PREFIX` (read with the standard AWS credential chain).
        #[arg(long, value_name = "PATH|s3://BUCKET/PREFIX")]
        against: Option<String>,
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
        /// Only records this person took part in: as the operator
        /// (`alice` or `alice@host`), the approver or the run's initiator.
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        /// Only this action (`approval.denied`), or a family of them
        /// (`approval` for every `approval.*`).
        #[arg(long, value_name = "ACTION")]
        action: Option<String>,
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
    let access = deployctl_policy::Access::load(access_file).map_err(crate::report::refused)?;
    let initiator = deployctl_engine::run::initiator();
    let user = initiator.split('@').next().unwrap_or_default();
    if access.has_role(user, deployctl_policy::Role::Auditor) {
        Ok(())
    } else {
        Err(crate::report::refused(format!(
            "`{user}` is not an auditor in {}; only auditors may read the audit trail",
            access_file.display()
        )))
    }
}

/// The records other PCs copied into the team backend that `filter`
/// matches, beside this PC's, in time order (this PC's own copy is not
/// read again).
fn with_team_records(
    records: Vec<deployctl_audit::AuditRecord>,
    backend: &deployctl_aws_audit::S3Location,
    filter: &Filter,
) -> Result<Vec<(Option<String>, deployctl_audit::AuditRecord)>, u8> {
    let here = deployctl_engine::run::host_name();
    let team = crate::team::team_trail(backend)
        .and_then(|trail| trail.read_all())
        .map_err(|error| {
            crate::report::failed(format!(
                "the other PCs' trails in the team backend {backend}: {error}"
            ))
        })?;
    let mut records: Vec<_> = records.into_iter().map(|record| (None, record)).collect();
    records.extend(
        team.into_iter()
            .filter(|copy| copy.pc != here && filter.matches(&copy.record))
            .map(|copy| (Some(copy.pc), copy.record)),
    );
    // RFC 3339 UTC with milliseconds: text order is time order.
    records.sort_by(|(_, a), (_, b)| a.time.cmp(&b.time));
    Ok(records)
}

/// `verify --against s3://…`: every version of every object the S3 sink
/// shipped there, fetched one by one and compared with the local trail.
fn verify_against_s3(
    dir: &Path,
    key: &Path,
    uri: &str,
) -> Result<Result<deployctl_audit::Report, deployctl_audit::AuditError>, u8> {
    let location: deployctl_aws_audit::S3Location = uri
        .parse()
        .map_err(|error| crate::report::refused(format!("--against: {error}")))?;
    let copy = deployctl_aws_audit::S3Copy::list(location.clone()).map_err(|error| {
        crate::report::failed(format!(
            "cannot read the shipped copy at {location}: {error}"
        ))
    })?;
    let verified = verify_against_files(dir, key, copy.files()).map(|mut report| {
        report.warnings.extend(copy.warnings().iter().cloned());
        if copy.objects().is_empty() {
            report.warnings.push(format!(
                "nothing was shipped under {location}: there is nothing to compare with (is the prefix right?)"
            ));
        }
        report
    });
    Ok(verified)
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
            let (default_key, default_inside) = crate::audit_sink::default_public_key(state_dir);
            let key = public_key.clone().unwrap_or(default_key);
            let verified = match against.as_deref() {
                Some(uri) if uri.starts_with("s3://") => match verify_against_s3(&dir, &key, uri) {
                    Ok(verified) => verified,
                    Err(code) => return code,
                },
                Some(path) => verify(&dir, &key, Some(Path::new(path))),
                None => verify(&dir, &key, None),
            };
            // A key beside the trail proves little on its own: whoever can
            // write the state directory can re-chain and re-sign it.
            let key_beside_trail = public_key.is_none() && against.is_none() && default_inside;
            let verified = verified.map(|mut report| {
                if key_beside_trail {
                    report.warnings.push(format!(
                        "checked against the public key stored beside the trail ({}) and nothing else: anyone who can write {} can rewrite and re-sign the trail. Keep the signing key elsewhere (DEPLOYCTL_AUDIT_SIGNING_KEY), or check against a key kept elsewhere (--public-key FILE) or the shipped copy (--against PATH|s3://…)",
                        key.display(),
                        dir.display()
                    ));
                }
                report
            });
            match verified {
                Ok(report) => {
                    let code = if report.is_ok() {
                        exit::OK
                    } else {
                        exit::FAILED
                    };
                    let text = if json {
                        let mut document = verify_json(&report).to_string();
                        document.push('\n');
                        document
                    } else {
                        report.to_string()
                    };
                    match emit(text.as_bytes()) {
                        exit::OK => code,
                        failed => failed,
                    }
                }
                Err(error) => crate::report::failed(error),
            }
        }
        AuditCommand::Show {
            run,
            since,
            user,
            action,
        } => {
            let mut filter = Filter::default();
            if let Some(run) = run {
                filter = filter.run(run.clone());
            }
            if let Some(user) = user {
                filter = filter.user(user.clone());
            }
            if let Some(action) = action {
                filter = match filter.action(action) {
                    Ok(filter) => filter,
                    Err(error) => return crate::report::refused(format!("--action: {error}")),
                };
            }
            if let Some(since) = since {
                match deployctl_audit::time::parse_time(since) {
                    Ok(ms) => filter.since = Some(ms),
                    Err(error) => {
                        return crate::report::refused(format!("--since {since}: {error}"));
                    }
                }
            }
            let shown = show(&dir, &filter).map_err(crate::report::failed);
            // Each record with the PC it came from when another PC's.
            let shown = match (shown, crate::team::configured()) {
                (Ok(records), Some(backend)) => with_team_records(records, backend, &filter),
                (shown, _) => shown.map(|records| records.into_iter().map(|r| (None, r)).collect()),
            };
            match shown {
                Ok(records) if json => {
                    let records: Vec<_> = records.into_iter().map(|(_, record)| record).collect();
                    let mut out = Vec::new();
                    match export_json(&records, &mut out) {
                        Ok(()) => emit(&out),
                        Err(error) => crate::report::failed(error),
                    }
                }
                Ok(records) => {
                    let mut text = String::new();
                    for (pc, record) in records {
                        let _ = writeln!(
                            text,
                            "{:>6}  {}  {:<24} {:<10} {} {}{}{}{}",
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
                                .unwrap_or_default(),
                            record
                                .what
                                .approver
                                .as_deref()
                                .map(|approver| format!("  approver {approver}"))
                                .unwrap_or_default(),
                            // Why a denial or failure happened, on its line.
                            record
                                .outcome
                                .message
                                .as_deref()
                                .filter(|_| record.outcome.status.as_str() != "ok")
                                .map(|why| format!("  — {why}"))
                                .unwrap_or_default()
                        );
                        if let Some(pc) = pc {
                            // Another PC's record, from the team backend.
                            text.pop();
                            let _ = writeln!(text, "  [PC {pc}]");
                        }
                    }
                    emit(text.as_bytes())
                }
                Err(code) => code,
            }
        }
        AuditCommand::Export { format } => {
            let records = match show(&dir, &Filter::default()) {
                Ok(records) => records,
                Err(error) => {
                    return crate::report::failed(error);
                }
            };
            let mut out = Vec::new();
            let result = match format {
                Format::Csv => export_csv(&records, &mut out).map_err(|e| e.to_string()),
                Format::Json => export_json(&records, &mut out).map_err(|e| e.to_string()),
            };
            match result {
                Ok(()) => emit(&out),
                Err(error) => crate::report::failed(error),
            }
        }
    }
}

/// Writes a command's whole output to stdout. A reader that went away
/// (`deployctl audit show | head`) is no error: the command ends quietly
/// with what it was asked for done.
fn emit(bytes: &[u8]) -> u8 {
    use std::io::Write as _;
    crate::report::wrote_stdout();
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => exit::OK,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Err(error) => crate::report::failed(format!("cannot write the output: {error}")),
    }
}

/// `audit verify --output json`: the report as one versioned document.
fn verify_json(report: &deployctl_audit::Report) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "deployctl.io/v1",
        "kind": "AuditVerifyReport",
        "intact": report.is_ok(),
        "log": report.log.display().to_string(),
        "records": report.records,
        "lastSeq": report.last_seq,
        "lastHash": report.last_hash.to_hex(),
        "checkpoints": report.checkpoints,
        "lastCheckpointSeq": report.last_checkpoint_seq,
        "shippedRecords": report.shipped_records,
        "problems": report.problems.iter().map(|problem| serde_json::json!({
            "file": problem.file.display().to_string(),
            "line": problem.line,
            "seq": problem.seq,
            "kind": format!("{:?}", problem.kind),
            "message": problem.message,
        })).collect::<Vec<_>>(),
        "moreProblems": report.more_problems,
        "warnings": report.warnings,
    })
}
