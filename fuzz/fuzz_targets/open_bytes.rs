//! The C ABI on arbitrary bytes: mace_storage_open_bytes, for_each and get agree with decode and
//! never crash, report an internal error, or allocate past the memory bound of docs/FORMAT.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mace_storage_fuzz::props::check_open_bytes(data));
