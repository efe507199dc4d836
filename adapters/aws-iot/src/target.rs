//! [`FleetTarget`]: construction, what preflight checks, and the
//! `WaveTarget` implementation over AWS IoT Jobs.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_iot::Client;
use deployctl_adapter::construct::PlanRelease;
use deployctl_adapter::{
    AdapterError, Applied, BoxFuture, Capabilities, HealthProbe, IdempotencyKey, Moves, Observed,
    PlannedCall, Preflight, Target, WaveAction, WaveProgress, WaveTarget,
};
use deployctl_aws_firmware::KmsClient;
use deployctl_firmware::keys::{Algorithm, PublicKey};
use deployctl_plan::model::{
    FleetSelector, FleetSpec, GateCheck, SignatureAlgorithm, SignatureSource, TargetKind, Waves,
};

use crate::backend::{self, ExecutionStatus, FleetJobs, IotJobs, JobCounts, JobSpec};
use crate::firmware::{self, Checked, Named};
use crate::names::Release;

/// The IoT client configuration every [`FleetTarget`] uses, from a loaded
/// [`SdkConfig`] with the shared retry and timeout settings. Tests add
/// their interceptors before building.
pub fn iot_config(sdk: &SdkConfig) -> aws_sdk_iot::config::Builder {
    aws_sdk_iot::config::Builder::from(sdk)
        .retry_config(deployctl_aws::config::retry())
        .timeout_config(deployctl_aws::config::timeouts())
}

/// The IoT client type, for callers that do not link the SDK themselves.
pub type IotClient = Client;

/// An IoT client for `sdk` with the shared retry and timeout settings.
pub fn iot_client(sdk: &SdkConfig) -> Client {
    Client::from_conf(iot_config(sdk).build())
}

/// At most this many devices have their thing type checked in preflight
/// (one `DescribeThing` each); a larger fleet is checked on a seeded
/// sample of this size, and each device's agent checks its own hardware
/// against the signed manifest before installing.
const HARDWARE_SAMPLE: usize = 1000;

/// How long a read of the fleet's membership is reused by `observe`.
const MEMBERS_FRESH_FOR: Duration = Duration::from_secs(30);

/// Why a fleet target could not be built from the plan: refused before
/// any call. The binary adds which target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstructError {
    #[error("{0}")]
    Unsupported(String),
    #[error("artifact version {version}: {problem}")]
    Artifact { version: String, problem: String },
    #[error("cannot read the firmware signing key {path}: {problem}")]
    Key { path: String, problem: String },
    #[error(
        "devices fetch firmware only through presigned URLs (O2): set `downloadRole` to the IAM role AWS IoT presigns them with"
    )]
    NoDownloadRole,
    #[error("a fleet target needs the firmware devices go back to (`rollback.stable`)")]
    NoStable,
}

/// The key manifests must verify under.
#[derive(Debug, Clone)]
enum Trust {
    Key(PublicKey),
    Kms(String),
}

/// An IoT fleet as a deploy target.
#[derive(Clone)]
pub struct FleetTarget {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    name: String,
    groups: Vec<String>,
    /// The fleet-index query the one group of `groups` is made from.
    query: Option<String>,
    region: String,
    download_role: Option<String>,
    continuous: bool,
    trust: Trust,
    release: Option<Named>,
    stable: Named,
    waves: Option<Waves>,
    pub(crate) jobs: Arc<dyn FleetJobs>,
    s3: aws_sdk_s3::Client,
    kms: KmsClient,
    state: Mutex<State>,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) attached: Option<Release>,
    /// Shared, not copied: a million names are tens of megabytes.
    members: Option<(Instant, Arc<Vec<String>>)>,
    /// The release's and the rollback's firmware, once verified.
    checked: Option<(Option<Checked>, Checked)>,
    /// Devices in each started wave's group (the wave's size).
    wave_sizes: BTreeMap<u32, u32>,
    halted: bool,
    /// The release's rollback group exists: it was rolled back.
    rolled_back: bool,
    /// The release's seeded device order, for the fleet it was drawn over.
    order: Option<SeededOrder>,
    /// Devices whose anomaly field the `fleet` gate has read.
    pub(crate) anomalies: crate::probe::AnomalySample,
}

/// Device indices in a seed's order, and a hash of the member list they
/// index (a changed fleet is ordered anew).
struct SeededOrder {
    seed: String,
    fleet_hash: u64,
    order: Arc<Vec<u32>>,
}

impl std::fmt::Debug for FleetTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetTarget")
            .field("name", &self.inner.name)
            .field("groups", &self.inner.groups)
            .finish_non_exhaustive()
    }
}

/// The clients a fleet target talks through.
#[derive(Debug, Clone)]
pub struct Clients {
    pub iot: Client,
    pub s3: aws_sdk_s3::Client,
    pub kms: KmsClient,
}

impl FleetTarget {
    /// Builds the target from the plan: checks what can be checked
    /// without a call (a supported selector and signature, a download
    /// role, both firmwares named) and reads a local trusted key.
    pub async fn from_spec(
        name: impl Into<String>,
        spec: &FleetSpec,
        release: &PlanRelease<'_>,
    ) -> Result<FleetTarget, ConstructError> {
        let region = spec.region.clone();
        let sdk = deployctl_aws::config::load(region.as_deref()).await;
        let clients = Clients {
            iot: Client::from_conf(iot_config(&sdk).build()),
            s3: deployctl_aws_firmware::bucket::s3_client(&sdk),
            kms: deployctl_aws_firmware::kms_client(&sdk),
        };
        let region = region
            .or_else(|| sdk.region().map(|r| r.as_ref().to_owned()))
            .unwrap_or_else(|| "us-east-1".into());
        FleetTarget::with_clients(name, spec, release, &region, clients)
    }

    /// What this build cannot do with the plan's fleet target, found
    /// without any call or file read: `validate` warns with it and
    /// `apply` refuses with it before anything starts.
    pub fn check_plan(spec: &FleetSpec, release: &PlanRelease<'_>) -> Result<(), ConstructError> {
        if spec.download_role.is_none() && release.artifact.is_some() {
            return Err(ConstructError::NoDownloadRole);
        }
        for artifact in [release.artifact, release.pinned_stable]
            .into_iter()
            .flatten()
        {
            if let deployctl_plan::model::ArtifactSource::Firmware { signature, .. } =
                &artifact.source
            {
                supported_signature(&signature.algorithm, &signature.source)?;
            }
        }
        Ok(())
    }

    /// [`FleetTarget::from_spec`] over given clients (tests).
    pub fn with_clients(
        name: impl Into<String>,
        spec: &FleetSpec,
        release: &PlanRelease<'_>,
        region: &str,
        clients: Clients,
    ) -> Result<FleetTarget, ConstructError> {
        let jobs = Arc::new(IotJobs(clients.iot));
        FleetTarget::with_jobs(name, spec, release, region, jobs, clients.s3, clients.kms)
    }

    /// The target over another [`FleetJobs`] (the in-process fleet of the
    /// scale benchmark); the firmware is still fetched from S3 and its
    /// signature checked with KMS or a local key.
    pub fn with_jobs(
        name: impl Into<String>,
        spec: &FleetSpec,
        release: &PlanRelease<'_>,
        region: &str,
        jobs: Arc<dyn FleetJobs>,
        s3: aws_sdk_s3::Client,
        kms: KmsClient,
    ) -> Result<FleetTarget, ConstructError> {
        FleetTarget::check_plan(spec, release)?;
        // A fleet-index query is a dynamic thing group of its own: made
        // (or found) at preflight, then a thing group like any other.
        let (groups, query) = match &spec.devices {
            FleetSelector::ThingGroups(groups) => (groups.clone(), None),
            FleetSelector::Query(query) => (
                vec![crate::names::query_group(query)],
                Some(query.trim().to_owned()),
            ),
        };
        let download_role = spec.download_role.clone();
        let mut trust = None;
        let mut named =
            |artifact: &deployctl_plan::model::Artifact| -> Result<Named, ConstructError> {
                let deployctl_plan::model::ArtifactSource::Firmware { signature, .. } =
                    &artifact.source
                else {
                    return Err(ConstructError::Artifact {
                        version: artifact.version.clone(),
                        problem: "a fleet releases firmware (`firmware:`)".into(),
                    });
                };
                let found = trust_of(&signature.algorithm, &signature.source, release.plan_dir)?;
                trust.get_or_insert(found);
                Named::of(artifact)
                    .unwrap_or_else(|| Err("not firmware".into()))
                    .map_err(|problem| ConstructError::Artifact {
                        version: artifact.version.clone(),
                        problem,
                    })
            };
        let stable = named(release.pinned_stable.ok_or(ConstructError::NoStable)?)?;
        let new = release.artifact.map(&mut named).transpose()?;
        let trust = trust.ok_or(ConstructError::NoStable)?;
        Ok(FleetTarget {
            inner: Arc::new(Inner {
                name: name.into(),
                groups,
                query,
                region: region.to_owned(),
                download_role,
                continuous: spec.continuous,
                trust,
                release: new,
                stable,
                waves: release.waves.cloned(),
                jobs,
                s3,
                kms,
                state: Mutex::new(State::default()),
            }),
        })
    }
}

const UNSUPPORTED_SOURCE: &str = "AWS Signer profiles and detached signatures are not supported by this build: sign a manifest with `deployctl artifact sign` and name its key in `signature.publicKey` or `signature.kmsKey`";

/// The algorithm a plan's signature names, when this build verifies it
/// from where the plan says its key is.
fn supported_signature(
    algorithm: &SignatureAlgorithm,
    source: &SignatureSource,
) -> Result<Algorithm, ConstructError> {
    let wanted = match algorithm {
        SignatureAlgorithm::Ed25519 => Algorithm::Ed25519,
        SignatureAlgorithm::EcdsaP256 => Algorithm::EcdsaP256,
        SignatureAlgorithm::RsaPssSha256 => {
            return Err(ConstructError::Unsupported(
                "rsa-pss-sha256 manifests are not supported by this build: sign with ed25519 or ecdsa-p256".into(),
            ));
        }
    };
    match source {
        SignatureSource::PublicKey(_) => Ok(wanted),
        SignatureSource::KmsKey(_) if wanted == Algorithm::EcdsaP256 => Ok(wanted),
        SignatureSource::KmsKey(_) => Err(ConstructError::Unsupported(
            "a KMS key signs ecdsa-p256 manifests: set `algorithm: ecdsa-p256`".into(),
        )),
        SignatureSource::SignerProfile(_) | SignatureSource::Detached(_) => {
            Err(ConstructError::Unsupported(UNSUPPORTED_SOURCE.into()))
        }
    }
}

fn trust_of(
    algorithm: &SignatureAlgorithm,
    source: &SignatureSource,
    plan_dir: &Path,
) -> Result<Trust, ConstructError> {
    let wanted = supported_signature(algorithm, source)?;
    match source {
        SignatureSource::PublicKey(path) => {
            let full = plan_dir.join(path);
            let key_error = |problem: String| ConstructError::Key {
                path: full.display().to_string(),
                problem,
            };
            let text = std::fs::read_to_string(&full).map_err(|e| key_error(e.to_string()))?;
            let key = PublicKey::from_pem(&text).map_err(|e| key_error(e.to_string()))?;
            if key.algorithm() != wanted {
                return Err(key_error(format!(
                    "it is an {} key, the plan says {}",
                    key.algorithm(),
                    wanted
                )));
            }
            Ok(Trust::Key(key))
        }
        SignatureSource::KmsKey(key) => Ok(Trust::Kms(key.clone())),
        SignatureSource::SignerProfile(_) | SignatureSource::Detached(_) => {
            Err(ConstructError::Unsupported(UNSUPPORTED_SOURCE.into()))
        }
    }
}

impl State {
    /// Serves `release` from now on; what was learnt about another
    /// release (its waves, a halt, a rollback) is forgotten.
    fn attach(&mut self, release: Release) {
        if self.attached.as_ref() != Some(&release) {
            self.wave_sizes.clear();
            self.halted = false;
            self.rolled_back = false;
            self.anomalies = Default::default();
        }
        self.attached = Some(release);
    }
}

impl Inner {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many waves the plan has (the names probed for started waves).
    pub(crate) fn wave_count(&self) -> u32 {
        self.waves.as_ref().map_or(0, |w| w.waves.len() as u32)
    }

    async fn members(&self, fresh: bool) -> Result<Arc<Vec<String>>, AdapterError> {
        if !fresh
            && let Some((at, members)) = &self.state().members
            && at.elapsed() < MEMBERS_FRESH_FOR
        {
            return Ok(members.clone());
        }
        // The old list goes first: two lists of a million names at once
        // would be most of the process's memory.
        self.state().members = None;
        let mut all = Vec::new();
        for group in &self.groups {
            all.extend(self.jobs.members(group).await?);
        }
        // A device in two of the fleet's groups is one device.
        all.sort_unstable();
        all.dedup();
        let members = Arc::new(all);
        self.state().members = Some((Instant::now(), members.clone()));
        Ok(members)
    }

    /// The release's seeded order of `fleet` (indices), computed once per
    /// release and fleet: hashing a million names is most of a wave's
    /// decision time.
    fn seeded_order(&self, release: &Release, fleet: &[String]) -> Arc<Vec<u32>> {
        let fleet_hash = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            fleet.hash(&mut hasher);
            hasher.finish()
        };
        if let Some(cached) = &self.state().order
            && cached.seed == release.seed()
            && cached.fleet_hash == fleet_hash
        {
            return cached.order.clone();
        }
        let order = Arc::new(crate::selection::seeded_order(release.seed(), fleet));
        self.state().order = Some(SeededOrder {
            seed: release.seed().to_owned(),
            fleet_hash,
            order: order.clone(),
        });
        order
    }

    async fn trusted_key(&self) -> Result<PublicKey, AdapterError> {
        match &self.trust {
            Trust::Key(key) => Ok(key.clone()),
            Trust::Kms(key) => deployctl_aws_firmware::kms_public_key(&self.kms, key).await,
        }
    }

    /// Both firmwares, verified (once per process).
    async fn checked(&self) -> Result<(Option<Checked>, Checked), AdapterError> {
        if let Some(checked) = &self.state().checked {
            return Ok(checked.clone());
        }
        let key = self.trusted_key().await?;
        let stable = firmware::check(&self.s3, &self.region, &key, &self.stable, true).await?;
        let release = match &self.release {
            Some(named) => {
                let release = firmware::check(&self.s3, &self.region, &key, named, false).await?;
                firmware::check_pair(&release, &stable)?;
                Some(release)
            }
            None => None,
        };
        self.state().checked = Some((release.clone(), stable.clone()));
        Ok((release, stable))
    }

    fn release(&self, key: Option<&IdempotencyKey>) -> Option<Release> {
        let mut state = self.state();
        if let Some(release) = key.and_then(|key| Release::from_key(&key.0)) {
            state.attach(release);
        }
        state.attached.clone()
    }

    /// The size of every started wave (its group's members), by index.
    async fn started_waves(
        &self,
        release: &Release,
    ) -> Result<BTreeMap<u32, (u32, JobCounts)>, AdapterError> {
        let mut started = BTreeMap::new();
        for index in 0..self.wave_count() {
            let Some(counts) = self.jobs.job_counts(&release.wave(index)).await? else {
                continue;
            };
            let known = self.state().wave_sizes.get(&index).copied();
            let size = match known {
                Some(size) => size,
                None => {
                    let size = backend::members_if_any(&*self.jobs, &release.wave(index))
                        .await?
                        .len() as u32;
                    self.state().wave_sizes.insert(index, size);
                    size
                }
            };
            started.insert(index, (size, counts));
        }
        Ok(started)
    }

    pub(crate) async fn progress(&self) -> Result<WaveProgress, AdapterError> {
        let fleet_size = self.members(false).await?.len() as u32;
        let mut progress = WaveProgress {
            fleet_size,
            ..WaveProgress::default()
        };
        let Some(release) = self.release(None) else {
            return Ok(progress);
        };
        for (size, counts) in self.started_waves(&release).await?.values() {
            progress.dispatched += size;
            progress.succeeded += counts.succeeded;
            progress.failed += counts.failed;
            progress.timed_out += counts.timed_out;
            progress.waves_started += 1;
            if counts.status == "CANCELED" {
                progress.halted = true;
            }
        }
        progress.halted |= self.state().halted;
        Ok(progress)
    }

    /// Whether the release was rolled back (its rollback group, the marker
    /// `rollback` makes before anything else, exists).
    async fn rolled_back(&self, release: &Release) -> Result<bool, AdapterError> {
        if self.state().rolled_back {
            return Ok(true);
        }
        let found = self.jobs.group_exists(&release.rollback()).await?;
        self.state().rolled_back = found;
        Ok(found)
    }

    async fn preflight(&self) -> Result<Preflight, AdapterError> {
        if let (Some(query), [group]) = (&self.query, self.groups.as_slice()) {
            // The selector itself, no device is sent anything: AWS keeps
            // its members as things start or stop matching.
            let description = format!("deployctl fleet {}: {query}", self.name);
            self.jobs
                .ensure_query_group(group, query, &description)
                .await?;
        }
        let mut arns = Vec::new();
        for group in &self.groups {
            arns.push(self.jobs.group_arn(group).await?);
        }
        arns.sort();
        let members = self.members(true).await?;
        if members.is_empty() {
            return Err(AdapterError::Rejected {
                message: format!("thing groups {} have no devices", self.groups.join(", ")),
                request_id: None,
            });
        }
        let (release, stable) = self.checked().await?;
        if let Some(release) = &release {
            let sample: Vec<&String> = crate::selection::seeded_order("hardware", &members)
                .into_iter()
                .take(HARDWARE_SAMPLE)
                .map(|index| &members[index as usize])
                .collect();
            let mut models = Vec::with_capacity(sample.len());
            for chunk in sample.chunks(16) {
                let mut set = tokio::task::JoinSet::new();
                for thing in chunk {
                    let (jobs, thing) = (self.jobs.clone(), (*thing).clone());
                    set.spawn(async move {
                        let model = jobs.thing_type(&thing).await;
                        model.map(|model| (thing, model))
                    });
                }
                while let Some(done) = set.join_next().await {
                    models.push(done.map_err(|e| AdapterError::Unavailable {
                        message: format!("reading thing types: {e}"),
                        request_id: None,
                    })??);
                }
            }
            firmware::check_hardware(release, &models)?;
        }
        let describe = |what: &str, checked: &Checked| {
            format!(
                "{what} {} {} manifest sha256:{} signed by {}",
                checked.firmware.firmware,
                checked.firmware.version,
                checked.verified.digest,
                checked.verified.signer
            )
        };
        let mut verified = vec![describe("rollback", &stable)];
        if let Some(release) = &release {
            verified.insert(0, describe("release", release));
        }
        Ok(Preflight {
            verified: verified.clone(),
            stable_version: self.stable.version.clone(),
            rollback_ready: true,
            detail: format!(
                "{} devices in {}; {}",
                members.len(),
                self.groups.join(", "),
                verified.join("; ")
            ),
            identity: arns.join("+"),
            capabilities: Capabilities::waves(),
        })
    }

    async fn start_wave(
        &self,
        index: u32,
        devices: u32,
        key: &IdempotencyKey,
    ) -> Result<Applied, AdapterError> {
        let release = self.release(Some(key)).ok_or_else(|| bad_key(key))?;
        let (Some(checked), _) = self.checked().await? else {
            return Err(AdapterError::Rejected {
                message: "this plan names no new firmware for the fleet".into(),
                request_id: None,
            });
        };
        let job_id = release.wave(index);
        // One read of every wave job: this one already out (a retried
        // apply) or any canceled (a halt or abort) decides it.
        let started = self.started_waves(&release).await?;
        if started.contains_key(&index) {
            return Ok(Applied::default());
        }
        let halted = self.state().halted
            || started
                .values()
                .any(|(_, counts)| counts.status == "CANCELED");
        if halted || self.rolled_back(&release).await? {
            return Err(AdapterError::Rejected {
                message: "the rollout was halted (the kill switch, an abort or a rollback): nothing more is dispatched".into(),
                request_id: None,
            });
        }
        let fleet = self.members(true).await?;
        let order = self.seeded_order(&release, &fleet);
        let mut taken = vec![false; fleet.len()];
        for earlier in 0..index {
            let earlier = backend::members_if_any(&*self.jobs, &release.wave(earlier)).await?;
            crate::selection::mark(&fleet, &earlier, &mut taken);
        }
        let current = backend::members_if_any(&*self.jobs, &job_id).await?;
        let new = crate::selection::pick(&order, &fleet, &taken, &current, devices as usize);
        drop((taken, order));
        let wave_size = current.len().min(devices as usize) + new.len();
        let (group_arn, group_request) = self
            .jobs
            .ensure_group(
                &job_id,
                &format!("deployctl {} wave {}", release.key, index + 1),
            )
            .await?;
        self.jobs.add_things(&job_id, &new).await?;
        let waves = self.waves.as_ref();
        let document = crate::document::job_document(&checked.firmware);
        let (_, request_id) = self
            .jobs
            .create_job(&JobSpec {
                job_id: &job_id,
                targets: std::slice::from_ref(&group_arn),
                continuous: false,
                document: &document,
                description: format!(
                    "deployctl {} wave {}: {}",
                    release.key,
                    index + 1,
                    checked.firmware.version
                ),
                download_role: self.download_role.as_deref(),
                max_per_minute: waves.map_or(1000, |w| w.max_devices_per_minute),
                abort: waves.map(|w| (w.abort_failure_threshold, w.abort_min_devices)),
                timeout_minutes: waves.map(|w| (w.device_timeout.as_secs().div_ceil(60)) as i64),
            })
            .await?;
        self.state().wave_sizes.insert(index, wave_size as u32);
        let mut request_ids: Vec<String> = group_request.into_iter().chain(request_id).collect();
        if self.continuous && index + 1 == self.wave_count() {
            request_ids.extend(self.keep_continuous(&release, &checked).await?);
        }
        Ok(Applied {
            changed: true,
            request_ids,
        })
    }

    /// After the last wave: a CONTINUOUS job on the fleet's own groups, so
    /// a device that joins later is sent the release (A1). Its current
    /// members get an execution too and answer that they run it already.
    async fn keep_continuous(
        &self,
        release: &Release,
        checked: &Checked,
    ) -> Result<Option<String>, AdapterError> {
        let mut arns = Vec::new();
        for group in &self.groups {
            arns.push(self.jobs.group_arn(group).await?);
        }
        let waves = self.waves.as_ref();
        let document = crate::document::job_document(&checked.firmware);
        let (_, request_id) = self
            .jobs
            .create_job(&JobSpec {
                job_id: &release.continuous(),
                targets: &arns,
                continuous: true,
                document: &document,
                description: format!(
                    "deployctl {} devices joining later: {}",
                    release.key, checked.firmware.version
                ),
                download_role: self.download_role.as_deref(),
                max_per_minute: waves.map_or(1000, |w| w.max_devices_per_minute),
                abort: None,
                timeout_minutes: waves.map(|w| (w.device_timeout.as_secs().div_ceil(60)) as i64),
            })
            .await?;
        Ok(request_id)
    }

    async fn halt(&self, release: &Release) -> Result<Applied, AdapterError> {
        self.state().halted = true;
        let mut applied = Applied::default();
        for index in 0..self.wave_count() {
            let (changed, request_id) = self
                .jobs
                .cancel_job(
                    &release.wave(index),
                    "deployctl halt: kill switch or rollback",
                )
                .await?;
            applied.changed |= changed;
            applied.request_ids.extend(request_id);
        }
        let (changed, request_id) = self
            .jobs
            .cancel_job(
                &release.continuous(),
                "deployctl halt: kill switch or rollback",
            )
            .await?;
        applied.changed |= changed;
        applied.request_ids.extend(request_id);
        Ok(applied)
    }

    /// Marks the release rolled back (its rollback group), halts, records
    /// who took the update in that group and sends them the signed
    /// rollback firmware.
    async fn rollback(&self, key: &IdempotencyKey) -> Result<Applied, AdapterError> {
        let release = self.release(Some(key)).ok_or_else(|| bad_key(key))?;
        let rollback = release.rollback();
        if self.jobs.job_counts(&rollback).await?.is_some() {
            return Ok(Applied::default());
        }
        let started = self.started_waves(&release).await?;
        let marked = self.rolled_back(&release).await?;
        if started.is_empty() && !marked {
            // Nothing was dispatched: nothing to undo.
            return Ok(Applied::default());
        }
        // Dispatch stops first (the kill switch's latency): the devices
        // mid-install are read, then every wave job is force-canceled,
        // then who installed is read (SUCCEEDED survives the cancel) and
        // the rollback group made. A crash between the cancel and the
        // group loses only which devices were mid-install; their agents
        // abandon an install whose execution was canceled.
        let (group_arn, group_request) = self
            .jobs
            .ensure_group(&rollback, &format!("deployctl {} rollback", release.key))
            .await?;
        self.state().rolled_back = true;
        let mut took = backend::members_if_any(&*self.jobs, &rollback).await?;
        for index in started.keys() {
            took.extend(
                self.jobs
                    .things_in(&release.wave(*index), &[ExecutionStatus::InProgress], None)
                    .await?,
            );
        }
        if self.continuous {
            took.extend(
                self.jobs
                    .things_in(&release.continuous(), &[ExecutionStatus::InProgress], None)
                    .await?,
            );
        }
        let halted = self.halt(&release).await?;
        if self.continuous {
            took.extend(
                self.jobs
                    .things_in(&release.continuous(), &[ExecutionStatus::Succeeded], None)
                    .await?,
            );
        }
        for index in started.keys() {
            took.extend(
                self.jobs
                    .things_in(&release.wave(*index), &[ExecutionStatus::Succeeded], None)
                    .await?,
            );
        }
        let (_, stable) = self.checked().await?;
        let took: Vec<String> = took.into_iter().collect();
        self.jobs.add_things(&rollback, &took).await?;
        // CreateThingGroup answers alike whether it made the group or found
        // it, so whether this call marked the release comes from the read.
        let mut applied = Applied {
            changed: !marked || halted.changed,
            request_ids: group_request
                .into_iter()
                .chain(halted.request_ids)
                .collect(),
        };
        if !took.is_empty() {
            let waves = self.waves.as_ref();
            let document = crate::document::job_document(&stable.firmware);
            let (_, request_id) = self
                .jobs
                .create_job(&JobSpec {
                    job_id: &rollback,
                    targets: std::slice::from_ref(&group_arn),
                    continuous: false,
                    document: &document,
                    description: format!(
                        "deployctl {} rollback to {}",
                        release.key, stable.firmware.version
                    ),
                    download_role: self.download_role.as_deref(),
                    max_per_minute: waves.map_or(1000, |w| w.max_devices_per_minute),
                    // A rollback is not aborted: every device that took the
                    // update must be offered the way back.
                    abort: None,
                    timeout_minutes: waves
                        .map(|w| (w.device_timeout.as_secs().div_ceil(60)) as i64),
                })
                .await?;
            applied.changed = true;
            applied.request_ids.extend(request_id);
        }
        Ok(applied)
    }
}

fn bad_key(key: &IdempotencyKey) -> AdapterError {
    AdapterError::Rejected {
        message: format!("idempotency key `{key}` is not run/stage/step"),
        request_id: None,
    }
}

impl Target for FleetTarget {
    fn name(&self) -> &str {
        &self.inner.name
    }

    fn kind(&self) -> TargetKind {
        TargetKind::Fleet
    }

    fn observe(&self) -> BoxFuture<'_, Result<Observed, AdapterError>> {
        Box::pin(async move {
            let progress = self.inner.progress().await?;
            let rolled_back = match self.inner.release(None) {
                Some(release) if progress.waves_started > 0 => {
                    self.inner.rolled_back(&release).await?
                }
                _ => false,
            };
            let candidate = (progress.waves_started > 0 && !rolled_back)
                .then(|| self.inner.release.as_ref().map(|r| r.version.clone()))
                .flatten();
            let weight = if progress.fleet_size == 0 || rolled_back {
                0
            } else {
                (u64::from(progress.dispatched.min(progress.fleet_size)) * 100
                    / u64::from(progress.fleet_size)) as u8
            };
            Ok(Observed {
                stable: Some(self.inner.stable.version.clone()),
                candidate,
                weight,
                waves: Some(progress),
            })
        })
    }

    fn preflight(&self) -> BoxFuture<'_, Result<Preflight, AdapterError>> {
        Box::pin(self.inner.preflight())
    }

    fn moves(&self) -> Moves<'_> {
        Moves::waves(self)
    }

    fn attach(&self, run: &str, stage: &str) {
        self.inner.state().attach(Release::new(run, stage));
    }

    fn probe(&self, check: &GateCheck) -> Option<Box<dyn HealthProbe>> {
        match check {
            GateCheck::Fleet {
                min_success_rate,
                max_anomaly_rate,
            } => Some(Box::new(crate::probe::FleetProbe::new(
                self.inner.clone(),
                *min_success_rate,
                *max_anomaly_rate,
            ))),
            _ => None,
        }
    }
}

impl WaveTarget for FleetTarget {
    fn plan_wave(
        &self,
        observed: &Observed,
        action: &WaveAction,
    ) -> Result<Vec<PlannedCall>, AdapterError> {
        let call = |description: String| PlannedCall { description };
        let groups = self.inner.groups.join(", ");
        let progress = observed.waves.clone().unwrap_or_default();
        Ok(match action {
            WaveAction::StartWave { index, .. }
                if progress.waves_started > *index || progress.halted =>
            {
                Vec::new()
            }
            WaveAction::Halt if progress.halted || progress.waves_started == 0 => Vec::new(),
            WaveAction::StartWave { index, devices } => vec![
                call(format!(
                    "iot:CreateThingGroup for wave {} and iot:AddThingToThingGroup × {devices} (devices of {groups} no earlier wave took)",
                    index + 1
                )),
                call(format!(
                    "iot:CreateJob wave {} → {devices} devices, at most {}/min",
                    index + 1,
                    self.inner
                        .waves
                        .as_ref()
                        .map_or(1000, |w| w.max_devices_per_minute)
                )),
            ],
            WaveAction::Halt => vec![call("iot:CancelJob --force for every wave job".into())],
            WaveAction::Rollback { to } => {
                if progress.waves_started == 0 || observed.candidate.is_none() {
                    Vec::new()
                } else {
                    vec![
                        call("iot:CancelJob --force for every wave job".into()),
                        call(format!(
                            "iot:CreateJob rollback → devices that took the update get {}",
                            to.as_deref().unwrap_or(&self.inner.stable.version)
                        )),
                    ]
                }
            }
        })
    }

    fn apply_wave<'a>(
        &'a self,
        action: &'a WaveAction,
        key: &'a IdempotencyKey,
    ) -> BoxFuture<'a, Result<Applied, AdapterError>> {
        Box::pin(async move {
            match action {
                WaveAction::StartWave { index, devices } => {
                    self.inner.start_wave(*index, *devices, key).await
                }
                WaveAction::Halt => {
                    let release = self.inner.release(Some(key)).ok_or_else(|| bad_key(key))?;
                    self.inner.halt(&release).await
                }
                WaveAction::Rollback { .. } => self.inner.rollback(key).await,
            }
        })
    }
}
