//! The committed C header matches what cbindgen generates from src/ffi, and the versions agree.
//! The freshness test needs the generated header: `cargo test --features regenerate-header --test
//! header` (scripts/consumer-tests.sh runs it in CI); without the feature cbindgen is not built.

use std::ffi::CStr;

#[cfg(feature = "regenerate-header")]
#[test]
fn committed_header_is_fresh() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/mace_storage.h"));
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/include/mace_storage.h"
    ))
    .unwrap();
    assert!(
        generated == committed,
        "include/mace_storage.h is stale: run scripts/refresh-header.sh and commit it"
    );
}

#[test]
fn runtime_version_matches_cargo_and_header() {
    // SAFETY: the function returns a static NUL-terminated string.
    let v = unsafe { CStr::from_ptr(mace_storage::ffi::mace_storage_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    let header = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/include/mace_storage.h"
    ));
    assert!(header.contains(&format!(
        "#define MACE_STORAGE_VERSION \"{}\"",
        env!("CARGO_PKG_VERSION")
    )));
}
