//! The IAM permissions the Lambda target's calls need (S6): the calls in
//! `lambda.rs`, on the one function the plan names.

use deployctl_adapter::iam::{Scope, Statement};
use deployctl_plan::model::ArtifactSource;
use deployctl_plan::raw;

/// Statements for releasing `spec`'s alias with `artifact`: reading and
/// updating the alias, checking versions, and for code the plan publishes,
/// updating the code and publishing a version (plus reading the code
/// object when it comes from S3: Lambda fetches it as the caller).
pub fn lambda_statements(
    spec: &raw::LambdaTarget,
    artifact: Option<&ArtifactSource>,
    scope: &Scope,
) -> Vec<Statement> {
    let region = scope.region(spec.region.as_deref());
    let function = scope.arn(
        "lambda",
        region,
        &format!("function:{}", spec.function_name),
    );
    // Qualified ARNs (`function:NAME:VERSION`, `function:NAME:ALIAS`) are
    // separate resources to IAM.
    let qualified = format!("{function}:*");
    let purpose = format!("lambda {} alias {}", spec.function_name, spec.alias);
    let mut actions = vec![
        "lambda:GetAlias",
        "lambda:UpdateAlias",
        "lambda:GetFunction",
    ];
    let mut statements = Vec::new();
    match artifact {
        Some(ArtifactSource::LambdaZip(_)) => {
            actions.extend(PUBLISH);
        }
        Some(ArtifactSource::LambdaS3(location)) => {
            actions.extend(PUBLISH);
            let object = format!(
                "arn:{}:s3:::{}/{}",
                scope.partition, location.bucket, location.key
            );
            statements.push(Statement::new(
                format!("lambda {} code", spec.function_name),
                ["s3:GetObject", "s3:GetObjectVersion"],
                [object],
            ));
        }
        _ => {}
    }
    statements.insert(0, Statement::new(purpose, actions, [function, qualified]));
    statements
}

/// Publishing a new version from code the plan names.
const PUBLISH: [&str; 4] = [
    "lambda:UpdateFunctionCode",
    "lambda:PublishVersion",
    "lambda:ListVersionsByFunction",
    "lambda:GetFunctionConfiguration",
];
