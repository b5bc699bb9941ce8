//! The read path the store opens files with: a file read piece by piece into one exact-size buffer,
//! each piece checksummed while it is in cache (the decoder then verifies from those checksums; its
//! equivalence with the plain decoder is a unit test in src/format/crc.rs). A store opened from disk
//! keeps exactly what the plain decoder keeps, and a file larger than the platform can hold is
//! refused, never read truncated (32-bit targets).

mod common;

use mace_storage::format::{self, Format, WriteParams};
use mace_storage::io::{buffer_len, posix::PosixFs, Fs, MAX_BUFFER};
use mace_storage::store::{Options, Store};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Entries whose values straddle the store's checksum index granules (8 KiB).
fn entries(rng: &mut Rng) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut v: Vec<(Vec<u8>, Vec<u8>)> = (0..12)
        .map(|i| {
            let len = [0, 1, 100, 8191, 8192, 8193, 20_000, 40_000][i % 8] + rng.below(50);
            let key = format!("conv_2d_1x1 -DBIAS -DCMD_DATA_TYPE=f -DK{i}").into_bytes();
            (key, (0..len).map(|_| rng.next() as u8).collect())
        })
        .collect();
    v.push((
        format::PLATFORM_INFO_KEY.to_vec(),
        b"PoCL, FULL_PROFILE, OpenCL 3.0, 1.1.1".to_vec(),
    ));
    v
}

fn encode(f: Format, e: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    format::encode(f, &common::pairs_in(e), WriteParams::next(0))
        .unwrap()
        .out
        .to_vec()
}

#[test]
fn the_posix_read_observes_the_buffer_as_it_grows() {
    let d = common::temp_dir("observe");
    let p = d.path().join("f.bin");
    let mut rng = Rng(5);
    let data: Vec<u8> = (0..1_000_003).map(|_| rng.next() as u8).collect();
    std::fs::write(&p, &data).unwrap();
    let mut seen: Vec<u8> = Vec::new();
    let mut pieces = 0;
    let (bytes, meta) = PosixFs
        .read_observed(&p, &mut |so_far| {
            // Each call shows the buffer read so far, extending the previous call's.
            assert!(so_far.len() > seen.len() && so_far.starts_with(&seen));
            pieces += 1;
            seen = so_far.to_vec();
        })
        .unwrap()
        .unwrap();
    assert_eq!(bytes, data);
    assert_eq!(seen, data);
    assert_eq!(meta.len, data.len() as u64);
    assert_eq!(bytes.capacity(), data.len(), "one exact-size buffer");
    assert!(pieces > 1, "read in pieces, each observed while in cache");
    std::fs::write(&p, b"").unwrap();
    let (empty, _) = PosixFs.read_observed(&p, &mut |_| {}).unwrap().unwrap();
    assert!(empty.is_empty());
    assert!(PosixFs
        .read_observed(&d.path().join("absent"), &mut |_| panic!(
            "nothing to observe"
        ))
        .unwrap()
        .is_none());
}

#[test]
fn a_store_opened_from_disk_keeps_what_the_decoder_keeps() {
    let d = common::temp_dir("store");
    let mut rng = Rng(17);
    let e = entries(&mut rng);
    for f in Format::WRITABLE {
        let mut file = encode(f, &e);
        let at = file.len() / 3;
        file[at] ^= 0x10;
        let p = d.path().join(format!("{f}.bin"));
        std::fs::write(&p, &file).unwrap();
        let decoded = format::decode(&file).unwrap();
        let s = Store::open(
            &p,
            Options {
                read_only: true,
                ..Options::default()
            },
        )
        .unwrap();
        let damage = &s.report().damage;
        assert_eq!(
            (damage.intact, damage.entries_dropped, damage.bytes_ignored),
            (
                decoded.damage.intact,
                decoded.damage.entries_dropped,
                decoded.damage.bytes_ignored
            ),
            "{f}"
        );
        // The store may add what it did about it (a file with nothing left is read as empty).
        assert!(damage.notes.starts_with(&decoded.damage.notes), "{f}");
        assert_eq!(s.len(), decoded.entries.len(), "{f}");
        for entry in &decoded.entries {
            let key = &file[entry.key.clone()];
            assert_eq!(s.get(key).as_deref(), Some(entry.value.bytes(&file)), "{f}");
        }
    }
}

#[test]
fn a_file_larger_than_a_32_bit_address_space_is_refused_not_truncated() {
    // What a 32-bit target (armv7 Android) can allocate: isize::MAX there.
    let max32 = i32::MAX as u64;
    for len in [
        max32 + 1,
        u64::from(u32::MAX),
        u64::from(u32::MAX) + 1,
        5 << 30,
        u64::MAX,
    ] {
        let e = buffer_len(len, max32).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        let msg = e.to_string();
        assert!(
            msg.contains(&len.to_string()) && msg.contains("refused"),
            "{msg}"
        );
    }
    assert_eq!(buffer_len(max32, max32).unwrap() as u64, max32);
    assert_eq!(buffer_len(0, max32).unwrap(), 0);
    // This platform's own limit.
    assert_eq!(MAX_BUFFER, isize::MAX as u64);
    assert!(buffer_len(MAX_BUFFER + 1, MAX_BUFFER).is_err());
    #[cfg(target_pointer_width = "64")]
    assert_eq!(buffer_len(5 << 30, MAX_BUFFER).unwrap(), 5 << 30);
    #[cfg(target_pointer_width = "32")]
    assert!(buffer_len(u64::from(u32::MAX), MAX_BUFFER).is_err());
}
