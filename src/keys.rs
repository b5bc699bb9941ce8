//! The names of the entries the library and MACE keep beside program binaries, in one place: the
//! program cache, the C ABI and the MACE drop-in (through `mace_storage_key_is_program_binary`) ask
//! here instead of repeating prefixes. The names of side files are in
//! [`crate::io::side_files`].

/// The key under which MACE stores the platform description its cached binaries were built for
/// (`crate::format` re-exports it and writes it first: without it no binary is kept).
pub const PLATFORM_INFO_KEY: &[u8] = b"mace_opencl_precompiled_platform_info_key";
/// The key under which MACE 1.1 stores the GPU name its cached binaries were built for.
pub const DEVICE_NAME_KEY: &[u8] = b"mace_opencl_precompiled_device_name_key";

/// The prefix of every metadata key MACE writes (`mace_opencl_precompiled_platform_info_key`, ...).
pub const MACE_METADATA_PREFIX: &[u8] = b"mace_opencl_precompiled_";
/// The prefix of every metadata key this library writes.
pub const LIBRARY_PREFIX: &[u8] = b"mace_storage_";
/// The key holding the fingerprint the cached binaries were built under.
pub const FINGERPRINT_KEY: &[u8] = b"mace_storage_fingerprint";
/// The key recording the OS build the cached binaries were built under.
pub const OS_BUILD_KEY: &[u8] = b"mace_storage_os_build_id";
/// The prefix of the use records a store with a size budget writes (`mace_storage_uses_<n>`).
pub const USES_PREFIX: &[u8] = b"mace_storage_uses_";
/// The prefix of a program's source-hash key: `program_hash_ <binary key>`.
pub const PROGRAM_HASH_PREFIX: &[u8] = b"program_hash_ ";

/// The source-hash key of the program binary stored under `binary_key`.
pub fn program_hash_key(binary_key: &[u8]) -> Vec<u8> {
    let mut h = PROGRAM_HASH_PREFIX.to_vec();
    h.extend_from_slice(binary_key);
    h
}

/// True for a key that holds a program binary (what a driver loads), false for the metadata that
/// vouches for binaries (MACE's, this library's, source hashes), which is never evicted as one.
pub fn is_program_binary(key: &[u8]) -> bool {
    // The hash prefix without its space: any `program_hash_...` key is metadata, as MACE names it.
    let hash = &PROGRAM_HASH_PREFIX[..PROGRAM_HASH_PREFIX.len() - 1];
    ![MACE_METADATA_PREFIX, LIBRARY_PREFIX, hash]
        .iter()
        .any(|p| key.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_no_program_binary() {
        for k in [
            PLATFORM_INFO_KEY,
            DEVICE_NAME_KEY,
            FINGERPRINT_KEY,
            OS_BUILD_KEY,
            &program_hash_key(b"conv2d -DX")[..],
            b"program_hash_x",
        ] {
            assert!(!is_program_binary(k), "{}", String::from_utf8_lossy(k));
        }
        for k in [&b"conv2d -DX"[..], b"", b"mace_opencl", b"program_has"] {
            assert!(is_program_binary(k), "{}", String::from_utf8_lossy(k));
        }
    }

    #[test]
    fn names_agree_with_the_format_and_their_prefixes() {
        // The checked formats write the vouching entries first by these names.
        for k in [FINGERPRINT_KEY, OS_BUILD_KEY] {
            assert!(crate::format::VOUCHING_KEYS.contains(&k));
            assert!(k.starts_with(LIBRARY_PREFIX));
        }
        for k in [PLATFORM_INFO_KEY, DEVICE_NAME_KEY] {
            assert!(k.starts_with(MACE_METADATA_PREFIX));
        }
    }
}
