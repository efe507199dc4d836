//! Shows engine progress: a bar per active stage on a terminal
//! (indicatif), plain lines in logs, JSON objects with `--output json`.

use std::collections::BTreeMap;

use deployctl_engine::progress::Progress;
use deployctl_engine::state::StagePhase;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::sync::mpsc::UnboundedReceiver;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum View {
    Bars,
    Lines,
    Json,
}

/// Renders events until the sender side is dropped.
pub async fn render(view: View, mut events: UnboundedReceiver<Progress>) {
    let multi = MultiProgress::new();
    let mut bars: BTreeMap<String, ProgressBar> = BTreeMap::new();
    let style =
        ProgressStyle::with_template("{prefix:>16.bold} [{bar:24.cyan/blue}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
    while let Some(event) = events.recv().await {
        match view {
            View::Json => {
                if let Ok(line) = serde_json::to_string(&event) {
                    outln!("{line}");
                }
            }
            View::Lines => eprintln!("{}", line(&event)),
            View::Bars => match &event {
                Progress::Step {
                    stage,
                    step,
                    steps,
                    weight,
                    detail,
                    ..
                } => {
                    let bar = bars.entry(stage.clone()).or_insert_with(|| {
                        let bar = multi.add(ProgressBar::new(u64::from(*steps)));
                        bar.set_style(style.clone());
                        bar.set_prefix(stage.clone());
                        bar
                    });
                    bar.set_length(u64::from(*steps));
                    bar.set_position(u64::from(*step));
                    bar.set_message(format!("weight {weight:>3}%  {detail}"));
                }
                Progress::Stage {
                    stage,
                    phase,
                    detail,
                    ..
                } if matches!(
                    phase,
                    StagePhase::Succeeded
                        | StagePhase::Failed
                        | StagePhase::RolledBack
                        | StagePhase::RollbackFailed
                ) =>
                {
                    match bars.get(stage) {
                        Some(bar) => {
                            bar.finish_with_message(format!("{} {detail}", phase.as_str()))
                        }
                        None => {
                            let _ = multi.println(line(&event));
                        }
                    }
                }
                _ => {
                    let _ = multi.println(line(&event));
                }
            },
        }
    }
}

/// One event as a log line.
pub fn line(event: &Progress) -> String {
    match event {
        Progress::RunPhase { run, phase } => format!("run {run}: {}", phase.as_str()),
        Progress::Preflight {
            stage,
            stable_version,
            ready,
            detail,
            ..
        } => format!(
            "{stage}: preflight {} (stable {stable_version}) {detail}",
            if *ready { "ok" } else { "FAILED" }
        ),
        Progress::Stage {
            stage,
            phase,
            detail,
            ..
        } => format!("{stage}: {} {detail}", phase.as_str()),
        Progress::Step {
            stage,
            step,
            steps,
            weight,
            detail,
            ..
        } => format!("{stage}: [{step}/{steps}] weight {weight}% — {detail}"),
        Progress::Gate {
            stage,
            gate,
            passed,
            detail,
            ..
        } => format!(
            "{stage}: gate {gate} {} {detail}",
            if *passed { "passed" } else { "FAILED" }
        ),
    }
}
