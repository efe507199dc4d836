//! Reading the trail for people: `show` (filtered) and `export` (CSV,
//! JSON). Reading does not verify; `verify` does.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use crate::error::{AuditError, io};
use crate::record::{Action, AuditRecord};
use crate::time::parse_time;
use crate::writer::LOG_FILE;

/// Which records `show` returns; empty matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub run: Option<String>,
    /// Unix milliseconds; records at or after it.
    pub since: Option<i64>,
    /// Any of these actions (one, or a family such as every `approval.*`).
    pub actions: Option<Vec<Action>>,
    /// Records a person took part in: as the operator (`alice` matches
    /// `alice@host`), the approver or the run's initiator.
    pub user: Option<String>,
}

impl Filter {
    pub fn run(mut self, run: impl Into<String>) -> Filter {
        self.run = Some(run.into());
        self
    }

    /// `since` as the user typed it: RFC 3339 or a date.
    pub fn since(mut self, since: &str) -> Result<Filter, AuditError> {
        self.since = Some(parse_time(since)?);
        Ok(self)
    }

    /// `--action` as typed: an action's name, or a family's prefix
    /// (`approval` or `approval.` for every `approval.*`).
    pub fn action(mut self, text: &str) -> Result<Filter, String> {
        let exact: Result<Action, String> = text.parse();
        let actions: Vec<Action> = match exact {
            Ok(action) => vec![action],
            Err(unknown) => {
                let family = format!("{}.", text.trim_end_matches('.'));
                let members: Vec<Action> = Action::ALL
                    .iter()
                    .copied()
                    .filter(|action| action.as_str().starts_with(&family))
                    .collect();
                if members.is_empty() {
                    return Err(unknown);
                }
                members
            }
        };
        self.actions = Some(actions);
        Ok(self)
    }

    pub fn user(mut self, user: impl Into<String>) -> Filter {
        self.user = Some(user.into());
        self
    }

    pub fn matches(&self, record: &AuditRecord) -> bool {
        self.run
            .as_ref()
            .is_none_or(|run| record.what.run.as_ref() == Some(run))
            && self
                .actions
                .as_ref()
                .is_none_or(|actions| actions.contains(&record.what.action))
            && self
                .user
                .as_deref()
                .is_none_or(|user| involves(record, user))
            && self
                .since
                .is_none_or(|since| parse_time(&record.time).is_ok_and(|at| at >= since))
    }
}

/// Whether `user` (a name, or `name@host`) acted in the record or was
/// named by it.
fn involves(record: &AuditRecord, user: &str) -> bool {
    let same = |who: &str| who == user || who.split_once('@').is_some_and(|(name, _)| name == user);
    same(&record.who.operator)
        || record.what.approver.as_deref().is_some_and(same)
        || record.what.initiator.as_deref().is_some_and(same)
}

/// The records of the log in `dir` that match `filter`, in order. A torn
/// last line (a crash mid-write) is skipped; any other unreadable line is
/// an error naming it.
pub fn show(dir: &Path, filter: &Filter) -> Result<Vec<AuditRecord>, AuditError> {
    let path = dir.join(LOG_FILE);
    let file = File::open(&path).map_err(io("open", &path))?;
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut records = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        if reader
            .read_until(b'\n', &mut line)
            .map_err(io("read", &path))?
            == 0
            || line.pop() != Some(b'\n')
        {
            return Ok(records);
        }
        number += 1;
        let record: AuditRecord =
            serde_json::from_slice(&line).map_err(|e| AuditError::Corrupt {
                path: path.clone(),
                message: format!("line {number}: {e}"),
            })?;
        if filter.matches(&record) {
            records.push(record);
        }
    }
}

/// The CSV columns, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "seq",
    "time",
    "operator",
    "osUser",
    "host",
    "awsCallerArn",
    "action",
    "run",
    "stage",
    "target",
    "from",
    "to",
    "planDigest",
    "detail",
    "status",
    "message",
    "requestIds",
    // Added after the first release of the format: columns only ever
    // join before the chain's own two.
    "initiator",
    "approver",
    "prev",
    "hash",
];

/// RFC 4180 CSV with a header row; request IDs joined by spaces.
///
/// Cells that a spreadsheet would run as a formula (starting with `=`,
/// `+`, `-`, `@`, tab or CR) get a leading `'`: the trail holds text from
/// plan files and cloud APIs, and an export is opened by auditors.
pub fn export_csv(records: &[AuditRecord], out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "{}", CSV_COLUMNS.join(","))?;
    for record in records {
        let optional = |value: &Option<String>| value.clone().unwrap_or_default();
        let cells = [
            record.seq.to_string(),
            record.time.clone(),
            record.who.operator.clone(),
            record.who.os_user.clone(),
            record.who.host.clone(),
            optional(&record.who.aws_caller_arn),
            record.what.action.as_str().to_string(),
            optional(&record.what.run),
            optional(&record.what.stage),
            optional(&record.what.target),
            optional(&record.what.from),
            optional(&record.what.to),
            optional(&record.what.plan_digest),
            optional(&record.what.detail),
            record.outcome.status.as_str().to_string(),
            optional(&record.outcome.message),
            record.request_ids.join(" "),
            optional(&record.what.initiator),
            optional(&record.what.approver),
            record.prev.to_hex(),
            record.hash.to_hex(),
        ];
        let row: Vec<String> = cells.iter().map(|cell| csv_cell(cell)).collect();
        writeln!(out, "{}", row.join(","))?;
    }
    Ok(())
}

fn csv_cell(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// A JSON array of the records, as they are in the log (pretty-printed).
pub fn export_json(records: &[AuditRecord], out: &mut impl Write) -> Result<(), AuditError> {
    serde_json::to_writer_pretty(&mut *out, records)?;
    writeln!(out).map_err(|e| AuditError::Encode(serde_json::Error::io(e)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn csv_cells_are_quoted_and_defused() {
        assert_eq!(super::csv_cell("plain"), "plain");
        assert_eq!(super::csv_cell("a,b"), "\"a,b\"");
        assert_eq!(super::csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(super::csv_cell("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(super::csv_cell("-1,2"), "\"'-1,2\"");
    }
}
