//! A small harness: a plan from YAML text, one in-memory simulator per
//! target (faults per stage), a journal in a fresh temp directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use deployctl_adapter::{HealthProbe, Target};
use deployctl_engine::executor::{
    Engine, EngineError, EngineOptions, ProbeError, ProbeFactory, RunContext, RunOutcome,
};
use deployctl_engine::journal::{Journal, StageRecord};
use deployctl_engine::progress::ProgressSink;
use deployctl_engine::start::RunRequest;
use deployctl_engine::state::RunMode;
use deployctl_plan::ValidatedPlan;
use deployctl_plan::model::Gate;
use deployctl_sim::{SimConfig, SimFaults, SimTarget};

pub struct Harness {
    pub plan: Arc<ValidatedPlan>,
    pub sims: BTreeMap<String, Arc<SimTarget>>,
    pub journal: Arc<Journal>,
    pub run_id: String,
    source: String,
    dir: PathBuf,
}

/// Every gate measures the simulator's health, as in a rehearsal.
struct SimProbes(BTreeMap<String, Arc<SimTarget>>);

impl ProbeFactory for SimProbes {
    fn probe(
        &self,
        gate: &Gate,
        target: &Arc<dyn Target>,
    ) -> Result<Box<dyn HealthProbe>, ProbeError> {
        Ok(self.0[target.name()].simulated_probe(&gate.check))
    }
}

pub fn plan(yaml: &str) -> ValidatedPlan {
    deployctl_plan::load("test.yaml", yaml.as_bytes())
        .unwrap_or_else(|rejected| panic!("{}", rejected.render(false)))
        .plan
}

impl Harness {
    /// `faults` are keyed by target name.
    pub fn new(yaml: &str, faults: &[(&str, SimFaults)]) -> Harness {
        let plan = plan(yaml);
        let faults: BTreeMap<&str, SimFaults> = faults.iter().cloned().collect();
        let sims = plan
            .targets
            .values()
            .map(|target| {
                let config = SimConfig::for_plan_target(target).with_faults(
                    faults
                        .get(target.name.as_str())
                        .cloned()
                        .unwrap_or_default(),
                );
                (target.name.clone(), Arc::new(SimTarget::in_memory(config)))
            })
            .collect();
        let dir = std::env::temp_dir().join(format!(
            "deployctl-engine-it-{}-{}",
            std::process::id(),
            deployctl_engine::run::new_run_id()
        ));
        let journal = Arc::new(Journal::open(&dir).expect("journal opens"));
        let run_id = deployctl_engine::run::new_run_id();
        Harness {
            plan: Arc::new(plan),
            sims,
            journal,
            run_id,
            source: yaml.to_string(),
            dir,
        }
    }

    pub fn request(&self) -> RunRequest<'_> {
        RunRequest {
            plan_file: "test.yaml",
            plan_source: &self.source,
            initiator: "tester@host",
            mode: RunMode::Apply,
        }
    }

    /// Drives the run with `engine` and `context`: started first (its
    /// preflight, capability check and locks) unless it already exists.
    pub async fn execute_with(
        &self,
        engine: &Engine,
        context: &RunContext,
    ) -> Result<RunOutcome, EngineError> {
        if self.journal.run(&self.run_id).is_err() {
            engine.start(context, &self.request()).await?;
        }
        engine.execute(context).await
    }

    pub fn context(&self) -> RunContext {
        RunContext {
            run_id: self.run_id.clone(),
            plan: self.plan.clone(),
            targets: self
                .sims
                .iter()
                .map(|(name, sim)| (name.clone(), sim.clone() as Arc<dyn Target>))
                .collect(),
            probes: Arc::new(SimProbes(self.sims.clone())),
            notifications: Vec::new(),
        }
    }

    pub fn engine(&self) -> Engine {
        Engine::new(
            self.journal.clone(),
            EngineOptions::default(),
            ProgressSink::default(),
        )
    }

    pub async fn run(&self) -> RunOutcome {
        self.execute_with(&self.engine(), &self.context())
            .await
            .expect("engine runs")
    }

    pub fn stage(&self, name: &str) -> StageRecord {
        self.journal
            .stages(&self.run_id)
            .unwrap()
            .into_iter()
            .find(|stage| stage.name == name)
            .unwrap_or_else(|| panic!("no stage {name}"))
    }

    /// (stable, candidate, weight) as the simulator reports it.
    pub async fn observed(&self, target: &str) -> (Option<String>, Option<String>, u8) {
        let observed = self.sims[target].observe().await.expect("observe works");
        (observed.stable, observed.candidate, observed.weight)
    }

    /// Event kinds of the run, with their stage, in journal order.
    pub fn events(&self) -> Vec<(String, Option<String>)> {
        self.journal
            .events(&self.run_id)
            .unwrap()
            .into_iter()
            .map(|event| (event.kind, event.stage))
            .collect()
    }

    /// Position of the first event of `kind` for `stage`.
    pub fn event_position(&self, kind: &str, stage: &str) -> usize {
        self.events()
            .iter()
            .position(|(k, s)| k == kind && s.as_deref() == Some(stage))
            .unwrap_or_else(|| panic!("no {kind} event for {stage}"))
    }

    pub fn no_effect_applied_twice(&self) {
        for (name, sim) in &self.sims {
            let effects = sim.effects().unwrap();
            assert!(
                effects.keys_applied_twice().is_empty(),
                "{name}: keys applied twice: {:?}",
                effects.keys_applied_twice()
            );
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A plan header with `targets` sim targets named as given, all at 1.0 → 2.0.
pub fn header(targets: &[&str]) -> String {
    let mut yaml = String::from(
        "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {name: test, environment: test}\ntargets:\n",
    );
    for target in targets {
        yaml.push_str(&format!(
            "  {target}: {{sim: {{stableVersion: \"1.0\"}}}}\n"
        ));
    }
    yaml.push_str("artifacts:\n");
    for target in targets {
        yaml.push_str(&format!("  {target}: {{version: \"2.0\"}}\n"));
    }
    yaml
}
