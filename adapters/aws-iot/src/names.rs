//! Names of a release's objects on the platform, derived from the run and
//! stage driving it, so a restarted process finds the same wave groups
//! and jobs. IoT job IDs take `[a-zA-Z0-9_-]{1,64}`, thing group names
//! `[a-zA-Z0-9:_-]{1,128}`; run IDs and stage names may hold other
//! characters, so both are hashed.

/// Where one run's stage keeps its waves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Release {
    /// `run/stage`, as the engine's idempotency keys start.
    pub(crate) key: String,
    prefix: String,
}

impl Release {
    pub(crate) fn new(run: &str, stage: &str) -> Release {
        let key = format!("{run}/{stage}");
        let digest = deployctl_firmware::sha256_hex(key.as_bytes());
        Release {
            prefix: format!("deployctl-{}", &digest[..20]),
            key,
        }
    }

    /// From an idempotency key `run/stage/…` (stage names have no `/`).
    pub(crate) fn from_key(key: &str) -> Option<Release> {
        let mut parts = key.rsplitn(3, '/');
        let _sequence = parts.next()?;
        let stage = parts.next()?;
        let run = parts.next()?;
        Some(Release::new(run, stage))
    }

    /// The thing group and the job of wave `index` (0-based).
    pub(crate) fn wave(&self, index: u32) -> String {
        format!("{}-w{}", self.prefix, index + 1)
    }

    /// The thing group and the job sending the rollback firmware.
    pub(crate) fn rollback(&self) -> String {
        format!("{}-rollback", self.prefix)
    }

    /// The continuous job kept for devices that join the groups later.
    pub(crate) fn continuous(&self) -> String {
        format!("{}-continuous", self.prefix)
    }

    /// The seed devices are ordered by: the run and stage, recorded in
    /// the journal with every call, so a resumed run orders them the same.
    pub(crate) fn seed(&self) -> &str {
        &self.key
    }
}

/// The dynamic thing group of a fleet-index query: named by the query's
/// digest, so every run (and PC) selecting by the same query shares one
/// group, and its identity (the group's ARN) is what their locks key on.
pub(crate) fn query_group(query: &str) -> String {
    let digest = deployctl_firmware::sha256_hex(query.trim().as_bytes());
    format!("deployctl-query-{}", &digest[..24])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_names_one_group_within_the_limits() {
        let name = query_group("thingTypeName:hub-h2 AND attributes.updateChannel:stable");
        assert_eq!(
            name,
            query_group(" thingTypeName:hub-h2 AND attributes.updateChannel:stable\n")
        );
        assert_ne!(name, query_group("thingTypeName:hub-h1"));
        assert!(name.len() <= 128 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }

    #[test]
    fn names_fit_iot_and_come_back_from_any_key_of_the_stage() {
        let release = Release::new("run-20261203-abc/x", "ota stage");
        let wave = release.wave(3);
        assert!(
            wave.len() <= 64
                && wave
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert!(wave.ends_with("-w4"));
        assert_eq!(
            Release::from_key("run-20261203-abc/x/ota stage/7"),
            Some(release.clone())
        );
        assert_eq!(
            Release::from_key("run-20261203-abc/x/ota stage/rollback"),
            Some(release)
        );
        assert_ne!(
            Release::new("r1", "ota").wave(0),
            Release::new("r2", "ota").wave(0)
        );
        assert_eq!(Release::from_key("nope"), None);
    }
}
