//! Wave judging for fleet stages: how many devices a wave dispatches, and
//! whether a wave's devices (as the target reports them) pass its success
//! and abort thresholds.

use deployctl_adapter::WaveProgress;
use deployctl_plan::model::{RollbackTrigger, WaveSize, Waves};

use crate::gate::GateMonitor;
use crate::stage::{StageDriver, StageStop};

impl StageDriver {
    pub(crate) async fn wave_devices(
        &mut self,
        size: WaveSize,
        monitors: &mut [GateMonitor],
    ) -> Result<u32, StageStop> {
        let fleet = self.wave_progress(monitors).await?.fleet_size;
        Ok(match size {
            WaveSize::Count(count) => count.min(fleet.max(count)),
            WaveSize::Percent(percent) => {
                ((f64::from(fleet) * percent / 100.0).ceil() as u32).max(1)
            }
        })
    }

    /// The fleet's wave progress as the target reports it now.
    async fn wave_progress(&self, monitors: &mut [GateMonitor]) -> Result<WaveProgress, StageStop> {
        let observed = self
            .guarded(self.target.observe(), monitors)
            .await?
            .map_err(|error| {
                self.fail(RollbackTrigger::Error, format!("observe failed: {error}"))
            })?;
        Ok(observed.waves.unwrap_or_default())
    }

    /// Polls wave progress until the wave's devices reported or timed out,
    /// judging the abort and success thresholds as results arrive.
    pub(crate) async fn await_wave(
        &mut self,
        index: u32,
        monitors: &mut [GateMonitor],
    ) -> Result<String, StageStop> {
        let deployctl_plan::model::Strategy::Waves(waves) = &self.stage.strategy else {
            return Err(self.fail(RollbackTrigger::Error, "waves on a non-wave stage".into()));
        };
        let waves = waves.clone();
        let deadline = tokio::time::Instant::now() + waves.device_timeout;
        loop {
            let progress = self.wave_progress(monitors).await?;
            let deadline_passed = tokio::time::Instant::now() >= deadline;
            match judge(index, &progress, &waves, deadline_passed) {
                WaveVerdict::Waiting => {}
                WaveVerdict::Passed(detail) => return Ok(detail),
                WaveVerdict::Failed(reason) => {
                    return Err(self.fail(RollbackTrigger::GateFailed, reason));
                }
            }
            self.guarded(tokio::time::sleep(self.options.poll), monitors)
                .await?;
        }
    }
}

/// What a wave's device reports add up to so far.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WaveVerdict {
    /// Devices are still updating and the device timeout has not passed.
    Waiting,
    Passed(String),
    Failed(String),
}

/// Judges wave `index` (0-based) from the fleet's progress: the abort
/// threshold as soon as enough devices reported, the success threshold
/// once every device reported or the device timeout passed (silent
/// devices then count against it).
pub(crate) fn judge(
    index: u32,
    progress: &WaveProgress,
    waves: &Waves,
    deadline_passed: bool,
) -> WaveVerdict {
    let reported = progress.succeeded + progress.failed + progress.timed_out;
    let failures = progress.failed + progress.timed_out;
    if reported >= waves.abort_min_devices && reported > 0 {
        let failure_rate = f64::from(failures) * 100.0 / f64::from(reported);
        if failure_rate > waves.abort_failure_threshold {
            return WaveVerdict::Failed(format!(
                "wave {}: {failure_rate:.1}% of {reported} devices failed, above the abort threshold of {}%",
                index + 1,
                waves.abort_failure_threshold
            ));
        }
    }
    let all_reported = progress.in_progress() == 0;
    if !all_reported && !deadline_passed {
        return WaveVerdict::Waiting;
    }
    let silent = progress.in_progress();
    let dispatched = progress.dispatched.max(1);
    let success_rate = f64::from(progress.succeeded) * 100.0 / f64::from(dispatched);
    if success_rate < waves.success_threshold {
        return WaveVerdict::Failed(format!(
            "wave {}: {success_rate:.1}% of devices succeeded ({silent} still silent), below the {}% threshold",
            index + 1,
            waves.success_threshold
        ));
    }
    WaveVerdict::Passed(format!(
        "wave {}: {} of {} devices updated ({success_rate:.1}%)",
        index + 1,
        progress.succeeded,
        progress.dispatched
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn waves() -> Waves {
        Waves {
            waves: Vec::new(),
            success_threshold: 98.0,
            abort_failure_threshold: 5.0,
            abort_min_devices: 25,
            device_timeout: Duration::from_secs(3600),
            max_devices_per_minute: 100,
            bake_time: Duration::ZERO,
            gates: Vec::new(),
        }
    }

    fn progress(dispatched: u32, succeeded: u32, failed: u32) -> WaveProgress {
        WaveProgress {
            fleet_size: 1000,
            dispatched,
            succeeded,
            failed,
            ..WaveProgress::default()
        }
    }

    #[test]
    fn a_wave_waits_while_devices_update() {
        assert_eq!(
            judge(0, &progress(100, 50, 0), &waves(), false),
            WaveVerdict::Waiting
        );
    }

    #[test]
    fn failures_abort_only_once_enough_devices_reported() {
        // 2 of 10 failed (20 %) but fewer than 25 reported: wait.
        assert_eq!(
            judge(0, &progress(100, 8, 2), &waves(), false),
            WaveVerdict::Waiting
        );
        // 2 of 25 (8 %) is above the 5 % abort threshold.
        let WaveVerdict::Failed(reason) = judge(1, &progress(100, 23, 2), &waves(), false) else {
            panic!("not aborted");
        };
        assert!(
            reason.starts_with("wave 2: 8.0% of 25 devices failed"),
            "{reason}"
        );
    }

    #[test]
    fn a_finished_wave_passes_at_the_success_threshold() {
        let WaveVerdict::Passed(detail) = judge(0, &progress(100, 98, 2), &waves(), false) else {
            panic!("not passed");
        };
        assert_eq!(detail, "wave 1: 98 of 100 devices updated (98.0%)");
    }

    #[test]
    fn silent_devices_count_against_the_wave_at_the_timeout() {
        let WaveVerdict::Failed(reason) = judge(0, &progress(100, 90, 0), &waves(), true) else {
            panic!("not failed");
        };
        assert!(
            reason.contains("90.0% of devices succeeded (10 still silent)"),
            "{reason}"
        );
    }
}
