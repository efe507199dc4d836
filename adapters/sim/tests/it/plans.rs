//! Simulators set up from validated plans: the sandbox and rehearsals.

use deployctl_adapter::Target;
use deployctl_plan::model::TargetKind;
use deployctl_sim::{SimConfig, SimTarget};

fn plan(name: &str, yaml: &[u8]) -> deployctl_plan::ValidatedPlan {
    match deployctl_plan::load(name, yaml) {
        Ok(loaded) => loaded.plan,
        Err(rejected) => panic!("{}", rejected.render(false)),
    }
}

#[tokio::test]
async fn sim_targets_start_where_the_quickstart_says() {
    let plan = plan(
        "quickstart.yaml",
        include_bytes!("../../../../examples/quickstart.yaml"),
    );
    let api = SimConfig::for_plan_target(&plan.targets["api"]);
    assert_eq!(
        (api.kind, api.stable_version.as_str()),
        (TargetKind::Sim, "1.4.2")
    );
    assert_eq!(api.release_version.as_deref(), Some("1.5.0"));
    assert_eq!(api.latency.as_millis(), 20);
    let observed = SimTarget::in_memory(api).observe().await.unwrap();
    assert_eq!(observed.stable.as_deref(), Some("1.4.2"));
}

#[test]
fn rehearsal_stand_ins_keep_the_real_kind() {
    let plan = plan(
        "fleet-ota-waves.yaml",
        include_bytes!("../../../../examples/fleet-ota-waves.yaml"),
    );
    for target in plan.targets.values() {
        let config = SimConfig::for_plan_target(target);
        assert_eq!(config.kind, target.kind());
        assert_eq!(
            config.release_version,
            target.artifact.as_ref().map(|a| a.version.clone())
        );
        assert_eq!(SimTarget::in_memory(config).kind(), target.kind());
    }
}
