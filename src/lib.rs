//! ferrodax: a user-space file system for persistent and CXL memory pools.
//!
//! Files live directly in a memory pool; reflink and dedupe share blocks; a reverse map answers
//! "who owns pool block P?" with every owner. Layers, bottom to top (data flows one way):
//!
//! - [`pool`]: the memory (file, memfd, devdax, recording) and persistence (flush + drain).
//! - [`format`]: on-media byte layouts and checksums.
//! - [`fs`]: inodes, extents, ownership (refcounts + reverse map), allocator, journal, fsck.
//! - [`api`]: the library front end (`Pool`, `Fs`, `File`, `OpenOptions`); the CLI sits on it.
//! - [`fuse`]: the FUSE front end on top of the API (`ferrodax mount`).
//!
//! docs/ARCHITECTURE.md draws the layers and the on-media format byte by byte.

#![warn(missing_docs)]

pub mod api;
pub mod dax;
pub mod error;
pub mod format;
pub mod fs;
pub mod fuse;
/// Entry points for the fuzz targets in `fuzz/` (also run by the stable tests): mount hostile
/// pool images and decode hostile bytes, asserting that nothing panics.
pub mod fuzzing;
pub mod intmap;
pub mod memfail;
pub mod pool;
pub mod server;

pub use api::{DedupeStatus, DedupeTarget, File, Fs, OpenOptions, PeriodicSync, Pool};
pub use error::{Error, Result};
/// Whether an inode is a file or a directory (the kind in [`Stat`] and [`DirEntry`]).
pub use format::record::InodeKind;
pub use fs::check::{CheckReport, Problem};
pub use fs::{BlockOwner, DirEntry, FiemapExtent, FsStats, OwnerKind, ShareState, SpaceUsage, Stat};
