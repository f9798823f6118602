//! Stores and loads through a shared memory mapping of a file (`mmap(MAP_SHARED)`), and the
//! attribute refresh a FUSE file needs after another client changed it: the kernel calls the
//! differential tester makes for mmap and that std does not wrap.
//!
//! Owns mapping a page-aligned range, copying bytes in or out with plain memory accesses,
//! `msync(MS_SYNC)` and unmapping, all inside one call, so no mapping outlives it; and
//! `statx(AT_STATX_FORCE_SYNC)`. Must never touch a page that lies wholly past the file's end as
//! the kernel sees it at the call (that access raises SIGBUS and ends the process): each call
//! reads the size first and refuses such a range with [`io::ErrorKind::InvalidInput`]. The caller
//! must not change the file's size from another thread meanwhile.

use std::io;
use std::os::fd::AsRawFd;

/// The page size the mappings assume (ferrodax's block size; checked at run time).
const PAGE: u64 = 4096;

/// A shared mapping of the pages covering `[offset, offset + len)` of a file, unmapped on drop.
struct SharedMap {
    base: *mut libc::c_void,
    map_len: usize,
    /// Where `offset` lies inside the mapping.
    skew: usize,
}

impl SharedMap {
    /// Maps the pages of `file` that hold `[offset, offset + len)` (`len` > 0), read-write when
    /// `write`; refuses a range with a page wholly past EOF (see the module doc).
    fn new(file: &impl AsRawFd, offset: u64, len: usize, write: bool) -> io::Result<SharedMap> {
        // SAFETY: sysconf takes an integer and reads nothing of ours.
        if unsafe { libc::sysconf(libc::_SC_PAGESIZE) } != PAGE as libc::c_long {
            return Err(io::Error::other("mappings here assume 4096-byte pages"));
        }
        let end = offset.checked_add(len as u64).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        if len == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let size = file_size(file)?;
        if end > size.next_multiple_of(PAGE) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("[{offset}, {end}) reaches a page past EOF ({size}): an access there raises SIGBUS"),
            ));
        }
        let start = offset / PAGE * PAGE;
        let map_len = usize::try_from(end.next_multiple_of(PAGE) - start)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let prot = if write { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
        // SAFETY: a fresh mapping chosen by the kernel (address null), of an open fd (borrowed);
        // nothing of ours is passed.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                prot,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                start as libc::off_t,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(SharedMap { base, map_len, skew: (offset - start) as usize })
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: `base` and `map_len` are exactly the mapping `new` made, unmapped only here.
        unsafe { libc::munmap(self.base, self.map_len) };
    }
}

/// fstat's size of `file`.
fn file_size(file: &impl AsRawFd) -> io::Result<u64> {
    let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes one struct stat into the buffer given, which is that type, alive for
    // the call; the fd is open.
    let rc = unsafe { libc::fstat(file.as_raw_fd(), stat.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded, so it filled the struct.
    Ok(unsafe { stat.assume_init() }.st_size as u64)
}

/// Stores `data` at file offset `offset` with plain memory stores through a fresh
/// `mmap(MAP_SHARED, PROT_READ | PROT_WRITE)` of the pages holding the range, then (when `sync`)
/// `msync(MS_SYNC)`, then unmaps. Bytes of the last page that lie past EOF may be stored (the
/// kernel allows it; they never become file data). Refuses (InvalidInput) a range reaching a
/// page wholly past EOF, and `data` empty (EINVAL, as mmap of length 0).
pub fn store(file: &impl AsRawFd, offset: u64, data: &[u8], sync: bool) -> io::Result<()> {
    let map = SharedMap::new(file, offset, data.len(), true)?;
    // SAFETY: the mapping covers [skew, skew + data.len()) (SharedMap::new sized it so), is
    // writable, and every page of it holds file bytes or the tail of the EOF page (no SIGBUS);
    // `data` is ordinary memory, not inside the fresh mapping.
    unsafe {
        std::ptr::copy_nonoverlapping(data.as_ptr(), (map.base as *mut u8).add(map.skew), data.len());
    }
    if sync {
        // SAFETY: msync of exactly the mapping made above.
        let rc = unsafe { libc::msync(map.base, map.map_len, libc::MS_SYNC) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Loads `len` bytes at file offset `offset` with plain memory loads through a fresh
/// `mmap(MAP_SHARED, PROT_READ)` of the pages holding the range, then unmaps. Refuses
/// (InvalidInput) a range reaching a page wholly past EOF, and `len` 0 (EINVAL).
pub fn load(file: &impl AsRawFd, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let map = SharedMap::new(file, offset, len, false)?;
    let mut out = vec![0u8; len];
    // SAFETY: the mapping covers [skew, skew + len) and is readable, every page of it within the
    // EOF page (no SIGBUS); `out` is ordinary memory of `len` bytes.
    unsafe {
        std::ptr::copy_nonoverlapping((map.base as *const u8).add(map.skew), out.as_mut_ptr(), len);
    }
    Ok(out)
}

/// `statx(fd, "", AT_EMPTY_PATH | AT_STATX_FORCE_SYNC)`: makes a network or FUSE file system
/// fetch the file's attributes now instead of answering from its cache (so a size or mtime
/// another client changed becomes the kernel's; FUSE then drops the cached pages too when it was
/// mounted with auto_inval_data). Returns the size and link count it got.
pub fn refresh_attributes(file: &impl AsRawFd) -> io::Result<(u64, u64)> {
    let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: statx reads the NUL-terminated empty path (a static C string) and writes one
    // struct statx into the buffer given, which is that type, alive for the call; the fd is open.
    let rc = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_STATX_FORCE_SYNC,
            libc::STATX_SIZE | libc::STATX_NLINK | libc::STATX_MTIME,
            stx.as_mut_ptr(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statx succeeded, so it filled the struct (zeroed before, so fully initialised).
    let stx = unsafe { stx.assume_init() };
    Ok((stx.stx_size, u64::from(stx.stx_nlink)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn scratch(size: u64) -> std::fs::File {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("hostkit-mapping-{}-{size}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        file.set_len(size).unwrap();
        file
    }

    #[test]
    fn a_store_through_the_mapping_is_read_back_by_pread_and_by_a_load() {
        let file = scratch(10_000);
        store(&file, 4000, &[0x5a; 300], true).unwrap();
        let mut buf = [0u8; 302];
        file.read_exact_at(&mut buf, 3999).unwrap();
        assert_eq!(buf[0], 0);
        assert!(buf[1..301].iter().all(|&b| b == 0x5a));
        assert_eq!(buf[301], 0);
        assert_eq!(load(&file, 4000, 300).unwrap(), vec![0x5a; 300]);
    }

    #[test]
    fn a_range_reaching_a_page_wholly_past_eof_is_refused_without_touching_it() {
        let file = scratch(5000);
        // The EOF page's tail (5000..8192) may be stored to; 8192 onwards is past it.
        store(&file, 7000, &[1; 1192], false).unwrap();
        assert_eq!(file_size(&file).unwrap(), 5000);
        let refused = store(&file, 8000, &[1; 193], false).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(load(&file, 9000, 1).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(store(&file, 0, &[], false).unwrap_err().raw_os_error(), Some(libc::EINVAL));
    }

    #[test]
    fn refresh_attributes_reports_size_and_link_count() {
        let file = scratch(12_345);
        assert_eq!(refresh_attributes(&file).unwrap(), (12_345, 0));
    }
}
