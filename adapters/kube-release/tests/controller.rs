//! The Release client against the test Kubernetes API server
//! (`tests/emulators/kubeapi.py`) over HTTP with the real kube client:
//! CRD install and Established, status writes fenced by resourceVersion
//! and by the lease, concurrent approval appends, the rollback finalizer
//! and leader election between two replicas.
//!
//! `bash tests/moto.sh -- cargo test -p deployctl-kube-release --test
//! controller`; without `DEPLOYCTL_TEST_KUBEAPI_URL` every test is skipped
//! with a message. Each test works in its own namespace.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use deployctl_kube_release::crd::FINALIZER;
use deployctl_kube_release::{
    ApprovalEntry, KubeReleaseError, Leadership, Release, ReleasePhase, ReleaseSpec, ReleaseStatus,
    Releases, ensure_crd,
};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client, Config, ResourceExt};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A client for the test server and a fresh namespace, or `None` (the
/// test is skipped) when the server is not running.
async fn setup(label: &str) -> Result<Option<(Client, String)>, Box<dyn std::error::Error>> {
    let Ok(url) = std::env::var("DEPLOYCTL_TEST_KUBEAPI_URL") else {
        eprintln!(
            "skipped: DEPLOYCTL_TEST_KUBEAPI_URL is not set (run through `bash tests/moto.sh -- cargo test …`)"
        );
        return Ok(None);
    };
    let client = Client::try_from(Config::new(url.parse()?))?;
    static COUNT: AtomicU32 = AtomicU32::new(0);
    let namespace = format!(
        "{label}-{}-{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed)
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let object = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    namespaces.create(&PostParams::default(), &object).await?;
    ensure_crd(&client, true, Duration::from_secs(30)).await?;
    Ok(Some((client, namespace)))
}

fn release(name: &str) -> Release {
    let mut release = Release::new(
        name,
        ReleaseSpec::of_plan("apiVersion: deployctl.io/v1\nkind: Plan\n"),
    );
    release
        .annotations_mut()
        .insert("deployctl.io/initiator".into(), "alice".into());
    release
}

fn running(message: &str) -> ReleaseStatus {
    ReleaseStatus {
        phase: Some(ReleasePhase::Progressing),
        message: Some(message.into()),
        ..ReleaseStatus::default()
    }
}

#[tokio::test]
async fn the_crd_installs_once_and_is_served_after_established() -> TestResult {
    let Some((client, namespace)) = setup("crd").await? else {
        return Ok(());
    };
    // A second install (another replica starting) is a no-op apply.
    ensure_crd(&client, true, Duration::from_secs(30)).await?;
    ensure_crd(&client, false, Duration::from_secs(5)).await?;
    let releases = Releases::new(client, &namespace);
    let created = releases.create(&release("first")).await?;
    assert_eq!(created.metadata.generation, Some(1));
    let listed = releases.list().await?;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name_any(), "first");
    Ok(())
}

#[tokio::test]
async fn a_status_write_from_a_stale_read_is_recomputed_not_lost() -> TestResult {
    let Some((client, namespace)) = setup("fence").await? else {
        return Ok(());
    };
    let releases = Releases::new(client, &namespace);
    let stale = releases.create(&release("r")).await?;
    // Someone changes the spec after our read: our RV is stale.
    let index = releases
        .append_approval(
            "r",
            &ApprovalEntry {
                gate: "g".into(),
                user: "bob".into(),
                code: Some("123456".into()),
                at: None,
                reject: false,
                reason: None,
            },
        )
        .await?;
    assert_eq!(index, 0);
    let computed = AtomicU32::new(0);
    let written = releases
        .write_status(
            &stale,
            |current| {
                computed.fetch_add(1, Ordering::Relaxed);
                // Recomputed from what the object is now.
                let seen = current.spec.approvals.len();
                Some(running(&format!("{seen} approvals seen")))
            },
            || true,
        )
        .await?
        .ok_or("a status was written")?;
    assert_eq!(computed.load(Ordering::Relaxed), 2, "one 409, one retry");
    let status = written.status.ok_or("status")?;
    assert_eq!(status.message.as_deref(), Some("1 approvals seen"));
    // The spec write survived the status write (the subresource).
    let now = releases.get("r").await?.ok_or("release")?;
    assert_eq!(now.spec.approvals.len(), 1);
    assert_eq!(now.status, Some(status));
    // Nothing changed: nothing is sent.
    let again = releases
        .write_status(
            &now,
            |current| deployctl_kube_release::changed(current, running("1 approvals seen")),
            || true,
        )
        .await?;
    assert!(again.is_none());
    Ok(())
}

#[tokio::test]
async fn a_deposed_leader_writes_no_status() -> TestResult {
    let Some((client, namespace)) = setup("deposed").await? else {
        return Ok(());
    };
    let releases = Releases::new(client, &namespace);
    let created = releases.create(&release("r")).await?;
    let result = releases
        .write_status(&created, |_| Some(running("from the old leader")), || false)
        .await;
    assert!(
        matches!(result, Err(KubeReleaseError::NotLeader { .. })),
        "{result:?}"
    );
    let now = releases.get("r").await?.ok_or("release")?;
    assert_eq!(now.status, None);
    Ok(())
}

#[tokio::test]
async fn concurrent_approvals_are_all_appended_each_at_its_own_index() -> TestResult {
    let Some((client, namespace)) = setup("appends").await? else {
        return Ok(());
    };
    let releases = Releases::new(client, &namespace);
    releases.create(&release("r")).await?;
    let mut tasks = Vec::new();
    for n in 0..6 {
        let releases = releases.clone();
        tasks.push(tokio::spawn(async move {
            let entry = ApprovalEntry {
                gate: "g".into(),
                user: format!("user{n}"),
                code: Some(format!("{n:06}")),
                at: None,
                reject: n == 5,
                reason: (n == 5).then(|| "no".to_string()),
            };
            releases.append_approval("r", &entry).await
        }));
    }
    let mut indexes = Vec::new();
    for task in tasks {
        indexes.push(task.await??);
    }
    indexes.sort_unstable();
    assert_eq!(indexes, [0, 1, 2, 3, 4, 5]);
    let now = releases.get("r").await?.ok_or("release")?;
    let mut users: Vec<String> = now.spec.approvals.iter().map(|a| a.user.clone()).collect();
    users.sort();
    assert_eq!(
        users,
        ["user0", "user1", "user2", "user3", "user4", "user5"]
    );
    assert!(now.spec.approvals.iter().any(|a| a.reject));
    Ok(())
}

#[tokio::test]
async fn the_finalizer_holds_a_deleted_release_until_removed() -> TestResult {
    let Some((client, namespace)) = setup("finalizer").await? else {
        return Ok(());
    };
    let releases = Releases::new(client.clone(), &namespace);
    let created = releases.create(&release("r")).await?;
    let added = releases.add_finalizer(&created).await?.ok_or("patched")?;
    assert_eq!(added.finalizers(), [FINALIZER.to_string()]);
    // From the stale object too: checked against the server, not added twice.
    assert!(releases.add_finalizer(&created).await?.is_none());
    assert!(releases.add_finalizer(&added).await?.is_none());
    let held = releases.get("r").await?.ok_or("release")?;
    assert_eq!(held.finalizers(), [FINALIZER.to_string()]);
    let api: Api<Release> = Api::namespaced(client, &namespace);
    api.delete("r", &DeleteParams::default()).await?;
    let deleting = releases.get("r").await?.ok_or("still there")?;
    assert!(deleting.metadata.deletion_timestamp.is_some());
    releases.remove_finalizer(&deleting).await?;
    assert!(releases.get("r").await?.is_none());
    // Removing it again (a second controller, a retry) is harmless.
    assert!(releases.remove_finalizer(&deleting).await?.is_none());
    Ok(())
}

#[tokio::test]
async fn only_one_of_two_replicas_leads_and_the_other_takes_over() -> TestResult {
    let Some((client, namespace)) = setup("lease").await? else {
        return Ok(());
    };
    let first = Leadership::start(client.clone(), &namespace, "ctl", "replica-a", 2).await?;
    let second = Leadership::start(client.clone(), &namespace, "ctl", "replica-b", 2).await?;
    let leaders = |a: &Leadership, b: &Leadership| {
        (
            *a.is_leader.borrow() as u8 + *b.is_leader.borrow() as u8,
            *a.is_leader.borrow(),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while leaders(&first, &second).0 == 0 {
        assert!(Instant::now() < deadline, "nobody took the lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Never two at once, for a few renewal periods.
    let both = Arc::new(AtomicBool::new(false));
    for _ in 0..40 {
        if leaders(&first, &second).0 > 1 {
            both.store(true, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!both.load(Ordering::Relaxed), "two leaders at once");
    let (leader, follower) = if leaders(&first, &second).1 {
        (first, second)
    } else {
        (second, first)
    };
    leader.release(Duration::from_secs(5)).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    while !*follower.is_leader.borrow() {
        assert!(Instant::now() < deadline, "the follower never took over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    follower.release(Duration::from_secs(5)).await;
    Ok(())
}
