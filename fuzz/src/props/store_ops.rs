//! The `store_ops` target: operation sequences on a store over `SimFs`, against a model.

use super::{Input, KEY_POOL};
use mace_storage::format::{Format, ValueKind};
use mace_storage::io::sim::{FailKind, Fate, SimFs, Unsynced};
use mace_storage::store::{Options, Store, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// EIO, without a `libc` dependency.
const EIO: i32 = 5;
/// ENOSPC.
const ENOSPC: i32 = 28;

/// The formats a store_ops input can pick (checked-1.1, the default, most often).
const STORE_FORMATS: [Format; 8] = [
    Format::Checked11,
    Format::Checked11,
    Format::Checked11,
    Format::Checked11,
    Format::Checked10,
    Format::Checked10,
    Format::Mace10,
    Format::Mace11,
];

/// A store's entries as key -> value.
pub type State = BTreeMap<Vec<u8>, Vec<u8>>;

/// The store and what it must hold.
struct Harness {
    fs: SimFs,
    format: Format,
    store: Option<Store>,
    /// What the store must hold now.
    current: State,
    /// The states the file may hold after a crash: the last committed one, and what each flush that
    /// failed since then tried to commit (it may have got through).
    possible: Vec<State>,
    /// Whether a put, remove or clear changed the state since the last open or flush.
    changed: bool,
    /// The filesystem calls of the last flush.
    last_flush: Vec<String>,
    /// Whether the file is as a completed write left it: a flush that wrote succeeded since the last
    /// failed flush, and no crash or restart found it damaged since.
    clean: bool,
    log: Vec<String>,
}

const PATH: &str = "dir/cache.bin";

impl Harness {
    fn open(&mut self) -> &Store {
        let opts = Options {
            format: self.format,
            read_only: false,
            fs: Arc::new(self.fs.clone()),
            ..Options::default()
        };
        self.store = None;
        let store = Store::open(Path::new(PATH), opts)
            .unwrap_or_else(|e| panic!("open failed: {e}\n{}", self.log.join("\n")));
        self.store.insert(store)
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("open")
    }

    fn state_of(&self) -> State {
        self.store()
            .entries()
            .into_iter()
            .map(|(k, v)| (k, v.to_vec()))
            .collect()
    }

    fn fail(&self, what: &str) -> ! {
        panic!(
            "{what}\nops:\n  {}\nfs trace of the last flush:\n  {}",
            self.log.join("\n  "),
            self.last_flush.join("\n  ")
        )
    }

    /// After any op: the store holds exactly the model's state.
    fn check_current(&self) {
        let got = self.state_of();
        if got != self.current {
            self.fail(&format!(
                "store differs from the model:\n  store {}\n  model {}",
                show(&got),
                show(&self.current)
            ));
        }
        let s = self.store();
        assert_eq!(s.len(), self.current.len());
        for k in KEY_POOL {
            assert_eq!(
                s.get(k).map(|v| v.to_vec()),
                self.current.get(k).cloned(),
                "get({:?})",
                String::from_utf8_lossy(k)
            );
        }
    }

    /// Reopens after a crash (`crashed`) or a plain restart, and checks what the file held.
    fn reopen(&mut self, crashed: bool) {
        self.fs.clear_faults();
        self.open();
        let got = self.state_of();
        if !self.possible.contains(&got) {
            self.fail(&format!(
                "after {}: {} is none of the states the file may hold:\n  {}",
                if crashed { "a crash" } else { "a restart" },
                show(&got),
                self.possible
                    .iter()
                    .map(show)
                    .collect::<Vec<_>>()
                    .join("\n  ")
            ));
        }
        let report = self.store().report().clone();
        if self.clean && self.possible.len() == 1 && !report.damage.intact {
            self.fail(&format!(
                "the file was damaged though the last flush succeeded: {:?}",
                report.damage
            ));
        }
        self.clean &= report.damage.intact;
        if crashed {
            // Everything a crash leaves is durable.
            self.possible = vec![got.clone()];
        }
        self.current = got;
        self.changed = false;
    }

    /// A flush that succeeded commits the current state; `before` is [`Harness::flushes`] before it.
    fn flushed(&mut self, before: u64) {
        self.last_flush = self.fs.trace();
        let wrote = self.flushes() > before;
        if self.changed || self.possible.len() == 1 {
            self.possible = vec![self.current.clone()];
        }
        self.clean |= wrote;
        self.changed = false;
    }

    /// How many flushes of the store wrote something.
    fn flushes(&self) -> u64 {
        self.store().stats().flushes
    }
}

fn show(s: &State) -> String {
    let items: Vec<String> = s
        .iter()
        .map(|(k, v)| format!("{:?}:{}B", String::from_utf8_lossy(k), v.len()))
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// A power loss whose fate for each unsynced operation comes from the input.
fn crash_with(fs: &SimFs, inp: &mut Input<'_>) -> SimFs {
    fs.crash(&mut |_: &Unsynced<'_>| match inp.byte() % 4 {
        0 | 1 => Fate::Keep,
        2 => Fate::Drop,
        _ => Fate::Torn(u64::from(inp.byte()) | u64::from(inp.byte()) << 8),
    })
}

/// A sequence of put/remove/clear/flush/restart/crash operations decoded from fuzz bytes, on a
/// simulated filesystem, checked against a map: after every operation the store holds the map's
/// state; a flush without injected faults succeeds; a flush with one failing call fails exactly when
/// the call was reached and keeps the changes in memory; after a restart or a power loss (every
/// unsynced write kept, dropped, or chosen by the input, torn at sectors) the store holds the state of
/// the last successful flush or, if flushes failed since, one of the states they tried to commit.
pub fn run_store_ops(data: &[u8]) {
    let mut inp = Input::new(data);
    let format = STORE_FORMATS[usize::from(inp.byte()) % STORE_FORMATS.len()];
    let mut h = Harness {
        fs: SimFs::new(),
        format,
        store: None,
        current: State::new(),
        possible: vec![State::new()],
        changed: false,
        clean: true,
        last_flush: Vec::new(),
        log: vec![format!("format {format}")],
    };
    h.open();
    let mut ops = 0;
    while !inp.done() && ops < 48 {
        ops += 1;
        let op = inp.byte();
        match op % 16 {
            0..=4 => {
                let key = inp.key();
                let value = inp.value();
                let kind = if op >= 128 {
                    ValueKind::U32s
                } else {
                    ValueKind::Bytes
                };
                h.log.push(format!(
                    "put {:?} {}B {kind:?}",
                    String::from_utf8_lossy(&key),
                    value.len()
                ));
                h.store()
                    .put_kind(&key, Value::copy_from(&value), kind)
                    .expect("put");
                // Only a real change must be made durable by the next flush: a flush with nothing to
                // commit does no I/O, so it cannot make durable a state it merely read.
                if let Some(old) = h.current.insert(key, value.clone()) {
                    h.changed |= old != value;
                } else {
                    h.changed = true;
                }
            }
            5 | 6 => {
                let key = inp.key();
                h.log
                    .push(format!("remove {:?}", String::from_utf8_lossy(&key)));
                let was = h.store().remove(&key).expect("remove");
                assert_eq!(was, h.current.remove(&key).is_some(), "remove's answer");
                h.changed |= was;
            }
            7 => {
                h.log.push("clear".into());
                h.store().clear().expect("clear");
                h.changed |= !h.current.is_empty();
                h.current.clear();
            }
            8..=10 => {
                h.log.push("flush".into());
                h.fs.reset_calls();
                let before = h.flushes();
                if let Err(e) = h.store().flush() {
                    h.fail(&format!("flush failed without a fault: {e}"));
                }
                h.flushed(before);
            }
            11 => {
                h.log.push("restart".into());
                h.reopen(false);
            }
            12 => {
                h.log.push("crash, all unsynced writes lost".into());
                h.store = None;
                h.fs = h.fs.crash_drop_all();
                h.reopen(true);
            }
            13 => {
                h.log.push("crash, all unsynced writes kept".into());
                h.store = None;
                h.fs = h.fs.crash_keep_all();
                h.reopen(true);
            }
            14 => {
                h.log
                    .push("crash, unsynced writes as the input says".into());
                h.store = None;
                h.fs = crash_with(&h.fs, &mut inp);
                h.reopen(true);
            }
            _ => {
                let n = 1 + u64::from(inp.byte() % 32);
                let kind = match inp.byte() % 4 {
                    0 => FailKind::Crash,
                    1 => FailKind::Once(ENOSPC),
                    _ => FailKind::Once(EIO),
                };
                h.log.push(format!("flush with call {n} failing: {kind:?}"));
                h.fs.reset_calls();
                h.fs.fail_at(n, kind);
                let before = h.flushes();
                let result = h.store().flush();
                let reached = h.fs.calls() >= n;
                h.fs.clear_faults();
                h.last_flush = h.fs.trace();
                // Moving an unreadable file aside is best effort: the rewrite replaces it anyway.
                let best_effort = h
                    .last_flush
                    .iter()
                    .any(|l| l.contains("=> injected") && l.contains(".corrupt"));
                if result.is_err() != reached && !(result.is_ok() && best_effort) {
                    h.fail(&format!(
                        "flush returned {result:?} though the failing call was {}reached",
                        if reached { "" } else { "not " }
                    ));
                }
                if result.is_ok() {
                    h.flushed(before);
                } else {
                    h.possible.push(h.current.clone());
                    h.clean = false;
                }
                if kind == FailKind::Crash {
                    // The process died in the flush (or right after it): power loss, restart.
                    h.store = None;
                    h.fs = crash_with(&h.fs, &mut inp);
                    h.reopen(true);
                }
            }
        }
        h.check_current();
    }
}
