//! Every target kind this binary knows, one entry each: how its adapter is
//! built from the validated plan, the IAM statements its calls need,
//! whether it calls AWS and in which region. [`lookup`] holds the one
//! `match` on `TargetSpec` in the binary; `wiring` (adapters, the AWS
//! identity lookup) and `iam_policy` ask the entry instead of matching.
//!
//! Adding a kind is one entry here (ARCHITECTURE.md, "Adding a target
//! kind"): the compiler points at [`lookup`] when the plan crate grows a
//! `TargetSpec` variant, and nothing else in the binary needs to change.
//!
//! What an entry's adapter cannot do with a plan, found without a call
//! (`refusal`: a fleet signature this build cannot verify), is said by
//! `validate` as a warning and makes `apply` refuse the plan whole before
//! anything starts.

use std::path::Path;
use std::sync::Arc;

use deployctl_adapter::Target;
use deployctl_adapter::construct::PlanRelease;
use deployctl_adapter::iam::{Scope, Statement};
use deployctl_plan::model::{self, TargetSpec};
use deployctl_plan::raw;
use deployctl_sim::{SimConfig, SimWorld};
use tokio::runtime::Runtime;

/// Why no adapter could be built for a target. The texts are what `apply`
/// prints after `error: ` (exit 2, nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("target `{target}`: {source}")]
    Lambda {
        target: String,
        #[source]
        source: deployctl_aws_lambda::ConstructError,
    },
    #[error("target `{target}`: {source}")]
    CloudFront {
        target: String,
        #[source]
        source: deployctl_aws_cloudfront::ConstructError,
    },
    #[error("target `{target}`: {source}")]
    Ecs {
        target: String,
        #[source]
        source: deployctl_aws_ecs::ConstructError,
    },
    #[error("target `{target}`: {source}")]
    Kubernetes {
        target: String,
        #[source]
        source: deployctl_kubernetes::ConstructError,
    },
    #[error("target `{target}`: {source}")]
    Fleet {
        target: String,
        #[source]
        source: deployctl_aws_iot::ConstructError,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// What building adapters for one plan shares: where the plan's files are,
/// the sandbox's simulated targets, and one runtime for every AWS
/// adapter's async constructor, started only when the plan has one.
pub struct Builder<'a> {
    plan_dir: &'a Path,
    world: &'a SimWorld,
    runtime: Option<Runtime>,
}

impl<'a> Builder<'a> {
    pub fn new(plan_dir: &'a Path, world: &'a SimWorld) -> Self {
        Builder {
            plan_dir,
            world,
            runtime: None,
        }
    }

    /// Loading the AWS chain reads files and the environment only, so a
    /// current-thread runtime does.
    fn runtime(&mut self) -> Result<&Runtime, BuildError> {
        let runtime = match self.runtime.take() {
            Some(runtime) => runtime,
            None => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(BuildError::Runtime)?,
        };
        Ok(self.runtime.insert(runtime))
    }

    fn release<'t>(&self, target: &'t model::Target) -> PlanRelease<'t>
    where
        'a: 't,
    {
        PlanRelease::of(target, self.plan_dir)
    }
}

/// One target kind, for one target of the plan.
pub trait Entry {
    /// The adapter a real run uses.
    fn build(&self, builder: &mut Builder<'_>) -> Result<Arc<dyn Target>, BuildError>;
    /// The IAM statements the adapter's calls need (`deployctl iam-policy`).
    fn iam_statements(&self, scope: &Scope) -> Vec<Statement>;
    /// Whether running it calls AWS (the caller ARN is then resolved for
    /// the audit trail before anything starts).
    fn touches_aws(&self) -> bool;
    /// The AWS region the plan names for it, if any.
    fn region(&self) -> Option<&str>;
    /// The Kubernetes RBAC rules the adapter's calls need (`deployctl rbac`).
    fn rbac_rules(&self) -> Vec<deployctl_kubernetes::rbac::Rule> {
        Vec::new()
    }
    /// The version the plan itself says the target runs, when its section
    /// says so (a simulator's `stableVersion`); real targets are read.
    fn declared_stable(&self) -> Option<String> {
        None
    }
    /// What this build cannot do with the plan's target, known without
    /// a call (`validate` warns, `apply` refuses the whole plan with it).
    fn refusal(&self, _plan_dir: &Path) -> Option<String> {
        None
    }
}

/// The entry for `target`'s kind: the binary's one `match` on `TargetSpec`.
pub fn lookup(target: &model::Target) -> Box<dyn Entry + '_> {
    match &target.spec {
        TargetSpec::Sim(spec) => Box::new(Sim { target, spec }),
        TargetSpec::Lambda(spec) => Box::new(Lambda { target, spec }),
        TargetSpec::CloudFront(spec) => Box::new(CloudFront { target, spec }),
        TargetSpec::Ecs(spec) => Box::new(Ecs { target, spec }),
        TargetSpec::Kubernetes(spec) => Box::new(Kubernetes { target, spec }),
        TargetSpec::Fleet(spec) => Box::new(Fleet { target, spec }),
    }
}

/// A simulated target, persisted in the sandbox's world directory so it
/// behaves like a real one across processes.
struct Sim<'t> {
    target: &'t model::Target,
    spec: &'t model::SimSpec,
}

impl Entry for Sim<'_> {
    fn build(&self, builder: &mut Builder<'_>) -> Result<Arc<dyn Target>, BuildError> {
        Ok(Arc::new(
            builder
                .world
                .target(SimConfig::for_plan_target(self.target)),
        ))
    }

    fn iam_statements(&self, _scope: &Scope) -> Vec<Statement> {
        Vec::new()
    }

    fn touches_aws(&self) -> bool {
        false
    }

    fn region(&self) -> Option<&str> {
        None
    }

    fn declared_stable(&self) -> Option<String> {
        Some(self.spec.stable_version.clone())
    }
}

/// A Lambda alias, releasing the plan's artifact (published from S3 or a
/// zip beside the plan when the stage deploys) and knowing the pinned
/// stable version's label.
struct Lambda<'t> {
    target: &'t model::Target,
    spec: &'t raw::LambdaTarget,
}

impl Entry for Lambda<'_> {
    fn build(&self, builder: &mut Builder<'_>) -> Result<Arc<dyn Target>, BuildError> {
        let release = builder.release(self.target);
        let adapter = builder
            .runtime()?
            .block_on(deployctl_aws_lambda::LambdaTarget::from_spec(
                &self.target.name,
                self.spec,
                &release,
            ))
            .map_err(|source| BuildError::Lambda {
                target: self.target.name.clone(),
                source,
            })?;
        Ok(Arc::new(adapter))
    }

    fn iam_statements(&self, scope: &Scope) -> Vec<Statement> {
        deployctl_aws_lambda::iam::lambda_statements(
            self.spec,
            self.target.artifact.as_ref().map(|a| &a.source),
            scope,
        )
    }

    fn touches_aws(&self) -> bool {
        true
    }

    fn region(&self) -> Option<&str> {
        self.spec.region.as_deref()
    }
}

/// A CloudFront distribution released through a staging copy, with every
/// gate on it guarded by the staging traffic check, and propagation waits
/// reported on stderr (they take minutes on AWS). A `configFile` artifact
/// is read when it is built: a bad file refuses the run before anything
/// moves.
struct CloudFront<'t> {
    target: &'t model::Target,
    spec: &'t raw::CloudFrontTarget,
}

impl Entry for CloudFront<'_> {
    fn build(&self, builder: &mut Builder<'_>) -> Result<Arc<dyn Target>, BuildError> {
        let release = builder.release(self.target);
        let adapter = builder
            .runtime()?
            .block_on(deployctl_aws_cloudfront::CloudFrontTarget::from_spec(
                &self.target.name,
                self.spec,
                &release,
            ))
            .map_err(|source| BuildError::CloudFront {
                target: self.target.name.clone(),
                source,
            })?;
        Ok(Arc::new(
            adapter.on_progress(Arc::new(|progress| eprintln!("{progress}"))),
        ))
    }

    fn iam_statements(&self, scope: &Scope) -> Vec<Statement> {
        deployctl_aws_cloudfront::iam::statements(self.spec, scope)
    }

    fn touches_aws(&self) -> bool {
        true
    }

    /// CloudFront is global: the plan names no region for it.
    fn region(&self) -> Option<&str> {
        None
    }
}

/// An ECS service, by task sets or by rolling update as its deployment
/// controller says.
struct Ecs<'t> {
    target: &'t model::Target,
    spec: &'t raw::EcsTarget,
}

impl Entry for Ecs<'_> {
    fn build(&self, builder: &mut Builder<'_>) -> Result<Arc<dyn Target>, BuildError> {
        let release = builder.release(self.target);
        let adapter = builder
            .runtime()?
            .block_on(deployctl_aws_ecs::EcsTarget::from_spec(
                &self.target.name,
                self.spec,
                &release,
            ))
            .map_err(|source| BuildError::Ecs {
                target: self.target.name.clone(),
                source,
            })?;
        Ok(Arc::new(adapter))
    }

    fn iam_statements(&self, scope: &Scope) -> Vec<Statement> {
        deployctl_aws_ecs::iam::statements(self.spec, scope)
    }

    fn touches_aws(&self) -> bool {
        true
    }

    fn region(&self) -> Option<&str> {
        self.spec.region.as_deref()
    }
}

/// A Kubernetes Deployment behind a Service, connected as kubectl would
/// be. Its AWS side is an EKS cluster named by `eks:` (DescribeCluster,
/// and the token signed with this process's credentials); through a
/// kubeconfig, EKS credentials come from its exec plugin instead.
struct Kubernetes<'t> {
    target: &'t model::Target,
    spec: &'t raw::KubernetesTarget,
}

impl Entry for Kubernetes<'_> {
    fn build(&self, builder: &mut Builder<'_>) -> Result<Arc<dyn Target>, BuildError> {
        let release = builder.release(self.target);
        let adapter = builder
            .runtime()?
            .block_on(deployctl_kubernetes::KubernetesTarget::from_spec(
                &self.target.name,
                self.spec,
                &release,
            ))
            .map_err(|source| BuildError::Kubernetes {
                target: self.target.name.clone(),
                source,
            })?;
        Ok(Arc::new(adapter))
    }

    fn iam_statements(&self, scope: &Scope) -> Vec<Statement> {
        deployctl_kubernetes::iam::statements(self.spec, scope)
    }

    fn rbac_rules(&self) -> Vec<deployctl_kubernetes::rbac::Rule> {
        deployctl_kubernetes::rbac::rules(self.spec, self.target.strategy)
    }

    fn touches_aws(&self) -> bool {
        self.spec.eks.is_some()
    }

    fn region(&self) -> Option<&str> {
        self.spec.eks.as_ref().and_then(|eks| eks.region.as_deref())
    }
}

/// An IoT device fleet, released in waves as AWS IoT Jobs jobs.
struct Fleet<'t> {
    target: &'t model::Target,
    spec: &'t model::FleetSpec,
}

impl Entry for Fleet<'_> {
    fn build(&self, builder: &mut Builder<'_>) -> Result<Arc<dyn Target>, BuildError> {
        let release = builder.release(self.target);
        let adapter = builder
            .runtime()?
            .block_on(deployctl_aws_iot::FleetTarget::from_spec(
                &self.target.name,
                self.spec,
                &release,
            ))
            .map_err(|source| BuildError::Fleet {
                target: self.target.name.clone(),
                source,
            })?;
        Ok(Arc::new(adapter))
    }

    fn refusal(&self, plan_dir: &Path) -> Option<String> {
        deployctl_aws_iot::FleetTarget::check_plan(
            self.spec,
            &PlanRelease::of(self.target, plan_dir),
        )
        .err()
        .map(|error| error.to_string())
    }

    fn iam_statements(&self, scope: &Scope) -> Vec<Statement> {
        let artifacts: Vec<&model::Artifact> = [&self.target.artifact, &self.target.pinned_stable]
            .into_iter()
            .flatten()
            .collect();
        deployctl_aws_iot::iam::statements(self.spec, &artifacts, scope)
    }

    fn touches_aws(&self) -> bool {
        true
    }

    fn region(&self) -> Option<&str> {
        self.spec.region.as_deref()
    }
}
