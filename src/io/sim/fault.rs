//! The fault model of the simulated filesystem: the unsynced operations a power loss decides the
//! fate of, and the faults a call can be made to fail with.

const SECTOR: u64 = 512;

/// One data operation on a file that is not yet durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `bytes` written at `offset`.
    Write {
        /// File offset of the first byte.
        offset: u64,
        /// The bytes written.
        bytes: Vec<u8>,
    },
    /// The file's length set (a truncate-on-create is `SetLen(0)`).
    SetLen(u64),
}

impl Op {
    /// How many 512-byte sectors a write touches (the bits a [`Fate::Torn`] mask selects); 0 for `SetLen`.
    pub fn sectors(&self) -> u64 {
        match self {
            Op::Write { offset, bytes } if !bytes.is_empty() => {
                (offset + bytes.len() as u64 - 1) / SECTOR - offset / SECTOR + 1
            }
            _ => 0,
        }
    }

    /// Applies the op to `data`, keeping only the write's sectors whose bit is set in `mask`.
    pub(super) fn apply(&self, data: &mut Vec<u8>, mask: u64) {
        match self {
            Op::SetLen(len) => data.resize(*len as usize, 0),
            Op::Write { offset, bytes } => {
                let (first, end) = (offset / SECTOR, offset + bytes.len() as u64);
                let mut start = *offset;
                while start < end {
                    let sector = start / SECTOR;
                    let stop = end.min((sector + 1) * SECTOR);
                    if mask >> (sector - first).min(63) & 1 == 1 {
                        let (s, e) = (start as usize, stop as usize);
                        if data.len() < e {
                            data.resize(e, 0);
                        }
                        let from = (start - offset) as usize;
                        data[s..e].copy_from_slice(&bytes[from..from + (e - s)]);
                    }
                    start = stop;
                }
            }
        }
    }
}

/// What a power loss does to one unsynced operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// The operation reached the disk.
    Keep,
    /// The operation was lost (for a directory op: it and every later one).
    Drop,
    /// Only the write's sectors whose bit is set reached the disk (bit i: i-th sector touched; bit 63
    /// also covers all later ones). Treated as `Keep` for anything but a write.
    Torn(u64),
}

/// An unsynced operation `SimFs::crash` asks the fate of.
#[derive(Debug, Clone, Copy)]
pub enum Unsynced<'a> {
    /// The `index`-th queued directory operation.
    DirOp {
        /// Position in the directory journal.
        index: usize,
        /// What it does, e.g. `rename a.tmp -> a`.
        description: &'a str,
    },
    /// The `index`-th unsynced data operation of inode `ino`.
    Data {
        /// The inode written.
        ino: u64,
        /// Position among that inode's unsynced ops.
        index: usize,
        /// The operation.
        op: &'a Op,
    },
}

impl Unsynced<'_> {
    /// An owned copy of this description.
    pub fn info(&self) -> UnsyncedInfo {
        match *self {
            Unsynced::DirOp { index, description } => UnsyncedInfo::DirOp {
                index,
                description: description.to_owned(),
            },
            Unsynced::Data { ino, index, op } => UnsyncedInfo::Data {
                ino,
                index,
                op: op.clone(),
            },
        }
    }
}

/// An owned [`Unsynced`], as listed by [`SimFs::unsynced_events`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnsyncedInfo {
    /// The `index`-th queued directory operation.
    DirOp {
        /// Position in the directory journal.
        index: usize,
        /// What it does.
        description: String,
    },
    /// The `index`-th unsynced data operation of inode `ino`.
    Data {
        /// The inode written.
        ino: u64,
        /// Position among that inode's unsynced ops.
        index: usize,
        /// The operation.
        op: Op,
    },
}

/// How an injected fault behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailKind {
    /// Only the chosen call fails, with this errno.
    Once(i32),
    /// The chosen call and every later one fail, with this errno.
    Persistent(i32),
    /// The process dies at the chosen call: it and every later one fail with EIO and do nothing.
    Crash,
    /// Only the chosen call fails, with this errno; a write first writes the first half of its
    /// bytes (a short write), any other call does nothing.
    Short(i32),
}
