//! Each PC's trail copy in the team backend, on moto's S3: a batch
//! shipped again (after a crash) with the same bytes counts as shipped,
//! other bytes are refused, and every PC's records are read back once.

use deployctl_audit::{AuditLog, AuditOptions, AuditRecord, Entry, Outcome, Sink, What, Who};
use deployctl_aws::testing::moto;
use deployctl_aws_team::S3TeamTrail;

use crate::Backend;

/// `count` records written by a real trail (chained, as shipped).
fn records(count: usize, operator: &str) -> Vec<AuditRecord> {
    let dir = std::env::temp_dir().join(format!(
        "deployctl-team-trail-{}-{operator}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let who = Who::local(operator);
    let log = AuditLog::open(&dir, AuditOptions::new(who.clone())).expect("a trail");
    let records = (0..count)
        .map(|n| {
            let what =
                What::new(deployctl_audit::Action::RunStarted).run(format!("r-{operator}-{n}"));
            log.append(Entry::new(who.clone(), what, Outcome::ok()))
                .expect("recorded")
        })
        .collect();
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_pcs_trail_is_copied_once_and_read_back_by_any_pc() {
    let test = "each_pcs_trail_is_copied_once_and_read_back_by_any_pc";
    let Some(url) = moto(test) else {
        return;
    };
    let backend = Backend::new(&url).await;
    let copy = |client, pc| S3TeamTrail::new(client, backend.location.clone(), pc).unwrap();
    let a = copy(backend.client(&url).await, "pc-a");
    let b = copy(backend.client(&url).await, "pc-b");
    let (on_a, on_b) = (records(3, "alice"), records(2, "bob"));
    tokio::task::block_in_place(|| {
        a.ship(&on_a[..2], None).expect("shipped");
        // After a crash the outbox ships again, cut differently.
        a.ship(&on_a[..2], None)
            .expect("the same bytes again count as shipped");
        a.ship(&on_a[1..], None).expect("an overlapping batch");
        b.ship(&on_b, None).expect("shipped");
        let mut forged = on_b.clone();
        forged[0].who.operator = "mallory".into();
        let refused = b.ship(&forged, None).unwrap_err().to_string();
        assert!(refused.contains("other bytes"), "{refused}");

        let read = a.read_all().expect("read back");
        let seen: Vec<(String, u64, String)> = read
            .iter()
            .map(|copy| {
                (
                    copy.pc.clone(),
                    copy.record.seq,
                    copy.record.who.operator.clone(),
                )
            })
            .collect();
        let operator = |name: &str| on_a[0].who.operator.replace("alice", name);
        assert_eq!(
            seen,
            vec![
                ("pc-a".into(), 1, operator("alice")),
                ("pc-a".into(), 2, operator("alice")),
                ("pc-a".into(), 3, operator("alice")),
                ("pc-b".into(), 1, operator("bob")),
                ("pc-b".into(), 2, operator("bob")),
            ],
            "each record once, by PC, in order"
        );
    });
}
