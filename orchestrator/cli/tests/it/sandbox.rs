//! Helpers for the tests that execute plans (`runs.rs`, `crash.rs`): a
//! private state directory per test, the binary driven with bounded waits
//! (a hung child fails the test instead of hanging CI), and readers for
//! what a run leaves behind: the journal and the sim world.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use deployctl_engine::journal::Journal;
use deployctl_sim::{SimState, SimWorld};

use crate::repo_root;

/// How long any one command may take before the test gives up on it. Runs
/// in these tests take a few seconds; this only bounds a hang.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

/// A temporary directory holding one test's state directory, plan copies
/// and captured outputs; removed when dropped.
pub struct Sandbox {
    root: PathBuf,
    outputs: AtomicU32,
}

impl Sandbox {
    pub fn new(label: &str) -> Sandbox {
        static COUNT: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "deployctl-it-{label}-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("temp dir");
        Sandbox {
            root,
            outputs: AtomicU32::new(0),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `--state-dir` every command of this sandbox gets. Not created
    /// here: the binary creates it, as it would for a user.
    pub fn state_dir(&self) -> PathBuf {
        self.root.join("state")
    }

    pub fn sim_dir(&self) -> PathBuf {
        self.state_dir().join("sim")
    }

    /// `deployctl ARGS --state-dir DIR` from the repository root, with an
    /// environment that does not leak the developer's (state dir, colours)
    /// and a fixed user and host, so initiators and lock holders are the
    /// same on every machine.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_deployctl"));
        command
            .args(args)
            .arg("--state-dir")
            .arg(self.state_dir())
            .current_dir(repo_root())
            .env_remove("DEPLOYCTL_STATE_DIR")
            .env_remove("NO_COLOR")
            .env_remove("LOGNAME")
            .env("USER", "deployctl-test")
            .env("HOSTNAME", "test-host");
        command
    }

    /// Starts a command with stdin closed; its outputs go to files (a pipe
    /// nobody reads could block a chatty child).
    pub fn spawn(&self, args: &[&str]) -> Running {
        self.spawn_command(self.command(args), args, None)
    }

    pub fn spawn_command(
        &self,
        mut command: Command,
        args: &[&str],
        input: Option<&[u8]>,
    ) -> Running {
        let n = self.outputs.fetch_add(1, Ordering::Relaxed);
        let stdout = self.root.join(format!("out-{n}.stdout"));
        let stderr = self.root.join(format!("out-{n}.stderr"));
        command
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(File::create(&stdout).expect("stdout file"))
            .stderr(File::create(&stderr).expect("stderr file"));
        let mut child = command.spawn().expect("deployctl starts");
        if let Some(input) = input {
            let mut stdin = child.stdin.take().expect("piped stdin");
            stdin.write_all(input).expect("stdin takes the input");
            // Dropped here: the child sees end of input after it.
        }
        Running {
            child: Some(child),
            what: format!("deployctl {}", args.join(" ")),
            stdout,
            stderr,
        }
    }

    /// Runs a command to its end (bounded by [`COMMAND_TIMEOUT`]).
    pub fn run(&self, args: &[&str]) -> Finished {
        self.spawn(args).wait(COMMAND_TIMEOUT)
    }

    /// Runs a command with `input` on a pipe as its stdin.
    pub fn run_with_input(&self, args: &[&str], input: &[u8]) -> Finished {
        self.spawn_command(self.command(args), args, Some(input))
            .wait(COMMAND_TIMEOUT)
    }

    /// `status [RUN] --output json`, parsed.
    pub fn status(&self, run: Option<&str>) -> serde_json::Value {
        let mut args = vec!["status", "--output", "json"];
        args.extend(run);
        let out = self.run(&args);
        serde_json::from_str(&out.stdout)
            .unwrap_or_else(|error| panic!("status JSON: {error}\n{out}"))
    }

    /// The audit records of `run` (`audit show --run RUN --output json`).
    pub fn audit_records(&self, run: &str) -> Vec<serde_json::Value> {
        let out = self.run(&["audit", "show", "--run", run, "--output", "json"]);
        out.expect_code(0);
        match serde_json::from_str(&out.stdout) {
            Ok(serde_json::Value::Array(records)) => records,
            other => panic!("audit JSON: {other:?}\n{out}"),
        }
    }

    /// The audit records of `run` for one action (`promote.requested`, …).
    pub fn audit_records_of(&self, run: &str, action: &str) -> Vec<serde_json::Value> {
        self.audit_records(run)
            .into_iter()
            .filter(|record| record["what"]["action"] == action)
            .collect()
    }

    /// The actions of the calls `run` made on its targets (its journal's
    /// `callIntent` events), as JSON text.
    pub fn call_actions(&self, run: &str) -> Vec<String> {
        self.journal()
            .events(run)
            .expect("events")
            .iter()
            .filter(|e| e.kind == "callIntent")
            .map(|e| e.data["action"].to_string())
            .collect()
    }

    /// The journal, opened as a second reader next to any running process.
    pub fn journal(&self) -> Journal {
        Journal::open(&self.state_dir()).expect("journal opens")
    }

    /// Run ids, newest first.
    pub fn run_ids(&self) -> Vec<String> {
        self.journal()
            .runs(None, 1000)
            .expect("runs")
            .into_iter()
            .map(|run| run.id)
            .collect()
    }

    /// The sim target `name` as the world file has it (`None`: never
    /// written, so still in its initial state).
    pub fn sim(&self, name: &str) -> Option<SimState> {
        SimWorld::open(self.sim_dir())
            .expect("sim world opens")
            .read(name)
            .expect("sim state reads")
    }

    /// Names of the sim targets that have a state file (were ever changed).
    pub fn sim_files(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.sim_dir()) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .map(|entry| {
                entry
                    .expect("dir entry")
                    .file_name()
                    .to_string_lossy()
                    .to_string()
            })
            .filter(|name| name.ends_with(".json") && !name.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    /// Copies a repository file into the sandbox (for plans a test edits).
    pub fn copy_in(&self, repo_path: &str, name: &str) -> PathBuf {
        let to = self.root.join(name);
        std::fs::copy(repo_root().join(repo_path), &to).expect("copy");
        to
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A started `deployctl`. Dropping it SIGKILLs and reaps the process, so a
/// failing test leaves nothing running.
pub struct Running {
    child: Option<Child>,
    what: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// What the command has written to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGKILL (what `Child::kill` sends on unix) and reap, so that
    /// `/proc/<pid>` is gone and the next process sees the owner dead.
    /// Returns `true` when the process had already exited by itself.
    pub fn sigkill(mut self) -> bool {
        let mut child = self.child.take().expect("running");
        let exited = child.try_wait().expect("try_wait").is_some();
        if !exited {
            let _ = child.kill();
        }
        child.wait().expect("reaped");
        exited
    }

    /// Waits for the exit, at most `timeout`; a process still running then
    /// is killed and the test fails with what it printed.
    pub fn wait(mut self, timeout: Duration) -> Finished {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Finished {
                    what: self.what.clone(),
                    code: status.code(),
                    stdout: std::fs::read_to_string(&self.stdout).unwrap_or_default(),
                    stderr: std::fs::read_to_string(&self.stderr).unwrap_or_default(),
                };
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{} did not finish within {timeout:?}\n--- stderr\n{}",
                    self.what,
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A finished command.
pub struct Finished {
    pub what: String,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} exited with {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.what, self.code, self.stdout, self.stderr
        )
    }
}

impl Finished {
    /// Asserts the exit code, showing the outputs when it differs.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "{self}");
        self
    }
}

/// Polls `condition` every 20 ms until it holds; fails the test after
/// `timeout` naming what it waited for.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The run id `apply` announces on stderr (`Run r-… started.`).
pub fn started_run_id(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|line| line.strip_prefix("Run ")?.strip_suffix(" started."))
        .unwrap_or_else(|| panic!("no `Run … started.` line in\n{stderr}"))
        .to_string()
}

/// Replaces run ids and RFC 3339 timestamps with placeholders of the same
/// length, so snapshots stay aligned in their columns.
pub fn mask(text: &str) -> String {
    // '9': a digit, 'x': a lowercase hex digit, anything else: itself.
    const RUN_ID: &str = "r-99999999-999999-xxxx";
    const TIMESTAMP: &str = "9999-99-99T99:99:99.999Z";
    fn fits(text: &[u8], shape: &str) -> bool {
        text.len() >= shape.len()
            && shape.bytes().zip(text).all(|(want, got)| match want {
                b'9' => got.is_ascii_digit(),
                b'x' => got.is_ascii_digit() || (b'a'..=b'f').contains(got),
                literal => literal == *got,
            })
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while at < bytes.len() {
        let rest = &bytes[at..];
        if fits(rest, RUN_ID) {
            out.push_str("r-YYYYMMDD-HHMMSS-xxxx");
            at += RUN_ID.len();
        } else if fits(rest, TIMESTAMP) {
            out.push_str("YYYY-MM-DDTHH:MM:SS.mmmZ");
            at += TIMESTAMP.len();
        } else {
            let ch = text[at..].chars().next().expect("a char");
            out.push(ch);
            at += ch.len_utf8();
        }
    }
    out
}

#[test]
fn mask_keeps_columns_and_only_touches_ids_and_times() {
    let line = "r-20261124-095701-7809    Succeeded  2026-11-24T09:57:01.668Z  me";
    let masked = mask(line);
    assert_eq!(masked.len(), line.len());
    assert_eq!(
        masked,
        "r-YYYYMMDD-HHMMSS-xxxx    Succeeded  YYYY-MM-DDTHH:MM:SS.mmmZ  me"
    );
    // Near misses stay as they are.
    assert_eq!(mask("r-2026-x 2026-11-24"), "r-2026-x 2026-11-24");
}
