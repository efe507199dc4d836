//! [`RawPlan`] → [`ValidatedPlan`], collecting every problem on the way.
//!
//! The checker never stops at the first finding: each section is checked
//! independently and reports against field paths, so one run shows the
//! author everything to fix. A plan with any error yields no
//! `ValidatedPlan` at all, which is what makes "nothing is touched" hold.
//!
//! This module walks the plan and holds the checks every target shares
//! (references, strategies against the capability table, gates, approvals,
//! rollback, notifications, the stage graph). What only one target kind
//! asks for is checked in that kind's module under [`crate::kinds`], and
//! the field-level checks both use are in [`crate::check`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use crate::check::Checker;
use crate::diagnostic::{Diagnostic, suggest};
use crate::graph::ExecutionGraph;
use crate::kinds::{self, Source};
use crate::model::*;
use crate::raw::{self, RawPlan};

/// Checks `plan`; on success also returns any warnings.
pub fn validate(
    plan: &RawPlan,
    digest: String,
) -> Result<(ValidatedPlan, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut checker = Checker::default();
    let built = checker.plan(plan, digest);
    if checker.diagnostics.iter().any(Diagnostic::is_error) {
        Err(checker.diagnostics)
    } else {
        let built = built.expect("a plan with no errors is always built");
        checker.timeouts_shorter_than_stages(&built);
        Ok((built, checker.diagnostics))
    }
}

impl Checker {
    /// A stage whose pauses and gate windows alone outlast its timeout
    /// can only time out (and roll back): said at validate and plan
    /// time, not an hour into the release.
    fn timeouts_shorter_than_stages(&mut self, plan: &ValidatedPlan) {
        for (index, stage) in plan.stages.iter().enumerate() {
            let Some(timeout) = stage.timeout else {
                continue;
            };
            let least = crate::report::stage_minimum(plan, stage);
            if least > timeout {
                let least = crate::duration::format_duration(least);
                self.warning(
                    format!("stages[{index}].timeout"),
                    format!(
                        "stage `{}` takes at least {least} (its pauses, gate windows and bake times) but times out after {}: it will always time out and roll back",
                        stage.name,
                        crate::duration::format_duration(timeout)
                    ),
                );
                if let Some(warning) = self.diagnostics.last_mut() {
                    warning.hint = Some(format!(
                        "raise the timeout above {least}, or shorten the stage's pauses and gate windows"
                    ));
                }
            }
        }
    }

    fn plan(&mut self, plan: &RawPlan, digest: String) -> Option<ValidatedPlan> {
        self.metadata(&plan.metadata);
        let mut targets = BTreeMap::new();
        if plan.targets.is_empty() {
            self.error("targets", "a plan needs at least one target");
        }
        for (name, target) in &plan.targets {
            if let Some(spec) = self.target(name, target) {
                targets.insert(
                    name.clone(),
                    Target {
                        name: name.clone(),
                        spec,
                        artifact: None,
                        pinned_stable: None,
                        waves: None,
                        strategy: None,
                    },
                );
            }
        }
        self.target_artifacts(
            "artifacts",
            &plan.artifacts,
            plan,
            &mut targets,
            |target, artifact| {
                target.artifact = Some(artifact);
            },
        );
        let gates = self.gates(plan);
        let approvals = self.approvals(plan);
        let rollback = self.rollback(plan, &mut targets);
        let notifications = self.notifications(plan);
        let stages = self.stages(plan, &targets, &gates, &plan.approvals);
        for stage in stages.iter().rev() {
            if let Some(target) = targets.get_mut(&stage.target) {
                target.strategy = Some(stage.strategy.kind());
                target.waves = match &stage.strategy {
                    Strategy::Waves(waves) => Some(waves.clone()),
                    _ => None,
                };
            }
        }
        self.unused(plan);
        self.rollback_paths(plan);
        let graph = self.graph(plan, &stages);
        let graph = graph?;
        if self.diagnostics.iter().any(Diagnostic::is_error) {
            return None;
        }
        Some(ValidatedPlan {
            metadata: plan.metadata.clone(),
            digest,
            targets,
            stages,
            gates,
            approvals,
            rollback,
            notifications,
            graph,
        })
    }

    fn metadata(&mut self, metadata: &raw::Metadata) {
        self.name("metadata.name", "plan name", &metadata.name);
        let environment = &metadata.environment;
        if environment.is_empty()
            || !environment
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            self.error(
                "metadata.environment",
                format!("environment `{environment}` must be lowercase letters, digits and `-`"),
            )
            .hint = Some("e.g. `production`, `staging`, `eu-prod`".into());
        }
        for key in metadata.labels.keys() {
            if key.is_empty() || key.len() > 63 || key.contains(char::is_whitespace) {
                self.error(
                    format!("metadata.labels.{key}"),
                    "label keys are 1–63 characters without spaces",
                );
            }
        }
    }

    /// A target: a valid name and exactly one kind section, which that
    /// kind then checks.
    fn target(&mut self, name: &str, target: &raw::Target) -> Option<TargetSpec> {
        let path = format!("targets.{name}");
        self.name(&path, "target name", name);
        let written: Vec<(&str, bool)> = TargetKind::ALL
            .iter()
            .map(|kind| {
                let rules = kinds::of(*kind);
                (rules.name(), rules.is_written(target))
            })
            .collect();
        let kind = TargetKind::ALL[self.exactly_one(&path, "a target", &written)?];
        kinds::of(kind).check(self, &path, target)
    }

    /// Checks a map of artifacts keyed by target name (`artifacts`, or
    /// `rollback.stable`) and stores each valid one on its target.
    fn target_artifacts(
        &mut self,
        section: &str,
        entries: &BTreeMap<String, raw::Artifact>,
        plan: &RawPlan,
        targets: &mut BTreeMap<String, Target>,
        store: fn(&mut Target, Artifact),
    ) {
        for (name, artifact) in entries {
            let path = format!("{section}.{name}");
            if !plan.targets.contains_key(name) {
                self.reference(&path, "target", name, &plan.targets);
                continue;
            }
            let Some(target) = targets.get_mut(name) else {
                continue;
            };
            let kind = target.kind();
            if let Some(checked) = self.artifact(&path, kind, artifact) {
                store(target, checked);
            }
        }
    }

    /// One artifact for a target of `kind`: the right source for the kind,
    /// well formed.
    fn artifact(
        &mut self,
        path: &str,
        kind: TargetKind,
        artifact: &raw::Artifact,
    ) -> Option<Artifact> {
        self.non_empty(&format!("{path}.version"), &artifact.version);
        let allowed = kinds::of(kind).artifact_sources();
        let takes = |source: &Source| allowed.iter().any(|a| a.key == source.key);
        if let Some(wrong) = kinds::SOURCES
            .iter()
            .find(|source| (source.written)(artifact) && !takes(source))
        {
            let expected = if allowed.is_empty() {
                "only a `version`".to_string()
            } else {
                allowed
                    .iter()
                    .map(|a| format!("`{}`", a.key))
                    .collect::<Vec<_>>()
                    .join(" or ")
            };
            self.error(
                format!("{path}.{}", wrong.key),
                format!(
                    "a {} target cannot take `{}`; it takes {expected}",
                    kind.name(),
                    wrong.key
                ),
            );
            return None;
        }
        // A kind that takes no source section (the simulator) needs nothing
        // but the version label.
        if allowed.is_empty() {
            return Some(Artifact {
                version: artifact.version.clone(),
                source: ArtifactSource::Label,
            });
        }
        // Offered in `SOURCES` order, which is the order "exactly one of"
        // has always named them in.
        let offered: Vec<&Source> = kinds::SOURCES
            .iter()
            .copied()
            .filter(|source| takes(source))
            .collect();
        let written: Vec<(&str, bool)> = offered
            .iter()
            .map(|source| (source.key, (source.written)(artifact)))
            .collect();
        let chosen = offered[self.exactly_one(
            path,
            &format!("an artifact for a {} target", kind.name()),
            &written,
        )?];
        let source = (chosen.check)(self, path, artifact)?;
        Some(Artifact {
            version: artifact.version.clone(),
            source,
        })
    }

    fn gates(&mut self, plan: &RawPlan) -> BTreeMap<String, Gate> {
        let mut gates = BTreeMap::new();
        for (name, gate) in &plan.gates {
            let path = format!("gates.{name}");
            self.name(&path, "gate name", name);
            if let Some(checked) = self.gate(&path, name, gate) {
                gates.insert(name.clone(), checked);
            }
        }
        gates
    }

    fn gate(&mut self, path: &str, name: &str, gate: &raw::Gate) -> Option<Gate> {
        let interval = self.optional_duration(
            &format!("{path}.interval"),
            gate.interval.as_ref(),
            Duration::from_secs(10),
        );
        let count = gate.count.map_or(Some(3), |count| {
            self.int_in(&format!("{path}.count"), count, 1, 10_000)
        });
        let mut limit = |field: &str, value: Option<i64>, default: u32| {
            value.map_or(Some(default), |value| {
                self.int_in(&format!("{path}.{field}"), value, 0, 10_000)
            })
        };
        let failure_limit = limit("failureLimit", gate.failure_limit, 0);
        let consecutive_error_limit =
            limit("consecutiveErrorLimit", gate.consecutive_error_limit, 4);
        let inconclusive_limit = limit("inconclusiveLimit", gate.inconclusive_limit, 3);
        if let (Some(count), Some(failures)) = (count, failure_limit)
            && failures >= count
        {
            self.error(
                format!("{path}.failureLimit"),
                format!("a failure limit of {failures} with {count} measurements can never fail the gate"),
            )
            .hint = Some("make failureLimit smaller than count".into());
        }
        let which = self.exactly_one(
            path,
            "a gate",
            &[
                ("http", gate.http.is_some()),
                ("prometheus", gate.prometheus.is_some()),
                ("cloudwatch", gate.cloudwatch.is_some()),
                ("kubernetes", gate.kubernetes.is_some()),
                ("fleet", gate.fleet.is_some()),
                ("sim", gate.sim.is_some()),
            ],
        )?;
        let check = match which {
            0 => {
                let http = gate.http.as_ref()?;
                let at = format!("{path}.http");
                self.url(&format!("{at}.url"), &http.url, http.allow_insecure_http);
                let method = http.method.clone().unwrap_or_else(|| "GET".into());
                if !["GET", "HEAD", "POST"].contains(&method.as_str()) {
                    self.error(
                        format!("{at}.method"),
                        format!("`{method}` is not a probe method; use GET, HEAD or POST"),
                    );
                }
                let mut expect_status = Vec::new();
                for (index, status) in http.expect_status.iter().enumerate() {
                    if let Some(status) =
                        self.int_in(&format!("{at}.expectStatus[{index}]"), *status, 100, 599)
                    {
                        expect_status.push(status as u16);
                    }
                }
                if http.expect_status.is_empty() {
                    expect_status.push(200);
                }
                GateCheck::Http {
                    url: http.url.clone(),
                    method,
                    expect_status,
                    expect_body: http.expect_body.clone(),
                    timeout: self.optional_duration(
                        &format!("{at}.timeout"),
                        http.timeout.as_ref(),
                        Duration::from_secs(5),
                    ),
                    headers: http.headers.clone(),
                    allow_insecure_http: http.allow_insecure_http,
                }
            }
            1 => {
                let prometheus = gate.prometheus.as_ref()?;
                let at = format!("{path}.prometheus");
                self.url(
                    &format!("{at}.address"),
                    &prometheus.address,
                    prometheus.allow_insecure_http,
                );
                self.non_empty(&format!("{at}.query"), &prometheus.query);
                GateCheck::Prometheus {
                    address: prometheus.address.clone(),
                    query: prometheus.query.clone(),
                    comparison: self
                        .comparison(&format!("{at}.comparison"), &prometheus.comparison)?,
                    threshold: self.finite(&format!("{at}.threshold"), prometheus.threshold)?,
                    allow_insecure_http: prometheus.allow_insecure_http,
                }
            }
            2 => {
                let cloudwatch = gate.cloudwatch.as_ref()?;
                let at = format!("{path}.cloudwatch");
                if cloudwatch.alarms.is_empty() && cloudwatch.metrics.is_empty() {
                    self.error(&at, "a CloudWatch gate needs at least one alarm or metric");
                }
                for (index, alarm) in cloudwatch.alarms.iter().enumerate() {
                    self.non_empty(&format!("{at}.alarms[{index}]"), alarm);
                }
                let mut metrics = Vec::new();
                for (index, metric) in cloudwatch.metrics.iter().enumerate() {
                    if let Some(metric) = self.metric(&format!("{at}.metrics[{index}]"), metric) {
                        metrics.push(metric);
                    }
                }
                GateCheck::CloudWatch {
                    region: cloudwatch.region.clone(),
                    alarms: cloudwatch.alarms.clone(),
                    metrics,
                }
            }
            3 => GateCheck::Kubernetes {
                min_ready_percent: self.percent(
                    &format!("{path}.kubernetes.minReadyPercent"),
                    gate.kubernetes.as_ref()?.min_ready_percent.unwrap_or(100.0),
                ),
            },
            4 => {
                let fleet = gate.fleet.as_ref()?;
                GateCheck::Fleet {
                    min_success_rate: self.percent(
                        &format!("{path}.fleet.minSuccessRate"),
                        fleet.min_success_rate,
                    ),
                    max_anomaly_rate: fleet
                        .max_anomaly_rate
                        .map(|rate| self.percent(&format!("{path}.fleet.maxAnomalyRate"), rate)),
                }
            }
            _ => GateCheck::Sim {
                min_success_rate: self.percent(
                    &format!("{path}.sim.minSuccessRate"),
                    gate.sim.as_ref()?.min_success_rate.unwrap_or(99.0),
                ),
            },
        };
        Some(Gate {
            name: name.to_string(),
            check,
            interval,
            count: count?,
            failure_limit: failure_limit?,
            consecutive_error_limit: consecutive_error_limit?,
            inconclusive_limit: inconclusive_limit?,
        })
    }

    fn metric(&mut self, path: &str, metric: &raw::MetricThreshold) -> Option<MetricCheck> {
        self.non_empty(&format!("{path}.namespace"), &metric.namespace);
        self.non_empty(&format!("{path}.metricName"), &metric.metric_name);
        let statistic = &metric.statistic;
        let percentile = statistic
            .strip_prefix('p')
            .and_then(|n| n.parse::<f64>().ok())
            .is_some_and(|n| n > 0.0 && n < 100.0);
        if !percentile
            && !["Average", "Sum", "Minimum", "Maximum", "SampleCount"]
                .contains(&statistic.as_str())
        {
            self.error(
                format!("{path}.statistic"),
                format!("`{statistic}` is not a CloudWatch statistic"),
            )
            .hint = Some(
                "use Average, Sum, Minimum, Maximum, SampleCount or a percentile like p99".into(),
            );
        }
        let period = self.optional_duration(
            &format!("{path}.period"),
            metric.period.as_ref(),
            Duration::from_secs(60),
        );
        let seconds = period.as_secs();
        let high_resolution = [1, 5, 10, 20, 30].contains(&seconds);
        if period.subsec_millis() != 0
            || !(high_resolution || (seconds >= 60 && seconds.is_multiple_of(60)))
        {
            self.error(
                format!("{path}.period"),
                "CloudWatch periods are 1, 5, 10, 20 or 30 seconds, or a multiple of 60 seconds",
            );
        }
        Some(MetricCheck {
            namespace: metric.namespace.clone(),
            metric_name: metric.metric_name.clone(),
            dimensions: metric.dimensions.clone(),
            statistic: statistic.clone(),
            period,
            comparison: self.comparison(&format!("{path}.comparison"), &metric.comparison)?,
            threshold: self.finite(&format!("{path}.threshold"), metric.threshold)?,
        })
    }

    fn approvals(&mut self, plan: &RawPlan) -> BTreeMap<String, Approval> {
        let mut approvals = BTreeMap::new();
        for (name, approval) in &plan.approvals {
            let path = format!("approvals.{name}");
            self.name(&path, "approval name", name);
            self.non_empty(&format!("{path}.role"), &approval.role);
            let required = approval.required.map_or(Some(1), |n| {
                self.int_in(&format!("{path}.required"), n, 1, 10)
            });
            let timeout = self.optional_duration(
                &format!("{path}.timeout"),
                approval.timeout.as_ref(),
                Duration::from_secs(86_400),
            );
            let on_timeout = match approval.on_timeout.as_deref() {
                None | Some("rollback") => Some(OnTimeout::Rollback),
                Some("pause") => Some(OnTimeout::Pause),
                Some(other) => {
                    self.error(
                        format!("{path}.onTimeout"),
                        format!("`{other}` is not a timeout action"),
                    )
                    .hint = Some("use `rollback` (the default) or `pause`".into());
                    None
                }
            };
            if let (Some(required), Some(on_timeout)) = (required, on_timeout) {
                approvals.insert(
                    name.clone(),
                    Approval {
                        name: name.clone(),
                        role: approval.role.clone(),
                        required,
                        timeout,
                        on_timeout,
                    },
                );
            }
        }
        approvals
    }

    fn rollback(
        &mut self,
        plan: &RawPlan,
        targets: &mut BTreeMap<String, Target>,
    ) -> RollbackPolicy {
        let raw = plan.rollback.clone().unwrap_or_default();
        let mut triggers = BTreeSet::new();
        for (index, trigger) in raw.on.iter().enumerate() {
            match RollbackTrigger::ALL
                .iter()
                .find(|(name, _)| name == trigger)
            {
                Some((_, trigger)) => {
                    triggers.insert(*trigger);
                }
                None => {
                    let names = RollbackTrigger::ALL.map(|(name, _)| name);
                    self.error(
                        format!("rollback.on[{index}]"),
                        format!("`{trigger}` is not a rollback trigger"),
                    )
                    .hint = Some(match suggest(trigger, names) {
                        Some(best) => format!("did you mean `{best}`?"),
                        None => format!("use {}", names.join(", ")),
                    });
                }
            }
        }
        if raw.on.is_empty() {
            triggers = RollbackTrigger::ALL
                .iter()
                .map(|(_, trigger)| *trigger)
                .collect();
        }
        let scope = match raw.scope.as_deref() {
            None | Some("plan") => RollbackScope::Plan,
            Some("stage") => RollbackScope::Stage,
            Some(other) => {
                self.error(
                    "rollback.scope",
                    format!("`{other}` is not a rollback scope"),
                )
                .hint = Some("use `plan` (the default) or `stage`".into());
                RollbackScope::Plan
            }
        };
        let automatic = raw.automatic.unwrap_or(true);
        if !automatic {
            self.warning(
                "rollback.automatic",
                "automatic rollback is off: a failed gate will leave traffic where it is until someone runs `deployctl rollback`",
            );
        }
        self.target_artifacts(
            "rollback.stable",
            &raw.stable,
            plan,
            targets,
            |target, artifact| {
                target.pinned_stable = Some(artifact);
            },
        );
        RollbackPolicy {
            automatic,
            triggers,
            scope,
        }
    }

    fn notifications(&mut self, plan: &RawPlan) -> Vec<Notification> {
        let mut notifications = Vec::new();
        for (index, notification) in plan.notifications.iter().enumerate() {
            let path = format!("notifications[{index}]");
            let mut events = BTreeSet::new();
            if notification.on.is_empty() {
                self.error(
                    format!("{path}.on"),
                    "list at least one event to notify about",
                );
            }
            for (event_index, event) in notification.on.iter().enumerate() {
                match RunEvent::ALL.iter().find(|(name, _)| name == event) {
                    Some((_, event)) => {
                        events.insert(*event);
                    }
                    None => {
                        let names = RunEvent::ALL.map(|(name, _)| name);
                        self.error(
                            format!("{path}.on[{event_index}]"),
                            format!("`{event}` is not a run event"),
                        )
                        .hint = Some(match suggest(event, names) {
                            Some(best) => format!("did you mean `{best}`?"),
                            None => format!("use {}", names.join(", ")),
                        });
                    }
                }
            }
            let which = self.exactly_one(
                &path,
                "a notification",
                &[
                    ("sns", notification.sns.is_some()),
                    ("webhook", notification.webhook.is_some()),
                ],
            );
            let channel = match which {
                Some(0) => {
                    let topic_arn = notification
                        .sns
                        .as_ref()
                        .map(|sns| sns.topic_arn.clone())
                        .unwrap_or_default();
                    if !topic_arn.starts_with("arn:aws:sns:") || topic_arn.split(':').count() != 6 {
                        self.error(
                            format!("{path}.sns.topicArn"),
                            format!("`{topic_arn}` is not an SNS topic ARN"),
                        )
                        .hint = Some("e.g. `arn:aws:sns:eu-west-1:123456789012:deploys`".into());
                    }
                    Channel::Sns { topic_arn }
                }
                Some(_) => {
                    let Some(webhook) = notification.webhook.as_ref() else {
                        continue;
                    };
                    self.url(
                        &format!("{path}.webhook.url"),
                        &webhook.url,
                        webhook.allow_insecure_http,
                    );
                    Channel::Webhook {
                        url: webhook.url.clone(),
                        allow_insecure_http: webhook.allow_insecure_http,
                    }
                }
                None => continue,
            };
            notifications.push(Notification { events, channel });
        }
        notifications
    }

    fn stages(
        &mut self,
        plan: &RawPlan,
        targets: &BTreeMap<String, Target>,
        gates: &BTreeMap<String, Gate>,
        approvals: &BTreeMap<String, raw::Approval>,
    ) -> Vec<Stage> {
        if plan.stages.is_empty() {
            self.error("stages", "a plan needs at least one stage");
        }
        let mut first_use_of_name: HashMap<&str, usize> = HashMap::new();
        let mut mover_of_target: HashMap<&str, usize> = HashMap::new();
        let mut stages = Vec::new();
        for (index, stage) in plan.stages.iter().enumerate() {
            let path = format!("stages[{index}]");
            self.name(&format!("{path}.name"), "stage name", &stage.name);
            if let Some(first) = first_use_of_name.insert(&stage.name, index) {
                first_use_of_name.insert(&stage.name, first);
                self.error(
                    format!("{path}.name"),
                    format!(
                        "stage name `{}` is already used by stages[{first}]",
                        stage.name
                    ),
                );
            }
            let target = if plan.targets.contains_key(&stage.target) {
                targets.get(&stage.target)
            } else {
                self.reference(
                    &format!("{path}.target"),
                    "target",
                    &stage.target,
                    &plan.targets,
                );
                None
            };
            if plan.targets.contains_key(&stage.target)
                && let Some(first) = mover_of_target.insert(&stage.target, index)
            {
                mover_of_target.insert(&stage.target, first);
                self.error(
                    format!("{path}.target"),
                    format!(
                        "target `{}` is already moved by stages[{first}]",
                        stage.target
                    ),
                )
                .hint = Some(
                    "one stage moves a target from stable to new; put all its steps in that stage"
                        .into(),
                );
            }
            if let Some(target) = target
                && target.artifact.is_none()
                && !plan.artifacts.contains_key(&stage.target)
            {
                self.error(
                    format!("{path}.target"),
                    format!(
                        "target `{}` has no artifact: nothing says what version it moves to",
                        stage.target
                    ),
                )
                .hint = Some(format!(
                    "add `artifacts.{}` with the new version",
                    stage.target
                ));
            }
            let timeout = stage
                .timeout
                .as_ref()
                .and_then(|text| self.duration(&format!("{path}.timeout"), text));
            let strategy = self.strategy(&path, stage, target, gates, approvals);
            if let Some(strategy) = strategy {
                stages.push(Stage {
                    id: StageId(stages.len()),
                    name: stage.name.clone(),
                    target: stage.target.clone(),
                    after: stage.after.clone(),
                    timeout,
                    strategy,
                });
            }
        }
        stages
    }

    fn strategy(
        &mut self,
        path: &str,
        stage: &raw::Stage,
        target: Option<&Target>,
        gates: &BTreeMap<String, Gate>,
        approvals: &BTreeMap<String, raw::Approval>,
    ) -> Option<Strategy> {
        let which = self.exactly_one(
            path,
            "a stage",
            &[
                ("canary", stage.canary.is_some()),
                ("blueGreen", stage.blue_green.is_some()),
                ("waves", stage.waves.is_some()),
            ],
        )?;
        let kind = [
            StrategyKind::Canary,
            StrategyKind::BlueGreen,
            StrategyKind::Waves,
        ][which];
        let strategy_path = format!("{path}.{}", kind.name());
        let target_kind = target.map(Target::kind);
        if let Some(target_kind) = target_kind
            && !target_kind.capabilities().strategies.contains(&kind)
        {
            let supported = target_kind
                .capabilities()
                .strategies
                .iter()
                .map(|s| format!("`{}`", s.name()))
                .collect::<Vec<_>>()
                .join(" or ");
            self.error(
                &strategy_path,
                format!(
                    "{} targets do not support `{}`",
                    target_kind.name(),
                    kind.name()
                ),
            )
            .hint = Some(format!("target `{}` supports {supported}", stage.target));
            return None;
        }
        // What the capability table cannot say, the target's kind checks
        // itself (a Kubernetes canary needs a route to weight).
        if let Some(target) = target {
            kinds::spec(&target.spec).check_strategy(self, &target.name, &strategy_path, kind);
        }
        let gate_list = |checker: &mut Checker, field: &str, names: &[String]| -> Vec<String> {
            for (index, name) in names.iter().enumerate() {
                let at = format!("{strategy_path}.{field}[{index}]");
                checker.gate_reference(&at, name, gates, target);
            }
            names.to_vec()
        };
        match kind {
            StrategyKind::Canary => {
                let canary = stage.canary.as_ref()?;
                let gates_checked = gate_list(self, "gates", &canary.gates);
                let steps = self.canary_steps(&strategy_path, canary, target, gates, approvals);
                Some(Strategy::Canary {
                    steps,
                    gates: gates_checked,
                })
            }
            StrategyKind::BlueGreen => {
                let blue_green = stage.blue_green.as_ref()?;
                let pre = gate_list(self, "prePromotionGates", &blue_green.pre_promotion_gates);
                let post = gate_list(self, "postPromotionGates", &blue_green.post_promotion_gates);
                if let Some(approval) = &blue_green.approval {
                    self.reference(
                        &format!("{strategy_path}.approval"),
                        "approval",
                        approval,
                        approvals,
                    );
                }
                let scale_down_delay = self.optional_duration(
                    &format!("{strategy_path}.scaleDownDelay"),
                    blue_green.scale_down_delay.as_ref(),
                    Duration::from_secs(30),
                );
                Some(Strategy::BlueGreen {
                    pre_promotion_gates: pre,
                    post_promotion_gates: post,
                    approval: blue_green.approval.clone(),
                    scale_down_delay,
                })
            }
            StrategyKind::Waves => {
                let waves = stage.waves.as_ref()?;
                let gates_checked = gate_list(self, "gates", &waves.gates);
                self.waves(&strategy_path, waves, approvals, gates_checked)
                    .map(Strategy::Waves)
            }
        }
    }

    fn gate_reference(
        &mut self,
        path: &str,
        name: &str,
        gates: &BTreeMap<String, Gate>,
        target: Option<&Target>,
    ) {
        // A gate that failed its own checks is not in `gates`, but it exists:
        // don't pile an "unknown gate" on top of its real error.
        let Some(gate) = gates.get(name) else {
            if !self
                .diagnostics
                .iter()
                .any(|d| d.path.starts_with(&format!("gates.{name}")))
            {
                let known: BTreeMap<String, ()> = gates.keys().map(|k| (k.clone(), ())).collect();
                self.reference(path, "gate", name, &known);
            }
            return;
        };
        if let Some(target) = target {
            let kind = gate.check.kind();
            if !target.kind().capabilities().gates.contains(&kind) {
                self.error(
                    path,
                    format!(
                        "gate `{name}` is a `{}` gate, which {} targets cannot provide",
                        kind.name(),
                        target.kind().name()
                    ),
                )
                .hint = Some(format!(
                    "{} targets support {} gates",
                    target.kind().name(),
                    target
                        .kind()
                        .capabilities()
                        .gates
                        .iter()
                        .map(|g| g.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }

    fn canary_steps(
        &mut self,
        path: &str,
        canary: &raw::Canary,
        target: Option<&Target>,
        gates: &BTreeMap<String, Gate>,
        approvals: &BTreeMap<String, raw::Approval>,
    ) -> Vec<CanaryStep> {
        if canary.steps.is_empty() {
            self.error(format!("{path}.steps"), "a canary needs at least one step");
            return Vec::new();
        }
        let max_weight = target.map_or(100, |t| t.kind().capabilities().max_canary_weight);
        let mut steps = Vec::new();
        let mut last_weight: Option<(i64, usize)> = None;
        for (index, step) in canary.steps.iter().enumerate() {
            let at = format!("{path}.steps[{index}]");
            let Some(which) = self.exactly_one(
                &at,
                "a canary step",
                &[
                    ("setWeight", step.set_weight.is_some()),
                    ("pause", step.pause.is_some()),
                    ("analysis", step.analysis.is_some()),
                    ("approval", step.approval.is_some()),
                    ("setHeaderRoute", step.set_header_route.is_some()),
                ],
            ) else {
                continue;
            };
            match which {
                0 => {
                    let weight = step.set_weight.unwrap_or_default();
                    let weight_path = format!("{at}.setWeight");
                    if !(0..=100).contains(&weight) {
                        self.error(
                            &weight_path,
                            format!("must be between 0 and 100 (a percentage), not {weight}"),
                        );
                    } else if weight > i64::from(max_weight) {
                        self.error(
                            &weight_path,
                            format!(
                                "{weight}% is above {max_weight}%, the most {} can receive",
                                target.map_or(String::new(), |t| kinds::of(t.kind())
                                    .canary_receiver())
                            ),
                        )
                        .hint = Some(format!(
                            "keep canary weights at or below {max_weight}; the stage promotes to 100% after its last step"
                        ));
                    } else if let Some((previous, previous_index)) = last_weight
                        && weight < previous
                    {
                        self.error(
                            &weight_path,
                            format!("weight goes down from {previous} (steps[{previous_index}]) to {weight}"),
                        )
                        .hint = Some("canary weights must not decrease; to go back, let a gate fail and roll back".into());
                    }
                    if (0..=100).contains(&weight) {
                        last_weight = Some((weight, index));
                        steps.push(CanaryStep::SetWeight(weight as u8));
                    }
                }
                1 => {
                    let duration = step.pause.as_ref().and_then(|pause| {
                        self.duration(&format!("{at}.pause.duration"), &pause.duration)
                    });
                    if let Some(duration) = duration {
                        steps.push(CanaryStep::Pause(duration));
                    }
                }
                2 => {
                    let analysis = step.analysis.clone().unwrap_or_default();
                    if analysis.gates.is_empty() {
                        self.error(
                            format!("{at}.analysis.gates"),
                            "an analysis step needs at least one gate",
                        );
                    }
                    for (gate_index, name) in analysis.gates.iter().enumerate() {
                        self.gate_reference(
                            &format!("{at}.analysis.gates[{gate_index}]"),
                            name,
                            gates,
                            target,
                        );
                    }
                    steps.push(CanaryStep::Analysis(analysis.gates));
                }
                3 => {
                    let name = step.approval.clone().unwrap_or_default();
                    self.reference(&format!("{at}.approval"), "approval", &name, approvals);
                    steps.push(CanaryStep::Approval(name));
                }
                _ => {
                    let route = step.set_header_route.clone().unwrap_or_default();
                    if let Some(route) =
                        self.header_route(&format!("{at}.setHeaderRoute"), &route, target)
                    {
                        steps.push(CanaryStep::SetHeaderRoute(route));
                    }
                }
            }
        }
        if !canary.steps.iter().any(|step| step.set_weight.is_some()) {
            self.error(
                format!("{path}.steps"),
                "a canary needs at least one `setWeight` step",
            )
            .hint = Some("add e.g. `- setWeight: 10` before the first pause or analysis".into());
        }
        steps
    }

    /// A `setHeaderRoute` step (at `at`): a valid name, header names as
    /// HTTP defines them, and a target that can route by header.
    fn header_route(
        &mut self,
        at: &str,
        route: &raw::HeaderRoute,
        target: Option<&Target>,
    ) -> Option<HeaderRoute> {
        self.name(&format!("{at}.name"), "header route", &route.name);
        let mut matches = Vec::new();
        for (index, found) in route.matches.iter().enumerate() {
            let name = &found.header_name;
            let is_token = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !is_token {
                self.error(
                    format!("{at}.match[{index}].headerName"),
                    format!("`{name}` is not an HTTP header name"),
                )
                .hint = Some("e.g. `X-Canary`: letters, digits and `-`".into());
            }
            if found.header_value.exact.is_empty() {
                self.error(
                    format!("{at}.match[{index}].headerValue.exact"),
                    "an exact header value must not be empty",
                );
            }
            matches.push(HeaderMatch {
                name: name.clone(),
                value: found.header_value.exact.clone(),
            });
        }
        if let Some(target) = target
            && let Some((message, hint)) =
                kinds::spec(&target.spec).header_routes_refused(&target.name)
        {
            self.error(at, message).hint = Some(hint);
            return None;
        }
        Some(HeaderRoute {
            name: route.name.clone(),
            matches,
        })
    }

    fn waves(
        &mut self,
        path: &str,
        waves: &raw::Waves,
        approvals: &BTreeMap<String, raw::Approval>,
        gates: Vec<String>,
    ) -> Option<Waves> {
        if waves.steps.is_empty() {
            self.error(format!("{path}.steps"), "waves need at least one wave");
        }
        let mut checked = Vec::new();
        let mut percent_total = 0.0;
        for (index, wave) in waves.steps.iter().enumerate() {
            let at = format!("{path}.steps[{index}]");
            if let Some(approval) = &wave.approval {
                self.reference(&format!("{at}.approval"), "approval", approval, approvals);
            }
            let Some(which) = self.exactly_one(
                &at,
                "a wave",
                &[
                    ("percent", wave.percent.is_some()),
                    ("count", wave.count.is_some()),
                ],
            ) else {
                continue;
            };
            let size = if which == 0 {
                let percent = wave.percent.unwrap_or_default();
                if !(percent > 0.0 && percent <= 100.0) {
                    self.error(
                        format!("{at}.percent"),
                        format!("must be more than 0 and at most 100, not {percent}"),
                    );
                }
                percent_total += percent;
                WaveSize::Percent(percent)
            } else {
                match self.int_in(
                    &format!("{at}.count"),
                    wave.count.unwrap_or_default(),
                    1,
                    10_000_000,
                ) {
                    Some(count) => WaveSize::Count(count),
                    None => continue,
                }
            };
            checked.push(Wave {
                size,
                approval: wave.approval.clone(),
            });
        }
        if percent_total > 100.0 + 1e-9 {
            self.error(
                format!("{path}.steps"),
                format!("the waves add up to {percent_total}% of the fleet; they must add up to at most 100%"),
            )
            .hint = Some("each wave's percent is its own share, not a running total: 1% → 10% → 50% → 100% is 1, 9, 40, 50".into());
        }
        let success_threshold =
            self.percent(&format!("{path}.successThreshold"), waves.success_threshold);
        let abort_failure_threshold = self.percent(
            &format!("{path}.abort.failureThreshold"),
            waves.abort.failure_threshold,
        );
        let abort_min_devices = self.int_in(
            &format!("{path}.abort.minDevices"),
            waves.abort.min_devices,
            1,
            10_000_000,
        );
        let device_timeout = self.duration(&format!("{path}.deviceTimeout"), &waves.device_timeout);
        let rate = self.int_in(
            &format!("{path}.maxDevicesPerMinute"),
            waves.max_devices_per_minute,
            1,
            1000,
        );
        let bake_time = match &waves.bake_time {
            Some(text) => self.duration(&format!("{path}.bakeTime"), text),
            None => Some(Duration::ZERO),
        };
        Some(Waves {
            waves: checked,
            success_threshold,
            abort_failure_threshold,
            abort_min_devices: abort_min_devices?,
            device_timeout: device_timeout?,
            max_devices_per_minute: rate?,
            bake_time: bake_time?,
            gates,
        })
    }

    /// Warns about gates and approvals nobody uses.
    fn unused(&mut self, plan: &RawPlan) {
        let mut used_gates = BTreeSet::new();
        let mut used_approvals = BTreeSet::new();
        for stage in &plan.stages {
            if let Some(canary) = &stage.canary {
                used_gates.extend(canary.gates.iter().cloned());
                for step in &canary.steps {
                    if let Some(analysis) = &step.analysis {
                        used_gates.extend(analysis.gates.iter().cloned());
                    }
                    used_approvals.extend(step.approval.iter().cloned());
                }
            }
            if let Some(blue_green) = &stage.blue_green {
                used_gates.extend(blue_green.pre_promotion_gates.iter().cloned());
                used_gates.extend(blue_green.post_promotion_gates.iter().cloned());
                used_approvals.extend(blue_green.approval.iter().cloned());
            }
            if let Some(waves) = &stage.waves {
                used_gates.extend(waves.gates.iter().cloned());
                for wave in &waves.steps {
                    used_approvals.extend(wave.approval.iter().cloned());
                }
            }
        }
        for name in plan.gates.keys() {
            if !used_gates.contains(name) {
                self.warning(
                    format!("gates.{name}"),
                    "this gate is defined but no stage uses it",
                );
            }
        }
        for name in plan.approvals.keys() {
            if !used_approvals.contains(name) {
                self.warning(
                    format!("approvals.{name}"),
                    "this approval is defined but no stage asks for it",
                );
            }
        }
    }

    /// Stages whose target has no `rollback.stable` entry: each kind written
    /// on the target decides whether it can roll back without one (a fleet
    /// cannot). Checked on the written plan, so a target that failed its own
    /// checks still gets this finding.
    fn rollback_paths(&mut self, plan: &RawPlan) {
        for (index, stage) in plan.stages.iter().enumerate() {
            let Some(target) = plan.targets.get(&stage.target) else {
                continue;
            };
            let pinned = plan
                .rollback
                .as_ref()
                .is_some_and(|rollback| rollback.stable.contains_key(&stage.target));
            if pinned {
                continue;
            }
            for kind in TargetKind::ALL {
                let rules = kinds::of(kind);
                if rules.is_written(target) {
                    rules.check_unpinned(self, &format!("stages[{index}].target"), &stage.target);
                }
            }
        }
    }

    /// Resolves `after:` edges and builds the DAG; reports unknown stages,
    /// self-references and cycles.
    fn graph(&mut self, plan: &RawPlan, stages: &[Stage]) -> Option<ExecutionGraph> {
        let index_of: HashMap<&str, usize> = plan
            .stages
            .iter()
            .enumerate()
            .map(|(index, stage)| (stage.name.as_str(), index))
            .collect();
        let known: BTreeMap<String, ()> =
            plan.stages.iter().map(|s| (s.name.clone(), ())).collect();
        let mut edges = Vec::new();
        for (index, stage) in plan.stages.iter().enumerate() {
            for (edge_index, before) in stage.after.iter().enumerate() {
                let path = format!("stages[{index}].after[{edge_index}]");
                if before == &stage.name {
                    self.error(&path, format!("stage `{before}` cannot run after itself"));
                    continue;
                }
                match index_of.get(before.as_str()) {
                    Some(before_index) => edges.push((StageId(*before_index), StageId(index))),
                    None => {
                        self.reference(&path, "stage", before, &known);
                    }
                }
            }
        }
        let graph = match ExecutionGraph::build(plan.stages.len(), &edges) {
            Ok(graph) => graph,
            Err(cycle) => {
                let names: Vec<&str> = cycle
                    .iter()
                    .map(|id| plan.stages[id.0].name.as_str())
                    .collect();
                let first = cycle[0].0;
                self.error(
                    format!("stages[{first}].after"),
                    format!(
                        "stages depend on each other in a cycle: {} → {}",
                        names.join(" → "),
                        names[0]
                    ),
                )
                .hint = Some("remove one of these `after:` entries".into());
                return None;
            }
        };
        // The model's stage list drops stages that failed their own checks;
        // only a fully valid plan (where the lists agree) gets a graph.
        (stages.len() == plan.stages.len()).then_some(graph)
    }
}
