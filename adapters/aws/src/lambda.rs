//! Lambda releases by alias routing: the alias's `FunctionVersion` is the
//! stable version, its one `AdditionalVersionWeights` entry the candidate.
//!
//! - `Deploy { version }`: the (already published) version must exist; it
//!   becomes the alias's additional version at weight 0, so `observe` shows
//!   the candidate from the platform alone (also after a restart).
//!   Publishing from S3 or zip code is not done here yet.
//! - `SetWeight { p }`: weight p/100 on the candidate; 100 moves the alias to
//!   the candidate with no extra weights.
//! - `Promote`: the candidate becomes `FunctionVersion`, no extra weights.
//! - `Retire`: nothing to do (Lambda keeps published versions).
//! - `Rollback { to }`: `FunctionVersion` = `to` (or the stable version the
//!   candidate was deployed beside), no extra weights.
//!
//! Concurrency: every apply reads the alias first; if it differs from what
//! this target last read or wrote (its `RevisionId` or its routing),
//! someone else changed it and the apply fails with `Conflict` until the
//! target is observed again. `UpdateAlias` carries the `RevisionId` just
//! read, so AWS refuses a write that lost a race in between
//! (`PreconditionFailedException` → `Conflict`). moto accepts stale
//! revisions, hence the check on our side too.
//!
//! Validation AWS does and moto does not: weights within [0, 1), one
//! additional version only, never the primary version, versions exist.

use std::sync::{Arc, Mutex, PoisonError};

use aws_config::SdkConfig;
use aws_sdk_lambda::Client;
use aws_sdk_lambda::operation::RequestId;
use aws_sdk_lambda::types::AliasRoutingConfiguration;
use deployctl_adapter::{
    Action, AdapterError, Applied, BoxFuture, HealthProbe, IdempotencyKey, Observed, PlannedCall,
    Preflight, Target,
};
use deployctl_plan::model::{GateCheck, TargetKind};
use deployctl_plan::raw;

use crate::error::map_sdk_error;

/// The Lambda client configuration every [`LambdaTarget`] uses, from a
/// loaded [`SdkConfig`] with the shared retry and timeout settings
/// ([`crate::config`]). Tests add their interceptors to it before building.
pub fn lambda_config(sdk: &SdkConfig) -> aws_sdk_lambda::config::Builder {
    aws_sdk_lambda::config::Builder::from(sdk)
        .retry_config(crate::config::retry())
        .timeout_config(crate::config::timeouts())
}

/// A Lambda function's alias as a deploy target.
pub struct LambdaTarget {
    name: String,
    function_name: String,
    alias: String,
    client: Client,
    memory: Arc<Mutex<Memory>>,
}

impl std::fmt::Debug for LambdaTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LambdaTarget")
            .field("name", &self.name)
            .field("function_name", &self.function_name)
            .field("alias", &self.alias)
            .finish_non_exhaustive()
    }
}

/// What this target knows beyond the alias itself.
#[derive(Debug, Default)]
struct Memory {
    /// The alias as last read or written here; an apply finding it
    /// different reports a conflict.
    seen: Option<AliasState>,
    /// The version `Deploy` made the candidate.
    deployed: Option<String>,
    /// The stable version the candidate was deployed beside, for
    /// `Rollback { to: None }` after promotion; cleared by `Retire`.
    previous_stable: Option<String>,
}

/// The alias as read from Lambda.
#[derive(Debug, Clone, PartialEq)]
struct AliasState {
    revision_id: Option<String>,
    version: String,
    weights: Vec<(String, f64)>,
}

/// Where traffic goes, in the engine's terms.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Routing {
    version: String,
    extra: Option<(String, u8)>,
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

fn unsupported(action: &Action) -> AdapterError {
    AdapterError::Unsupported {
        what: format!("{action} on a Lambda alias (waves are for device fleets)"),
    }
}

fn rejected(message: String) -> AdapterError {
    AdapterError::Rejected {
        message,
        request_id: None,
    }
}

impl LambdaTarget {
    /// A target for the plan's Lambda section, with a client from the
    /// standard AWS chain (region from the plan, else the environment;
    /// endpoint from `AWS_ENDPOINT_URL` when set).
    pub async fn from_spec(name: impl Into<String>, spec: &raw::LambdaTarget) -> Self {
        let sdk = crate::config::load(spec.region.as_deref()).await;
        let client = Client::from_conf(lambda_config(&sdk).build());
        LambdaTarget::with_client(name, client, &spec.function_name, &spec.alias)
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
            memory: Arc::default(),
        }
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
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
        let mut weights: Vec<(String, f64)> = out
            .routing_config()
            .and_then(|r| r.additional_version_weights())
            .map(|w| w.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        weights.sort_by(|a, b| a.0.cmp(&b.0));
        let state = AliasState {
            revision_id: out.revision_id().map(str::to_owned),
            version,
            weights,
        };
        Ok((state, out.request_id().map(str::to_owned)))
    }

    /// Confirms a published version exists (`GetFunction` with the version
    /// as qualifier); returns the call's request ID.
    async fn check_version(&self, version: &str) -> Result<Option<String>, AdapterError> {
        if version.is_empty() || version == "$LATEST" {
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

    /// The routing `action` leads to from `current`; `None` when its effect
    /// is already there. Pure.
    fn desired(&self, current: &Routing, action: &Action) -> Result<Option<Routing>, AdapterError> {
        let memory = self.memory();
        match action {
            Action::Deploy { version } => {
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
            Action::SetWeight { percent } => {
                if *percent > 100 {
                    return Err(rejected(format!("weight {percent}% is above 100%")));
                }
                let Some((candidate, weight)) = &current.extra else {
                    // After a switch to 100% the candidate is the alias's version.
                    if *percent == 100 && memory.deployed.as_deref() == Some(&current.version) {
                        return Ok(None);
                    }
                    return Err(rejected(format!(
                        "cannot set weight {percent}%: no candidate version is deployed on the alias"
                    )));
                };
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
            Action::Promote => Ok(current.extra.as_ref().map(|(candidate, _)| Routing {
                version: candidate.clone(),
                extra: None,
            })),
            Action::Retire => Ok(None),
            Action::Rollback { to } => {
                let target = match (to, &current.extra, &memory.previous_stable) {
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
            Action::StartWave { .. } | Action::Halt => Err(unsupported(action)),
        }
    }

    fn remember(&self, action: &Action, before: &Routing) {
        let mut memory = self.memory();
        match action {
            Action::Deploy { version } if before.version != *version => {
                memory.deployed = Some(version.clone());
                memory.previous_stable = Some(before.version.clone());
            }
            Action::Retire => memory.previous_stable = None,
            Action::Rollback { .. } => {
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

    async fn apply_inner(&self, action: &Action) -> Result<Applied, AdapterError> {
        if matches!(action, Action::StartWave { .. } | Action::Halt) {
            return Err(unsupported(action));
        }
        let mut request_ids = Vec::new();
        let (fresh, id) = self.read_alias().await?;
        request_ids.extend(id);
        let seen = self.memory().seen.clone();
        if let Some(seen) = seen
            && seen != fresh
        {
            return Err(AdapterError::Conflict {
                message: format!(
                    "alias {}:{} changed since it was last read (revision {:?} → {:?}, version {} → {}, weights {:?} → {:?}); observe it again",
                    self.function_name,
                    self.alias,
                    seen.revision_id,
                    fresh.revision_id,
                    seen.version,
                    fresh.version,
                    seen.weights,
                    fresh.weights
                ),
                request_id: request_ids.first().cloned(),
            });
        }
        let current = fresh.routing()?;
        let Some(next) = self.desired(&current, action)? else {
            self.remember(action, &current);
            self.memory().seen = Some(fresh);
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
        let mut weights: Vec<(String, f64)> = out
            .routing_config()
            .and_then(|r| r.additional_version_weights())
            .map(|w| w.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        weights.sort_by(|a, b| a.0.cmp(&b.0));
        let written = AliasState {
            revision_id: out.revision_id().map(str::to_owned),
            version: out
                .function_version()
                .map(str::to_owned)
                .unwrap_or_else(|| next.version.clone()),
            weights,
        };
        self.remember(action, &current);
        self.memory().seen = Some(written);
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
            let (state, _) = self.read_alias().await?;
            let routing = state.routing()?;
            self.memory().seen = Some(state);
            let (candidate, weight) = match routing.extra {
                Some((candidate, weight)) => (Some(candidate), weight),
                None => (None, 0),
            };
            Ok(Observed {
                stable: Some(routing.version),
                candidate,
                weight,
                waves: None,
            })
        })
    }

    fn plan(&self, observed: &Observed, action: &Action) -> Result<Vec<PlannedCall>, AdapterError> {
        if matches!(action, Action::StartWave { .. } | Action::Halt) {
            return Err(unsupported(action));
        }
        let Some(stable) = &observed.stable else {
            return Err(AdapterError::NotFound {
                what: format!("the version of alias {}:{}", self.function_name, self.alias),
            });
        };
        let current = Routing {
            version: stable.clone(),
            extra: observed
                .candidate
                .as_ref()
                .map(|candidate| (candidate.clone(), observed.weight)),
        };
        if let Action::SetWeight { percent } = action
            && current.extra.is_none()
            && self.memory().deployed.as_deref() != Some(stable.as_str())
        {
            // A dry run of a whole release plans every step from today's
            // alias, before anything is deployed: name the call anyway.
            return Ok(vec![PlannedCall {
                description: format!(
                    "lambda:UpdateAlias {}:{} → {stable} + the deployed version at {percent}%",
                    self.function_name, self.alias
                ),
            }]);
        }
        Ok(match self.desired(&current, action)? {
            Some(next) => self.describe(&current, &next),
            None => Vec::new(),
        })
    }

    fn apply<'a>(
        &'a self,
        action: &'a Action,
        _key: &'a IdempotencyKey,
    ) -> BoxFuture<'a, Result<Applied, AdapterError>> {
        // UpdateAlias takes no client token: idempotence comes from
        // comparing the alias with the action's effect.
        Box::pin(self.apply_inner(action))
    }

    fn preflight(&self) -> BoxFuture<'_, Result<Preflight, AdapterError>> {
        Box::pin(async move {
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
                stable_version: stable,
                rollback_ready,
                detail,
            })
        })
    }

    fn probe(&self, _check: &GateCheck) -> Option<Box<dyn HealthProbe>> {
        // CloudWatch gates are not target-bound; they come with their own probe.
        None
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
