//! `deployctl`: the command-line binary. It parses arguments, wires the
//! libraries together and maps outcomes to the exit-code contract in
//! [`exit`]; the work itself lives in the library crates (start with
//! `deployctl-plan`).

/// `println!` that stops quietly when stdout is closed
/// (`deployctl history | head`) instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        $crate::report::wrote_stdout();
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!`, likewise.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        $crate::report::wrote_stdout();
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

mod access;
mod approval_cmds;
mod artifact_cmds;
mod audit_cmds;
mod audit_sink;
mod audited;
mod controller;
mod engine_cmds;
mod exit;
mod fleet_cmds;
mod iam_policy;
mod input;
mod mfa_admin;
mod observe;
mod progress_view;
mod rbac;
mod registry;
mod rehearse;
mod report;
mod run_now;
mod runs;
mod state_dir;
mod team;
mod team_runs;
mod wiring;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use deployctl_kube_release::RequestVerb;
use deployctl_plan::report::ImpactReport;
use deployctl_plan::saved::SavedPlan;
use deployctl_plan::{Diagnostic, Loaded, SourceFile};

/// What every command shares that flags do not show: who the operator
/// is, and the exit codes scripts branch on (README.md has the same).
const AFTER_HELP: &str = "\
Who you are: DEPLOYCTL_OPERATOR when set, else your login ($USER, $LOGNAME),
recorded as user@host on every run and audit record; access rules match the
part before '@'.

The audit trail's signing key is kept beside the trail unless
DEPLOYCTL_AUDIT_SIGNING_KEY names a path outside the state directory (its
public half is PATH.pub, which `audit verify` then checks against).

Exit codes:
  0    success: the plan is valid, the run succeeded, the command did what it said
  1    the run rolled back or failed cleanly: targets are on their stable versions
  2    refused before anything moved: invalid input, a target another run holds,
       a failed preflight, a strategy the target cannot take (no run recorded)
  3    rollback incomplete: traffic may be split, a human must act
  130  interrupted (Ctrl-C): the run is left resumable with `deployctl resume RUN`";

#[derive(Parser)]
#[command(
    name = "deployctl",
    version,
    about = "Zero-downtime deployments: blue-green and canary releases gated by health checks and approvals",
    propagate_version = true,
    after_help = AFTER_HELP
)]
struct Cli {
    /// Where runs, locks and the journal are kept.
    #[arg(long, global = true, env = "DEPLOYCTL_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// The access file naming operators, approvers and auditors (env
    /// DEPLOYCTL_ACCESS_FILE; default `<state-dir>/access.yaml`).
    #[arg(long, global = true, value_name = "FILE")]
    access: Option<PathBuf>,
    /// Never colour output (also: the NO_COLOR environment variable).
    #[arg(long, global = true)]
    no_color: bool,
    /// The team backend every deploy PC shares, `s3://BUCKET/PREFIX`:
    /// target locks taken there too, so a run on another PC is excluded.
    /// Without it, locks are this state directory's only.
    #[arg(long, global = true, env = "DEPLOYCTL_BACKEND", value_name = "URL")]
    backend: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum MfaCommand {
    /// Create a TOTP secret for USER (shown once as a QR code and URI) and
    /// confirm it with a first code.
    Enroll {
        user: String,
        #[arg(long)]
        code: Option<String>,
    },
    /// Confirm a pending enrollment with a code.
    Confirm {
        user: String,
        #[arg(long)]
        code: Option<String>,
    },
    /// List every enrollment: pending, active, expired, locked out
    /// (an MFA administrator: the `mfa-admin` role; audited).
    List,
    /// Remove USER's enrollment, to enroll again after a lost phone or
    /// when someone leaves (an MFA administrator; audited).
    Remove {
        /// Whose enrollment goes.
        user: String,
        /// Remove without asking on a terminal.
        #[arg(long)]
        yes: bool,
    },
    /// Lift USER's lockout after repeated wrong codes (an MFA
    /// administrator who checked it is them; audited).
    Unlock {
        /// Whose lockout is lifted.
        user: String,
    },
}

/// `approve|reject --release NS/NAME`: record it on a Release for the
/// in-cluster controller to verify, instead of in this machine's journal.
#[derive(clap::Args)]
struct InCluster {
    /// The Release (NAMESPACE/NAME) whose run this approves or rejects.
    #[arg(long, value_name = "NS/NAME", conflicts_with = "run")]
    release: Option<String>,
    /// The kubeconfig for `--release` (default: KUBECONFIG, ~/.kube/config).
    #[arg(long, value_name = "FILE", requires = "release")]
    kubeconfig: Option<PathBuf>,
    /// With `--release`: how long to wait for the controller's verdict.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 30,
        requires = "release"
    )]
    wait: u64,
}

/// `pause|promote|abort|retry --release NS/NAME`: ask the in-cluster
/// controller to do it to a Release's run, instead of this machine's
/// journal.
#[derive(clap::Args)]
struct OnRelease {
    /// The Release (NAMESPACE/NAME) whose run to act on, instead of a run
    /// of this machine's journal. The controller checks the operator
    /// (`DEPLOYCTL_OPERATOR`, else `$USER`) against its access file.
    #[arg(long, value_name = "NS/NAME", conflicts_with = "run")]
    release: Option<String>,
    /// The kubeconfig for `--release` (default: KUBECONFIG, ~/.kube/config).
    #[arg(long, value_name = "FILE", requires = "release")]
    kubeconfig: Option<PathBuf>,
    /// With `--release`: how long to wait for the controller's verdict
    /// (and, for `abort`, for the rollback to end).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 60,
        requires = "release"
    )]
    wait: u64,
}

impl OnRelease {
    /// `verb` asked of the Release, when one is named (clap requires a run
    /// otherwise).
    fn request(&self, verb: RequestVerb) -> Option<u8> {
        self.request_approved(verb, &engine_cmds::FullApproval::default())
    }

    /// As `request`, with the approval a full promotion may need.
    fn request_approved(
        &self,
        verb: RequestVerb,
        approval: &engine_cmds::FullApproval<'_>,
    ) -> Option<u8> {
        let reference = self.release.as_deref()?;
        Some(controller::request_on_release(
            reference,
            verb,
            approval,
            self.kubeconfig.as_deref(),
            self.wait,
        ))
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Check plan files; prints every problem with its line and column.
    Validate {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<String>,
    },
    /// Show what applying a plan would do, without touching anything.
    ///
    /// Offline by default: the report is computed from the plan alone.
    /// With `--observe` every target is read live (read-only) and the
    /// report shows what each stage would change from what runs now. Exit
    /// codes with `--observe`: 0 when every target was read, drift or not;
    /// 1 when a target could not be read (the report is incomplete); 2 when
    /// the plan is invalid or names targets this build cannot run.
    Plan {
        /// The plan file (`-`: standard input).
        #[arg(value_name = "FILE")]
        file: String,
        /// Save the reviewed plan so `apply` executes exactly it.
        #[arg(long, value_name = "SAVED")]
        out: Option<PathBuf>,
        /// Read every target live with read-only calls (the adapters'
        /// observe and preflight) and show, per stage, the version and
        /// weights now and planned, the platform calls of each step, and
        /// drift: not on the stable version, a release already in flight,
        /// a lock another run holds, no rollback path, a strategy the
        /// target cannot take. Writes nothing: no run, no lock, no call
        /// that changes a target.
        #[arg(long, conflicts_with = "out")]
        observe: bool,
    },
    /// Print the JSON Schema of the plan format (for editors).
    Schema,
    /// Print a shell completion script (bash, zsh, fish, elvish or
    /// powershell), e.g. `deployctl completions bash > /etc/bash_completion.d/deployctl`.
    Completions {
        /// The shell the script is for.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `deployctl man > deployctl.1`.
    Man,
    /// Print the least-privilege Kubernetes Roles this plan needs, one per
    /// namespace (a `v1` List for `kubectl apply -f -`).
    Rbac {
        /// The plan file.
        #[arg(value_name = "FILE")]
        file: String,
    },
    /// Print the least-privilege IAM policy this plan needs (the deploy
    /// role's permissions for exactly this release).
    IamPolicy {
        /// The plan file.
        #[arg(value_name = "FILE")]
        file: String,
        /// The AWS account the resources live in (12 digits); `*` when
        /// omitted.
        #[arg(long, value_name = "ID")]
        account: Option<String>,
        /// The partition of the ARNs.
        #[arg(long, default_value = "aws", value_parser = ["aws", "aws-cn", "aws-us-gov"])]
        partition: String,
        /// The region for plan entries that name none.
        #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
        region: String,
        /// Also grant shipping the audit trail here (the deploy PC's
        /// `DEPLOYCTL_AUDIT_SINK`).
        #[arg(long, env = "DEPLOYCTL_AUDIT_SINK", value_name = "s3://BUCKET/PREFIX")]
        audit_sink: Option<String>,
        /// Also grant unwrapping the MFA master key with this KMS key (the
        /// deploy PC's `DEPLOYCTL_MFA_KMS_KEY`).
        #[arg(long, env = "DEPLOYCTL_MFA_KMS_KEY", value_name = "KEY")]
        mfa_kms_key: Option<String>,
    },
    /// Execute a plan (or a saved plan from `plan --out`) end to end.
    Apply {
        /// The plan file, or a saved plan from `plan --out` (applied only
        /// while its plan file is unchanged).
        #[arg(value_name = "FILE|SAVED")]
        file: String,
        /// Do not ask for confirmation (never asked when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// Show a run's phase and each stage's phase, weight and last gate.
    ///
    /// Exits as the run stands: 0 running or succeeded; 1 rolled back,
    /// killed or failed cleanly; 3 rollback incomplete (a human must act);
    /// 2 when there is no such run.
    Status {
        /// The run; the newest when omitted.
        run: Option<String>,
        /// Refresh every second until the run ends.
        #[arg(long)]
        watch: bool,
    },
    /// List runs, newest first.
    History {
        /// Only runs that moved this target.
        #[arg(long, value_name = "NAME")]
        target: Option<String>,
        /// At most this many runs (newest first).
        #[arg(long, value_name = "N", default_value_t = 200)]
        limit: u32,
        /// Only runs in these phases, comma-separated (e.g.
        /// `RolledBack,Failed`; any case, `-` and `_` ignored).
        #[arg(long, value_name = "PHASE[,PHASE]")]
        phase: Option<String>,
        /// Only runs of plans for this environment.
        #[arg(long, value_name = "NAME")]
        environment: Option<String>,
        /// Only runs started since then: an RFC 3339 time or a date
        /// (2026-11-24T09:00:00Z, 2026-11-24), or a span back from now (`2h`, `7d`).
        #[arg(long, value_name = "WHEN")]
        since: Option<String>,
    },
    /// Continue a run whose process died, from its journal.
    Resume {
        /// The run to continue.
        run: String,
        /// Do not ask for confirmation (never asked when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// Stop a run and put its traffic back on stable, leaving it Aborted
    /// for someone to look at (`kill` is the emergency path, recorded as a
    /// kill). Works on a run another process drives.
    Abort {
        /// The run to abort (or `--release NS/NAME`).
        #[arg(required_unless_present = "release")]
        run: Option<String>,
        /// Do not ask for confirmation (never asked when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        on_release: OnRelease,
    },
    /// Start a rolled-back, failed, aborted or killed run again, as a new
    /// run, from the plan and digest recorded with it.
    Retry {
        /// The run to start again (or `--release NS/NAME`).
        #[arg(required_unless_present = "release")]
        run: Option<String>,
        /// Do not ask for confirmation (never asked when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        on_release: OnRelease,
    },
    /// Hold a run where it stands: each stage stops before its next step
    /// and stays in a pause past its end, gates still watching, until
    /// `promote`. Works on a run another process drives.
    Pause {
        /// The run to hold (or `--release NS/NAME`).
        #[arg(required_unless_present = "release")]
        run: Option<String>,
        #[command(flatten)]
        on_release: OnRelease,
    },
    /// Move a run on now: end the pause each stage is in, and release a
    /// hold set by `pause`.
    Promote {
        /// The run to move on (or `--release NS/NAME`).
        #[arg(required_unless_present = "release")]
        run: Option<String>,
        /// Skip every remaining step (pauses, analysis, approvals, partial
        /// weights) of every stage, straight to full promotion. In a
        /// protected environment only with another person's approval
        /// (`--approver`). Not for fleet waves.
        #[arg(long)]
        full: bool,
        /// With `--full` in a protected environment: who approves it (not
        /// you, not the run's initiator; the environment's approver role),
        /// with their one-time code.
        #[arg(long, value_name = "USER", requires = "full")]
        approver: Option<String>,
        /// The approver's one-time MFA code (asked for when omitted and
        /// there is a terminal).
        #[arg(long, value_name = "CODE", requires = "approver")]
        code: Option<String>,
        #[command(flatten)]
        on_release: OnRelease,
    },
    /// List the approvals runs wait for: which run and stage, the role,
    /// how many of how many, who approved and who still may.
    Approvals {
        /// Only approvals this person may still give.
        #[arg(long, value_name = "USER")]
        user: Option<String>,
    },
    /// Roll back every stage of a run that moved (no plan file needed):
    /// name the run, or `--target NAME` for the newest run that moved it.
    Rollback {
        /// The run to roll back (or `--target NAME`; `deployctl history`
        /// lists runs).
        run: Option<String>,
        /// The newest run that moved this target.
        #[arg(long, value_name = "NAME", conflicts_with = "run")]
        target: Option<String>,
        /// Do not ask for confirmation (never asked when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// Stop a run now and roll it back.
    Kill {
        /// The run to stop (driven by this or another process).
        #[arg(required_unless_present = "fleet")]
        run: Option<String>,
        /// The emergency stop: kill every run in flight that updates this
        /// thing group (no run ID needed). Each is stopped and rolled back
        /// as `kill RUN` does; exit 0 when every one ended rolled back, 2
        /// when no run in flight touches the group.
        #[arg(long, value_name = "THING_GROUP", conflicts_with = "run")]
        fleet: Option<String>,
        /// Do not ask for confirmation (never asked when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// The team backend's target locks: `lock list`, `lock break TARGET
    /// --reason TEXT` (an operator frees a lock whose holder died).
    Lock {
        #[command(subcommand)]
        command: team::LockCommand,
    },
    /// Enroll in or confirm TOTP multi-factor authentication.
    Mfa {
        #[command(subcommand)]
        command: MfaCommand,
    },
    /// Approve a run's approval gate, with a one-time MFA code.
    Approve {
        /// The run waiting for the approval (or `--release NS/NAME`).
        #[arg(required_unless_present = "release")]
        run: Option<String>,
        /// The approval gate, as the plan names it.
        #[arg(long)]
        gate: String,
        /// Who approves: a person the access file names, enrolled in MFA.
        #[arg(long)]
        user: String,
        /// The one-time code (asked for on a terminal when omitted).
        #[arg(long)]
        code: Option<String>,
        #[command(flatten)]
        in_cluster: InCluster,
    },
    /// Reject a run's approval gate: the run rolls back.
    Reject {
        /// The run waiting for the approval (or `--release NS/NAME`).
        #[arg(required_unless_present = "release")]
        run: Option<String>,
        /// The approval gate, as the plan names it.
        #[arg(long)]
        gate: String,
        /// Who rejects: a person the access file names, enrolled in MFA.
        #[arg(long)]
        user: String,
        /// Why, for the audit trail and the run's outcome.
        #[arg(long)]
        reason: String,
        /// The one-time code (asked for on a terminal when omitted).
        #[arg(long)]
        code: Option<String>,
        #[command(flatten)]
        in_cluster: InCluster,
    },
    /// The in-cluster GitOps controller: runs the plans of `Release`
    /// resources (deployctl.io/v1), mirrors progress into their status and
    /// verifies the approvals recorded on them. Only the Lease holder works.
    Controller {
        /// The kubeconfig (default: KUBECONFIG, ~/.kube/config, or the
        /// pod's service account).
        #[arg(long, value_name = "FILE")]
        kubeconfig: Option<PathBuf>,
        /// The namespace whose Releases it runs (default: the
        /// kubeconfig context's, or the pod's).
        #[arg(long, value_name = "NS")]
        namespace: Option<String>,
        /// The Lease replicas contend for (in the same namespace).
        #[arg(long, value_name = "N", default_value = "deployctl-controller")]
        lease_name: String,
        /// Seconds a Lease outlives its holder's last renewal: how long a
        /// new leader waits after a replica dies.
        #[arg(long, value_name = "SECONDS", default_value_t = 10)]
        lease_duration: u64,
        /// This replica's name in the Lease (default: host and process ID;
        /// in a pod, pass its name).
        #[arg(long, value_name = "ID")]
        identity: Option<String>,
        /// Require the Release CRD to be installed already (RBAC without
        /// CRD rights) instead of installing or updating it.
        #[arg(long)]
        no_install_crd: bool,
        /// How many Releases are reconciled at once (one Release is never
        /// reconciled by two workers).
        #[arg(long, value_name = "N", default_value_t = deployctl_controller::CONCURRENT_RECONCILES, value_parser = clap::value_parser!(u16).range(1..=256))]
        concurrent_reconciles: u16,
        /// Seconds one reconcile may take before it is cancelled and
        /// retried at the next resync (a request the API server never
        /// answers must not hold a worker for good).
        #[arg(long, value_name = "SECONDS", default_value_t = deployctl_controller::RECONCILE_TIMEOUT_SECS, value_parser = clap::value_parser!(u16).range(1..=600))]
        reconcile_timeout: u16,
        /// Print the Release CRD (JSON, for `kubectl apply -f -`) and exit.
        #[arg(long)]
        print_crd: bool,
        /// Serve Prometheus metrics at `/metrics` here (`:8080` or
        /// `HOST:PORT`; not served when omitted).
        #[arg(long, value_name = "ADDR", value_parser = deployctl_controller::telemetry::parse_address)]
        metrics_bind_address: Option<std::net::SocketAddr>,
        /// Serve the `/healthz` and `/readyz` probes here (`:8081` or
        /// `HOST:PORT`; not served when omitted).
        #[arg(long, value_name = "ADDR", value_parser = deployctl_controller::telemetry::parse_address)]
        health_probe_bind_address: Option<std::net::SocketAddr>,
    },
    /// Read and check the audit trail.
    Audit {
        #[command(subcommand)]
        command: audit_cmds::AuditCommand,
    },
    /// What device fleets ran: `fleet history GROUP [--device THING]`.
    Fleet {
        #[command(subcommand)]
        command: fleet_cmds::FleetCommand,
    },
    /// Make, sign, check and publish firmware for fleet stages: signing
    /// keys, AES-256-GCM images under KMS-wrapped (or local) content keys,
    /// signed manifests, a versioned S3 bucket behind the CDN.
    Artifact {
        #[command(subcommand)]
        command: artifact_cmds::ArtifactCommand,
    },
    /// Run a plan against simulators of its targets, optionally injecting
    /// failures, and check that promotion and rollback behave as planned.
    Rehearse {
        #[arg(value_name = "FILE")]
        file: String,
        /// Make a stage fail: `STAGE` (unhealthy as soon as it deploys),
        /// `STAGE@N` (unhealthy from its N-th traffic step), `STAGE@error`
        /// (its platform rejects a change).
        #[arg(long = "fail", value_name = "STAGE[@STEP]")]
        fail: Vec<String>,
        /// Seed for simulated device outcomes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let color =
        !cli.no_color && std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
    let state_dir = state_dir::resolve(cli.state_dir.clone());
    let json = cli.output == Output::Json;
    let access_file = access::access_path(cli.access.as_deref(), &state_dir);
    let backend = match team::location(cli.backend.as_deref()) {
        Ok(backend) => backend,
        Err(code) => return ExitCode::from(report::finish(code, json)),
    };
    team::configure(backend.as_ref());
    let run_options = |yes: bool| engine_cmds::Options {
        state_dir: &state_dir,
        access: &access_file,
        backend: backend.as_ref(),
        json,
        yes,
        retry_of: None,
    };
    let code = match &cli.command {
        Command::Validate { files } => validate(files, cli.output, color),
        Command::Plan {
            file,
            out: _,
            observe: true,
        } => match load_plan(file, color) {
            Ok(loaded) => observe::command(&loaded, file, &state_dir, json),
            Err(_) => exit::INVALID_INPUT,
        },
        Command::Plan {
            file,
            out,
            observe: false,
        } => plan(file, out.as_deref(), cli.output, color),
        Command::Schema => schema(),
        Command::Completions { shell } => {
            // Both from the same clap definitions as `--help`.
            let mut command = <Cli as clap::CommandFactory>::command();
            report::wrote_stdout();
            clap_complete::generate(*shell, &mut command, "deployctl", &mut std::io::stdout());
            exit::OK
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            report::wrote_stdout();
            match clap_mangen::Man::new(command).render(&mut std::io::stdout()) {
                Ok(()) => exit::OK,
                Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
                Err(error) => report::failed(format!("cannot write the man page: {error}")),
            }
        }
        Command::Rbac { file } => rbac::command(file, |file| load_plan(file, color).ok()),
        Command::IamPolicy {
            file,
            account,
            partition,
            region,
            audit_sink,
            mfa_kms_key,
        } => iam_policy::command(
            file,
            &iam_policy::Flags {
                account: account.as_deref(),
                partition,
                region,
                audit_sink: audit_sink.as_deref().filter(|s| !s.is_empty()),
                mfa_kms_key: mfa_kms_key.as_deref().filter(|s| !s.is_empty()),
                backend: backend.as_ref(),
            },
            |file| load_plan(file, color).ok(),
        ),
        Command::Apply { file, yes } => match load_for_apply(file, color) {
            Ok((loaded, plan_file)) => match access::check_operator(
                deployctl_policy::Action::Apply,
                &loaded.plan.metadata.environment,
                &access::access_path(cli.access.as_deref(), &state_dir),
                &state_dir,
                backend.as_ref(),
            ) {
                Ok(()) => engine_cmds::apply(&loaded, &plan_file, &run_options(*yes)),
                Err(code) => code,
            },
            Err(code) => code,
        },
        Command::Status { run, watch } => {
            engine_cmds::status(run.as_deref(), *watch, &run_options(true))
        }
        Command::History {
            target,
            limit,
            phase,
            environment,
            since,
        } => {
            let filters = engine_cmds::HistoryFilters {
                target: target.as_deref(),
                limit: *limit,
                phase: phase.as_deref(),
                environment: environment.as_deref(),
                since: since.as_deref(),
            };
            engine_cmds::history(&filters, &run_options(true))
        }
        Command::Resume { run, yes } => engine_cmds::resume(run, &run_options(*yes)),
        Command::Rollback { run, target, yes } => {
            engine_cmds::rollback(run.as_deref(), target.as_deref(), &run_options(*yes))
        }
        Command::Kill {
            run: Some(run),
            yes,
            ..
        } => engine_cmds::kill(run, &run_options(*yes)),
        Command::Kill {
            fleet: Some(group),
            yes,
            ..
        } => engine_cmds::kill_fleet(group, &run_options(*yes)),
        Command::Kill { .. } => report::refused("name the run to kill, or `--fleet THING_GROUP`"),
        Command::Abort {
            run,
            yes,
            on_release,
        } => on_release.request(RequestVerb::Abort).unwrap_or_else(|| {
            run.as_deref().map_or(exit::INVALID_INPUT, |run| {
                engine_cmds::abort(run, &run_options(*yes))
            })
        }),
        Command::Retry {
            run,
            yes,
            on_release,
        } => on_release.request(RequestVerb::Retry).unwrap_or_else(|| {
            run.as_deref().map_or(exit::INVALID_INPUT, |run| {
                engine_cmds::retry(run, &run_options(*yes))
            })
        }),
        Command::Pause { run, on_release } => {
            on_release.request(RequestVerb::Pause).unwrap_or_else(|| {
                run.as_deref().map_or(exit::INVALID_INPUT, |run| {
                    engine_cmds::steer(
                        run,
                        engine_cmds::Steer::Pause,
                        &engine_cmds::FullApproval::default(),
                        &run_options(true),
                    )
                })
            })
        }
        Command::Promote {
            run,
            full,
            approver,
            code,
            on_release,
        } => {
            let approval = engine_cmds::FullApproval {
                approver: approver.as_deref(),
                code: code.as_deref(),
            };
            let (verb, steer) = if *full {
                (RequestVerb::PromoteFull, engine_cmds::Steer::PromoteFull)
            } else {
                (RequestVerb::Promote, engine_cmds::Steer::Promote)
            };
            on_release
                .request_approved(verb, &approval)
                .unwrap_or_else(|| {
                    run.as_deref().map_or(exit::INVALID_INPUT, |run| {
                        engine_cmds::steer(run, steer, &approval, &run_options(true))
                    })
                })
        }
        Command::Approvals { user } => {
            crate::run_now::list_approvals(user.as_deref(), &run_options(true))
        }
        Command::Mfa { command } => {
            let access = access::access_path(cli.access.as_deref(), &state_dir);
            match command {
                MfaCommand::Enroll { user, code } => approval_cmds::enroll(
                    user,
                    code.as_deref(),
                    &access,
                    &state_dir,
                    backend.as_ref(),
                ),
                MfaCommand::Confirm { user, code } => {
                    approval_cmds::confirm(user, code.as_deref(), &state_dir, backend.as_ref())
                }
                MfaCommand::List => mfa_admin::list(&access, &state_dir, backend.as_ref(), json),
                MfaCommand::Remove { user, yes } => {
                    mfa_admin::remove(user, *yes, &access, &state_dir, backend.as_ref())
                }
                MfaCommand::Unlock { user } => {
                    mfa_admin::unlock(user, &access, &state_dir, backend.as_ref())
                }
            }
        }
        Command::Approve {
            run,
            gate,
            user,
            code,
            in_cluster,
        } => match (&in_cluster.release, run) {
            (Some(reference), _) => controller::submit_to_release(&controller::ReleaseSubmission {
                reference,
                gate,
                user,
                code: code.as_deref(),
                reject: None,
                kubeconfig: in_cluster.kubeconfig.as_deref(),
                wait: std::time::Duration::from_secs(in_cluster.wait),
            }),
            (None, Some(run)) => approval_cmds::approve(
                run,
                gate,
                user,
                code.as_deref(),
                &approval_cmds::Site {
                    access_file: &access::access_path(cli.access.as_deref(), &state_dir),
                    state_dir: &state_dir,
                    backend: backend.as_ref(),
                },
            ),
            (None, None) => exit::INVALID_INPUT,
        },
        Command::Reject {
            run,
            gate,
            user,
            reason,
            code,
            in_cluster,
        } => match (&in_cluster.release, run) {
            (Some(reference), _) => controller::submit_to_release(&controller::ReleaseSubmission {
                reference,
                gate,
                user,
                code: code.as_deref(),
                reject: Some(reason),
                kubeconfig: in_cluster.kubeconfig.as_deref(),
                wait: std::time::Duration::from_secs(in_cluster.wait),
            }),
            (None, Some(run)) => approval_cmds::reject(
                run,
                gate,
                user,
                reason,
                code.as_deref(),
                &approval_cmds::Site {
                    access_file: &access::access_path(cli.access.as_deref(), &state_dir),
                    state_dir: &state_dir,
                    backend: backend.as_ref(),
                },
            ),
            (None, None) => exit::INVALID_INPUT,
        },
        Command::Controller {
            kubeconfig,
            namespace,
            lease_name,
            lease_duration,
            identity,
            no_install_crd,
            concurrent_reconciles,
            reconcile_timeout,
            print_crd,
            metrics_bind_address,
            health_probe_bind_address,
        } => {
            if *print_crd {
                controller::print_crd()
            } else {
                controller::run(&deployctl_controller::Options {
                    kubeconfig: kubeconfig.clone(),
                    namespace: namespace.clone(),
                    state_dir: state_dir.clone(),
                    access_file: access_file.clone(),
                    lease_name: lease_name.clone(),
                    lease_duration: *lease_duration,
                    identity: identity.clone(),
                    install_crd: !no_install_crd,
                    concurrent_reconciles: usize::from(*concurrent_reconciles),
                    reconcile_timeout: std::time::Duration::from_secs(u64::from(
                        *reconcile_timeout,
                    )),
                    metrics_address: *metrics_bind_address,
                    health_address: *health_probe_bind_address,
                })
            }
        }
        Command::Audit { command } => audit_cmds::run(command, &state_dir, &access_file, json),
        Command::Artifact { command } => artifact_cmds::run(command, &state_dir, json),
        Command::Fleet { command } => fleet_cmds::run(command, &state_dir, json),
        Command::Lock { command } => {
            team::command(command, backend.as_ref(), &state_dir, &access_file, json)
        }
        Command::Rehearse { file, fail, seed } => match load_plan(file, color) {
            Ok(loaded) => rehearse::rehearse(&loaded, file, fail, *seed, &run_options(true)),
            Err(_) => exit::INVALID_INPUT,
        },
    };
    audited::seal_opened();
    ExitCode::from(report::finish(code, json))
}

/// Reads and validates one plan file, printing diagnostics (and warnings)
/// to stderr: for a human in text mode, beside the JSON document
/// (`report::finish`, or the command's own) with `--output json`.
fn load_plan(path: &str, color: bool) -> Result<Loaded, Vec<Diagnostic>> {
    load_plan_to(path, color, true)
}

/// `load_plan`, printing the diagnostics on stderr only when `to_stderr`
/// (`validate --output json` prints them in its document alone).
fn load_plan_to(path: &str, color: bool, to_stderr: bool) -> Result<Loaded, Vec<Diagnostic>> {
    let file = input::display_name(path);
    let bytes = match input::read_plan_file(path) {
        Ok(bytes) => bytes,
        Err(diagnostic) => {
            let source = SourceFile {
                name: file.to_string(),
                text: None,
            };
            if to_stderr {
                eprint!(
                    "{}",
                    source.render(std::slice::from_ref(&diagnostic), color)
                );
            }
            report::plan_diagnostics(file, std::slice::from_ref(&diagnostic));
            return Err(vec![diagnostic]);
        }
    };
    match deployctl_plan::load(file, &bytes) {
        Ok(loaded) => {
            if to_stderr && !loaded.warnings.is_empty() {
                eprint!("{}", loaded.source.render(&loaded.warnings, color));
            }
            Ok(loaded)
        }
        Err(rejected) => {
            if to_stderr {
                eprint!("{}", rejected.render(color));
            }
            report::plan_diagnostics(file, &rejected.diagnostics);
            Err(rejected.diagnostics)
        }
    }
}

/// A plan file, or a saved plan (`plan --out`) whose plan file must not
/// have changed since it was reviewed. Returns the plan and its file name.
fn load_for_apply(file: &str, color: bool) -> Result<(Loaded, String), u8> {
    let bytes = match input::read_plan_file(file) {
        Ok(bytes) => bytes,
        Err(_) => {
            return load_plan(file, color)
                .map(|l| (l, file.to_string()))
                .map_err(|_| exit::INVALID_INPUT);
        }
    };
    if !SavedPlan::looks_saved(&bytes) {
        return load_plan(file, color)
            .map(|loaded| (loaded, file.to_string()))
            .map_err(|_| exit::INVALID_INPUT);
    }
    let saved = SavedPlan::from_json(&bytes)
        .map_err(|error| crate::report::refused(format!("{file}: {error}")))?;
    // The plan file as named when saved (from this directory), else where
    // it lies from the saved plan's own directory.
    let saved_dir = std::path::Path::new(file)
        .parent()
        .unwrap_or(std::path::Path::new(""));
    let mut tried = vec![saved.plan_file.clone()];
    if let Some(relative) = &saved.plan_file_from_saved {
        tried.push(saved_dir.join(relative).to_string_lossy().into_owned());
    }
    if std::path::Path::new(&saved.plan_file).is_relative() {
        tried.push(
            saved_dir
                .join(&saved.plan_file)
                .to_string_lossy()
                .into_owned(),
        );
    }
    tried.dedup();
    let Some((plan_file, current)) = tried
        .iter()
        .find_map(|path| Some((path.clone(), input::read_plan_file(path).ok()?)))
    else {
        return Err(crate::report::refused(
            deployctl_plan::saved::SavedPlanError::Missing {
                file: saved.plan_file.clone(),
                tried,
            },
        ));
    };
    match saved.load(Some(&current)) {
        Ok(loaded) => Ok((loaded, plan_file)),
        Err(deployctl_plan::saved::SavedPlanError::Invalid(rejected)) => {
            eprint!("{}", rejected.render(color));
            report::plan_diagnostics(&plan_file, &rejected.diagnostics);
            Err(exit::INVALID_INPUT)
        }
        Err(error) => Err(crate::report::refused(error)),
    }
}

/// Warnings about what this build cannot do with a valid plan (a target
/// whose entry has a `refusal`): `apply` refuses such a plan. Printed on
/// stderr; returned for the JSON output.
fn build_warnings(loaded: &Loaded, color: bool, to_stderr: bool) -> Vec<Diagnostic> {
    let plan_dir = std::path::Path::new(&loaded.source.name)
        .parent()
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
    let mut warnings: Vec<Diagnostic> = loaded
        .plan
        .targets
        .values()
        .filter_map(|target| {
            let reason = registry::lookup(target).refusal(&plan_dir)?;
            Some(
                Diagnostic::warning(
                    format!("targets.{}", target.name),
                    format!(
                        "this build of deployctl cannot apply `{}`: {reason}; `apply` refuses the plan (exit 2, nothing touched)",
                        target.name
                    ),
                )
                .with_hint("`deployctl rehearse` runs the plan against simulated targets"),
            )
        })
        .collect();
    if warnings.is_empty() {
        return warnings;
    }
    if let Some(text) = &loaded.source.text {
        let spans = deployctl_plan::spans::SpanIndex::build(text, deployctl_plan::MAX_DEPTH);
        for warning in &mut warnings {
            warning.location = spans.locate(&warning.path);
        }
    }
    if to_stderr {
        eprint!("{}", loaded.source.render(&warnings, color));
    }
    warnings
}

fn validate(files: &[String], output: Output, color: bool) -> u8 {
    let mut all_valid = true;
    let mut results = Vec::new();
    for file in files {
        // `--output json`: the document carries every diagnostic; stderr
        // stays quiet.
        let to_stderr = output == Output::Text;
        match load_plan_to(file, color, to_stderr) {
            Ok(loaded) => {
                let mut warnings = loaded.warnings.clone();
                warnings.extend(build_warnings(&loaded, color, to_stderr));
                if output == Output::Text {
                    outln!(
                        "valid: {} ({} stage{}, {} target{})",
                        input::display_name(file),
                        loaded.plan.stages.len(),
                        if loaded.plan.stages.len() == 1 {
                            ""
                        } else {
                            "s"
                        },
                        loaded.plan.targets.len(),
                        if loaded.plan.targets.len() == 1 {
                            ""
                        } else {
                            "s"
                        },
                    );
                }
                results.push(serde_json::json!({
                    "file": file, "valid": true, "diagnostics": warnings,
                }));
            }
            Err(diagnostics) => {
                all_valid = false;
                results.push(serde_json::json!({
                    "file": file, "valid": false, "diagnostics": diagnostics,
                }));
            }
        }
    }
    if output == Output::Json {
        print_json(&serde_json::Value::Array(results));
    }
    if all_valid {
        exit::OK
    } else {
        exit::INVALID_INPUT
    }
}

fn plan(file: &str, out: Option<&std::path::Path>, output: Output, color: bool) -> u8 {
    let Ok(loaded) = load_plan(file, color) else {
        return exit::INVALID_INPUT;
    };
    build_warnings(&loaded, color, true);
    let report = ImpactReport::new(&loaded.plan);
    match output {
        Output::Text => out!("{}", report.render_text()),
        Output::Json => print_json(&report),
    }
    if let Some(out) = out {
        let mut saved = SavedPlan::new(file, &loaded);
        saved.plan_file_from_saved = relative_to(
            out.parent().unwrap_or(std::path::Path::new(".")),
            std::path::Path::new(file),
        );
        if let Err(error) = std::fs::write(out, saved.to_json() + "\n") {
            return crate::report::refused(format!(
                "cannot write saved plan {}: {error}",
                out.display()
            ));
        }
        eprintln!(
            "Saved plan to {}; `deployctl apply {}` executes exactly this plan.",
            out.display(),
            out.display()
        );
    }
    exit::OK
}

fn schema() -> u8 {
    let mut schema = schemars::schema_for!(deployctl_plan::raw::RawPlan);
    // The wire type's name is internal; editors show the title.
    schema.insert(
        "title".to_string(),
        serde_json::json!("deployctl plan (apiVersion deployctl.io/v1, kind Plan)"),
    );
    print_json(&schema);
    exit::OK
}

fn print_json<T: serde::Serialize>(value: &T) {
    report::wrote_stdout();
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`deployctl plan --output json | head`) is not an error
    // worth a panic; the reader has what it wanted.
    let _ = serde_json::to_writer_pretty(&mut stdout, value);
    let _ = writeln!(stdout);
}

/// `file` as a path from `dir`, when both resolve (for saved plans).
fn relative_to(dir: &std::path::Path, file: &std::path::Path) -> Option<String> {
    let dir = if dir.as_os_str().is_empty() {
        std::path::Path::new(".").canonicalize().ok()?
    } else {
        dir.canonicalize().ok()?
    };
    let file = file.canonicalize().ok()?;
    let common = dir
        .components()
        .zip(file.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut relative = std::path::PathBuf::new();
    for _ in dir.components().skip(common) {
        relative.push("..");
    }
    for part in file.components().skip(common) {
        relative.push(part);
    }
    relative.to_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    /// clap checks its definitions only when a command is parsed; this
    /// checks all of them (every subcommand's names and conflicts) at once.
    #[test]
    fn the_command_line_definitions_are_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
