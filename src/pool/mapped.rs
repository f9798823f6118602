//! Backends that map real memory: a plain file, a memfd, or a /dev/dax device.
//!
//! Owns the mmap of the pool and its persistence policy. Must never change the pool's size after
//! mapping it, nor unmap while a `MappedBackend` is alive.

use super::lock::{lock_pool, LockMode};
use super::persist::{flush_cache_lines, store_fence};
use super::{assert_in_bounds, Backend, BackendKind, PAGE_SIZE};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::Mutex;

/// How stores reach the persistence domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// CPU cache write-back (clwb/clflushopt) then sfence: memory that is persistent by itself
    /// (devdax, a MAP_SYNC mapping) or a memfd that emulates it.
    CacheFlush,
    /// msync(MS_SYNC) of the touched pages at each drain: a plain file's page cache.
    Msync,
}

/// A pool backed by a mapping of a file descriptor.
pub struct MappedBackend {
    file: File,
    base: *mut u8,
    len: u64,
    kind: BackendKind,
    persistence: Persistence,
    /// Mapped without PROT_WRITE from a descriptor opened read-only: every store is a bug.
    read_only: bool,
    /// A plain file with holes (made with --sparse, or by another tool): blocks are allocated on
    /// the host file system as the pool hands them out ([`Backend::ensure_backed`]).
    sparse: std::sync::atomic::AtomicBool,
    /// Page ranges flushed since the last drain (msync persistence only).
    pending_sync: Mutex<Vec<(u64, u64)>>,
}

// SAFETY: the mapping is shared memory owned for the backend's whole life; the raw pointer is only
// used for stores through `&self` methods, which the layers above serialise per block, and for reads.
unsafe impl Send for MappedBackend {}
// SAFETY: see `Send`; no method hands out `&mut` into the mapping.
unsafe impl Sync for MappedBackend {}

impl MappedBackend {
    /// Creates a new sparse pool file of `len` bytes (rounded up to a page), locked for its one
    /// read-write owner. Fails with EEXIST if it exists.
    pub fn create_file(path: &Path, len: u64) -> io::Result<Self> {
        let len = round_up_to_page(len)?;
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
        lock_pool(&file, path, LockMode::Exclusive)?;
        file.set_len(len)?;
        let persistence = file_persistence(&file);
        Self::map(file, len, BackendKind::File, persistence, false)
    }

    /// Like [`MappedBackend::create_file`], but every byte of the file is allocated on the host
    /// file system first (posix_fallocate), so a host file system without room fails here with
    /// ENOSPC instead of a later store into the mapping raising SIGBUS. The file is removed when
    /// the allocation fails.
    pub fn create_file_allocated(path: &Path, len: u64) -> io::Result<Self> {
        let len = round_up_to_page(len)?;
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
        lock_pool(&file, path, LockMode::Exclusive)?;
        let offset_len =
            libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: posix_fallocate takes an open descriptor and a range; it touches no memory of ours.
        let status = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, offset_len) };
        if status != 0 {
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(io::Error::from_raw_os_error(status));
        }
        let persistence = file_persistence(&file);
        Self::map(file, len, BackendKind::File, persistence, false)
    }

    /// Opens an existing pool for reading and writing: a plain file, or a /dev/dax character
    /// device. Takes the exclusive pool lock: a pool has one read-write owner at a time, and a
    /// second is refused at once (an error of kind `WouldBlock` naming the holder).
    pub fn open_path(path: &Path) -> io::Result<Self> {
        Self::open_with(path, LockMode::Exclusive)
    }

    /// Opens an existing pool for reading only (the file need only be readable): mapped without
    /// write access, under a shared lock, so it never sees a read-write owner's half-done work.
    pub fn open_path_read_only(path: &Path) -> io::Result<Self> {
        Self::open_with(path, LockMode::Shared)
    }

    fn open_with(path: &Path, mode: LockMode) -> io::Result<Self> {
        let read_only = mode == LockMode::Shared;
        let file = OpenOptions::new().read(true).write(!read_only).open(path)?;
        let meta = file.metadata()?;
        if meta.file_type().is_char_device() {
            let len = devdax_size(&meta)?;
            lock_pool(&file, path, mode)?;
            return Self::map(file, len, BackendKind::DevDax, Persistence::CacheFlush, read_only);
        }
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a regular file or a /dev/dax device", path.display()),
            ));
        }
        let len = meta.len();
        if len == 0 || len % PAGE_SIZE != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: size {len} is not a positive multiple of 4096", path.display()),
            ));
        }
        lock_pool(&file, path, mode)?;
        let persistence = file_persistence(&file);
        Self::map(file, len, BackendKind::File, persistence, read_only)
    }

    /// Creates an anonymous memfd pool of `len` bytes; persistence is emulated with cache flushes.
    pub fn create_memfd(name: &str, len: u64) -> io::Result<Self> {
        let len = round_up_to_page(len)?;
        let cname = std::ffi::CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: memfd_create takes a valid C string and flags; it returns a new fd or -1.
        let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by memfd_create and is owned by nobody else.
        let file = unsafe { File::from_raw_fd(fd) };
        file.set_len(len)?;
        Self::map(file, len, BackendKind::Memfd, Persistence::CacheFlush, false)
    }

    /// Overrides how stores are made durable (for example cache flushes for a file on /dev/shm).
    pub fn with_persistence(mut self, persistence: Persistence) -> Self {
        self.persistence = persistence;
        self
    }

    /// How this backend makes stores durable.
    pub fn persistence(&self) -> Persistence {
        self.persistence
    }

    /// True when the pool was opened read-only (no store may reach it).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn map(
        file: File,
        len: u64,
        kind: BackendKind,
        persistence: Persistence,
        read_only: bool,
    ) -> io::Result<Self> {
        // Reads of pool memory land on their landing pads when the memory is bad.
        super::mcsafe::install();
        let sparse = kind == BackendKind::File && !read_only && has_holes(&file);
        let size = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: mapping a file descriptor we own, shared, for its full length; the result is
        // checked for MAP_FAILED and unmapped only in Drop.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                if read_only { libc::PROT_READ } else { libc::PROT_READ | libc::PROT_WRITE },
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        super::mcsafe::register_pool_mapping(base as usize, size);
        Ok(Self {
            file,
            base: base.cast(),
            len,
            kind,
            persistence,
            read_only,
            sparse: std::sync::atomic::AtomicBool::new(sparse),
            pending_sync: Mutex::new(Vec::new()),
        })
    }
}

/// msync for a file on a real disk; cache flushes for a file on tmpfs (/dev/shm), whose page cache
/// is the memory itself: msync there would only cost time and make nothing more durable.
fn file_persistence(file: &File) -> Persistence {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let mut st = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: fstatfs writes a statfs struct into the pointer on success; we read it only then.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), st.as_mut_ptr()) };
    if rc == 0 {
        // SAFETY: rc == 0 means the kernel filled the struct.
        let st = unsafe { st.assume_init() };
        #[allow(clippy::unnecessary_cast)] // f_type is not i64 on every target
        if st.f_type as i64 == TMPFS_MAGIC {
            return Persistence::CacheFlush;
        }
    }
    Persistence::Msync
}

/// True when a regular file has fewer blocks allocated than its size needs.
fn has_holes(file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    file.metadata().is_ok_and(|m| m.is_file() && m.blocks() * 512 < m.len())
}

fn round_up_to_page(len: u64) -> io::Result<u64> {
    if len == 0 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "pool size must be positive"));
    }
    len.checked_next_multiple_of(PAGE_SIZE)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pool size overflows"))
}

/// Reads a device-dax region's size from sysfs (/sys/dev/char/MAJ:MIN/size).
fn devdax_size(meta: &std::fs::Metadata) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let rdev = meta.rdev();
    let (major, minor) = (libc::major(rdev), libc::minor(rdev));
    let text = std::fs::read_to_string(format!("/sys/dev/char/{major}:{minor}/size"))?;
    text.trim()
        .parse::<u64>()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("devdax size: {e}")))
}

impl Backend for MappedBackend {
    fn len(&self) -> u64 {
        self.len
    }

    fn base(&self) -> *mut u8 {
        self.base
    }

    fn write(&self, offset: u64, data: &[u8]) {
        assert!(!self.read_only, "a store into a pool opened read-only");
        assert_in_bounds(self.len, offset, data.len() as u64);
        // SAFETY: bounds checked above; the source is a separate Rust slice, so no overlap.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.base.add(offset as usize), data.len()) };
    }

    fn fill(&self, offset: u64, len: u64, byte: u8) {
        assert!(!self.read_only, "a store into a pool opened read-only");
        assert_in_bounds(self.len, offset, len);
        // SAFETY: bounds checked above.
        unsafe { std::ptr::write_bytes(self.base.add(offset as usize), byte, len as usize) };
    }

    fn copy_within(&self, src: u64, dst: u64, len: u64) -> crate::error::Result<()> {
        assert!(!self.read_only, "a store into a pool opened read-only");
        assert_in_bounds(self.len, src, len);
        assert_in_bounds(self.len, dst, len);
        assert!(src + len <= dst || dst + len <= src, "copy_within ranges overlap");
        // SAFETY: both ranges are in bounds and disjoint (checked above); a fault reading the
        // source lands on the copy's landing pad.
        unsafe { super::mcsafe::copy(self.base.add(dst as usize), self.base.add(src as usize), len as usize) }
            .map_err(|e| super::media_error(self.base as usize, src, e))
    }

    fn ensure_backed(&self, offset: u64, len: u64) -> crate::error::Result<()> {
        if !self.sparse.load(std::sync::atomic::Ordering::Relaxed) || len == 0 {
            return Ok(());
        }
        assert_in_bounds(self.len, offset, len);
        // SAFETY: fallocate on our own descriptor; KEEP_SIZE: it only allocates, never changes
        // the file's size (even if someone cut the file under the pool).
        let rc = unsafe {
            libc::fallocate(
                self.file.as_raw_fd(),
                libc::FALLOC_FL_KEEP_SIZE,
                offset as libc::off_t,
                len as libc::off_t,
            )
        };
        let rc = if rc == 0 { 0 } else { io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO) };
        match rc {
            0 => Ok(()),
            libc::ENOSPC => Err(crate::error::Error::NoSpace(format!(
                "the host file system of this sparse pool file is full ({len} bytes at pool offset {offset} could not be allocated)"
            ))),
            // A host file system without fallocate: stores there will allocate as they go.
            libc::EOPNOTSUPP | libc::EINVAL => {
                self.sparse.store(false, std::sync::atomic::Ordering::Relaxed);
                Ok(())
            }
            errno => Err(crate::error::Error::os("allocating pool pages", io::Error::from_raw_os_error(errno))),
        }
    }

    fn flush(&self, offset: u64, len: u64) {
        assert_in_bounds(self.len, offset, len);
        match self.persistence {
            // SAFETY: the range is inside our live mapping (checked above).
            Persistence::CacheFlush => unsafe {
                flush_cache_lines(self.base.add(offset as usize), len as usize)
            },
            Persistence::Msync => {
                let start = offset / PAGE_SIZE * PAGE_SIZE;
                let end = (offset + len).next_multiple_of(PAGE_SIZE);
                let mut pending = self.pending_sync.lock().unwrap_or_else(|e| e.into_inner());
                match pending.last_mut() {
                    Some(last) if last.1 >= start && last.0 <= end => {
                        *last = (last.0.min(start), last.1.max(end));
                    }
                    _ => pending.push((start, end)),
                }
            }
        }
    }

    fn drain(&self) {
        match self.persistence {
            Persistence::CacheFlush => store_fence(),
            Persistence::Msync => {
                let ranges =
                    std::mem::take(&mut *self.pending_sync.lock().unwrap_or_else(|e| e.into_inner()));
                for (start, end) in ranges {
                    // SAFETY: page-aligned range inside our live mapping.
                    let rc = unsafe {
                        libc::msync(
                            self.base.add(start as usize).cast(),
                            (end - start) as usize,
                            libc::MS_SYNC,
                        )
                    };
                    // msync on a valid shared mapping only fails on I/O errors of the backing
                    // file; there is no way to report that from a fence, so it is fatal.
                    assert_eq!(rc, 0, "msync failed: {}", io::Error::last_os_error());
                }
            }
        }
    }

    fn kind(&self) -> BackendKind {
        self.kind
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.file.as_raw_fd())
    }
}

impl Drop for MappedBackend {
    fn drop(&mut self) {
        super::mcsafe::unregister_pool_mapping(self.base as usize);
        // SAFETY: unmapping exactly the region mapped in `map`; nothing borrows it past drop.
        unsafe { libc::munmap(self.base.cast(), self.len as usize) };
    }
}
