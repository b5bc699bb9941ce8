//! Entries built from the input, encoded in every writable format (and appended to in checked-1.1,
//! whole, cut and torn), decode back exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mace_storage_fuzz::props::check_roundtrip(data));
