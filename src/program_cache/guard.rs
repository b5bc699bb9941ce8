//! The crash-loop guard. Before a cached binary goes to the driver, its key is written to this
//! process's own marker, `<cache>.inflight.<pid>-<start time>-<n>`, which the process holds locked
//! (an OFD lock, or `flock`) for as long as it lives; when the driver returns, the key is erased.
//! Writing a mark costs one `pwrite` and no fsync: it only has to survive the process.
//!
//! At the next open, a marker that nobody holds locked belongs to a process that is gone, whatever
//! its pid now names: the kernel drops a lock when its last descriptor closes, at exit or death.
//! Its key, if any, names the binary the driver died on. Where no lock can be taken, the owner is
//! recognised by pid *and* start time (`/proc/<pid>/stat` field 22) and boot id, never by pid alone.
//! A dead marker is consumed by whoever unlinks it (one unlink can succeed), so each crash is
//! counted and evicted exactly once, and no opener touches a marker of a running process.
//! Consecutive starts that found a crash are counted in `<cache>.inflight`, to set a crash-looping
//! cache aside.

use crate::io::side_files::{DEFAULT_LOCK_TIMEOUT, INFLIGHT, LOCK};
use crate::io::{parent_dir, sibling, FileHandle, Fs, LockKind, ProcessLock};
use parking_lot::{Condvar, Mutex};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

const COUNT_MAGIC: &[u8; 8] = b"MSGUARD3";
const MARK_MAGIC: &[u8; 8] = b"MSMARK01";

/// What crashed processes left behind, found by [`Guard::open`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// The keys whose binaries were in the driver when their processes died (each reported once).
    pub in_flight: Vec<Vec<u8>>,
    /// Consecutive starts that found such a death (this one included).
    pub unclean_starts: u32,
}

/// How the owner of a marker is told alive from gone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Liveness {
    /// No marker written yet.
    #[default]
    None,
    /// The kernel's lock on the marker (OFD lock or `flock`).
    Lock,
    /// Process id plus start time and boot id (no lock available on this filesystem).
    StartTime,
}

/// What a guard did, for the stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuardStats {
    /// Marks of dead processes with a binary in the driver, found and consumed at open.
    pub dead_marks: u64,
    /// Entries evicted because such a mark named them.
    pub evictions: u64,
    /// Marks of processes still running, found at open and left alone (each a crash not imagined).
    pub live_marks: u64,
    /// Binaries this process marked in flight.
    pub marks: u64,
    /// Marks this process ended because the driver evidently returned (its next call, a clean
    /// close or a normal exit): each one a normal exit no longer taken for a crash.
    pub ended_early: u64,
    /// Marks ended only because their window passed (the last resort).
    pub ended_by_window: u64,
    /// Consecutive starts that found a crash, as this process last knew it.
    pub unclean_starts: u32,
    /// How this process's marker shows it alive.
    pub liveness: Liveness,
}

/// The start time of process `pid` in clock ticks since boot (`/proc/<pid>/stat` field 22).
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// This boot's id (empty where the kernel does not tell it).
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Whether the process that wrote a marker still runs, judged without locks: same boot, and a
/// process with that pid started at that time. `None`: cannot tell (no start time known).
fn running_by_identity(pid: u32, start: u64, boot: &str) -> Option<bool> {
    if !boot.is_empty() && boot != boot_id() {
        return Some(false);
    }
    if start == 0 {
        // The owner could not read its own start time: a pid that does not exist is surely gone,
        // one that exists may be a new process, so it cannot be told.
        return (!crate::io::posix::process_alive(pid)).then_some(false);
    }
    match process_start_time(pid) {
        Some(now) => Some(now == start),
        // No such process, if this system's /proc works at all.
        None => process_start_time(std::process::id()).map(|_| false),
    }
}

/// The marker's content: magic, pid, start time, boot id, the key in flight (empty: none), CRC.
fn encode_mark(pid: u32, start: u64, boot: &str, key: Option<&[u8]>) -> Vec<u8> {
    let key = key.unwrap_or_default();
    let boot = &boot.as_bytes()[..boot.len().min(255)];
    let mut v = Vec::with_capacity(33 + boot.len() + key.len());
    v.extend_from_slice(MARK_MAGIC);
    v.extend_from_slice(&pid.to_le_bytes());
    v.extend_from_slice(&start.to_le_bytes());
    v.push(boot.len() as u8);
    v.extend_from_slice(boot);
    v.extend_from_slice(&(key.len() as u32).to_le_bytes());
    v.extend_from_slice(key);
    let crc = crc32fast::hash(&v);
    v.extend_from_slice(&crc.to_le_bytes());
    v
}

/// A decoded marker.
struct Mark {
    pid: u32,
    start: u64,
    boot: String,
    key: Option<Vec<u8>>,
}

/// The body of `b` without its trailing CRC, if it has `magic` and the CRC matches.
fn checked<'a>(b: &'a [u8], magic: &[u8; 8]) -> Option<&'a [u8]> {
    let body = b.get(..b.len().checked_sub(4)?)?;
    let crc = u32::from_le_bytes(b[body.len()..].try_into().ok()?);
    (body.starts_with(magic) && crc32fast::hash(body) == crc).then_some(body)
}

/// Decodes a marker; bytes after its CRC (left by a longer earlier mark) are ignored, so a mark
/// is rewritten with one `pwrite` and no truncation.
fn decode_mark(b: &[u8]) -> Option<Mark> {
    if !b.starts_with(MARK_MAGIC) {
        return None;
    }
    let pid = u32::from_le_bytes(b.get(8..12)?.try_into().ok()?);
    let start = u64::from_le_bytes(b.get(12..20)?.try_into().ok()?);
    let blen = usize::from(*b.get(20)?);
    let boot = String::from_utf8_lossy(b.get(21..21 + blen)?).into_owned();
    let at = 21 + blen;
    let klen = u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?) as usize;
    let end = (at + 4).checked_add(klen)?;
    let key = b.get(at + 4..end)?.to_vec();
    let crc = u32::from_le_bytes(b.get(end..end.checked_add(4)?)?.try_into().ok()?);
    if crc32fast::hash(&b[..end]) != crc {
        return None;
    }
    Some(Mark {
        pid,
        start,
        boot,
        key: (!key.is_empty()).then_some(key),
    })
}

fn encode_count(unclean: u32) -> Vec<u8> {
    let mut v = COUNT_MAGIC.to_vec();
    v.extend_from_slice(&unclean.to_le_bytes());
    let crc = crc32fast::hash(&v);
    v.extend_from_slice(&crc.to_le_bytes());
    v
}

fn decode_count(b: &[u8]) -> Option<u32> {
    let body = checked(b, COUNT_MAGIC)?;
    Some(u32::from_le_bytes(body.get(8..12)?.try_into().ok()?))
}

/// The pid and start time a marker's name carries (`<pid>-<start>-<n>` after the prefix).
fn parse_marker_name(suffix: &str) -> Option<(u32, u64)> {
    let mut it = suffix.split('-');
    let pid = it.next()?.parse().ok()?;
    let start = it.next()?.parse().ok()?;
    it.next()?.parse::<u64>().ok()?;
    it.next().is_none().then_some((pid, start))
}

/// This process's marker: its lock (held while the process lives) and a handle to write marks.
struct Marker {
    path: PathBuf,
    handle: Box<dyn FileHandle>,
    _lock: ProcessLock,
    /// The process that made it (a forked child has a copy it must not use or remove).
    pid: u32,
    start: u64,
    boot: String,
}

struct State {
    marker: Option<Marker>,
    /// The marker could not be made or written: the cache works, unguarded.
    broken: bool,
    in_flight: bool,
    unclean: u32,
    generation: u64,
    stats: GuardStats,
}

/// The guard of one cache file, in one process.
pub struct Guard {
    fs: Arc<dyn Fs>,
    cache: PathBuf,
    state: Mutex<State>,
}

/// Numbers the markers of one process (several guards, or one cache opened again).
static MARKER_SEQ: AtomicU64 = AtomicU64::new(0);

impl Guard {
    /// Opens the guard of `cache`: consumes the markers of processes that are gone, reporting the
    /// keys they died with, and counts a start that found any; leaves markers of running ones alone.
    pub fn open(fs: Arc<dyn Fs>, cache: &Path) -> (Arc<Guard>, Recovery) {
        let mut stats = GuardStats::default();
        let (in_flight, unclean) = scan(&*fs, cache, &mut stats);
        stats.unclean_starts = unclean;
        let guard = Arc::new(Guard {
            fs,
            cache: cache.to_path_buf(),
            state: Mutex::new(State {
                marker: None,
                broken: false,
                in_flight: false,
                unclean,
                generation: 0,
                stats,
            }),
        });
        (
            guard,
            Recovery {
                in_flight,
                unclean_starts: unclean,
            },
        )
    }

    /// The file counting consecutive crashed starts; markers are `<this>.<pid>-<start>-<n>`.
    pub fn path(&self) -> PathBuf {
        sibling(&self.cache, INFLIGHT)
    }

    /// The path of this process's marker, once a mark was made.
    pub fn marker_path(&self) -> Option<PathBuf> {
        let s = self.state.lock();
        let pid = std::process::id();
        s.marker
            .as_ref()
            .filter(|m| m.pid == pid)
            .map(|m| m.path.clone())
    }

    /// What this guard did so far.
    pub fn stats(&self) -> GuardStats {
        self.state.lock().stats
    }

    /// Adds what another open of the same cache in this process found (the drop-in opens again at
    /// every `Load` but keeps one guard per cache).
    pub fn adopt(&self, other: &Guard) {
        let o = other.stats();
        let mut s = self.state.lock();
        s.stats.dead_marks += o.dead_marks;
        s.stats.evictions += o.evictions;
        s.stats.live_marks += o.live_marks;
        s.unclean = o.unclean_starts;
        s.stats.unclean_starts = o.unclean_starts;
    }

    /// Counts entries evicted on behalf of this open.
    pub fn count_evictions(&self, n: u64) {
        self.state.lock().stats.evictions += n;
    }

    /// Makes this process's marker, locked before anything is written in it: a marker with content
    /// is one whose owner held the lock.
    fn make_marker(&self) -> std::io::Result<Marker> {
        let pid = std::process::id();
        let start = process_start_time(pid).unwrap_or(0);
        let boot = boot_id();
        let n = MARKER_SEQ.fetch_add(1, Ordering::Relaxed);
        let path = sibling(&self.cache, &format!("{INFLIGHT}.{pid}-{start}-{n}"));
        // Empty until locked; an opener meanwhile tells it by its name's pid and start time.
        let mut handle = self.fs.create(&path)?;
        // The lock every other process's `try_lock` of this marker meets; nobody else waits on it.
        let lock = self.fs.lock(&path, None)?;
        handle.write_at(0, &encode_mark(pid, start, &boot, None))?;
        Ok(Marker {
            path,
            handle,
            _lock: lock,
            pid,
            start,
            boot,
        })
    }

    /// Writes `key` (or no key) into this process's marker, making it first if needed.
    fn write(&self, s: &mut State, key: Option<&[u8]>) {
        let pid = std::process::id();
        if s.marker.as_ref().is_some_and(|m| m.pid != pid) {
            // A forked child: the copy is the parent's marker; leave it to the parent.
            std::mem::forget(s.marker.take());
            s.broken = false;
        }
        if s.broken || (key.is_none() && s.marker.is_none()) {
            return;
        }
        if s.marker.is_none() {
            match self.make_marker() {
                Ok(m) => {
                    s.stats.liveness = if m._lock.kind() == LockKind::Unavailable {
                        Liveness::StartTime
                    } else {
                        Liveness::Lock
                    };
                    s.marker = Some(m);
                }
                Err(e) => {
                    s.broken = true;
                    crate::log::warn(&format!(
                        "cannot make the crash-loop guard's marker next to {} ({e}): the cache works unguarded",
                        self.cache.display()
                    ));
                    return;
                }
            }
        }
        let Some(m) = s.marker.as_mut() else { return };
        let bytes = encode_mark(m.pid, m.start, &m.boot, key);
        // A failed write only weakens the guard; the cache itself is unaffected.
        if m.handle.write_at(0, &bytes).is_err() {
            s.broken = true;
        }
    }

    /// Records that the binary of `key` is being handed to the driver (replacing any earlier mark
    /// of this guard: the driver returned from that one).
    pub fn mark(&self, key: &[u8]) -> u64 {
        let mut s = self.state.lock();
        if s.in_flight {
            s.stats.ended_early += 1;
        }
        s.generation += 1;
        s.in_flight = true;
        s.stats.marks += 1;
        self.write(&mut s, Some(key));
        s.generation
    }

    /// Ends the standing mark, if any: the driver returned (the process called again, or closes).
    /// Returns whether a mark was standing.
    pub fn end(&self) -> bool {
        let mut s = self.state.lock();
        if !s.in_flight {
            return false;
        }
        s.stats.ended_early += 1;
        self.finish(&mut s, true);
        true
    }

    /// Records that the driver returned: nothing in flight; `healthy` also ends a crash loop.
    pub fn clear(&self, healthy: bool) {
        let mut s = self.state.lock();
        self.finish(&mut s, healthy);
    }

    fn finish(&self, s: &mut State, healthy: bool) {
        s.generation += 1;
        if s.in_flight {
            s.in_flight = false;
            self.write(s, None);
        }
        if healthy && s.unclean > 0 {
            s.unclean = 0;
            s.stats.unclean_starts = 0;
            let lock_path = sibling(&self.cache, LOCK);
            let _lock = self.fs.lock(&lock_path, Some(DEFAULT_LOCK_TIMEOUT));
            write_count(&*self.fs, &self.path(), 0);
        }
    }

    fn clear_if(&self, generation: u64) {
        let mut s = self.state.lock();
        if s.generation == generation && s.in_flight {
            s.stats.ended_by_window += 1;
            self.finish(&mut s, true);
        }
    }

    /// Marks `key` in flight until this guard's next call, or for `window` at most: for callers
    /// that never see the driver return (the MACE drop-in builds right after `Find`).
    pub fn mark_for(self: &Arc<Self>, key: &[u8], window: Duration) {
        let generation = self.mark(key);
        timer().schedule(Instant::now() + window, Arc::downgrade(self), generation);
    }

    /// A clean close (or a normal exit): ends the mark and removes this process's marker.
    pub fn close(&self) {
        let mut s = self.state.lock();
        if s.in_flight {
            s.stats.ended_early += 1;
        }
        self.finish(&mut s, false);
        let pid = std::process::id();
        match s.marker.take() {
            Some(m) if m.pid == pid => {
                // Unlinked while still locked, so no opener can take it for a dead process's.
                let _ = self.fs.remove(&m.path);
            }
            other => std::mem::forget(other),
        }
    }

    /// Drops the marker's lock and handle as a killed process would, leaving the file. Test
    /// equipment: only in unit tests or with the `sim` feature, never in the shipped library.
    #[cfg(any(test, feature = "sim"))]
    #[doc(hidden)]
    pub fn simulate_death(&self) {
        let mut s = self.state.lock();
        s.marker = None;
        s.broken = true;
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.close();
    }
}

fn write_count(fs: &dyn Fs, path: &Path, unclean: u32) {
    let bytes = encode_count(unclean);
    if let Ok(mut h) = fs.create(path) {
        let _ = h.write_at(0, &bytes);
    }
}

/// Under the cache's lock: reads the crash count, consumes the markers of dead processes, returns
/// the keys they died with and the count after this start.
fn scan(fs: &dyn Fs, cache: &Path, stats: &mut GuardStats) -> (Vec<Vec<u8>>, u32) {
    let lock_path = sibling(cache, LOCK);
    // Without the lock, each marker is still consumed once (by whoever unlinks it).
    // A holder stopped for longer than the timeout leaves the scan to go on unlocked.
    let _lock = fs.lock(&lock_path, Some(DEFAULT_LOCK_TIMEOUT)).ok();
    let count_path = sibling(cache, INFLIGHT);
    let previous = fs
        .read(&count_path)
        .ok()
        .flatten()
        .and_then(|(b, _)| decode_count(&b))
        .unwrap_or(0);
    let dir = parent_dir(cache);
    let prefix = match cache.file_name() {
        Some(n) => {
            let mut p = n.to_owned();
            p.push(INFLIGHT);
            p.push(".");
            p
        }
        None => return (vec![], previous),
    };
    let names: Vec<OsString> = fs
        .list_dir(&dir)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| p.file_name().map(|n| n.to_owned()))
        .collect();
    let prefix = prefix.to_string_lossy().into_owned();
    let mut keys = Vec::new();
    for name in names {
        let name = name.to_string_lossy().into_owned();
        let Some((pid, start)) = name.strip_prefix(&prefix).and_then(parse_marker_name) else {
            continue;
        };
        let path = sibling(cache, &name[prefix.len() - INFLIGHT.len() - 1..]);
        let lock = match fs.try_lock(&path) {
            Ok(l) => l,
            Err(_) => continue,
        };
        let content = fs.read(&path).ok().flatten().map(|(b, _)| b);
        // A marker whose content names another process than its name is none of ours.
        let mark = content
            .as_deref()
            .and_then(decode_mark)
            .filter(|m| m.pid == pid && m.start == start);
        let dead = match (&lock, &mark) {
            // Held: its owner runs (a forked child of the owner holds it too).
            (None, _) => false,
            // Written under its owner's lock, and nobody holds that lock now.
            (Some(l), Some(_)) if l.kind() != LockKind::Unavailable => true,
            (Some(_), Some(m)) => running_by_identity(pid, start, &m.boot) == Some(false),
            // Empty or torn: being made right now, or left by a process that died making it.
            (Some(_), None) => running_by_identity(pid, start, "") == Some(false),
        };
        if !dead {
            if mark.as_ref().is_some_and(|m| m.key.is_some()) {
                stats.live_marks += 1;
            }
            continue;
        }
        // Only one opener can unlink it: that one consumes the mark.
        if fs.remove(&path).is_ok() {
            if let Some(key) = mark.and_then(|m| m.key) {
                stats.dead_marks += 1;
                keys.push(key);
            }
        }
        drop(lock);
    }
    let unclean = if keys.is_empty() {
        previous
    } else {
        let n = previous.saturating_add(1);
        write_count(fs, &count_path, n);
        n
    };
    (keys, unclean)
}

/// One thread for the whole process that ends marks whose window has passed.
struct Timer {
    due: Mutex<Due>,
    wake: Condvar,
    /// Times the thread went through its loop (woken, or its deadline passed).
    #[cfg(test)]
    rounds: std::sync::atomic::AtomicU64,
}

/// The marks waiting for their window to pass, and when the thread wakes by itself.
#[derive(Default)]
struct Due {
    marks: Vec<(Instant, Weak<Guard>, u64)>,
    /// The deadline the thread sleeps until; `None` while it runs or sleeps without one. A mark
    /// due later needs no wake-up: the drop-in marks on every `Find`, and waking the thread each
    /// time would cost a context switch per program.
    wakes_at: Option<Instant>,
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
    let t: &'static Timer = Box::leak(Box::new(Timer::new()));
    // Without a thread, marks stay until the next call or exit, which is only more cautious.
    let _ = std::thread::Builder::new()
        .name("mace-storage-guard".into())
        .spawn(move || t.run());
    *slot = Some((pid, t));
    t
}

impl Timer {
    fn new() -> Self {
        Timer {
            due: Mutex::new(Due::default()),
            wake: Condvar::new(),
            #[cfg(test)]
            rounds: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn schedule(&self, at: Instant, guard: Weak<Guard>, generation: u64) {
        let mut due = self.due.lock();
        // Only the newest mark of a guard matters; older ones are stale by generation anyway.
        due.marks.retain(|(_, g, _)| !Weak::ptr_eq(g, &guard));
        due.marks.push((at, guard, generation));
        if due.wakes_at.map_or(true, |w| at < w) {
            self.wake.notify_one();
        }
    }

    fn run(&self) {
        let mut due = self.due.lock();
        loop {
            #[cfg(test)]
            self.rounds
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            due.wakes_at = None;
            let now = Instant::now();
            let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut due.marks)
                .into_iter()
                .partition(|d| d.0 <= now);
            due.marks = waiting;
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
            match due.marks.iter().map(|d| d.0).min() {
                Some(next) => {
                    due.wakes_at = Some(next);
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

    fn open(fs: &SimFs, cache: &str) -> (Arc<Guard>, Recovery) {
        Guard::open(Arc::new(fs.clone()), Path::new(cache))
    }

    #[test]
    fn marks_due_after_the_timers_wake_up_do_not_wake_it() {
        let t: &'static Timer = Box::leak(Box::new(Timer::new()));
        std::thread::spawn(move || t.run());
        let start = Instant::now();
        // One guard marking program after program, as the drop-in's Finds do; none is due soon.
        for i in 0..50 {
            t.schedule(start + Duration::from_secs(60 + i), Weak::new(), i);
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        let rounds = t.rounds.load(std::sync::atomic::Ordering::Relaxed);
        assert!(rounds <= 3, "the timer woke {rounds} times for 50 marks");
        // A mark due before its wake-up still wakes it, and ends when due.
        t.schedule(Instant::now(), Weak::new(), 99);
        let deadline = Instant::now() + Duration::from_secs(10);
        while t.due.lock().marks.iter().any(|m| m.2 == 99) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(t.due.lock().marks.is_empty(), "the due mark was not taken");
    }

    fn markers(fs: &SimFs) -> usize {
        fs.list()
            .iter()
            .filter(|p| p.to_string_lossy().contains(&format!("{INFLIGHT}.")))
            .count()
    }

    #[test]
    fn a_death_in_flight_is_reported_once_and_counted() {
        let fs = SimFs::new();
        let (g, r) = open(&fs, "c.bin");
        assert_eq!(r, Recovery::default());
        g.mark(b"prog");
        // The mark of a running process (this one, through another open) is no crash.
        let (other, r) = open(&fs, "c.bin");
        assert_eq!(r, Recovery::default());
        assert_eq!(other.stats().live_marks, 1);
        g.simulate_death(); // the process dies with "prog" in the driver
        let (g2, r) = open(&fs, "c.bin");
        assert_eq!(r.in_flight, vec![b"prog".to_vec()]);
        assert_eq!(r.unclean_starts, 1);
        assert_eq!(g2.stats().dead_marks, 1);
        // Consumed: a second opener does not find it again.
        let (_, r) = open(&fs, "c.bin");
        assert!(r.in_flight.is_empty());
        assert_eq!(r.unclean_starts, 1);
        g2.mark(b"prog2");
        g2.simulate_death();
        let (g3, r) = open(&fs, "c.bin");
        assert_eq!(r.unclean_starts, 2);
        // A driver that returns ends the loop.
        g3.mark(b"x");
        g3.clear(true);
        let (_, r) = open(&fs, "c.bin");
        assert_eq!(r, Recovery::default());
    }

    #[test]
    fn an_exit_is_no_crash_and_leaves_no_marker() {
        let fs = SimFs::new();
        let (g, _) = open(&fs, "e.bin");
        g.mark(b"prog");
        assert_eq!(markers(&fs), 1);
        drop(g); // a normal exit right after the driver got the binary
        assert_eq!(markers(&fs), 0);
        let (_, r) = open(&fs, "e.bin");
        assert_eq!(r, Recovery::default());
    }

    #[test]
    fn each_process_keeps_its_own_mark() {
        let fs = SimFs::new();
        let (a, _) = open(&fs, "m.bin");
        let (b, _) = open(&fs, "m.bin");
        a.mark(b"a-key");
        b.mark(b"b-key");
        a.simulate_death();
        let (_, r) = open(&fs, "m.bin");
        assert_eq!(r.in_flight, vec![b"a-key".to_vec()]);
        // b's mark is untouched, and found once b dies.
        let path = b.marker_path().unwrap();
        assert_eq!(
            decode_mark(&fs.read_file(&path).unwrap())
                .unwrap()
                .key
                .unwrap(),
            b"b-key"
        );
        b.simulate_death();
        let (_, r) = open(&fs, "m.bin");
        assert_eq!(r.in_flight, vec![b"b-key".to_vec()]);
    }

    #[test]
    fn the_next_call_ends_a_mark_and_the_window_is_the_last_resort() {
        let fs = SimFs::new();
        let (g, _) = open(&fs, "w.bin");
        g.mark_for(b"first", Duration::from_secs(60));
        g.mark_for(b"second", Duration::from_secs(60));
        assert!(g.end());
        assert!(!g.end());
        g.mark_for(b"soon", Duration::from_millis(30));
        std::thread::sleep(Duration::from_millis(300));
        let s = g.stats();
        assert_eq!((s.marks, s.ended_early, s.ended_by_window), (3, 2, 1));
        g.simulate_death();
        let (_, r) = open(&fs, "w.bin");
        assert_eq!(r, Recovery::default());
    }

    #[test]
    fn a_shorter_mark_over_a_longer_one_decodes() {
        let mut b = encode_mark(7, 9, "boot", Some(b"a long program key -DX=1"));
        let short = encode_mark(7, 9, "boot", None);
        b[..short.len()].copy_from_slice(&short);
        let m = decode_mark(&b).unwrap();
        assert_eq!(
            (m.pid, m.start, m.boot.as_str(), m.key),
            (7, 9, "boot", None)
        );
        b[3] ^= 1;
        assert!(decode_mark(&b).is_none());
    }

    #[test]
    fn garbage_is_ignored() {
        let fs = SimFs::new();
        fs.write_file("g.bin.inflight", b"\x00\x01 not a guard");
        fs.write_file("g.bin.inflight.12-x-0", b"not a marker name");
        let (_, r) = open(&fs, "g.bin");
        assert_eq!(r, Recovery::default());
        assert!(fs.exists("g.bin.inflight.12-x-0"));
    }

    #[test]
    fn start_time_tells_a_new_process_from_the_old_one() {
        let me = std::process::id();
        let start = process_start_time(me).expect("/proc/self/stat");
        assert_eq!(running_by_identity(me, start, &boot_id()), Some(true));
        assert_eq!(running_by_identity(me, start + 1, &boot_id()), Some(false));
        assert_eq!(running_by_identity(me, start, "another-boot"), Some(false));
    }
}
