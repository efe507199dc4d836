//! Rollout verbs on a Release (`spec.requests`: `deployctl pause|promote
//! [--full]|abort|retry --release`), judged here like approval entries:
//! each entry once, in order, its verdict kept in the journal of the run
//! it was judged for (so a restarted controller or a new leader never
//! acts on it twice, and a retried run never sees its predecessor's
//! entries again) and mirrored into `status.requests`. The decision is
//! the one `deployctl pause|promote|abort|retry RUN` makes on the journal
//! (`deployctl_engine::steering`, `Journal::request_stop`, a new linked
//! run); who may ask is the access file's operator rule for the run's
//! environment, and a full promotion in a protected one needs another
//! person's verified approval.

use std::collections::BTreeMap;
use std::sync::Arc;

use deployctl_approvals::Refusal;
use deployctl_audit::{Action as AuditAction, Outcome, What};
use deployctl_engine::event::Event;
use deployctl_engine::journal::{EventRecord, RunRecord, StopRequest};
use deployctl_engine::state::RunPhase;
use deployctl_engine::steering::{self, Steer, Steered};
use deployctl_kube_release::kube::ResourceExt;
use deployctl_kube_release::{Release, RequestEntry, RequestVerb, RequestVerdict, Verdict};

use crate::Shared;
use crate::drivers::Drivers;

/// Verdicts already reached on this run's Release requests, by index.
pub(crate) fn verdicts(events: &[EventRecord]) -> BTreeMap<u32, RequestVerdict> {
    events
        .iter()
        .filter_map(|record| match &record.event {
            Event::ReleaseRequestVerdict {
                index,
                verb,
                user,
                verdict,
                reason,
                at,
            } => Some(RequestVerdict {
                index: *index,
                verb: RequestVerb::parse(verb)?,
                user: user.clone(),
                verdict: crate::from_journal(*verdict),
                reason: reason.clone(),
                at: at.clone(),
            }),
            _ => None,
        })
        .map(|verdict| (verdict.index, verdict))
        .collect()
}

/// Acts on every request entry that has no verdict yet, in order, and
/// journals each verdict (on the run it was judged for). Returns the new
/// run a `retry` started, with the object as its finalizer patch left it;
/// the entries after it wait for the next reconcile, which judges them
/// against that run.
pub(crate) async fn judge_requests(
    shared: &Arc<Shared>,
    drivers: &Drivers,
    release: &Release,
    run: &RunRecord,
) -> Result<Option<(String, Option<Release>)>, String> {
    if release.spec.requests.is_empty() {
        return Ok(None);
    }
    let events = crate::release_events(shared, run, None)?;
    let decided = verdicts(&events);
    let label = format!("{}/{}", shared.releases.namespace(), release.name_any());
    for (index, entry) in release.spec.requests.iter().enumerate() {
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        if decided.contains_key(&index) {
            continue;
        }
        // The run as it is now: an earlier entry of this pass (an abort)
        // may have changed it.
        let now = shared.journal.run(&run.id).map_err(|e| e.to_string())?;
        let asked = format!("asked on Release {label} (spec.requests[{index}])");
        let (verdict, reason, retried) = if entry.verb == RequestVerb::Retry {
            retry(shared, drivers, release, &asked, index, entry, &now).await?
        } else if let Err(reason) = may_ask(shared, entry, &now) {
            (
                deny(shared, &asked, entry, &now, reason.clone()),
                reason,
                None,
            )
        } else if let Some(steer) = steer_of(entry.verb) {
            let (verdict, reason) = steer_run(shared, &asked, entry, &now, steer).await?;
            (verdict, reason, None)
        } else {
            let (verdict, reason) = abort(shared, &asked, entry, &now)?;
            (verdict, reason, None)
        };
        eprintln!(
            "Release {label}: {} by {}: {verdict:?} ({reason})",
            entry.verb.as_str(),
            entry.user
        );
        let event = Event::ReleaseRequestVerdict {
            index,
            verb: entry.verb.as_str().to_string(),
            user: entry.user.clone(),
            verdict: crate::to_journal(verdict),
            reason: Some(reason),
            at: Some(deployctl_time::format_ms(deployctl_time::now_ms())),
        };
        shared
            .journal
            .append_run_event(&run.id, &event)
            .map_err(|e| e.to_string())?;
        if retried.is_some() {
            return Ok(retried);
        }
    }
    Ok(None)
}

/// `retry`: a new run of the Release from the plan and digest recorded
/// with its ended run, keyed by the request (`…#retry-INDEX`), so a
/// request judged again after a crash finds the run it started instead
/// of starting a second. The asker becomes the new run's initiator (the
/// four-eyes rule compares approvers with them) and must be an operator
/// who may apply in the environment.
async fn retry(
    shared: &Arc<Shared>,
    drivers: &Drivers,
    release: &Release,
    asked: &str,
    index: u32,
    entry: &RequestEntry,
    run: &RunRecord,
) -> Result<(Verdict, String, Option<(String, Option<Release>)>), String> {
    let key = format!(
        "{}#retry-{index}",
        crate::run_key(shared.releases.namespace(), release)
    );
    if let Some(started) = shared
        .journal
        .run_of_plan_file(&key)
        .map_err(|e| e.to_string())?
    {
        if started.retry_of.is_none() {
            shared
                .journal
                .link_retry(&started.id, &run.id)
                .map_err(|e| e.to_string())?;
        }
        let said = format!("run {} retried as run {}", run.id, started.id);
        return Ok((Verdict::Accepted, said, Some((started.id, None))));
    }
    if !run.phase.is_terminal() || run.rollback_incomplete {
        return Ok((
            Verdict::Refused,
            format!(
                "run {} has not ended ({}); retry starts a finished run again (`abort` it first)",
                run.id,
                run.phase.as_str()
            ),
            None,
        ));
    }
    if run.phase == RunPhase::Succeeded {
        let said = format!("run {} succeeded; nothing to retry", run.id);
        return Ok((Verdict::Accepted, said, None));
    }
    if let Err(reason) = may_ask(shared, entry, run) {
        return Ok((
            deny(shared, asked, entry, run, reason.clone()),
            reason,
            None,
        ));
    }
    let loaded = match deployctl_plan::load(&run.plan_file, run.plan_source.as_bytes()) {
        Ok(loaded) if loaded.plan.digest == run.plan_digest => loaded,
        _ => {
            let why = format!(
                "the plan recorded with run {} no longer loads to its digest; not retried",
                run.id
            );
            return Ok((Verdict::Refused, why, None));
        }
    };
    let launched = crate::Launch {
        key,
        initiator: &entry.user,
        loaded: &loaded,
        retry_of: Some(&run.id),
    };
    match crate::launch(shared, drivers, release, &launched).await {
        Ok((new_run, with_finalizer)) => {
            shared.audit.record_or_warn(
                &entry.user,
                What::new(AuditAction::RetryRequested)
                    .run(&run.id)
                    .detail(format!("retried as run {new_run}, {asked}")),
                Outcome::ok(),
            );
            let said = format!("run {} retried as run {new_run}", run.id);
            Ok((Verdict::Accepted, said, Some((new_run, with_finalizer))))
        }
        Err(crate::NotStarted::Status(status)) => {
            Ok((Verdict::Refused, status.message.unwrap_or_default(), None))
        }
        Err(crate::NotStarted::Retry(message)) => Err(message),
    }
}

/// The steering verb a request asks for (`pause`, `promote [--full]`);
/// `abort` and `retry` are not steering.
fn steer_of(verb: RequestVerb) -> Option<Steer> {
    match verb {
        RequestVerb::Pause => Some(Steer::Pause),
        RequestVerb::Promote => Some(Steer::Promote),
        RequestVerb::PromoteFull => Some(Steer::PromoteFull),
        RequestVerb::Abort | RequestVerb::Retry => None,
    }
}

/// A steering verb its asker may make: the journal decision, audited.
/// A journal error is returned (the entry is judged again at the next
/// reconcile); every other outcome is a verdict.
async fn steer_run(
    shared: &Arc<Shared>,
    asked: &str,
    entry: &RequestEntry,
    run: &RunRecord,
    steer: Steer,
) -> Result<(Verdict, String), String> {
    let verb = entry.verb.as_str();
    let (steered, approved_by) = steer_blocking(shared, steer, entry, run).await?;
    let held = match steered {
        Steered::NothingToDo(why) => return Ok((Verdict::Accepted, why)),
        Steered::Refused(why) => return Ok((Verdict::Refused, why)),
        Steered::Done { held } => held,
    };
    let action = if steer == Steer::Pause {
        AuditAction::PauseRequested
    } else {
        AuditAction::PromoteRequested
    };
    let mut what = What::new(action)
        .run(&run.id)
        .detail(format!("{verb}, {asked}"));
    if let Some(approver) = &approved_by {
        what = what.approver(approver);
    }
    shared
        .audit
        .record_or_warn(&entry.user, what, Outcome::ok());
    Ok((Verdict::Accepted, steering::said(&run.id, steer, held)))
}

/// The journal decision of a steering verb, off the async workers: a full
/// promotion in a protected environment verifies its approver's code
/// first (the MFA store may call KMS). Returns who approved it, if anyone
/// had to.
async fn steer_blocking(
    shared: &Arc<Shared>,
    steer: Steer,
    entry: &RequestEntry,
    run: &RunRecord,
) -> Result<(Steered, Option<String>), String> {
    let (shared, entry, run) = (Arc::clone(shared), entry.clone(), run.clone());
    tokio::task::spawn_blocking(move || {
        let mut approved_by = None;
        let confirm = || {
            let request = deployctl_approvals::FullPromotion {
                run: &run,
                requester: &entry.user,
                approver: entry.approver.as_deref(),
            };
            let code = || {
                entry.code.clone().ok_or_else(|| {
                    Refusal::Denied("the entry has no one-time MFA code (`code`)".into())
                })
            };
            deployctl_approvals::check_full_promotion(
                &shared.audit,
                &request,
                code,
                &shared.access_file,
                shared.wiring.approvals(),
            )
            .map(|approver| approved_by = approver)
            .map_err(|refusal| refusal.to_string())
        };
        let steered = steering::request(&shared.journal, &run, steer, confirm);
        steered
            .map(|steered| (steered, approved_by))
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// `abort`: the run's stop request, as `deployctl abort RUN` makes it.
fn abort(
    shared: &Shared,
    asked: &str,
    entry: &RequestEntry,
    run: &RunRecord,
) -> Result<(Verdict, String), String> {
    if run.phase.is_terminal() {
        return Ok((
            Verdict::Accepted,
            format!(
                "run {} already ended ({}); nothing to abort",
                run.id,
                run.phase.as_str()
            ),
        ));
    }
    shared
        .journal
        .request_stop(&run.id, StopRequest::Abort)
        .map_err(|e| e.to_string())?;
    shared.audit.record_or_warn(
        &entry.user,
        What::new(AuditAction::RollbackRequested)
            .run(&run.id)
            .detail(format!("abort, {asked}")),
        Outcome::ok(),
    );
    Ok((
        Verdict::Accepted,
        format!(
            "run {} aborting: traffic goes back to stable and the Release is left Aborted",
            run.id
        ),
    ))
}

/// The operator rule of the deploy-PC verbs: pausing and promoting steer
/// a run, aborting rolls it back, retrying applies it again. By the
/// controller's access file; none: anyone may, as for the initiator.
fn may_ask(shared: &Shared, entry: &RequestEntry, run: &RunRecord) -> Result<(), String> {
    if !shared.access_file.exists() {
        return Ok(());
    }
    let action = match entry.verb {
        RequestVerb::Pause | RequestVerb::Promote | RequestVerb::PromoteFull => {
            deployctl_policy::Action::Steer
        }
        RequestVerb::Abort => deployctl_policy::Action::Rollback,
        RequestVerb::Retry => deployctl_policy::Action::Apply,
    };
    let access = deployctl_policy::Access::load(&shared.access_file).map_err(|e| e.to_string())?;
    let decision = access.may(&entry.user, &action, &run.environment);
    if decision.allowed {
        Ok(())
    } else {
        Err(decision.reason)
    }
}

/// Audits a request its asker may not make; the verdict is Refused.
fn deny(
    shared: &Shared,
    asked: &str,
    entry: &RequestEntry,
    run: &RunRecord,
    reason: String,
) -> Verdict {
    let what = What::new(AuditAction::PolicyDenied)
        .run(&run.id)
        .detail(format!("{}, {asked}", entry.verb.as_str()));
    shared
        .audit
        .record_or_warn(&entry.user, what, Outcome::denied(reason));
    Verdict::Refused
}
