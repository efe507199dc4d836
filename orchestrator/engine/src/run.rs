//! Run ids and who starts runs. Runs are recorded by
//! [`crate::executor::Engine::start`] and driven by
//! [`crate::executor::Engine::execute`].

/// `r-20261124-091523-3f2a`: sortable by time, unique per process start.
pub fn new_run_id() -> String {
    let now = crate::clock::now_ms();
    let stamp = crate::clock::rfc3339(now);
    // 2026-11-24T09:15:23.123Z → 20261124-091523
    let compact: String = stamp[..19]
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T')
        .map(|c| if c == 'T' { '-' } else { c })
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let salt = (nanos ^ std::process::id().rotate_left(16)) & 0xffff;
    format!("r-{compact}-{salt:04x}")
}

/// This machine's name, for lock holders and run owners.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|name| !name.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|name| name.trim().to_string())
        })
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Who is running deployctl, as `user@host`.
pub fn initiator() -> String {
    // The configured operator identity wins over the OS login: a shared
    // deploy account is still driven by a named person (S1).
    let user = std::env::var("DEPLOYCTL_OPERATOR")
        .ok()
        .filter(|user| !user.is_empty())
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("LOGNAME").ok())
        .filter(|user| !user.is_empty())
        .or_else(user_from_passwd)
        .unwrap_or_else(|| "unknown".to_string());
    format!("{user}@{}", host_name())
}

/// The login name of this process's user, from /etc/passwd (services and
/// containers often run without `USER`).
#[cfg(unix)]
fn user_from_passwd() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let entry_uid: u32 = fields.nth(1)?.parse().ok()?;
        (entry_uid == uid).then(|| name.to_string())
    })
}

#[cfg(not(unix))]
fn user_from_passwd() -> Option<String> {
    None
}

/// A run owner is alive when it has beaten its heart recently and, on this
/// host, its process still exists.
pub fn owner_alive(run: &crate::journal::RunRecord) -> bool {
    let recent = run
        .heartbeat_at
        .is_some_and(|at| crate::clock::now_ms() - at < 10_000);
    let same_host = run.owner_host.as_deref() == Some(&host_name());
    match (run.owner_pid, same_host) {
        (Some(pid), true) => recent && std::path::Path::new(&format!("/proc/{pid}")).exists(),
        _ => recent,
    }
}
