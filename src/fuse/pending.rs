//! The FUSE requests for fallocate modes, lseek's SEEK_DATA/SEEK_HOLE and copy_file_range: each is
//! one call of the library's API (`File::fallocate`, `File::find`, `Fs::copy_file_range`) and its
//! error's errno ([`crate::Error::errno`]).
//!
//! Owns the translation of these three requests only. Must never implement the operations itself:
//! they belong in the library (src/fs/falloc.rs, src/api.rs).

use crate::fs::falloc::SeekTarget;
use crate::{File, Fs};
use fuser::Errno;

/// The library error as the errno the kernel passes on.
fn errno(e: crate::Error) -> Errno {
    Errno::from_i32(e.errno())
}

/// fallocate(2) on an open file: `mode` is FALLOC_FL_* (0 = allocate and extend).
pub fn fallocate(_fs: &Fs, file: &File, offset: u64, length: u64, mode: i32) -> Result<(), Errno> {
    file.fallocate(mode as u32, offset, length).map_err(errno)
}

/// lseek(2) with SEEK_DATA (3) or SEEK_HOLE (4); SEEK_SET, SEEK_CUR and SEEK_END never reach a
/// FUSE file system (the kernel does them).
pub fn lseek(_fs: &Fs, file: &File, offset: i64, whence: i32) -> Result<i64, Errno> {
    let target = match whence {
        libc::SEEK_DATA => SeekTarget::Data,
        libc::SEEK_HOLE => SeekTarget::Hole,
        _ => return Err(Errno::EINVAL),
    };
    let offset = u64::try_from(offset).map_err(|_| Errno::ENXIO)?;
    let found = file.find(offset, target).map_err(errno)?;
    i64::try_from(found).map_err(|_| Errno::EOVERFLOW)
}

/// copy_file_range(2) between two open files of this mount (it shares whole blocks where it can,
/// as XFS does); the answer is the bytes copied.
pub fn copy_file_range(
    fs: &Fs,
    src: (&File, u64),
    dst: (&File, u64),
    len: u64,
    flags: u64,
) -> Result<u32, Errno> {
    if flags != 0 {
        return Err(Errno::EINVAL);
    }
    let copied = fs.copy_file_range(src.0, src.1, dst.0, dst.1, len).map_err(errno)?;
    u32::try_from(copied).map_err(|_| Errno::EOVERFLOW)
}
