//! The one place concrete adapters meet the engine: which `Target` and
//! which probe each plan entry gets, for real runs and for rehearsals.
//! What each target kind needs comes from its entry in `registry`; this
//! module never matches on target kinds.
//!
//! Support is checked before a run starts: a plan that needs an adapter
//! this build does not have is refused with nothing touched, instead of
//! failing halfway through.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use deployctl_adapter::{HealthProbe, Notification, Notifier, Target};
use deployctl_aws_signals::{CloudWatchProbe, SnsNotifier};
use deployctl_engine::executor::{ProbeError, ProbeFactory};
use deployctl_engine::notify::Subscription;
use deployctl_plan::ValidatedPlan;
use deployctl_plan::model::{Channel, Gate, GateCheck};
use deployctl_probes::WebhookNotifier;
use deployctl_sim::{SimConfig, SimFaults, SimTarget, SimWorld};

use crate::registry;

/// How targets are provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Real adapters; `sim` targets persist under the state directory so
    /// that the sandbox behaves like a real target across processes.
    Apply,
    /// Every target replaced by an in-memory simulator of its kind.
    Rehearse,
}

/// The adapters for every target a plan's stages move, each built by its
/// kind's registry entry: simulators for `sim` targets, real adapters for
/// the kinds this build has. `plan_file` is where the plan was read from:
/// files it names (a Lambda `zipFile`, a CloudFront `configFile`) are
/// relative to its directory. A target that cannot be built stops here,
/// before anything starts; what this build cannot do with a target (its
/// entry's `refusal`) is gathered into one refusal first.
pub fn targets(
    plan: &ValidatedPlan,
    plan_file: &Path,
    mode: Mode,
    state_dir: &Path,
) -> Result<BTreeMap<String, Arc<dyn Target>>, String> {
    if mode == Mode::Rehearse {
        return Ok(rehearsal_targets(plan, &BTreeMap::new(), 1)
            .into_iter()
            .map(|(name, t)| (name, t as Arc<dyn Target>))
            .collect());
    }
    let plan_dir = plan_file.parent().unwrap_or(Path::new("."));
    let unsupported: Vec<String> = plan
        .targets
        .values()
        .filter_map(|target| {
            registry::lookup(target)
                .refusal(plan_dir)
                .map(|reason| format!("target `{}`: {reason}", target.name))
        })
        .collect();
    if !unsupported.is_empty() {
        return Err(format!(
            "this build of deployctl cannot run this plan: {}. `deployctl rehearse` runs any plan against simulators. Nothing was changed.",
            unsupported.join("; ")
        ));
    }
    let mut adapters: BTreeMap<String, Arc<dyn Target>> = BTreeMap::new();
    let world = SimWorld::open(state_dir.join("sim"))
        .map_err(|error| format!("cannot open the sandbox's simulated targets: {error}"))?;
    let mut builder = registry::Builder::new(plan_dir, &world);
    for stage in &plan.stages {
        let target = plan.target_of(stage);
        if adapters.contains_key(&target.name) {
            continue;
        }
        let adapter = registry::lookup(target)
            .build(&mut builder)
            .map_err(|error| error.to_string())?;
        adapters.insert(target.name.clone(), adapter);
    }
    Ok(adapters)
}

/// Every target of the plan as an in-memory simulator of its kind, with
/// `faults` (by stage) injected: what `rehearse` runs against. The
/// concrete simulators are kept so the rehearsal can read their state.
pub fn rehearsal_targets(
    plan: &ValidatedPlan,
    faults: &BTreeMap<String, SimFaults>,
    seed: u64,
) -> BTreeMap<String, Arc<SimTarget>> {
    let mut simulators = BTreeMap::new();
    for stage in &plan.stages {
        let target = plan.target_of(stage);
        simulators.entry(target.name.clone()).or_insert_with(|| {
            let config = SimConfig::for_plan_target(target)
                .with_seed(seed)
                .with_faults(faults.get(&stage.name).cloned().unwrap_or_default());
            Arc::new(SimTarget::in_memory(config))
        });
    }
    simulators
}

/// The plan's notification channels. Rehearsals announce nothing to
/// anyone: each channel is replaced by one that only journals what it
/// would have sent, so a drill shows its notifications without paging.
pub fn notifications(plan: &ValidatedPlan, mode: Mode) -> Result<Vec<Subscription>, String> {
    let mut subscriptions = Vec::new();
    for notification in &plan.notifications {
        let notifier: Arc<dyn Notifier> = match (&notification.channel, mode) {
            (channel, Mode::Rehearse) => Arc::new(Rehearsed(describe_channel(channel))),
            (
                Channel::Webhook {
                    url,
                    allow_insecure_http,
                },
                Mode::Apply,
            ) => Arc::new(
                WebhookNotifier::new(url, *allow_insecure_http)
                    .map_err(|error| format!("webhook {url}: {error}"))?,
            ),
            // The client comes from the standard AWS chain in the topic's
            // region, loaded on the first delivery.
            (Channel::Sns { topic_arn }, Mode::Apply) => Arc::new(
                SnsNotifier::from_topic_arn(topic_arn)
                    .map_err(|error| format!("notifications: {error}. Nothing was changed."))?,
            ),
        };
        subscriptions.push(Subscription {
            events: notification.events.clone(),
            notifier,
        });
    }
    Ok(subscriptions)
}

fn describe_channel(channel: &Channel) -> String {
    match channel {
        Channel::Sns { topic_arn } => format!("SNS {topic_arn}"),
        Channel::Webhook { url, .. } => format!("webhook {url}"),
    }
}

/// A rehearsal's stand-in for a real channel.
struct Rehearsed(String);

impl Notifier for Rehearsed {
    fn notify<'a>(
        &'a self,
        _notification: &'a Notification,
    ) -> deployctl_adapter::BoxFuture<'a, Result<(), deployctl_adapter::AdapterError>> {
        Box::pin(async { Ok(()) })
    }

    fn describe(&self) -> String {
        format!("rehearsal: would send to {}", self.0)
    }
}

/// Probes for real runs: target-bound gate kinds come from the target,
/// HTTP and Prometheus from `deployctl-probes`.
pub struct Probes {
    mode: Mode,
    simulators: BTreeMap<String, Arc<SimTarget>>,
}

impl Probes {
    pub fn for_mode(mode: Mode) -> Probes {
        Probes {
            mode,
            simulators: BTreeMap::new(),
        }
    }

    /// Rehearsal probes: every gate measures the simulator's health.
    pub fn rehearsal(simulators: BTreeMap<String, Arc<SimTarget>>) -> Probes {
        Probes {
            mode: Mode::Rehearse,
            simulators,
        }
    }
}

impl ProbeFactory for Probes {
    fn probe(
        &self,
        gate: &Gate,
        target: &Arc<dyn Target>,
    ) -> Result<Box<dyn HealthProbe>, ProbeError> {
        if self.mode == Mode::Rehearse
            && let Some(simulator) = self.simulators.get(target.name())
        {
            return Ok(simulator.simulated_probe(&gate.check));
        }
        self.unguarded(gate, target)
            .map(|probe| target.guard(probe))
    }
}

impl Probes {
    fn unguarded(
        &self,
        gate: &Gate,
        target: &Arc<dyn Target>,
    ) -> Result<Box<dyn HealthProbe>, ProbeError> {
        if let Some(probe) = target.probe(&gate.check) {
            return Ok(probe);
        }
        // CloudWatch gates are not bound to a target: any target kind may
        // be judged by alarms and metrics (the client loads on first use).
        if let GateCheck::CloudWatch { .. } = &gate.check {
            return CloudWatchProbe::from_check(&gate.check)
                .map(|probe| Box::new(probe) as Box<dyn HealthProbe>)
                .map_err(|error| ProbeError::Build {
                    gate: gate.name.clone(),
                    source: Box::new(error),
                });
        }
        // The plan's own `allowInsecureHttp` travels in the check; the
        // caller adds no permission of its own.
        deployctl_probes::probe_for(&gate.check, true).ok_or_else(|| ProbeError::Unsupported {
            gate_kind: gate.check.kind().name().to_string(),
            target_kind: target.kind().name().to_string(),
        })
    }
}

/// Whether running `plan` calls AWS: a target whose kind does (Lambda,
/// CloudFront, ECS, fleet: `registry`), a CloudWatch gate or an SNS
/// channel.
pub fn touches_aws(plan: &ValidatedPlan) -> bool {
    plan.targets
        .values()
        .any(|target| registry::lookup(target).touches_aws())
        || plan
            .gates
            .values()
            .any(|gate| matches!(gate.check, GateCheck::CloudWatch { .. }))
        || plan
            .notifications
            .iter()
            .any(|n| matches!(n.channel, Channel::Sns { .. }))
}

/// How long resolving the caller may take before the command gives up,
/// and one attempt of it.
const IDENTITY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
const IDENTITY_ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Who this process is on AWS (issue 5): when `plan` calls AWS, the caller
/// ARN from STS `GetCallerIdentity` with the standard chain (the same
/// credentials the adapters use), recorded for every audit record this
/// command writes from now on (`caller`: the command's trail's).
/// `Ok(None)` for plans that never call AWS. An error means the
/// credentials are missing, expired or invalid, or AWS is unreachable.
pub fn resolve_aws_caller(
    plan: &ValidatedPlan,
    caller: &deployctl_trail::Caller,
) -> Result<Option<String>, String> {
    if !touches_aws(plan) {
        return Ok(None);
    }
    let region = plan_region(plan);
    // Its own thread and runtime: callers may or may not be inside one.
    let resolved = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|error| format!("cannot start the async runtime: {error}"))?;
                runtime.block_on(async {
                    let lookup = async {
                        // Without a region from the chain: the plan's, or
                        // STS's home region.
                        let sdk = deployctl_aws::config::or_region(
                            deployctl_aws::config::load(None).await,
                            region.as_deref().unwrap_or("us-east-1"),
                        );
                        // A throttle or a dropped connection is retried
                        // like any other call (the engine's policy), each
                        // attempt bounded so one hung call cannot use up
                        // the whole lookup.
                        let policy = deployctl_engine::retry::RetryPolicy::default();
                        deployctl_engine::retry::retry(&policy, |_| async {
                            tokio::time::timeout(
                                IDENTITY_ATTEMPT_TIMEOUT,
                                deployctl_aws::identity::caller_arn(&sdk),
                            )
                            .await
                            .unwrap_or_else(|_| {
                                Err(deployctl_adapter::AdapterError::Timeout {
                                    message: format!(
                                        "sts:GetCallerIdentity: no answer within {IDENTITY_ATTEMPT_TIMEOUT:?}"
                                    ),
                                })
                            })
                        })
                        .await
                    };
                    match tokio::time::timeout(IDENTITY_TIMEOUT, lookup).await {
                        Ok(Ok(arn)) => Ok(arn),
                        Ok(Err(gave_up)) => Err(gave_up.to_string()),
                        Err(_) => Err(format!("no answer within {IDENTITY_TIMEOUT:?}")),
                    }
                })
            })
            .join()
            .unwrap_or_else(|_| Err("the identity lookup failed unexpectedly".to_string()))
    });
    match resolved {
        Ok(arn) => {
            caller.set(&arn);
            Ok(Some(arn))
        }
        Err(error) => Err(format!(
            "this plan calls AWS, but who the AWS credentials belong to cannot be established ({error}); check AWS_PROFILE / AWS_ACCESS_KEY_ID, the session's expiry and AWS_ENDPOINT_URL"
        )),
    }
}

/// The first region the plan names, for the identity lookup when the AWS
/// chain (`AWS_REGION`, the profile) has none.
fn plan_region(plan: &ValidatedPlan) -> Option<String> {
    let from_targets = plan
        .targets
        .values()
        .find_map(|target| registry::lookup(target).region().map(str::to_owned));
    let from_gates = || {
        plan.gates.values().find_map(|gate| match &gate.check {
            GateCheck::CloudWatch { region, .. } => region.clone(),
            _ => None,
        })
    };
    let from_topics = || {
        plan.notifications
            .iter()
            .find_map(|notification| match &notification.channel {
                Channel::Sns { topic_arn } => SnsNotifier::region_of(topic_arn).ok(),
                Channel::Webhook { .. } => None,
            })
    };
    from_targets.or_else(from_gates).or_else(from_topics)
}
