//! Shows engine progress: a bar per active stage on a terminal
//! (indicatif), plain lines in logs, JSON objects with `--output json`.

use std::collections::BTreeMap;

use deployctl_engine::progress::{Progress, WavesStarted};
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
                if let Ok(line) = serde_json::to_string(&stamped(&event, deployctl_time::now_ms()))
                {
                    outln!("{line}");
                }
            }
            View::Lines => eprintln!(
                "{} {}",
                deployctl_time::format_ms(deployctl_time::now_ms()),
                line(&event)
            ),
            View::Bars => match &event {
                Progress::Step {
                    stage,
                    step,
                    steps,
                    weight,
                    waves,
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
                    bar.set_message(format!("{:>11}  {detail}", share(*weight, *waves)));
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

/// `event` as its JSON object with `at`, when it was shown (RFC 3339 UTC,
/// milliseconds), so a log of events can be read against others.
fn stamped(event: &Progress, now_ms: i64) -> serde_json::Value {
    let mut value = serde_json::to_value(event).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("at".into(), deployctl_time::format_ms(now_ms).into());
    }
    value
}

/// How far a step got: the traffic share, or a fleet's waves (whose
/// traffic weight means nothing).
fn share(weight: u8, waves: Option<WavesStarted>) -> String {
    match waves {
        Some(WavesStarted { started, of }) => format!("wave {started}/{of}"),
        None => format!("weight {weight}%"),
    }
}

/// A verdict and its detail, said once: a gate's reason may open with
/// its verdict already ("passed: 3 pass, …").
fn verdict(word: &str, detail: &str) -> String {
    let detail = detail
        .strip_prefix(word)
        .map(|rest| rest.trim_start_matches([':', ' ']))
        .unwrap_or(detail);
    if detail.is_empty() {
        word.to_string()
    } else {
        format!("{word}: {detail}")
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
            if *ready { "ok" } else { "failed" }
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
            waves,
            detail,
            ..
        } => format!(
            "{stage}: [{step}/{steps}] {} — {detail}",
            share(*weight, *waves)
        ),
        Progress::Gate {
            stage,
            gate,
            passed,
            detail,
            ..
        } => format!(
            "{stage}: gate {gate} {}",
            verdict(if *passed { "passed" } else { "failed" }, detail)
        ),
        Progress::Notice { run, message } => format!("run {run}: {message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_events_say_when() {
        let event = Progress::RunPhase {
            run: "r-1".into(),
            phase: deployctl_engine::state::RunPhase::Progressing,
        };
        let value = stamped(&event, 1_796_249_138_622);
        assert_eq!(value["at"], "2026-12-02T22:05:38.622Z");
        assert_eq!(value["event"], "runPhase");
        assert_eq!(value["run"], "r-1");
    }

    #[test]
    fn a_gate_line_says_its_verdict_once() {
        let gate = |passed: bool, detail: &str| {
            line(&Progress::Gate {
                run: "r".into(),
                stage: "api".into(),
                gate: "health".into(),
                passed,
                detail: detail.into(),
            })
        };
        assert_eq!(
            gate(true, "passed: 3 pass, 0 fail, 0 without data, 0 errors"),
            "api: gate health passed: 3 pass, 0 fail, 0 without data, 0 errors"
        );
        assert_eq!(
            gate(
                false,
                "1 measurement failed; the gate fails after 1 (last: 5xx)"
            ),
            "api: gate health failed: 1 measurement failed; the gate fails after 1 (last: 5xx)"
        );
    }

    #[test]
    fn a_wave_step_shows_its_waves_not_a_traffic_weight() {
        let step = |weight: u8, waves: Option<WavesStarted>| {
            line(&Progress::Step {
                run: "r".into(),
                stage: "fleet".into(),
                step: 3,
                steps: 12,
                weight,
                waves,
                detail: "wave 2 dispatched".into(),
            })
        };
        assert_eq!(
            step(0, Some(WavesStarted { started: 2, of: 4 })),
            "fleet: [3/12] wave 2/4 — wave 2 dispatched"
        );
        assert_eq!(
            step(20, None),
            "fleet: [3/12] weight 20% — wave 2 dispatched"
        );
    }
}
