//! `--through fuse`: the ferrodax side as a user reaches it through the kernel: a memfd pool
//! mounted with the library's FUSE front end (`ferrodax::fuse::FuseMount`, served by threads of
//! this process) on a fresh directory under /dev/shm, driven by the same system calls as the XFS
//! side ([`crate::kernel::KernelSide`]).
//!
//! Owns the mount's whole life (format, mount, unmount + `Fs::check` of the pool + mount again at
//! every remount, unmount and removal of the directory when dropped, on every path), and the
//! calls the kernel refuses before they reach a FUSE file system: FICLONERANGE, FIDEDUPERANGE
//! (the VFS answers them itself: FUSE has no remap_file_range) and fallocate's collapse, insert
//! and unshare modes (fuse_file_fallocate answers EOPNOTSUPP). Those run through the library on
//! the same pool (`Fs::reflink`, `Fs::dedupe`, `File::fallocate`), after the kernel's dirty pages
//! of the files are written back, and then make the kernel forget what it cached of the files
//! (a forced attribute refresh and dropping their cached pages), as docs/CONFORMANCE.md says.
//! Must never answer a call through the library that the kernel passes on to FUSE, and never
//! report a FUSE side it could not mount: [`FuseBackend::set_up`] says what is missing instead.

use crate::kernel::{DirFile, KernelMount};
use crate::{errno_of, merge_ranges, Access, Errno, Outcome, Special, BLOCK, SMALL_POOL};
use crate::{FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_UNSHARE_RANGE};
use ferrodax::fuse::FuseMount;
use ferrodax::{DedupeStatus, DedupeTarget, Fs, OpenOptions, Pool};
use ferrodax_hostkit::{find_program, mapping, remap};
use std::path::{Path, PathBuf};

/// fallocate modes the kernel refuses on a FUSE file (EOPNOTSUPP, fs/fuse/file.c) before the
/// request reaches the file system.
const MODES_FUSE_REFUSES: u32 = FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE | FALLOC_FL_UNSHARE_RANGE;

/// Why FUSE cannot mount here, if it cannot.
pub fn missing_prerequisite() -> Option<String> {
    if !Path::new("/dev/fuse").exists() {
        return Some("no /dev/fuse (modprobe fuse, or give the container /dev/fuse)".into());
    }
    if ferrodax_hostkit::effective_uid() != Some(0) && find_program("fusermount3").is_none() {
        return Some("not root and no fusermount3 (apt-get install fuse3)".into());
    }
    None
}

/// A memfd pool mounted through FUSE on a directory of its own.
pub struct FuseBackend {
    pool: Pool,
    /// The library's view of the pool (the mount serves a clone of it).
    fs: Option<Fs>,
    mount: Option<FuseMount>,
    dir: PathBuf,
    /// What `Fs::check` said at the last remount (taken by [`KernelMount::fsck`]).
    last_check: Option<String>,
    /// Checkpoints written by file systems already unmounted.
    checkpoints_before: u64,
    /// Of those and the live one's, the ones mkfs wrote.
    mkfs_checkpoints: u64,
    /// Log records replayed by the remounts.
    replayed: u64,
    /// Calls the kernel refused before FUSE that ran through the library instead.
    through_library: u64,
}

fn library_error(context: &str, e: ferrodax::Error) -> String {
    format!("{context}: {e}")
}

impl FuseBackend {
    /// Formats a memfd pool and mounts it on /dev/shm/ferrodax-difftest-fuse-PID; or says why
    /// the machine cannot.
    pub fn set_up() -> Result<FuseBackend, String> {
        if let Some(missing) = missing_prerequisite() {
            return Err(missing);
        }
        let base =
            if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let dir = base.join(format!("ferrodax-difftest-fuse-{}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let pool = Pool::memfd(SMALL_POOL).map_err(|e| library_error("memfd pool", e))?;
        // From here on the guard exists: dropping it removes the directory.
        let mut backend = FuseBackend {
            pool,
            fs: None,
            mount: None,
            dir,
            last_check: None,
            checkpoints_before: 0,
            mkfs_checkpoints: 0,
            replayed: 0,
            through_library: 0,
        };
        backend.format(SMALL_POOL)?;
        Ok(backend)
    }

    /// A fresh pool of `pool_bytes`, formatted and mounted.
    fn format(&mut self, pool_bytes: u64) -> Result<(), String> {
        self.unmount()?;
        self.pool = Pool::memfd(pool_bytes).map_err(|e| library_error("memfd pool", e))?;
        let fs = Fs::format(&self.pool).map_err(|e| library_error("format", e))?;
        self.mkfs_checkpoints += fs.read_lock().journal().stats.checkpoints;
        self.mount_fs(fs)
    }

    fn mount_fs(&mut self, fs: Fs) -> Result<(), String> {
        let threads = ferrodax::fuse::DEFAULT_FUSE_THREADS;
        let mount = FuseMount::mount(fs.clone(), &self.dir, "ferrodax-difftest", threads)
            .map_err(|e| format!("FUSE mount on {}: {e}", self.dir.display()))?;
        self.fs = Some(fs);
        self.mount = Some(mount);
        Ok(())
    }

    /// Unmounts (waiting until the session has closed every handle) and lets go of the `Fs`.
    fn unmount(&mut self) -> Result<(), String> {
        if let Some(mount) = self.mount.take() {
            mount.unmount(|| {}).map_err(|e| format!("FUSE unmount of {}: {e}", self.dir.display()))?;
        }
        if let Some(fs) = self.fs.take() {
            // Those written while mounted (a full log) and the one unmount writes when due.
            let live = fs.read_lock();
            self.checkpoints_before +=
                live.journal().stats.checkpoints + u64::from(live.checkpoint_due_at_unmount());
        }
        Ok(())
    }

    /// The directory the pool is mounted on.
    pub fn mountpoint(&self) -> &Path {
        &self.dir
    }

    fn fs(&self) -> Result<&Fs, Errno> {
        self.fs.as_ref().ok_or(libc::EIO)
    }

    /// Writes the kernel's dirty pages of `files` back (mmap stores), so the library sees them.
    fn write_back(files: &[&DirFile]) -> Result<(), Errno> {
        for file in files {
            file.os.sync_data().map_err(|e| errno_of(&e))?;
        }
        Ok(())
    }

    /// After a change through the library: the kernel fetches the attributes again (size, mtime:
    /// FUSE then drops the cached pages itself) and drops every cached page of the files.
    fn forget_cached(files: &[&DirFile]) -> Result<(), Errno> {
        for file in files {
            mapping::refresh_attributes(&file.os).map_err(|e| errno_of(&e))?;
            remap::drop_cached_pages(&file.os).map_err(|e| errno_of(&e))?;
        }
        Ok(())
    }

    fn library(file: &DirFile) -> Result<&ferrodax::File, Errno> {
        file.pool.as_ref().ok_or(libc::EBADF)
    }
}

impl Drop for FuseBackend {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            eprintln!("difftest: {e}");
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

impl KernelMount for FuseBackend {
    fn root(&self, other: bool) -> Option<&Path> {
        (!other && self.mount.is_some()).then_some(self.dir.as_path())
    }

    fn wipe(&mut self, pool_bytes: u64) -> Result<(), String> {
        self.last_check = None;
        self.format(pool_bytes)
    }

    fn prepare_other(&mut self) -> Result<(), String> {
        Err("the FUSE side has no second file system (the fstests cases run only without --through)".into())
    }

    fn remount(&mut self) -> Result<(), String> {
        self.unmount()?;
        let fs = Fs::mount(&self.pool).map_err(|e| library_error("mount", e))?;
        self.replayed += fs.read_lock().journal().stats.replayed;
        let report = fs.check();
        self.last_check = (!report.is_clean()).then(|| {
            report
                .problems
                .iter()
                .map(|p| format!("{}: {}", p.structure, p.detail))
                .collect::<Vec<_>>()
                .join("; ")
        });
        self.mount_fs(fs)
    }

    fn library_handle(&mut self, other: bool, path: &str, access: Access) -> Option<ferrodax::File> {
        if other {
            return None;
        }
        let mut options = OpenOptions::new();
        options.read(true);
        match access {
            Access::ReadWrite | Access::NonBlocking => options.write(true),
            Access::ReadOnly => options.write(false),
            Access::Append => options.append(true),
        };
        self.fs.as_ref()?.open(&format!("/{path}"), &options).ok()
    }

    fn reflink(
        &mut self,
        src: &DirFile,
        src_offset: u64,
        dst: &DirFile,
        dst_offset: u64,
        len: u64,
    ) -> Result<(), Errno> {
        self.through_library += 1;
        Self::write_back(&[src, dst])?;
        let result =
            self.fs()?.reflink(Self::library(src)?, src_offset, Self::library(dst)?, dst_offset, len);
        Self::forget_cached(&[dst])?;
        result.map(|_| ()).map_err(|e| e.errno())
    }

    fn dedupe(
        &mut self,
        src: &DirFile,
        src_offset: u64,
        len: u64,
        dst: &DirFile,
        dst_offset: u64,
    ) -> Result<Outcome, Errno> {
        self.through_library += 1;
        Self::write_back(&[src, dst])?;
        let targets = [DedupeTarget { file: Self::library(dst)?, offset: dst_offset }];
        let statuses = self.fs()?.dedupe(Self::library(src)?, src_offset, len, &targets);
        Self::forget_cached(&[src, dst])?;
        Ok(match statuses.map_err(|e| e.errno())?.pop() {
            Some(DedupeStatus::Same { bytes_deduped }) => Outcome::Same(bytes_deduped),
            Some(DedupeStatus::Differs) => Outcome::Differs,
            Some(DedupeStatus::Failed(e)) => Outcome::Status(e.errno()),
            None => Outcome::Status(libc::EIO),
        })
    }

    fn fallocate(&mut self, file: &DirFile, mode: u32, offset: u64, len: u64) -> Result<(), Errno> {
        // The kernel's own checks come first (vfs_fallocate: invalid modes, EFBIG, ...); only
        // what it then refuses as "FUSE has no such mode" goes to the library.
        match remap::fallocate(&file.os, mode, offset, len).map_err(|e| errno_of(&e)) {
            Err(libc::EOPNOTSUPP) if mode & MODES_FUSE_REFUSES != 0 => {}
            other => return other,
        }
        self.through_library += 1;
        Self::write_back(&[file])?;
        let result = Self::library(file)?.fallocate(mode, offset, len);
        Self::forget_cached(&[file])?;
        result.map_err(|e| e.errno())
    }

    fn data_ranges(&mut self, file: &DirFile) -> Option<Vec<(u64, u64)>> {
        // ferrodax has no unwritten extents: every mapped block is data. The caller wrote the
        // kernel's dirty pages back before the seek.
        let extents = self.fs.as_ref()?.fiemap(file.pool.as_ref()?).ok()?;
        Some(merge_ranges(&extents.iter().map(|e| (e.logical, e.length)).collect::<Vec<_>>()))
    }

    fn mapped_blocks(&mut self, file: &DirFile, first: u64, count: u64) -> Option<Vec<bool>> {
        let extents = self.fs.as_ref()?.fiemap(file.pool.as_ref()?).ok()?;
        Some(
            (first..first + count)
                .map(|block| {
                    let at = block * BLOCK;
                    extents.iter().any(|e| e.logical <= at && at < e.logical + e.length)
                })
                .collect(),
        )
    }

    fn fsck(&mut self) -> Option<String> {
        self.last_check.take()
    }

    fn coverage(&mut self) -> Option<String> {
        let live = self.fs.as_ref().map_or(0, |fs| fs.read_lock().journal().stats.checkpoints);
        let checkpoints = (self.checkpoints_before + live).saturating_sub(self.mkfs_checkpoints);
        Some(format!(
            "ferrodax wrote {checkpoints} checkpoints (log full or at unmount) and replayed {} log records at remounts; \
             {} calls the kernel refuses on FUSE ran through the library",
            self.replayed, self.through_library
        ))
    }

    fn special(&mut self, _path: &Path, _kind: Special) -> Result<bool, String> {
        Ok(false)
    }
}
