//! A stage waiting for an approval: the request journaled and announced,
//! then the journal polled for approvers (how many the plan asks for) or a
//! rejection, bounded by the approval's timeout when it rolls back. Who
//! may approve, with MFA, is decided before an approval reaches the
//! journal (the policy crate, through the CLI and the controller).

use deployctl_plan::model::{OnTimeout, RollbackTrigger, RunEvent};

use crate::event::Event;
use crate::gate::GateMonitor;
use crate::journal::JournalError;
use crate::stage::{StageDriver, StageStop};
use crate::state::StagePhase;

/// "1 approver", "2 approvers".
pub(crate) fn approvers(required: u32) -> String {
    format!(
        "{required} approver{}",
        if required == 1 { "" } else { "s" }
    )
}

impl StageDriver {
    pub(crate) async fn approval(
        &mut self,
        name: &str,
        monitors: &mut [GateMonitor],
    ) -> Result<String, StageStop> {
        let approval = self.plan.approvals.get(name).cloned().ok_or_else(|| {
            self.fail(RollbackTrigger::Error, format!("unknown approval `{name}`"))
        })?;
        self.enter(
            StagePhase::Paused,
            Event::ApprovalRequested {
                approval: name.to_string(),
                role: approval.role.clone(),
                required: approval.required,
            },
            format!(
                "waiting for {} with role `{}` ({name})",
                approvers(approval.required),
                approval.role
            ),
        )?;
        let asking = format!(
            "waiting for {} with role `{}` for `{name}`: `deployctl approve {} --gate {name}`",
            approvers(approval.required),
            approval.role,
            self.run_id
        );
        self.notify
            .send(RunEvent::ApprovalRequested, Some(&self.stage.name), &asking);
        self.notify
            .send(RunEvent::Paused, Some(&self.stage.name), &asking);
        let journal = self.journal.clone();
        let run_id = self.run_id.clone();
        let poll = self.options.poll;
        let gate = name.to_string();
        let wait = async move {
            loop {
                if let Some((approver, reason)) = journal.rejection(&run_id, &gate)? {
                    return Ok::<_, JournalError>(Some(format!(
                        "rejected by {approver}: {reason}"
                    )));
                }
                if journal.approvals(&run_id, &gate)? >= approval.required {
                    return Ok(None);
                }
                tokio::time::sleep(poll).await;
            }
        };
        let outcome = match approval.on_timeout {
            OnTimeout::Rollback => {
                let bounded = tokio::time::timeout(approval.timeout, wait);
                match self.guarded(bounded, monitors).await? {
                    Ok(result) => result,
                    Err(_) => {
                        return Err(self.fail(
                            RollbackTrigger::Timeout,
                            format!("approval `{name}` was not granted in time"),
                        ));
                    }
                }
            }
            OnTimeout::Pause => self.guarded(wait, monitors).await?,
        };
        if let Some(rejection) = outcome? {
            return Err(self.fail(
                RollbackTrigger::GateFailed,
                format!("approval `{name}` {rejection}"),
            ));
        }
        Ok(format!("approval `{name}` granted"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn approvers_are_counted_in_words() {
        assert_eq!(super::approvers(1), "1 approver");
        assert_eq!(super::approvers(2), "2 approvers");
    }
}
