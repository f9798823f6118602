//! The sides the tester drives through the kernel's system calls: a directory the kernel mounts,
//! with the same calls on it whatever file system is behind it ([`KernelSide`]), and the one such
//! file system that is always the oracle, XFS on a loop device ([`XfsMount`]). The FUSE mount of a
//! ferrodax pool (`--through fuse`, [`crate::fuse_side`]) is the other.
//!
//! Owns the system calls of every kernel-driven side, written once: open, pwrite, ftruncate,
//! fsync, fallocate, copy_file_range, lseek(SEEK_DATA/SEEK_HOLE), stores and loads through
//! `mmap(MAP_SHARED)`, rename, link, unlink, fstat and stat. What differs between the file
//! systems behind the directory (how to wipe, remount and check it, where its layout comes from,
//! and calls the kernel would refuse before they reach the file system) is a [`KernelMount`].
//! Must never change a file except through the kernel's calls or, for a call the kernel cannot
//! pass on, the [`KernelMount`]'s documented substitute. No `unsafe` (ferrodax-hostkit has it).

use crate::{errno_of, merge_ranges, Access, Create, Errno, Outcome, Special, System, XFS_IMAGE_SIZE};
use ferrodax_hostkit::remap::{self, DedupeOutcome};
use ferrodax_hostkit::xfs::XfsScratch;
use ferrodax_hostkit::{find_program, mapping, run_command};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// An open file of a kernel-driven side: the kernel's descriptor and, where the side has the
/// library beside the mount (FUSE), the library's handle on the same inode, opened with the same
/// access at the same moment (so it reaches the inode after an unlink too).
pub struct DirFile {
    /// The descriptor every system call goes to.
    pub os: std::fs::File,
    /// The library's handle (FUSE side only).
    pub pool: Option<ferrodax::File>,
}

/// What differs between the file systems a [`KernelSide`] drives. The defaults are the kernel's
/// own calls, right for a file system that has them all (XFS).
pub trait KernelMount {
    /// The directory the main (or, with `other`, the second) file system is mounted on.
    fn root(&self, other: bool) -> Option<&Path>;
    /// Removes everything: the next sequence starts from an empty file system (a pool of
    /// `pool_bytes` where the side has one).
    fn wipe(&mut self, pool_bytes: u64) -> Result<(), String>;
    /// Makes the second file system ready.
    fn prepare_other(&mut self) -> Result<(), String>;
    /// Unmounts and mounts again; the caller has closed every file.
    fn remount(&mut self) -> Result<(), String>;
    /// The library's handle on the file just opened at `path` (relative to the root) with
    /// `access`, for a side whose calls may go to the library.
    fn library_handle(&mut self, _other: bool, _path: &str, _access: Access) -> Option<ferrodax::File> {
        None
    }
    /// FICLONERANGE, issued on `dst`.
    fn reflink(
        &mut self,
        src: &DirFile,
        src_offset: u64,
        dst: &DirFile,
        dst_offset: u64,
        len: u64,
    ) -> Result<(), Errno> {
        remap::clone_range(&src.os, src_offset, len, &dst.os, dst_offset).map_err(|e| errno_of(&e))
    }
    /// FIDEDUPERANGE with one destination, issued on `src`.
    fn dedupe(
        &mut self,
        src: &DirFile,
        src_offset: u64,
        len: u64,
        dst: &DirFile,
        dst_offset: u64,
    ) -> Result<Outcome, Errno> {
        match remap::dedupe_range(&src.os, src_offset, len, &dst.os, dst_offset).map_err(|e| errno_of(&e))? {
            DedupeOutcome::Same(bytes) => Ok(Outcome::Same(bytes)),
            DedupeOutcome::Differs => Ok(Outcome::Differs),
            DedupeOutcome::Failed(errno) => Ok(Outcome::Status(errno)),
        }
    }
    /// fallocate(2) with `mode` (FALLOC_FL_UNSHARE_RANGE included).
    fn fallocate(&mut self, file: &DirFile, mode: u32, offset: u64, len: u64) -> Result<(), Errno> {
        remap::fallocate(&file.os, mode, offset, len).map_err(|e| errno_of(&e))
    }
    /// The byte ranges SEEK_DATA calls data when no page cache is involved, ascending and
    /// disjoint, when the side can say (XFS: written extents).
    fn data_ranges(&mut self, file: &DirFile) -> Option<Vec<(u64, u64)>> {
        remap::written_extents(&file.os).ok().map(|extents| merge_ranges(&extents))
    }
    /// Which blocks of `[first, first + count)` are mapped, when the side can say.
    fn mapped_blocks(&mut self, _file: &DirFile, _first: u64, _count: u64) -> Option<Vec<bool>> {
        None
    }
    /// The file system's own consistency check, when it has one.
    fn fsck(&mut self) -> Option<String> {
        None
    }
    /// What the side's machinery did so far (coverage), when it can say.
    fn coverage(&mut self) -> Option<String> {
        None
    }
    /// Makes a special file; false when the file system has none.
    fn special(&mut self, path: &Path, kind: Special) -> Result<bool, String> {
        let (program, args): (&str, Vec<&std::ffi::OsStr>) = match kind {
            Special::CharDevice => ("mknod", vec![path.as_ref(), "c".as_ref(), "1".as_ref(), "3".as_ref()]),
            Special::Fifo => ("mkfifo", vec![path.as_ref()]),
        };
        let program = find_program(program).ok_or(format!("{program} not found"))?;
        run_command(&program, &args)?;
        Ok(true)
    }
}

/// A file system mounted on a directory, driven through the kernel's system calls.
pub struct KernelSide<M: KernelMount> {
    /// What differs between the file systems.
    pub mount: M,
}

impl<M: KernelMount> KernelSide<M> {
    fn path(&self, other: bool, relative: &str) -> Result<PathBuf, Errno> {
        Ok(self.mount.root(other).ok_or(libc::ENOENT)?.join(relative))
    }
}

/// Removes every entry of `root` (the directory itself stays).
pub fn empty_directory(root: &Path) -> Result<(), String> {
    let entries = std::fs::read_dir(root).map_err(|e| format!("{}: {e}", root.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", root.display()))?;
        let path = entry.path();
        let removed = if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        removed.map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

impl<M: KernelMount> System for KernelSide<M> {
    type Handle = DirFile;

    fn wipe(&mut self, pool_bytes: u64) -> Result<(), String> {
        self.mount.wipe(pool_bytes)
    }

    fn prepare_other(&mut self) -> Result<(), String> {
        self.mount.prepare_other()
    }

    fn open(&mut self, other: bool, path: &str, access: Access, how: Create) -> Result<DirFile, Errno> {
        let full = self.path(other, path)?;
        let mut options = std::fs::OpenOptions::new();
        options.read(true).mode(0o600);
        match access {
            Access::ReadWrite => options.write(true),
            Access::ReadOnly => options.write(false),
            Access::Append => options.append(true),
            Access::NonBlocking => options.write(true).custom_flags(libc::O_NONBLOCK),
        };
        match how {
            Create::No => {}
            Create::IfMissing => {
                options.create(true);
            }
            Create::Exclusive => {
                options.create_new(true);
            }
            Create::Truncate => {
                options.create(true).truncate(true);
            }
        }
        let os = options.open(full).map_err(|e| errno_of(&e))?;
        let pool = self.mount.library_handle(other, path, access);
        Ok(DirFile { os, pool })
    }

    fn mkdir(&mut self, other: bool, path: &str) -> Result<(), String> {
        let full = self.path(other, path).map_err(|_| "no such file system".to_string())?;
        std::fs::create_dir_all(&full).map_err(|e| format!("{}: {e}", full.display()))
    }

    fn special(&mut self, path: &str, kind: Special) -> Result<bool, String> {
        let full = self.path(false, path).map_err(|_| "no main file system".to_string())?;
        self.mount.special(&full, kind)
    }

    fn pwrite(&mut self, file: &DirFile, data: &[u8], offset: u64) -> Result<u64, Errno> {
        file.os.write_at(data, offset).map(|n| n as u64).map_err(|e| errno_of(&e))
    }

    fn truncate(&mut self, file: &DirFile, size: u64) -> Result<(), Errno> {
        file.os.set_len(size).map_err(|e| errno_of(&e))
    }

    fn fsync(&mut self, file: &DirFile) -> Result<(), Errno> {
        file.os.sync_all().map_err(|e| errno_of(&e))
    }

    fn reflink(
        &mut self,
        src: &DirFile,
        src_offset: u64,
        dst: &DirFile,
        dst_offset: u64,
        len: u64,
    ) -> Result<(), Errno> {
        self.mount.reflink(src, src_offset, dst, dst_offset, len)
    }

    fn dedupe(
        &mut self,
        src: &DirFile,
        src_offset: u64,
        len: u64,
        dst: &DirFile,
        dst_offset: u64,
    ) -> Result<Outcome, Errno> {
        self.mount.dedupe(src, src_offset, len, dst, dst_offset)
    }

    fn unshare(&mut self, file: &DirFile, offset: u64, len: u64) -> Result<(), Errno> {
        self.mount.fallocate(file, libc::FALLOC_FL_UNSHARE_RANGE as u32, offset, len)
    }

    fn fallocate(&mut self, file: &DirFile, mode: u32, offset: u64, len: u64) -> Result<(), Errno> {
        self.mount.fallocate(file, mode, offset, len)
    }

    fn copy_range(
        &mut self,
        src: &DirFile,
        src_offset: u64,
        dst: &DirFile,
        dst_offset: u64,
        len: u64,
    ) -> Result<u64, Errno> {
        remap::copy_file_range(&src.os, src_offset, &dst.os, dst_offset, len).map_err(|e| errno_of(&e))
    }

    fn seek(&mut self, file: &DirFile, offset: u64, data: bool) -> Result<u64, Errno> {
        // The file system answers from its extents, not from what the comparisons (or mmap
        // stores) left in the page cache (docs/CONFORMANCE.md, D3).
        remap::drop_cached_pages(&file.os).map_err(|e| errno_of(&e))?;
        remap::seek_data_or_hole(&file.os, offset, data).map_err(|e| errno_of(&e))
    }

    fn data_ranges(&mut self, file: &DirFile) -> Option<Vec<(u64, u64)>> {
        self.mount.data_ranges(file)
    }

    fn size(&mut self, file: &DirFile) -> Result<u64, Errno> {
        file.os.metadata().map(|m| m.len()).map_err(|e| errno_of(&e))
    }

    fn read(&mut self, file: &DirFile, offset: u64, len: u64) -> Result<Vec<u8>, Errno> {
        let mut buf = vec![0u8; len as usize];
        file.os.read_exact_at(&mut buf, offset).map_err(|e| errno_of(&e))?;
        Ok(buf)
    }

    fn map_store(&mut self, file: &DirFile, data: &[u8], offset: u64, sync: bool) -> Result<(), Errno> {
        mapping::store(&file.os, offset, data, sync).map_err(|e| errno_of(&e))
    }

    fn map_load(&mut self, file: &DirFile, offset: u64, len: u64) -> Result<Vec<u8>, Errno> {
        mapping::load(&file.os, offset, len as usize).map_err(|e| errno_of(&e))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), Errno> {
        std::fs::rename(self.path(false, from)?, self.path(false, to)?).map_err(|e| errno_of(&e))
    }

    fn unlink(&mut self, path: &str) -> Result<(), Errno> {
        std::fs::remove_file(self.path(false, path)?).map_err(|e| errno_of(&e))
    }

    fn link(&mut self, existing: &str, new: &str) -> Result<(), Errno> {
        std::fs::hard_link(self.path(false, existing)?, self.path(false, new)?).map_err(|e| errno_of(&e))
    }

    fn identity(&mut self, file: &DirFile) -> Result<(u64, u64), Errno> {
        file.os.metadata().map(|m| (m.ino(), m.nlink())).map_err(|e| errno_of(&e))
    }

    fn stat_path(&mut self, path: &str) -> Result<(u64, u64, u64), Errno> {
        std::fs::symlink_metadata(self.path(false, path)?)
            .map(|m| (m.ino(), m.nlink(), m.len()))
            .map_err(|e| errno_of(&e))
    }

    fn remount(&mut self) -> Result<(), String> {
        self.mount.remount()
    }

    fn fsck(&mut self) -> Option<String> {
        self.mount.fsck()
    }

    fn mapped_blocks(&mut self, file: &DirFile, first: u64, count: u64) -> Option<Vec<bool>> {
        self.mount.mapped_blocks(file, first, count)
    }

    fn coverage(&mut self) -> Option<String> {
        self.mount.coverage()
    }
}

/// The kernel's XFS (reflink=1, rmapbt=1) on loop devices: the oracle.
pub struct XfsMount {
    /// The file system the sequences run on.
    pub main: XfsScratch,
    /// The second file system of the EXDEV cases, made when first needed.
    pub other: Option<XfsScratch>,
}

impl KernelMount for XfsMount {
    fn root(&self, other: bool) -> Option<&Path> {
        if other {
            self.other.as_ref().map(XfsScratch::mountpoint)
        } else {
            Some(self.main.mountpoint())
        }
    }

    fn wipe(&mut self, _pool_bytes: u64) -> Result<(), String> {
        empty_directory(self.main.mountpoint())
    }

    fn prepare_other(&mut self) -> Result<(), String> {
        if self.other.is_none() {
            self.other = Some(XfsScratch::set_up("difftest-other", XFS_IMAGE_SIZE)?);
        }
        Ok(())
    }

    fn remount(&mut self) -> Result<(), String> {
        self.main.remount()
    }
}
