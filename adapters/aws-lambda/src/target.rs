//! Lambda releases by alias routing: the alias's `FunctionVersion` is the
//! stable version, its one `AdditionalVersionWeights` entry the candidate.
//!
//! - `Deploy { version }`: `version` is the release's label when the
//!   target was given the plan's artifact ([`LambdaTarget::with_release`]):
//!   its code is published first when the plan gives S3 or zip code
//!   (`publish.rs`: once per release, across retries and restarts), else
//!   the label is a published version number. The version becomes the
//!   alias's additional version at weight 0, so `observe` shows the
//!   candidate from the platform alone (also after a restart).
//! - `SetWeight { p }`: weight p/100 on the candidate; 100 moves the alias to
//!   the candidate with no extra weights.
//! - `Promote`: the candidate becomes `FunctionVersion`, no extra weights.
//! - `Retire`: nothing to do (Lambda keeps published versions).
//! - `Rollback { to }`: `FunctionVersion` = `to` (or the stable version the
//!   candidate was deployed beside), no extra weights.
//!
//! Versions are named as the engine names them: the release's label for
//! the release's published version (and the pinned stable's label for its
//! version), the version number otherwise. `observe` and `preflight`
//! report labels, so a re-run of a plan already live finds the alias on
//! the release and a resumed run finds its candidate.
//!
//! Another writer (`deployctl_adapter::writer`, keyed by the alias's
//! routing): every apply reads the alias first. Once this target has
//! moved the alias, it remembers the routing it left (and the routing of
//! a write whose answer was lost, which may have landed). An alias
//! routed any other way was changed by someone else during the run, and
//! deployctl does not fight over traffic: the action fails as `Rejected`
//! (permanent), so the stage fails and the run rolls back; the rollback
//! refuses as well unless the alias is already where it would put it, and
//! the run ends "rollback incomplete", locks held, for a human to decide.
//! A human's `deployctl rollback` runs in a new process that has moved
//! nothing yet, so it is the explicit override. `UpdateAlias` carries the
//! `RevisionId` just read, so AWS refuses a write that lost a race in
//! between (`PreconditionFailedException` → `Conflict`, re-observed and
//! retried into the check above); moto accepts stale revisions, hence the
//! check on our side.
//!
//! Validation AWS does and moto does not: weights within [0, 1), one
//! additional version only, never the primary version, versions exist.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use aws_config::SdkConfig;
use aws_sdk_lambda::Client;
use aws_sdk_lambda::operation::RequestId;
use aws_sdk_lambda::types::AliasRoutingConfiguration;
use deployctl_adapter::construct::PlanRelease;
use deployctl_adapter::writer::{AnotherWriter, Changed, LastWrite};
use deployctl_adapter::{
    AdapterError, Applied, BoxFuture, Capabilities, HealthProbe, IdempotencyKey, Moves, Observed,
    PlannedCall, Preflight, Target, TrafficAction, TrafficTarget,
};
use deployctl_plan::model::{Artifact, ArtifactSource, GateCheck, TargetKind};
use deployctl_plan::raw;

use deployctl_aws::map_sdk_error;

use crate::error::ConstructError;
use crate::publish::{LambdaRelease, Publisher, is_version_number};

/// The Lambda client configuration every [`LambdaTarget`] uses, from a
/// loaded [`SdkConfig`] with the shared retry and timeout settings
/// ([`deployctl_aws::config`]). Tests add their interceptors to it before building.
pub fn lambda_config(sdk: &SdkConfig) -> aws_sdk_lambda::config::Builder {
    aws_sdk_lambda::config::Builder::from(sdk)
        .retry_config(deployctl_aws::config::retry())
        .timeout_config(deployctl_aws::config::timeouts())
}

/// One Lambda client per region for the whole process: a plan with many
/// Lambda targets loads the credential chain once, resolves credentials
/// once and shares one connection pool, instead of paying each per target
/// (a rollback of 20 aliases spent most of its time there).
async fn shared_client(region: Option<&str>) -> Client {
    static CLIENTS: Mutex<BTreeMap<Option<String>, Client>> = Mutex::new(BTreeMap::new());
    let key = region.map(str::to_owned);
    let cached = CLIENTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
        .cloned();
    if let Some(client) = cached {
        return client;
    }
    let sdk = deployctl_aws::config::load(region).await;
    let client = Client::from_conf(lambda_config(&sdk).build());
    CLIENTS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(key)
        .or_insert(client)
        .clone()
}

/// A Lambda function's alias as a deploy target.
pub struct LambdaTarget {
    name: String,
    function_name: String,
    alias: String,
    client: Client,
    /// The release this target deploys, when it was given the plan's artifact.
    release: Option<LambdaRelease>,
    /// The plan's pinned stable version: its label and version number.
    pinned: Option<(String, String)>,
    memory: Arc<Mutex<Memory>>,
}

impl std::fmt::Debug for LambdaTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaTarget")
            .field("name", &self.name)
            .field("function_name", &self.function_name)
            .field("alias", &self.alias)
            .field("release", &self.release)
            .finish_non_exhaustive()
    }
}

/// What this target knows beyond the alias itself.
#[derive(Debug, Default)]
struct Memory {
    /// The routing this target last wrote, or confirmed while applying
    /// (nothing until it has moved the alias), and a write whose answer
    /// never came. Any other routing is another writer's. `observe` adopts
    /// nothing: only an apply makes a routing ours.
    written: LastWrite<Routing>,
    /// The version `Deploy` made the candidate.
    deployed: Option<String>,
    /// The stable version the candidate was deployed beside, for
    /// `Rollback { to: None }` after promotion; cleared by `Retire`.
    previous_stable: Option<String>,
    /// The release's published version, once found or published.
    release_version: Option<String>,
    /// Lambda was searched for the release's version (found or not), so
    /// `observe` does not list versions on every call.
    searched: bool,
}

/// The alias as read from Lambda.
#[derive(Debug, Clone, PartialEq)]
struct AliasState {
    /// The alias's ARN as Lambda answers it: account and region resolved,
    /// whether the plan named the function by name or by ARN.
    arn: Option<String>,
    revision_id: Option<String>,
    version: String,
    weights: Vec<(String, f64)>,
}

/// Where traffic goes, in version numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Routing {
    version: String,
    extra: Option<(String, u8)>,
}

impl std::fmt::Display for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.extra {
            Some((candidate, weight)) => {
                write!(f, "version {} + {candidate} at {weight}%", self.version)
            }
            None => write!(f, "version {} (no additional versions)", self.version),
        }
    }
}

impl AliasState {
    fn routing(&self) -> Result<Routing, AdapterError> {
        let extra = match self.weights.as_slice() {
            [] => None,
            [(version, weight)] => Some((version.clone(), percent(*weight)?)),
            many => {
                return Err(AdapterError::Rejected {
                    message: format!(
                        "the alias routes to {} additional versions; deployctl manages at most one",
                        many.len()
                    ),
                    request_id: None,
                });
            }
        };
        Ok(Routing {
            version: self.version.clone(),
            extra,
        })
    }
}

fn percent(weight: f64) -> Result<u8, AdapterError> {
    if !weight.is_finite() || !(0.0..=1.0).contains(&weight) {
        return Err(AdapterError::Rejected {
            message: format!("the alias has an additional version weight of {weight}"),
            request_id: None,
        });
    }
    Ok((weight * 100.0).round() as u8)
}

/// What AWS accepts for an additional version's weight (moto takes anything).
fn validate_weight(weight: f64) -> Result<f64, AdapterError> {
    if weight.is_finite() && (0.0..1.0).contains(&weight) {
        Ok(weight)
    } else {
        Err(AdapterError::Rejected {
            message: format!("additional version weight {weight} is outside [0, 1)"),
            request_id: None,
        })
    }
}

fn rejected(message: String) -> AdapterError {
    AdapterError::Rejected {
        message,
        request_id: None,
    }
}

fn sorted_weights(routing: Option<&AliasRoutingConfiguration>) -> Vec<(String, f64)> {
    let mut weights: Vec<(String, f64)> = routing
        .and_then(|r| r.additional_version_weights())
        .map(|w| w.iter().map(|(k, v)| (k.clone(), *v)).collect())
        .unwrap_or_default();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    weights
}

impl LambdaTarget {
    /// A target for the plan's Lambda section, with a client from the
    /// standard AWS chain (region from the plan, else the environment;
    /// endpoint from `AWS_ENDPOINT_URL` when set), releasing the plan's
    /// artifact for it ([`LambdaTarget::with_release`]) and knowing its
    /// pinned stable version ([`LambdaTarget::with_pinned_stable`]).
    /// Targets in one region share one client (see [`shared_client`]).
    /// Refused, before any call, when the release cannot work.
    pub async fn from_spec(
        name: impl Into<String>,
        spec: &raw::LambdaTarget,
        release: &PlanRelease<'_>,
    ) -> Result<Self, ConstructError> {
        let client = shared_client(spec.region.as_deref()).await;
        let mut target = LambdaTarget::with_client(name, client, &spec.function_name, &spec.alias);
        if let Some(artifact) = release.artifact {
            target = target.with_release(artifact, release.plan_dir)?;
        }
        if let Some(pinned) = release.pinned_stable {
            target = target.with_pinned_stable(pinned)?;
        }
        Ok(target)
    }

    /// A target over an existing client (tests, shared clients).
    pub fn with_client(
        name: impl Into<String>,
        client: Client,
        function_name: impl Into<String>,
        alias: impl Into<String>,
    ) -> Self {
        LambdaTarget {
            name: name.into(),
            function_name: function_name.into(),
            alias: alias.into(),
            client,
            release: None,
            pinned: None,
            memory: Arc::default(),
        }
    }

    /// Deploys the plan's `artifact`: `Deploy { version }` then names it by
    /// its label, and its S3 or zip code is published on first use. A
    /// relative `zipFile` is found from `plan_dir`, the plan file's
    /// directory (read when publishing, not now: a rollback never needs
    /// it). Refused when the artifact is not Lambda code, or its label is
    /// a bare number other than its published version.
    pub fn with_release(
        mut self,
        artifact: &Artifact,
        plan_dir: &Path,
    ) -> Result<Self, ConstructError> {
        let release = LambdaRelease::from_artifact(artifact, plan_dir)?;
        if let Some(version) = release.published_version() {
            self.memory().release_version = Some(version.to_owned());
        }
        self.release = Some(release);
        Ok(self)
    }

    /// The plan's pinned stable version (`rollback.stable`), which must be
    /// a published version: rollback never publishes code.
    pub fn with_pinned_stable(mut self, artifact: &Artifact) -> Result<Self, ConstructError> {
        let ArtifactSource::LambdaPublished(version) = &artifact.source else {
            return Err(ConstructError::PinnedNotPublished {
                version: artifact.version.clone(),
            });
        };
        // Validated like a release, for the same label/number ambiguity.
        LambdaRelease::published(&artifact.version, version)?;
        self.pinned = Some((artifact.version.clone(), version.clone()));
        Ok(self)
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publisher(&self) -> Publisher<'_> {
        Publisher {
            client: &self.client,
            function: &self.function_name,
        }
    }

    /// Finds the release's published version once (no publishing).
    async fn search_release(&self, request_ids: &mut Vec<String>) -> Result<(), AdapterError> {
        let Some(release) = &self.release else {
            return Ok(());
        };
        if self.memory().searched || self.memory().release_version.is_some() {
            return Ok(());
        }
        let found = self.publisher().find(release, request_ids).await?;
        let mut memory = self.memory();
        memory.searched = true;
        if memory.release_version.is_none() {
            memory.release_version = found;
        }
        Ok(())
    }

    /// The version number the engine's `version` names, as far as known
    /// without IO (labels of unpublished releases are not).
    fn known_number(&self, version: &str) -> Option<String> {
        if let Some(release) = &self.release
            && version == release.label()
        {
            return self.memory().release_version.clone();
        }
        if let Some((label, number)) = &self.pinned
            && version == label
        {
            return Some(number.clone());
        }
        is_version_number(version).then(|| version.to_owned())
    }

    /// The version number `version` names; the release's code is published
    /// when `publish` (a `Deploy`) and it is not yet.
    async fn number(
        &self,
        version: &str,
        publish: bool,
        request_ids: &mut Vec<String>,
    ) -> Result<String, AdapterError> {
        if let Some(number) = self.known_number(version) {
            return Ok(number);
        }
        match &self.release {
            Some(release) if version == release.label() => {
                let number = if publish {
                    self.publisher().publish(release, request_ids).await?
                } else {
                    self.publisher()
                        .find(release, request_ids)
                        .await?
                        .ok_or_else(|| AdapterError::NotFound {
                            what: format!(
                                "a published version of release {version} on {}",
                                self.function_name
                            ),
                        })?
                };
                let mut memory = self.memory();
                memory.release_version = Some(number.clone());
                memory.searched = true;
                Ok(number)
            }
            _ => Err(rejected(format!(
                "`{version}` is neither a published version number of {} nor a release this target was given{}",
                self.function_name,
                self.release
                    .as_ref()
                    .map(|r| format!(" (it releases `{}`)", r.label()))
                    .unwrap_or_default()
            ))),
        }
    }

    /// How the engine names version `number`: a known label, else the number.
    fn label(&self, number: &str) -> String {
        if let Some(release) = &self.release
            && self.memory().release_version.as_deref() == Some(number)
        {
            return release.label().to_owned();
        }
        if let Some((label, pinned)) = &self.pinned
            && pinned == number
        {
            return label.clone();
        }
        number.to_owned()
    }

    /// The version `Deploy` made (or the plan's release makes) the candidate.
    fn deployed(&self) -> Option<String> {
        let memory = self.memory();
        memory
            .deployed
            .clone()
            .or_else(|| memory.release_version.clone())
    }

    async fn read_alias(&self) -> Result<(AliasState, Option<String>), AdapterError> {
        let out = self
            .client
            .get_alias()
            .function_name(&self.function_name)
            .name(&self.alias)
            .send()
            .await
            .map_err(|e| {
                map_sdk_error(
                    e,
                    &format!("lambda:GetAlias {}:{}", self.function_name, self.alias),
                )
            })?;
        let version = out.function_version().map(str::to_owned).ok_or_else(|| {
            rejected(format!(
                "alias {}:{} has no function version",
                self.function_name, self.alias
            ))
        })?;
        let state = AliasState {
            arn: out.alias_arn().map(str::to_owned),
            revision_id: out.revision_id().map(str::to_owned),
            version,
            weights: sorted_weights(out.routing_config()),
        };
        Ok((state, out.request_id().map(str::to_owned)))
    }

    /// Confirms a published version exists (`GetFunction` with the version
    /// as qualifier); returns the call's request ID.
    async fn check_version(&self, version: &str) -> Result<Option<String>, AdapterError> {
        if !is_version_number(version) {
            return Err(rejected(format!(
                "{version:?} is not a published version of {}",
                self.function_name
            )));
        }
        let out = self
            .client
            .get_function()
            .function_name(&self.function_name)
            .qualifier(version)
            .send()
            .await
            .map_err(|e| {
                map_sdk_error(
                    e,
                    &format!("lambda:GetFunction {}:{version}", self.function_name),
                )
            })?;
        Ok(out.request_id().map(str::to_owned))
    }

    /// The routing `action` (in version numbers) leads to from `current`;
    /// `None` when its effect is already there. Pure.
    fn desired(
        &self,
        current: &Routing,
        action: &TrafficAction,
    ) -> Result<Option<Routing>, AdapterError> {
        let deployed = self.deployed();
        let previous_stable = self.memory().previous_stable.clone();
        // A candidate on the alias that is not this release's was put
        // there by someone else: never shift traffic to it.
        let ours = |candidate: &String| -> Result<(), AdapterError> {
            match &deployed {
                Some(deployed) if deployed != candidate => Err(rejected(format!(
                    "alias {}:{} routes its additional weight to version {candidate}, not to this release's version {deployed}; \
                     deployctl does not move traffic to a version it did not deploy",
                    self.function_name, self.alias
                ))),
                _ => Ok(()),
            }
        };
        match action {
            TrafficAction::SetHeaderRoute { .. } => Err(AdapterError::no_header_routes(format!(
                "Lambda alias {}:{}",
                self.function_name, self.alias
            ))),
            TrafficAction::Deploy { version } => {
                if current.version == *version {
                    return Ok(None);
                }
                match &current.extra {
                    Some((candidate, _)) if candidate == version => Ok(None),
                    Some((other, weight)) if *weight > 0 => Err(rejected(format!(
                        "cannot deploy {version}: version {other} is already taking {weight}% of the alias's traffic"
                    ))),
                    _ => Ok(Some(Routing {
                        version: current.version.clone(),
                        extra: Some((version.clone(), 0)),
                    })),
                }
            }
            TrafficAction::SetWeight { percent } => {
                if *percent > 100 {
                    return Err(rejected(format!("weight {percent}% is above 100%")));
                }
                let Some((candidate, weight)) = &current.extra else {
                    // After a switch to 100% the candidate is the alias's version.
                    if *percent == 100 && deployed.as_deref() == Some(&current.version) {
                        return Ok(None);
                    }
                    return Err(rejected(format!(
                        "cannot set weight {percent}%: no candidate version is deployed on the alias"
                    )));
                };
                ours(candidate)?;
                if *percent == 100 {
                    return Ok(Some(Routing {
                        version: candidate.clone(),
                        extra: None,
                    }));
                }
                if weight == percent {
                    return Ok(None);
                }
                Ok(Some(Routing {
                    version: current.version.clone(),
                    extra: Some((candidate.clone(), *percent)),
                }))
            }
            TrafficAction::Promote => match &current.extra {
                Some((candidate, _)) => {
                    ours(candidate)?;
                    Ok(Some(Routing {
                        version: candidate.clone(),
                        extra: None,
                    }))
                }
                None => Ok(None),
            },
            TrafficAction::Retire => Ok(None),
            TrafficAction::Rollback { to } => {
                let target = match (to, &current.extra, &previous_stable) {
                    (Some(to), _, _) => to.clone(),
                    (None, Some(_), _) => current.version.clone(),
                    (None, None, Some(previous)) => previous.clone(),
                    (None, None, None) => current.version.clone(),
                };
                if current.version == target && current.extra.is_none() {
                    return Ok(None);
                }
                Ok(Some(Routing {
                    version: target,
                    extra: None,
                }))
            }
        }
    }

    /// Fails when the alias is not routed as this target left it: another
    /// writer moved traffic during the run (module docs).
    fn check_unchanged(
        &self,
        current: &Routing,
        action: &TrafficAction,
    ) -> Result<(), AdapterError> {
        let checked = self.memory().written.check(current);
        let Err(Changed { left }) = checked else {
            return Ok(());
        };
        if matches!(action, TrafficAction::Rollback { .. })
            && self.desired(current, action)?.is_none()
        {
            // Already where the rollback puts it: nothing to fight over.
            return Ok(());
        }
        Err(AnotherWriter {
            resource: format!("alias {}:{}", self.function_name, self.alias),
            left: left.to_string(),
            now: current.to_string(),
            rollback: "put the alias back on the stable version",
        }
        .refusal())
    }

    fn remember(&self, action: &TrafficAction, before: &Routing) {
        let mut memory = self.memory();
        match action {
            TrafficAction::Deploy { version } if before.version != *version => {
                memory.deployed = Some(version.clone());
                memory.previous_stable = Some(before.version.clone());
            }
            TrafficAction::Retire => memory.previous_stable = None,
            TrafficAction::Rollback { .. } => {
                memory.deployed = None;
                memory.previous_stable = None;
            }
            _ => {}
        }
    }

    fn describe(&self, from: &Routing, to: &Routing) -> Vec<PlannedCall> {
        let mut calls = Vec::new();
        let known =
            |v: &String| *v == from.version || from.extra.as_ref().is_some_and(|(c, _)| c == v);
        for version in std::iter::once(&to.version).chain(to.extra.as_ref().map(|(v, _)| v)) {
            if !known(version) {
                calls.push(PlannedCall {
                    description: format!("lambda:GetFunction {}:{version}", self.function_name),
                });
            }
        }
        let routing = match &to.extra {
            Some((candidate, weight)) => format!(" + {candidate} at {weight}%"),
            None => " (no additional versions)".into(),
        };
        calls.push(PlannedCall {
            description: format!(
                "lambda:UpdateAlias {}:{} → {}{routing}",
                self.function_name, self.alias, to.version
            ),
        });
        calls
    }

    /// The engine's action with its version labels turned into version
    /// numbers (a `Deploy` publishes the release's code when needed).
    async fn in_numbers(
        &self,
        action: &TrafficAction,
        request_ids: &mut Vec<String>,
    ) -> Result<TrafficAction, AdapterError> {
        Ok(match action {
            TrafficAction::Deploy { version } => TrafficAction::Deploy {
                version: self.number(version, true, request_ids).await?,
            },
            TrafficAction::Rollback { to: Some(to) } => TrafficAction::Rollback {
                to: Some(self.number(to, false, request_ids).await?),
            },
            TrafficAction::SetWeight { .. } | TrafficAction::Promote => {
                // Which version is ours, after a restart too.
                self.search_release(request_ids).await?;
                action.clone()
            }
            other => other.clone(),
        })
    }

    async fn preflight_inner(&self) -> Result<Preflight, AdapterError> {
        {
            self.search_release(&mut Vec::new()).await?;
            let (state, _) = self.read_alias().await?;
            let stable = state.version.clone();
            let (rollback_ready, detail) = match self.check_version(&stable).await {
                Ok(_) => (
                    true,
                    format!(
                        "alias {}:{} is on version {stable}, which exists",
                        self.function_name, self.alias
                    ),
                ),
                Err(AdapterError::NotFound { what }) => (
                    false,
                    format!(
                        "alias {}:{} is on version {stable}, which was not found: {what}",
                        self.function_name, self.alias
                    ),
                ),
                Err(other) => return Err(other),
            };
            Ok(Preflight {
                verified: Vec::new(),
                stable_version: self.label(&stable),
                rollback_ready,
                detail,
                identity: state
                    .arn
                    .clone()
                    .unwrap_or_else(|| format!("lambda:{}:{}", self.function_name, self.alias)),
                // Lambda weighs any version below 100 % (the alias's
                // AdditionalVersionWeights); 100 % is promotion.
                capabilities: Capabilities::weights_up_to(100),
            })
        }
    }

    async fn apply_inner(&self, action: &TrafficAction) -> Result<Applied, AdapterError> {
        let mut request_ids = Vec::new();
        let action = &self.in_numbers(action, &mut request_ids).await?;
        let (fresh, id) = self.read_alias().await?;
        request_ids.extend(id);
        let current = fresh.routing()?;
        self.check_unchanged(&current, action)
            .map_err(|error| error.with_request_id(request_ids.first()))?;
        let Some(next) = self.desired(&current, action)? else {
            self.remember(action, &current);
            self.memory().written.wrote(current);
            return Ok(Applied {
                changed: false,
                request_ids,
            });
        };
        if let Some((candidate, _)) = &next.extra
            && *candidate == next.version
        {
            return Err(rejected(format!(
                "version {candidate} cannot be both the alias's version and its additional version"
            )));
        }
        // Versions the alias does not route to yet must exist (moto does not check).
        let known = |v: &String| {
            *v == current.version || current.extra.as_ref().is_some_and(|(c, _)| c == v)
        };
        for version in std::iter::once(&next.version).chain(next.extra.as_ref().map(|(v, _)| v)) {
            if !known(version) {
                request_ids.extend(self.check_version(version).await?);
            }
        }
        let weights = match &next.extra {
            Some((candidate, percent)) => {
                let weight = validate_weight(f64::from(*percent) / 100.0)?;
                [(candidate.clone(), weight)].into_iter().collect()
            }
            None => std::collections::HashMap::new(),
        };
        // From here until the answer, the write may land unseen.
        self.memory().written.sending(next.clone());
        let out = self
            .client
            .update_alias()
            .function_name(&self.function_name)
            .name(&self.alias)
            .function_version(&next.version)
            .routing_config(
                AliasRoutingConfiguration::builder()
                    .set_additional_version_weights(Some(weights))
                    .build(),
            )
            .set_revision_id(fresh.revision_id.clone())
            .send()
            .await
            .map_err(|e| {
                map_sdk_error(
                    e,
                    &format!("lambda:UpdateAlias {}:{}", self.function_name, self.alias),
                )
            })?;
        request_ids.extend(out.request_id().map(str::to_owned));
        let written = AliasState {
            arn: out.alias_arn().map(str::to_owned),
            revision_id: out.revision_id().map(str::to_owned),
            version: out
                .function_version()
                .map(str::to_owned)
                .unwrap_or_else(|| next.version.clone()),
            weights: sorted_weights(out.routing_config()),
        };
        self.remember(action, &current);
        let mut memory = self.memory();
        memory.written.wrote(written.routing().unwrap_or(next));
        Ok(Applied {
            changed: true,
            request_ids,
        })
    }
}

impl Target for LambdaTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> TargetKind {
        TargetKind::Lambda
    }

    fn observe(&self) -> BoxFuture<'_, Result<Observed, AdapterError>> {
        Box::pin(async move {
            self.search_release(&mut Vec::new()).await?;
            let (state, _) = self.read_alias().await?;
            let routing = state.routing()?;
            let (candidate, weight) = match routing.extra {
                Some((candidate, weight)) => (Some(self.label(&candidate)), weight),
                None => (None, 0),
            };
            Ok(Observed {
                stable: Some(self.label(&routing.version)),
                candidate,
                weight,
                waves: None,
            })
        })
    }

    fn moves(&self) -> Moves<'_> {
        Moves::traffic(self)
    }

    fn preflight(&self) -> BoxFuture<'_, Result<Preflight, AdapterError>> {
        Box::pin(self.preflight_inner())
    }

    fn probe(&self, _check: &GateCheck) -> Option<Box<dyn HealthProbe>> {
        // CloudWatch gates are not target-bound; they come with their own probe.
        None
    }
}

impl TrafficTarget for LambdaTarget {
    fn plan_traffic(
        &self,
        observed: &Observed,
        action: &TrafficAction,
    ) -> Result<Vec<PlannedCall>, AdapterError> {
        let Some(stable) = &observed.stable else {
            return Err(AdapterError::NotFound {
                what: format!("the version of alias {}:{}", self.function_name, self.alias),
            });
        };
        let number = |version: &String| self.known_number(version).unwrap_or(version.clone());
        let current = Routing {
            version: number(stable),
            extra: observed
                .candidate
                .as_ref()
                .map(|candidate| (number(candidate), observed.weight)),
        };
        let mut calls = Vec::new();
        let action = match action {
            TrafficAction::Deploy { version } => match self.known_number(version) {
                Some(number) => TrafficAction::Deploy { version: number },
                None => {
                    // Published when applied; its number is not known yet.
                    calls.extend(
                        [
                            "ListVersionsByFunction",
                            "UpdateFunctionCode",
                            "PublishVersion",
                        ]
                        .map(|call| PlannedCall {
                            description: format!(
                                "lambda:{call} {} (release {version})",
                                self.function_name
                            ),
                        }),
                    );
                    calls.push(PlannedCall {
                        description: format!(
                            "lambda:UpdateAlias {}:{} → {} + the published {version} at 0%",
                            self.function_name, self.alias, current.version
                        ),
                    });
                    return Ok(calls);
                }
            },
            TrafficAction::Rollback { to: Some(to) } => TrafficAction::Rollback {
                to: Some(number(to)),
            },
            other => other.clone(),
        };
        if let TrafficAction::SetWeight { percent } = &action
            && current.extra.is_none()
            && self.deployed().as_deref() != Some(current.version.as_str())
        {
            // A dry run of a whole release plans every step from today's
            // alias, before anything is deployed: name the call anyway.
            return Ok(vec![PlannedCall {
                description: format!(
                    "lambda:UpdateAlias {}:{} → {} + the deployed version at {percent}%",
                    self.function_name, self.alias, current.version
                ),
            }]);
        }
        Ok(match self.desired(&current, &action)? {
            Some(next) => self.describe(&current, &next),
            None => Vec::new(),
        })
    }

    fn apply_traffic<'a>(
        &'a self,
        action: &'a TrafficAction,
        _key: &'a IdempotencyKey,
    ) -> BoxFuture<'a, Result<Applied, AdapterError>> {
        // UpdateAlias takes no client token: idempotence comes from
        // comparing the alias with the action's effect, and publishing
        // from finding the release's version before publishing it.
        Box::pin(self.apply_inner(action))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_aws_would_refuse_are_refused_here() {
        for weight in [1.0, 1.5, -0.1, f64::NAN, f64::INFINITY] {
            assert!(validate_weight(weight).is_err(), "{weight}");
        }
        for weight in [0.0, 0.1, 0.99] {
            assert_eq!(validate_weight(weight), Ok(weight));
        }
    }

    #[test]
    fn observed_weights_are_rounded_percentages() {
        assert_eq!(percent(0.1), Ok(10));
        assert_eq!(percent(0.505), Ok(51));
        assert!(percent(1.5).is_err());
    }
}
