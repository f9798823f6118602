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
    /// Bytes actually mapped: `len` rounded up to the device's alignment (a /dev/dax device only
    /// maps whole multiples of its `align`); the pool uses the first `len` of them.
    map_len: u64,
    /// The smallest unit a mapping of the pool's descriptor may have (and be placed at): 4096,
    /// or a /dev/dax device's `align` (often 2 MiB).
    granule: u64,
    /// Mapped with MAP_SHARED_VALIDATE | MAP_SYNC: a DAX file whose metadata the kernel keeps
    /// durable at every write fault, so cache flushes are enough.
    map_sync: bool,
    kind: BackendKind,
    persistence: Persistence,
    /// Mapped without PROT_WRITE from a descriptor opened read-only: every store is a bug.
    read_only: bool,
    /// A plain file with holes (made with --sparse, or by another tool): blocks are allocated on
    /// the host file system as the pool hands them out ([`Backend::ensure_backed`]).
    sparse: std::sync::atomic::AtomicBool,
    /// The page range covering everything flushed since the last drain (msync persistence only).
    pending_sync: Mutex<Option<(u64, u64)>>,
    /// Held by a drain from taking `pending_sync` until its msync returned: a drain that finds
    /// the range another thread's drain took waits here until it is durable.
    syncing: Mutex<()>,
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
        Self::map(file, len, BackendKind::File, persistence, false, PAGE_SIZE)
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
        Self::map(file, len, BackendKind::File, persistence, false, PAGE_SIZE)
    }

    /// Opens an existing pool for reading and writing: a plain file, or a /dev/dax character
    /// device. Takes the exclusive pool lock: a pool has one read-write owner at a time, and a
    /// second is refused at once (an error of kind `WouldBlock` naming the holder).
    pub fn open_path(path: &Path) -> io::Result<Self> {
        Self::open_with(path, LockMode::Exclusive, None)
    }

    /// Opens an existing pool for reading and writing and uses only its first `size` bytes (a
    /// multiple of 4096): how `mkfs --size` formats part of a /dev/dax device. The device is
    /// mapped in whole multiples of its alignment; the backend's length is `size`. A later
    /// [`MappedBackend::open_path`] maps the whole device and the superblock says how much of it
    /// the file system uses. EINVAL when `size` is larger than the pool or device.
    pub fn open_path_sized(path: &Path, size: u64) -> io::Result<Self> {
        Self::open_with(path, LockMode::Exclusive, Some(round_up_to_page(size)?))
    }

    /// Opens an existing pool for reading only (the file need only be readable): mapped without
    /// write access, under a shared lock, so it never sees a read-write owner's half-done work.
    pub fn open_path_read_only(path: &Path) -> io::Result<Self> {
        Self::open_with(path, LockMode::Shared, None)
    }

    fn open_with(path: &Path, mode: LockMode, size: Option<u64>) -> io::Result<Self> {
        let read_only = mode == LockMode::Shared;
        let file = OpenOptions::new().read(true).write(!read_only).open(path)?;
        let meta = file.metadata()?;
        let too_big = |size: u64, have: u64| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: --size {size} is larger than the device ({have} bytes)", path.display()),
            )
        };
        if meta.file_type().is_char_device() {
            let dev = devdax_attributes(&meta, path)?;
            let len = match size {
                Some(size) if size > dev.size => return Err(too_big(size, dev.size)),
                Some(size) => size,
                None => dev.size,
            };
            lock_pool(&file, path, mode)?;
            return Self::map(file, len, BackendKind::DevDax, Persistence::CacheFlush, read_only, dev.align);
        }
        if !meta.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: not a regular file or a /dev/dax device", path.display()),
            ));
        }
        let mut len = meta.len();
        if len == 0 || len % PAGE_SIZE != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: size {len} is not a positive multiple of 4096", path.display()),
            ));
        }
        if let Some(size) = size {
            if size > len {
                return Err(too_big(size, len));
            }
            len = size;
        }
        lock_pool(&file, path, mode)?;
        let persistence = file_persistence(&file);
        Self::map(file, len, BackendKind::File, persistence, read_only, PAGE_SIZE)
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
        Self::map(file, len, BackendKind::Memfd, Persistence::CacheFlush, false, PAGE_SIZE)
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

    /// True when the pool file is mapped with MAP_SYNC (a file on a DAX file system): its
    /// persistence is cache flushes.
    pub fn is_map_sync(&self) -> bool {
        self.map_sync
    }

    /// The smallest unit in which the pool's descriptor can be mapped: 4096, or a /dev/dax
    /// device's `align`. Views need 4096 (see [`view_granule_error`]).
    pub fn granule(&self) -> u64 {
        self.granule
    }

    fn map(
        file: File,
        len: u64,
        kind: BackendKind,
        persistence: Persistence,
        read_only: bool,
        granule: u64,
    ) -> io::Result<Self> {
        // Reads of pool memory land on their landing pads when the memory is bad.
        super::mcsafe::install();
        let sparse = kind == BackendKind::File && !read_only && has_holes(&file);
        let map_len =
            len.checked_next_multiple_of(granule.max(PAGE_SIZE)).ok_or(io::ErrorKind::InvalidInput)?;
        let size = usize::try_from(map_len).map_err(|_| io::ErrorKind::InvalidInput)?;
        let prot = if read_only { libc::PROT_READ } else { libc::PROT_READ | libc::PROT_WRITE };
        let map_at = |flags: libc::c_int| {
            // SAFETY: mapping a file descriptor we own, shared, from offset 0; the result is
            // checked for MAP_FAILED and unmapped only in Drop.
            unsafe { libc::mmap(std::ptr::null_mut(), size, prot, flags, file.as_raw_fd(), 0) }
        };
        // A writable pool file is first tried with MAP_SYNC: on a DAX file system (fsdax) the
        // kernel then makes the file's metadata durable before a write fault returns, so the
        // CPU cache flushes are the whole persistence story. Elsewhere the kernel refuses the
        // flag (EOPNOTSUPP, or EINVAL on kernels without MAP_SHARED_VALIDATE) and the pool keeps
        // its msync persistence.
        let mut map_sync = false;
        let mut persistence = persistence;
        let mut base = libc::MAP_FAILED;
        if kind == BackendKind::File && !read_only {
            base = map_at(libc::MAP_SHARED_VALIDATE | libc::MAP_SYNC);
            if base != libc::MAP_FAILED {
                map_sync = true;
                persistence = Persistence::CacheFlush;
            } else {
                let err = io::Error::last_os_error();
                if !matches!(err.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) {
                    return Err(err);
                }
            }
        }
        if base == libc::MAP_FAILED {
            base = map_at(libc::MAP_SHARED);
        }
        if base == libc::MAP_FAILED {
            let err = io::Error::last_os_error();
            if kind == BackendKind::DevDax && err.raw_os_error() == Some(libc::EINVAL) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("mmap of {map_len} bytes of the /dev/dax device (align {granule}): {err}"),
                ));
            }
            return Err(err);
        }
        super::mcsafe::register_pool_mapping(base as usize, size);
        Ok(Self {
            file,
            base: base.cast(),
            len,
            map_len,
            granule,
            map_sync,
            kind,
            persistence,
            read_only,
            sparse: std::sync::atomic::AtomicBool::new(sparse),
            pending_sync: Mutex::new(None),
            syncing: Mutex::new(()),
        })
    }
}

/// The mapping granule of a pool descriptor (what [`Backend::map_granule`] says of the backend
/// that owns it): a /dev/dax device's `align`, 4096 for anything else. For a pool server's client,
/// which holds only the descriptor.
pub fn fd_map_granule(fd: RawFd) -> u64 {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat fills the struct for a valid descriptor; we read it only on success.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return PAGE_SIZE;
    }
    // SAFETY: fstat succeeded.
    let st = unsafe { st.assume_init() };
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR {
        return PAGE_SIZE;
    }
    let (major, minor) = (libc::major(st.st_rdev), libc::minor(st.st_rdev));
    std::fs::read_to_string(format!("/sys/dev/char/{major}:{minor}/align"))
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(PAGE_SIZE)
        .max(PAGE_SIZE)
}

/// How the refusal of [`view_granule_error`] begins (front ends show its detail).
pub const VIEW_GRANULE_REFUSAL: &str = "views of files need a pool that maps in 4096-byte pages";

/// Why views (4 KiB pages placed one by one with MAP_FIXED) cannot be made on a pool whose
/// descriptor maps only in units of `granule`, or `None` when they can. A /dev/dax device with
/// a 2 MiB (or 1 GiB) `align` refuses every mapping that is not a whole multiple of it at an
/// aligned file offset (the kernel answers EINVAL), so a file page cannot be shown at an
/// arbitrary view page. `what` names the pool in the message.
pub fn view_granule_error(granule: u64, what: &str) -> Option<String> {
    (granule > PAGE_SIZE).then(|| {
        format!(
            "{VIEW_GRANULE_REFUSAL}, but {what} has align {granule} \
             ({} KiB): the kernel refuses smaller mappings (EINVAL). Every other operation works. \
             Make the device 4 KiB-aligned (`ndctl create-namespace -f -e namespaceX.Y -m devdax -a 4K`; \
             or by hand: unbind daxX.Y from /sys/bus/nd/drivers/dax_pmem, write a new uuid and 4096 to \
             /sys/bus/nd/devices/daxX.Y/uuid and align, bind it again), then mkfs again",
            granule / 1024
        )
    })
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

/// A device-dax instance's size and alignment, from sysfs.
struct DevDax {
    size: u64,
    align: u64,
}

/// Reads a device-dax instance's size and `align` from sysfs (/sys/dev/char/MAJ:MIN/{size,align}).
/// Without an `align` attribute (older kernels) 4096 is assumed; a device that then refuses the
/// mapping says so with EINVAL, which `map` reports with the alignment it tried.
fn devdax_attributes(meta: &std::fs::Metadata, path: &Path) -> io::Result<DevDax> {
    use std::os::unix::fs::MetadataExt;
    let rdev = meta.rdev();
    let dir = format!("/sys/dev/char/{}:{}", libc::major(rdev), libc::minor(rdev));
    let read = |name: &str| -> io::Result<Option<u64>> {
        match std::fs::read_to_string(format!("{dir}/{name}")) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{dir}/{name}: {e}"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound && name == "align" => Ok(None),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("{}: not a /dev/dax device ({dir}/{name}: {e})", path.display()),
            )),
        }
    };
    let size = read("size")?.unwrap_or(0);
    let align = read("align")?.unwrap_or(PAGE_SIZE).max(PAGE_SIZE);
    let size = size / PAGE_SIZE * PAGE_SIZE;
    if size == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: the /dev/dax device has size 0", path.display()),
        ));
    }
    Ok(DevDax { size, align })
}

impl Backend for MappedBackend {
    fn len(&self) -> u64 {
        self.len
    }

    fn base(&self) -> *mut u8 {
        self.base
    }

    fn write(&self, offset: u64, data: &[u8]) -> crate::error::Result<()> {
        assert!(!self.read_only, "a store into a pool opened read-only");
        assert_in_bounds(self.len, offset, data.len() as u64);
        // SAFETY: bounds checked above; the source is a separate Rust slice, so no overlap; a fault
        // storing into the pool lands on the copy's landing pad.
        unsafe { super::mcsafe::copy(self.base.add(offset as usize), data.as_ptr(), data.len()) }
            .map_err(|e| super::media_error(self.base as usize, offset, e))
    }

    fn fill(&self, offset: u64, len: u64, byte: u8) -> crate::error::Result<()> {
        assert!(!self.read_only, "a store into a pool opened read-only");
        assert_in_bounds(self.len, offset, len);
        // Machine-check safe: the bytes go through the copy routine, a page at a time, from a
        // page of `byte`s. Never a page on the stack: a DAX store fault commits (and may write a
        // checkpoint, which zeroes log stretches) inside the signal handler, on whatever stack the
        // faulting thread has left.
        let other;
        let source: &[u8] = if byte == 0 {
            &super::ZERO_PAGE
        } else {
            other = vec![byte; PAGE_SIZE as usize];
            &other
        };
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(PAGE_SIZE);
            let at = offset + done;
            // SAFETY: in bounds (checked above for the whole range); the source is a distinct buffer.
            unsafe { super::mcsafe::copy(self.base.add(at as usize), source.as_ptr(), n as usize) }
                .map_err(|e| super::media_error(self.base as usize, at, e))?;
            done += n;
        }
        Ok(())
    }

    fn write_flushed(&self, offset: u64, data: &[u8]) -> crate::error::Result<()> {
        if self.persistence != Persistence::CacheFlush || !super::mcsafe::streams(offset, data.len()) {
            self.write(offset, data)?;
            self.flush(offset, data.len() as u64);
            return Ok(());
        }
        assert!(!self.read_only, "a store into a pool opened read-only");
        assert_in_bounds(self.len, offset, data.len() as u64);
        // SAFETY: as in `write`. Non-temporal stores reach memory with the next fence: nothing to
        // flush (the pool's base is page-aligned, so the destination's alignment is the offset's).
        unsafe { super::mcsafe::copy_streaming(self.base.add(offset as usize), data.as_ptr(), data.len()) }
            .map_err(|e| super::media_error(self.base as usize, offset, e))
    }

    fn copy_within_flushed(&self, src: u64, dst: u64, len: u64) -> crate::error::Result<()> {
        if self.persistence != Persistence::CacheFlush || !super::mcsafe::streams(dst, len as usize) {
            self.copy_within(src, dst, len)?;
            self.flush(dst, len);
            return Ok(());
        }
        assert!(!self.read_only, "a store into a pool opened read-only");
        assert_in_bounds(self.len, src, len);
        assert_in_bounds(self.len, dst, len);
        assert!(src + len <= dst || dst + len <= src, "copy_within ranges overlap");
        // SAFETY: as in `copy_within`; nothing to flush, as in `write_flushed`.
        unsafe {
            super::mcsafe::copy_streaming(
                self.base.add(dst as usize),
                self.base.add(src as usize),
                len as usize,
            )
        }
        .map_err(|e| super::media_error(self.base as usize, src, e))
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
                *pending = Some(pending.map_or((start, end), |(s, e)| (s.min(start), e.max(end))));
            }
        }
    }

    fn drain(&self) {
        match self.persistence {
            Persistence::CacheFlush => store_fence(),
            Persistence::Msync => {
                // One msync over everything flushed since the last drain: each call ends in the
                // host file system's fsync (a device cache flush on a disk), and writing back
                // dirty pages between the flushed ranges early is always allowed (they may
                // persist at any time anyway).
                let _syncing = self.syncing.lock().unwrap_or_else(|e| e.into_inner());
                let pending = self.pending_sync.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some((start, end)) = pending {
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

    fn drain_flushes_device(&self) -> bool {
        self.persistence == Persistence::Msync
    }

    fn kind(&self) -> BackendKind {
        self.kind
    }

    fn raw_fd(&self) -> Option<RawFd> {
        Some(self.file.as_raw_fd())
    }

    fn map_granule(&self) -> u64 {
        self.granule
    }
}

impl Drop for MappedBackend {
    fn drop(&mut self) {
        super::mcsafe::unregister_pool_mapping(self.base as usize);
        // SAFETY: unmapping exactly the region mapped in `map`; nothing borrows it past drop.
        unsafe { libc::munmap(self.base.cast(), self.map_len as usize) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_file_off_dax_falls_back_from_map_sync_and_open_sized_uses_a_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pool");
        let pool = MappedBackend::create_file(&path, 1 << 20).unwrap();
        // This host's temporary directory is not a DAX file system: the kernel refuses MAP_SYNC
        // and the pool keeps msync (or cache flushes on tmpfs).
        assert!(!pool.is_map_sync());
        assert_eq!(pool.granule(), PAGE_SIZE);
        drop(pool);
        let part = MappedBackend::open_path_sized(&path, 64 << 10).unwrap();
        assert_eq!(part.len(), 64 << 10);
        drop(part);
        let err = MappedBackend::open_path_sized(&path, 2 << 20).err().unwrap();
        assert!(err.to_string().contains("larger than"), "{err}");
    }

    #[test]
    fn views_need_a_4k_granule() {
        assert_eq!(view_granule_error(PAGE_SIZE, "p"), None);
        let why = view_granule_error(2 << 20, "/dev/dax0.0").unwrap();
        assert!(why.contains("align 2097152") && why.contains("-a 4K"), "{why}");
    }
}
