//! The impact report `deployctl plan` prints: what would happen, in what
//! order, how long it takes at least, and how each stage would be undone.
//!
//! It is computed from the validated plan alone, without touching any
//! target, so it is always safe to run (S4). The engine later fills in what
//! it observes (the live stable versions) before `apply` shows it again.
//! The JSON form is a versioned wire type (`kind: PlanReport`).
//!
//! What is said about one target kind (its label, how a stage on it is
//! undone) comes from that kind's module (`kinds/<kind>.rs`).

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::duration::format_duration;
use crate::kinds;
use crate::model::*;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImpactReport {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub plan: PlanSummary,
    /// Stage names grouped into steps; the stages of one step run concurrently.
    pub concurrency: Vec<Vec<String>>,
    /// Stages in execution order.
    pub stages: Vec<StageImpact>,
    /// The least time the whole plan takes (longest chain of stages), not
    /// counting approvals, device dispatch or platform propagation.
    pub minimum_duration_seconds: f64,
    pub rollback: RollbackSummary,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanSummary {
    pub name: String,
    pub environment: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_ref: Option<String>,
    pub digest: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageImpact {
    pub name: String,
    pub target: String,
    pub target_kind: TargetKind,
    /// What runs now: a pinned version, or "live" (read during preflight).
    pub from: String,
    pub to: String,
    pub after: Vec<String>,
    pub strategy: StrategyKind,
    /// The strategy's steps, one line each (`setWeight 10%`, `pause 5m`, …).
    pub steps: Vec<String>,
    pub gates: Vec<GateSummary>,
    pub approvals: Vec<String>,
    pub minimum_duration_seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    /// How this stage is undone.
    pub rollback: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GateSummary {
    pub name: String,
    pub kind: GateKind,
    /// When in the stage it is checked.
    pub during: String,
    pub description: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackSummary {
    pub automatic: bool,
    pub triggers: Vec<RollbackTrigger>,
    pub scope: RollbackScope,
    /// The order stages are undone in when the whole plan rolls back
    /// (reverse DAG order; stages in the same group go concurrently).
    pub order: Vec<Vec<String>>,
}

impl ImpactReport {
    pub fn new(plan: &ValidatedPlan) -> ImpactReport {
        let graph = plan.graph();
        let stages: Vec<StageImpact> = graph
            .order()
            .iter()
            .map(|id| stage_impact(plan, plan.stage(*id)))
            .collect();
        // Longest path, in execution order: a stage starts when the slowest
        // of its predecessors is done.
        let mut finish = vec![Duration::ZERO; plan.stages.len()];
        for id in graph.order() {
            let start = graph
                .predecessors(*id)
                .iter()
                .map(|p| finish[p.0])
                .max()
                .unwrap_or(Duration::ZERO);
            finish[id.0] = start + stage_minimum(plan, plan.stage(*id));
        }
        let levels = graph.levels();
        let names = |level: &Vec<StageId>| {
            level
                .iter()
                .map(|id| plan.stage(*id).name.clone())
                .collect()
        };
        ImpactReport {
            api_version: crate::raw::API_VERSION,
            kind: "PlanReport",
            plan: PlanSummary {
                name: plan.metadata.name.clone(),
                environment: plan.metadata.environment.clone(),
                owner: plan.metadata.owner.clone(),
                change_ref: plan.metadata.change_ref.clone(),
                digest: plan.digest.clone(),
            },
            concurrency: levels.iter().map(names).collect(),
            stages,
            minimum_duration_seconds: finish
                .iter()
                .max()
                .copied()
                .unwrap_or_default()
                .as_secs_f64(),
            rollback: RollbackSummary {
                automatic: plan.rollback.automatic,
                triggers: plan.rollback.triggers.iter().copied().collect(),
                scope: plan.rollback.scope,
                order: levels.iter().rev().map(names).collect(),
            },
        }
    }

    /// The human-readable form.
    /// The report as `plan` prints it: what would happen, and that
    /// nothing did.
    pub fn render_text(&self) -> String {
        let mut out = self.render_release();
        let _ = writeln!(out);
        let _ = writeln!(out, "Nothing was changed: this is a plan.");
        out
    }

    /// The report as `apply` prints it before it asks and starts: what is
    /// about to happen.
    pub fn render_release(&self) -> String {
        let mut out = String::new();
        let plan = &self.plan;
        let _ = writeln!(out, "Plan {} → {}", plan.name, plan.environment);
        if let Some(owner) = &plan.owner {
            let _ = writeln!(out, "  owner:   {owner}");
        }
        if let Some(change) = &plan.change_ref {
            let _ = writeln!(out, "  change:  {change}");
        }
        let _ = writeln!(out, "  digest:  sha256:{}", plan.digest);
        let _ = writeln!(
            out,
            "  {} stage{} in {} step{}, at least {}",
            self.stages.len(),
            if self.stages.len() == 1 { "" } else { "s" },
            self.concurrency.len(),
            if self.concurrency.len() == 1 { "" } else { "s" },
            format_duration(Duration::from_secs_f64(self.minimum_duration_seconds))
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Execution order (stages on one line run concurrently):"
        );
        for (index, level) in self.concurrency.iter().enumerate() {
            let _ = writeln!(out, "  {}. {}", index + 1, level.join(", "));
        }
        for stage in &self.stages {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "Stage {} — {} target `{}`: {} → {}",
                stage.name,
                kinds::of(stage.target_kind).label(),
                stage.target,
                stage.from,
                stage.to
            );
            if !stage.after.is_empty() {
                let _ = writeln!(out, "  after:     {}", stage.after.join(", "));
            }
            let _ = writeln!(out, "  strategy:  {}", strategy_label(stage.strategy));
            for step in &stage.steps {
                let _ = writeln!(out, "    - {step}");
            }
            for gate in &stage.gates {
                let _ = writeln!(
                    out,
                    "  gate:      {} ({}, {}): {}",
                    gate.name,
                    gate.kind.name(),
                    gate.during,
                    gate.description
                );
            }
            for approval in &stage.approvals {
                let _ = writeln!(out, "  approval:  {approval}");
            }
            let _ = writeln!(
                out,
                "  duration:  at least {}{}",
                format_duration(Duration::from_secs_f64(stage.minimum_duration_seconds)),
                stage
                    .timeout_seconds
                    .map(|t| format!(
                        ", times out after {}",
                        format_duration(Duration::from_secs_f64(t))
                    ))
                    .unwrap_or_default()
            );
            let _ = writeln!(out, "  rollback:  {}", stage.rollback);
        }
        let _ = writeln!(out);
        let rollback = &self.rollback;
        if rollback.automatic {
            let triggers: Vec<&str> = rollback
                .triggers
                .iter()
                .map(|t| match t {
                    RollbackTrigger::GateFailed => "a failed gate",
                    RollbackTrigger::Error => "an error",
                    RollbackTrigger::Timeout => "a timeout",
                    RollbackTrigger::Kill => "a kill",
                })
                .collect();
            let _ = writeln!(
                out,
                "Rollback: automatic on {}; scope: {}",
                triggers.join(", "),
                match rollback.scope {
                    RollbackScope::Plan => "the whole plan",
                    RollbackScope::Stage => "the failing stage only",
                }
            );
        } else {
            let _ = writeln!(
                out,
                "Rollback: manual (`deployctl rollback`); automatic rollback is off"
            );
        }
        let order: Vec<String> = rollback
            .order
            .iter()
            .map(|level| level.join(" + "))
            .collect();
        let _ = writeln!(out, "  undo order: {}", order.join(" → "));
        out
    }
}

fn strategy_label(kind: StrategyKind) -> &'static str {
    match kind {
        StrategyKind::Canary => "canary",
        StrategyKind::BlueGreen => "blue-green",
        StrategyKind::Waves => "OTA waves",
    }
}

fn stage_impact(plan: &ValidatedPlan, stage: &Stage) -> StageImpact {
    let target = plan.target_of(stage);
    let from = match &target.pinned_stable {
        Some(stable) => stable.version.clone(),
        None => kinds::spec(&target.spec).known_stable().map_or_else(
            || "live version (read at preflight)".to_string(),
            str::to_string,
        ),
    };
    let to = target
        .artifact
        .as_ref()
        .map_or_else(|| "(no artifact)".to_string(), |a| a.version.clone());
    let mut steps = Vec::new();
    let mut gates = Vec::new();
    let mut approvals = Vec::new();
    let mut gate = |name: &str, during: &str| {
        if let Some(gate) = plan.gates.get(name) {
            gates.push(GateSummary {
                name: name.to_string(),
                kind: gate.check.kind(),
                during: during.to_string(),
                description: describe_gate(gate),
            });
        }
    };
    match &stage.strategy {
        Strategy::Canary {
            steps: canary,
            gates: background,
        } => {
            for name in background {
                gate(name, "throughout");
            }
            for step in canary {
                steps.push(match step {
                    CanaryStep::SetWeight(weight) => format!("setWeight {weight}%"),
                    CanaryStep::SetHeaderRoute(route) => format!("setHeaderRoute: {route}"),
                    CanaryStep::Pause(duration) => format!("pause {}", format_duration(*duration)),
                    CanaryStep::Analysis(names) => {
                        for name in names {
                            gate(name, "analysis step");
                        }
                        format!("analysis {}", names.join(", "))
                    }
                    CanaryStep::Approval(name) => {
                        approvals.push(describe_approval(plan, name));
                        format!("approval {name}")
                    }
                });
            }
            steps.push("promote: 100% to the new version".to_string());
        }
        Strategy::BlueGreen {
            pre_promotion_gates,
            post_promotion_gates,
            approval,
            scale_down_delay,
        } => {
            steps.push("bring up the new version beside the stable one (preview)".to_string());
            for name in pre_promotion_gates {
                gate(name, "before switch");
            }
            if let Some(name) = approval {
                approvals.push(describe_approval(plan, name));
                steps.push(format!("wait for approval {name}"));
            }
            steps.push("switch all traffic to the new version".to_string());
            for name in post_promotion_gates {
                gate(name, "after switch");
            }
            steps.push(format!(
                "keep the stable version for {} then scale it down",
                format_duration(*scale_down_delay)
            ));
        }
        Strategy::Waves(waves) => {
            let mut cumulative = 0.0;
            for (index, wave) in waves.waves.iter().enumerate() {
                if let Some(name) = &wave.approval {
                    approvals.push(describe_approval(plan, name));
                }
                let size = match wave.size {
                    WaveSize::Percent(percent) => {
                        cumulative += percent;
                        format!("{percent}% of the fleet (cumulative {cumulative}%)")
                    }
                    WaveSize::Count(count) => format!("{count} devices"),
                };
                let approval = wave
                    .approval
                    .as_ref()
                    .map(|name| format!(", after approval {name}"))
                    .unwrap_or_default();
                steps.push(format!("wave {}: {size}{approval}", index + 1));
            }
            steps.push(format!(
                "each wave: ≥{}% success to continue; abort above {}% failures once {} devices reported; device timeout {}; at most {} devices/min; bake {}",
                waves.success_threshold,
                waves.abort_failure_threshold,
                waves.abort_min_devices,
                format_duration(waves.device_timeout),
                waves.max_devices_per_minute,
                format_duration(waves.bake_time)
            ));
            for name in &waves.gates {
                gate(name, "every wave");
            }
        }
    }
    StageImpact {
        name: stage.name.clone(),
        target: target.name.clone(),
        target_kind: target.kind(),
        from: from.clone(),
        to,
        after: stage.after.clone(),
        strategy: stage.strategy.kind(),
        steps,
        gates,
        approvals,
        minimum_duration_seconds: stage_minimum(plan, stage).as_secs_f64(),
        timeout_seconds: stage.timeout.map(|t| t.as_secs_f64()),
        rollback: kinds::spec(&target.spec).rollback(stage.strategy.kind(), &from),
    }
}

fn describe_approval(plan: &ValidatedPlan, name: &str) -> String {
    match plan.approvals.get(name) {
        Some(approval) => format!(
            "{name}: {} approver{} with role `{}` and MFA; on timeout after {}: {}",
            approval.required,
            if approval.required == 1 { "" } else { "s" },
            approval.role,
            format_duration(approval.timeout),
            match approval.on_timeout {
                OnTimeout::Rollback => "roll back",
                OnTimeout::Pause => "stay paused",
            }
        ),
        None => name.to_string(),
    }
}

fn describe_gate(gate: &Gate) -> String {
    let check = match &gate.check {
        GateCheck::Http {
            url,
            method,
            expect_status,
            ..
        } => format!(
            "{method} {url} expects {}",
            expect_status
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join("/")
        ),
        GateCheck::Prometheus {
            query,
            comparison,
            threshold,
            ..
        } => format!("`{query}` {} {threshold}", comparison.symbol()),
        GateCheck::CloudWatch {
            alarms, metrics, ..
        } => {
            let mut parts = Vec::new();
            if !alarms.is_empty() {
                parts.push(format!("alarms OK: {}", alarms.join(", ")));
            }
            for metric in metrics {
                parts.push(format!(
                    "{}/{} {} {} {}",
                    metric.namespace,
                    metric.metric_name,
                    metric.statistic,
                    metric.comparison.symbol(),
                    metric.threshold
                ));
            }
            parts.join("; ")
        }
        GateCheck::Kubernetes { min_ready_percent } => {
            format!("≥{min_ready_percent}% of new pods Ready")
        }
        GateCheck::Fleet {
            min_success_rate,
            max_anomaly_rate,
        } => match max_anomaly_rate {
            Some(anomalies) => {
                format!("≥{min_success_rate}% devices succeeded, ≤{anomalies}% anomalous")
            }
            None => format!("≥{min_success_rate}% devices succeeded"),
        },
        GateCheck::Sim { min_success_rate } => {
            format!("≥{min_success_rate}% simulated requests succeed")
        }
    };
    format!(
        "{check}; {} measurements every {}, fails after {} failure{}, no data is inconclusive",
        gate.count,
        format_duration(gate.interval),
        gate.failure_limit + 1,
        if gate.failure_limit == 0 { "" } else { "s" }
    )
}

/// The least time a stage takes: its pauses, its gates' measurement
/// windows, its bake times.
pub(crate) fn stage_minimum(plan: &ValidatedPlan, stage: &Stage) -> Duration {
    let window = |names: &[String]| {
        names
            .iter()
            .filter_map(|name| plan.gates.get(name))
            .map(Gate::minimum_duration)
            .max()
            .unwrap_or_default()
    };
    match &stage.strategy {
        Strategy::Canary { steps, .. } => steps
            .iter()
            .map(|step| match step {
                CanaryStep::Pause(duration) => *duration,
                CanaryStep::Analysis(names) => window(names),
                CanaryStep::SetWeight(_)
                | CanaryStep::Approval(_)
                | CanaryStep::SetHeaderRoute(_) => Duration::ZERO,
            })
            .sum(),
        Strategy::BlueGreen {
            pre_promotion_gates,
            post_promotion_gates,
            scale_down_delay,
            ..
        } => window(pre_promotion_gates) + window(post_promotion_gates) + *scale_down_delay,
        Strategy::Waves(waves) => {
            let per_wave = waves.bake_time.max(window(&waves.gates));
            per_wave * waves.waves.len() as u32
        }
    }
}
