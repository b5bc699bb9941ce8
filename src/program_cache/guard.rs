//! The crash-loop guard: a small side file `<cache>.inflight` records which cached binary is in the
//! driver right now. Writing it costs one `pwrite` and no fsync (it only has to survive the process,
//! not the machine). A process that dies with a binary in flight leaves its key behind; the next open
//! evicts that entry, and counts consecutive such deaths to set a crash-looping cache aside.

use crate::io::{sibling, FileHandle, Fs};
use parking_lot::{Condvar, Mutex};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

const MAGIC: &[u8; 8] = b"MSGUARD2";

/// What the previous process left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The key whose binary was in the driver when the previous process died.
    pub in_flight: Option<Vec<u8>>,
    /// Consecutive starts that followed such a death (this one included).
    pub unclean_starts: u32,
}

/// Whether the process that left a mark still runs (this one included).
fn running(pid: u32) -> bool {
    pid == std::process::id() || crate::io::posix::process_alive(pid)
}

struct State {
    handle: Option<Box<dyn FileHandle>>,
    unclean: u32,
    generation: u64,
}

/// The guard of one cache file.
pub struct Guard {
    path: PathBuf,
    state: Mutex<State>,
}

/// The side file: magic, consecutive unclean starts, the marking process, the key in flight, CRC.
fn encode(unclean: u32, key: Option<&[u8]>) -> Vec<u8> {
    let key = key.unwrap_or_default();
    let mut v = Vec::with_capacity(24 + key.len());
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&unclean.to_le_bytes());
    v.extend_from_slice(&std::process::id().to_le_bytes());
    v.extend_from_slice(&(key.len() as u32).to_le_bytes());
    v.extend_from_slice(key);
    let crc = crc32fast::hash(&v);
    v.extend_from_slice(&crc.to_le_bytes());
    v
}

fn decode(b: &[u8]) -> Option<(u32, u32, Option<Vec<u8>>)> {
    let body = b.get(..b.len().checked_sub(4)?)?;
    let crc = u32::from_le_bytes(b[body.len()..].try_into().ok()?);
    if !body.starts_with(MAGIC) || crc32fast::hash(body) != crc || body.len() < 20 {
        return None;
    }
    let word = |at: usize| body[at..at + 4].try_into().ok().map(u32::from_le_bytes);
    let (unclean, pid, len) = (word(8)?, word(12)?, word(16)? as usize);
    let key = body.get(20..20usize.checked_add(len)?)?.to_vec();
    Some((unclean, pid, (!key.is_empty()).then_some(key)))
}

impl Guard {
    /// Opens the guard of `cache`, reporting what a crashed process left, and starts clean.
    pub fn open(fs: &dyn Fs, cache: &Path) -> (Arc<Guard>, Recovery) {
        Guard::open_with(fs, cache, running)
    }

    /// Like [`Guard::open`], with `alive` telling whether the process that left a mark still runs
    /// (a mark of a running process, this one included, is no crash).
    pub fn open_with(fs: &dyn Fs, cache: &Path, alive: fn(u32) -> bool) -> (Arc<Guard>, Recovery) {
        let path = sibling(cache, ".inflight");
        let previous = fs.read(&path).ok().flatten().and_then(|(b, _)| decode(&b));
        let recovery = match previous {
            Some((unclean, pid, Some(key))) if !alive(pid) => Recovery {
                in_flight: Some(key),
                unclean_starts: unclean.saturating_add(1),
            },
            Some((unclean, _, _)) => Recovery {
                in_flight: None,
                unclean_starts: unclean,
            },
            None => Recovery::default(),
        };
        // Without a writable guard file the cache still works, only unguarded.
        let handle = fs.create(&path).ok();
        let guard = Arc::new(Guard {
            path,
            state: Mutex::new(State {
                handle,
                unclean: recovery.unclean_starts,
                generation: 0,
            }),
        });
        guard.write(&mut guard.state.lock(), None);
        (guard, recovery)
    }

    /// The side file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, s: &mut State, key: Option<&[u8]>) {
        let bytes = encode(s.unclean, key);
        if let Some(h) = s.handle.as_mut() {
            // A failed write only weakens the guard; the cache itself is unaffected.
            let ok = h.write_at(0, &bytes).is_ok() && h.set_len(bytes.len() as u64).is_ok();
            if !ok {
                s.handle = None;
            }
        }
    }

    /// Records that the binary of `key` is being handed to the driver.
    pub fn mark(&self, key: &[u8]) -> u64 {
        let mut s = self.state.lock();
        s.generation += 1;
        self.write(&mut s, Some(key));
        s.generation
    }

    /// Records that the driver returned: nothing in flight; `healthy` also ends a crash loop.
    pub fn clear(&self, healthy: bool) {
        let mut s = self.state.lock();
        s.generation += 1;
        if healthy {
            s.unclean = 0;
        }
        self.write(&mut s, None);
    }

    fn clear_if(&self, generation: u64) {
        let mut s = self.state.lock();
        if s.generation == generation {
            s.unclean = 0;
            self.write(&mut s, None);
        }
    }

    /// Marks `key` in flight for `window` only: for callers that never see the driver return (the
    /// MACE drop-in builds right after `Find`), surviving the window counts as the driver returning.
    pub fn mark_for(self: &Arc<Self>, key: &[u8], window: Duration) {
        let generation = self.mark(key);
        timer().schedule(Instant::now() + window, Arc::downgrade(self), generation);
    }
}

/// One thread for the whole process that clears marks whose window has passed.
struct Timer {
    due: Mutex<Vec<(Instant, Weak<Guard>, u64)>>,
    wake: Condvar,
}

fn timer() -> &'static Timer {
    // Keyed by process id: a forked child has the parent's memory but not its thread.
    static TIMER: Mutex<Option<(u32, &'static Timer)>> = Mutex::new(None);
    let mut slot = TIMER.lock();
    let pid = std::process::id();
    if let Some((owner, t)) = *slot {
        if owner == pid {
            return t;
        }
    }
    let t: &'static Timer = Box::leak(Box::new(Timer {
        due: Mutex::new(Vec::new()),
        wake: Condvar::new(),
    }));
    // Without a thread, marks stay until the next mark or clear, which is only more cautious.
    let _ = std::thread::Builder::new()
        .name("mace-storage-guard".into())
        .spawn(move || t.run());
    *slot = Some((pid, t));
    t
}

impl Timer {
    fn schedule(&self, at: Instant, guard: Weak<Guard>, generation: u64) {
        let mut due = self.due.lock();
        // Only the newest mark of a guard matters; older ones are stale by generation anyway.
        due.retain(|(_, g, _)| !Weak::ptr_eq(g, &guard));
        due.push((at, guard, generation));
        self.wake.notify_one();
    }

    fn run(&self) {
        let mut due = self.due.lock();
        loop {
            let now = Instant::now();
            let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut *due)
                .into_iter()
                .partition(|d| d.0 <= now);
            *due = waiting;
            if !ready.is_empty() {
                drop(due);
                for (_, g, generation) in ready {
                    if let Some(g) = g.upgrade() {
                        g.clear_if(generation);
                    }
                }
                due = self.due.lock();
                continue;
            }
            match due.iter().map(|d| d.0).min() {
                Some(next) => {
                    self.wake.wait_until(&mut due, next);
                }
                None => self.wake.wait(&mut due),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::sim::SimFs;

    /// Every mark is treated as left by a dead process (they are all this process's here).
    fn dead(_: u32) -> bool {
        false
    }

    #[test]
    fn a_death_in_flight_is_reported_and_counted() {
        let fs = SimFs::new();
        let cache = Path::new("c.bin");
        let (g, r) = Guard::open(&fs, cache);
        assert_eq!(r, Recovery::default());
        g.mark(b"prog");
        // A mark of this (running) process is no crash.
        assert_eq!(Guard::open(&fs.snapshot(), cache).1, Recovery::default());
        drop(g); // the process dies with "prog" in the driver
        let open_dead = |fs: &SimFs| Guard::open_with(fs, cache, dead);
        let (g, r) = open_dead(&fs);
        assert_eq!(r.in_flight.as_deref(), Some(&b"prog"[..]));
        assert_eq!(r.unclean_starts, 1);
        g.mark(b"prog2");
        let (g, r) = open_dead(&fs);
        assert_eq!(r.unclean_starts, 2);
        // A driver that returns ends the loop.
        g.mark(b"x");
        g.clear(true);
        let (_, r) = open_dead(&fs);
        assert_eq!(r, Recovery::default());
    }

    #[test]
    fn a_mark_expires_after_its_window() {
        let fs = SimFs::new();
        let cache = Path::new("w.bin");
        let (g, _) = Guard::open(&fs, cache);
        g.mark_for(b"soon", Duration::from_millis(30));
        let (g2, r) = Guard::open_with(&fs.snapshot(), cache, dead);
        assert_eq!(r.in_flight.as_deref(), Some(&b"soon"[..]));
        drop(g2);
        std::thread::sleep(Duration::from_millis(300));
        let (_, r) = Guard::open_with(&fs, cache, dead);
        assert_eq!(r, Recovery::default());
        drop(g);
    }

    #[test]
    fn garbage_in_the_side_file_is_ignored() {
        let fs = SimFs::new();
        fs.write_file("g.bin.inflight", b"\x00\x01 not a guard");
        let (_, r) = Guard::open(&fs, Path::new("g.bin"));
        assert_eq!(r, Recovery::default());
    }
}
