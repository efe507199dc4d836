//! Health gates (R7): measure a probe `count` times, `interval` apart, and
//! judge the release by Argo Rollouts' AnalysisRun rules.
//!
//! - `Pass` and `Fail` are *conclusive*: they count toward `count`. More
//!   than `failure_limit` failures fail the gate.
//! - `Error` means the measurement itself failed. It does not count toward
//!   `count`; more than `consecutive_error_limit` errors in a row fail the
//!   gate. Any other result ends the streak.
//! - `NoData` is inconclusive: it holds the gate without counting toward
//!   `count`, and more than `inconclusive_limit` of them since the last
//!   conclusive measurement fail the gate with a "no data" reason. Errors
//!   in between do not end that streak: otherwise a probe alternating
//!   between error and no data would hold the gate forever.
//! - A gate never passes without at least one `Pass`.
//!
//! Two ways to run one:
//!
//! - [`run_to_completion`] for analysis steps and blue-green pre/post
//!   promotion gates: measures until the gate passes or fails.
//! - [`GateMonitor`] for a canary's background `gates:`: a spawned task that
//!   measures every interval until stopped, ignoring `count`. The engine
//!   `select!`s on [`GateMonitor::failed`] (or [`first_failure`] for
//!   several) next to its step work, and calls [`GateMonitor::stop`] before
//!   promotion, which fails unless the monitor saw a conclusive pass.
//!
//! Time comes from `tokio::time` only, so tests pause the clock. Dropping a
//! gate future or a monitor at any point stops measuring.

use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, poll_fn};
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use deployctl_adapter::{HealthProbe, Measurement};
use deployctl_plan::model::Gate;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until, timeout};

/// How many measurements a result keeps. A monitor can run for hours; the
/// journal and `status --output json` need the recent story, and the
/// counts keep the totals.
pub const MAX_RECORDED: usize = 100;

/// A measurement may take at most `max(interval, this)`. Probes bound
/// themselves (adapter contract); this is the backstop that keeps a probe
/// that ignores the contract from holding a gate forever.
pub const MEASUREMENT_TIMEOUT_FLOOR: Duration = Duration::from_secs(30);

/// Longest detail kept per measurement, in bytes: details come from
/// outside (HTTP bodies, API messages) and end up in the journal.
const MAX_DETAIL: usize = 1024;

/// Validation rejects a zero interval; this floor only keeps a hand-built
/// [`Gate`] from spinning a monitor in a hot loop.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// What a gate concluded, with the evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateResult {
    /// The gate's name in the plan.
    pub gate: String,
    pub outcome: GateOutcome,
    /// Totals over every measurement, including those no longer listed.
    pub counts: GateCounts,
    /// The last [`MAX_RECORDED`] measurements, oldest first.
    pub measurements: Vec<MeasurementRecord>,
    /// Time from the gate's start to its verdict (or to `stop`).
    pub elapsed_ms: u64,
}

impl GateResult {
    pub fn passed(&self) -> bool {
        self.outcome == GateOutcome::Passed
    }

    /// One line for people: why it failed, or what it passed on.
    pub fn reason(&self) -> String {
        match &self.outcome {
            GateOutcome::Failed { reason, .. } => reason.clone(),
            GateOutcome::Passed => {
                let GateCounts {
                    passed,
                    failed,
                    errors,
                    no_data,
                } = self.counts;
                format!(
                    "passed: {passed} pass, {failed} fail, {no_data} without data, {errors} errors"
                )
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum GateOutcome {
    Passed,
    Failed {
        /// Why, for scripts.
        cause: FailureCause,
        /// Why, for people.
        reason: String,
    },
}

/// Which rule failed a gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FailureCause {
    /// More `Fail` measurements than `failure_limit`.
    FailureLimit,
    /// More consecutive `Error`s than `consecutive_error_limit`.
    ConsecutiveErrorLimit,
    /// More consecutive `NoData` results than `inconclusive_limit`.
    NoData,
    /// The gate ended without a single `Pass`: nothing to promote on.
    NoConclusivePass,
    /// The monitor's task died (a probe panicked).
    MonitorLost,
}

/// Totals by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GateCounts {
    pub passed: u64,
    pub failed: u64,
    pub errors: u64,
    pub no_data: u64,
}

impl GateCounts {
    /// Measurements that judged the release (toward `count`).
    pub fn conclusive(&self) -> u64 {
        self.passed + self.failed
    }
}

/// One measurement as the journal keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeasurementRecord {
    pub kind: MeasurementKind,
    pub value: Option<f64>,
    pub detail: String,
    /// When the measurement started, from the gate's start: the schedule
    /// is start-to-start, so these are `interval` apart.
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MeasurementKind {
    Pass,
    Fail,
    NoData,
    Error,
}

impl fmt::Display for MeasurementKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MeasurementKind::Pass => "pass",
            MeasurementKind::Fail => "fail",
            MeasurementKind::NoData => "nodata",
            MeasurementKind::Error => "error",
        })
    }
}

/// Where a gate stands after its latest measurement, for people watching
/// a run (`status`): the totals so far and the measurement itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveGate {
    pub gate: String,
    /// A canary's background gate (else an analysis step's).
    pub background: bool,
    pub counts: GateCounts,
    pub last: MeasurementRecord,
}

/// Told of every measurement a gate takes (the engine keeps the latest in
/// the journal); called on the measuring task, so it must be quick.
pub type LiveSink = Arc<dyn Fn(&LiveGate) + Send + Sync>;

impl Tally {
    fn live(&self, background: bool) -> Option<LiveGate> {
        Some(LiveGate {
            gate: self.gate.clone(),
            background,
            counts: self.counts,
            last: self.recent.back()?.clone(),
        })
    }
}

/// Runs `gate` against `probe` until it passes (`count` conclusive
/// measurements, failures within the limit, at least one pass) or a limit
/// is crossed. Always ends: every measurement is time-bounded and every
/// inconclusive streak is limited.
pub async fn run_to_completion(gate: &Gate, probe: &dyn HealthProbe) -> GateResult {
    run_observed(gate, probe, None).await
}

/// [`run_to_completion`], telling `live` of every measurement.
pub async fn run_observed(
    gate: &Gate,
    probe: &dyn HealthProbe,
    live: Option<&LiveSink>,
) -> GateResult {
    let mut tally = Tally::new(gate, Instant::now());
    // A hand-built gate may say 0; a gate never passes without a measurement.
    let needed = u64::from(gate.count.max(1));
    measure_until(gate, probe, |measurement, taken| {
        let now = Instant::now();
        tally.record(measurement, taken, now);
        if let (Some(live), Some(state)) = (live, tally.live(false)) {
            live(&state);
        }
        if tally.failure.is_none() && tally.counts.conclusive() >= needed {
            tally.conclude(now);
        }
        if tally.is_decided() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .await;
    tally.result(Instant::now())
}

/// A gate measuring in the background until stopped.
///
/// ```ignore
/// let mut monitor = GateMonitor::spawn(gate.clone(), target.probe(&gate.check)?);
/// tokio::select! {
///     done = step_work => { /* ... */ }
///     failure = monitor.failed() => return roll_back(failure),
/// }
/// let verdict = monitor.stop(); // Failed unless a conclusive pass was seen
/// ```
///
/// Limits apply over the whole watch, as in Argo's background analysis:
/// failures add up for as long as the monitor runs, and error and no-data
/// streaks fail it whenever they grow too long. Dropping it aborts the
/// measuring task.
pub struct GateMonitor {
    state: watch::Receiver<Tally>,
    task: JoinHandle<()>,
}

impl GateMonitor {
    /// Starts measuring now (first measurement immediately). Must be called
    /// inside a tokio runtime. Takes ownership because the measuring task
    /// outlives this call; a `Box<dyn HealthProbe>` (what `Target::probe`
    /// returns) or an `Arc<dyn HealthProbe>` both convert.
    pub fn spawn(gate: Gate, probe: impl Into<Arc<dyn HealthProbe>>) -> GateMonitor {
        GateMonitor::spawn_observed(gate, probe, None)
    }

    /// [`GateMonitor::spawn`], telling `live` of every measurement.
    pub fn spawn_observed(
        gate: Gate,
        probe: impl Into<Arc<dyn HealthProbe>>,
        live: Option<LiveSink>,
    ) -> GateMonitor {
        let probe = probe.into();
        let (sender, state) = watch::channel(Tally::new(&gate, Instant::now()));
        let task = tokio::spawn(async move {
            measure_until(&gate, &*probe, |measurement, taken| {
                let mut failed = false;
                let mut state = None;
                sender.send_modify(|tally| {
                    tally.record(measurement, taken, Instant::now());
                    failed = tally.is_decided();
                    state = live.as_ref().and_then(|_| tally.live(true));
                });
                if let (Some(live), Some(state)) = (&live, state) {
                    live(&state);
                }
                if failed {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .await;
        });
        GateMonitor { state, task }
    }

    /// The gate's name.
    pub fn gate(&self) -> String {
        self.state.borrow().gate.clone()
    }

    /// Resolves when the monitor has failed, with the result; pending for
    /// as long as the gate holds. Cancel-safe (use it in `select!`), and
    /// resolves again immediately if called after a failure.
    pub async fn failed(&mut self) -> GateResult {
        if let Ok(tally) = self.state.wait_for(|tally| tally.is_decided()).await {
            return tally.result(Instant::now());
        }
        // The task dropped its sender without deciding: it panicked.
        self.state.borrow().lost(Instant::now())
    }

    /// Resolves once the monitor has something to promote on: a conclusive
    /// `Pass`, or a verdict. A monitor restarted by a resumed run may be
    /// stopped moments later; waiting here (bounded by the gate's own
    /// limits) keeps a healthy release from failing for want of a first
    /// measurement. Cancel-safe.
    pub async fn settled(&mut self) {
        let _ = self
            .state
            .wait_for(|tally| tally.is_decided() || tally.counts.passed > 0)
            .await;
    }

    /// Stops measuring and gives the verdict: `Failed` if a limit was
    /// crossed or no conclusive `Pass` was ever seen (promotion never
    /// happens on no data), `Passed` otherwise. A measurement in flight is
    /// abandoned.
    pub fn stop(self) -> GateResult {
        // Read before aborting: afterwards the task may finish because of
        // the abort itself.
        let finished = self.task.is_finished();
        self.task.abort();
        let now = Instant::now();
        let tally = self.state.borrow();
        if tally.is_decided() {
            return tally.result(now);
        }
        // The task only ends on its own after deciding, so one that ended
        // undecided panicked.
        if finished {
            return tally.lost(now);
        }
        let mut tally = tally.clone();
        tally.conclude(now);
        tally.result(now)
    }
}

impl Drop for GateMonitor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Resolves with the index and result of the first of `monitors` to fail;
/// pending forever when there are none, so it can sit in a `select!`
/// whatever the stage's gates are. Cancel-safe like [`GateMonitor::failed`].
pub async fn first_failure(monitors: &mut [GateMonitor]) -> (usize, GateResult) {
    let mut waits: Vec<Pin<Box<dyn Future<Output = GateResult> + Send + '_>>> = monitors
        .iter_mut()
        .map(|monitor| Box::pin(monitor.failed()) as Pin<Box<_>>)
        .collect();
    poll_fn(|cx| {
        for (index, wait) in waits.iter_mut().enumerate() {
            if let Poll::Ready(result) = wait.as_mut().poll(cx) {
                return Poll::Ready((index, result));
            }
        }
        Poll::Pending
    })
    .await
}

/// Takes measurements `interval` apart (start to start) until `judge`
/// breaks. A measurement that overruns its bound is an `Error`; one that
/// overruns the interval is followed immediately by the next.
async fn measure_until(
    gate: &Gate,
    probe: &dyn HealthProbe,
    mut judge: impl FnMut(Measurement, Instant) -> ControlFlow<()>,
) {
    let interval = gate.interval.max(MIN_INTERVAL);
    let bound = interval.max(MEASUREMENT_TIMEOUT_FLOOR);
    loop {
        let taken = Instant::now();
        let measurement = match timeout(bound, probe.measure()).await {
            Ok(measurement) => measurement,
            Err(_) => Measurement::Error {
                detail: format!(
                    "no answer within {}s; measurement abandoned",
                    bound.as_secs_f64()
                ),
            },
        };
        if judge(measurement, taken).is_break() {
            return;
        }
        sleep_until(taken + interval).await;
    }
}

/// The running state of one gate: totals, streaks, recent measurements and
/// the verdict once there is one. Pure bookkeeping: callers pass the time
/// in, so a verdict's time is when it was reached, not when it was read.
#[derive(Debug, Clone)]
struct Tally {
    gate: String,
    failure_limit: u32,
    consecutive_error_limit: u32,
    inconclusive_limit: u32,
    started: Instant,
    counts: GateCounts,
    consecutive_errors: u32,
    /// `NoData` results since the last conclusive measurement.
    consecutive_no_data: u32,
    recent: VecDeque<MeasurementRecord>,
    failure: Option<(FailureCause, String)>,
    passed: bool,
    decided_at: Option<Instant>,
}

impl Tally {
    fn new(gate: &Gate, started: Instant) -> Tally {
        Tally {
            gate: gate.name.clone(),
            failure_limit: gate.failure_limit,
            consecutive_error_limit: gate.consecutive_error_limit,
            inconclusive_limit: gate.inconclusive_limit,
            started,
            counts: GateCounts::default(),
            consecutive_errors: 0,
            consecutive_no_data: 0,
            recent: VecDeque::with_capacity(MAX_RECORDED),
            failure: None,
            passed: false,
            decided_at: None,
        }
    }

    fn is_decided(&self) -> bool {
        self.passed || self.failure.is_some()
    }

    /// Adds one measurement, started at `taken` and judged `now`; sets
    /// `failure` when it crosses a limit.
    fn record(&mut self, measurement: Measurement, taken: Instant, now: Instant) {
        let kind = match &measurement {
            Measurement::Pass { .. } => MeasurementKind::Pass,
            Measurement::Fail { .. } => MeasurementKind::Fail,
            Measurement::NoData { .. } => MeasurementKind::NoData,
            Measurement::Error { .. } => MeasurementKind::Error,
        };
        let detail = bounded(measurement.detail());
        match kind {
            MeasurementKind::Pass | MeasurementKind::Fail => {
                self.consecutive_errors = 0;
                self.consecutive_no_data = 0;
                if kind == MeasurementKind::Pass {
                    self.counts.passed += 1;
                } else {
                    self.counts.failed += 1;
                    if self.counts.failed > u64::from(self.failure_limit) {
                        self.fail(
                            now,
                            FailureCause::FailureLimit,
                            // The plan's words: "fails after N failures".
                            format!(
                                "{} measurement{} failed; the gate fails after {} (last: {detail})",
                                self.counts.failed,
                                if self.counts.failed == 1 { "" } else { "s" },
                                u64::from(self.failure_limit) + 1
                            ),
                        );
                    }
                }
            }
            MeasurementKind::Error => {
                self.counts.errors += 1;
                self.consecutive_errors += 1;
                if self.consecutive_errors > self.consecutive_error_limit {
                    self.fail(
                        now,
                        FailureCause::ConsecutiveErrorLimit,
                        format!(
                            "{} consecutive measurement errors, more than the limit of {} (last: {detail})",
                            self.consecutive_errors, self.consecutive_error_limit
                        ),
                    );
                }
            }
            MeasurementKind::NoData => {
                self.counts.no_data += 1;
                self.consecutive_errors = 0;
                self.consecutive_no_data += 1;
                if self.consecutive_no_data > self.inconclusive_limit {
                    self.fail(
                        now,
                        FailureCause::NoData,
                        format!(
                            "no data: {} measurements in a row had no data, more than the inconclusive limit of {} (last: {detail})",
                            self.consecutive_no_data, self.inconclusive_limit
                        ),
                    );
                }
            }
        }
        if self.recent.len() == MAX_RECORDED {
            self.recent.pop_front();
        }
        self.recent.push_back(MeasurementRecord {
            kind,
            value: measurement.value(),
            detail,
            elapsed_ms: millis(taken.saturating_duration_since(self.started)),
        });
    }

    /// Ends an undecided gate: passed if it ever saw a pass.
    fn conclude(&mut self, now: Instant) {
        if self.is_decided() {
            return;
        }
        if self.counts.passed == 0 {
            self.fail(
                now,
                FailureCause::NoConclusivePass,
                format!(
                    "no data: ended without a passing measurement ({} failed, {} without data, {} errors)",
                    self.counts.failed, self.counts.no_data, self.counts.errors
                ),
            );
        } else {
            self.passed = true;
            self.decided_at = Some(now);
        }
    }

    fn fail(&mut self, now: Instant, cause: FailureCause, reason: String) {
        // The first limit crossed is the story; later ones add nothing.
        if !self.is_decided() {
            self.failure = Some((cause, reason));
            self.decided_at = Some(now);
        }
    }

    fn result(&self, now: Instant) -> GateResult {
        let outcome = match &self.failure {
            Some((cause, reason)) => GateOutcome::Failed {
                cause: *cause,
                reason: reason.clone(),
            },
            None => GateOutcome::Passed,
        };
        GateResult {
            gate: self.gate.clone(),
            outcome,
            counts: self.counts,
            measurements: self.recent.iter().cloned().collect(),
            elapsed_ms: millis(
                self.decided_at
                    .unwrap_or(now)
                    .saturating_duration_since(self.started),
            ),
        }
    }

    fn lost(&self, now: Instant) -> GateResult {
        let mut tally = self.clone();
        tally.fail(
            now,
            FailureCause::MonitorLost,
            "the gate's monitor stopped unexpectedly (its probe panicked)".into(),
        );
        tally.result(now)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// `detail` cut to [`MAX_DETAIL`] bytes on a character boundary.
fn bounded(detail: &str) -> String {
    if detail.len() <= MAX_DETAIL {
        return detail.to_string();
    }
    let mut end = MAX_DETAIL;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &detail[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use deployctl_adapter::BoxFuture;
    use deployctl_plan::model::GateCheck;

    /// Answers from a script, then repeats its last answer forever.
    struct Script {
        answers: Mutex<VecDeque<Measurement>>,
        last: Mutex<Measurement>,
        calls: AtomicUsize,
    }

    impl Script {
        fn new(answers: impl IntoIterator<Item = Measurement>) -> Arc<Script> {
            let answers: VecDeque<_> = answers.into_iter().collect();
            let last = answers.back().cloned().expect("a script needs an answer");
            Arc::new(Script {
                answers: Mutex::new(answers),
                last: Mutex::new(last),
                calls: AtomicUsize::new(0),
            })
        }

        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl HealthProbe for Script {
        fn measure(&self) -> BoxFuture<'_, Measurement> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let next = self.answers.lock().unwrap().pop_front();
            let answer = next.unwrap_or_else(|| self.last.lock().unwrap().clone());
            Box::pin(async move { answer })
        }
    }

    fn shared(script: &Arc<Script>) -> Arc<dyn HealthProbe> {
        script.clone()
    }

    /// Never answers.
    struct Hangs;

    impl HealthProbe for Hangs {
        fn measure(&self) -> BoxFuture<'_, Measurement> {
            Box::pin(std::future::pending())
        }
    }

    fn pass() -> Measurement {
        Measurement::Pass {
            value: Some(0.99),
            detail: "ok".into(),
        }
    }

    fn fail() -> Measurement {
        Measurement::Fail {
            value: Some(0.5),
            detail: "too many 5xx".into(),
        }
    }

    fn error() -> Measurement {
        Measurement::Error {
            detail: "metrics API 503".into(),
        }
    }

    fn no_data() -> Measurement {
        Measurement::NoData {
            detail: "no samples".into(),
        }
    }

    fn gate(count: u32, failure_limit: u32) -> Gate {
        Gate {
            name: "success-rate".into(),
            check: GateCheck::Sim {
                min_success_rate: 0.95,
            },
            interval: Duration::from_secs(10),
            count,
            failure_limit,
            consecutive_error_limit: 2,
            inconclusive_limit: 2,
        }
    }

    fn cause(result: &GateResult) -> Option<FailureCause> {
        match &result.outcome {
            GateOutcome::Passed => None,
            GateOutcome::Failed { cause, .. } => Some(*cause),
        }
    }

    fn reason(result: &GateResult) -> &str {
        match &result.outcome {
            GateOutcome::Passed => "",
            GateOutcome::Failed { reason, .. } => reason,
        }
    }

    fn kinds(result: &GateResult) -> Vec<MeasurementKind> {
        result.measurements.iter().map(|m| m.kind).collect()
    }

    fn times(result: &GateResult) -> Vec<u64> {
        result.measurements.iter().map(|m| m.elapsed_ms).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn passes_after_count_passes_interval_apart() {
        let probe = Script::new([pass()]);
        let result = run_to_completion(&gate(3, 0), &*probe).await;
        assert!(result.passed(), "{result:?}");
        assert_eq!(times(&result), [0, 10_000, 20_000]);
        assert_eq!(result.elapsed_ms, 20_000);
        assert_eq!(result.counts.passed, 3);
        assert_eq!(probe.calls(), 3);
        assert_eq!(result.measurements[0].value, Some(0.99));
        assert_eq!(result.measurements[0].detail, "ok");
        assert_eq!(
            result.reason(),
            "passed: 3 pass, 0 fail, 0 without data, 0 errors"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn one_failure_fails_a_gate_with_no_failure_allowance() {
        let probe = Script::new([pass(), fail(), pass()]);
        let result = run_to_completion(&gate(3, 0), &*probe).await;
        assert_eq!(cause(&result), Some(FailureCause::FailureLimit));
        assert!(reason(&result).contains("too many 5xx"), "{result:?}");
        // In the plan's words ("fails after 1 failure"), counted right.
        assert!(
            reason(&result).starts_with("1 measurement failed; the gate fails after 1 "),
            "{result:?}"
        );
        // Fails as soon as the limit is crossed, not at the end.
        assert_eq!(probe.calls(), 2);
        assert_eq!(result.elapsed_ms, 10_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_limit_of_one_tolerates_one_failure() {
        let probe = Script::new([pass(), fail(), pass()]);
        let result = run_to_completion(&gate(3, 1), &*probe).await;
        assert!(result.passed(), "{result:?}");
        assert_eq!(result.counts.failed, 1);

        let probe = Script::new([fail(), pass(), fail()]);
        let result = run_to_completion(&gate(3, 1), &*probe).await;
        assert_eq!(cause(&result), Some(FailureCause::FailureLimit));
        assert!(
            reason(&result).starts_with("2 measurements failed; the gate fails after 2 "),
            "{result:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_errors_over_the_limit_fail_the_gate() {
        let probe = Script::new([pass(), error(), error(), error()]);
        let result = run_to_completion(&gate(3, 0), &*probe).await;
        assert_eq!(cause(&result), Some(FailureCause::ConsecutiveErrorLimit));
        assert!(reason(&result).contains("metrics API 503"), "{result:?}");
        assert_eq!(result.counts.errors, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn errors_that_are_not_consecutive_do_not_fail_or_count() {
        let probe = Script::new([
            error(),
            error(),
            pass(),
            error(),
            error(),
            no_data(),
            error(),
            pass(),
            pass(),
        ]);
        let result = run_to_completion(&gate(3, 0), &*probe).await;
        assert!(result.passed(), "{result:?}");
        // Errors and no data hold the gate: 9 measurements for 3 passes.
        assert_eq!(probe.calls(), 9);
        assert_eq!(result.counts.errors, 5);
        assert_eq!(result.elapsed_ms, 80_000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_no_data_streak_over_the_limit_fails_with_a_no_data_reason() {
        let probe = Script::new([pass(), no_data()]);
        let result = run_to_completion(&gate(3, 0), &*probe).await;
        assert_eq!(cause(&result), Some(FailureCause::NoData));
        assert!(reason(&result).starts_with("no data"), "{result:?}");
        assert_eq!(
            kinds(&result),
            [
                MeasurementKind::Pass,
                MeasurementKind::NoData,
                MeasurementKind::NoData,
                MeasurementKind::NoData
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn errors_do_not_reset_a_no_data_streak() {
        // Alternating would otherwise hold the gate forever.
        let probe = Script::new([no_data(), error(), no_data(), error(), no_data(), pass()]);
        let result = run_to_completion(&gate(3, 0), &*probe).await;
        assert_eq!(cause(&result), Some(FailureCause::NoData));
        assert_eq!(probe.calls(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn no_data_holds_the_gate_without_counting() {
        let probe = Script::new([no_data(), no_data(), pass(), no_data(), pass(), pass()]);
        let result = run_to_completion(&gate(3, 0), &*probe).await;
        assert!(result.passed(), "{result:?}");
        assert_eq!(result.counts.no_data, 3);
        assert_eq!(result.counts.passed, 3);
        assert_eq!(times(&result), [0, 10_000, 20_000, 30_000, 40_000, 50_000]);
    }

    #[tokio::test(start_paused = true)]
    async fn never_passes_without_a_pass() {
        // Validation forbids failureLimit >= count, but a hand-built gate
        // must still not pass on failures alone.
        let probe = Script::new([fail()]);
        let result = run_to_completion(&gate(2, 5), &*probe).await;
        assert_eq!(cause(&result), Some(FailureCause::NoConclusivePass));

        let probe = Script::new([pass()]);
        let result = run_to_completion(&gate(0, 0), &*probe).await;
        assert!(result.passed());
        assert_eq!(probe.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_probe_times_out_as_an_error() {
        let result = run_to_completion(&gate(3, 0), &Hangs).await;
        assert_eq!(cause(&result), Some(FailureCause::ConsecutiveErrorLimit));
        // Bounded by max(10s, 30s) each; the next starts at once.
        assert_eq!(times(&result), [0, 30_000, 60_000]);
        assert_eq!(result.elapsed_ms, 90_000);
        assert!(result.measurements[0].detail.contains("30s"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_probe_delays_only_its_own_successor() {
        struct Slow;
        impl HealthProbe for Slow {
            fn measure(&self) -> BoxFuture<'_, Measurement> {
                Box::pin(async {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    pass()
                })
            }
        }
        let result = run_to_completion(&gate(3, 0), &Slow).await;
        assert_eq!(times(&result), [0, 10_000, 20_000]);
        assert_eq!(result.elapsed_ms, 23_000);
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_gate_future_stops_measuring() {
        let probe = Script::new([no_data(), no_data(), pass()]);
        let gate = gate(1000, 0);
        let run = run_to_completion(&gate, &*probe);
        assert!(
            tokio::time::timeout(Duration::from_secs(25), run)
                .await
                .is_err()
        );
        let calls = probe.calls();
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(probe.calls(), calls);
    }

    #[tokio::test(start_paused = true)]
    async fn keeps_only_the_last_measurements() {
        let probe = Script::new([pass()]);
        let mut gate = gate(250, 0);
        gate.interval = Duration::from_secs(1);
        let result = run_to_completion(&gate, &*probe).await;
        assert!(result.passed());
        assert_eq!(result.measurements.len(), MAX_RECORDED);
        assert_eq!(result.counts.passed, 250);
        assert_eq!(result.measurements[0].elapsed_ms, 150_000);
    }

    #[test]
    fn long_details_are_cut_on_a_character_boundary() {
        let detail = "é".repeat(MAX_DETAIL);
        let cut = bounded(&detail);
        assert!(cut.len() <= MAX_DETAIL + '…'.len_utf8());
        assert!(cut.ends_with('…'));
        assert_eq!(bounded("short"), "short");
    }

    #[tokio::test(start_paused = true)]
    async fn a_result_serializes_for_the_journal() {
        let probe = Script::new([no_data(), fail()]);
        let result = run_to_completion(&gate(3, 0), &*probe).await;
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(json["gate"], "success-rate");
        assert_eq!(json["outcome"]["status"], "failed");
        assert_eq!(json["outcome"]["cause"], "failureLimit");
        assert_eq!(json["measurements"][0]["kind"], "nodata");
        assert_eq!(json["measurements"][1]["elapsedMs"], 10_000);
        assert_eq!(json["counts"]["noData"], 1);
        let back: GateResult = serde_json::from_value(json).unwrap();
        assert_eq!(back, result);
    }

    #[tokio::test(start_paused = true)]
    async fn a_monitor_fails_as_soon_as_a_limit_is_crossed() {
        let probe = Script::new([pass(), pass(), fail(), pass(), fail(), pass()]);
        let mut monitor = GateMonitor::spawn(gate(3, 1), shared(&probe));
        let started = Instant::now();
        let result = monitor.failed().await;
        assert_eq!(cause(&result), Some(FailureCause::FailureLimit));
        // Measures past `count`: the fifth measurement crossed the limit.
        assert_eq!(started.elapsed(), Duration::from_secs(40));
        assert_eq!(result.counts.conclusive(), 5);
        // Stops measuring after failing; failed() and stop() agree.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(probe.calls(), 5);
        assert_eq!(monitor.failed().await, result);
        assert_eq!(cause(&monitor.stop()), Some(FailureCause::FailureLimit));
    }

    #[tokio::test(start_paused = true)]
    async fn a_monitor_holds_while_healthy_and_passes_when_stopped() {
        let probe = Script::new([no_data(), pass()]);
        let mut monitor = GateMonitor::spawn(gate(3, 0), shared(&probe));
        let step = tokio::time::sleep(Duration::from_secs(95));
        tokio::select! {
            _ = step => {}
            failure = monitor.failed() => panic!("healthy monitor failed: {failure:?}"),
        }
        let result = monitor.stop();
        assert!(result.passed(), "{result:?}");
        assert_eq!(result.counts.passed, 9);
        assert_eq!(result.elapsed_ms, 95_000);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(probe.calls(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_monitor_stopped_before_any_pass_does_not_pass() {
        let probe = Script::new([no_data(), no_data(), fail()]);
        let monitor = GateMonitor::spawn(gate(3, 0), shared(&probe));
        tokio::time::sleep(Duration::from_secs(15)).await;
        let result = monitor.stop();
        assert_eq!(cause(&result), Some(FailureCause::NoConclusivePass));
        assert!(reason(&result).starts_with("no data"), "{result:?}");
        assert_eq!(result.counts.no_data, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_monitor_on_a_silent_probe_fails_for_no_data() {
        let mut monitor = GateMonitor::spawn(gate(3, 0), shared(&Script::new([no_data()])));
        let result = monitor.failed().await;
        assert_eq!(cause(&result), Some(FailureCause::NoData));
        assert_eq!(result.elapsed_ms, 20_000);
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_a_monitor_stops_measuring() {
        let probe = Script::new([pass()]);
        let monitor = GateMonitor::spawn(gate(3, 0), shared(&probe));
        tokio::time::sleep(Duration::from_secs(25)).await;
        drop(monitor);
        let calls = probe.calls();
        assert_eq!(calls, 3);
        tokio::time::sleep(Duration::from_secs(600)).await;
        assert_eq!(probe.calls(), calls);
    }

    #[tokio::test(start_paused = true)]
    async fn a_monitor_whose_probe_panics_is_reported_lost() {
        struct Panics;
        impl HealthProbe for Panics {
            fn measure(&self) -> BoxFuture<'_, Measurement> {
                Box::pin(async { panic!("probe bug") })
            }
        }
        let mut monitor = GateMonitor::spawn(gate(3, 0), Box::new(Panics) as Box<dyn HealthProbe>);
        let result = monitor.failed().await;
        assert_eq!(cause(&result), Some(FailureCause::MonitorLost));
        assert_eq!(cause(&monitor.stop()), Some(FailureCause::MonitorLost));
    }

    #[tokio::test(start_paused = true)]
    async fn first_failure_names_the_failing_monitor() {
        let mut monitors = vec![
            GateMonitor::spawn(gate(3, 0), shared(&Script::new([pass()]))),
            GateMonitor::spawn(gate(3, 0), shared(&Script::new([pass(), pass(), fail()]))),
        ];
        let (index, result) = first_failure(&mut monitors).await;
        assert_eq!(index, 1);
        assert_eq!(result.elapsed_ms, 20_000);
        assert!(monitors.remove(0).stop().passed());

        let none: &mut [GateMonitor] = &mut [];
        let waited = tokio::time::timeout(Duration::from_secs(3600), first_failure(none)).await;
        assert!(waited.is_err());
    }
}
