//! A device's update history as AWS IoT holds it: every deployctl job
//! execution of the thing (waves and rollbacks), with the version its job
//! document carried, how it ended and when, and the run that sent it.

use aws_sdk_iot::Client;
use deployctl_adapter::AdapterError;
use deployctl_aws::map_sdk_error;

/// One update a device was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceUpdate {
    pub job_id: String,
    /// `run/stage wave N` or `run/stage rollback`, from the job's description.
    pub sent_by: String,
    pub version: String,
    pub rollback: bool,
    pub status: String,
    /// When the execution last changed (Unix milliseconds).
    pub at_ms: i64,
}

/// Every deployctl update `thing` was sent, oldest first.
pub async fn device_history(
    client: &Client,
    thing: &str,
) -> Result<Vec<DeviceUpdate>, AdapterError> {
    let mut updates = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_job_executions_for_thing()
            .thing_name(thing)
            .max_results(250)
            .set_next_token(token.clone())
            .send()
            .await
            .map_err(|e| map_sdk_error(e, &format!("iot:ListJobExecutionsForThing {thing}")))?;
        for summary in page.execution_summaries() {
            let Some(job_id) = summary.job_id().filter(|id| id.starts_with("deployctl-")) else {
                continue;
            };
            let execution = summary.job_execution_summary();
            let job = client
                .describe_job()
                .job_id(job_id)
                .send()
                .await
                .map_err(|e| map_sdk_error(e, &format!("iot:DescribeJob {job_id}")))?;
            let document = client
                .get_job_document()
                .job_id(job_id)
                .send()
                .await
                .map_err(|e| map_sdk_error(e, &format!("iot:GetJobDocument {job_id}")))?;
            let parsed: serde_json::Value = document
                .document()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or_default();
            let description = job.job().and_then(|j| j.description()).unwrap_or_default();
            updates.push(DeviceUpdate {
                job_id: job_id.to_owned(),
                sent_by: description
                    .strip_prefix("deployctl ")
                    .and_then(|rest| rest.split(':').next())
                    .unwrap_or(description)
                    .to_owned(),
                version: parsed["version"].as_str().unwrap_or("?").to_owned(),
                rollback: parsed["rollback"].as_bool().unwrap_or(false),
                status: execution
                    .and_then(|e| e.status())
                    .map_or_else(|| "?".to_owned(), |s| s.as_str().to_owned()),
                at_ms: execution
                    .and_then(|e| e.last_updated_at().or(e.queued_at()))
                    .map_or(0, |t| {
                        t.secs() * 1000 + i64::from(t.subsec_nanos() / 1_000_000)
                    }),
            });
        }
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_owned()),
            _ => break,
        }
    }
    updates.sort_by(|a, b| (a.at_ms, &a.job_id).cmp(&(b.at_ms, &b.job_id)));
    Ok(updates)
}
