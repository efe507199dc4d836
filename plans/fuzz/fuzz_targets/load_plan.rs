//! Any bytes must end in a plan or in diagnostics, never in a panic, and the
//! diagnostics must render without panicking either.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match deployctl_plan::load("fuzz.yaml", data) {
        Ok(loaded) => {
            std::hint::black_box(&loaded);
        }
        Err(rejected) => {
            std::hint::black_box(rejected.render(false));
        }
    }
});
