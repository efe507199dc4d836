//! The AWS IoT calls behind [`crate::IotJobs`], one function per
//! [`crate::FleetJobs`] operation. Each reads what is there before it
//! writes, so a retried apply after a crash finds its own groups and jobs
//! instead of making them twice.

use aws_sdk_iot::Client;
use aws_sdk_iot::error::ProvideErrorMetadata;
use aws_sdk_iot::operation::RequestId as _;
use aws_sdk_iot::types::{
    AbortAction, AbortConfig, AbortCriteria, JobExecutionFailureType, JobExecutionStatus,
    JobExecutionsRolloutConfig, PresignedUrlConfig, TargetSelection, TimeoutConfig,
};
use deployctl_adapter::AdapterError;
use deployctl_aws::map_sdk_error;

use crate::backend::{ExecutionStatus, JobCounts, JobSpec};

/// Calls made at once when adding a wave's devices to its group.
const PARALLEL_ADDS: usize = 16;

fn already_exists<E: ProvideErrorMetadata>(error: &E) -> bool {
    error.code() == Some("ResourceAlreadyExistsException")
}

fn not_found<E: ProvideErrorMetadata>(error: &E) -> bool {
    error.code() == Some("ResourceNotFoundException")
}

/// A group's properties: its description.
fn described(description: &str) -> aws_sdk_iot::types::ThingGroupProperties {
    aws_sdk_iot::types::ThingGroupProperties::builder()
        .thing_group_description(description)
        .build()
}

/// A thing group's ARN.
pub(crate) async fn group_arn(client: &Client, group: &str) -> Result<String, AdapterError> {
    let answer = client
        .describe_thing_group()
        .thing_group_name(group)
        .send()
        .await
        .map_err(|e| map_sdk_error(e, &format!("iot:DescribeThingGroup {group}")))?;
    answer
        .thing_group_arn()
        .map(str::to_owned)
        .ok_or_else(|| AdapterError::NotFound {
            what: format!("thing group {group} has no ARN"),
        })
}

/// The things directly in `group`, every page.
pub(crate) async fn members(client: &Client, group: &str) -> Result<Vec<String>, AdapterError> {
    let mut things = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let answer = client
            .list_things_in_thing_group()
            .thing_group_name(group)
            .max_results(250)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| map_sdk_error(e, &format!("iot:ListThingsInThingGroup {group}")))?;
        things.extend(answer.things().iter().cloned());
        match answer.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => return Ok(things),
        }
    }
}

/// A thing's type: its hardware model.
pub(crate) async fn thing_type(
    client: &Client,
    thing: &str,
) -> Result<Option<String>, AdapterError> {
    let answer = client
        .describe_thing()
        .thing_name(thing)
        .send()
        .await
        .map_err(|e| map_sdk_error(e, &format!("iot:DescribeThing {thing}")))?;
    Ok(answer.thing_type_name().map(str::to_owned))
}

/// Whether thing group `name` exists.
pub(crate) async fn group_exists(client: &Client, name: &str) -> Result<bool, AdapterError> {
    match client
        .describe_thing_group()
        .thing_group_name(name)
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(error) if error.as_service_error().is_some_and(not_found) => Ok(false),
        Err(error) => Err(map_sdk_error(
            error,
            &format!("iot:DescribeThingGroup {name}"),
        )),
    }
}

/// Creates the static group `name` (idempotent) and returns its ARN and
/// the request ID when this call created it.
pub(crate) async fn ensure_group(
    client: &Client,
    name: &str,
    description: &str,
) -> Result<(String, Option<String>), AdapterError> {
    let answer = client
        .create_thing_group()
        .thing_group_name(name)
        .thing_group_properties(described(description))
        .send()
        .await;
    match answer {
        Ok(answer) => {
            let arn = answer.thing_group_arn().map(str::to_owned).ok_or_else(|| {
                AdapterError::NotFound {
                    what: format!("thing group {name} came back without an ARN"),
                }
            })?;
            Ok((arn, answer.request_id().map(str::to_owned)))
        }
        Err(error) if error.as_service_error().is_some_and(already_exists) => {
            Ok((group_arn(client, name).await?, None))
        }
        Err(error) => Err(map_sdk_error(
            error,
            &format!("iot:CreateThingGroup {name}"),
        )),
    }
}

/// Makes the dynamic thing group `name` of fleet-index `query` (AWS keeps
/// its members: every thing the query matches, those that match later
/// too), or finds it made with that query already; one made with another
/// query is refused rather than reused. Returns the request ID when this
/// call created it.
pub(crate) async fn ensure_query_group(
    client: &Client,
    name: &str,
    query: &str,
    description: &str,
) -> Result<Option<String>, AdapterError> {
    let answer = client
        .create_dynamic_thing_group()
        .thing_group_name(name)
        .query_string(query)
        .thing_group_properties(described(description))
        .send()
        .await;
    match answer {
        Ok(answer) => Ok(answer.request_id().map(str::to_owned)),
        Err(error) if error.as_service_error().is_some_and(already_exists) => {
            let found = client
                .describe_thing_group()
                .thing_group_name(name)
                .send()
                .await
                .map_err(|e| map_sdk_error(e, &format!("iot:DescribeThingGroup {name}")))?;
            match found.query_string() {
                Some(standing) if standing == query => Ok(None),
                standing => Err(AdapterError::Rejected {
                    message: format!(
                        "thing group {name} exists with query {:?}, not the plan's {query:?}; delete it or change the plan",
                        standing.unwrap_or("(none: a static group)")
                    ),
                    request_id: None,
                }),
            }
        }
        Err(error) => Err(map_sdk_error(
            error,
            &format!("iot:CreateDynamicThingGroup {name}"),
        )),
    }
}

/// Adds `things` to `group`, a few calls at a time; request IDs returned.
pub(crate) async fn add_things(
    client: &Client,
    group: &str,
    things: &[String],
) -> Result<usize, AdapterError> {
    let mut calls = 0;
    for chunk in things.chunks(PARALLEL_ADDS) {
        let mut set = tokio::task::JoinSet::new();
        for thing in chunk {
            let (client, group, thing) = (client.clone(), group.to_owned(), thing.clone());
            set.spawn(async move {
                client
                    .add_thing_to_thing_group()
                    .thing_group_name(&group)
                    .thing_name(&thing)
                    .send()
                    .await
                    .map_err(|e| {
                        map_sdk_error(e, &format!("iot:AddThingToThingGroup {thing} → {group}"))
                    })
            });
        }
        while let Some(done) = set.join_next().await {
            done.map_err(|e| AdapterError::Unavailable {
                message: format!("adding devices to {group}: {e}"),
                request_id: None,
            })??;
            calls += 1;
        }
    }
    Ok(calls)
}

/// Creates the job; `Ok(false)` when it already exists (a retried apply).
pub(crate) async fn create_job(
    client: &Client,
    spec: &JobSpec<'_>,
) -> Result<(bool, Option<String>), AdapterError> {
    let mut request = client
        .create_job()
        .job_id(spec.job_id)
        .set_targets(Some(spec.targets.to_vec()))
        .document(spec.document)
        .description(&spec.description)
        .target_selection(if spec.continuous {
            TargetSelection::Continuous
        } else {
            TargetSelection::Snapshot
        })
        .job_executions_rollout_config(
            JobExecutionsRolloutConfig::builder()
                .maximum_per_minute(spec.max_per_minute.clamp(1, 1000) as i32)
                .build(),
        );
    if let Some(role) = spec.download_role {
        request = request.presigned_url_config(
            PresignedUrlConfig::builder()
                .role_arn(role)
                .expires_in_sec(crate::document::URL_LIFETIME_SECS)
                .build(),
        );
    }
    if let Some((percent, min_devices)) = spec.abort {
        let criterion = AbortCriteria::builder()
            .failure_type(JobExecutionFailureType::All)
            .action(AbortAction::Cancel)
            .threshold_percentage(percent)
            .min_number_of_executed_things(min_devices.max(1) as i32)
            .build()
            .map_err(|e| AdapterError::Rejected {
                message: format!("abort criteria: {e}"),
                request_id: None,
            })?;
        let config = AbortConfig::builder()
            .criteria_list(criterion)
            .build()
            .map_err(|e| AdapterError::Rejected {
                message: format!("abort config: {e}"),
                request_id: None,
            })?;
        request = request.abort_config(config);
    }
    if let Some(minutes) = spec.timeout_minutes {
        request = request.timeout_config(
            TimeoutConfig::builder()
                .in_progress_timeout_in_minutes(minutes.clamp(1, 10_080))
                .build(),
        );
    }
    match request.send().await {
        Ok(answer) => Ok((true, answer.request_id().map(str::to_owned))),
        Err(error) if error.as_service_error().is_some_and(already_exists) => Ok((false, None)),
        Err(error) => Err(map_sdk_error(
            error,
            &format!("iot:CreateJob {}", spec.job_id),
        )),
    }
}

/// The job's counts, or `None` when there is no such job.
pub(crate) async fn job_counts(
    client: &Client,
    job_id: &str,
) -> Result<Option<JobCounts>, AdapterError> {
    let answer = match client.describe_job().job_id(job_id).send().await {
        Ok(answer) => answer,
        Err(error) if error.as_service_error().is_some_and(not_found) => return Ok(None),
        Err(error) => return Err(map_sdk_error(error, &format!("iot:DescribeJob {job_id}"))),
    };
    let Some(job) = answer.job() else {
        return Ok(None);
    };
    let details = job.job_process_details();
    let n = |value: Option<i32>| value.unwrap_or(0).max(0) as u32;
    Ok(Some(JobCounts {
        status: job
            .status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        succeeded: n(details.and_then(|d| d.number_of_succeeded_things())),
        failed: n(details.and_then(|d| d.number_of_failed_things()))
            + n(details.and_then(|d| d.number_of_rejected_things()))
            + n(details.and_then(|d| d.number_of_canceled_things()))
            + n(details.and_then(|d| d.number_of_removed_things())),
        timed_out: n(details.and_then(|d| d.number_of_timed_out_things())),
        queued: n(details.and_then(|d| d.number_of_queued_things())),
        in_progress: n(details.and_then(|d| d.number_of_in_progress_things())),
    }))
}

/// Force-cancels a job (in-progress executions too); `Ok(false)` when it
/// was already canceled, completed or never created.
pub(crate) async fn cancel_job(
    client: &Client,
    job_id: &str,
    reason: &str,
) -> Result<(bool, Option<String>), AdapterError> {
    match job_counts(client, job_id).await? {
        None => return Ok((false, None)),
        Some(counts) if counts.status != "IN_PROGRESS" && counts.status != "SCHEDULED" => {
            return Ok((false, None));
        }
        Some(_) => {}
    }
    let answer = client
        .cancel_job()
        .job_id(job_id)
        .force(true)
        .reason_code("DEPLOYCTL_HALT")
        .comment(reason)
        .send()
        .await;
    match answer {
        Ok(answer) => Ok((true, answer.request_id().map(str::to_owned))),
        // Canceled or completed between the read and the cancel: done.
        Err(error) if error.code() == Some("InvalidStateTransitionException") => Ok((false, None)),
        Err(error) => Err(map_sdk_error(error, &format!("iot:CancelJob {job_id}"))),
    }
}

/// The things whose execution of `job_id` is in one of `statuses`.
pub(crate) async fn things_in(
    client: &Client,
    job_id: &str,
    statuses: &[ExecutionStatus],
    limit: Option<usize>,
) -> Result<Vec<String>, AdapterError> {
    let limit = limit.unwrap_or(usize::MAX);
    let mut things = Vec::new();
    for status in statuses {
        let status = match status {
            ExecutionStatus::InProgress => JobExecutionStatus::InProgress,
            ExecutionStatus::Succeeded => JobExecutionStatus::Succeeded,
        };
        let mut token: Option<String> = None;
        loop {
            let answer = match client
                .list_job_executions_for_job()
                .job_id(job_id)
                .status(status.clone())
                .max_results(250)
                .set_next_token(token.clone())
                .send()
                .await
            {
                Ok(answer) => answer,
                Err(error) if error.as_service_error().is_some_and(not_found) => return Ok(things),
                Err(error) => {
                    return Err(map_sdk_error(
                        error,
                        &format!("iot:ListJobExecutionsForJob {job_id}"),
                    ));
                }
            };
            for summary in answer.execution_summaries() {
                if let Some(arn) = summary.thing_arn() {
                    things.push(arn.rsplit('/').next().unwrap_or(arn).to_owned());
                }
            }
            if things.len() >= limit {
                things.truncate(limit);
                return Ok(things);
            }
            match answer.next_token() {
                Some(next) if !next.is_empty() => token = Some(next.to_owned()),
                _ => break,
            }
        }
    }
    Ok(things)
}

/// The status details a device reported with its execution of `job_id`.
pub(crate) async fn status_details(
    client: &Client,
    job_id: &str,
    thing: &str,
) -> Result<std::collections::HashMap<String, String>, AdapterError> {
    let answer = client
        .describe_job_execution()
        .job_id(job_id)
        .thing_name(thing)
        .send()
        .await
        .map_err(|e| map_sdk_error(e, &format!("iot:DescribeJobExecution {job_id} {thing}")))?;
    Ok(answer
        .execution()
        .and_then(|e| e.status_details())
        .and_then(|d| d.details_map())
        .cloned()
        .unwrap_or_default())
}
