//! Starting a run: every target's preflight, then what each stage asks of
//! its target against what that instance supports, then the run recorded
//! with its target locks in one transaction.
//!
//! Expected flow: preflight each distinct target (read-only, retried as
//! the one retry policy says) → every stage's strategy checked against
//! the capabilities its target reported ([`crate::admission`]) → the run,
//! its stages (stable versions and platform identities) and its locks
//! (keyed by those identities, all or none) written at once.
//!
//! Guarantees: a refusal ([`Refusal`]) happens before anything moved and
//! leaves no run behind, so `history` lists only runs that were allowed
//! to start; the caller audits the refusal itself. Two plans that name
//! one target differently (a region given or from the environment, a
//! function by name or by ARN) lock the same identity and exclude each
//! other, because the identity comes from the platform, not from the plan.

use std::collections::{BTreeMap, HashMap};

use deployctl_adapter::{AdapterError, Preflight};
use deployctl_plan::model::RollbackTrigger;
use tokio::task::JoinSet;

use crate::event::Event;
use crate::executor::{Abort, Engine, EngineError, RunContext};
use crate::journal::{JournalError, NewRun, NewStage, PreflightRecord, StageRecord, StageUpdate};
use crate::platform_locks::PlatformLocks;
use crate::progress::Progress;
use crate::state::{RunMode, StagePhase};

/// Who asks for a run, from which plan file, and how it moves targets.
#[derive(Debug, Clone)]
pub struct RunRequest<'a> {
    pub plan_file: &'a str,
    pub plan_source: &'a str,
    pub initiator: &'a str,
    pub mode: RunMode,
}

/// Why a run was not started. Nothing was changed and no run recorded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A target's rollback path could not be confirmed (S3).
    #[error("preflight failed, nothing was changed: stage `{stage}`: {reason}")]
    Preflight { stage: String, reason: String },
    /// A stage asks its target for something this instance cannot do.
    #[error("stage `{stage}`: {misfit}. Nothing was changed.")]
    Unsupported {
        stage: String,
        misfit: crate::admission::Misfit,
    },
    /// Another live run holds one of the targets.
    #[error(
        "target {target} is locked by run {run} ({holder}); wait for it, or roll it back with `deployctl rollback {run}`. Nothing was changed."
    )]
    Locked {
        target: String,
        run: String,
        holder: String,
    },
    /// The team backend refused or could not say (a lease ran out, the
    /// backend is unreachable): nothing is assumed.
    #[error("{reason}. Nothing was changed.")]
    TeamLock { reason: String },
}

impl Engine {
    /// Preflights every target, checks every stage against its target's
    /// capabilities and records the run with its locks. `Err` with
    /// [`EngineError::Refused`] when the run may not start; then nothing
    /// moved and no run exists. Drive the run with [`Engine::execute`].
    pub async fn start(
        &self,
        context: &RunContext,
        request: &RunRequest<'_>,
    ) -> Result<(), EngineError> {
        let plan = &context.plan;
        for stage in &plan.stages {
            if !context.targets.contains_key(&stage.target) {
                return Err(EngineError::MissingTarget(stage.target.clone()));
            }
        }
        let preflights = self
            .preflight_targets(context, plan.stages.iter().map(|s| &s.target))
            .await;

        let mut stages = Vec::new();
        let mut refusal = None;
        for stage in &plan.stages {
            let target = plan.target_of(stage);
            let pinned = target.pinned_stable.as_ref().map(|a| a.version.clone());
            let preflight = &preflights[&stage.target];
            let record = record_of(pinned, preflight);
            let capabilities = preflight.as_ref().ok().map(|p| &p.capabilities);
            self.progress.emit(Progress::Preflight {
                run: context.run_id.clone(),
                stage: stage.name.clone(),
                stable_version: record.stable_version.clone(),
                ready: record.ready,
                detail: record.detail.clone(),
            });
            if refusal.is_none() {
                if !record.ready {
                    refusal = Some(Refusal::Preflight {
                        stage: stage.name.clone(),
                        reason: format!("rollback path not confirmed: {}", record.detail),
                    });
                } else if let Some(capabilities) = capabilities
                    && let Err(misfit) = crate::admission::check(stage, target, capabilities)
                {
                    refusal = Some(Refusal::Unsupported {
                        stage: stage.name.clone(),
                        misfit,
                    });
                }
            }
            stages.push(NewStage {
                name: stage.name.clone(),
                target: stage.target.clone(),
                target_key: record.identity.clone().unwrap_or_default(),
                new_version: target.artifact.as_ref().map(|a| a.version.clone()),
                preflight: Some(record),
            });
        }
        if let Some(refusal) = refusal {
            return Err(EngineError::Refused(refusal));
        }

        let mut locks: Vec<String> = match request.mode {
            RunMode::Apply => stages.iter().map(|s| s.target_key.clone()).collect(),
            // Rehearsals move simulators only: they never lock real targets.
            RunMode::Rehearse => stages
                .iter()
                .map(|s| format!("rehearse:{}:{}", context.run_id, s.target))
                .collect(),
        };
        locks.sort();
        locks.dedup();
        // Team locks first: a refusal there leaves no run either. Those
        // taken are given back if the journal then refuses.
        let team_owner = crate::team::owner_here(
            &context.run_id,
            request.initiator,
            &plan.metadata.environment,
        );
        if request.mode == RunMode::Apply {
            self.take_team_locks(&locks, &team_owner).await?;
        }
        // The targets' own locks (a Kubernetes Lease): the in-cluster
        // controller and every PC hold them, backend or not.
        let platform = match request.mode {
            RunMode::Apply => PlatformLocks::of(
                context,
                stages
                    .iter()
                    .map(|s| (s.target.as_str(), s.target_key.as_str())),
            ),
            RunMode::Rehearse => PlatformLocks::of(context, []),
        };
        if let Err(refused) = platform.take(&team_owner).await {
            self.give_back_team_locks(&locks, &team_owner).await;
            return Err(refused);
        }
        let created = self.journal.create_run(&NewRun {
            id: &context.run_id,
            plan_name: &plan.metadata.name,
            environment: &plan.metadata.environment,
            plan_file: request.plan_file,
            plan_digest: &plan.digest,
            plan_source: request.plan_source,
            initiator: request.initiator,
            mode: request.mode,
            stages,
            locks: locks.clone(),
        });
        if created.is_err() && request.mode == RunMode::Apply {
            self.give_back_team_locks(&locks, &team_owner).await;
            platform.give_back(&team_owner, &self.progress).await;
        }
        match created {
            Ok(()) => {
                if request.mode == RunMode::Apply {
                    self.share_run(&context.run_id).await;
                }
                self.just_started
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(context.run_id.clone());
                Ok(())
            }
            Err(JournalError::Locked {
                target,
                run,
                holder,
            }) => Err(EngineError::Refused(Refusal::Locked {
                target,
                run,
                holder,
            })),
            Err(error) => Err(error.into()),
        }
    }

    /// One preflight per distinct target, concurrently, each retried as
    /// the retry policy says: a throttled read is no verdict on the
    /// rollback path.
    async fn preflight_targets<'a>(
        &self,
        context: &RunContext,
        targets: impl IntoIterator<Item = &'a String>,
    ) -> BTreeMap<String, Result<Preflight, AdapterError>> {
        let names: std::collections::BTreeSet<&String> = targets.into_iter().collect();
        let mut checks = JoinSet::new();
        for name in &names {
            let target = context.targets[*name].clone();
            let name = (*name).clone();
            let policy = self.options.retry.clone();
            checks.spawn(async move {
                let result = crate::retry::retry(&policy, |_| target.preflight())
                    .await
                    .map_err(|gave_up| gave_up.error);
                (name, result)
            });
        }
        let mut results = BTreeMap::new();
        while let Some(joined) = checks.join_next().await {
            // A panicking adapter is no verdict either: its target stays
            // missing from the map and is reported below as not ready.
            if let Ok((name, result)) = joined {
                results.insert(name, result);
            }
        }
        for name in names {
            results.entry(name.clone()).or_insert_with(|| {
                Err(AdapterError::Unsupported {
                    what: format!("the preflight of target `{name}` panicked"),
                })
            });
        }
        results
    }
    /// Confirms the rollback path (S3) of every stage not yet preflighted
    /// and records each stable version: stages of runs recorded before
    /// `start` preflighted them (journals of format 1). `Some` when any
    /// target is not ready.
    pub(crate) async fn preflight_pending(
        &self,
        context: &RunContext,
        records: &HashMap<String, StageRecord>,
    ) -> Result<Option<Abort>, EngineError> {
        let pending: Vec<_> = context
            .plan
            .stages
            .iter()
            .filter(|stage| {
                let record = &records[&stage.name];
                record.phase == StagePhase::Pending && record.stable_version.is_none()
            })
            .collect();
        if pending.is_empty() {
            return Ok(None);
        }
        let preflights = self
            .preflight_targets(context, pending.iter().map(|s| &s.target))
            .await;
        let mut failure = None;
        for stage in pending {
            let pinned = context
                .plan
                .target_of(stage)
                .pinned_stable
                .as_ref()
                .map(|artifact| artifact.version.clone());
            let record = record_of(pinned, &preflights[&stage.target]);
            let stable = record.stable_version.clone();
            self.journal.transition(
                &context.run_id,
                &stage.name,
                &Event::Preflight {
                    stable_version: stable.clone(),
                    ready: record.ready,
                    detail: record.detail.clone(),
                    identity: record.identity.clone(),
                    verified: record.verified.clone(),
                },
                &StageUpdate {
                    stable_version: (!stable.is_empty()).then(|| stable.clone()),
                    ..StageUpdate::default()
                },
            )?;
            self.progress.emit(Progress::Preflight {
                run: context.run_id.clone(),
                stage: stage.name.clone(),
                stable_version: stable,
                ready: record.ready,
                detail: record.detail.clone(),
            });
            if !record.ready && failure.is_none() {
                failure = Some(Abort {
                    trigger: RollbackTrigger::Error,
                    stage: Some(stage.name.clone()),
                    requested: None,
                    reason: format!(
                        "stage `{}`: rollback path not confirmed: {}",
                        stage.name, record.detail
                    ),
                });
            }
        }
        Ok(failure)
    }
}

/// What the journal keeps of a preflight: the stable version (the plan's
/// pinned one wins), whether the rollback path is ready and why, and the
/// platform identity. A failed read is a path not confirmed.
fn record_of(
    pinned: Option<String>,
    preflight: &Result<Preflight, AdapterError>,
) -> PreflightRecord {
    match preflight {
        Ok(preflight) => PreflightRecord {
            stable_version: pinned.unwrap_or_else(|| preflight.stable_version.clone()),
            ready: preflight.rollback_ready,
            detail: preflight.detail.clone(),
            identity: Some(preflight.identity.clone()),
            verified: preflight.verified.clone(),
        },
        Err(error) => PreflightRecord {
            stable_version: String::new(),
            ready: false,
            detail: error.to_string(),
            identity: None,
            verified: Vec::new(),
        },
    }
}
