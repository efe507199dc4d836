//! Team locks on moto's S3, through the real SDK: two PCs are two
//! `S3Locks` with their own clients on one bucket. The fault proxy
//! (`tests/emulators/faults.py`) throttles, fails and drops calls for
//! the faults test.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use deployctl_adapter::team::{
    LockOwner, SharedRun, SharedStage, StopAsk, StopAsked, TeamLockError, TeamLocks, TeamRuns,
};
use deployctl_aws::s3_location::S3Location;
use deployctl_aws::testing::{MotoAccount, emulator, moto, sdk_config};
use deployctl_aws_team::{S3Locks, S3Runs};

mod mfa;
mod trail;

static BUCKETS: AtomicU32 = AtomicU32::new(0);

/// One moto account with a bucket, and PCs on it.
struct Backend {
    url: String,
    account: MotoAccount,
    location: S3Location,
}

impl Backend {
    async fn new(url: &str) -> Backend {
        let account = MotoAccount::fresh();
        let bucket = format!(
            "team-{}-{}",
            std::process::id(),
            BUCKETS.fetch_add(1, Ordering::SeqCst)
        );
        let backend = Backend {
            url: url.to_owned(),
            account,
            location: format!("s3://{bucket}/deployctl/prod").parse().unwrap(),
        };
        backend
            .client(url)
            .await
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("CreateBucket");
        backend
    }

    async fn client(&self, url: &str) -> aws_sdk_s3::Client {
        let sdk = sdk_config(url).await;
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .interceptor(self.account.clone())
                .build(),
        )
    }

    /// A PC's view of the backend, through `url` (moto or the proxy).
    async fn pc_via(&self, url: &str, lease: Duration) -> S3Locks {
        S3Locks::new(self.client(url).await, self.location.clone(), lease)
    }

    async fn pc(&self, lease: Duration) -> S3Locks {
        self.pc_via(&self.url, lease).await
    }
}

fn owner(run: &str, pc: &str) -> LockOwner {
    LockOwner {
        run: run.to_owned(),
        pc: pc.to_owned(),
        operator: format!("op-{pc}"),
        environment: "production".to_owned(),
    }
}

fn keys(names: &[&str]) -> Vec<String> {
    names
        .iter()
        .map(|name| format!("arn:aws:lambda:us-east-1:123456789012:function:{name}:live"))
        .collect()
}

const LONG: Duration = Duration::from_secs(120);

#[tokio::test]
async fn a_second_pc_is_refused_with_the_holder_named_until_the_first_releases() {
    let Some(url) = moto("a_second_pc_is_refused_with_the_holder_named_until_the_first_releases")
    else {
        return;
    };
    let backend = Backend::new(&url).await;
    let (a, b) = (backend.pc(LONG).await, backend.pc(LONG).await);
    let target = keys(&["checkout"]);
    a.acquire(&target, &owner("run-a", "pc-a")).await.unwrap();
    // The same run again (a resume) is its own lock.
    a.acquire(&target, &owner("run-a", "pc-a")).await.unwrap();
    let refused = b
        .acquire(&target, &owner("run-b", "pc-b"))
        .await
        .unwrap_err();
    let TeamLockError::Held { owner: holder, .. } = &refused else {
        panic!("{refused}");
    };
    assert_eq!(holder, &owner("run-a", "pc-a"));
    assert!(
        refused
            .to_string()
            .contains("run run-a of operator op-pc-a on PC pc-a"),
        "{refused}"
    );
    a.release(&target, &owner("run-a", "pc-a")).await.unwrap();
    b.acquire(&target, &owner("run-b", "pc-b")).await.unwrap();
    let record = a.inspect(&target[0]).await.unwrap().unwrap();
    assert_eq!(record.owner.run, "run-b");
    assert!(!record.released);
    // A release by a run that no longer holds it leaves the lock alone.
    a.release(&target, &owner("run-a", "pc-a")).await.unwrap();
    assert!(!b.inspect(&target[0]).await.unwrap().unwrap().released);
}

#[tokio::test]
async fn locks_are_taken_all_or_none() {
    let Some(url) = moto("locks_are_taken_all_or_none") else {
        return;
    };
    let backend = Backend::new(&url).await;
    let (a, b) = (backend.pc(LONG).await, backend.pc(LONG).await);
    let both = keys(&["api", "worker"]);
    a.acquire(&both[1..], &owner("run-a", "pc-a"))
        .await
        .unwrap();
    let refused = b.acquire(&both, &owner("run-b", "pc-b")).await.unwrap_err();
    assert!(matches!(refused, TeamLockError::Held { .. }), "{refused}");
    // `api` was taken first and given back: a third run can have it.
    let api = b.inspect(&both[0]).await.unwrap().expect("api was written");
    assert!(api.released, "{api:?}");
    b.acquire(&both[..1], &owner("run-c", "pc-b"))
        .await
        .unwrap();
}

#[tokio::test]
async fn two_pcs_racing_for_one_lock_a_hundred_times_have_one_winner_each_time() {
    let Some(url) = moto("two_pcs_racing_for_one_lock_a_hundred_times_have_one_winner_each_time")
    else {
        return;
    };
    let backend = Backend::new(&url).await;
    let a = Arc::new(backend.pc(LONG).await);
    let b = Arc::new(backend.pc(LONG).await);
    race(&a, &b, 100).await;
}

/// `rounds` targets, each raced for by both PCs at once: exactly one
/// takes it, the other is refused naming the winner, and the backend
/// says the winner holds it.
async fn race(a: &Arc<S3Locks>, b: &Arc<S3Locks>, rounds: u32) {
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..rounds {
        for (pc, locks) in [("pc-a", a.clone()), ("pc-b", b.clone())] {
            tasks.spawn(async move {
                let target = keys(&[&format!("race-{round}")]);
                let run = format!("run-{pc}-{round}");
                let result = locks.acquire(&target, &owner(&run, pc)).await;
                (round, run, result)
            });
        }
    }
    let mut winners = std::collections::BTreeMap::new();
    let mut refused = std::collections::BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (round, run, result) = joined.unwrap();
        match result {
            Ok(()) => assert!(
                winners.insert(round, run).is_none(),
                "round {round}: two winners"
            ),
            Err(TeamLockError::Held { owner, .. }) => {
                refused.insert(round, owner.run);
            }
            Err(other) => panic!("round {round}: {other}"),
        }
    }
    assert_eq!(winners.len(), rounds as usize, "every round has a winner");
    for round in 0..rounds {
        assert_eq!(
            refused.get(&round),
            winners.get(&round),
            "round {round}: the loser is told who won"
        );
        let target = &keys(&[&format!("race-{round}")])[0];
        let record = a.inspect(target).await.unwrap().unwrap();
        assert_eq!(Some(&record.owner.run), winners.get(&round));
    }
}

#[tokio::test]
async fn an_expired_lease_is_never_taken_over_until_an_operator_breaks_it() {
    let Some(url) = moto("an_expired_lease_is_never_taken_over_until_an_operator_breaks_it") else {
        return;
    };
    let backend = Backend::new(&url).await;
    let short = Duration::from_secs(1);
    let (a, b) = (backend.pc(short).await, backend.pc(short).await);
    let target = keys(&["payments"]);
    a.acquire(&target, &owner("run-a", "pc-a")).await.unwrap();
    // While A renews, its lock cannot be broken.
    let alive = b
        .break_lock(&target[0], "bob", "looks stuck")
        .await
        .unwrap_err();
    assert!(matches!(alive, TeamLockError::Alive { .. }), "{alive}");
    assert!(
        alive.to_string().contains("deployctl kill run-a"),
        "{alive}"
    );

    // A dies: nobody renews.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let refused = b
        .acquire(&target, &owner("run-b", "pc-b"))
        .await
        .unwrap_err();
    let TeamLockError::Expired { owner: holder, .. } = &refused else {
        panic!("an expired lease was not reported as such: {refused}");
    };
    assert_eq!(holder.run, "run-a");
    assert!(
        refused.to_string().contains("deployctl lock break"),
        "{refused}"
    );
    assert!(!b.inspect(&target[0]).await.unwrap().unwrap().released);

    let before = b
        .break_lock(&target[0], "bob", "pc-a lost power")
        .await
        .unwrap();
    assert_eq!(before.owner.run, "run-a");
    let broken = b.inspect(&target[0]).await.unwrap().unwrap();
    assert!(broken.released);
    assert_eq!(
        broken.broken.as_ref().map(|b| b.reason.as_str()),
        Some("pc-a lost power")
    );
    b.acquire(&target, &owner("run-b", "pc-b")).await.unwrap();

    // A comes back: its lock is gone and it is told so.
    let lost = a.renew(&target, &owner("run-a", "pc-a")).await.unwrap_err();
    assert!(matches!(lost, TeamLockError::Lost { .. }), "{lost}");
    assert!(lost.to_string().contains("run run-b"), "{lost}");
}

#[tokio::test]
async fn a_resumed_run_takes_back_its_own_expired_lock_and_renewal_extends_the_lease() {
    let Some(url) =
        moto("a_resumed_run_takes_back_its_own_expired_lock_and_renewal_extends_the_lease")
    else {
        return;
    };
    let backend = Backend::new(&url).await;
    let short = Duration::from_secs(1);
    let a = backend.pc(short).await;
    let target = keys(&["search"]);
    a.acquire(&target, &owner("run-a", "pc-a")).await.unwrap();
    let first = a.inspect(&target[0]).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    a.acquire(&target, &owner("run-a", "pc-a")).await.unwrap();
    let retaken = a.inspect(&target[0]).await.unwrap().unwrap();
    assert_eq!(
        retaken.acquired_at, first.acquired_at,
        "still the same hold"
    );
    assert!(retaken.lease_until > first.lease_until);
    a.renew(&target, &owner("run-a", "pc-a")).await.unwrap();
    let renewed = a.inspect(&target[0]).await.unwrap().unwrap();
    assert!(renewed.lease_until >= retaken.lease_until);
    assert!(!renewed.expired(renewed.renewed_at));
}

#[tokio::test]
async fn under_throttling_server_errors_and_lost_answers_no_lock_is_lost_or_held_twice() {
    let test = "under_throttling_server_errors_and_lost_answers_no_lock_is_lost_or_held_twice";
    let (Some(url), Some(proxy)) = (moto(test), emulator("DEPLOYCTL_TEST_FAULTS_URL", test)) else {
        return;
    };
    let backend = Backend::new(&url).await;
    let a = Arc::new(backend.pc_via(&proxy, LONG).await);
    let b = Arc::new(backend.pc_via(&proxy, LONG).await);
    faults(
        &proxy,
        &format!(
            r#"{{"account": "{}", "rate": 0.2, "seed": 11, "kinds": ["throttle", "5xx", "reset"]}}"#,
            backend.account.0
        ),
    );
    race(&a, &b, 30).await;
    // Each winner renews and releases through the same faults; the
    // released lock is free for the other PC.
    for round in 0..30 {
        let target = keys(&[&format!("race-{round}")]);
        let holder = a.inspect(&target[0]).await.unwrap().unwrap().owner;
        let (mine, theirs) = if holder.pc == "pc-a" {
            (&a, &b)
        } else {
            (&b, &a)
        };
        mine.renew(&target, &holder).await.unwrap();
        mine.release(&target, &holder).await.unwrap();
        theirs
            .acquire(&target, &owner(&format!("next-{round}"), "pc-x"))
            .await
            .unwrap();
    }
    let calls = calls(&proxy, &backend.account.0);
    assert!(
        calls.iter().filter(|c| !c["fault"].is_null()).count() >= 10,
        "the proxy injected faults: {calls:?}"
    );
}

/// Sets the fault proxy's faults (JSON body).
fn faults(proxy: &str, body: &str) {
    let status = http(proxy, "POST", "/_emulator/faults", body).0;
    assert_eq!(status, 200);
}

fn calls(proxy: &str, account: &str) -> Vec<serde_json::Value> {
    let (_, body) = http(
        proxy,
        "GET",
        &format!("/_emulator/calls?account={account}"),
        "",
    );
    let value: serde_json::Value = serde_json::from_str(&body).expect("calls JSON");
    value["calls"].as_array().cloned().unwrap_or_default()
}

/// A plain HTTP/1.1 request to the proxy's control endpoints.
fn http(base: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let address = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(address).expect("the proxy");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Run `r-N`'s record: created at N, at `revision`, in `phase`.
fn shared(run: &str, revision: u64, phase: &str) -> SharedRun {
    let created_at = run.trim_start_matches("r-").parse().unwrap();
    SharedRun {
        run: run.to_owned(),
        plan_name: "checkout".into(),
        environment: "production".into(),
        plan_file: "plans/checkout.yaml".into(),
        plan_digest: "sha256:00".into(),
        plan_source: "apiVersion: deployctl.io/v1\n".into(),
        initiator: "alice@pc-a".into(),
        pc: "pc-a".into(),
        phase: phase.into(),
        terminal: phase == "Killed",
        rollback_incomplete: false,
        outcome: None,
        created_at,
        updated_at: i64::try_from(revision).unwrap(),
        revision,
        stages: vec![SharedStage {
            name: "fn".into(),
            target: "fn".into(),
            target_key: keys(&["checkout"]).remove(0),
            phase: "Progressing".into(),
            weight: 10,
            stable_version: Some("1".into()),
            new_version: Some("2".into()),
            moved: true,
        }],
    }
}

#[tokio::test]
async fn a_run_record_never_goes_backwards_and_the_first_stop_asked_stands() {
    let Some(url) = moto("a_run_record_never_goes_backwards_and_the_first_stop_asked_stands")
    else {
        return;
    };
    let backend = Backend::new(&url).await;
    let client = backend.client(&url).await;
    let (a, b) = (
        S3Runs::new(client.clone(), backend.location.clone()),
        S3Runs::new(client, backend.location.clone()),
    );
    assert_eq!(b.fetch("r-1").await.unwrap(), None);
    a.publish(&shared("r-1", 5, "Progressing")).await.unwrap();
    a.publish(&shared("r-2", 7, "Progressing")).await.unwrap();
    // A write delayed behind a newer one (a retry, a slow PC) is dropped.
    a.publish(&shared("r-1", 3, "Pending")).await.unwrap();
    let seen = b.fetch("r-1").await.unwrap().expect("the record");
    assert_eq!((seen.revision, seen.phase.as_str()), (5, "Progressing"));
    a.publish(&shared("r-1", 9, "Killed")).await.unwrap();
    assert!(b.fetch("r-1").await.unwrap().unwrap().terminal);

    assert_eq!(b.stop_asked("r-1").await.unwrap(), None);
    let kill = StopAsked {
        ask: StopAsk::Kill,
        by: "bob@pc-b".into(),
        at: 1,
    };
    let abort = StopAsked {
        ask: StopAsk::Abort,
        by: "carol@pc-c".into(),
        at: 2,
    };
    assert_eq!(b.ask_stop("r-1", &kill).await.unwrap(), kill);
    assert_eq!(
        b.ask_stop("r-1", &abort).await.unwrap(),
        kill,
        "a later ask does not replace the first"
    );
    assert_eq!(a.stop_asked("r-1").await.unwrap(), Some(kill));

    let listed: Vec<String> = b.runs().await.unwrap().into_iter().map(|r| r.run).collect();
    assert_eq!(
        listed,
        ["r-2", "r-1"],
        "newest first, stop requests not listed"
    );
    let refused = b.fetch("../locks/x").await.unwrap_err();
    assert!(refused.to_string().contains("not a run ID"), "{refused}");
}

#[tokio::test]
async fn another_pc_takes_a_run_over_only_once_its_lease_ran_out() {
    let Some(url) = moto("another_pc_takes_a_run_over_only_once_its_lease_ran_out") else {
        return;
    };
    let backend = Backend::new(&url).await;
    let short = Duration::from_secs(1);
    let (a, b) = (backend.pc(short).await, backend.pc(short).await);
    let target = keys(&["ledger"]);
    a.acquire(&target, &owner("run-a", "pc-a")).await.unwrap();
    // The same run from another PC while pc-a still renews: refused.
    let refused = b
        .acquire(&target, &owner("run-a", "pc-b"))
        .await
        .unwrap_err();
    assert!(matches!(refused, TeamLockError::Held { .. }), "{refused}");
    tokio::time::sleep(Duration::from_millis(1300)).await;
    b.acquire(&target, &owner("run-a", "pc-b")).await.unwrap();
    let record = b.inspect(&target[0]).await.unwrap().unwrap();
    assert_eq!(record.owner.pc, "pc-b");
    // pc-a, back, renews no more: the lock is pc-b's now.
    let lost = a.renew(&target, &owner("run-a", "pc-a")).await.unwrap_err();
    assert!(matches!(lost, TeamLockError::Lost { .. }), "{lost}");
    // Nor does its release free pc-b's hold.
    a.release(&target, &owner("run-a", "pc-a")).await.unwrap();
    assert!(!b.inspect(&target[0]).await.unwrap().unwrap().released);
}

#[tokio::test]
async fn under_faults_a_run_record_never_goes_backwards() {
    let test = "under_faults_a_run_record_never_goes_backwards";
    let (Some(url), Some(proxy)) = (moto(test), emulator("DEPLOYCTL_TEST_FAULTS_URL", test)) else {
        return;
    };
    let backend = Backend::new(&url).await;
    let driver = S3Runs::new(backend.client(&proxy).await, backend.location.clone());
    let reader = S3Runs::new(backend.client(&url).await, backend.location.clone());
    faults(
        &proxy,
        &format!(
            r#"{{"account": "{}", "rate": 0.2, "seed": 5, "kinds": ["throttle", "5xx", "reset"]}}"#,
            backend.account.0
        ),
    );
    let mut newest = 0;
    for revision in (10..=300).step_by(10) {
        // The driving PC's write, then a late retry of an older one.
        if driver
            .publish(&shared("r-1", revision, "Progressing"))
            .await
            .is_ok()
        {
            newest = revision;
        }
        let _ = driver
            .publish(&shared("r-1", revision - 5, "Pending"))
            .await;
        let seen = reader.fetch("r-1").await.unwrap().expect("the record");
        assert!(
            seen.revision >= newest && seen.phase == "Progressing",
            "revision {} after {newest} was written",
            seen.revision
        );
    }
    assert!(newest >= 290, "the record kept up under faults: {newest}");
    let calls = calls(&proxy, &backend.account.0);
    assert!(
        calls.iter().filter(|c| !c["fault"].is_null()).count() >= 10,
        "the proxy injected faults"
    );
}
