//! `deployctl-controller`: the in-cluster GitOps controller (R12), joining
//! the Release resources (`deployctl-kube-release`, its Kubernetes edge) to
//! the engine. Start at [`run`]; what it needs from the binary — the
//! adapters for a plan, the journal with its audit trail, the approval
//! check's surroundings — is [`Wiring`].
//!
//! Expected flow: install (or check) the Release CRD → contend for the
//! Lease; only the holder reconciles → watch the namespace's Releases.
//! A Release without a run has its `spec.plan` validated (invalid: status
//! `Invalid` with `release/NS/NAME:LINE:COL` diagnostics, nothing touched),
//! its initiator checked (the `deployctl.io/initiator` annotation; an
//! operator of a protected environment), the rollback finalizer added and a
//! run created exactly as `apply` creates one (same journal, audit trail
//! and wiring), then driven in the background. Releases wait in a work
//! queue (once each, however often asked for) and up to
//! `--concurrent-reconciles` of them are reconciled at once, never one
//! Release by two workers. Every half second each Release whose run has
//! not ended has its status recomputed from the journal and written when
//! it changed; settled ones (run ended, status and finalizer current) are
//! passed by until they change, and looked at again every 30 s. Approval entries in `spec.approvals` are verified here, by the
//! same function `deployctl approve RUN` uses, and their verdicts kept in
//! the journal and mirrored into `status.approvals`; rollout verbs in
//! `spec.requests` (pause, promote, promote --full, abort, retry) are
//! judged the same way (`requests.rs`).
//!
//! Guarantees: a run is created at most once per Release, and once per
//! accepted `retry` request (found again by its journal key
//! `release/NS/NAME#UID`, or `…#retry-INDEX`, even when the status write
//! that names it was lost); a controller that restarts, or a new leader sharing
//! the state directory, resumes unfinished runs from the journal; a
//! controller that loses the lease cancels its runs at their next await
//! (cancellation-safe by the adapter contract) and writes no more status.
//! Deleting a Release whose run has not ended kills the run (rollback)
//! before the finalizer lets the object go.
//!
//! Assumptions: the state directory (journal, audit trail, MFA store,
//! access file) is on a volume that follows the leader; the initiator
//! annotation is trustworthy (see docs/runbook.md: in a real cluster an
//! admission policy must pin it to the requesting user).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deployctl_audit::{Action as AuditAction, Outcome, What};
use deployctl_engine::event::{Event, Verdict as JournalVerdict};
use deployctl_engine::executor::{Engine, EngineError, EngineOptions, RunContext};
use deployctl_engine::journal::{EventRecord, Journal, RunRecord, StageRecord};
use deployctl_engine::progress::ProgressSink;
use deployctl_engine::start::RunRequest;
use deployctl_engine::state::{RunMode, RunPhase, StagePhase};
use deployctl_kube_release::kube::ResourceExt;
use deployctl_kube_release::{
    ApprovalEntry, ApprovalVerdict, Change, GateStatus, Leadership, MeasuringGate, PendingApproval,
    Release, ReleasePhase, ReleaseStatus, Releases, StageStatus, Verdict,
    crd::INITIATOR_ANNOTATION,
};
use tokio::sync::watch;
use tokio::task::JoinSet;

use deployctl_approvals::{Decision, Refusal, Submission, Surroundings};
use deployctl_plan::ValidatedPlan;
use deployctl_trail::{Caller, Seal, Trail};

mod drivers;
mod queue;
mod requests;
pub mod telemetry;
use drivers::Drivers;
use queue::Queue;
use telemetry::{Metrics, Serves};

/// What the controller needs from the binary that wires concrete
/// adapters in. Methods that build clients block; the controller calls
/// them off its async workers.
pub trait Wiring: Send + Sync + 'static {
    /// The journal in the state directory with the audit trail attached
    /// (the binary chooses the trail's sink).
    fn open(&self) -> Result<(Arc<Journal>, Trail), String>;

    /// The context of a new run of `plan` (its adapters, probes and
    /// channels), `plan_key` naming where the plan came from; the AWS
    /// principal is resolved into `caller` when the plan calls AWS.
    fn new_run(
        &self,
        run_id: &str,
        plan: &ValidatedPlan,
        plan_key: &str,
        caller: &Caller,
    ) -> Result<RunContext, String>;

    /// The context of a run the journal holds (resuming, rolling back).
    fn recorded_run(&self, run: &RunRecord, caller: &Caller) -> Result<RunContext, String>;

    /// What the approval check needs from around it.
    fn approvals(&self) -> &dyn Surroundings;
}

/// Why the controller stopped.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ControllerError(String);

/// How often every unsettled Release's status is recomputed.
const RESYNC: Duration = Duration::from_millis(500);

/// How often a settled Release (its run ended, its status and finalizer
/// say so) is looked at again although nothing about it changed.
const SETTLED_RESYNC: Duration = Duration::from_secs(30);

/// The longest one reconcile may take unless told otherwise
/// (`--reconcile-timeout`). Each is a handful of API calls and journal
/// reads; one that takes longer is waiting on an answer that will not
/// come (kube's client has no read timeout, so that watches can idle),
/// and holds a worker and the Release's place in the queue until it gives
/// up. Cancelled there, it is retried at the next resync, as after a
/// crash at the same point.
pub const RECONCILE_TIMEOUT_SECS: u16 = 30;

/// How many Releases the leader reconciles at once unless told otherwise
/// (`--concurrent-reconciles`; Argo Rollouts' `--rollout-threads` is 10).
pub const CONCURRENT_RECONCILES: u16 = 10;

/// `deployctl controller` flags.
pub struct Options {
    pub kubeconfig: Option<PathBuf>,
    pub namespace: Option<String>,
    pub state_dir: PathBuf,
    pub access_file: PathBuf,
    pub lease_name: String,
    pub lease_duration: u64,
    pub identity: Option<String>,
    pub install_crd: bool,
    /// How many Releases are reconciled at once (at least 1).
    pub concurrent_reconciles: usize,
    /// The longest one reconcile may take before it is cancelled and
    /// retried.
    pub reconcile_timeout: Duration,
    /// Where `/metrics` is served (none: not served).
    pub metrics_address: Option<std::net::SocketAddr>,
    /// Where `/healthz` and `/readyz` are served (none: not served).
    pub health_address: Option<std::net::SocketAddr>,
}

/// `deployctl controller`: runs until SIGINT/SIGTERM.
pub async fn run(options: &Options, wiring: Arc<dyn Wiring>) -> Result<(), ControllerError> {
    controller(options, wiring).await.map_err(ControllerError)
}

/// What every reconcile shares.
struct Shared {
    releases: Releases,
    journal: Arc<Journal>,
    audit: Trail,
    wiring: Arc<dyn Wiring>,
    engine: Arc<Engine>,
    state_dir: PathBuf,
    access_file: PathBuf,
    identity: String,
    metrics: Arc<Metrics>,
    reconcile_timeout: Duration,
    /// The runtime the runs' drivers run on (see [`RunsRuntime`]).
    runs: tokio::runtime::Handle,
}

/// The runtime of the runs' drivers, apart from the one that watches and
/// reconciles: a run blocks its thread while the journal commits (SQLite
/// `fsync`s) and while a simulated target writes its file, and a thousand
/// runs doing so would leave the reconciles waiting for a thread. One
/// worker is enough: the journal takes one commit at a time anyway, and
/// the adapters' calls are I/O.
struct RunsRuntime {
    /// Taken when dropped (see `Drop`).
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl RunsRuntime {
    fn start() -> Result<RunsRuntime, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("run-driver")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the runs' runtime: {e}"))?;
        Ok(RunsRuntime {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }
}

impl Drop for RunsRuntime {
    fn drop(&mut self) {
        // Dropped inside the controller's own runtime, where waiting for
        // its threads is not allowed; a run left here resumes from the
        // journal.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Resolves when SIGINT or SIGTERM arrives (Kubernetes stops pods with
/// SIGTERM).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn controller(options: &Options, wiring: Arc<dyn Wiring>) -> Result<(), String> {
    // Served first: the kubelet's liveness probe must answer while the
    // CRD check and leader election wait.
    let metrics = Arc::new(Metrics::default());
    if let Some(address) = options.metrics_address {
        let bound = telemetry::serve(address, Serves::Metrics, Arc::clone(&metrics)).await?;
        eprintln!("controller: metrics on http://{bound}/metrics");
    }
    if let Some(address) = options.health_address {
        let bound = telemetry::serve(address, Serves::Probes, Arc::clone(&metrics)).await?;
        eprintln!("controller: probes on http://{bound}/healthz and /readyz");
    }
    let client = deployctl_kube_release::client(options.kubeconfig.as_deref())
        .await
        .map_err(|e| e.to_string())?;
    let namespace = options
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    deployctl_kube_release::ensure_crd(&client, options.install_crd, Duration::from_secs(60))
        .await
        .map_err(|e| e.to_string())?;
    let (journal, audit) = wiring.open()?;
    let identity = options.identity.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            deployctl_engine::run::host_name(),
            std::process::id()
        )
    });
    let leadership = Leadership::start(
        client.clone(),
        &namespace,
        &options.lease_name,
        &identity,
        options.lease_duration,
    )
    .await
    .map_err(|e| e.to_string())?;
    eprintln!(
        "controller {identity}: Releases in namespace {namespace}; state in {}; waiting for lease {}",
        options.state_dir.display(),
        options.lease_name
    );
    metrics.set_ready();
    let (progress, mut events) = tokio::sync::mpsc::unbounded_channel();
    {
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                metrics.progress(&event);
            }
        });
    }
    let runs = RunsRuntime::start()?;
    let shared = Arc::new(Shared {
        runs: runs.handle.clone(),
        releases: Releases::new(client, &namespace),
        engine: Arc::new(Engine::new(
            journal.clone(),
            EngineOptions::default(),
            ProgressSink::new(progress),
        )),
        metrics: Arc::clone(&metrics),
        journal,
        audit: audit.clone(),
        wiring,
        state_dir: options.state_dir.clone(),
        access_file: options.access_file.clone(),
        identity: identity.clone(),
        reconcile_timeout: options.reconcile_timeout,
    });
    let result = loop {
        let mut is_leader = leadership.is_leader.clone();
        tokio::select! {
            changed = is_leader.wait_for(|leading| *leading) => {
                if changed.is_err() {
                    break Err("leader election stopped".to_string());
                }
            }
            _ = shutdown_signal() => break Ok(()),
        }
        eprintln!("controller {identity}: leading");
        metrics.set_leader(true);
        let mut watching = is_leader.clone();
        tokio::select! {
            ended = lead(&shared, is_leader.clone(), options.concurrent_reconciles.max(1)) => break ended,
            _ = watching.wait_for(|leading| !*leading) => {
                // The runs were cancelled with `lead`; the next leader
                // resumes them from the journal.
                eprintln!("controller {identity}: lost the lease; stopped starting work and cancelled this replica's runs");
                metrics.set_leader(false);
            }
            _ = shutdown_signal() => break Ok(()),
        }
    };
    eprintln!("controller {identity}: stopping; unfinished runs resume from the journal");
    leadership.release(Duration::from_secs(5)).await;
    drop(runs);
    drop(Seal(audit));
    result
}

/// What the leader keeps while leading; dropping it stops its runs'
/// drivers (they resume from the journal under the next leader).
struct Leading {
    /// The watch's view of every Release, with this replica's own writes.
    cache: BTreeMap<String, Release>,
    queue: Queue,
    drivers: Arc<Drivers>,
    /// Releases with nothing left to do, by the `resourceVersion` they
    /// were found so at: the fast resync passes them by until they change.
    settled: HashMap<String, String>,
    /// The last problem logged per Release, so a lasting one is logged
    /// once rather than every resync.
    logged: HashMap<String, String>,
}

impl Drop for Leading {
    fn drop(&mut self) {
        self.drivers.stop();
    }
}

impl Leading {
    fn new(drivers: Drivers) -> Leading {
        Leading {
            cache: BTreeMap::new(),
            queue: Queue::default(),
            drivers: Arc::new(drivers),
            settled: HashMap::new(),
            logged: HashMap::new(),
        }
    }

    fn is_settled(&self, name: &str) -> bool {
        let cached = self.cache.get(name).and_then(|r| r.resource_version());
        cached.is_some() && self.settled.get(name) == cached.as_ref()
    }

    /// Queues `name` unless it is settled at the version cached.
    fn ask(&mut self, name: &str) {
        if !self.is_settled(name) {
            self.queue.push(name);
        }
    }

    /// Takes in one reconcile's result; `from` is the `resourceVersion`
    /// it started from.
    fn finish(
        &mut self,
        namespace: &str,
        name: &str,
        from: Option<String>,
        outcome: Result<Reconciled, String>,
    ) {
        self.queue.done(name);
        match outcome {
            Ok(reconciled) => {
                self.logged.remove(name);
                // The object as written replaces the cached one only when
                // the watch brought nothing newer meanwhile; when it did,
                // that change queued the Release again.
                let current = self.cache.get(name).and_then(|r| r.resource_version());
                let mut settled_at = from.clone();
                if let Some(written) = reconciled.written
                    && current == from
                {
                    settled_at = written.resource_version();
                    self.cache.insert(name.to_string(), written);
                }
                match settled_at.filter(|_| reconciled.settled) {
                    Some(version) => {
                        self.settled.insert(name.to_string(), version);
                        self.drivers.forget_finished(name);
                    }
                    None => {
                        self.settled.remove(name);
                    }
                }
            }
            Err(message) => {
                self.settled.remove(name);
                if self.logged.get(name) != Some(&message) {
                    eprintln!("warning: Release {namespace}/{name}: {message}");
                    self.logged.insert(name.to_string(), message);
                }
            }
        }
    }

    fn forget(&mut self, name: &str) {
        self.cache.remove(name);
        self.logged.remove(name);
        self.settled.remove(name);
        self.queue.forget(name);
        self.drivers.forget_finished(name);
    }

    /// Releases per status phase, for `/metrics`.
    fn phases(&self) -> BTreeMap<String, u64> {
        let mut phases = BTreeMap::new();
        for release in self.cache.values() {
            let phase = release
                .status
                .as_ref()
                .and_then(|s| s.phase)
                .unwrap_or(ReleasePhase::Pending);
            *phases.entry(format!("{phase:?}")).or_default() += 1;
        }
        phases
    }
}

/// What one reconcile of a Release found.
struct Reconciled {
    /// The object as this reconcile wrote it, when it wrote it.
    written: Option<Release>,
    /// Nothing is left to do until the Release or its run changes: the run
    /// ended (or never will start) and its status and finalizer say so.
    settled: bool,
}

impl Reconciled {
    fn unsettled(written: Option<Release>) -> Reconciled {
        Reconciled {
            written,
            settled: false,
        }
    }
}

/// The leader's loop: the watch and the resyncs queue Releases, and up to
/// `workers` of them are reconciled at once, each by one worker at a time.
async fn lead(
    shared: &Arc<Shared>,
    is_leader: watch::Receiver<bool>,
    workers: usize,
) -> Result<(), String> {
    let mut leading = Leading::new(Drivers::on(shared.runs.clone()));
    // Declared after `leading`, so dropped first: its reconciles are
    // aborted before the drivers stop, and a reconcile that still reaches
    // its driver finds the set closed.
    let mut reconciles: JoinSet<Result<Reconciled, String>> = JoinSet::new();
    let mut running: HashMap<tokio::task::Id, (String, Option<String>)> = HashMap::new();
    let mut changes = shared.releases.changes();
    let mut resync = tokio::time::interval(RESYNC);
    let mut settled_resync = Instant::now();
    let namespace = shared.releases.namespace().to_string();
    loop {
        while reconciles.len() < workers {
            let Some(name) = leading.queue.pop() else {
                break;
            };
            let Some(release) = leading.cache.get(&name).cloned() else {
                leading.queue.done(&name);
                continue;
            };
            let from = release.resource_version();
            let (shared, drivers, is_leader) = (
                Arc::clone(shared),
                Arc::clone(&leading.drivers),
                is_leader.clone(),
            );
            let task = reconciles.spawn(async move {
                let started = Instant::now();
                let outcome = tokio::time::timeout(
                    shared.reconcile_timeout,
                    reconcile(&shared, &drivers, &release, &is_leader),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(format!(
                        "its reconcile did not finish within {} s (a request left unanswered); cancelled, and retried at the next resync",
                        shared.reconcile_timeout.as_secs()
                    ))
                });
                // A failed reconcile counts with the writers: it is most
                // often a write the API server did not take.
                let wrote = !matches!(&outcome, Ok(reconciled) if reconciled.written.is_none());
                shared.metrics.reconciled(started.elapsed(), wrote);
                outcome
            });
            running.insert(task.id(), (name, from));
        }
        shared.metrics.queue_depth(leading.queue.depth());
        tokio::select! {
            change = changes.next() => match change {
                Some(Change::Applied(release)) => {
                    let name = release.name_any();
                    leading.cache.insert(name.clone(), *release);
                    leading.ask(&name);
                }
                Some(Change::Deleted(release)) => leading.forget(&release.name_any()),
                Some(Change::WatchError(error)) => {
                    eprintln!("warning: watching Releases: {error} (retrying)");
                }
                None => return Err("the Release watch ended".into()),
            },
            Some(joined) = reconciles.join_next_with_id() => {
                let (id, outcome) = match joined {
                    Ok((id, outcome)) => (id, outcome),
                    Err(error) => (error.id(), Err(format!("its reconcile stopped: {error}"))),
                };
                if let Some((name, from)) = running.remove(&id) {
                    leading.finish(&namespace, &name, from, outcome);
                }
            }
            _ = resync.tick() => {
                // Settled Releases too, now and then: their journal may
                // still change (a `deployctl rollback RUN` on this state).
                if settled_resync.elapsed() >= SETTLED_RESYNC {
                    leading.settled.clear();
                    settled_resync = Instant::now();
                }
                let due: Vec<String> = leading
                    .cache
                    .keys()
                    .filter(|name| !leading.is_settled(name))
                    .cloned()
                    .collect();
                for name in due {
                    leading.queue.push(&name);
                }
                shared.metrics.phases(leading.phases());
            }
        }
    }
}

/// The journal key of a Release's run: its plan "file".
fn run_key(namespace: &str, release: &Release) -> String {
    format!(
        "{}#{}",
        deployctl_kube_release::plan::source_name(namespace, &release.name_any()),
        release.uid().unwrap_or_default()
    )
}

/// The run of this Release, if one was ever created.
fn find_run(shared: &Shared, release: &Release) -> Result<Option<RunRecord>, String> {
    if let Some(id) = release.status.as_ref().and_then(|s| s.run_id.as_deref())
        && let Ok(run) = shared.journal.run(id)
    {
        return newest_retry(shared, run).map(Some);
    }
    let key = run_key(shared.releases.namespace(), release);
    let first = shared
        .journal
        .run_of_plan_file(&key)
        .map_err(|e| e.to_string())?;
    first.map(|run| newest_retry(shared, run)).transpose()
}

/// The newest run that starts `run` again (`retry` requests), or `run`.
fn newest_retry(shared: &Shared, mut run: RunRecord) -> Result<RunRecord, String> {
    while let Some(newer) = shared
        .journal
        .retries_of(&run.id)
        .map_err(|e| e.to_string())?
        .pop()
    {
        run = shared.journal.run(&newer).map_err(|e| e.to_string())?;
    }
    Ok(run)
}

/// The journal events of `run` and of every run it retries: where the
/// verdicts on the Release's approval and request entries are kept, so
/// an entry judged for an earlier run is never judged again. `own` are
/// `run`'s own events, when already read.
pub(crate) fn release_events(
    shared: &Shared,
    run: &RunRecord,
    own: Option<Vec<EventRecord>>,
) -> Result<Vec<EventRecord>, String> {
    let mut events = match own {
        Some(events) => events,
        None => shared.journal.events(&run.id).map_err(|e| e.to_string())?,
    };
    let mut older = run.retry_of.clone();
    while let Some(id) = older {
        let run = shared.journal.run(&id).map_err(|e| e.to_string())?;
        events.extend(shared.journal.events(&id).map_err(|e| e.to_string())?);
        older = run.retry_of;
    }
    Ok(events)
}

/// One Release, once: start its run, resume it, verify new approvals,
/// handle deletion, and mirror the journal into its status.
async fn reconcile(
    shared: &Arc<Shared>,
    drivers: &Drivers,
    release: &Release,
    is_leader: &watch::Receiver<bool>,
) -> Result<Reconciled, String> {
    let name = release.name_any();
    let run = find_run(shared, release)?;
    let deleting = release.metadata.deletion_timestamp.is_some();
    let Some(run) = run else {
        if let Some(id) = release.status.as_ref().and_then(|s| s.run_id.as_deref()) {
            // Started by a controller whose journal this one does not have
            // (a state directory that did not follow the leader): never
            // run a release twice; a human must look.
            return Err(format!(
                "its run {id} is not in this controller's journal ({}); the state directory must follow the leader. Nothing was started",
                shared.state_dir.display()
            ));
        }
        if deleting {
            let written = shared
                .releases
                .remove_finalizer(release)
                .await
                .map_err(|e| e.to_string())?;
            return Ok(Reconciled {
                written,
                settled: true,
            });
        }
        return match start(shared, drivers, release).await {
            Ok((run_id, with_finalizer)) => {
                let latest = with_finalizer.as_ref().unwrap_or(release);
                let status = status_of_run(shared, latest, &run_id)?;
                let written = write_status(shared, latest, status, is_leader).await?;
                Ok(Reconciled::unsettled(written.or(with_finalizer)))
            }
            // Invalid and refused Releases stay so until their spec
            // changes: nothing to do before then.
            Err(NotStarted::Status(status)) => {
                let verdict = format!(
                    "{}: {}",
                    status.phase.map(|p| format!("{p:?}")).unwrap_or_default(),
                    status.message.as_deref().unwrap_or_default()
                );
                let written = write_status(shared, release, status, is_leader).await?;
                if written.is_some() {
                    // Said once, when the verdict is new: the operator
                    // reading the controller's log learns why nothing ran.
                    eprintln!(
                        "Release {}/{name} not started: {verdict}",
                        shared.releases.namespace()
                    );
                }
                Ok(Reconciled {
                    written,
                    settled: true,
                })
            }
            Err(NotStarted::Retry(message)) => Err(message),
        };
    };
    let ended = run.phase.is_terminal();
    if !ended && !deleting {
        drive_if_idle(shared, drivers, &name, &run).await;
    }
    if !ended && deleting && !run.kill_requested {
        // R8: a release taken away mid-run is rolled back, not abandoned.
        shared
            .journal
            .request_stop(
                &run.id,
                deployctl_engine::journal::StopRequest::ReleaseDeleted,
            )
            .map_err(|e| e.to_string())?;
        eprintln!("Release {name} deleted: killing run {} (rollback)", run.id);
    }
    judge_approvals(shared, release, &run).await?;
    if let Some((retried, with_finalizer)) =
        requests::judge_requests(shared, drivers, release, &run).await?
    {
        // A `retry` started a new run: the Release now reports that one.
        let latest = with_finalizer.as_ref().unwrap_or(release);
        let status = status_of_run(shared, latest, &retried)?;
        let written = write_status(shared, latest, status, is_leader).await?;
        return Ok(Reconciled::unsettled(written.or(with_finalizer)));
    }
    let status = status_of_run(shared, release, &run.id)?;
    let written = write_status(shared, release, status, is_leader).await?;
    // A finished run has nothing left for a deletion to undo: let the
    // Release go whenever it is deleted, controller running or not.
    let latest = written.as_ref().unwrap_or(release);
    if ended
        && latest
            .finalizers()
            .iter()
            .any(|f| f == deployctl_kube_release::crd::FINALIZER)
    {
        let without = shared
            .releases
            .remove_finalizer(latest)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(Reconciled {
            written: without.or(written),
            settled: true,
        });
    }
    Ok(Reconciled {
        written,
        settled: ended,
    })
}

async fn write_status(
    shared: &Shared,
    release: &Release,
    status: ReleaseStatus,
    is_leader: &watch::Receiver<bool>,
) -> Result<Option<Release>, String> {
    let generation = release.metadata.generation;
    shared
        .releases
        .write_status(
            release,
            |current| {
                let mut status = status.clone();
                status.observed_generation = generation;
                deployctl_kube_release::changed(current, status)
            },
            || *is_leader.borrow(),
        )
        .await
        .map_err(|e| e.to_string())
}

/// A status for a Release that did not start: `Invalid` or `Refused`.
fn not_started(phase: ReleasePhase, message: String, diagnostics: Vec<String>) -> ReleaseStatus {
    ReleaseStatus {
        phase: Some(phase),
        message: Some(message),
        diagnostics,
        ..ReleaseStatus::default()
    }
}

/// The initiator a Release names, checked to be a plain user name.
fn initiator_of(release: &Release) -> Result<String, String> {
    let Some(value) = release.annotations().get(INITIATOR_ANNOTATION) else {
        return Err(format!(
            "no `{INITIATOR_ANNOTATION}` annotation: set it to the user who asked for this release (the committer), so that the four-eyes rule knows who may not approve it"
        ));
    };
    let user = value.trim();
    let plain = !user.is_empty()
        && user.len() <= 128
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if plain {
        Ok(user.to_string())
    } else {
        Err(format!(
            "annotation `{INITIATOR_ANNOTATION}`: `{}` is not a user name (letters, digits, `.`, `_`, `-`)",
            value.escape_debug()
        ))
    }
}

/// S1 for in-cluster runs: in an environment the access file protects,
/// the initiator must be one of its named operators.
fn operator_allowed(shared: &Shared, user: &str, environment: &str) -> Result<(), String> {
    if !shared.access_file.exists() {
        return Ok(());
    }
    let access = deployctl_policy::Access::load(&shared.access_file).map_err(|e| e.to_string())?;
    let decision = access.may(user, &deployctl_policy::Action::Apply, environment);
    if decision.allowed {
        return Ok(());
    }
    let what = What::new(AuditAction::PolicyDenied).detail(format!("apply in {environment}"));
    shared
        .audit
        .record_or_warn(user, what, Outcome::denied(decision.reason.clone()));
    Err(decision.reason)
}

/// Starts a Release's run: validation, initiator, operator check, wiring,
/// the finalizer, then the journal run and its driver. Returns the run ID
/// and the object as the finalizer patch left it, or why nothing started.
async fn start(
    shared: &Arc<Shared>,
    drivers: &Drivers,
    release: &Release,
) -> Result<(String, Option<Release>), NotStarted> {
    let namespace = shared.releases.namespace().to_string();
    let name = release.name_any();
    // Invalid and refused Releases stay so until their spec changes.
    if let Some(status) = &release.status
        && matches!(
            status.phase,
            Some(ReleasePhase::Invalid | ReleasePhase::Refused)
        )
        && status.observed_generation == release.metadata.generation
    {
        return Err(NotStarted::Status(status.clone()));
    }
    let loaded = deployctl_kube_release::plan::load(&namespace, &name, &release.spec.plan)
        .map_err(|diagnostics| {
            NotStarted::Status(not_started(
                ReleasePhase::Invalid,
                format!(
                    "the plan does not validate ({} problem(s)); nothing was touched",
                    diagnostics.len()
                ),
                diagnostics,
            ))
        })?;
    let refuse = |message: String| {
        let mut status = not_started(
            ReleasePhase::Refused,
            format!("{message}. Nothing was touched."),
            Vec::new(),
        );
        status.initiator = initiator_of(release).ok();
        NotStarted::Status(status)
    };
    let initiator = initiator_of(release).map_err(refuse)?;
    operator_allowed(shared, &initiator, &loaded.plan.metadata.environment).map_err(refuse)?;
    let launched = Launch {
        key: run_key(&namespace, release),
        initiator: &initiator,
        loaded: &loaded,
        retry_of: None,
    };
    launch(shared, drivers, release, &launched).await
}

/// A run about to be started for a Release: its journal key, who starts
/// it, its plan, and the run it starts again (a `retry` request).
pub(crate) struct Launch<'a> {
    pub(crate) key: String,
    pub(crate) initiator: &'a str,
    pub(crate) loaded: &'a deployctl_plan::Loaded,
    pub(crate) retry_of: Option<&'a str>,
}

/// Wires, guards with the finalizer, records and drives a Release's run.
/// Returns the run ID and the object as the finalizer patch left it, or
/// why nothing started.
pub(crate) async fn launch(
    shared: &Arc<Shared>,
    drivers: &Drivers,
    release: &Release,
    launched: &Launch<'_>,
) -> Result<(String, Option<Release>), NotStarted> {
    let namespace = shared.releases.namespace().to_string();
    let name = release.name_any();
    let Launch {
        key,
        initiator,
        loaded,
        retry_of,
    } = launched;
    let refuse = |message: String| {
        let mut status = not_started(
            ReleasePhase::Refused,
            format!("{message}. Nothing was touched."),
            Vec::new(),
        );
        status.initiator = Some(initiator.to_string());
        NotStarted::Status(status)
    };
    let key = key.clone();
    let plan = loaded.plan.clone();
    let wiring_key = key.clone();
    let caller = shared.audit.caller.clone();
    let wiring = shared.wiring.clone();
    let run_id = deployctl_engine::run::new_run_id();
    let wired_run = run_id.clone();
    let wired = tokio::task::spawn_blocking(move || {
        wiring.new_run(&wired_run, &plan, &wiring_key, &caller)
    })
    .await
    .map_err(|e| refuse(e.to_string()))?;
    let context = wired.map_err(refuse)?;
    // Before anything can move: deleting the Release must roll back.
    let with_finalizer = shared
        .releases
        .add_finalizer(release)
        .await
        .map_err(|e| NotStarted::Retry(format!("cannot add the rollback finalizer: {e}")))?;
    let source = loaded.source.text.clone().unwrap_or_default();
    let run_initiator = format!(
        "{initiator}@{}",
        deployctl_kube_release::plan::source_name(&namespace, &name)
    );
    // Preflight, the instance's capabilities and the target locks: a
    // refusal (another run holds a target, say) records no run and
    // refuses the Release, nothing touched.
    let request = RunRequest {
        plan_file: &key,
        plan_source: &source,
        initiator: &run_initiator,
        mode: RunMode::Apply,
    };
    match shared.engine.start(&context, &request).await {
        Ok(_) => {
            if let Some(old) = retry_of
                && let Err(error) = shared.journal.link_retry(&run_id, old)
            {
                // Repaired when the retry request is judged again.
                return Err(NotStarted::Retry(format!(
                    "run {run_id} started, not yet linked to run {old}: {error}"
                )));
            }
        }
        Err(EngineError::Refused(refusal)) => {
            deployctl_trail::audit_refusal(&shared.audit, &run_initiator, &context, &refusal);
            return Err(refuse(refusal.to_string()));
        }
        // The journal failed (busy, full): a run recorded before the
        // failure is found by its key next time, so retrying never starts
        // a second one.
        Err(EngineError::Journal(error)) => {
            return Err(NotStarted::Retry(format!("the journal: {error}")));
        }
        Err(error) => return Err(refuse(error.to_string())),
    }
    eprintln!("Release {namespace}/{name}: run {run_id} started by {initiator}");
    drive(shared, drivers, &name, context);
    Ok((run_id, with_finalizer))
}

/// Why a Release's run did not start.
pub(crate) enum NotStarted {
    /// For good, until the spec changes: the status says why (`Invalid`,
    /// `Refused`).
    Status(ReleaseStatus),
    /// Not yet: a passing failure (the API server, the journal), logged
    /// and retried at the next resync.
    Retry(String),
}

/// Drives `context` in the background, unless this replica stopped
/// leading (the run then resumes under the next leader).
fn drive(shared: &Arc<Shared>, drivers: &Drivers, name: &str, context: RunContext) {
    let engine = shared.engine.clone();
    let audit = shared.audit.clone();
    let run_id = context.run_id.clone();
    let label = format!("{}/{name}", shared.releases.namespace());
    let driver = async move {
        match engine.execute(&context).await {
            Ok(outcome) => eprintln!(
                "Release {label}: run {} {} — {}",
                context.run_id,
                outcome.phase.as_str(),
                outcome.message
            ),
            Err(error) => eprintln!("Release {label}: run {}: {error}", context.run_id),
        }
        // R10: each run's records end under a signed checkpoint and leave
        // the machine when it ends, as `apply` does.
        let _ = tokio::task::spawn_blocking(move || drop(Seal(audit))).await;
    };
    if !drivers.spawn(name, &run_id, driver) {
        eprintln!(
            "controller {}: stopped leading; run {run_id} of Release {name} resumes under the next leader",
            shared.identity
        );
    }
}

/// Resumes an unfinished run nobody drives (a restart, a new leader).
async fn drive_if_idle(shared: &Arc<Shared>, drivers: &Drivers, name: &str, run: &RunRecord) {
    if drivers.drives(name, &run.id) {
        return;
    }
    // Someone else drives it (a `deployctl resume` on a shared state dir).
    if run.owner_pid != Some(std::process::id()) && deployctl_engine::run::owner_alive(run) {
        return;
    }
    let record = run.clone();
    let caller = shared.audit.caller.clone();
    let wiring = shared.wiring.clone();
    let context = tokio::task::spawn_blocking(move || wiring.recorded_run(&record, &caller)).await;
    match context {
        Ok(Ok(context)) => {
            eprintln!(
                "controller {}: resuming run {} of Release {name} from the journal",
                shared.identity, run.id
            );
            drive(shared, drivers, name, context);
        }
        Ok(Err(message)) => eprintln!("warning: cannot resume run {}: {message}", run.id),
        Err(error) => eprintln!("warning: cannot resume run {}: {error}", run.id),
    }
}

/// A verdict as the Release's status says it, from the journal's.
pub(crate) fn from_journal(verdict: JournalVerdict) -> Verdict {
    match verdict {
        JournalVerdict::Accepted => Verdict::Accepted,
        JournalVerdict::Refused => Verdict::Refused,
    }
}

/// A verdict as the journal keeps it.
pub(crate) fn to_journal(verdict: Verdict) -> JournalVerdict {
    match verdict {
        Verdict::Accepted => JournalVerdict::Accepted,
        Verdict::Refused => JournalVerdict::Refused,
    }
}

/// Verdicts already reached on this run's Release approval entries, by
/// entry index.
fn verdicts(events: &[EventRecord]) -> BTreeMap<u32, ApprovalVerdict> {
    events
        .iter()
        .filter_map(|record| match record.event.clone() {
            Event::ReleaseApprovalVerdict {
                index,
                gate,
                user,
                kind,
                verdict,
                reason,
                at,
            } => Some(ApprovalVerdict {
                index,
                gate,
                user,
                kind,
                verdict: from_journal(verdict),
                reason,
                at,
            }),
            _ => None,
        })
        .map(|verdict| (verdict.index, verdict))
        .collect()
}

/// Verifies every approval entry that has no verdict yet, in order, with
/// the checks `deployctl approve RUN` makes; records accepted ones in the
/// journal (the run continues) and every verdict as a journal event. The
/// code itself is never copied anywhere.
async fn judge_approvals(
    shared: &Arc<Shared>,
    release: &Release,
    run: &RunRecord,
) -> Result<(), String> {
    // Most Releases carry no approvals: no journal read for them.
    if release.spec.approvals.is_empty() {
        return Ok(());
    }
    let events = release_events(shared, run, None)?;
    let decided = verdicts(&events);
    for (index, entry) in release.spec.approvals.iter().enumerate() {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        if decided.contains_key(&index) {
            continue;
        }
        let verdict = judge(shared, &run.id, index, entry).await;
        eprintln!(
            "Release {}/{}: {} by {} on `{}`: {:?}{}",
            shared.releases.namespace(),
            release.name_any(),
            verdict.kind,
            verdict.user,
            verdict.gate,
            verdict.verdict,
            verdict
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        let event = Event::ReleaseApprovalVerdict {
            index: verdict.index,
            gate: verdict.gate.clone(),
            user: verdict.user.clone(),
            kind: verdict.kind.clone(),
            verdict: to_journal(verdict.verdict),
            reason: verdict.reason.clone(),
            at: verdict.at.clone(),
        };
        shared
            .journal
            .append_run_event(&run.id, &event)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn judge(
    shared: &Arc<Shared>,
    run_id: &str,
    index: u32,
    entry: &ApprovalEntry,
) -> ApprovalVerdict {
    let shared_for_check = shared.clone();
    let run = run_id.to_string();
    let owned = entry.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let reason = owned.reason.clone().unwrap_or_default();
        let submission = Submission {
            run_id: &run,
            gate: &owned.gate,
            user: &owned.user,
            decision: if owned.reject {
                Decision::Reject { reason: &reason }
            } else {
                Decision::Approve
            },
        };
        let code = || {
            owned.code.clone().ok_or_else(|| {
                Refusal::Denied("the entry has no one-time MFA code (`--code`)".into())
            })
        };
        deployctl_approvals::submit(
            shared_for_check.journal.as_ref(),
            &shared_for_check.audit,
            &submission,
            code,
            &shared_for_check.access_file,
            shared_for_check.wiring.approvals(),
        )
    })
    .await;
    let (verdict, reason) = match checked {
        Ok(Ok(())) => (Verdict::Accepted, None),
        // Recorded before (a verdict whose status write was lost): it
        // stands as accepted; it is not counted twice.
        Ok(Err(refusal @ deployctl_approvals::Refusal::AlreadyDone(_))) => {
            (Verdict::Accepted, Some(refusal.to_string()))
        }
        Ok(Err(refusal)) => (Verdict::Refused, Some(refusal.to_string())),
        Err(error) => (
            Verdict::Refused,
            Some(format!("the check did not finish: {error}")),
        ),
    };
    ApprovalVerdict {
        index,
        gate: entry.gate.clone(),
        user: entry.user.clone(),
        kind: if entry.reject { "reject" } else { "approve" }.to_string(),
        verdict,
        reason,
        at: Some(deployctl_time::format_ms(deployctl_time::now_ms())),
    }
}

/// The status the journal says a Release's run has.
fn status_of_run(
    shared: &Shared,
    release: &Release,
    run_id: &str,
) -> Result<ReleaseStatus, String> {
    let journal = &shared.journal;
    let run = journal.run(run_id).map_err(|e| e.to_string())?;
    let stages = journal.stages(run_id).map_err(|e| e.to_string())?;
    let events = journal.events(run_id).map_err(|e| e.to_string())?;
    let paused = stages.iter().find(|s| s.phase == StagePhase::Paused);
    let mut phase = ReleasePhase::parse(run.phase.as_str()).unwrap_or(ReleasePhase::Pending);
    // Held by a `pause` request: the run stands where it is until promoted.
    let held = run.held && !run.phase.is_terminal();
    if run.phase == RunPhase::Progressing && (paused.is_some() || held) {
        phase = ReleasePhase::Paused;
    }
    let message = if run.rollback_incomplete {
        Some(format!(
            "ROLLBACK INCOMPLETE: a human must act (`deployctl rollback {run_id}` on the controller's state)"
        ))
    } else if run.phase.is_terminal() {
        run.outcome.clone()
    } else if held {
        Some(
            "held by `deployctl pause`: each stage stands before its next step, gates watching; `deployctl promote --release` moves it on"
                .to_string(),
        )
    } else {
        paused
            .and_then(|s| s.detail.clone())
            .or_else(|| stages.iter().rev().find_map(|s| s.detail.clone()))
    };
    let mut pending: BTreeMap<String, PendingApproval> = BTreeMap::new();
    if !run.phase.is_terminal() {
        for record in &events {
            let Event::ApprovalRequested {
                approval: gate,
                role,
                required,
            } = &record.event
            else {
                continue;
            };
            let required = *required;
            let waiting = stages
                .iter()
                .any(|s| Some(&s.name) == record.stage.as_ref() && s.phase == StagePhase::Paused);
            let approved_by = journal.approvers(run_id, gate).unwrap_or_default();
            let rejected = journal.rejection(run_id, gate).ok().flatten().is_some();
            if waiting && !rejected && (approved_by.len() as u64) < u64::from(required) {
                pending.insert(
                    gate.to_string(),
                    PendingApproval {
                        gate: gate.to_string(),
                        stage: record.stage.clone(),
                        role: role.clone(),
                        required,
                        approved_by,
                    },
                );
            }
        }
    }
    let measuring = if run.phase.is_terminal() {
        BTreeMap::new()
    } else {
        measuring_now(journal, &run, &stages)
    };
    // Verdicts reached for the runs this one retries count too.
    let decided = if run.retry_of.is_some() {
        release_events(shared, &run, Some(events))?
    } else {
        events
    };
    Ok(ReleaseStatus {
        phase: Some(phase),
        run_id: Some(run_id.to_string()),
        observed_generation: release.metadata.generation,
        message,
        diagnostics: Vec::new(),
        initiator: Some(deployctl_approvals::initiator_user(&run.initiator).to_string()),
        stages: stages
            .iter()
            .map(|stage| stage_status(stage, measuring.get(&stage.name)))
            .collect(),
        pending_approvals: pending.into_values().collect(),
        approvals: verdicts(&decided).into_values().collect(),
        requests: requests::verdicts(&decided).into_values().collect(),
    })
}

/// The gates measuring now in each stage on its way (the step's analysis,
/// the background ones), from the latest measurement the journal keeps.
/// A run without one reads nothing but that table.
fn measuring_now(
    journal: &Journal,
    run: &RunRecord,
    stages: &[StageRecord],
) -> BTreeMap<String, Vec<MeasuringGate>> {
    let live = journal.live_gates(&run.id).unwrap_or_default();
    if live.is_empty() {
        return BTreeMap::new();
    }
    let Ok(loaded) = deployctl_plan::load(&run.plan_file, run.plan_source.as_bytes()) else {
        return BTreeMap::new();
    };
    let plan = loaded.plan;
    let mut measuring: BTreeMap<String, Vec<MeasuringGate>> = BTreeMap::new();
    for stage in stages
        .iter()
        .filter(|s| matches!(s.phase, StagePhase::Progressing | StagePhase::Paused))
    {
        let Some(model) = plan.stages.iter().find(|s| s.name == stage.name) else {
            continue;
        };
        let ops = deployctl_engine::program::compile(model, plan.target_of(model));
        let gates =
            deployctl_engine::program::live_at(&live, &stage.name, &ops, stage.cursor as usize)
                .map(|(at, gate)| MeasuringGate {
                    gate: gate.gate.clone(),
                    background: gate.background,
                    passed: gate.counts.passed,
                    failed: gate.counts.failed,
                    errors: gate.counts.errors,
                    no_data: gate.counts.no_data,
                    last: gate.last.kind.to_string(),
                    value: gate.last.value,
                    detail: Some(gate.last.detail.clone()).filter(|d| !d.is_empty()),
                    at: Some(deployctl_time::format_ms(at)),
                })
                .collect();
        measuring.insert(stage.name.clone(), gates);
    }
    measuring
}

fn stage_status(stage: &StageRecord, measuring: Option<&Vec<MeasuringGate>>) -> StageStatus {
    let last_gate = stage.last_gate.as_ref().and_then(|gate| {
        let name = gate.get("gate")?.as_str()?.to_string();
        let outcome = gate.pointer("/result/outcome");
        let result = match outcome
            .and_then(|o| o.get("status"))
            .and_then(|v| v.as_str())
        {
            Some("passed") => "passed",
            Some("failed") => "failed",
            _ => "running",
        };
        Some(GateStatus {
            gate: name,
            result: result.to_string(),
            reason: outcome
                .and_then(|o| o.get("reason"))
                .and_then(|v| v.as_str())
                .map(str::to_string),
        })
    });
    StageStatus {
        name: stage.name.clone(),
        target: stage.target.clone(),
        phase: stage.phase.as_str().to_string(),
        weight: stage.weight,
        stable_version: stage.stable_version.clone(),
        new_version: stage.new_version.clone(),
        last_gate,
        detail: stage.detail.clone(),
        measuring: measuring.cloned().unwrap_or_default(),
    }
}
