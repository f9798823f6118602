//! The kernel's remap calls that std does not wrap: FICLONERANGE (share a range of one file into
//! another), FIDEDUPERANGE with one destination (share it only if the bytes are equal) and
//! fallocate(FALLOC_FL_UNSHARE_RANGE). Used on the XFS side of the benchmark and the differential
//! tester. Offsets and lengths are passed bit for bit: the kernel, not this module, decides what
//! is invalid, so its errno comes back unchanged. The only `unsafe` of this crate.

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

#[cfg(test)]
mod tests {
    #[test]
    fn dedupe_argument_has_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<super::DedupeOneRange>(), 24 + 32);
        assert_eq!(std::mem::size_of::<libc::file_clone_range>(), 32);
    }
}
