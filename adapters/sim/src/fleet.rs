//! The simulated device fleet: which devices a wave reaches and how each
//! one fares, decided by the seed alone so every run is reproducible.
//!
//! Devices report the moment they are dispatched. Real devices take
//! minutes, but a simulator that finished them later would need a clock
//! shared by every process looking at a sim world; the wave gates and abort
//! thresholds see the same numbers either way, only sooner.

use crate::state::FleetState;

/// Dispatches up to `devices` more devices (fewer when the fleet runs out)
/// and records their outcomes. Returns how many were dispatched.
pub(crate) fn dispatch(
    fleet: &mut FleetState,
    devices: u32,
    seed: u64,
    failure_percent: f64,
) -> u32 {
    let count = devices.min(fleet.size.saturating_sub(fleet.dispatched));
    for device in fleet.dispatched..fleet.dispatched + count {
        if device_fails(seed, device, failure_percent) {
            fleet.failed += 1;
        } else {
            fleet.succeeded += 1;
        }
    }
    fleet.dispatched += count;
    count
}

/// Percent of reporting devices that updated successfully; `None` before
/// any device reported.
pub(crate) fn success_rate(fleet: &FleetState) -> Option<f64> {
    let reported = fleet.reported();
    (reported > 0).then(|| f64::from(fleet.succeeded) * 100.0 / f64::from(reported))
}

/// Whether `device` fails its update: a uniform draw in [0, 100) from the
/// seed and the device's index, below the failure percentage.
fn device_fails(seed: u64, device: u32, failure_percent: f64) -> bool {
    if failure_percent <= 0.0 {
        return false;
    }
    let bits = splitmix64(seed ^ splitmix64(u64::from(device)));
    // The top 53 bits make an exactly representable fraction in [0, 1).
    let draw = (bits >> 11) as f64 / (1u64 << 53) as f64 * 100.0;
    draw < failure_percent
}

/// SplitMix64's output function: a well-mixed 64-bit hash, so that
/// neighbouring devices and seeds draw unrelated values.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(size: u32) -> FleetState {
        FleetState {
            size,
            ..FleetState::default()
        }
    }

    #[test]
    fn the_failure_rate_is_met_and_the_seed_decides_which_devices() {
        let mut a = fleet(10_000);
        assert_eq!(dispatch(&mut a, 10_000, 7, 5.0), 10_000);
        let rate = success_rate(&a).unwrap();
        assert!((94.0..96.0).contains(&rate), "{rate}");

        let mut b = fleet(10_000);
        dispatch(&mut b, 4_000, 7, 5.0);
        dispatch(&mut b, 6_000, 7, 5.0);
        assert_eq!(a, b, "same seed, same outcomes, however the waves split");

        let mut c = fleet(10_000);
        dispatch(&mut c, 10_000, 8, 5.0);
        assert_ne!(a.failed, 0);
        assert_ne!(
            (0..100)
                .map(|d| device_fails(7, d, 5.0))
                .collect::<Vec<_>>(),
            (0..100)
                .map(|d| device_fails(8, d, 5.0))
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn waves_stop_at_the_fleet_size_and_no_report_is_no_rate() {
        let mut f = fleet(10);
        assert_eq!(success_rate(&f), None);
        assert_eq!(dispatch(&mut f, 8, 0, 0.0), 8);
        assert_eq!(dispatch(&mut f, 8, 0, 0.0), 2);
        assert_eq!((f.dispatched, f.succeeded, f.failed), (10, 10, 0));
        assert_eq!(success_rate(&f), Some(100.0));
    }
}
