//! Two real processes flushing different keys into one file at the same time: the process lock and
//! the merge under it keep both sets.

mod common;

use mace_storage::format::decode;
use mace_storage::store::{Options, Store, Value};
use std::process::Command;

const ROLE: &str = "MACE_STORAGE_TEST_WRITER";
const KEYS: usize = 40;

/// In a child: put this writer's keys one flush at a time; in the parent: run two children at once.
#[test]
fn two_processes_flushing_different_keys_keep_both() {
    if let Ok(role) = std::env::var(ROLE) {
        let (path, name) = role.split_once('|').unwrap();
        let s = Store::open(path, Options::default()).unwrap();
        for i in 0..KEYS {
            let k = format!("{name}_{i:03}");
            s.put(k.as_bytes(), Value::copy_from(k.repeat(50).as_bytes()))
                .unwrap();
            s.flush().unwrap();
        }
        assert!(s.stats().process_lock);
        return;
    }
    let dir = common::temp_dir("multiprocess");
    let path = dir.path().join("mace_cl_compiled_program.bin");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = ["alpha", "beta"]
        .iter()
        .map(|name| {
            Command::new(&exe)
                .args([
                    "two_processes_flushing_different_keys_keep_both",
                    "--exact",
                    "--nocapture",
                ])
                .env(ROLE, format!("{}|{name}", path.display()))
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let bytes = std::fs::read(&path).unwrap();
    let d = decode(&bytes).unwrap();
    assert!(d.damage.intact, "{:?}", d.damage);
    assert_eq!(d.entries.len(), 2 * KEYS);
    for e in &d.entries {
        let k = &bytes[e.key.clone()];
        assert_eq!(e.value.bytes(&bytes), k.repeat(50).as_slice());
    }
}
