//! The kernel's remap calls that std does not wrap: FICLONERANGE (share a range of one file into
//! another), FIDEDUPERANGE with one destination (share it only if the bytes are equal),
//! fallocate(2) in any mode, copy_file_range(2), lseek(SEEK_DATA / SEEK_HOLE) and the unwritten
//! extents FS_IOC_FIEMAP reports. Used on the XFS side of the benchmark and the differential
//! tester. Offsets and lengths are passed bit for bit: the kernel, not this module, decides what
//! is invalid, so its errno comes back unchanged. With [`crate::mapping`], the only `unsafe` of
//! this crate.

use std::io;
use std::os::fd::AsRawFd;

/// FIDEDUPERANGE = _IOWR(0x94, 54, struct file_dedupe_range) (not in the libc crate).
const FIDEDUPERANGE: libc::Ioctl = 0xc018_9436_u32 as libc::Ioctl;
/// FILE_DEDUPE_RANGE_DIFFERS: the ranges' contents differ.
const FILE_DEDUPE_RANGE_DIFFERS: i32 = 1;

/// struct file_dedupe_range followed by exactly one struct file_dedupe_range_info.
#[repr(C)]
struct DedupeOneRange {
    src_offset: u64,
    src_length: u64,
    dest_count: u16,
    reserved1: u16,
    reserved2: u32,
    // info[0]:
    dest_fd: i64,
    dest_offset: u64,
    bytes_deduped: u64,
    status: i32,
    reserved: u32,
}

/// What FIDEDUPERANGE said about its one destination (the call itself succeeded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupeOutcome {
    /// FILE_DEDUPE_RANGE_SAME, with bytes_deduped.
    Same(u64),
    /// FILE_DEDUPE_RANGE_DIFFERS.
    Differs,
    /// A negative status: the destination's errno (for example EXDEV, EINVAL).
    Failed(i32),
}

/// FICLONERANGE on `dst`: shares `len` bytes of `src` at `src_offset` into `dst` at `dst_offset`
/// (`len` 0 = to the end of `src`).
pub fn clone_range(
    src: &impl AsRawFd,
    src_offset: u64,
    len: u64,
    dst: &impl AsRawFd,
    dst_offset: u64,
) -> io::Result<()> {
    let arg = libc::file_clone_range {
        src_fd: src.as_raw_fd() as i64,
        src_offset,
        src_length: len,
        dest_offset: dst_offset,
    };
    // SAFETY: FICLONERANGE reads one struct file_clone_range, which `arg` is (the libc crate's
    // definition of it), alive for the whole call; both fds are open (borrowed handles).
    let rc =
        unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONERANGE, &arg as *const libc::file_clone_range) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// FIDEDUPERANGE on `src` with the one destination `dst`: `len` bytes of `src` at `src_offset`
/// against `dst` at `dst_offset`.
pub fn dedupe_range(
    src: &impl AsRawFd,
    src_offset: u64,
    len: u64,
    dst: &impl AsRawFd,
    dst_offset: u64,
) -> io::Result<DedupeOutcome> {
    let mut arg = DedupeOneRange {
        src_offset,
        src_length: len,
        dest_count: 1,
        reserved1: 0,
        reserved2: 0,
        dest_fd: dst.as_raw_fd() as i64,
        dest_offset: dst_offset,
        bytes_deduped: 0,
        status: 0,
        reserved: 0,
    };
    // SAFETY: FIDEDUPERANGE reads the 24-byte header and `dest_count` (1) 32-byte info entries
    // and writes back bytes_deduped and status; `arg` is exactly that layout (repr(C), no
    // padding: 24 + 32 bytes), exclusively borrowed for the whole call; the fds are open.
    let rc = unsafe { libc::ioctl(src.as_raw_fd(), FIDEDUPERANGE, &mut arg as *mut DedupeOneRange) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(match arg.status {
        0 => DedupeOutcome::Same(arg.bytes_deduped),
        FILE_DEDUPE_RANGE_DIFFERS => DedupeOutcome::Differs,
        negative => DedupeOutcome::Failed(-negative),
    })
}

/// fallocate(FALLOC_FL_UNSHARE_RANGE): gives `file` private copies of the shared blocks of the
/// range.
pub fn unshare_range(file: &impl AsRawFd, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: fallocate takes an fd and three integers; the fd is open (borrowed handle).
    let rc = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_UNSHARE_RANGE,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// fallocate(2) with `mode` (the kernel's `FALLOC_FL_*` bits), passed bit for bit.
pub fn fallocate(file: &impl AsRawFd, mode: u32, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: fallocate takes an fd and three integers; the fd is open (borrowed handle).
    let rc = unsafe {
        libc::fallocate(file.as_raw_fd(), mode as libc::c_int, offset as libc::off_t, len as libc::off_t)
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// copy_file_range(2) from `src` at `src_offset` to `dst` at `dst_offset` (explicit offsets, so
/// neither file position moves), flags 0: the bytes the kernel copied.
pub fn copy_file_range(
    src: &impl AsRawFd,
    src_offset: u64,
    dst: &impl AsRawFd,
    dst_offset: u64,
    len: u64,
) -> io::Result<u64> {
    let mut off_in = src_offset as libc::loff_t;
    let mut off_out = dst_offset as libc::loff_t;
    // SAFETY: the two offsets are live locals the kernel reads and updates; both fds are open
    // (borrowed handles); no buffer is passed.
    let n = unsafe {
        libc::syscall(
            libc::SYS_copy_file_range,
            src.as_raw_fd(),
            &mut off_in as *mut libc::loff_t,
            dst.as_raw_fd(),
            &mut off_out as *mut libc::loff_t,
            len as libc::size_t,
            0 as libc::c_uint,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as u64)
}

/// lseek(fd, offset, SEEK_DATA) (`data`) or SEEK_HOLE: the offset found. Moves the file position.
pub fn seek_data_or_hole(file: &impl AsRawFd, offset: u64, data: bool) -> io::Result<u64> {
    let whence = if data { libc::SEEK_DATA } else { libc::SEEK_HOLE };
    // SAFETY: lseek takes an fd and two integers; the fd is open (borrowed handle).
    let at = unsafe { libc::lseek(file.as_raw_fd(), offset as libc::off_t, whence) };
    if at < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(at as u64)
}

/// Writes `file`'s dirty pages back and drops its pages from the page cache
/// (fdatasync, then posix_fadvise(POSIX_FADV_DONTNEED) over the whole file), so the kernel
/// answers the next SEEK_DATA / SEEK_HOLE from the extents alone: over unwritten extents XFS
/// reports data wherever the page cache holds pages (after a read, say), holes elsewhere.
pub fn drop_cached_pages(file: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: fdatasync and posix_fadvise take an fd and integers; the fd is open (borrowed).
    let rc = unsafe { libc::fdatasync(file.as_raw_fd()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// FS_IOC_FIEMAP = _IOWR('f', 11, struct fiemap).
const FS_IOC_FIEMAP: libc::Ioctl = 0xc020_660b_u32 as libc::Ioctl;
/// FIEMAP_FLAG_SYNC: write dirty data back first, so unwritten means never written.
const FIEMAP_FLAG_SYNC: u32 = 0x1;
/// FIEMAP_EXTENT_LAST.
const FIEMAP_EXTENT_LAST: u32 = 0x1;
/// FIEMAP_EXTENT_UNWRITTEN: allocated, reads as zeros (a preallocated extent).
const FIEMAP_EXTENT_UNWRITTEN: u32 = 0x800;
/// Extents asked for per FS_IOC_FIEMAP call.
const FIEMAP_BATCH: usize = 64;

/// struct fiemap_extent.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct FiemapExtent {
    logical: u64,
    physical: u64,
    length: u64,
    reserved64: [u64; 2],
    flags: u32,
    reserved: [u32; 3],
}

/// struct fiemap followed by room for [`FIEMAP_BATCH`] extents.
#[repr(C)]
struct FiemapRequest {
    start: u64,
    length: u64,
    flags: u32,
    mapped_extents: u32,
    extent_count: u32,
    reserved: u32,
    extents: [FiemapExtent; FIEMAP_BATCH],
}

/// The written extents of `file` (allocated and not unwritten: what SEEK_DATA calls data once
/// the page cache holds nothing) as (offset, length) byte ranges, ascending, after writing dirty
/// data back (FIEMAP_FLAG_SYNC, so no delayed allocation is left).
pub fn written_extents(file: &impl AsRawFd) -> io::Result<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut start = 0u64;
    loop {
        let mut request = FiemapRequest {
            start,
            length: u64::MAX - start,
            flags: FIEMAP_FLAG_SYNC,
            mapped_extents: 0,
            extent_count: FIEMAP_BATCH as u32,
            reserved: 0,
            extents: [FiemapExtent::default(); FIEMAP_BATCH],
        };
        // SAFETY: FS_IOC_FIEMAP reads the 32-byte header and writes at most `extent_count`
        // 56-byte extents after it; `request` is exactly that layout (repr(C)), exclusively
        // borrowed for the whole call; the fd is open.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP, &mut request as *mut FiemapRequest) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let found = &request.extents[..(request.mapped_extents as usize).min(FIEMAP_BATCH)];
        for e in found {
            if e.flags & FIEMAP_EXTENT_UNWRITTEN == 0 {
                out.push((e.logical, e.length));
            }
        }
        match found.last() {
            Some(last) if last.flags & FIEMAP_EXTENT_LAST == 0 && found.len() == FIEMAP_BATCH => {
                start = last.logical + last.length;
            }
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dedupe_argument_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<super::DedupeOneRange>(), 24 + 32);
        assert_eq!(std::mem::size_of::<libc::file_clone_range>(), 32);
        assert_eq!(std::mem::size_of::<super::FiemapExtent>(), 56);
        assert_eq!(std::mem::size_of::<super::FiemapRequest>(), 32 + 56 * super::FIEMAP_BATCH);
    }
}
