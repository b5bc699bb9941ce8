//! The handles of the simulated filesystem: a file open for writing, one open for reading (the
//! inode opened, whatever is renamed over its path later), and a held lock. Every call of a handle
//! is a call of the filesystem, counted, traced and open to its faults.

use super::{Disk, Op, Shared, SimFs};
use crate::io::{past_the_end, within, FileHandle, FileMeta, LockNote, ReadHandle};
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

pub(super) struct SimHandle {
    pub(super) fs: SimFs,
    pub(super) ino: u64,
}

impl SimHandle {
    fn call<T>(
        &self,
        name: &str,
        args: String,
        f: impl FnOnce(&mut Disk, u64) -> io::Result<T>,
    ) -> io::Result<T> {
        let ino = self.ino;
        self.fs
            .call(format!("{name} ino={ino}{args}"), |st| f(st, ino))
    }
}

impl FileHandle for SimHandle {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> io::Result<()> {
        let ino = self.ino;
        let desc = format!("write_at ino={ino} off={offset} len={}", data.len());
        let half = &data[..data.len() / 2];
        self.fs.call_partial(
            desc,
            |st| st.write(ino, offset, data),
            |st| {
                let _ = st.write(ino, offset, half);
            },
        )
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.call("sync_data", String::new(), Disk::sync)
    }

    fn sync_all(&mut self) -> io::Result<()> {
        self.call("sync_all", String::new(), Disk::sync)
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.call("set_len", format!(" len={len}"), |st, ino| {
            st.apply_op(ino, Op::SetLen(len))
        })
    }

    fn meta(&self) -> io::Result<FileMeta> {
        self.call("meta", String::new(), |st, ino| Ok(st.meta(ino)))
    }

    fn set_mode(&mut self, mode: u32) -> io::Result<()> {
        self.call("set_mode", format!(" mode={mode:o}"), |st, ino| {
            st.node(ino).mode = mode;
            Ok(())
        })
    }
}

/// A file open for reading: the inode opened (a file renamed over the path later is another
/// inode), its visible contents (unsynced writes included, as every read here sees them), within
/// the length it had at open. Each read is a call, so faults and crashes reach it.
pub(super) struct SimRead {
    pub(super) fs: SimFs,
    pub(super) ino: u64,
    pub(super) len: u64,
}

impl ReadHandle for SimRead {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let (ino, len) = (self.ino, self.len);
        let desc = format!("read_at ino={ino} off={offset} len={}", buf.len());
        self.fs.call(desc, |st| {
            let data = &st.node(ino).data;
            if !within(offset, buf.len(), len) || !within(offset, buf.len(), data.len() as u64) {
                return Err(past_the_end());
            }
            let at = offset as usize;
            buf.copy_from_slice(&data[at..at + buf.len()]);
            Ok(())
        })
    }

    /// One call, as `preadv` is one system call: a fault fails the whole read.
    fn read_exact_vectored_at(&self, offset: u64, bufs: &mut [&mut [u8]]) -> io::Result<()> {
        let (ino, len) = (self.ino, self.len);
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let desc = format!("read_at ino={ino} off={offset} len={total}");
        self.fs.call(desc, |st| {
            let data = &st.node(ino).data;
            if !within(offset, total, len) || !within(offset, total, data.len() as u64) {
                return Err(past_the_end());
            }
            let mut at = offset as usize;
            for b in bufs.iter_mut() {
                b.copy_from_slice(&data[at..at + b.len()]);
                at += b.len();
            }
            Ok(())
        })
    }

    /// A call (traced, so tests see what was asked for), whose fault is a hint's: ignored.
    fn read_ahead(&self, offset: u64, len: u64) {
        let ino = self.ino;
        let desc = format!("read_ahead ino={ino} off={offset} len={len}");
        let _ = self.fs.call(desc, |_| Ok(()));
    }

    fn meta(&self) -> io::Result<FileMeta> {
        let ino = self.ino;
        self.fs
            .call(format!("meta ino={ino}"), |st| Ok(st.meta(ino)))
    }
}

/// A lock file's contents ([`crate::io::LockNote`]); each read and write is a call.
pub(super) struct SimNote {
    pub(super) fs: SimFs,
    pub(super) path: PathBuf,
}

impl LockNote for SimNote {
    fn read(&self, at: u64, max: usize) -> io::Result<Vec<u8>> {
        let path = self.path.clone();
        self.fs
            .call(format!("get_note {} at={at}", path.display()), |st| {
                Ok(st.note(&path, at, max))
            })
    }

    fn write(&self, at: u64, bytes: &[u8]) -> io::Result<()> {
        let path = self.path.clone();
        let at_ = usize::try_from(at).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        self.fs
            .call(format!("put_note {} at={at}", path.display()), |st| {
                let note = st.notes.entry(path).or_default();
                let end = at_ + bytes.len();
                if note.len() < end {
                    note.resize(end, 0);
                }
                note[at_..end].copy_from_slice(bytes);
                Ok(())
            })
    }
}

pub(super) struct LockGuard {
    pub(super) shared: Arc<Shared>,
    pub(super) path: PathBuf,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.shared.locks.lock().remove(&self.path);
        self.shared.unlocked.notify_all();
    }
}
