//! The IAM permissions the CloudFront target's calls need (S6). The
//! staging distribution and the continuous deployment policy are created
//! during the first release, so their IDs cannot be named in advance:
//! calls that may touch them are allowed on the account's distributions
//! and policies; calls only ever made on the primary name it exactly.

use deployctl_adapter::iam::{Scope, Statement};
use deployctl_plan::raw;

pub fn statements(spec: &raw::CloudFrontTarget, scope: &Scope) -> Vec<Statement> {
    // CloudFront is global: its ARNs have no region.
    let arn = |resource: &str| scope.arn("cloudfront", "", resource);
    let purpose = format!("cloudfront {}", spec.distribution_id);
    vec![
        Statement::new(
            format!("{purpose} primary"),
            [
                // CopyDistribution also needs CreateDistribution (it creates
                // the staging copy).
                "cloudfront:CopyDistribution",
                "cloudfront:UpdateDistributionWithStagingConfig",
            ],
            [arn(&format!("distribution/{}", spec.distribution_id))],
        ),
        Statement::new(
            format!("{purpose} primary and staging"),
            [
                "cloudfront:CreateDistribution",
                "cloudfront:GetDistribution",
                "cloudfront:UpdateDistribution",
                "cloudfront:UpdateDistributionWithStagingConfig",
                "cloudfront:ListTagsForResource",
                "cloudfront:TagResource",
                "cloudfront:UntagResource",
            ],
            [arn("distribution/*")],
        ),
        Statement::new(
            format!("{purpose} continuous deployment policy"),
            [
                "cloudfront:CreateContinuousDeploymentPolicy",
                "cloudfront:GetContinuousDeploymentPolicy",
                "cloudfront:UpdateContinuousDeploymentPolicy",
                "cloudfront:ListContinuousDeploymentPolicies",
            ],
            [arn("continuous-deployment-policy/*")],
        ),
        // The staging traffic guard reads the staging distribution's request
        // count; CloudWatch metric reads have no resource-level permissions.
        Statement::new(
            "cloudwatch metric reads",
            ["cloudwatch:GetMetricStatistics"],
            ["*"],
        ),
    ]
}
