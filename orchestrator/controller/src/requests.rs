//! Rollout verbs on a Release (`spec.requests`: `deployctl pause|promote|
//! abort --release`), judged here like approval entries: each entry once,
//! in order, its verdict kept in the run's journal (so a restarted
//! controller or a new leader never acts on it twice) and mirrored into
//! `status.requests`. The decision is the one `deployctl pause|promote|
//! abort RUN` makes on the journal (`deployctl_engine::steering`,
//! `Journal::request_stop`); who may ask is the access file's operator
//! rule for the run's environment.

use std::collections::BTreeMap;
use std::sync::Arc;

use deployctl_approvals::Refusal;

use deployctl_audit::{Action as AuditAction, Outcome, What};
use deployctl_engine::event::{Event, Verdict as JournalVerdict};
use deployctl_engine::journal::{EventRecord, RunRecord, StopRequest};
use deployctl_engine::steering::{self, Steer, Steered};
use deployctl_kube_release::kube::ResourceExt;
use deployctl_kube_release::{Release, RequestEntry, RequestVerb, RequestVerdict, Verdict};

use crate::Shared;

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
                verdict: match verdict {
                    JournalVerdict::Accepted => Verdict::Accepted,
                    JournalVerdict::Refused => Verdict::Refused,
                },
                reason: reason.clone(),
                at: at.clone(),
            }),
            _ => None,
        })
        .map(|verdict| (verdict.index, verdict))
        .collect()
}

/// Acts on every request entry that has no verdict yet, in order, and
/// journals each verdict.
pub(crate) async fn judge_requests(
    shared: &Arc<Shared>,
    release: &Release,
    run: &RunRecord,
) -> Result<(), String> {
    if release.spec.requests.is_empty() {
        return Ok(());
    }
    let events = shared.journal.events(&run.id).map_err(|e| e.to_string())?;
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
        let (verdict, reason) = judge(shared, &label, index, entry, &now).await?;
        eprintln!(
            "Release {label}: {} by {}: {verdict:?} ({reason})",
            entry.verb.as_str(),
            entry.user
        );
        let event = Event::ReleaseRequestVerdict {
            index,
            verb: entry.verb.as_str().to_string(),
            user: entry.user.clone(),
            verdict: match verdict {
                Verdict::Accepted => JournalVerdict::Accepted,
                Verdict::Refused => JournalVerdict::Refused,
            },
            reason: Some(reason),
            at: Some(deployctl_time::format_ms(deployctl_time::now_ms())),
        };
        shared
            .journal
            .append_run_event(&run.id, &event)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// One entry: who asks, whether they may, then the verb. A journal error
/// is returned (the entry is judged again at the next reconcile); every
/// other outcome is a verdict.
async fn judge(
    shared: &Arc<Shared>,
    label: &str,
    index: u32,
    entry: &RequestEntry,
    run: &RunRecord,
) -> Result<(Verdict, String), String> {
    let verb = entry.verb.as_str();
    let asked = format!("asked on Release {label} (spec.requests[{index}])");
    if let Err(reason) = may_steer(shared, entry, run) {
        let what = What::new(AuditAction::PolicyDenied)
            .run(&run.id)
            .detail(format!("{verb}, {asked}"));
        shared
            .audit
            .record_or_warn(&entry.user, what, Outcome::denied(reason.clone()));
        return Ok((Verdict::Refused, reason));
    }
    let steer = match entry.verb {
        RequestVerb::Pause => Steer::Pause,
        RequestVerb::Promote => Steer::Promote,
        RequestVerb::PromoteFull => Steer::PromoteFull,
        RequestVerb::Abort => return abort(shared, &asked, entry, run),
    };
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

/// The operator rule of `deployctl pause|promote|abort RUN`: pausing and
/// promoting steer a run, aborting rolls it back.
fn may_steer(shared: &Shared, entry: &RequestEntry, run: &RunRecord) -> Result<(), String> {
    if !shared.access_file.exists() {
        return Ok(());
    }
    let access = deployctl_policy::Access::load(&shared.access_file).map_err(|e| e.to_string())?;
    let action = match entry.verb {
        RequestVerb::Pause | RequestVerb::Promote | RequestVerb::PromoteFull => {
            deployctl_policy::Action::Steer
        }
        RequestVerb::Abort => deployctl_policy::Action::Rollback,
    };
    let decision = access.may(&entry.user, &action, &run.environment);
    if decision.allowed {
        Ok(())
    } else {
        Err(decision.reason)
    }
}
