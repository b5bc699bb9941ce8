//! Stress: 2 processes x 8 threads mixing put/get/flush on one file, then 20 rounds in which one of
//! two writers is killed with SIGKILL at a random moment. Afterwards every acknowledged (flushed)
//! entry is there with at least its acknowledged version, and no value is torn.
//!
//! Each process writes keys of its own; a value encodes its key and version, so any value read can
//! be checked. A writer records `key version` in an acknowledgement file only after its flush
//! returned Ok (a process kill keeps what reached the page cache, so no fsync is needed for it).

mod common;

use mace_storage::store::{Options, Store, Value};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ROLE: &str = "MACE_STORAGE_TEST_STRESS";
const THREADS: usize = 8;
const SLOTS: u64 = 16;

/// The value of `key` at `version`: version, length, then bytes derived from both.
fn make(key: &str, version: u32) -> Vec<u8> {
    let seed = key
        .bytes()
        .fold(u64::from(version).wrapping_mul(0x9e37_79b9), |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    let len = 16 + (seed % 700) as usize;
    let mut v = Vec::with_capacity(len + 8);
    v.extend_from_slice(&version.to_le_bytes());
    v.extend_from_slice(&(len as u32).to_le_bytes());
    v.extend((0..len).map(|i| (seed >> (i % 57)) as u8 ^ i as u8));
    v
}

/// The version a value claims, if the value is exactly what `make` gives for it.
fn check(key: &str, v: &[u8]) -> Option<u32> {
    let version = u32::from_le_bytes(v.get(..4)?.try_into().ok()?);
    (make(key, version) == v).then_some(version)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// A writer process: THREADS threads putting, reading back and flushing until `ms` elapse.
fn writer(path: &str, name: &str, ms: u64, acks: &str) {
    let store = Arc::new(Store::open(path, Options::default()).unwrap());
    let acks = Arc::new(parking_lot::Mutex::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(acks)
            .unwrap(),
    ));
    let deadline = Instant::now() + Duration::from_millis(ms);
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, acks, name) = (store.clone(), acks.clone(), name.to_string());
            std::thread::spawn(move || {
                let mut rng = Rng(0x2545_f491_4f6c_dd1d
                    ^ ((t as u64 + 1) * 7919)
                    ^ u64::from(std::process::id()));
                let mut versions = vec![0u32; SLOTS as usize];
                let mut pending: Vec<(String, u32)> = Vec::new();
                while Instant::now() < deadline {
                    let slot = (rng.next() % SLOTS) as usize;
                    let key = format!("{name}_t{t}_{slot}");
                    versions[slot] += 1;
                    store
                        .put(key.as_bytes(), Value::from_vec(make(&key, versions[slot])))
                        .unwrap();
                    pending.push((key, versions[slot]));
                    let probe = (rng.next() % SLOTS) as usize;
                    if versions[probe] > 0 {
                        let key = format!("{name}_t{t}_{probe}");
                        let got = store.get(key.as_bytes()).expect("own key readable");
                        assert_eq!(check(&key, &got), Some(versions[probe]), "{key}");
                    }
                    if rng.next() % 6 == 0 && store.flush().is_ok() {
                        let lines: String = pending
                            .drain(..)
                            .map(|(k, v)| format!("{k} {v}\n"))
                            .collect();
                        acks.lock().write_all(lines.as_bytes()).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn spawn(path: &Path, name: &str, ms: u64, acks: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["stress_processes_and_kills", "--exact", "--nocapture"])
        .env(
            ROLE,
            format!("{}|{name}|{ms}|{}", path.display(), acks.display()),
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// Every acknowledged entry is there at its acknowledged version or later; no value is torn.
fn verify(path: &Path, acks: &Path) -> usize {
    let store = Store::open(path, Options::default()).unwrap();
    // A writer killed between writing an append's records and its commit record leaves them past
    // the last commit (the file is then not intact until the next flush rewrites it); no committed
    // entry may be lost.
    let damage = &store.report().damage;
    assert_eq!(damage.entries_dropped, 0, "{damage:?}");
    assert!(store.report().set_aside.is_none(), "{damage:?}");
    let mut acked: HashMap<String, u32> = HashMap::new();
    let text = std::fs::read_to_string(acks).unwrap_or_default();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(' ') {
            if let Ok(v) = v.parse::<u32>() {
                let e = acked.entry(k.to_string()).or_default();
                *e = (*e).max(v);
            }
        }
    }
    for (k, v) in store.entries() {
        let key = String::from_utf8(k).unwrap();
        assert!(check(&key, &v).is_some(), "torn or wrong value for {key}");
    }
    for (k, want) in &acked {
        let v = store
            .get(k.as_bytes())
            .unwrap_or_else(|| panic!("acknowledged {k} lost"));
        let got = check(k, &v).unwrap();
        assert!(
            got >= *want,
            "{k}: version {got} on disk, {want} acknowledged"
        );
    }
    acked.len()
}

#[test]
fn stress_processes_and_kills() {
    if let Ok(role) = std::env::var(ROLE) {
        let p: Vec<&str> = role.split('|').collect();
        writer(p[0], p[1], p[2].parse().unwrap(), p[3]);
        return;
    }
    let dir = common::temp_dir("stress");
    let path = dir.path().join("mace_cl_compiled_program.bin");
    let acks = dir.path().join("acks.txt");
    let started = Instant::now();
    // Two processes side by side, to the end.
    let mut both: Vec<Child> = ["a", "b"]
        .iter()
        .map(|n| spawn(&path, n, 2000, &acks))
        .collect();
    for c in &mut both {
        assert!(c.wait().unwrap().success());
    }
    let mut entries = verify(&path, &acks);
    // Kill one of two writers at a random moment, 20 times.
    let mut rng = Rng(0x1234_5678_9abc_def1 ^ u64::from(std::process::id()));
    for round in 0..20 {
        let mut victim = spawn(&path, &format!("k{round}"), 1000, &acks);
        let mut survivor = spawn(&path, &format!("s{round}"), 300, &acks);
        std::thread::sleep(Duration::from_millis(50 + rng.next() % 300));
        victim.kill().unwrap();
        victim.wait().unwrap();
        assert!(survivor.wait().unwrap().success());
        entries = verify(&path, &acks);
    }
    println!(
        "stress: {entries} acknowledged keys verified after 20 kills in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
