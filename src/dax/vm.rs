//! Virtual-memory primitives for DAX views: reserve an address range, place pool pages in it,
//! change their protection, put holes and beyond-EOF sentinels there, and release it.
//!
//! Owns every mmap/mprotect/munmap the DAX layer makes. Must never map outside a range it reserved
//! itself (every MAP_FIXED targets pages of a live reservation), and never hand out references.

use crate::error::{Error, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Bytes per page of a view (the pool block size).
pub const PAGE: usize = 4096;

/// How a page of a view may be accessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum PageProtection {
    /// Loads only; a store faults (shared blocks, holes, read-only views).
    ReadOnly,
    /// Loads and stores (private blocks of writable views).
    ReadWrite,
}

impl PageProtection {
    fn bits(self) -> i32 {
        match self {
            PageProtection::ReadOnly => libc::PROT_READ,
            PageProtection::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        }
    }
}

fn os_error(what: &str) -> Error {
    Error::os(what, std::io::Error::last_os_error())
}

/// A reserved, page-aligned address range; unmapped when dropped.
#[derive(Debug)]
pub struct Reservation {
    base: usize,
    len: usize,
    /// The last pool descriptor whose writable mapping refused MAP_SYNC, plus one (0: none), so
    /// that later writable placements of that descriptor skip the attempt (one mmap per placement,
    /// not two: this runs once per copy-on-write fault). An atomic, as placements run in the store
    /// fault handler.
    map_sync_refused_by: AtomicU64,
}

impl Reservation {
    /// Reserves `len` bytes (a multiple of [`PAGE`]) aligned to `align` (a power of two ≥ PAGE),
    /// initially inaccessible.
    pub fn new(len: usize, align: usize) -> Result<Self> {
        assert!(len > 0 && len % PAGE == 0 && align.is_power_of_two() && align >= PAGE);
        let span = len + align - PAGE;
        // SAFETY: an anonymous PROT_NONE mapping at an address the kernel picks; touches nothing.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                span,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(os_error("reserving address space for a view"));
        }
        let raw = raw as usize;
        let base = raw.next_multiple_of(align);
        // Trim the slack before and after the aligned window.
        // SAFETY: both trimmed ranges lie inside the mapping just made and are not used.
        unsafe {
            if base > raw {
                libc::munmap(raw as *mut libc::c_void, base - raw);
            }
            let end = base + len;
            if raw + span > end {
                libc::munmap(end as *mut libc::c_void, raw + span - end);
            }
        }
        Ok(Self { base, len, map_sync_refused_by: AtomicU64::new(0) })
    }

    /// First address.
    pub fn base(&self) -> usize {
        self.base
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false (a reservation has at least one page).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, page: usize, pages: usize) {
        assert!(pages > 0 && (page + pages) * PAGE <= self.len, "view pages out of range");
    }

    /// Maps `pages` pages starting at view page `page` onto `fd` at byte `offset`, shared.
    pub fn map_pool(
        &self,
        page: usize,
        pages: usize,
        fd: RawFd,
        offset: u64,
        prot: PageProtection,
    ) -> Result<()> {
        self.check(page, pages);
        let map = |flags: libc::c_int| {
            // SAFETY: MAP_FIXED over pages of our own live reservation (checked above); the pool
            // fd stays open while the file system lives, which outlives every view.
            unsafe {
                libc::mmap(
                    (self.base + page * PAGE) as *mut libc::c_void,
                    pages * PAGE,
                    prot.bits(),
                    flags | libc::MAP_FIXED,
                    fd,
                    offset as libc::off_t,
                )
            }
        };
        // A writable mapping of a pool file on a DAX file system is MAP_SYNC, as the pool's own
        // mapping is (pool::mapped): a store that makes the file system allocate a block then
        // commits that allocation before the store resumes, so the cache flushes that make the
        // pool durable suffice. The kernel checks MAP_SYNC before it touches the range, so a
        // refusal (EOPNOTSUPP: not DAX; EINVAL: an old kernel) leaves the reservation as it was.
        let mut rc = libc::MAP_FAILED;
        let refused_tag = u64::from(fd as u32) + 1;
        if prot == PageProtection::ReadWrite
            && self.map_sync_refused_by.load(Ordering::Relaxed) != refused_tag
        {
            // SAFETY: errno is this thread's; restored below (this may run in a signal handler).
            let saved = unsafe { *libc::__errno_location() };
            rc = map(libc::MAP_SHARED_VALIDATE | libc::MAP_SYNC);
            if rc == libc::MAP_FAILED {
                let err = std::io::Error::last_os_error().raw_os_error();
                if !matches!(err, Some(libc::EOPNOTSUPP | libc::EINVAL)) {
                    return Err(os_error("mapping pool pages into a view"));
                }
                // Whether a file supports MAP_SYNC is a property of its file system: it does not
                // change while the descriptor stays open.
                self.map_sync_refused_by.store(refused_tag, Ordering::Relaxed);
                // SAFETY: as above.
                unsafe { *libc::__errno_location() = saved };
            }
        }
        if rc == libc::MAP_FAILED {
            rc = map(libc::MAP_SHARED);
        }
        if rc == libc::MAP_FAILED {
            return Err(os_error("mapping pool pages into a view"));
        }
        Ok(())
    }

    /// Makes `pages` pages read-only zeros (a hole).
    pub fn map_hole(&self, page: usize, pages: usize) -> Result<()> {
        self.check(page, pages);
        // SAFETY: MAP_FIXED over pages of our own reservation; anonymous zero pages.
        let rc = unsafe {
            libc::mmap(
                (self.base + page * PAGE) as *mut libc::c_void,
                pages * PAGE,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if rc == libc::MAP_FAILED {
            return Err(os_error("mapping a hole into a view"));
        }
        Ok(())
    }

    /// Makes `pages` pages raise SIGBUS on any access (past EOF), as the kernel does: they map an
    /// empty memfd, and an access past a file's end is SIGBUS.
    pub fn map_sigbus(&self, page: usize, pages: usize) -> Result<()> {
        self.check(page, pages);
        let fd = sigbus_fd()?;
        // SAFETY: MAP_FIXED over pages of our own reservation; the empty memfd lives forever.
        let rc = unsafe {
            libc::mmap(
                (self.base + page * PAGE) as *mut libc::c_void,
                pages * PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_FIXED,
                fd,
                0,
            )
        };
        if rc == libc::MAP_FAILED {
            return Err(os_error("mapping a past-EOF sentinel into a view"));
        }
        Ok(())
    }

    /// Changes the protection of `pages` pages.
    pub fn protect(&self, page: usize, pages: usize, prot: PageProtection) -> Result<()> {
        self.check(page, pages);
        // SAFETY: pages of our own reservation; mprotect changes no contents.
        let rc = unsafe {
            libc::mprotect((self.base + page * PAGE) as *mut libc::c_void, pages * PAGE, prot.bits())
        };
        if rc != 0 {
            return Err(os_error("changing a view's protection"));
        }
        Ok(())
    }

    /// Copies `len` bytes into view memory at byte `offset` of the reservation, with plain stores.
    ///
    /// A page that is not writable faults: either the caller broke sharing first, or the view is
    /// registered with [`super::fault`] and its handler makes the page writable (or delivers the
    /// signal) before the store resumes. The caller must not hold a ferrodax lock.
    pub fn store(&self, offset: usize, data: &[u8]) {
        assert!(offset + data.len() <= self.len);
        // SAFETY: in range of our reservation (asserted); every page is mapped (writable, or
        // read-only with the store fault resolved by the registered handler, or a past-EOF sentinel
        // that raises SIGBUS like the kernel's mapping would).
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), (self.base + offset) as *mut u8, data.len()) };
    }

    /// Copies view memory at byte `offset` into `buf`.
    pub fn load(&self, offset: usize, buf: &mut [u8]) {
        assert!(offset + buf.len() <= self.len);
        // SAFETY: in range of our reservation (asserted); every page is mapped readable or is a
        // past-EOF sentinel, which raises SIGBUS like the kernel's mapping would.
        unsafe {
            std::ptr::copy_nonoverlapping((self.base + offset) as *const u8, buf.as_mut_ptr(), buf.len())
        };
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: the whole reservation is ours; nothing borrows it once the view is gone.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// The empty memfd whose pages raise SIGBUS.
fn sigbus_fd() -> Result<RawFd> {
    static FD: OnceLock<std::result::Result<OwnedFd, i32>> = OnceLock::new();
    let fd = FD.get_or_init(|| {
        // SAFETY: memfd_create with a static C string; the fd is wrapped immediately.
        let fd = unsafe { libc::memfd_create(c"ferrodax-past-eof".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO))
        } else {
            // SAFETY: a fresh fd that nothing else owns.
            Ok(unsafe { OwnedFd::from_raw_fd(fd) })
        }
    });
    match fd {
        Ok(fd) => Ok(fd.as_raw_fd()),
        Err(errno) => Err(Error::os("memfd_create", std::io::Error::from_raw_os_error(*errno))),
    }
}

/// True when the machine's page size is 4096 bytes, which views need (one pool block per page).
pub fn page_size_ok() -> bool {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize == PAGE }
}
