//! Real media errors on real DAX: where a pool byte lives on a persistent-memory device, the
//! device's own bad-block list, and injecting a media error the way the hardware reports one.
//!
//! Owns: finding the medium under a pool (a pool file on a block device that keeps a bad-block
//! list, such as an fsdax file system on /dev/pmemN, through FIEMAP; or a /dev/daxX.Y instance of a
//! pmem region), translating between device sectors and pool offsets both ways, reading the
//! device's list at mount ([`device_bad_ranges`]) and [`inject`] (`ferrodax poison --hardware`):
//! the page's sectors appended to the device's list when it has a writable one, and
//! `madvise(MADV_HWPOISON)` from a child process so the kernel runs its own memory_failure.
//! Every sysfs path is taken relative to a root (`/sys`, or a fake tree in tests).
//!
//! Must never: write to a device's list anything but the pages asked for, touch pool memory in
//! this process (the poisoning load happens in a child that dies of it), or record anything in
//! the file system (that is `Fs::memory_failure`'s job, driven by what the kernel then reports).

use super::badblocks::{BadRange, SECTOR};
use crate::error::{Error, Result};
use crate::pool::{Backend, BackendKind, PAGE_SIZE};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The real sysfs.
pub const SYSFS: &str = "/sys";

/// One FIEMAP extent of a pool file: pool bytes `[logical, logical + len)` live at device bytes
/// `[physical, physical + len)` of the file system's block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Offset in the pool file.
    pub logical: u64,
    /// Offset on the block device (as FIEMAP reports it: from the device's first byte).
    pub physical: u64,
    /// Length in bytes.
    pub len: u64,
}

/// What a pool's bytes sit on, as far as media errors are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Medium {
    /// A pool file on a block device that keeps a bad-block list (`/sys/block/pmemN/badblocks`):
    /// device byte = `device_start` + the extent's physical offset.
    BlockFile {
        /// The disk's name (`pmem0`).
        disk: String,
        /// Its bad-block list, in sectors from the disk's first byte (writable by root: a write
        /// of "sector count" adds a range, as the driver does for a media error).
        list: PathBuf,
        /// Where the file system's device starts on the disk, in bytes (a partition's start).
        device_start: u64,
        /// The pool file's extents.
        extents: Vec<Extent>,
    },
    /// A /dev/dax instance of a pmem region: device byte 0 is region byte `offset_in_region`.
    DevDax {
        /// The instance's name (`dax0.0`).
        device: String,
        /// The region's bad-block list (`/sys/bus/nd/devices/regionN/badblocks`), in sectors
        /// from the region's start; read-only.
        list: Option<PathBuf>,
        /// Where the instance's data starts in its region, in bytes.
        offset_in_region: u64,
    },
}

impl Medium {
    /// The device's bad-block list, if it has one.
    pub fn list(&self) -> Option<&Path> {
        match self {
            Medium::BlockFile { list, .. } => Some(list),
            Medium::DevDax { list, .. } => list.as_deref(),
        }
    }

    /// The device's name, for messages.
    pub fn name(&self) -> &str {
        match self {
            Medium::BlockFile { disk, .. } => disk,
            Medium::DevDax { device, .. } => device,
        }
    }

    /// Whether root may add ranges to the list (a pmem disk's list is; a region's is not).
    pub fn list_is_writable(&self) -> bool {
        matches!(self, Medium::BlockFile { .. })
    }

    /// Turns ranges of the device's list (bytes from the list's origin: the disk, or the region)
    /// into pool byte ranges, dropping what lies outside the pool (other files, other devices
    /// of the region) and clipping to `pool_len`.
    pub fn list_to_pool(&self, ranges: &[BadRange], pool_len: u64) -> Vec<BadRange> {
        let mut out = Vec::new();
        for r in ranges {
            let (start, end) = (r.offset, r.offset.saturating_add(r.len));
            match self {
                Medium::BlockFile { device_start, extents, .. } => {
                    for e in extents {
                        let phys = device_start.saturating_add(e.physical);
                        let (s, t) = (start.max(phys), end.min(phys.saturating_add(e.len)));
                        if s < t {
                            push_clipped(&mut out, e.logical + (s - phys), t - s, pool_len);
                        }
                    }
                }
                Medium::DevDax { offset_in_region, .. } => {
                    let s = start.max(*offset_in_region);
                    if s < end {
                        push_clipped(&mut out, s - offset_in_region, end - s, pool_len);
                    }
                }
            }
        }
        out.sort_by_key(|r| r.offset);
        out
    }

    /// The list ranges ("first_sector count", in the list's own sectors) that cover pool bytes
    /// `[offset, offset + len)`. Fails when part of the range has no place on the device (a hole
    /// of a sparse pool file: nothing there can go bad).
    pub fn pool_to_list(&self, offset: u64, len: u64) -> Result<Vec<(u64, u64)>> {
        let end = offset.checked_add(len).ok_or_else(|| Error::Invalid("range overflows".into()))?;
        let mut bytes = Vec::new();
        match self {
            Medium::BlockFile { device_start, extents, .. } => {
                let mut at = offset;
                while at < end {
                    let e = extents.iter().find(|e| e.logical <= at && at < e.logical + e.len).ok_or_else(
                        || {
                            Error::Invalid(format!(
                                "pool byte {at} is in a hole of the pool file (never written, so not on the \
                             device): nothing there can go bad"
                            ))
                        },
                    )?;
                    let piece = (e.logical + e.len).min(end) - at;
                    bytes.push((device_start + e.physical + (at - e.logical), piece));
                    at += piece;
                }
            }
            Medium::DevDax { offset_in_region, .. } => bytes.push((offset_in_region + offset, len)),
        }
        Ok(bytes.into_iter().map(|(b, n)| (b / SECTOR, (b + n).div_ceil(SECTOR) - b / SECTOR)).collect())
    }
}

fn push_clipped(out: &mut Vec<BadRange>, offset: u64, len: u64, pool_len: u64) {
    let end = offset.saturating_add(len).min(pool_len);
    if offset < end {
        out.push(BadRange { offset, len: end - offset });
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Where the sysfs link `link` (`/sys/dev/block/M:m`, `/sys/dev/char/M:m`) points: one readlink,
/// its relative target resolved against the link's directory by dropping `..` components (sysfs
/// directories on the way are real directories, so this is the canonical path, found without the
/// readlink per component that `canonicalize` costs a mount).
fn sys_link_target(link: &Path) -> Option<PathBuf> {
    let target = std::fs::read_link(link).ok()?;
    let mut dir = link.parent()?.to_path_buf();
    for part in target.components() {
        match part {
            std::path::Component::RootDir => dir = PathBuf::from("/"),
            std::path::Component::ParentDir => {
                dir.pop();
            }
            std::path::Component::CurDir => {}
            std::path::Component::Normal(name) => dir.push(name),
            std::path::Component::Prefix(_) => return None,
        }
    }
    Some(dir)
}

/// The disk under block device `major:minor` when it keeps a bad-block list: (disk name, list,
/// the device's start on the disk in bytes). `None` for anything else (no such device in sysfs,
/// no list: the kernel shows `badblocks` only for disks that keep one).
pub fn block_device_list(sys: &Path, major: u32, minor: u32) -> Option<(String, PathBuf, u64)> {
    let dir = sys_link_target(&sys.join(format!("dev/block/{major}:{minor}")))?;
    // A partition has `partition` and `start` (in sectors) and sits inside its disk's directory.
    let (disk_dir, start) = if dir.join("partition").exists() {
        let start = parse_number(&read_trimmed(&dir.join("start"))?)?;
        (dir.parent()?.to_path_buf(), start * SECTOR)
    } else {
        (dir, 0)
    };
    let list = disk_dir.join("badblocks");
    if !list.exists() {
        return None;
    }
    let name = disk_dir.file_name()?.to_string_lossy().into_owned();
    Some((name, list, start))
}

/// The region under a /dev/dax character device `major:minor`: (instance name, the region's
/// list, the instance's data offset in the region). `None` when it is not a dax instance of an
/// nvdimm region.
pub fn devdax_region(sys: &Path, major: u32, minor: u32) -> Option<(String, Option<PathBuf>, u64)> {
    let dir = sys_link_target(&sys.join(format!("dev/char/{major}:{minor}")))?;
    let name = dir.file_name()?.to_string_lossy().into_owned();
    let start = parse_number(&read_trimmed(&dir.join("resource"))?)?;
    let region = dir.ancestors().find(|a| {
        a.file_name().is_some_and(|n| n.to_string_lossy().starts_with("region"))
            && a.join("resource").exists()
    })?;
    let region_start = parse_number(&read_trimmed(&region.join("resource"))?)?;
    let list = region.join("badblocks");
    Some((name, list.exists().then_some(list), start.checked_sub(region_start)?))
}

/// The FIEMAP extents of `file` (after syncing it), the ones with a known place on the device.
pub fn fiemap(file: &File) -> io::Result<Vec<Extent>> {
    const FS_IOC_FIEMAP: libc::c_ulong = 0xC020_660B;
    const FIEMAP_FLAG_SYNC: u32 = 1;
    const FIEMAP_EXTENT_LAST: u32 = 0x1;
    const FIEMAP_EXTENT_UNKNOWN: u32 = 0x2;
    const FIEMAP_EXTENT_DELALLOC: u32 = 0x4;
    const FIEMAP_EXTENT_ENCODED: u32 = 0x8;
    const FIEMAP_EXTENT_NOT_ALIGNED: u32 = 0x100;
    const FIEMAP_EXTENT_DATA_INLINE: u32 = 0x200;
    const BATCH: usize = 64;
    // struct fiemap (32 bytes) followed by struct fiemap_extent[BATCH] (56 bytes each).
    #[repr(C)]
    struct Request {
        start: u64,
        length: u64,
        flags: u32,
        mapped_extents: u32,
        extent_count: u32,
        reserved: u32,
        extents: [[u64; 7]; BATCH],
    }
    let mut out = Vec::new();
    let mut start = 0u64;
    loop {
        let mut req = Request {
            start,
            length: u64::MAX - start,
            flags: FIEMAP_FLAG_SYNC,
            mapped_extents: 0,
            extent_count: BATCH as u32,
            reserved: 0,
            extents: [[0; 7]; BATCH],
        };
        // SAFETY: FS_IOC_FIEMAP reads the header and writes at most `extent_count` extents into
        // the array that follows it, all inside `req`.
        let rc = unsafe { libc::ioctl(file.as_raw_fd(), FS_IOC_FIEMAP as _, &mut req as *mut Request) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let n = (req.mapped_extents as usize).min(BATCH);
        if n == 0 {
            return Ok(out);
        }
        let mut last = false;
        for e in &req.extents[..n] {
            // fe_logical, fe_physical, fe_length, reserved64[2], then fe_flags (u32) + reserved.
            let (logical, physical, len) = (e[0], e[1], e[2]);
            let flags = e[5] as u32;
            last |= flags & FIEMAP_EXTENT_LAST != 0;
            start = logical + len;
            let unplaced = FIEMAP_EXTENT_UNKNOWN
                | FIEMAP_EXTENT_DELALLOC
                | FIEMAP_EXTENT_ENCODED
                | FIEMAP_EXTENT_NOT_ALIGNED
                | FIEMAP_EXTENT_DATA_INLINE;
            if flags & unplaced == 0 {
                out.push(Extent { logical, physical, len });
            }
        }
        if last {
            return Ok(out);
        }
    }
}

/// The medium under the pool whose descriptor is `fd`, looked up in the sysfs at `sys`: `None`
/// when the pool does not sit on a device with a bad-block list (a file on an ordinary disk or
/// tmpfs, a memfd).
pub fn medium_of_fd(fd: RawFd, sys: &Path) -> io::Result<Option<Medium>> {
    // SAFETY: fstat fills the struct for a valid descriptor; we read it only on success.
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstat succeeded.
    let st = unsafe { st.assume_init() };
    match st.st_mode & libc::S_IFMT {
        libc::S_IFCHR => {
            let (major, minor) = (libc::major(st.st_rdev), libc::minor(st.st_rdev));
            Ok(devdax_region(sys, major, minor).map(|(device, list, offset_in_region)| Medium::DevDax {
                device,
                list,
                offset_in_region,
            }))
        }
        libc::S_IFREG => {
            let (major, minor) = (libc::major(st.st_dev), libc::minor(st.st_dev));
            let Some((disk, list, device_start)) = block_device_list(sys, major, minor) else {
                return Ok(None);
            };
            // SAFETY: `fd` is valid for the duration of this call; ManuallyDrop keeps it open.
            let file =
                std::mem::ManuallyDrop::new(unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) });
            let extents = fiemap(&file)?;
            Ok(Some(Medium::BlockFile { disk, list, device_start, extents }))
        }
        _ => Ok(None),
    }
}

/// The device's bad ranges that fall in this pool, as pool byte ranges (at most `pool_len`), with
/// the list they came from; `None` when the pool is not on such a device (the usual case off real
/// persistent memory: a no-op). What [`crate::Fs::mount`] imports.
pub fn device_bad_ranges(backend: &dyn Backend, pool_len: u64) -> Result<Option<(PathBuf, Vec<BadRange>)>> {
    if !matches!(backend.kind(), BackendKind::File | BackendKind::DevDax) {
        return Ok(None);
    }
    let Some(fd) = backend.raw_fd() else { return Ok(None) };
    let medium = medium_of_fd(fd, Path::new(SYSFS)).map_err(|e| Error::os("finding the pool's device", e))?;
    let Some(medium) = medium else { return Ok(None) };
    let Some(list) = medium.list() else { return Ok(None) };
    ranges_from_list(&medium, list, pool_len).map(|r| Some((list.to_path_buf(), r)))
}

/// Reads `list` (in the device's sectors) and translates it into pool ranges through `medium`.
pub fn ranges_from_list(medium: &Medium, list: &Path, pool_len: u64) -> Result<Vec<BadRange>> {
    let text = std::fs::read_to_string(list).map_err(|e| Error::os(list.display(), e))?;
    let device_ranges = super::badblocks::parse(&text, &list.display().to_string())?;
    Ok(medium.list_to_pool(&device_ranges, pool_len))
}

/// What [`inject`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Injection {
    /// The device.
    pub device: String,
    /// The list the sectors were added to, when the device has a writable one.
    pub list: Option<PathBuf>,
    /// The ranges added ("first_sector count").
    pub sectors: Vec<(u64, u64)>,
    /// What MADV_HWPOISON did for each page: the pool offset and how the child ended.
    pub pages: Vec<(u64, String)>,
}

impl std::fmt::Display for Injection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (offset, how) in &self.pages {
            writeln!(f, "pool offset {offset:#x}: madvise(MADV_HWPOISON) on {}: {how}", self.device)?;
        }
        match &self.list {
            Some(list) => {
                for (s, n) in &self.sectors {
                    writeln!(f, "recorded sectors {s}+{n} in {}", list.display())?;
                }
            }
            None => writeln!(
                f,
                "{} has no writable bad-block list: only memory_failure ran (on this kernel a later \
                 load from a /dev/dax page still reads the old data)",
                self.device
            )?,
        }
        Ok(())
    }
}

/// Injects a real media error into pool bytes `[offset, offset + len)` of the pool at `path` (a
/// pool file on a DAX file system over pmem, or a /dev/dax device), as `ferrodax poison
/// --hardware` does: for each 4 KiB page, `madvise(MADV_HWPOISON)` on a mapping of it in a child
/// process (the kernel runs memory_failure: every mapping of the page is torn down and the child,
/// the accessor, gets SIGBUS BUS_MCEERR_AR and dies of it), then the page's sectors are appended
/// to the device's bad-block list when it has a writable one, so every later load faults with
/// BUS_MCEERR_AR and every read() fails with EIO, as after a real media error. Needs root and a
/// kernel with CONFIG_MEMORY_FAILURE; refused, saying why, where that cannot work.
pub fn inject(path: &Path, offset: u64, len: u64) -> Result<Injection> {
    let file = File::open(path).map_err(|e| Error::os(path.display(), e))?;
    let meta = file.metadata().map_err(|e| Error::os(path.display(), e))?;
    let medium = medium_of_fd(file.as_raw_fd(), Path::new(SYSFS))
        .map_err(|e| Error::os("finding the pool's device", e))?
        .ok_or_else(|| {
            Error::NotSupported(format!(
                "{}: not on persistent memory (neither a pool file on a file system over a device \
                 with a bad-block list such as /dev/pmemN, nor a /dev/dax device of a pmem region), \
                 so there is no hardware to poison; `ferrodax poison` without --hardware injects \
                 the failure in software",
                path.display()
            ))
        })?;
    if meta.is_file() && !is_dax_file(&file) {
        return Err(Error::NotSupported(format!(
            "{}: the pool file is on {} but is not DAX (its pages are page cache, not the device's \
             memory): mount the file system with -o dax=always",
            path.display(),
            medium.name()
        )));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::os(
            "a hardware poison needs root (madvise(MADV_HWPOISON) and the device's bad-block list)",
            io::Error::from_raw_os_error(libc::EPERM),
        ));
    }
    let size = if meta.file_type().is_char_device() { u64::MAX } else { meta.len() };
    let end = offset
        .checked_add(len.max(1))
        .filter(|&e| e <= size)
        .ok_or_else(|| Error::Invalid(format!("[{offset}, +{len}) is outside the pool ({size} bytes)")))?;
    let first = offset / PAGE_SIZE * PAGE_SIZE;
    let end = end.next_multiple_of(PAGE_SIZE);
    let sectors = medium.pool_to_list(first, end - first)?;
    let granule = if meta.file_type().is_char_device() {
        let rdev = meta.rdev();
        read_trimmed(&Path::new(SYSFS).join(format!(
            "dev/char/{}:{}/align",
            libc::major(rdev),
            libc::minor(rdev)
        )))
        .and_then(|t| parse_number(&t))
        .unwrap_or(PAGE_SIZE)
        .max(PAGE_SIZE)
    } else {
        PAGE_SIZE
    };
    let mut pages = Vec::new();
    for page in (first..end).step_by(PAGE_SIZE as usize) {
        pages.push((page, poison_page_in_child(&file, page, granule)?));
    }
    let list = medium.list().filter(|_| medium.list_is_writable()).map(Path::to_path_buf);
    if let Some(list) = &list {
        for (s, n) in &sectors {
            std::fs::write(list, format!("{s} {n}\n")).map_err(|e| Error::os(list.display(), e))?;
        }
    }
    Ok(Injection { device: medium.name().to_string(), list, sectors, pages })
}

/// Whether the kernel accesses `file` directly (STATX_ATTR_DAX): its mapping is the device's memory.
fn is_dax_file(file: &File) -> bool {
    const STATX_ATTR_DAX: u64 = 0x0020_0000;
    let mut st = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: statx of an open descriptor (AT_EMPTY_PATH with an empty path) fills `st`.
    let rc = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_BASIC_STATS,
            st.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return false;
    }
    // SAFETY: statx succeeded (and the buffer was zeroed before).
    let st = unsafe { st.assume_init() };
    st.stx_attributes_mask & STATX_ATTR_DAX != 0 && st.stx_attributes & STATX_ATTR_DAX != 0
}

/// Maps the `granule`-sized piece of `file` that holds pool byte `page` in a child process and
/// calls madvise(MADV_HWPOISON) on that page there. Returns how the child ended.
fn poison_page_in_child(file: &File, page: u64, granule: u64) -> Result<String> {
    let fd = file.as_raw_fd();
    let map_offset = page / granule * granule;
    let delta = (page - map_offset) as usize;
    // SAFETY: the child runs only async-signal-safe calls (sigaction, mmap, madvise, _exit) before
    // it exits, so forking a multi-threaded process is sound.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Error::os("fork", io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: (child) only async-signal-safe calls; every path ends in _exit.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
            let addr = libc::mmap(
                std::ptr::null_mut(),
                granule as usize,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                map_offset as libc::off_t,
            );
            if addr == libc::MAP_FAILED {
                libc::_exit(100 + (*libc::__errno_location()).min(100));
            }
            let target = (addr as *mut u8).add(delta);
            if libc::madvise(target.cast(), PAGE_SIZE as usize, libc::MADV_HWPOISON) != 0 {
                libc::_exit(200 + (*libc::__errno_location()).min(50));
            }
            libc::_exit(0);
        }
    }
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(Error::os("waitpid", err));
        }
    }
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        return Ok(if sig == libc::SIGBUS {
            "memory_failure ran; the injecting process got SIGBUS (BUS_MCEERR_AR) and died of it".into()
        } else {
            format!("the injecting process died of signal {sig}")
        });
    }
    match libc::WEXITSTATUS(status) {
        0 => Ok("memory_failure ran (no signal reached the injecting process)".into()),
        code @ 100..=199 => Err(Error::os(
            format!("mmap of the page at pool offset {page} (mapping granule {granule})"),
            io::Error::from_raw_os_error(code - 100),
        )),
        code => {
            let errno = code - 200;
            let why = match errno {
                libc::EINVAL => " (the kernel has no CONFIG_MEMORY_FAILURE, or cannot poison this page)",
                libc::EPERM => " (needs CAP_SYS_ADMIN)",
                _ => "",
            };
            Err(Error::os(
                format!("madvise(MADV_HWPOISON) of pool offset {page}{why}"),
                io::Error::from_raw_os_error(errno),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn fake_pmem_sysfs(root: &Path, partition_start_sectors: Option<u64>) -> PathBuf {
        let disk = root.join("devices/platform/e820_pmem/ndbus0/region0/namespace0.0/block/pmem0");
        std::fs::create_dir_all(&disk).unwrap();
        std::fs::write(disk.join("badblocks"), "").unwrap();
        std::fs::create_dir_all(root.join("dev/block")).unwrap();
        symlink(&disk, root.join("dev/block/259:0")).unwrap();
        if let Some(start) = partition_start_sectors {
            let part = disk.join("pmem0p1");
            std::fs::create_dir_all(&part).unwrap();
            std::fs::write(part.join("partition"), "1\n").unwrap();
            std::fs::write(part.join("start"), format!("{start}\n")).unwrap();
            symlink(&part, root.join("dev/block/259:1")).unwrap();
        }
        disk.join("badblocks")
    }

    #[test]
    fn a_pool_file_on_pmem_maps_sectors_through_its_extents() {
        let dir = tempfile::tempdir().unwrap();
        let list = fake_pmem_sysfs(dir.path(), Some(2048));
        assert_eq!(block_device_list(dir.path(), 259, 0), Some(("pmem0".into(), list.clone(), 0)));
        // A partition starting at sector 2048 (1 MiB): its device bytes are disk bytes - 1 MiB.
        assert_eq!(block_device_list(dir.path(), 259, 1), Some(("pmem0".into(), list.clone(), 1 << 20)));
        assert_eq!(block_device_list(dir.path(), 8, 0), None);
        // The kernel's links are relative (../../devices/...): the same answer.
        std::fs::remove_file(dir.path().join("dev/block/259:0")).unwrap();
        symlink(
            "../../devices/platform/e820_pmem/ndbus0/region0/namespace0.0/block/pmem0",
            dir.path().join("dev/block/259:0"),
        )
        .unwrap();
        assert_eq!(block_device_list(dir.path(), 259, 0), Some(("pmem0".into(), list.clone(), 0)));
        // Pool [0, 64 KiB) at device 1 MiB, pool [64 KiB, 128 KiB) at device 4 MiB.
        let extents = vec![
            Extent { logical: 0, physical: 1 << 20, len: 64 << 10 },
            Extent { logical: 64 << 10, physical: 4 << 20, len: 64 << 10 },
        ];
        let medium = Medium::BlockFile { disk: "pmem0".into(), list, device_start: 1 << 20, extents };
        // Pool page 2 (8 KiB) is device byte 1 MiB + 8 KiB, disk byte 2 MiB + 8 KiB: sector 4112.
        assert_eq!(medium.pool_to_list(8192, 4096).unwrap(), vec![(4112, 8)]);
        // A range across both extents splits.
        assert_eq!(
            medium.pool_to_list(60 << 10, 8192).unwrap(),
            vec![((2 << 20) / 512 + 120, 8), ((5 << 20) / 512, 8)]
        );
        assert!(medium.pool_to_list(128 << 10, 4096).unwrap_err().to_string().contains("hole"));
        // And back: the disk's list in sectors becomes pool offsets; other files' sectors vanish.
        let from_list = |s: u64, n: u64| BadRange { offset: s * 512, len: n * 512 };
        assert_eq!(
            medium.list_to_pool(
                &[from_list(4112, 8), from_list(10, 1), from_list((5 << 20) / 512 + 1, 1)],
                1 << 30
            ),
            vec![BadRange { offset: 8192, len: 4096 }, BadRange { offset: (64 << 10) + 512, len: 512 }]
        );
        // Clipped to the pool's length (a pool formatted smaller than its file).
        assert_eq!(
            medium.list_to_pool(&[from_list(4096, 256)], 32 << 10),
            vec![BadRange { offset: 0, len: 32 << 10 }]
        );
    }

    #[test]
    fn a_devdax_instance_maps_region_sectors_past_its_data_offset() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let region = root.join("devices/platform/e820_pmem/ndbus0/region0");
        let dax = region.join("dax0.0/dax0.0");
        std::fs::create_dir_all(&dax).unwrap();
        std::fs::write(region.join("resource"), "0x100000000\n").unwrap();
        std::fs::write(region.join("badblocks"), "").unwrap();
        std::fs::write(dax.join("resource"), "0x100600000\n").unwrap();
        std::fs::create_dir_all(root.join("dev/char")).unwrap();
        symlink(&dax, root.join("dev/char/252:0")).unwrap();
        let (device, list, offset) = devdax_region(root, 252, 0).unwrap();
        assert_eq!((device.as_str(), list, offset), ("dax0.0", Some(region.join("badblocks")), 6 << 20));
        let medium =
            Medium::DevDax { device, list: Some(region.join("badblocks")), offset_in_region: offset };
        // Region sector 12288 + 16 = region byte 6 MiB + 8 KiB = pool byte 8 KiB.
        assert_eq!(
            medium.list_to_pool(&[BadRange { offset: (12288 + 16) * 512, len: 4096 }], 64 << 20),
            vec![BadRange { offset: 8192, len: 4096 }]
        );
        // The namespace's metadata before the instance is not the pool's.
        assert_eq!(medium.list_to_pool(&[BadRange { offset: 4096, len: 4096 }], 64 << 20), vec![]);
        assert_eq!(medium.pool_to_list(8192, 4096).unwrap(), vec![(12288 + 16, 8)]);
        assert!(!medium.list_is_writable());
    }

    #[test]
    fn off_pmem_there_is_nothing_to_import_or_inject() {
        let pool = crate::Pool::memfd(1 << 20).unwrap();
        assert_eq!(device_bad_ranges(pool.backend().as_ref(), 1 << 20).unwrap(), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pool");
        std::fs::write(&path, vec![0u8; 8192]).unwrap();
        match inject(&path, 0, 4096) {
            // This host's /tmp is not on pmem: refused, naming why.
            Err(e) => assert!(e.to_string().contains("not on persistent memory"), "{e}"),
            Ok(done) => panic!("a hardware poison off pmem: {done}"),
        }
    }
}
