//! `deployctl fleet history GROUP [--device THING]`: which firmware a
//! thing group ran when (from the journal: every run that updated it,
//! its versions, how far its waves got and how it ended), and with
//! `--device`, which updates one device was sent and how each ended (from
//! AWS IoT, which holds every job execution).

use clap::Subcommand;
use deployctl_engine::event::Event;
use deployctl_engine::journal::{Journal, RunQuery};
use deployctl_engine::state::RunPhase;

use crate::exit;

#[derive(Subcommand)]
pub enum FleetCommand {
    /// Which version a thing group (and, with `--device`, one device) ran
    /// when, oldest first.
    History {
        /// The thing group.
        #[arg(value_name = "THING_GROUP")]
        group: String,
        /// One device of the group: its updates as AWS IoT recorded them.
        #[arg(long, value_name = "THING")]
        device: Option<String>,
        /// The group's AWS region (for `--device`).
        #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
        region: String,
    },
}

pub fn run(command: &FleetCommand, state_dir: &std::path::Path, json: bool) -> u8 {
    match command {
        FleetCommand::History {
            group,
            device: None,
            ..
        } => group_history(group, state_dir, json),
        FleetCommand::History {
            group,
            device: Some(device),
            region,
        } => device_history(group, device, region, json),
    }
}

/// Whether a platform identity (`ARN+ARN…` for a fleet) names `group`.
pub fn updates_group(identity: &str, group: &str) -> bool {
    identity.split('+').any(|arn| {
        arn.starts_with("arn:")
            && arn
                .rsplit_once(":thinggroup/")
                .is_some_and(|(_, name)| name == group)
    })
}

/// One run's effect on the group.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct GroupRun {
    run: String,
    started: String,
    ended: Option<String>,
    phase: &'static str,
    from: Option<String>,
    to: Option<String>,
    waves_dispatched: u32,
    /// What the group's devices run after this run, in words.
    result: String,
}

fn group_history(group: &str, state_dir: &std::path::Path, json: bool) -> u8 {
    let journal = match Journal::open(state_dir) {
        Ok(journal) => journal,
        Err(error) => return crate::report::failed(error),
    };
    let runs = match journal.runs_matching(&RunQuery {
        limit: u32::MAX,
        ..RunQuery::default()
    }) {
        Ok(runs) => runs,
        Err(error) => return crate::report::failed(error),
    };
    let mut rows = Vec::new();
    for run in runs.into_iter().rev() {
        let Ok(stages) = journal.stages(&run.id) else {
            continue;
        };
        let Some(stage) = stages
            .into_iter()
            .find(|stage| updates_group(&stage.target_key, group))
        else {
            continue;
        };
        let waves = journal
            .events(&run.id)
            .map(|events| {
                events
                    .iter()
                    .filter(|e| e.stage.as_deref() == Some(&stage.name))
                    .filter(|e| {
                        matches!(
                            e.event,
                            Event::CallIntent {
                                action: deployctl_adapter::Action::StartWave { .. },
                                ..
                            }
                        )
                    })
                    .count() as u32
            })
            .unwrap_or(0);
        let to = stage.new_version.clone();
        let from = stage.stable_version.clone();
        let result = match run.phase {
            RunPhase::Succeeded => format!("every device on {}", to.as_deref().unwrap_or("?")),
            RunPhase::RolledBack | RunPhase::Killed | RunPhase::Aborted if waves > 0 => format!(
                "devices that took {} were sent {} back",
                to.as_deref().unwrap_or("?"),
                from.as_deref().unwrap_or("?")
            ),
            RunPhase::RolledBack | RunPhase::Killed | RunPhase::Aborted => {
                format!(
                    "nothing dispatched; still on {}",
                    from.as_deref().unwrap_or("?")
                )
            }
            RunPhase::Failed if run.rollback_incomplete => {
                "ROLLBACK INCOMPLETE: devices may run either version".into()
            }
            _ => format!(
                "in flight: {waves} wave{} of {} dispatched",
                if waves == 1 { "" } else { "s" },
                to.as_deref().unwrap_or("?")
            ),
        };
        rows.push(GroupRun {
            run: run.id.clone(),
            started: deployctl_time::format_ms(run.created_at),
            ended: run
                .phase
                .is_terminal()
                .then(|| deployctl_time::format_ms(run.updated_at)),
            phase: run.phase.as_str(),
            from,
            to,
            waves_dispatched: waves,
            result,
        });
    }
    if json {
        crate::print_json(&serde_json::json!({"group": group, "runs": rows}));
        return exit::OK;
    }
    if rows.is_empty() {
        outln!("thing group {group}: no run of this state directory updated it");
        return exit::OK;
    }
    outln!("thing group {group}");
    for row in &rows {
        outln!(
            "  {}  {}  {} → {}  {:<11} {} wave{}  {}",
            row.started,
            row.run,
            row.from.as_deref().unwrap_or("?"),
            row.to.as_deref().unwrap_or("?"),
            row.phase,
            row.waves_dispatched,
            if row.waves_dispatched == 1 { " " } else { "s" },
            row.result
        );
    }
    exit::OK
}

fn device_history(group: &str, device: &str, region: &str, json: bool) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return crate::report::failed(format!("cannot start the async runtime: {error}"));
        }
    };
    let updates = runtime.block_on(async {
        let sdk = deployctl_aws::config::load(Some(region)).await;
        let client = deployctl_aws_iot::iot_client(&sdk);
        deployctl_aws_iot::device_history(&client, device).await
    });
    let updates = match updates {
        Ok(updates) => updates,
        Err(error) => return crate::report::failed(error),
    };
    if json {
        let rows: Vec<serde_json::Value> = updates
            .iter()
            .map(|u| {
                serde_json::json!({
                    "job": u.job_id, "sentBy": u.sent_by, "version": u.version,
                    "rollback": u.rollback, "status": u.status,
                    "at": deployctl_time::format_ms(u.at_ms),
                })
            })
            .collect();
        crate::print_json(&serde_json::json!({"group": group, "device": device, "updates": rows}));
        return exit::OK;
    }
    outln!("device {device} (thing group {group})");
    if updates.is_empty() {
        outln!("  no deployctl update was ever sent to it");
    }
    for u in &updates {
        outln!(
            "  {}  {}{}  {:<10} {}",
            deployctl_time::format_ms(u.at_ms),
            u.version,
            if u.rollback { " (rollback)" } else { "" },
            u.status,
            u.sent_by
        );
    }
    exit::OK
}
