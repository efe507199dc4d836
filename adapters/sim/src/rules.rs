//! What each action means to a simulated target: which kinds support it,
//! when its effect is already present, what it changes, and how a dry run
//! describes it. Pure functions over [`SimState`], shared by `plan` and
//! `apply` so the two cannot disagree.

use deployctl_adapter::{Action, AdapterError};
use deployctl_plan::model::{StrategyKind, TargetKind};

use crate::fleet;
use crate::state::SimState;

/// What a change needs beyond the state and the action.
pub(crate) struct Context<'a> {
    /// The version waves dispatch when nothing was deployed first.
    pub release: Option<&'a str>,
    pub seed: u64,
    pub device_failure_percent: f64,
}

/// Refuses, before any (simulated) platform call, what the kind cannot do
/// or what its platform would reject whatever the state.
pub(crate) fn check(kind: TargetKind, action: &Action) -> Result<(), AdapterError> {
    let capabilities = kind.capabilities();
    let has = |strategy| capabilities.strategies.contains(&strategy);
    let supported = match action {
        Action::Deploy { .. } | Action::SetWeight { .. } | Action::Promote | Action::Retire => {
            has(StrategyKind::Canary) || has(StrategyKind::BlueGreen)
        }
        Action::StartWave { .. } | Action::Halt => has(StrategyKind::Waves),
        Action::SetHeaderRoute { .. } => matches!(kind, TargetKind::Kubernetes | TargetKind::Sim),
        Action::Rollback { .. } => true,
    };
    if !supported {
        return Err(AdapterError::Unsupported {
            what: format!("{action} on a {} target", kind.name()),
        });
    }
    if let Action::SetWeight { percent } = action
        && *percent > capabilities.max_canary_weight.min(100)
    {
        return Err(AdapterError::Rejected {
            message: format!(
                "weight {percent}% is above the {}% a {} target allows before promotion",
                capabilities.max_canary_weight.min(100),
                kind.name()
            ),
            request_id: None,
        });
    }
    Ok(())
}

/// Whether the action's effect is already there. `previous_known` is false
/// when the state was rebuilt from an `Observed`, which cannot tell whether
/// the pre-promotion version still runs: `Retire` is then never "present".
pub(crate) fn is_present(state: &SimState, action: &Action, previous_known: bool) -> bool {
    match action {
        Action::Deploy { version } => match &state.candidate {
            Some(candidate) => candidate == version,
            None => state.stable == *version,
        },
        Action::SetWeight { percent } => {
            state.weight == *percent && (*percent == 0 || state.candidate.is_some())
        }
        // Nothing left to promote: either it was promoted, or nothing was
        // deployed and there is no effect to make.
        Action::SetHeaderRoute { route } => {
            state.header_routes.get(&route.name) == Some(&route.matches)
                || (route.matches.is_empty() && !state.header_routes.contains_key(&route.name))
        }
        Action::Promote => state.candidate.is_none(),
        Action::Retire => previous_known && state.previous.is_none(),
        Action::StartWave { index, .. } => *index < state.fleet.waves_started,
        Action::Halt => state.halted,
        Action::Rollback { to } => {
            state.candidate.is_none()
                && state.weight == 0
                && to.as_ref().is_none_or(|to| state.stable == *to)
        }
    }
}

/// Makes the change, or says why the platform refuses it in this state.
/// Call only when [`is_present`] is false.
pub(crate) fn change(
    state: &mut SimState,
    action: &Action,
    cx: &Context<'_>,
) -> Result<(), String> {
    match action {
        Action::Deploy { version } => {
            if let Some(other) = &state.candidate {
                return Err(format!(
                    "{other} is already deployed as the candidate; roll it back before deploying {version}"
                ));
            }
            // A new release: the kill switch and device progress of an
            // earlier one do not carry over.
            state.candidate = Some(version.clone());
            state.weight = 0;
            state.halted = false;
            state.fleet.reset();
        }
        Action::SetWeight { percent } => {
            if state.candidate.is_none() {
                return Err(
                    "no candidate is deployed: deploy a version before moving traffic".into(),
                );
            }
            if state.halted && *percent > state.weight {
                return Err(
                    "halted: the kill switch was used, no more traffic moves to the candidate"
                        .into(),
                );
            }
            state.weight = *percent;
        }
        Action::SetHeaderRoute { route } => {
            if state.candidate.is_none() {
                return Err(
                    "no candidate is deployed: deploy a version before routing requests to it"
                        .into(),
                );
            }
            if route.matches.is_empty() {
                state.header_routes.remove(&route.name);
            } else {
                state
                    .header_routes
                    .insert(route.name.clone(), route.matches.clone());
            }
        }
        Action::Promote => {
            if state.halted {
                return Err(
                    "halted: the kill switch was used, the candidate cannot be promoted".into(),
                );
            }
            if let Some(candidate) = state.candidate.take() {
                state.previous = Some(std::mem::replace(&mut state.stable, candidate.clone()));
                state.promoted = Some(candidate);
                state.weight = 0;
            }
            state.header_routes.clear();
        }
        Action::Retire => state.previous = None,
        Action::StartWave { index, devices } => {
            if state.halted {
                return Err("halted: the kill switch was used, no wave is dispatched".into());
            }
            if *index > state.fleet.waves_started {
                return Err(format!(
                    "wave {} cannot start before wave {}",
                    index + 1,
                    state.fleet.waves_started + 1
                ));
            }
            if state.candidate.is_none() {
                let release = cx
                    .release
                    .ok_or("no release version to roll out: none was deployed or configured")?;
                state.candidate = Some(release.to_string());
            }
            fleet::dispatch(
                &mut state.fleet,
                *devices,
                cx.seed,
                cx.device_failure_percent,
            );
            state.fleet.waves_started += 1;
        }
        Action::Halt => state.halted = true,
        Action::Rollback { to } => {
            state.candidate = None;
            state.weight = 0;
            state.header_routes.clear();
            // Updated devices go back to the stable image. The kill switch
            // stays: a halted rollout never resumes by itself.
            state.fleet.reset();
            if let Some(to) = to
                && state.stable != *to
            {
                if state.previous.as_ref() == Some(to) {
                    state.previous = None;
                }
                state.stable = to.clone();
            }
        }
    }
    Ok(())
}

/// The one simulated call applying `action` makes, for dry runs.
pub(crate) fn describe(name: &str, state: &SimState, action: &Action) -> String {
    let candidate = state.candidate.as_deref().unwrap_or("the candidate");
    let stable = &state.stable;
    match action {
        Action::Deploy { version } => {
            format!("sim:Deploy {name}: start {version} beside {stable}, with no traffic")
        }
        Action::SetWeight { percent } => format!(
            "sim:SetWeight {name}: {}% → {percent}% of traffic to {candidate}",
            state.weight
        ),
        Action::Promote => {
            format!("sim:Promote {name}: {candidate} takes all traffic, replacing {stable}")
        }
        Action::Retire => {
            format!("sim:Retire {name}: stop the version {stable} replaced, if it still runs")
        }
        Action::StartWave { index, devices } => format!(
            "sim:StartWave {name}: wave {} sends {candidate} to {devices} more devices",
            index + 1
        ),
        Action::Halt => format!("sim:Halt {name}: dispatch nothing more"),
        Action::SetHeaderRoute { route } => format!("sim:SetHeaderRoute {name}: {route}"),
        Action::Rollback { to } => format!(
            "sim:Rollback {name}: all traffic and devices back to {}, candidate removed",
            to.as_deref().unwrap_or(stable)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SimConfig;

    const CX: Context<'static> = Context {
        release: Some("v2"),
        seed: 1,
        device_failure_percent: 0.0,
    };

    fn state() -> SimState {
        SimState::initial(&SimConfig::new("t", TargetKind::Sim, "v1").with_fleet_size(10))
    }

    fn run(state: &mut SimState, action: &Action) -> Result<bool, String> {
        if is_present(state, action, true) {
            return Ok(false);
        }
        change(state, action, &CX)?;
        Ok(true)
    }

    #[test]
    fn a_second_candidate_is_refused_and_traffic_needs_one() {
        let mut s = state();
        assert!(run(&mut s, &Action::SetWeight { percent: 10 }).is_err());
        assert_eq!(
            run(
                &mut s,
                &Action::Deploy {
                    version: "v2".into()
                }
            ),
            Ok(true)
        );
        assert!(
            run(
                &mut s,
                &Action::Deploy {
                    version: "v3".into()
                }
            )
            .is_err()
        );
        assert_eq!(run(&mut s, &Action::SetWeight { percent: 10 }), Ok(true));
    }

    #[test]
    fn promotion_keeps_the_previous_version_until_retired_and_rollback_can_return_to_it() {
        let mut s = state();
        for action in [
            Action::Deploy {
                version: "v2".into(),
            },
            Action::SetWeight { percent: 100 },
            Action::Promote,
        ] {
            assert_eq!(run(&mut s, &action), Ok(true));
        }
        assert_eq!(
            (s.stable.as_str(), s.previous.as_deref()),
            ("v2", Some("v1"))
        );
        let back = Action::Rollback {
            to: Some("v1".into()),
        };
        assert!(!is_present(&s, &back, true));
        assert!(is_present(&s, &Action::Rollback { to: None }, true));
        assert_eq!(run(&mut s, &back), Ok(true));
        assert_eq!((s.stable.as_str(), s.previous.as_deref()), ("v1", None));
    }

    #[test]
    fn waves_start_in_order_and_halt_stops_them() {
        let mut s = state();
        let wave = |index| Action::StartWave { index, devices: 4 };
        assert!(run(&mut s, &wave(1)).is_err());
        assert_eq!(run(&mut s, &wave(0)), Ok(true));
        assert_eq!(s.candidate.as_deref(), Some("v2"));
        assert_eq!(run(&mut s, &wave(0)), Ok(false));
        assert_eq!(run(&mut s, &Action::Halt), Ok(true));
        assert!(run(&mut s, &wave(1)).is_err());
        assert_eq!(s.fleet.dispatched, 4);
        assert_eq!(run(&mut s, &Action::Rollback { to: None }), Ok(true));
        assert_eq!(
            (s.candidate.as_ref(), s.fleet.dispatched, s.halted),
            (None, 0, true)
        );
    }

    #[test]
    fn kinds_refuse_what_they_cannot_do() {
        let wave = Action::StartWave {
            index: 0,
            devices: 1,
        };
        assert!(matches!(
            check(TargetKind::Lambda, &wave),
            Err(AdapterError::Unsupported { .. })
        ));
        assert!(matches!(
            check(TargetKind::Fleet, &Action::Promote),
            Err(AdapterError::Unsupported { .. })
        ));
        assert!(check(TargetKind::Fleet, &Action::Rollback { to: None }).is_ok());
        assert!(matches!(
            check(TargetKind::CloudFront, &Action::SetWeight { percent: 20 }),
            Err(AdapterError::Rejected { .. })
        ));
        assert!(check(TargetKind::Sim, &wave).is_ok());
    }
}
