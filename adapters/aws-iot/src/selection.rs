//! Which devices a wave updates: every device of the fleet in an order
//! drawn from the run's seed (SHA-256 of seed and thing name), each wave
//! taking the next devices no earlier wave took. Deterministic, so a wave
//! is reproducible and a resumed run picks the same devices; exclusive,
//! so no device is in two waves; spread, so a wave is not the devices
//! whose names sort first (one site, one batch, one hardware revision).

use std::collections::BTreeSet;

/// The indices of `fleet`'s devices in the seeded order.
pub(crate) fn seeded_order(seed: &str, fleet: &[String]) -> Vec<u32> {
    // The digest's first 16 bytes order the devices (the index breaks a
    // tie, which needs a 128-bit collision): 20 bytes a device while
    // sorting, 4 bytes after, so a million-device order costs 4 MB kept.
    let mut keyed: Vec<([u8; 16], u32)> = fleet
        .iter()
        .enumerate()
        .map(|(index, thing)| {
            let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
            context.update(seed.as_bytes());
            context.update(&[0]);
            context.update(thing.as_bytes());
            let digest = context.finish();
            let mut key = [0u8; 16];
            key.copy_from_slice(&digest.as_ref()[..16]);
            (key, index as u32)
        })
        .collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, index)| index).collect()
}

/// Flags, in `marked` (one a device of the sorted `fleet`), the devices
/// `things` names; names outside the fleet are not in it.
pub(crate) fn mark<'a>(
    fleet: &[String],
    things: impl IntoIterator<Item = &'a String>,
    marked: &mut [bool],
) {
    for thing in things {
        if let Ok(index) = fleet.binary_search(thing) {
            marked[index] = true;
        }
    }
}

/// The devices a wave adds to those already in it (`current`, a retried
/// apply after a crash), so that it holds `count`: the next in the seeded
/// `order` of the sorted `fleet` that no earlier wave (`taken`) holds.
pub(crate) fn pick(
    order: &[u32],
    fleet: &[String],
    taken: &[bool],
    current: &BTreeSet<String>,
    count: usize,
) -> Vec<String> {
    let wanted = count.saturating_sub(current.len());
    let mut in_current = vec![false; fleet.len()];
    mark(fleet, current, &mut in_current);
    order
        .iter()
        .map(|index| *index as usize)
        .filter(|index| !taken[*index] && !in_current[*index])
        .take(wanted)
        .map(|index| fleet[index].clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("thermostat-{i:05}")).collect()
    }

    /// A wave of `count`: what it has (`current`) and what `pick` adds.
    fn wave(
        seed: &str,
        fleet: &[String],
        taken: &BTreeSet<String>,
        current: &BTreeSet<String>,
        count: usize,
    ) -> Vec<String> {
        let order = seeded_order(seed, fleet);
        let mut chosen: Vec<String> = current.iter().take(count).cloned().collect();
        let mut marked = vec![false; fleet.len()];
        mark(fleet, taken, &mut marked);
        chosen.extend(pick(&order, fleet, &marked, current, count));
        chosen
    }

    #[test]
    fn waves_are_disjoint_cover_the_fleet_and_repeat_for_the_same_seed() {
        let fleet = fleet(1000);
        let sizes = [10, 90, 400, 500];
        let run = |seed: &str| {
            let mut taken = BTreeSet::new();
            let mut waves = Vec::new();
            for size in sizes {
                let wave = wave(seed, &fleet, &taken, &BTreeSet::new(), size);
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
        let wave = wave("run-1/ota", &fleet, &BTreeSet::new(), &BTreeSet::new(), 10);
        let low = wave
            .iter()
            .filter(|t| t.as_str() < "thermostat-00100")
            .count();
        assert!(low < 5, "{wave:?}");
    }

    #[test]
    fn a_retried_wave_keeps_the_devices_it_already_has() {
        let fleet = fleet(100);
        let full = wave("s", &fleet, &BTreeSet::new(), &BTreeSet::new(), 20);
        let partial: BTreeSet<String> = full[..7].iter().cloned().collect();
        let again = wave("s", &fleet, &BTreeSet::new(), &partial, 20);
        let again: BTreeSet<String> = again.into_iter().collect();
        assert_eq!(again, full.into_iter().collect());
    }

    #[test]
    fn a_wave_larger_than_what_is_left_takes_what_is_left() {
        let fleet = fleet(10);
        let taken: BTreeSet<String> = fleet[..8].iter().cloned().collect();
        assert_eq!(wave("s", &fleet, &taken, &BTreeSet::new(), 5).len(), 2);
    }
}
