//! Overwrites of a file's own private blocks in place, under a *shared* lock: the data path that
//! writers of different files run at the same time.
//!
//! Owns the rule for when a write may skip the journal: it stores into blocks the file alone
//! owns, inside its size, and changes nothing the state or the media describe — no block
//! allocated or freed, no size change, and no time change, because the file's recorded
//! modification and change times are already within [`IN_PLACE_TIME_LAG_NS`] of now. Such a write
//! is what a handle opened with `OpenOptions::in_place` asks for: atomic per 8-byte word, like a
//! kernel DAX write (and like a write to a file with DAX views), not as a whole.
//!
//! Must never: change the state (it runs beside other readers of it), store into a block with
//! another owner or a poisoned block, or store past the file's size. The caller holds the file
//! system's shared lock and the file's own lock, which keeps other writers of the same file and
//! its readers out, and every metadata change (which takes the exclusive lock) away.

use super::access::{S_ISGID, S_ISUID};
use super::journal::now_ns;
use super::{blocks_of, FileSystem};
use crate::error::Result;
use crate::format::BLOCK_SIZE;

/// How far behind a write the recorded modification and change times of a file may be when a
/// handle opened for in-place writes overwrites it: a write within this long of the recorded
/// times stores its data and commits nothing; a later one records the times (a log record),
/// which opens the next such window. 10 ms, a coarse clock tick of the kernel at HZ=100.
pub const IN_PLACE_TIME_LAG_NS: i64 = 10_000_000;

impl FileSystem {
    /// Overwrites `data` at `pos` of `ino` in place, without a record, when the write changes
    /// nothing but bytes of blocks the file owns alone (see the module comment); returns false,
    /// having stored nothing, when it would change more (a hole, a shared or poisoned block,
    /// growth, times older than [`IN_PLACE_TIME_LAG_NS`], set-id bits a write may drop, a
    /// read-only or removed file system): the caller then writes under the exclusive lock.
    /// The data is durable when this returns. A memory error while storing is returned as
    /// such; bytes stored before the bad one stay stored.
    pub fn overwrite_private_in_place(&self, ino: u64, pos: u64, data: &[u8]) -> Result<bool> {
        if data.is_empty() || self.writable().is_err() {
            return Ok(false);
        }
        let Ok(inode) = self.file(ino) else { return Ok(false) };
        let attrs = &inode.attrs;
        let Some(end) = pos.checked_add(data.len() as u64).filter(|&end| end <= attrs.size) else {
            return Ok(false);
        };
        let now = now_ns();
        let recent = |t: i64| (0..IN_PLACE_TIME_LAG_NS).contains(&now.saturating_sub(t));
        if !recent(attrs.mtime_ns) || !recent(attrs.ctime_ns) || attrs.mode & (S_ISUID | S_ISGID) != 0 {
            return Ok(false);
        }
        let fb0 = pos / BLOCK_SIZE;
        if !self.private_blocks(inode, fb0, blocks_of(end) - fb0).iter().all(|&private| private) {
            return Ok(false);
        }
        self.store_into_private_blocks(inode, pos, data)?;
        self.backend.drain();
        Ok(true)
    }
}
