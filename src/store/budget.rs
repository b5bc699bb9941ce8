//! The size budget ([`Options::budget`]): a flush that would make the file larger than the budget
//! first evicts the least recently used program binaries, down to 7/8 of it, so the flushes that
//! follow can append again before the next eviction.
//!
//! Use is recorded without a write per get: the store notes the keys it hands out or is given, and,
//! once the file is past half its budget, a flush that commits something also commits a small use
//! record, an ordinary entry named
//! `mace_storage_uses_<n>` (`n` one more than the highest in the file, [`keys::USES_PREFIX`]) listing
//! those keys with generation `n`. An entry's last use is the highest generation a record gives it;
//! one no record names is older than every named one. A flush that evicts, or that finds more than
//! [`MAX_USE_RECORDS`] records, folds them into one. Only program binaries are evicted
//! ([`keys::is_program_binary`]), each with its source-hash entry: the metadata that vouches for
//! binaries (platform info, device name, fingerprint, OS build) stays.

use super::*;
use crate::keys;

/// Use records a file holds before a flush folds them into one.
const MAX_USE_RECORDS: usize = 8;

/// The keys this process used since its last flush, with the order of their last use.
#[derive(Default)]
pub(super) struct Uses {
    clock: u64,
    last: KeyMap<u64>,
    /// Set by [`Store::record_uses`] for its flush: a use record is due though nothing changed.
    pub(super) record_now: bool,
}

/// What a flush's budget step decided, to forget the uses it recorded once they are committed.
pub(super) struct Planned {
    up_to: u64,
}

/// Encodes `(generation, key)` pairs as a use record's value: `u64 generation | u32 key_len | key`.
fn encode_uses<'a>(uses: impl Iterator<Item = (&'a [u8], u64)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, g) in uses {
        out.extend_from_slice(&g.to_le_bytes());
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(k);
    }
    out
}

/// Decodes a use record's value into `into` (keeping the highest generation of each key); stops at
/// the first malformed pair: a record that passed its checksum but is not one only loses use data.
fn decode_uses(mut v: &[u8], into: &mut KeyMap<u64>) {
    while v.len() >= 12 {
        let g = u64::from_le_bytes(v[..8].try_into().unwrap_or_default());
        let n = u32::from_le_bytes(v[8..12].try_into().unwrap_or_default()) as usize;
        let Some(k) = v.get(12..12 + n) else { return };
        let e = into.entry(k.to_vec()).or_insert(g);
        *e = (*e).max(g);
        v = &v[12 + n..];
    }
}

/// The generation of a use-record key (`mace_storage_uses_<n>`), if it is one.
fn record_generation(key: &[u8]) -> Option<u64> {
    let n = key.strip_prefix(keys::USES_PREFIX)?;
    std::str::from_utf8(n).ok()?.parse().ok()
}

impl Store {
    /// Notes that `key` was used now (a get that found it), when the store has a budget.
    pub(super) fn note_use(&self, key: &[u8]) {
        if self.opts.budget.is_none() {
            return;
        }
        let mut u = self.uses.lock();
        u.clock += 1;
        let now = u.clock;
        match u.last.get_mut(key) {
            Some(t) => *t = now,
            None => {
                u.last.insert(key.to_vec(), now);
            }
        }
    }

    /// Commits this process's uses of the entries as a use record when the store has a budget,
    /// its file is past half of it and some use is not recorded yet, so that a start that only
    /// reads (and never flushes) still counts for which programs are the least recently used;
    /// writes nothing otherwise, nor when changes wait for a flush (which records the uses with
    /// them). `Ok(true)` when it wrote. Meant for the end of a process's use of the store (the
    /// MACE drop-in calls it when it closes the store of a path).
    pub fn record_uses(&self) -> Result<bool, Error> {
        let Some(budget) = self.opts.budget.filter(|_| !self.opts.read_only) else {
            return Ok(false);
        };
        if self.uses.lock().last.is_empty() {
            return Ok(false);
        }
        // The file as last read or written is below half the budget: no record is due, and none
        // is worth the lock (another process that grew it since records its own uses).
        if self
            .state
            .read()
            .disk
            .meta
            .map_or(true, |m| m.len <= budget / 2)
        {
            return Ok(false);
        }
        let _one_at_a_time = self.flush_lock.lock();
        if self.state.read().dirty() {
            return Ok(false);
        }
        let writes = |s: &State| s.stats.appends + s.stats.rewrites;
        let before = writes(&self.state.read());
        self.uses.lock().record_now = true;
        let result = self.flush_locked();
        self.uses.lock().record_now = false;
        if result.is_err() {
            self.state.write().stats.flush_failures += 1;
        }
        result?;
        Ok(writes(&self.state.read()) != before)
    }

    /// Forgets the uses a committed flush recorded (later ones stay for the next flush).
    pub(super) fn uses_committed(&self, planned: Option<Planned>) {
        if let Some(p) = planned {
            self.uses.lock().last.retain(|_, t| *t > p.up_to);
        }
    }

    /// Run by a flush after it merged what the file holds and before it takes its snapshot: when
    /// the store has a budget and the flush commits something, adds this flush's use record and,
    /// if the file would grow past the budget, the evictions of the least recently used binaries.
    pub(super) fn plan_budget(&self) -> Option<Planned> {
        let budget = self.opts.budget?;
        let format = self.opts.format;
        // The committed use records, read (and verified) before the state is locked for writing.
        let record_now = self.uses.lock().record_now;
        let record_keys: Vec<Vec<u8>> = {
            let s = self.state.read();
            if !s.has_changes() && !record_now {
                return None;
            }
            s.base
                .keys()
                .filter(|k| record_generation(k).is_some())
                .cloned()
                .collect()
        };
        let mut gens = KeyMap::default();
        let mut newest = 0;
        for k in &record_keys {
            newest = newest.max(record_generation(k).unwrap_or(0));
            if let Some(v) = self.fetch_from(k, true) {
                decode_uses(&v, &mut gens);
            }
        }
        let generation = newest + 1;
        let (used, up_to) = {
            let u = self.uses.lock();
            (u.last.clone(), u.clock)
        };
        let mut s = self.state.write();
        let current = s.current();
        // This process's uses and puts are the newest; among them, the later use is newer.
        let rank = |k: &[u8]| -> (u64, u64) {
            if let Some(t) = used.get(k) {
                (generation, *t)
            } else if matches!(s.pending.get(k), Some(Some(_))) {
                (generation, up_to + 1)
            } else {
                (gens.get(k).copied().unwrap_or(0), 0)
            }
        };
        let mut ranked: Vec<(&Vec<u8>, (u64, u64))> = current
            .keys()
            .filter(|k| record_generation(k).is_none())
            .map(|k| (k, rank(k)))
            .collect();
        let bound_of =
            |k: &[u8], i: &Item| format::entry_len_bound(format, k.len(), i.len(), i.kind);
        // The size as if every record were folded into one naming every key: an upper bound of
        // what is written whether the flush folds or not.
        let folded_len = |ranked: &[(&Vec<u8>, (u64, u64))]| -> u64 {
            ranked.iter().map(|(k, _)| 12 + k.len() as u64).sum()
        };
        let records_len: u64 = record_keys
            .iter()
            .filter_map(|k| current.get(k).map(|i| bound_of(k, i)))
            .sum();
        let mut total: u64 = ranked
            .iter()
            .map(|(k, _)| bound_of(k, &current[*k]))
            .sum::<u64>()
            + records_len
            + format::entry_len_bound(format, 32, folded_len(&ranked) as usize, ValueKind::Bytes);
        // A cache far from its budget needs no use order yet, and stock MACE, whose reader lists
        // every entry, sees none of the records until then.
        if record_keys.is_empty() && format::file_len_bound(total) <= budget / 2 {
            return None;
        }
        let mut evicted = Vec::new();
        if format::file_len_bound(total) > budget {
            let target = budget - budget / 8;
            ranked.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(b.0)));
            for (k, _) in &ranked {
                if format::file_len_bound(total) <= target {
                    break;
                }
                if !keys::is_program_binary(k) {
                    continue;
                }
                let hash = keys::program_hash_key(k);
                for victim in [&k[..], &hash[..]] {
                    if let Some(i) = current.get(victim) {
                        total = total.saturating_sub(bound_of(victim, i));
                        evicted.push(victim.to_vec());
                    }
                }
            }
        }
        // A flush that failed after deciding to fold left the records' removals pending: it folds
        // again, or the generations only those records held would be lost.
        let folding = record_keys
            .iter()
            .any(|k| matches!(s.pending.get(k), Some(None)));
        let fold = folding || !evicted.is_empty() || record_keys.len() >= MAX_USE_RECORDS;
        let gone: std::collections::HashSet<&[u8]> = evicted.iter().map(|k| &k[..]).collect();
        let mut record: Vec<(&[u8], u64)> = ranked
            .iter()
            .filter(|(k, _)| !gone.contains(&k[..]))
            .filter(|(_, (g, _))| *g == generation || (fold && *g > 0))
            .map(|(k, (g, _))| (&k[..], *g))
            .collect();
        // In key order: the same state always writes the same bytes (a retried flush included).
        record.sort_unstable();
        let value = encode_uses(record.into_iter());
        let binaries = evicted
            .iter()
            .filter(|k| keys::is_program_binary(k))
            .count();
        let freed: u64 = evicted
            .iter()
            .filter_map(|k| current.get(k).map(|i| i.len() as u64))
            .sum();
        drop(ranked);
        drop(current);
        for k in evicted {
            s.pending.insert(k, None);
        }
        if fold {
            for k in record_keys {
                s.pending.insert(k, None);
            }
        }
        let mut key = keys::USES_PREFIX.to_vec();
        key.extend_from_slice(generation.to_string().as_bytes());
        s.pending.insert(
            key,
            Some(Item {
                value: Stored::Ready(Value::from_vec(value)),
                kind: ValueKind::Bytes,
                known_crc: None,
            }),
        );
        s.stats.evictions += binaries as u64;
        drop(s);
        if binaries > 0 {
            crate::log::log(
                crate::log::Level::MACE_STORAGE_LOG_INFO,
                &format!(
                "{}: evicted the {binaries} least recently used program binaries ({freed} bytes) \
                 to keep the file within its budget of {budget} bytes",
                self.target.display()
            ),
            );
        }
        Some(Planned { up_to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_use_record_round_trips_and_keeps_the_newest_generation() {
        let v = encode_uses([(&b"a"[..], 3), (&b""[..], 1), (&b"bc"[..], 7)].into_iter());
        let mut m = KeyMap::default();
        decode_uses(&v, &mut m);
        decode_uses(&encode_uses([(&b"a"[..], 2)].into_iter()), &mut m);
        assert_eq!(m.len(), 3);
        assert_eq!((m[&b"a"[..]], m[&b""[..]], m[&b"bc"[..]]), (3, 1, 7));
        // A cut record keeps the pairs before the cut.
        let mut cut = KeyMap::default();
        decode_uses(&v[..v.len() - 1], &mut cut);
        assert_eq!(cut.len(), 2);
    }

    #[test]
    fn only_use_record_keys_have_a_generation() {
        assert_eq!(record_generation(b"mace_storage_uses_12"), Some(12));
        assert_eq!(record_generation(b"mace_storage_uses_"), None);
        assert_eq!(record_generation(b"mace_storage_uses_x"), None);
        assert_eq!(record_generation(b"prog_1"), None);
    }
}
