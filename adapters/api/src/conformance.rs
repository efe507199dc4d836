//! The conformance suite (feature `testing`): the rules of
//! `docs/adapter-contract.md` as checks that every adapter runs in its own
//! tests, against the real platform API or an emulator of it.
//!
//! Start at [`run_all`]. Every check takes a factory that makes a fresh
//! target on its stable version (a new emulator resource, a new simulator)
//! and decides from [`TargetKind::capabilities`] which action families the
//! target must support: canary/blue-green targets get `Deploy`,
//! `SetWeight`, `Promote`, `Retire`; wave targets get `StartWave` and
//! `Halt`; every target gets `Rollback`; anything else must be
//! [`AdapterError::Unsupported`].
//!
//! The suite needs no async runtime of its own (no timers, no tokio): it is
//! plain `async` code that runs on whatever executor the adapter's tests
//! use. Cancellation is checked by polling `apply` once with a no-op waker
//! and dropping it at its first pending point.
//!
//! ```ignore
//! #[tokio::test]
//! async fn conforms() {
//!     let result = deployctl_adapter::conformance::run_all(async || MyTarget::fresh().await).await;
//!     if let Err(failures) = result {
//!         panic!("{}", failures.join("\n"));
//!     }
//! }
//! ```

use std::collections::BTreeMap;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use deployctl_plan::model::{Comparison, GateCheck, GateKind, StrategyKind, TargetKind};

use crate::{Action, AdapterError, Applied, IdempotencyKey, Observed, Target};

/// `ensure!(condition, "format", args)`: fails the check with the message.
macro_rules! ensure {
    ($condition:expr, $($message:tt)+) => {
        if !$condition {
            return Err(format!($($message)+));
        }
    };
}

/// What the suite deploys.
#[derive(Debug, Clone)]
pub struct Options {
    /// The version `Deploy` makes the candidate; it must exist wherever the
    /// platform needs it to (a published Lambda version, a pushed image).
    pub candidate_version: String,
    /// Devices each `StartWave` dispatches.
    pub wave_devices: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            candidate_version: "conformance-candidate".into(),
            wave_devices: 10,
        }
    }
}

/// One check's verdict: the first broken rule, in words.
pub type CheckResult = Result<(), String>;

/// Runs every check with default [`Options`]. The error lists each failed
/// check as `check: what went wrong`.
pub async fn run_all<T: Target>(make: impl AsyncFnMut() -> T) -> Result<(), Vec<String>> {
    run_all_with(&Options::default(), make).await
}

/// Runs every check with `options`.
pub async fn run_all_with<T: Target>(
    options: &Options,
    mut make: impl AsyncFnMut() -> T,
) -> Result<(), Vec<String>> {
    let mut failures = Vec::new();
    macro_rules! run {
        ($($check:ident),+ $(,)?) => {$(
            if let Err(failure) = $check(&mut make, options).await {
                failures.push(format!("{}: {failure}", stringify!($check)));
            }
        )+};
    }
    run!(
        observe_is_pure,
        preflight_names_the_stable_version,
        actions_are_idempotent,
        canary_sequence_promotes,
        rollback_from_every_partial_state,
        rollback_after_promotion,
        cancellation_is_safe,
        request_ids_are_reported,
        unsupported_actions_are_refused,
        probes_match_capabilities,
        halt_stops_dispatch,
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures)
    }
}

/// `observe` changes nothing and agrees with itself, also when called
/// concurrently; `plan` changes nothing; a fresh target is on its stable
/// version with no candidate.
pub async fn observe_is_pure<T: Target>(
    make: &mut impl AsyncFnMut() -> T,
    options: &Options,
) -> CheckResult {
    let target = make().await;
    let driver = Driver::new(&target, "observe");
    let first = driver.observe("a fresh target").await?;
    ensure!(
        first.stable.is_some() && first.candidate.is_none() && first.weight == 0,
        "a fresh target should be on its stable version with no candidate and weight 0, observed {first:?}"
    );
    let (a, b) = join(target.observe(), target.observe()).await;
    for observed in [a, b] {
        let observed = observed.map_err(|e| format!("concurrent observe failed: {e}"))?;
        ensure!(
            observed == first,
            "concurrent observe disagreed: {observed:?} vs {first:?}"
        );
    }
    let stable = first.stable.clone();
    for action in supported_actions(target.kind(), options, stable) {
        target
            .plan(&first, &action)
            .map_err(|e| format!("plan({action}) on a fresh target failed: {e}"))?;
    }
    let after = driver.observe("after observing and planning").await?;
    ensure!(
        after == first,
        "observe or plan changed the target: {first:?} became {after:?}"
    );
    Ok(())
}

/// `preflight` reports the version traffic would return to, finds the
/// rollback path ready on a fresh target, names the target's platform
/// identity the same way each time, and changes nothing.
pub async fn preflight_names_the_stable_version<T: Target>(
    make: &mut impl AsyncFnMut() -> T,
    _options: &Options,
) -> CheckResult {
    let target = make().await;
    let driver = Driver::new(&target, "preflight");
    let before = driver.observe("a fresh target").await?;
    let preflight = target
        .preflight()
        .await
        .map_err(|e| format!("preflight failed: {e}"))?;
    ensure!(
        Some(&preflight.stable_version) == before.stable.as_ref(),
        "preflight names {} as the stable version, observe says {:?}",
        preflight.stable_version,
        before.stable
    );
    ensure!(
        preflight.rollback_ready,
        "a fresh target's rollback path is not ready: {}",
        preflight.detail
    );
    // Locks are keyed by the identity: it must name the target, and the
    // same target must be named the same way every time.
    ensure!(
        !preflight.identity.trim().is_empty(),
        "preflight names no platform identity"
    );
    let again = target
        .preflight()
        .await
        .map_err(|e| format!("the second preflight failed: {e}"))?;
    ensure!(
        again.identity == preflight.identity,
        "two preflights of one target name two identities: {} and {}",
        preflight.identity,
        again.identity
    );
    let after = driver.observe("after preflight").await?;
    ensure!(
        after == before,
        "preflight changed the target: {before:?} became {after:?}"
    );
    Ok(())
}

/// Every action, applied again (with the same key, and with a new one),
/// reports `changed: false` and leaves the target as it was; `plan` then
/// returns no calls.
pub async fn actions_are_idempotent<T: Target>(
    make: &mut impl AsyncFnMut() -> T,
    options: &Options,
) -> CheckResult {
    let mut families = Vec::new();
    let kind = {
        let target = make().await;
        target.kind()
    };
    if moves_traffic(kind) {
        families.push(release(kind, options));
    }
    if runs_waves(kind) {
        families.push(vec![wave(0, options), wave(1, options), Action::Halt]);
    }
    for actions in families {
        let target = make().await;
        let mut driver = Driver::new(&target, "idempotent");
        for action in &actions {
            driver.apply_twice(action).await?;
        }
    }
    Ok(())
}

/// Deploy, SetWeight 10, SetWeight 50, Promote, Retire (weights capped at
/// the kind's maximum) end with the candidate stable, at weight 0, with no
/// candidate left; each step's dry run announces a call first.
pub async fn canary_sequence_promotes<T: Target>(
    make: &mut impl AsyncFnMut() -> T,
    options: &Options,
) -> CheckResult {
    let target = make().await;
    if !moves_traffic(target.kind()) {
        return Ok(());
    }
    let mut driver = Driver::new(&target, "canary");
    let start = driver.observe("a fresh target").await?;
    let new = Some(options.candidate_version.clone());
    for action in release(target.kind(), options) {
        let before = driver.observe("before the step").await?;
        if !matches!(action, Action::Retire) {
            let calls = target
                .plan(&before, &action)
                .map_err(|e| format!("plan({action}) failed: {e}"))?;
            ensure!(
                !calls.is_empty(),
                "plan({action}) from {before:?} announces no call, but the effect is not there yet"
            );
        }
        let applied = driver.apply(&action).await?;
        let after = driver.observe("after the step").await?;
        match &action {
            Action::Deploy { .. } | Action::SetWeight { .. } | Action::Promote => ensure!(
                applied.changed,
                "{action} from {before:?} reported changed: false"
            ),
            _ => {}
        }
        let expected = match &action {
            Action::Deploy { .. } => (start.stable.clone(), new.clone(), 0),
            Action::SetWeight { percent } => (start.stable.clone(), new.clone(), *percent),
            _ => (new.clone(), None, 0),
        };
        ensure!(
            (after.stable.clone(), after.candidate.clone(), after.weight) == expected,
            "after {action}, expected (stable, candidate, weight) = {expected:?}, observed {after:?}"
        );
    }
    Ok(())
}

/// `Rollback` (to the stable version, and with no version) from nothing
/// deployed, a deployed candidate, a candidate taking traffic, and wave
/// rollouts started or halted, returns to the stable version at weight 0
/// with no candidate, and is itself idempotent.
pub async fn rollback_from_every_partial_state<T: Target>(
    make: &mut impl AsyncFnMut() -> T,
    options: &Options,
) -> CheckResult {
    let kind = {
        let target = make().await;
        target.kind()
    };
    let mut prefixes: Vec<Vec<Action>> = vec![Vec::new()];
    if moves_traffic(kind) {
        let deploy = Action::Deploy {
            version: options.candidate_version.clone(),
        };
        let weight = Action::SetWeight {
            percent: canary_weights(kind)[0],
        };
        prefixes.push(vec![deploy.clone()]);
        prefixes.push(vec![deploy, weight]);
    }
    if runs_waves(kind) {
        prefixes.push(vec![wave(0, options)]);
        prefixes.push(vec![wave(0, options), wave(1, options)]);
        prefixes.push(vec![wave(0, options), Action::Halt]);
    }
    for prefix in &prefixes {
        for named in [false, true] {
            let target = make().await;
            let mut driver = Driver::new(&target, "rollback");
            let start = driver.observe("a fresh target").await?;
            for action in prefix {
                driver.apply(action).await?;
            }
            let rollback = Action::Rollback {
                to: if named { start.stable.clone() } else { None },
            };
            let context = format!("{rollback} after [{}]", list(prefix));
            driver
                .apply(&rollback)
                .await
                .map_err(|e| format!("{context}: {e}"))?;
            let after = driver.observe(&context).await?;
            back_on(&after, &start.stable, &context)?;
            driver
                .apply_twice(&rollback)
                .await
                .map_err(|e| format!("{context}: {e}"))?;
        }
    }
    Ok(())
}

/// After Deploy, SetWeight and Promote (before Retire), `Rollback` to the
/// old version puts it back (blue-green's post-promotion switch-back).
pub async fn rollback_after_promotion<T: Target>(
    make: &mut impl AsyncFnMut() -> T,
    options: &Options,
) -> CheckResult {
    let target = make().await;
    if !moves_traffic(target.kind()) {
        return Ok(());
    }
    let mut driver = Driver::new(&target, "rollback-promoted");
    let start = driver.observe("a fresh target").await?;
    let steps = [
        Action::Deploy {
            version: options.candidate_version.clone(),
        },
        Action::SetWeight {
            percent: canary_weights(target.kind())[0],
        },
        Action::Promote,
    ];
    for action in &steps {
        driver.apply(action).await?;
    }
    let rollback = Action::Rollback {
        to: start.stable.clone(),
    };
    driver.apply(&rollback).await?;
    let after = driver.observe("after rolling back a promotion").await?;
    back_on(&after, &start.stable, "rollback after promotion")?;
    driver.apply_twice(&rollback).await
}

/// Dropping `apply` at its first pending point leaves a target that
/// observes without error and rolls back to its stable version; and on
/// which the same action, applied again, completes.
pub async fn cancellation_is_safe<T: Target>(
    make: &mut impl AsyncFnMut() -> T,
    options: &Options,
) -> CheckResult {
    let kind = {
        let target = make().await;
        target.kind()
    };
    let mut sequences = Vec::new();
    if moves_traffic(kind) {
        sequences.push(release(kind, options));
    }
    if runs_waves(kind) {
        sequences.push(vec![wave(0, options), wave(1, options), Action::Halt]);
    }
    for sequence in &sequences {
        for (at, action) in sequence.iter().enumerate() {
            for reapply in [false, true] {
                let target = make().await;
                let mut driver = Driver::new(&target, "cancel");
                let start = driver.observe("a fresh target").await?;
                for done in &sequence[..at] {
                    driver.apply(done).await?;
                }
                let mut context = format!("{action} dropped at its first pending point");
                let key = driver.key();
                if let Poll::Ready(Err(error)) = poll_once(target.apply(action, &key)) {
                    return Err(format!("{action} failed on its first poll: {error}"));
                }
                driver.observe(&context).await?;
                // Once the old version is retired a release is over:
                // rolling back then means staying on the new version.
                let mut retired = sequence[..at].contains(&Action::Retire);
                if reapply {
                    driver
                        .apply(action)
                        .await
                        .map_err(|e| format!("{context}, then applied again: {e}"))?;
                    context.push_str(", then applied again");
                    retired |= *action == Action::Retire;
                }
                let (rollback, expected) = if retired {
                    let new = Some(options.candidate_version.clone());
                    (Action::Rollback { to: None }, new)
                } else {
                    let to = start.stable.clone();
                    (Action::Rollback { to: to.clone() }, to)
                };
                driver
                    .apply(&rollback)
                    .await
                    .map_err(|e| format!("{context}, then {rollback}: {e}"))?;
                let after = driver.observe(&context).await?;
                back_on(&after, &expected, &format!("{context}, then {rollback}"))?;
            }
        }
    }
    Ok(())
}

/// Every apply that changed something reports at least one non-empty
/// request ID, for the audit trail.
pub async fn request_ids_are_reported<T: Target>(
    make: &mut impl AsyncFnMut() -> T,
    options: &Options,
) -> CheckResult {
    let kind = {
        let target = make().await;
        target.kind()
    };
    let mut sequences = Vec::new();
    if moves_traffic(kind) {
        let mut release = release(kind, options);
        release.insert(1, Action::Rollback { to: None });
        release.insert(
            2,
            Action::Deploy {
                version: options.candidate_version.clone(),
            },
        );
        sequences.push(release);
    }
    if runs_waves(kind) {
        sequences.push(vec![
            wave(0, options),
            Action::Halt,
            Action::Rollback { to: None },
        ]);
    }
    for sequence in &sequences {
        let target = make().await;
        let mut driver = Driver::new(&target, "request-ids");
        let mut changes = 0;
        for action in sequence {
            let applied = driver.apply(action).await?;
            if applied.changed {
                changes += 1;
                ensure!(
                    !applied.request_ids.is_empty()
                        && applied.request_ids.iter().all(|id| !id.is_empty()),
                    "{action} changed the target but reported request IDs {:?}",
                    applied.request_ids
                );
            }
        }
        ensure!(
            changes > 0,
            "[{}] changed nothing on a fresh target",
            list(sequence)
        );
    }
    Ok(())
}

/// Actions outside the kind's capabilities fail with `Unsupported`, from
/// `plan` and from `apply`, and change nothing.
pub async fn unsupported_actions_are_refused<T: Target>(
    make: &mut impl AsyncFnMut() -> T,
    options: &Options,
) -> CheckResult {
    let target = make().await;
    let kind = target.kind();
    let mut driver = Driver::new(&target, "unsupported");
    let before = driver.observe("a fresh target").await?;
    let all = [
        Action::Deploy {
            version: options.candidate_version.clone(),
        },
        Action::SetWeight { percent: 10 },
        Action::Promote,
        Action::Retire,
        wave(0, options),
        Action::Halt,
    ];
    for action in all.iter().filter(|action| !supports(kind, action)) {
        match target.plan(&before, action) {
            Err(AdapterError::Unsupported { .. }) => {}
            other => {
                return Err(format!(
                    "plan({action}) on a {} target should be Unsupported, got {other:?}",
                    kind.name()
                ));
            }
        }
        let key = driver.key();
        match target.apply(action, &key).await {
            Err(AdapterError::Unsupported { .. }) => {}
            other => {
                return Err(format!(
                    "{action} on a {} target should be Unsupported, got {other:?}",
                    kind.name()
                ));
            }
        }
    }
    let after = driver.observe("after unsupported actions").await?;
    ensure!(
        after == before,
        "unsupported actions changed the target: {before:?} became {after:?}"
    );
    Ok(())
}

/// `probe` gives a probe for each target-bound gate kind (kubernetes,
/// fleet, sim) the target's kind declares, and `None` for every other.
pub async fn probes_match_capabilities<T: Target>(
    make: &mut impl AsyncFnMut() -> T,
    _options: &Options,
) -> CheckResult {
    let target = make().await;
    let declared = target.kind().capabilities().gates;
    for check in sample_checks() {
        let kind = check.kind();
        let target_bound = matches!(kind, GateKind::Kubernetes | GateKind::Fleet | GateKind::Sim);
        let expected = target_bound && declared.contains(&kind);
        let got = target.probe(&check).is_some();
        ensure!(
            got == expected,
            "probe for a {} gate on a {} target: expected {}, got {}",
            kind.name(),
            target.kind().name(),
            if expected { "a probe" } else { "None" },
            if got { "a probe" } else { "None" }
        );
    }
    Ok(())
}

/// On wave targets: after `Halt`, starting another wave dispatches no
/// device (it may fail or report no change), and the halt is observed.
pub async fn halt_stops_dispatch<T: Target>(
    make: &mut impl AsyncFnMut() -> T,
    options: &Options,
) -> CheckResult {
    let target = make().await;
    if !runs_waves(target.kind()) {
        return Ok(());
    }
    let mut driver = Driver::new(&target, "halt");
    driver.apply(&wave(0, options)).await?;
    let started = driver.observe("after the first wave").await?;
    let Some(progress) = &started.waves else {
        return Err(format!(
            "a wave started but observe reports no wave progress: {started:?}"
        ));
    };
    ensure!(
        progress.waves_started == 1 && progress.dispatched > 0,
        "after one wave of {} devices, observed {progress:?}",
        options.wave_devices
    );
    driver.apply(&Action::Halt).await?;
    let halted = driver.observe("after halting").await?;
    let dispatched = halted.waves.as_ref().map(|w| (w.dispatched, w.halted));
    ensure!(
        dispatched == Some((progress.dispatched, true)),
        "after Halt, expected {} devices dispatched and halted, observed {halted:?}",
        progress.dispatched
    );
    let key = driver.key();
    if let Ok(Applied { changed: true, .. }) = target.apply(&wave(1, options), &key).await {
        return Err("a wave started after Halt reported changed: true".into());
    }
    let after = driver.observe("after a wave following Halt").await?;
    ensure!(
        after == halted,
        "a wave started after Halt changed the target: {halted:?} became {after:?}"
    );
    Ok(())
}

/// Applies and observes for one check, numbering idempotency keys.
struct Driver<'t> {
    target: &'t dyn Target,
    check: &'static str,
    keys: u32,
}

impl<'t> Driver<'t> {
    fn new(target: &'t dyn Target, check: &'static str) -> Self {
        Driver {
            target,
            check,
            keys: 0,
        }
    }

    fn key(&mut self) -> IdempotencyKey {
        self.keys += 1;
        IdempotencyKey(format!("conformance/{}/{}", self.check, self.keys))
    }

    async fn observe(&self, when: &str) -> Result<Observed, String> {
        self.target
            .observe()
            .await
            .map_err(|e| format!("observe ({when}) failed: {e}"))
    }

    async fn apply(&mut self, action: &Action) -> Result<Applied, String> {
        let key = self.key();
        self.apply_with(action, &key).await
    }

    async fn apply_with(&self, action: &Action, key: &IdempotencyKey) -> Result<Applied, String> {
        self.target
            .apply(action, key)
            .await
            .map_err(|e| format!("{action} failed: {e}"))
    }

    /// Applies `action`, then again with the same key and with a new one:
    /// the repeats change nothing and `plan` has nothing left to do.
    async fn apply_twice(&mut self, action: &Action) -> CheckResult {
        let key = self.key();
        self.apply_with(action, &key).await?;
        let once = self.observe(&format!("after {action}")).await?;
        let fresh = self.key();
        for (label, key) in [("the same key", &key), ("a new key", &fresh)] {
            let again = self.apply_with(action, key).await?;
            ensure!(
                !again.changed,
                "{action} applied again with {label} reported changed: true"
            );
            let twice = self.observe(&format!("after {action} again")).await?;
            ensure!(
                twice == once,
                "{action} applied again with {label} changed the target: {once:?} became {twice:?}"
            );
        }
        // `Observed` cannot show whether the replaced version still runs,
        // so a dry run of Retire cannot know that it is done.
        if !matches!(action, Action::Retire) {
            let calls = self
                .target
                .plan(&once, action)
                .map_err(|e| format!("plan({action}) after applying it failed: {e}"))?;
            ensure!(
                calls.is_empty(),
                "plan({action}) after applying it should be empty, got {calls:?}"
            );
        }
        Ok(())
    }
}

fn moves_traffic(kind: TargetKind) -> bool {
    let strategies = kind.capabilities().strategies;
    strategies.contains(&StrategyKind::Canary) || strategies.contains(&StrategyKind::BlueGreen)
}

fn runs_waves(kind: TargetKind) -> bool {
    kind.capabilities()
        .strategies
        .contains(&StrategyKind::Waves)
}

fn supports(kind: TargetKind, action: &Action) -> bool {
    match action {
        Action::Deploy { .. } | Action::SetWeight { .. } | Action::Promote | Action::Retire => {
            moves_traffic(kind)
        }
        Action::StartWave { .. } | Action::Halt => runs_waves(kind),
        // An instance's capability, not its kind's: each adapter that
        // has header routes tests them against its platform.
        Action::SetHeaderRoute { .. } => false,
        Action::Rollback { .. } => true,
    }
}

/// Canary weights 10 and 50, capped at what the kind allows before
/// promotion (CloudFront: 15).
fn canary_weights(kind: TargetKind) -> Vec<u8> {
    let max = kind.capabilities().max_canary_weight.min(100);
    let mut weights = vec![10.min(max), 50.min(max)];
    weights.dedup();
    weights
}

/// A whole canary release: Deploy, the weights, Promote, Retire.
fn release(kind: TargetKind, options: &Options) -> Vec<Action> {
    let mut actions = vec![Action::Deploy {
        version: options.candidate_version.clone(),
    }];
    actions.extend(
        canary_weights(kind)
            .into_iter()
            .map(|percent| Action::SetWeight { percent }),
    );
    actions.extend([Action::Promote, Action::Retire]);
    actions
}

fn wave(index: u32, options: &Options) -> Action {
    Action::StartWave {
        index,
        devices: options.wave_devices,
    }
}

/// Every action the kind supports, with both forms of Rollback.
fn supported_actions(kind: TargetKind, options: &Options, stable: Option<String>) -> Vec<Action> {
    let mut actions = Vec::new();
    if moves_traffic(kind) {
        actions.extend(release(kind, options));
    }
    if runs_waves(kind) {
        actions.extend([wave(0, options), Action::Halt]);
    }
    actions.extend([
        Action::Rollback { to: None },
        Action::Rollback { to: stable },
    ]);
    actions
}

fn back_on(observed: &Observed, stable: &Option<String>, context: &str) -> CheckResult {
    ensure!(
        observed.stable == *stable && observed.candidate.is_none() && observed.weight == 0,
        "{context}: expected stable {stable:?} at weight 0 with no candidate, observed {observed:?}"
    );
    Ok(())
}

fn list(actions: &[Action]) -> String {
    actions
        .iter()
        .map(Action::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One gate of every kind, with plausible settings.
fn sample_checks() -> Vec<GateCheck> {
    vec![
        GateCheck::Http {
            url: "https://conformance.invalid/healthz".into(),
            method: "GET".into(),
            expect_status: vec![200],
            expect_body: None,
            timeout: Duration::from_secs(5),
            headers: BTreeMap::new(),
            allow_insecure_http: false,
        },
        GateCheck::Prometheus {
            address: "https://conformance.invalid".into(),
            query: "up".into(),
            comparison: Comparison::GreaterOrEqual,
            threshold: 1.0,
            allow_insecure_http: false,
        },
        GateCheck::CloudWatch {
            region: None,
            alarms: vec!["conformance".into()],
            metrics: Vec::new(),
        },
        GateCheck::Kubernetes {
            min_ready_percent: 100.0,
        },
        GateCheck::Fleet {
            min_success_rate: 95.0,
            max_anomaly_rate: None,
        },
        GateCheck::Sim {
            min_success_rate: 99.0,
        },
    ]
}

/// Polls `future` once, with a waker that does nothing, and drops it: what
/// happens to an in-flight call when the engine's task is cancelled.
fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
    let mut future = pin!(future);
    future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
}

/// Runs two futures concurrently on the current task.
async fn join<A: Future, B: Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut a_out, mut b_out) = (None, None);
    poll_fn(|cx| {
        if a_out.is_none()
            && let Poll::Ready(out) = a.as_mut().poll(cx)
        {
            a_out = Some(out);
        }
        if b_out.is_none()
            && let Poll::Ready(out) = b.as_mut().poll(cx)
        {
            b_out = Some(out);
        }
        match (a_out.take(), b_out.take()) {
            (Some(a), Some(b)) => Poll::Ready((a, b)),
            (a, b) => {
                (a_out, b_out) = (a, b);
                Poll::Pending
            }
        }
    })
    .await
}
