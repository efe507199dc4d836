//! The IAM permissions a fleet release needs (S6), beside the calls in
//! `jobs.rs` and `firmware.rs`. Jobs and the wave groups are named
//! `deployctl-*`, so writes are scoped to those names; the fleet's own
//! groups and things are only read (a fleet-index query's dynamic group
//! is deployctl's, `deployctl-query-DIGEST`).

use deployctl_adapter::iam::{Scope, Statement};
use deployctl_plan::model::{Artifact, ArtifactSource, FleetSelector, FleetSpec, SignatureSource};

/// The statements for one fleet target releasing `artifact`, rolling
/// back to `stable`.
pub fn statements(spec: &FleetSpec, artifacts: &[&Artifact], scope: &Scope) -> Vec<Statement> {
    let region = spec.region.as_deref().unwrap_or(&scope.default_region);
    let iot = |resource: &str| scope.arn("iot", region, resource);
    let groups = groups_for_jobs(spec, &iot);
    let mut statements = vec![
        Statement::new(
            "fleet thing groups",
            ["iot:DescribeThingGroup", "iot:ListThingsInThingGroup"],
            groups.clone(),
        ),
        Statement::new(
            "fleet devices",
            ["iot:DescribeThing", "iot:AddThingToThingGroup"],
            [iot("thing/*")],
        ),
        Statement::new(
            "wave thing groups",
            [
                "iot:CreateThingGroup",
                "iot:DescribeThingGroup",
                "iot:ListThingsInThingGroup",
                "iot:AddThingToThingGroup",
            ],
            [iot("thinggroup/deployctl-*")],
        ),
        Statement::new(
            "wave jobs",
            [
                "iot:CreateJob",
                "iot:DescribeJob",
                "iot:CancelJob",
                "iot:ListJobExecutionsForJob",
                "iot:DescribeJobExecution",
            ],
            [
                iot("job/deployctl-*"),
                iot("thinggroup/deployctl-*"),
                iot("thing/*"),
            ],
        ),
    ];
    if let FleetSelector::Query(_) = &spec.devices {
        // The query's dynamic group, made at preflight (its name is the
        // query's digest, under `deployctl-query-`).
        statements.push(Statement::new(
            "fleet-index query group",
            ["iot:CreateDynamicThingGroup"],
            [iot("thinggroup/deployctl-query-*"), iot("index/AWS_Things")],
        ));
    }
    if spec.continuous {
        // The continuous job is aimed at the fleet's own groups.
        statements.push(Statement::new("continuous job", ["iot:CreateJob"], groups));
    }
    if let Some(role) = &spec.download_role {
        // CreateJob with a presignedUrlConfig hands AWS IoT the role.
        statements.push(Statement::new(
            "firmware download role",
            ["iam:PassRole"],
            [role.clone()],
        ));
    }
    let mut objects = Vec::new();
    for artifact in artifacts {
        if let ArtifactSource::Firmware {
            location,
            manifest,
            signature,
            ..
        } = &artifact.source
        {
            for url in [location, manifest] {
                if let Some(rest) = url.strip_prefix("s3://") {
                    objects.push(format!("arn:{}:s3:::{rest}", scope.partition));
                }
            }
            if let SignatureSource::KmsKey(key) = &signature.source {
                statements.extend(deployctl_aws_firmware::iam::verify_statements(key, scope));
            }
        }
    }
    if !objects.is_empty() {
        statements.push(Statement::new(
            "firmware objects",
            ["s3:GetObject", "s3:GetObjectVersion"],
            objects,
        ));
    }
    statements
}

fn groups_for_jobs(spec: &FleetSpec, iot: &dyn Fn(&str) -> String) -> Vec<String> {
    match &spec.devices {
        FleetSelector::ThingGroups(groups) => groups
            .iter()
            .map(|g| iot(&format!("thinggroup/{g}")))
            .collect(),
        FleetSelector::Query(query) => vec![iot(&format!(
            "thinggroup/{}",
            crate::names::query_group(query)
        ))],
    }
}

/// `deployctl fleet history GROUP --device THING`: reading one device's
/// job executions and the jobs behind them.
pub fn device_history_statements(region: &str, scope: &Scope) -> Vec<Statement> {
    vec![Statement::new(
        "fleet history",
        [
            "iot:ListJobExecutionsForThing",
            "iot:DescribeJob",
            "iot:GetJobDocument",
        ],
        [
            scope.arn("iot", region, "thing/*"),
            scope.arn("iot", region, "job/deployctl-*"),
        ],
    )]
}
