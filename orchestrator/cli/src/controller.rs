//! `deployctl controller` (the in-cluster GitOps controller, crate
//! `deployctl-controller`) wired with this binary's adapters, and
//! `deployctl approve|reject --release NS/NAME`, which submit approvals to
//! it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deployctl_approvals::Surroundings;
use deployctl_controller::{Options, Wiring};
use deployctl_engine::executor::RunContext;
use deployctl_engine::journal::{Journal, RunRecord};
use deployctl_kube_release::{
    ApprovalEntry, ReleasePhase, ReleaseStatus, Releases, RequestEntry, RequestVerb, Verdict,
};
use deployctl_plan::ValidatedPlan;
use deployctl_trail::{Caller, Trail};

use crate::approval_cmds::{self, Around};
use crate::engine_cmds;
use crate::exit;
use crate::wiring::{self, Mode};

/// `deployctl controller --print-crd`.
pub fn print_crd() -> u8 {
    outln!("{}", deployctl_kube_release::crd_json());
    exit::OK
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))
}

/// `deployctl controller`: runs until SIGINT/SIGTERM.
pub fn run(options: &Options) -> u8 {
    let wiring = Arc::new(Wired {
        state_dir: options.state_dir.clone(),
    });
    let outcome = runtime().and_then(|runtime| {
        runtime
            .block_on(deployctl_controller::run(options, wiring))
            .map_err(|error| error.to_string())
    });
    match outcome {
        Ok(()) => exit::OK,
        Err(message) => crate::report::failed(message),
    }
}

/// The controller's runs are wired exactly as `apply` wires them: the same
/// adapters, probes, channels, journal and audit trail.
struct Wired {
    state_dir: PathBuf,
}

impl Wiring for Wired {
    fn open(&self) -> Result<(Arc<Journal>, Trail), String> {
        crate::audited::open(&self.state_dir)
            .map_err(|_| "the journal or the audit trail cannot be opened".to_string())
    }

    fn new_run(
        &self,
        run_id: &str,
        plan: &ValidatedPlan,
        plan_key: &str,
        caller: &Caller,
    ) -> Result<RunContext, String> {
        let targets = wiring::targets(plan, Path::new(plan_key), Mode::Apply, &self.state_dir)?;
        let notifications = wiring::notifications(plan, Mode::Apply)?;
        wiring::resolve_aws_caller(plan, caller)?;
        Ok(RunContext {
            run_id: run_id.to_string(),
            plan: Arc::new(plan.clone()),
            targets,
            probes: Arc::new(wiring::Probes::for_mode(Mode::Apply)),
            notifications,
        })
    }

    fn recorded_run(&self, run: &RunRecord, caller: &Caller) -> Result<RunContext, String> {
        engine_cmds::context_from_journal(run, &self.state_dir, caller)
    }

    fn approvals(&self) -> &dyn Surroundings {
        self
    }
}

impl Surroundings for Wired {
    fn identify(&self, plan: &ValidatedPlan, trail: &Trail) {
        Around {
            state_dir: &self.state_dir,
            backend: None,
        }
        .identify(plan, trail);
    }

    fn mfa_store(&self) -> Result<deployctl_policy::MfaStore, String> {
        Around {
            state_dir: &self.state_dir,
            backend: None,
        }
        .mfa_store()
    }

    fn alert(&self, plan: &ValidatedPlan, run_id: &str, gate: &str, message: &str) {
        Around {
            state_dir: &self.state_dir,
            backend: None,
        }
        .alert(plan, run_id, gate, message);
    }
}

/// `deployctl approve|reject --release NS/NAME`: appends the entry to the
/// Release and waits (at most `wait`) for the controller's verdict. The
/// code is checked by the controller, not here: this machine needs no
/// access file, MFA store or journal, only the right to patch Releases.
pub struct ReleaseSubmission<'a> {
    pub reference: &'a str,
    pub gate: &'a str,
    pub user: &'a str,
    pub code: Option<&'a str>,
    /// `Some(reason)` for a rejection.
    pub reject: Option<&'a str>,
    pub kubeconfig: Option<&'a Path>,
    pub wait: Duration,
}

pub fn submit_to_release(submission: &ReleaseSubmission<'_>) -> u8 {
    let (namespace, name) = match deployctl_kube_release::parse_reference(submission.reference) {
        Ok(parts) => parts,
        Err(error) => {
            return crate::report::refused(format!("--release {error}"));
        }
    };
    let code = match approval_cmds::code_or_prompt(submission.code, submission.user) {
        Ok(code) => code,
        Err(code) => return code,
    };
    let entry = ApprovalEntry {
        gate: submission.gate.to_string(),
        user: submission.user.to_string(),
        code: Some(code),
        at: Some(deployctl_time::format_ms(deployctl_time::now_ms())),
        reject: submission.reject.is_some(),
        reason: submission.reject.map(str::to_string),
    };
    let approval = |status: &ReleaseStatus, index: u32| {
        status.approvals.iter().find(|v| v.index == index).cloned()
    };
    let outcome = ask_release(
        submission.kubeconfig,
        &namespace,
        &name,
        submission.wait,
        async |releases: &Releases| releases.append_approval(&name, &entry).await,
        |status: &ReleaseStatus, index| approval(status, index).is_some(),
    )
    .map(|(index, status)| (index, status.and_then(|s| approval(&s, index))));
    let what = if submission.reject.is_some() {
        "rejection"
    } else {
        "approval"
    };
    match outcome {
        Err(message) => crate::report::failed(message),
        Ok((index, None)) => {
            eprintln!(
                "{what} of `{}` recorded on Release {namespace}/{name} (spec.approvals[{index}]); the controller has not decided yet: see `kubectl get release -n {namespace} {name} -o jsonpath='{{.status.approvals}}'`",
                submission.gate
            );
            exit::OK
        }
        Ok((_, Some(verdict))) if verdict.verdict == Verdict::Accepted => {
            eprintln!(
                "{} {}: accepted by the controller for `{}` of Release {namespace}/{name}",
                submission.user, verdict.kind, submission.gate
            );
            exit::OK
        }
        Ok((_, Some(verdict))) => crate::report::refused(format!(
            "the controller refused the {what} of {}: {}",
            submission.user,
            verdict.reason.unwrap_or_default()
        )),
    }
}

/// On the Release `namespace/name`: appends an entry with `append` (which
/// returns its index), then reads the status every 200 ms until
/// `settled(status, index)` or `wait` has passed. The index and the last
/// status read.
fn ask_release(
    kubeconfig: Option<&Path>,
    namespace: &str,
    name: &str,
    wait: Duration,
    append: impl AsyncFnOnce(&Releases) -> Result<u32, deployctl_kube_release::KubeReleaseError>,
    settled: impl Fn(&ReleaseStatus, u32) -> bool,
) -> Result<(u32, Option<ReleaseStatus>), String> {
    runtime()?.block_on(async {
        let client = deployctl_kube_release::client(kubeconfig)
            .await
            .map_err(|e| e.to_string())?;
        let releases = Releases::new(client, namespace);
        let index = append(&releases).await.map_err(|e| e.to_string())?;
        let deadline = Instant::now() + wait;
        loop {
            let status = releases
                .get(name)
                .await
                .map_err(|e| e.to_string())?
                .and_then(|r| r.status);
            if status.as_ref().is_some_and(|s| settled(s, index)) || Instant::now() >= deadline {
                return Ok((index, status));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// `deployctl pause|promote [--full]|abort|retry --release NS/NAME`: the verb goes into
/// the Release's `spec.requests` for the controller to judge (who may ask,
/// whether there is anything to do) and act on once; this waits for its
/// verdict, and for an abort, for the rollback to end. Asking twice is
/// safe: the second verdict says there was nothing to do.
pub fn request_on_release(
    reference: &str,
    verb: RequestVerb,
    approval: &engine_cmds::FullApproval<'_>,
    kubeconfig: Option<&Path>,
    wait: u64,
) -> u8 {
    let (namespace, name) = match deployctl_kube_release::parse_reference(reference) {
        Ok(parts) => parts,
        Err(error) => return crate::report::refused(format!("--release {error}")),
    };
    let initiator = deployctl_engine::run::initiator();
    // The approver's code is asked for here, like `approve --release`:
    // the controller verifies it.
    let code = match approval.approver {
        Some(approver) => match approval_cmds::code_or_prompt(approval.code, approver) {
            Ok(code) => Some(code),
            Err(code) => return code,
        },
        None => None,
    };
    let entry = RequestEntry {
        verb,
        user: deployctl_approvals::initiator_user(&initiator).to_string(),
        at: Some(deployctl_time::format_ms(deployctl_time::now_ms())),
        approver: approval.approver.map(str::to_string),
        code,
    };
    let wait = Duration::from_secs(wait);
    let verdict_of = |status: &ReleaseStatus, index: u32| {
        status.requests.iter().find(|v| v.index == index).cloned()
    };
    let settled = |status: &ReleaseStatus, index: u32| match (verdict_of(status, index), verb) {
        // An accepted abort is done once the rollback ended.
        (Some(v), RequestVerb::Abort) if v.verdict == Verdict::Accepted => {
            status.phase.is_some_and(ReleasePhase::is_final)
        }
        (verdict, _) => verdict.is_some(),
    };
    let outcome = ask_release(
        kubeconfig,
        &namespace,
        &name,
        wait,
        async |releases: &Releases| releases.append_request(&name, &entry).await,
        settled,
    )
    .map(|(index, status)| {
        let verdict = status.as_ref().and_then(|s| verdict_of(s, index));
        (index, verdict, status.and_then(|s| s.phase))
    });
    let verb_name = verb.as_str();
    match outcome {
        Err(message) => crate::report::failed(message),
        Ok((index, None, _)) => {
            eprintln!(
                "{verb_name} recorded on Release {namespace}/{name} (spec.requests[{index}]); the controller has not decided yet: see `kubectl get release -n {namespace} {name} -o jsonpath='{{.status.requests}}'`"
            );
            exit::OK
        }
        Ok((_, Some(verdict), phase)) if verdict.verdict == Verdict::Accepted => {
            eprintln!(
                "Release {namespace}/{name}: {}",
                verdict
                    .reason
                    .unwrap_or_else(|| format!("{verb_name} accepted"))
            );
            if verb == RequestVerb::Abort {
                match phase {
                    Some(phase) if phase.is_final() => {
                        eprintln!("Release {namespace}/{name}: {phase:?}");
                    }
                    phase => eprintln!(
                        "Release {namespace}/{name} is still {:?}: the rollback has not ended within {} s; see `kubectl get release -n {namespace} {name}`",
                        phase.unwrap_or(ReleasePhase::Pending),
                        wait.as_secs()
                    ),
                }
            }
            exit::OK
        }
        Ok((_, Some(verdict), _)) => crate::report::refused(format!(
            "the controller refused {verb_name} by {}: {}",
            verdict.user,
            verdict.reason.unwrap_or_default()
        )),
    }
}
