//! Put/remove/clear/flush/restart/crash sequences on the simulated filesystem, with injected faults,
//! checked against a map.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mace_storage_fuzz::props::run_store_ops(data));
