//! [`FleetJobs`]: the thing-group and job operations a fleet target is
//! built on, so the same target code drives AWS IoT Jobs ([`IotJobs`],
//! the product) and the in-process fleet the million-device benchmark
//! runs (`simulated.rs`, feature `simulated`).
//!
//! The operations are the IoT Jobs control plane's, named as it names
//! them, and keep its semantics: a missing group or job is `NotFound` or
//! `None`, never an empty answer; creating what exists is not an error;
//! a job's counts are the ones `DescribeJob` reports.

use std::collections::{BTreeSet, HashMap};

use deployctl_adapter::{AdapterError, BoxFuture};

/// What a wave job is created with.
#[derive(Debug, Clone)]
pub struct JobSpec<'a> {
    pub job_id: &'a str,
    /// Thing group ARNs (at most 100).
    pub targets: &'a [String],
    /// CONTINUOUS: things added to the groups later get an execution too.
    pub continuous: bool,
    pub document: &'a str,
    pub description: String,
    pub download_role: Option<&'a str>,
    pub max_per_minute: u32,
    /// Abort: percent of executed devices failing, once this many executed.
    pub abort: Option<(f64, u32)>,
    pub timeout_minutes: Option<i64>,
}

/// A job's state and outcome counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobCounts {
    /// `IN_PROGRESS`, `CANCELED`, `COMPLETED`, … as IoT Jobs spells it.
    pub status: String,
    pub succeeded: u32,
    /// Failed, rejected, canceled and removed: executions that did not
    /// install and will not.
    pub failed: u32,
    pub timed_out: u32,
    pub queued: u32,
    pub in_progress: u32,
}

/// The execution states a fleet target asks for devices in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExecutionStatus {
    InProgress,
    Succeeded,
}

/// A call's outcome and, when the platform made a change, its request ID.
pub type Changed = (bool, Option<String>);

/// Thing groups, jobs and job executions, as a fleet target uses them.
pub trait FleetJobs: Send + Sync {
    /// A thing group's ARN; `NotFound` when there is no such group.
    fn group_arn<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<String, AdapterError>>;

    /// The things directly in `group`, every page; `NotFound` when there
    /// is no such group.
    fn members<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<Vec<String>, AdapterError>>;

    /// A thing's type: its hardware model.
    fn thing_type<'a>(
        &'a self,
        thing: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, AdapterError>>;

    /// Whether thing group `name` exists.
    fn group_exists<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, AdapterError>>;

    /// Creates the static group `name` (idempotent): its ARN, and the
    /// request ID when this call created it.
    fn ensure_group<'a>(
        &'a self,
        name: &'a str,
        description: &'a str,
    ) -> BoxFuture<'a, Result<(String, Option<String>), AdapterError>>;

    /// Makes (or finds, made with the same query) the dynamic thing group
    /// `name` of fleet-index `query`; the request ID when this call made it.
    fn ensure_query_group<'a>(
        &'a self,
        name: &'a str,
        query: &'a str,
        description: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, AdapterError>>;

    /// Adds `things` to `group`; how many calls that took.
    fn add_things<'a>(
        &'a self,
        group: &'a str,
        things: &'a [String],
    ) -> BoxFuture<'a, Result<usize, AdapterError>>;

    /// Creates the job; `false` when it already exists (a retried apply).
    fn create_job<'a>(
        &'a self,
        spec: &'a JobSpec<'a>,
    ) -> BoxFuture<'a, Result<Changed, AdapterError>>;

    /// The job's counts, or `None` when there is no such job.
    fn job_counts<'a>(
        &'a self,
        job_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<JobCounts>, AdapterError>>;

    /// Force-cancels a job (in-progress executions too); `false` when it
    /// was already canceled, completed or never created.
    fn cancel_job<'a>(
        &'a self,
        job_id: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<Changed, AdapterError>>;

    /// The things whose execution of `job_id` is in one of `statuses`,
    /// at most `limit` of them when given (none when there is no job).
    fn things_in<'a>(
        &'a self,
        job_id: &'a str,
        statuses: &'a [ExecutionStatus],
        limit: Option<usize>,
    ) -> BoxFuture<'a, Result<Vec<String>, AdapterError>>;

    /// The status details a device reported with its execution of `job_id`.
    fn status_details<'a>(
        &'a self,
        job_id: &'a str,
        thing: &'a str,
    ) -> BoxFuture<'a, Result<HashMap<String, String>, AdapterError>>;
}

/// The members of `group`, or none when the group does not exist yet.
pub(crate) async fn members_if_any(
    jobs: &dyn FleetJobs,
    group: &str,
) -> Result<BTreeSet<String>, AdapterError> {
    match jobs.members(group).await {
        Ok(things) => Ok(things.into_iter().collect()),
        Err(AdapterError::NotFound { .. }) => Ok(BTreeSet::new()),
        Err(error) => Err(error),
    }
}

/// AWS IoT Jobs through the SDK client: what the product runs on.
#[derive(Debug, Clone)]
pub struct IotJobs(pub aws_sdk_iot::Client);

impl FleetJobs for IotJobs {
    fn group_arn<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<String, AdapterError>> {
        Box::pin(crate::jobs::group_arn(&self.0, group))
    }

    fn members<'a>(&'a self, group: &'a str) -> BoxFuture<'a, Result<Vec<String>, AdapterError>> {
        Box::pin(crate::jobs::members(&self.0, group))
    }

    fn thing_type<'a>(
        &'a self,
        thing: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, AdapterError>> {
        Box::pin(crate::jobs::thing_type(&self.0, thing))
    }

    fn group_exists<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<bool, AdapterError>> {
        Box::pin(crate::jobs::group_exists(&self.0, name))
    }

    fn ensure_group<'a>(
        &'a self,
        name: &'a str,
        description: &'a str,
    ) -> BoxFuture<'a, Result<(String, Option<String>), AdapterError>> {
        Box::pin(crate::jobs::ensure_group(&self.0, name, description))
    }

    fn ensure_query_group<'a>(
        &'a self,
        name: &'a str,
        query: &'a str,
        description: &'a str,
    ) -> BoxFuture<'a, Result<Option<String>, AdapterError>> {
        Box::pin(crate::jobs::ensure_query_group(
            &self.0,
            name,
            query,
            description,
        ))
    }

    fn add_things<'a>(
        &'a self,
        group: &'a str,
        things: &'a [String],
    ) -> BoxFuture<'a, Result<usize, AdapterError>> {
        Box::pin(crate::jobs::add_things(&self.0, group, things))
    }

    fn create_job<'a>(
        &'a self,
        spec: &'a JobSpec<'a>,
    ) -> BoxFuture<'a, Result<Changed, AdapterError>> {
        Box::pin(crate::jobs::create_job(&self.0, spec))
    }

    fn job_counts<'a>(
        &'a self,
        job_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<JobCounts>, AdapterError>> {
        Box::pin(crate::jobs::job_counts(&self.0, job_id))
    }

    fn cancel_job<'a>(
        &'a self,
        job_id: &'a str,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<Changed, AdapterError>> {
        Box::pin(crate::jobs::cancel_job(&self.0, job_id, reason))
    }

    fn things_in<'a>(
        &'a self,
        job_id: &'a str,
        statuses: &'a [ExecutionStatus],
        limit: Option<usize>,
    ) -> BoxFuture<'a, Result<Vec<String>, AdapterError>> {
        Box::pin(crate::jobs::things_in(&self.0, job_id, statuses, limit))
    }

    fn status_details<'a>(
        &'a self,
        job_id: &'a str,
        thing: &'a str,
    ) -> BoxFuture<'a, Result<HashMap<String, String>, AdapterError>> {
        Box::pin(crate::jobs::status_details(&self.0, job_id, thing))
    }
}
