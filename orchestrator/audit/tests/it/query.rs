//! `show` and the exports.

use deployctl_audit::{Action, AuditRecord, Filter, export_csv, export_json, show};

use crate::{TempDir, write_log};

#[test]
fn show_filters_by_run_since_and_action() {
    let dir = TempDir::new("show");
    let records = write_log(dir.path(), 12, 1000);
    let run1 = show(dir.path(), &Filter::default().run("run-1")).unwrap();
    assert_eq!(run1.len(), 6);
    assert!(run1.iter().all(|r| r.what.run.as_deref() == Some("run-1")));

    assert_eq!(
        show(dir.path(), &Filter::default().since("2000-01-01").unwrap()).unwrap(),
        records
    );
    assert!(
        show(
            dir.path(),
            &Filter::default().since("2999-01-01T00:00:00Z").unwrap()
        )
        .unwrap()
        .is_empty()
    );
    let since_last = Filter::default().since(&records[11].time).unwrap();
    assert!(
        show(dir.path(), &since_last)
            .unwrap()
            .contains(&records[11])
    );

    let approvals = Filter::default()
        .action(Action::ApprovalGranted.as_str())
        .unwrap();
    assert_eq!(show(dir.path(), &approvals).unwrap().len(), 3);
    assert!(Filter::default().since("last tuesday").is_err());
}

#[test]
fn exports_csv_and_json() {
    let dir = TempDir::new("export");
    let records = write_log(dir.path(), 4, 1000);

    let mut csv = Vec::new();
    export_csv(&records, &mut csv).unwrap();
    let csv = String::from_utf8(csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 5);
    assert!(lines[0].starts_with("seq,time,operator,osUser,host,awsCallerArn,action,run,"));
    assert!(lines[1].starts_with(&format!("1,{},alice,alice,deploy-pc,", records[0].time)));
    assert!(lines[1].contains(",gate.passed,run-1,canary-1,,,,,errors 0.1% ≤ 1%,ok,,req-1,"));
    assert!(lines[4].ends_with(&records[3].hash.to_hex()));

    let mut json = Vec::new();
    export_json(&records, &mut json).unwrap();
    let back: Vec<AuditRecord> = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, records);
}
