//! The FUSE front end: a pool shown as an ordinary directory tree (`ferrodax mount POOL DIR`).
//!
//! Owns translating FUSE requests (the kernel's, through the `fuser` crate) into calls of the
//! public library API (`Fs`, `File`: src/api.rs) and their errors into errnos
//! ([`crate::Error::errno`]); the table of open FUSE handles and directory listings; mounting and
//! unmounting ([`FuseMount`]); and running a mount beside a pool server ([`run`]), so that the
//! mount, library clients (`Fs::connect`) and CLI commands share one pool at once.
//!
//! Must never reach into `src/fs` or `src/format` (or any layer below the API): every request is
//! answered with what `Fs` and `File` offer, exactly as another front end would. What the API
//! does not have yet is refused with the errno a Linux file system without it returns (hard
//! links, symlinks and special files: EPERM; xattrs: EOPNOTSUPP; changing mode, owner or times:
//! EPERM); fallocate modes, SEEK_DATA/SEEK_HOLE and copy_file_range are one library call each,
//! in [`pending`].
//!
//! FUSE has no DAX: file data reaches the kernel's page cache through read and write requests
//! (mmap included), and every write request becomes one [`crate::File::write_at`].

mod mount;
mod ops;
pub mod pending;

pub use mount::{run, FuseMount, MountOptions, MountReport, Serving, DEFAULT_FUSE_THREADS};
pub use ops::FuseFs;
