//! What a stage asks of its target, checked against what preflight says
//! this target instance supports, before anything moves (R8, S3).
//!
//! A target kind's capability table (in the plan crate) is checked at
//! validation; this is the instance's: an ECS service on the rolling
//! controller takes no canary weights although ECS services in general
//! do, and a CloudFront distribution takes at most 15 %. Pure: the
//! program the stage compiles to, and the capabilities, decide.

use deployctl_adapter::{Action, Capabilities, Weights};
use deployctl_plan::model::{Stage, Target};

use crate::program::{self, Op};

/// Why a stage does not fit its target instance.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Misfit {
    #[error("target `{target}` cannot take a {percent}% canary weight: {why}")]
    NoPartialWeights {
        target: String,
        percent: u8,
        why: String,
    },
    #[error(
        "target `{target}` takes at most {max}% before promotion; the stage asks for {percent}%"
    )]
    AboveMaximum {
        target: String,
        max: u8,
        percent: u8,
    },
    #[error("target `{target}` is not updated in waves; use a canary or blueGreen stage")]
    NoWaves { target: String },
    #[error(
        "target `{target}` cannot route requests by header (step `setHeaderRoute` `{route}`); only a Kubernetes target with an HTTPRoute can"
    )]
    NoHeaderRoutes { target: String, route: String },
}

/// `Err` when `stage` asks `target` for something its instance cannot do.
pub fn check(stage: &Stage, target: &Target, capabilities: &Capabilities) -> Result<(), Misfit> {
    for op in program::compile(stage, target) {
        match op {
            Op::Apply(Action::SetWeight { percent }) if percent > 0 && percent < 100 => {
                match &capabilities.weights {
                    Weights::Unsupported { why } => {
                        return Err(Misfit::NoPartialWeights {
                            target: target.name.clone(),
                            percent,
                            why: why.clone(),
                        });
                    }
                    Weights::Exact { max } | Weights::Approximate { max, .. } if percent > *max => {
                        return Err(Misfit::AboveMaximum {
                            target: target.name.clone(),
                            max: *max,
                            percent,
                        });
                    }
                    Weights::Exact { .. } | Weights::Approximate { .. } => {}
                }
            }
            Op::Apply(Action::SetHeaderRoute { route }) if !capabilities.header_routes => {
                return Err(Misfit::NoHeaderRoutes {
                    target: target.name.clone(),
                    route: route.name,
                });
            }
            Op::StartWave { .. } if !capabilities.waves => {
                return Err(Misfit::NoWaves {
                    target: target.name.clone(),
                });
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(stage: &str) -> deployctl_plan::ValidatedPlan {
        let source = format!(
            "apiVersion: deployctl.io/v1\nkind: Plan\nmetadata: {{name: t, environment: test}}\ntargets: {{api: {{sim: {{}}}}}}\nartifacts: {{api: {{version: v2}}}}\nstages:\n  - name: api\n    target: api\n    {stage}\n"
        );
        deployctl_plan::load("test.yaml", source.as_bytes())
            .unwrap_or_else(|rejected| panic!("{}", rejected.render(false)))
            .plan
    }

    fn verdict(stage: &str, capabilities: &Capabilities) -> Result<(), String> {
        let plan = plan(stage);
        let stage = &plan.stages[0];
        check(stage, plan.target_of(stage), capabilities).map_err(|misfit| misfit.to_string())
    }

    const CANARY: &str = "canary: {steps: [{setWeight: 10}, {setWeight: 50}]}";
    const BLUE_GREEN: &str = "blueGreen: {}";

    #[test]
    fn a_switch_only_target_refuses_canary_weights_but_takes_blue_green() {
        let rolling =
            Capabilities::switch_only("the ECS rolling controller moves all tasks at once");
        let error = verdict(CANARY, &rolling).unwrap_err();
        assert!(error.contains("cannot take a 10% canary weight"), "{error}");
        assert!(error.contains("ECS rolling controller"), "{error}");
        assert_eq!(verdict(BLUE_GREEN, &rolling), Ok(()));
    }

    #[test]
    fn weights_above_the_instance_maximum_are_refused() {
        let error = verdict(CANARY, &Capabilities::weights_up_to(15)).unwrap_err();
        assert!(error.contains("at most 15%"), "{error}");
        assert!(error.contains("asks for 50%"), "{error}");
        assert_eq!(verdict(CANARY, &Capabilities::weights_up_to(100)), Ok(()));
    }

    #[test]
    fn approximate_weights_are_taken() {
        let replicas = Capabilities {
            weights: Weights::Approximate {
                max: 100,
                how: "replica ratios".into(),
            },
            waves: false,
            header_routes: false,
        };
        assert_eq!(verdict(CANARY, &replicas), Ok(()));
    }

    #[test]
    fn a_header_route_needs_a_target_instance_that_routes_by_header() {
        let stage = "canary: {steps: [{setHeaderRoute: {name: beta, match: [{headerName: X-Canary, headerValue: {exact: '1'}}]}}, {setWeight: 10}]}";
        let plain = Capabilities::weights_up_to(100);
        let error = verdict(stage, &plain).unwrap_err();
        assert!(error.contains("cannot route requests by header"), "{error}");
        assert!(error.contains("`beta`"), "{error}");
        let routed = Capabilities {
            header_routes: true,
            ..plain
        };
        assert_eq!(verdict(stage, &routed), Ok(()));
    }

    #[test]
    fn waves_need_a_target_that_takes_them() {
        let waves = "waves: {steps: [{percent: 100}], successThreshold: 90, abort: {failureThreshold: 10, minDevices: 1}, deviceTimeout: 1m, maxDevicesPerMinute: 100}";
        let error = verdict(waves, &Capabilities::weights_up_to(100)).unwrap_err();
        assert!(error.contains("not updated in waves"), "{error}");
        assert_eq!(verdict(waves, &Capabilities::waves()), Ok(()));
    }
}
