//! The storage benchmark: every figure of ours next to the plain operation it replaces, measured in
//! the same run on the same files, as a ratio. `cargo bench --bench storage`, or `scripts/bench.sh`
//! (which adds the C++ drop-in's figures and prints one table). See docs/PERFORMANCE.md.
//!
//! Options (after `--`): `--reps N` (default 7; every figure is the median of N), `--dir DIR`
//! (where the files go; default a fresh directory under the system temp dir), `--keep` (leave the
//! files, for the drop-in benchmark), `--warm-only` (never drop the page cache).
//! Internal: `--rss MODE FILE` opens FILE (`open`: `Store::open`, `read`: a bare read) and prints the
//! peak resident set size before and after, so the parent measures it in a clean process.

// The integration tests' helpers (building encoder entries); test-only like this benchmark.
#[path = "../tests/common/mod.rs"]
mod common;

use mace_storage::format::{self, Format, WriteParams, PLATFORM_INFO_KEY};
use mace_storage::store::{Options, Store, Value, Verify};
use std::collections::HashMap;
use std::fs::File;
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Entries in the cache: binaries, their hashes, and the two device keys.
const ENTRIES: usize = 300;
/// Bytes of program binaries in the cache.
const TOTAL: usize = 30_000_000;
/// Binary sizes, as OpenCL drivers produce for MACE's kernels.
const MIN_BIN: usize = 20_000;
const MAX_BIN: usize = 300_000;
/// The entry added by the append measurement.
const APPEND_LEN: usize = 100_000;

const DEVICE_NAME_KEY: &[u8] = b"mace_opencl_precompiled_device_name_key";

/// SplitMix64: deterministic data, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
}

const KERNELS: &[&str] = &[
    "activation",
    "addn",
    "batch_norm",
    "batch_to_space",
    "bias_add",
    "buffer_to_image",
    "buffer_transform",
    "channel_shuffle",
    "concat",
    "conv_2d",
    "conv_2d_1x1",
    "conv_2d_3x3",
    "crop",
    "deconv_2d",
    "depth_to_space",
    "depthwise_conv2d",
    "eltwise",
    "fully_connected",
    "image_to_buffer",
    "matmul",
    "pad",
    "pooling",
    "reduce",
    "resize_bilinear",
    "softmax",
    "space_to_batch",
    "split",
    "winograd_transform_2x2",
];

const OPTIONS: &[&str] = &[
    "-DBIAS",
    "-DUSE_RELU",
    "-DUSE_RELUX",
    "-DUSE_TANH",
    "-DUSE_SIGMOID",
    "-DUSE_LEAKYRELU",
    "-DNON_UNIFORM_WORK_GROUP",
    "-DOUT_OF_RANGE_CHECK",
    "-DSTRIDE_1",
    "-DSTRIDE_2",
    "-DPOOL_TYPE=1",
    "-DELTWISE_TYPE=0",
    "-DINPUT_TYPE=1",
];

/// Program keys as MACE builds them: the program name, then " " + option for each build option,
/// sorted.
fn program_key(rng: &mut Rng) -> Vec<u8> {
    let name = KERNELS[rng.below(KERNELS.len())];
    let half = rng.below(2) == 0;
    let mut opts: Vec<String> = vec![
        format!("-D{name}={name}"),
        format!("-DCMD_DATA_TYPE={}", if half { "h" } else { "f" }),
        format!("-DDATA_TYPE={}", if half { "half" } else { "float" }),
        format!("-DIN_DATA_TYPE={}", if half { "half" } else { "float" }),
        format!("-DOUT_DATA_TYPE={}", if half { "half" } else { "float" }),
    ];
    for o in OPTIONS {
        if rng.below(3) == 0 {
            opts.push((*o).to_string());
        }
    }
    opts.sort();
    let mut key = name.to_string();
    for o in opts {
        key.push(' ');
        key.push_str(&o);
    }
    key.into_bytes()
}

/// Sizes in [MIN_BIN, MAX_BIN] adding up to `total`.
fn binary_sizes(rng: &mut Rng, n: usize, total: usize) -> Vec<usize> {
    let span = (MAX_BIN - MIN_BIN) as f64;
    let mut s: Vec<f64> = (0..n)
        .map(|_| MIN_BIN as f64 + span * rng.unit().sqrt())
        .collect();
    for _ in 0..100 {
        let f = total as f64 / s.iter().sum::<f64>();
        for x in &mut s {
            *x = (*x * f).clamp(MIN_BIN as f64, MAX_BIN as f64);
        }
    }
    let mut sizes: Vec<usize> = s.iter().map(|&x| x as usize).collect();
    let mut rest = total as i64 - sizes.iter().sum::<usize>() as i64;
    for x in &mut sizes {
        let room = if rest > 0 { MAX_BIN - *x } else { *x - MIN_BIN } as i64;
        let d = rest.signum() * rest.abs().min(room);
        *x = (*x as i64 + d) as usize;
        rest -= d;
    }
    sizes
}

/// The cache MACE 1.1 leaves after running a model: binaries, `program_hash_ ` entries, device keys.
fn cache() -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut rng = Rng(0x6d61_6365);
    let programs = (ENTRIES - 2) / 2;
    let sizes = binary_sizes(&mut rng, programs, TOTAL);
    let mut keys = std::collections::BTreeSet::new();
    while keys.len() < programs {
        keys.insert(program_key(&mut rng));
    }
    let mut out = Vec::with_capacity(ENTRIES);
    for (key, size) in keys.into_iter().zip(sizes) {
        let mut hash_key = b"program_hash_ ".to_vec();
        hash_key.extend_from_slice(&key);
        let hash = format!("{:016x}{:04x}", rng.next(), rng.next() & 0xffff);
        out.push((hash_key, hash.into_bytes()));
        out.push((key, rng.bytes(size)));
    }
    out.push((
        PLATFORM_INFO_KEY.to_vec(),
        b"QUALCOMM Snapdragon(TM), FULL_PROFILE, OpenCL 2.0 QUALCOMM build: commit #3dad7f8ed7 \
          changeid #I3ca4b7cb22 Date: 12/23/19 Mon Local Branch:  Remote Branch: \
          refs/tags/AU_LINUX_ANDROID_LA.UM.8.1.R1.10.00.00.597.054 Android Build Version: 10, 1.1.1"
            .to_vec(),
    ));
    out.push((DEVICE_NAME_KEY.to_vec(), b"Adreno(TM) 640".to_vec()));
    assert_eq!(out.len(), ENTRIES);
    out
}

fn encode(format: Format, entries: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    format::encode(format, &common::pairs_in(entries), WriteParams::next(0))
        .expect("encode")
        .out
        .to_vec()
}

fn write_synced(path: &Path, bytes: &[u8]) {
    let mut f = File::create(path).expect("create");
    f.write_all(bytes).expect("write");
    f.sync_all().expect("fsync");
}

fn sync() {
    // SAFETY: sync() takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// Empties the page cache (needs root); false when the kernel refuses.
fn drop_caches() -> bool {
    sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One row: ours, the baseline, their ratio (median of the per-repetition ratios), the target.
struct Row {
    name: String,
    ours: String,
    base: String,
    ratio: f64,
    target: f64,
}

impl Row {
    fn print(&self) {
        println!(
            "| {} | {} | {} | {:.2}x | <= {}x | {} |",
            self.name,
            self.ours,
            self.base,
            self.ratio,
            self.target,
            if self.ratio <= self.target {
                "yes"
            } else {
                "no"
            }
        );
    }
}

/// Runs `ours` and `base` `reps` times, alternating (each after `prep`), and makes a row of the
/// medians in milliseconds.
fn compare(
    name: &str,
    base_name: &str,
    target: f64,
    reps: usize,
    mut prep: impl FnMut(),
    mut ours: impl FnMut() -> Duration,
    mut base: impl FnMut() -> Duration,
) -> Row {
    let (mut o, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..reps {
        // Alternate which goes first, so neither always meets the other's leftovers.
        let (to, tb) = if i % 2 == 0 {
            prep();
            let to = ours();
            prep();
            (to, base())
        } else {
            prep();
            let tb = base();
            prep();
            (ours(), tb)
        };
        o.push(ms(to));
        b.push(ms(tb));
        r.push(ms(to) / ms(tb));
    }
    Row {
        name: name.to_string(),
        ours: format!("{:.2} ms", median(&mut o)),
        base: format!("{base_name} {:.2} ms", median(&mut b)),
        ratio: median(&mut r),
        target,
    }
}

fn time<T>(f: impl FnOnce() -> T) -> Duration {
    let t = Instant::now();
    let v = f();
    let d = t.elapsed();
    drop(black_box(v));
    d
}

/// Opens with every value verified at open, as the rows that measure verification need.
fn open(path: &Path) -> Store {
    open_verified(path, Verify::Eager)
}

fn open_verified(path: &Path, verify: Verify) -> Store {
    let s = Store::open(
        path,
        Options {
            verify,
            ..Options::default()
        },
    )
    .expect("open");
    assert!(s.report().damage.intact, "{:?}", s.report().damage);
    assert_eq!(s.len(), ENTRIES);
    s
}

/// Peak RSS (VmHWM) of this process in bytes.
fn vm_hwm() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM")
        * 1024
}

/// The child side of the RSS measurement.
fn rss_child(mode: &str, path: &Path) {
    let before = vm_hwm();
    match mode {
        "open" => {
            let s = Store::open(path, Options::default()).expect("open");
            let after = vm_hwm();
            black_box(&s);
            println!("{before} {after}");
        }
        "lazy" => {
            let s = Store::open(
                path,
                Options {
                    verify: Verify::Lazy,
                    ..Options::default()
                },
            )
            .expect("open");
            let after = vm_hwm();
            black_box(&s);
            println!("{before} {after}");
        }
        "read" => {
            let b = std::fs::read(path).expect("read");
            let after = vm_hwm();
            black_box(&b);
            println!("{before} {after}");
        }
        _ => panic!("unknown --rss mode {mode}"),
    }
}

/// Growth of peak RSS while a fresh process opens `path` in `mode`.
fn rss_growth(mode: &str, path: &Path) -> u64 {
    let out = std::process::Command::new(std::env::current_exe().expect("current_exe"))
        .arg("--rss")
        .arg(mode)
        .arg(path)
        .output()
        .expect("run the RSS child");
    assert!(out.status.success(), "{out:?}");
    let s = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = s
        .split_whitespace()
        .map(|x| x.parse().expect("number"))
        .collect();
    v[1] - v[0]
}

fn mb(n: u64) -> f64 {
    n as f64 / 1e6
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--rss") {
        rss_child(&args[i + 1], Path::new(&args[i + 2]));
        return;
    }
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let reps: usize = arg("--reps").map_or(7, |r| r.parse().expect("--reps N"));
    let keep = args.iter().any(|a| a == "--keep");
    let own_dir = arg("--dir").is_none();
    let dir = arg("--dir").map_or_else(
        || std::env::temp_dir().join(format!("mace-storage-bench-{}", std::process::id())),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).expect("create the bench directory");
    let cold = !args.iter().any(|a| a == "--warm-only") && drop_caches();

    let entries = cache();
    let checked = encode(Format::Checked11, &entries);
    let stock = encode(Format::Mace11, &entries);
    let checked_path = dir.join("checked-1.1.bin");
    let stock_path = dir.join("mace-1.1.bin");
    write_synced(&checked_path, &checked);
    write_synced(&stock_path, &stock);
    let value_bytes: usize = entries.iter().map(|e| e.1.len()).sum();
    println!(
        "mace-storage benchmark: {} entries, {:.1} MB of values; checked-1.1 file {:.2} MB, \
         mace-1.1 file {:.2} MB; median of {reps} repetitions",
        entries.len(),
        mb(value_bytes as u64),
        mb(checked.len() as u64),
        mb(stock.len() as u64),
    );
    println!(
        "page cache: {}",
        if cold {
            "cold rows drop it (echo 3 > /proc/sys/vm/drop_caches) before every read; warm rows read it twice first"
        } else {
            "warm only (it cannot be dropped here, or --warm-only)"
        }
    );
    println!();
    println!("| measurement | ours | baseline | ratio | target | met |");
    println!("|---|---|---|---|---|---|");

    // Open + verify every checksum vs a bare read of the same file.
    for (label, path) in [("checked-1.1", &checked_path), ("mace-1.1", &stock_path)] {
        let mut modes = vec![("warm", false)];
        if cold {
            modes.insert(0, ("cold", true));
        }
        for (cache_label, drop) in modes {
            let prep = || {
                if drop {
                    drop_caches();
                } else {
                    black_box(std::fs::read(path).expect("read"));
                }
            };
            compare(
                &format!("open + verify {label} ({cache_label} cache)"),
                "read()",
                1.5,
                reps,
                prep,
                || time(|| open(path)),
                || time(|| std::fs::read(path).expect("read")),
            )
            .print();
        }
    }

    // Lazily verified open: `Store::open` + `get` of the values a model uses (30 of the 300,
    // spread over the file), vs opening the file and `pread`ing exactly those values; and `open` +
    // `get` of every entry, vs a bare read.
    {
        let decoded = format::decode(&checked).expect("decode");
        let mut wanted: Vec<(Vec<u8>, std::ops::Range<usize>)> = decoded
            .entries
            .iter()
            .filter_map(|e| match &e.value {
                format::ValueRef::Slice(r) => Some((checked[e.key.clone()].to_vec(), r.clone())),
                format::ValueRef::Owned(_) => None,
            })
            .collect();
        wanted.sort_by_key(|w| w.1.start);
        let used: Vec<(Vec<u8>, std::ops::Range<usize>)> = wanted
            .iter()
            .step_by(wanted.len() / 30)
            .take(30)
            .cloned()
            .collect();
        assert_eq!(used.len(), 30);
        let used_bytes: usize = used.iter().map(|u| u.1.len()).sum();
        let all_keys: Vec<Vec<u8>> = entries.iter().map(|e| e.0.clone()).collect();
        let path = &checked_path;
        let mut modes = vec![("warm", false)];
        if cold {
            modes.insert(0, ("cold", true));
        }
        for (cache_label, drop) in modes {
            let prep = || {
                if drop {
                    drop_caches();
                } else {
                    black_box(std::fs::read(path).expect("read"));
                }
            };
            compare(
                &format!(
                    "lazy open + get 30 of 300 ({:.1} MB of values, {cache_label} cache)",
                    mb(used_bytes as u64)
                ),
                "open + pread of the 30",
                1.5,
                reps,
                prep,
                || {
                    time(|| {
                        let s = open_verified(path, Verify::Lazy);
                        for (k, _) in &used {
                            black_box(s.get(k).expect("hit"));
                        }
                        s
                    })
                },
                || {
                    time(|| {
                        use std::os::unix::fs::FileExt;
                        let f = File::open(path).expect("open");
                        used.iter()
                            .map(|(_, r)| {
                                let mut v = vec![0u8; r.len()];
                                f.read_exact_at(&mut v, r.start as u64).expect("pread");
                                v
                            })
                            .collect::<Vec<_>>()
                    })
                },
            )
            .print();
            compare(
                &format!("lazy open + get of every entry, checked-1.1 ({cache_label} cache)"),
                "read()",
                1.5,
                reps,
                prep,
                || {
                    time(|| {
                        let s = open_verified(path, Verify::Lazy);
                        for k in &all_keys {
                            black_box(s.get(k).expect("hit"));
                        }
                        s
                    })
                },
                || time(|| std::fs::read(path).expect("read")),
            )
            .print();
        }
    }

    // Full flush (atomic replace) vs write + fsync of the same bytes to a new file.
    {
        let path = dir.join("full.bin");
        write_synced(&path, &checked);
        let s = open(&path);
        let target_key = entries[entries.len() / 2].0.clone();
        let new_file = dir.join("plain-write.bin");
        let mut rng = Rng(7);
        let len = entries[entries.len() / 2].1.len();
        let mut row = compare(
            "full flush (rewrite, atomic)",
            "write+fsync",
            1.2,
            reps,
            || {
                let _ = std::fs::remove_file(&new_file);
                sync();
            },
            || {
                s.put(&target_key, Value::from_vec(rng.bytes(len)))
                    .expect("put");
                time(|| s.flush().expect("flush"))
            },
            || {
                let bytes = std::fs::read(&path).expect("read");
                time(|| write_synced(&new_file, &bytes))
            },
        );
        assert_eq!(s.stats().rewrites as usize, reps);
        row.name = format!("{} {:.1} MB", row.name, mb(checked.len() as u64));
        row.print();
        let _ = std::fs::remove_file(&new_file);
    }

    // Append one 100 KB entry vs write + fsync of 100 KB.
    {
        let path = dir.join("append.bin");
        write_synced(&path, &checked);
        let s = open(&path);
        let new_file = dir.join("plain-write.bin");
        let mut rng = Rng(11);
        let delta = rng.bytes(APPEND_LEN);
        let mut n = 0;
        let row = compare(
            "add one 100 KB entry + flush (append)",
            "write+fsync 100 KB",
            2.0,
            reps,
            || {
                let _ = std::fs::remove_file(&new_file);
                sync();
            },
            || {
                n += 1;
                let key = format!("conv_2d_1x1 -DBENCH_APPEND={n} -DCMD_DATA_TYPE=f");
                s.put(key.as_bytes(), Value::from_vec(rng.bytes(APPEND_LEN)))
                    .expect("put");
                time(|| s.flush().expect("flush"))
            },
            || time(|| write_synced(&new_file, &delta)),
        );
        assert_eq!(s.stats().appends as usize, reps);
        row.print();
        let _ = std::fs::remove_file(&new_file);
    }

    // Get latency: Store::get of random existing keys, vs a plain HashMap of the same entries; the
    // store opened lazily, every value already verified by an earlier get.
    {
        let s = open_verified(&checked_path, Verify::Lazy);
        for (k, _) in &entries {
            s.get(k).expect("hit");
        }
        let map: HashMap<Vec<u8>, Vec<u8>> = entries.iter().cloned().collect();
        let mut rng = Rng(13);
        let order: Vec<&[u8]> = (0..4096)
            .map(|_| entries[rng.below(entries.len())].0.as_slice())
            .collect();
        const BATCH: usize = 1000;
        let (mut o, mut b, mut r) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..501 {
            let keys = &order[(round * 7) % (order.len() - BATCH)..][..BATCH];
            let to = time(|| {
                for k in keys {
                    black_box(s.get(black_box(k)).expect("hit"));
                }
            });
            let tb = time(|| {
                for k in keys {
                    black_box(map.get(black_box(*k)).expect("hit"));
                }
            });
            let (to, tb) = (
                to.as_nanos() as f64 / BATCH as f64,
                tb.as_nanos() as f64 / BATCH as f64,
            );
            o.push(to);
            b.push(tb);
            r.push(to / tb);
        }
        let ours = median(&mut o);
        println!(
            "| get (random existing key; target <= 200 ns) | {ours:.0} ns | HashMap::get {:.0} ns | {:.2}x | <= 200 ns | {} |",
            median(&mut b),
            median(&mut r),
            if ours <= 200.0 { "yes" } else { "no" }
        );
    }

    // Peak RSS while opening, in a fresh process, relative to the file size.
    for (label, path, len) in [
        ("checked-1.1", &checked_path, checked.len()),
        ("mace-1.1", &stock_path, stock.len()),
    ] {
        let mut g: Vec<f64> = (0..3).map(|_| rss_growth("open", path) as f64).collect();
        let mut rb: Vec<f64> = (0..3).map(|_| rss_growth("read", path) as f64).collect();
        let (g, rb) = (median(&mut g), median(&mut rb));
        Row {
            name: format!("peak RSS growth during open, {label}"),
            ours: format!("{:.1} MB", g / 1e6),
            base: format!("file {:.1} MB (read(): {:.1} MB)", mb(len as u64), rb / 1e6),
            ratio: g / len as f64,
            target: 1.2,
        }
        .print();
    }

    // A lazy open of an intact checked-1.1 file reads no value: its peak is the map of keys.
    {
        let mut g: Vec<f64> = (0..3)
            .map(|_| rss_growth("lazy", &checked_path) as f64)
            .collect();
        let g = median(&mut g);
        Row {
            name: "peak RSS growth during a lazy open, checked-1.1".to_string(),
            ours: format!("{:.2} MB", g / 1e6),
            base: format!("file {:.1} MB", mb(checked.len() as u64)),
            ratio: g / checked.len() as f64,
            target: 0.1,
        }
        .print();
    }

    if keep {
        println!();
        println!("files kept in {}", dir.display());
    } else if own_dir {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        for name in ["checked-1.1.bin", "mace-1.1.bin", "full.bin", "append.bin"] {
            for suffix in ["", ".lock", ".tmp"] {
                let _ = std::fs::remove_file(dir.join(format!("{name}{suffix}")));
            }
        }
    }
}
