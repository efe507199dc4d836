//! The one place concrete adapters meet the engine: which `Target` and
//! which probe each plan entry gets, for real runs and for rehearsals.
//!
//! Support is checked before a run starts: a plan that needs an adapter
//! this build does not have is refused with nothing touched, instead of
//! failing halfway through.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use deployctl_adapter::{HealthProbe, Notification, Notifier, Target};
use deployctl_engine::executor::ProbeFactory;
use deployctl_engine::notify::Subscription;
use deployctl_plan::ValidatedPlan;
use deployctl_plan::model::{Channel, Gate, GateCheck, TargetSpec};
use deployctl_probes::WebhookNotifier;
use deployctl_sim::{SimConfig, SimFaults, SimTarget, SimWorld};

/// How targets are provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Real adapters; `sim` targets persist under the state directory so
    /// that the sandbox behaves like a real target across processes.
    Apply,
    /// Every target replaced by an in-memory simulator of its kind.
    Rehearse,
}

/// The adapters for every target a plan's stages move: simulators for
/// `sim` targets, real adapters for the kinds this build has (Lambda).
pub fn targets(
    plan: &ValidatedPlan,
    mode: Mode,
    state_dir: &Path,
) -> Result<BTreeMap<String, Arc<dyn Target>>, String> {
    if mode == Mode::Rehearse {
        return Ok(rehearsal_targets(plan, &BTreeMap::new(), 1)
            .into_iter()
            .map(|(name, t)| (name, t as Arc<dyn Target>))
            .collect());
    }
    let mut unsupported = Vec::new();
    let mut adapters: BTreeMap<String, Arc<dyn Target>> = BTreeMap::new();
    let world = SimWorld::open(state_dir.join("sim"))
        .map_err(|error| format!("cannot open the sandbox's simulated targets: {error}"))?;
    for stage in &plan.stages {
        let target = plan.target_of(stage);
        if adapters.contains_key(&target.name) {
            continue;
        }
        let adapter: Arc<dyn Target> = match &target.spec {
            TargetSpec::Sim(_) => Arc::new(world.target(SimConfig::for_plan_target(target))),
            TargetSpec::Lambda(lambda) => Arc::new(lambda_target(&target.name, lambda)?),
            _ => {
                unsupported.push(format!(
                    "target `{}` is a {} target",
                    target.name,
                    target.kind().name()
                ));
                continue;
            }
        };
        adapters.insert(target.name.clone(), adapter);
    }
    unsupported.extend(unsupported_gates(plan));
    if unsupported.is_empty() {
        Ok(adapters)
    } else {
        Err(format!(
            "this build of deployctl cannot run this plan yet: {}. The CloudFront, ECS, fleet and Kubernetes adapters and CloudWatch gates arrive with their issues; `deployctl rehearse` runs any plan against simulators today. Nothing was changed.",
            unsupported.join("; ")
        ))
    }
}

/// A Lambda alias target with a client from the standard AWS chain
/// (credentials, region, `AWS_ENDPOINT_URL`). Loading the chain is async;
/// it reads files and the environment only, so a short-lived runtime does.
fn lambda_target(
    name: &str,
    spec: &deployctl_plan::raw::LambdaTarget,
) -> Result<deployctl_aws::LambdaTarget, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))?;
    Ok(runtime.block_on(deployctl_aws::LambdaTarget::from_spec(name, spec)))
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

fn unsupported_gates(plan: &ValidatedPlan) -> Vec<String> {
    plan.gates
        .values()
        .filter(|gate| matches!(gate.check, GateCheck::CloudWatch { .. }))
        .map(|gate| format!("gate `{}` is a cloudwatch gate", gate.name))
        .collect()
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
            (Channel::Sns { topic_arn }, Mode::Apply) => {
                return Err(format!(
                    "this build of deployctl cannot notify SNS topic {topic_arn} yet (the AWS adapters arrive with their issue); use a webhook or `deployctl rehearse`. Nothing was changed."
                ));
            }
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
    fn probe(&self, gate: &Gate, target: &Arc<dyn Target>) -> Result<Box<dyn HealthProbe>, String> {
        if self.mode == Mode::Rehearse
            && let Some(simulator) = self.simulators.get(target.name())
        {
            return Ok(simulator.simulated_probe(&gate.check));
        }
        if let Some(probe) = target.probe(&gate.check) {
            return Ok(probe);
        }
        // The plan's own `allowInsecureHttp` travels in the check; the
        // caller adds no permission of its own.
        deployctl_probes::probe_for(&gate.check, true).ok_or_else(|| {
            format!(
                "no probe for `{}` gates on {} targets in this build",
                gate.check.kind().name(),
                target.kind().name()
            )
        })
    }
}
