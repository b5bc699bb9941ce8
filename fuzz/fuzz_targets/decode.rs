//! format::decode on arbitrary bytes: never panics, every range in bounds, memory under the bound of
//! docs/FORMAT.md, and an intact file's entries survive re-encoding in checked-1.1.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mace_storage_fuzz::props::check_decode(data));
