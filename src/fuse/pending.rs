//! The FUSE requests whose library operations are being added on another branch: fallocate
//! modes, lseek's SEEK_DATA/SEEK_HOLE and copy_file_range. All in this one place, each answering
//! ENOSYS today.
//!
//! Owns nothing else. Must never implement these operations itself (they belong in the library,
//! src/fs and src/api.rs): when the library has them, each function here becomes one call of the
//! API and its error's errno ([`crate::Error::errno`]).
//!
//! What ENOSYS does meanwhile, in the kernel's FUSE client (it then stops asking for the rest of
//! the mount): fallocate(2) fails with EOPNOTSUPP (posix_fallocate falls back to writing zeros);
//! lseek(2) is answered by the kernel itself from the file size (SEEK_DATA: the offset, SEEK_HOLE:
//! EOF, as for a file without holes); copy_file_range(2) falls back to the kernel's generic copy
//! through read and write requests.

use crate::{File, Fs};
use fuser::Errno;

// WIRE-WHEN-MERGED (fallocate): `mode` is FALLOC_FL_* (0 = allocate and extend); answer with
// the library's fallocate on `file` and map its error with `Errno::from_i32(e.errno())`.
/// fallocate(2) on an open file: ENOSYS until the library's fallocate modes are merged.
pub fn fallocate(_fs: &Fs, _file: &File, _offset: u64, _length: u64, _mode: i32) -> Result<(), Errno> {
    Err(Errno::ENOSYS)
}

// WIRE-WHEN-MERGED (lseek): SEEK_DATA (3) and SEEK_HOLE (4) from the library; SEEK_SET, SEEK_CUR
// and SEEK_END never reach a FUSE file system (the kernel does them).
/// lseek(2) with SEEK_DATA or SEEK_HOLE: ENOSYS until the library's are merged.
pub fn lseek(_fs: &Fs, _file: &File, _offset: i64, _whence: i32) -> Result<i64, Errno> {
    Err(Errno::ENOSYS)
}

// WIRE-WHEN-MERGED (copy_file_range): the library's copy_file_range between the two open files
// (it may share blocks, as XFS does); the answer is the bytes copied.
/// copy_file_range(2) between two open files of this mount: ENOSYS until the library's is merged.
pub fn copy_file_range(
    _fs: &Fs,
    _src: (&File, u64),
    _dst: (&File, u64),
    _len: u64,
    _flags: u64,
) -> Result<u32, Errno> {
    Err(Errno::ENOSYS)
}
