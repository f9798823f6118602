//! The memory pool: the bottom layer.
//!
//! Owns the mapping of the pool's bytes (a plain file, a memfd or a /dev/dax device), every store into
//! it, and the persistence primitives `flush(range)` + `drain()`. Wrappers around a real backend record
//! stores and fences for crash tests.
//!
//! Must never: interpret the bytes it holds (that is `format`'s job), or hand out `&mut` references
//! into pool memory. Every store into the pool goes through [`Backend::write`], [`Backend::fill`] or
//! [`Backend::copy_within`] so that wrappers see all of them.

mod lock;
mod mapped;
pub mod mcsafe;
mod persist;
mod recording;

pub use lock::{command_line, holders_of, LockMode};
pub use mapped::{fd_map_granule, view_granule_error, MappedBackend, Persistence, VIEW_GRANULE_REFUSAL};
pub use persist::flush_instruction_name;
pub use recording::{CrashFence, RecordingBackend, WordSubset, ATOMIC_WORD};

use crate::error::{Error, Result};
use std::sync::Arc;

/// The size of a pool page: the unit of allocation, sharing and poison.
pub const PAGE_SIZE: u64 = 4096;

/// The size of a CPU cache line: the unit in which stores become persistent.
pub const CACHE_LINE: u64 = 64;

/// What kind of memory a backend maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// A plain file mapped MAP_SHARED (the default).
    File,
    /// An anonymous memfd (tests, and the later pool server).
    Memfd,
    /// A /dev/dax character device (real persistent or CXL memory).
    DevDax,
    /// A volatile buffer that records every store, flush and fence (crash tests).
    Recording,
}

/// The narrow seam between the file system and the memory it lives in.
///
/// Reads go straight through [`Backend::base`]; stores go through the methods below.
pub trait Backend: Send + Sync + 'static {
    /// Length of the pool in bytes (a multiple of [`PAGE_SIZE`]).
    fn len(&self) -> u64;
    /// Always false: a pool has at least one page.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Base address of the pool's bytes, valid for `len()` bytes as long as the backend lives.
    fn base(&self) -> *mut u8;
    /// Stores `data` at `offset`. Not durable until flushed and drained. A store that meets bad
    /// memory (a SIGBUS in the store, as a page of a DAX file listed bad raises) stops there and is
    /// [`Error::MediaError`]; the bytes before it may be stored.
    fn write(&self, offset: u64, data: &[u8]) -> Result<()>;
    /// Stores `len` copies of `byte` at `offset`; bad memory on the way is [`Error::MediaError`],
    /// as for [`Backend::write`].
    fn fill(&self, offset: u64, len: u64, byte: u8) -> Result<()>;
    /// Copies `len` bytes inside the pool from `src` to `dst` (ranges must not overlap). Bad
    /// memory in the source is [`Error::MediaError`] (machine-check safe); the destination is then
    /// partly written, which is harmless: copies only ever go to blocks nothing references yet.
    fn copy_within(&self, src: u64, dst: u64, len: u64) -> Result<()>;
    /// [`Backend::write`], then [`Backend::flush`] of the same bytes: one step, which a backend may
    /// take more cheaply (stores that bypass the cache leave nothing to write back). Durable after
    /// the next [`Backend::drain`], like any flushed store.
    fn write_flushed(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.write(offset, data)?;
        self.flush(offset, data.len() as u64);
        Ok(())
    }
    /// [`Backend::copy_within`], then [`Backend::flush`] of the destination, as
    /// [`Backend::write_flushed`].
    fn copy_within_flushed(&self, src: u64, dst: u64, len: u64) -> Result<()> {
        self.copy_within(src, dst, len)?;
        self.flush(dst, len);
        Ok(())
    }
    /// Makes sure the memory of `[offset, offset + len)` exists before anything is stored there: a
    /// pool in a sparse file allocates those pages on its host file system now, so a full host
    /// file system is ENOSPC for the operation instead of a SIGBUS in the middle of a store.
    /// Backends whose memory always exists do nothing.
    fn ensure_backed(&self, _offset: u64, _len: u64) -> Result<()> {
        Ok(())
    }
    /// Starts write-back of the cache lines covering `[offset, offset + len)`.
    fn flush(&self, offset: u64, len: u64);
    /// Waits until every flush issued before it has reached the persistence domain (a fence):
    /// at least every flush of the calling thread, also while other threads flush and drain
    /// (writers of different files do, under a shared lock).
    fn drain(&self);
    /// Whether a [`Backend::drain`] costs a device flush (a pool file on a disk: msync), rather
    /// than a fence. The file system then groups commits (the journal's group commit): operations
    /// are durable at the next sync point instead of each on return.
    fn drain_flushes_device(&self) -> bool {
        false
    }
    /// What this backend maps.
    fn kind(&self) -> BackendKind;
    /// The file descriptor behind the mapping, for DAX views; `None` for volatile backends.
    fn raw_fd(&self) -> Option<std::os::fd::RawFd>;
    /// The smallest unit in which [`Backend::raw_fd`] can be mapped (and the alignment of its
    /// file offsets): 4096, or a /dev/dax device's `align`. Views need 4096.
    fn map_granule(&self) -> u64 {
        PAGE_SIZE
    }
}

/// A shared handle on a backend, as the layers above hold it.
pub type SharedBackend = Arc<dyn Backend>;

/// Checks that `[offset, offset + len)` lies inside a pool of `pool_len` bytes.
///
/// Backends call this on every store: a store outside the pool is a bug in the layers above.
#[inline]
pub(crate) fn assert_in_bounds(pool_len: u64, offset: u64, len: u64) {
    assert!(
        offset.checked_add(len).is_some_and(|end| end <= pool_len),
        "pool store out of bounds: offset {offset} len {len} pool {pool_len}"
    );
}

/// Copies pool bytes at `offset` into `buf`, machine-check safe: bad memory on the way is
/// [`Error::MediaError`] naming the first pool byte that could not be read.
///
/// Callers hold whatever lock keeps other threads from storing into that range.
pub fn read_into(backend: &dyn Backend, offset: u64, buf: &mut [u8]) -> Result<()> {
    assert_in_bounds(backend.len(), offset, buf.len() as u64);
    let base = backend.base() as usize;
    // SAFETY: in bounds (checked above); `buf` is a distinct Rust slice, so the ranges are disjoint.
    unsafe { mcsafe::copy(buf.as_mut_ptr(), (base + offset as usize) as *const u8, buf.len()) }
        .map_err(|e| media_error(base, offset, e))
}

/// [`read_into`] a new buffer.
pub fn read_vec(backend: &dyn Backend, offset: u64, len: u64) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; usize::try_from(len).expect("a length that fits in memory")];
    read_into(backend, offset, &mut buf)?;
    Ok(buf)
}

/// Compares two ranges of pool memory in place (no copies), machine-check safe.
pub fn equal(backend: &dyn Backend, a: u64, b: u64, len: u64) -> Result<bool> {
    assert_in_bounds(backend.len(), a, len);
    assert_in_bounds(backend.len(), b, len);
    let base = backend.base() as usize;
    // SAFETY: both ranges are inside the mapping (checked above); nothing is written.
    unsafe { mcsafe::equal((base + a as usize) as *const u8, (base + b as usize) as *const u8, len as usize) }
        .map_err(|e| {
            // The fault address says which range it was.
            let at = e.addr.saturating_sub(base) as u64;
            let in_a = at >= a && at < a + len;
            let in_b = at >= b && at < b + len;
            Error::MediaError { pool_offset: if in_a || in_b { at } else { a } }
        })
}

/// A page of zeros: the source of zero fills and the reference of [`is_zero`] (a static, never a
/// stack buffer: stores into the pool also run inside the signal handler of a DAX store fault, on
/// whatever stack the faulting thread has left).
pub(crate) static ZERO_PAGE: [u8; PAGE_SIZE as usize] = [0; PAGE_SIZE as usize];

/// Whether pool bytes `[offset, offset + len)` are all zero, compared in place a page at a time
/// (no copy, no allocation), machine-check safe.
pub fn is_zero(backend: &dyn Backend, offset: u64, len: u64) -> Result<bool> {
    assert_in_bounds(backend.len(), offset, len);
    let base = backend.base() as usize;
    let mut done = 0;
    while done < len {
        let n = (len - done).min(PAGE_SIZE);
        let at = offset + done;
        // SAFETY: the range is inside the mapping (checked above), the zero page holds `n` bytes;
        // nothing is written.
        let zero =
            unsafe { mcsafe::equal((base + at as usize) as *const u8, ZERO_PAGE.as_ptr(), n as usize) }
                .map_err(|e| media_error(base, at, e))?;
        if !zero {
            return Ok(false);
        }
        done += n;
    }
    Ok(true)
}

/// The pool offset of a memory error met while reading from `offset` of the mapping at `base`.
pub(crate) fn media_error(base: usize, offset: u64, e: mcsafe::MemoryError) -> Error {
    let at = e.addr.checked_sub(base).map(|a| a as u64).filter(|&a| a >= offset).unwrap_or(offset);
    Error::MediaError { pool_offset: at }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_zero_sees_one_nonzero_byte_anywhere_in_a_multi_page_range() {
        let backend = RecordingBackend::new(4 * PAGE_SIZE);
        assert!(is_zero(&backend, 0, 4 * PAGE_SIZE).unwrap());
        backend.write(2 * PAGE_SIZE + 4095, &[1]).unwrap();
        assert!(!is_zero(&backend, 100, 3 * PAGE_SIZE).unwrap(), "the last byte of the third page");
        assert!(is_zero(&backend, 0, 2 * PAGE_SIZE + 4095).unwrap(), "the range just before it");
        assert!(is_zero(&backend, 3 * PAGE_SIZE, PAGE_SIZE).unwrap());
    }
}
