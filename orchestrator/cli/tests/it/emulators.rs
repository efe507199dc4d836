//! What the AWS and Kubernetes end-to-end tests share: the emulators'
//! URLs (`tests/moto.sh` exports them) and boto3 from moto's venv for
//! fixtures and for reading what the platform really holds.

use std::io::Write;
use std::process::Command;

use crate::repo_root;

/// The URLs in `vars`, or `None` after saying on stderr why `test` is
/// skipped (libtest captures `eprintln!` of passing tests; a skip must be
/// seen).
pub fn urls<const N: usize>(test: &str, vars: [&str; N]) -> Option<[String; N]> {
    let found = vars.map(|var| std::env::var(var).ok().filter(|v| !v.is_empty()));
    if found.iter().all(Option::is_some) {
        return Some(found.map(Option::unwrap_or_default));
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {} not set; `bash tests/run.sh` (or `bash tests/moto.sh -- cargo test ...`) starts the emulators",
        vars.join(" / ")
    );
    None
}

/// moto's URL, or `None` after saying why `test` is skipped.
pub fn moto(test: &str) -> Option<String> {
    urls(test, ["DEPLOYCTL_TEST_MOTO_URL"]).map(|[url]| url)
}

/// Runs `prelude` then `script` with moto's venv Python (it has boto3),
/// with `env` set; panics with Python's stderr when it fails; returns
/// stdout, trimmed.
pub fn python(env: &[(&str, &str)], prelude: &str, script: &str) -> String {
    let out = Command::new(repo_root().join(".venv/bin/python"))
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .envs(env.iter().copied())
        .output()
        .expect("the moto venv's python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// boto3 keyword arguments for moto at `$MOTO` with the tests' dummy
/// credentials, as `kw`.
pub const MOTO_CLIENT: &str = "import boto3, datetime, io, json, os, zipfile\n\
kw = dict(endpoint_url=os.environ['MOTO'], region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\n";
