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
mod persist;
mod recording;

pub use lock::{command_line, holders_of, LockMode};
pub use mapped::{fd_map_granule, view_granule_error, MappedBackend, Persistence, VIEW_GRANULE_REFUSAL};
pub use persist::flush_instruction_name;
pub use recording::{CrashImage, RecordingBackend};

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
    /// Stores `data` at `offset`. Not durable until flushed and drained.
    fn write(&self, offset: u64, data: &[u8]);
    /// Stores `len` copies of `byte` at `offset`.
    fn fill(&self, offset: u64, len: u64, byte: u8);
    /// Copies `len` bytes inside the pool from `src` to `dst` (ranges must not overlap).
    fn copy_within(&self, src: u64, dst: u64, len: u64);
    /// Starts write-back of the cache lines covering `[offset, offset + len)`.
    fn flush(&self, offset: u64, len: u64);
    /// Waits until every flush issued before it has reached the persistence domain (a fence).
    fn drain(&self);
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

/// Borrows `len` bytes of pool memory at `offset` for reading.
///
/// Callers must hold whatever lock keeps other threads from storing into that range (the file
/// system's lock for metadata and for blocks being compared); the bytes are read directly, no copy.
pub fn bytes(backend: &dyn Backend, offset: u64, len: u64) -> &[u8] {
    assert_in_bounds(backend.len(), offset, len);
    // SAFETY: the range is inside the mapping (checked above), which lives as long as `backend`;
    // the caller's lock keeps library stores out of it while the slice is alive.
    unsafe { std::slice::from_raw_parts(backend.base().add(offset as usize) as *const u8, len as usize) }
}

/// Copies pool bytes at `offset` into `buf`.
pub fn read_into(backend: &dyn Backend, offset: u64, buf: &mut [u8]) {
    assert_in_bounds(backend.len(), offset, buf.len() as u64);
    // SAFETY: in bounds (checked above); `buf` is a distinct Rust slice, so the ranges are disjoint.
    unsafe {
        std::ptr::copy_nonoverlapping(backend.base().add(offset as usize), buf.as_mut_ptr(), buf.len())
    };
}
