//! Which devices a wave updates: every device of the fleet in an order
//! drawn from the run's seed (SHA-256 of seed and thing name), each wave
//! taking the next devices no earlier wave took. Deterministic, so a wave
//! is reproducible and a resumed run picks the same devices; exclusive,
//! so no device is in two waves; spread, so a wave is not the devices
//! whose names sort first (one site, one batch, one hardware revision).

use std::collections::BTreeSet;

/// The devices of `fleet` in the seeded order.
pub(crate) fn seeded_order<'a>(seed: &str, fleet: &'a [String]) -> Vec<&'a String> {
    // The digest's first 16 bytes order the devices (the names break a tie,
    // which needs a 128-bit collision): 24 bytes a device, so ordering a
    // million-device fleet costs 24 MB, not a digest allocation each.
    let mut keyed: Vec<([u8; 16], &String)> = fleet
        .iter()
        .map(|thing| {
            let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
            context.update(seed.as_bytes());
            context.update(&[0]);
            context.update(thing.as_bytes());
            let digest = context.finish();
            let mut key = [0u8; 16];
            key.copy_from_slice(&digest.as_ref()[..16]);
            (key, thing)
        })
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, thing)| thing).collect()
}

/// Wave devices: those already in the wave (`current`, a retried apply
/// after a crash) first, then the next in seeded order that no earlier
/// wave (`taken`) holds, up to `count`.
pub(crate) fn pick(
    seed: &str,
    fleet: &[String],
    taken: &BTreeSet<String>,
    current: &BTreeSet<String>,
    count: usize,
) -> Vec<String> {
    let mut chosen: Vec<String> = current.iter().take(count).cloned().collect();
    for thing in seeded_order(seed, fleet) {
        if chosen.len() >= count {
            break;
        }
        if !taken.contains(thing) && !current.contains(thing) {
            chosen.push(thing.clone());
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("thermostat-{i:05}")).collect()
    }

    #[test]
    fn waves_are_disjoint_cover_the_fleet_and_repeat_for_the_same_seed() {
        let fleet = fleet(1000);
        let sizes = [10, 90, 400, 500];
        let run = |seed: &str| {
            let mut taken = BTreeSet::new();
            let mut waves = Vec::new();
            for size in sizes {
                let wave = pick(seed, &fleet, &taken, &BTreeSet::new(), size);
                assert_eq!(wave.len(), size);
                for thing in &wave {
                    assert!(taken.insert(thing.clone()), "{thing} in two waves");
                }
                waves.push(wave);
            }
            assert_eq!(taken.len(), fleet.len());
            waves
        };
        assert_eq!(run("run-1/ota"), run("run-1/ota"));
        assert_ne!(run("run-1/ota")[0], run("run-2/ota")[0]);
    }

    #[test]
    fn the_first_wave_is_not_the_first_names() {
        let fleet = fleet(1000);
        let wave = pick("run-1/ota", &fleet, &BTreeSet::new(), &BTreeSet::new(), 10);
        let low = wave
            .iter()
            .filter(|t| t.as_str() < "thermostat-00100")
            .count();
        assert!(low < 5, "{wave:?}");
    }

    #[test]
    fn a_retried_wave_keeps_the_devices_it_already_has() {
        let fleet = fleet(100);
        let full = pick("s", &fleet, &BTreeSet::new(), &BTreeSet::new(), 20);
        let partial: BTreeSet<String> = full[..7].iter().cloned().collect();
        let again = pick("s", &fleet, &BTreeSet::new(), &partial, 20);
        let again: BTreeSet<String> = again.into_iter().collect();
        assert_eq!(again, full.into_iter().collect());
    }

    #[test]
    fn a_wave_larger_than_what_is_left_takes_what_is_left() {
        let fleet = fleet(10);
        let taken: BTreeSet<String> = fleet[..8].iter().cloned().collect();
        assert_eq!(pick("s", &fleet, &taken, &BTreeSet::new(), 5).len(), 2);
    }
}
