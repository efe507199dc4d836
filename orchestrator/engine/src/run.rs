//! Run ids and who starts runs. Runs are recorded by
//! [`crate::executor::Engine::start`] and driven by
//! [`crate::executor::Engine::execute`].

/// `r-20261124-091523-3f2a`: sortable by time. Unique within this
/// process (a controller starts hundreds of runs a second; 16 random bits
/// alone would repeat within one second about as often as not); across
/// processes the salt starts from the clock and the process ID, and the
/// journal refuses a repeated ID rather than merging two runs.
pub fn new_run_id() -> String {
    // The clock is read under the lock: two threads reading seconds S and
    // S+1 outside it could each reset the other's record of salts.
    let mut issued = ISSUED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
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
    let first = (nanos ^ std::process::id().rotate_left(16)) & 0xffff;
    let salt = unused_salt_in(
        &mut issued,
        now.div_euclid(1000),
        u16::try_from(first).unwrap_or(0),
    );
    format!("r-{compact}-{salt:04x}")
}

/// Salts handed out in one second: the second, and a flag per salt.
type Issued = (i64, Vec<bool>);

/// Salts this process handed out in the current second.
static ISSUED: std::sync::Mutex<Issued> = std::sync::Mutex::new((i64::MIN, Vec::new()));

/// `first`, or the next salt not handed out yet in `second`; when all
/// 65,536 were (never seen in practice), the next second's.
fn unused_salt_in(issued: &mut Issued, second: i64, first: u16) -> u16 {
    let (current, taken) = issued;
    if *current != second || taken.iter().all(|t| *t) {
        *current = second;
        *taken = vec![false; 1 << 16];
    }
    let mut salt = first;
    while taken[usize::from(salt)] {
        salt = salt.wrapping_add(1);
    }
    taken[usize::from(salt)] = true;
    salt
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_started_together_never_repeat_in_one_process() {
        let ids: Vec<String> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| (0..2_000).map(|_| new_run_id()).collect::<Vec<_>>()))
                .collect();
            workers
                .into_iter()
                .flat_map(|worker| worker.join().expect("a worker"))
                .collect()
        });
        let distinct: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len());
        assert!(
            ids.iter()
                .all(|id| id.len() == "r-20261124-091523-3f2a".len())
        );
    }

    #[test]
    fn a_salt_taken_this_second_moves_on_and_a_new_second_starts_afresh() {
        let mut issued: Issued = (i64::MIN, Vec::new());
        let second = 1_000_000_007;
        assert_eq!(unused_salt_in(&mut issued, second, 0xfffe), 0xfffe);
        assert_eq!(unused_salt_in(&mut issued, second, 0xfffe), 0xffff);
        assert_eq!(
            unused_salt_in(&mut issued, second, 0xffff),
            0,
            "wraps past 0xffff"
        );
        assert_eq!(unused_salt_in(&mut issued, second + 1, 0xfffe), 0xfffe);
    }
}
