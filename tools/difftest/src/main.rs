//! `ferrodax-difftest` (also run as `ferrodax difftest`): differential runs against the kernel's
//! XFS on the same random operation sequences. The kernel is the oracle: the same bytes after the
//! same operations, the same errno for the same mistake. A tool of its own, outside the product
//! binary; it uses only ferrodax's public library API and the shared host helpers of
//! ferrodax-hostkit (the scratch XFS, the remap calls).
//!
//! Owns the operation generator (data operations on files open in slots f0..fN, mmap stores and
//! loads, and namespace operations on the names /f0../fN+2), the sides (files on a real XFS with
//! reflink and a reverse map, loop-mounted from an image in /dev/shm and driven through the
//! kernel's system calls, [`kernel`]; files in a ferrodax memfd pool driven through the library,
//! [`Ferrodax`], or, with `--through fuse`, mounted through FUSE and driven by the same system
//! calls as XFS, [`fuse_side`]), the comparison after every step (result or errno, every slot's
//! size, contents and link count, every name; ferrodax's fsck at every remount), the shrinker and
//! the replay scripts it prints (one for `xfs_io`, one for `ferrodax io`), the fstests generic/157
//! and generic/158 case lists, a list of fixed edge sequences, and the exact rules for the
//! differences docs/CONFORMANCE.md documents (nothing else is accepted).
//!
//! Must never: reach below the library API (`ferrodax::{Pool, Fs, File, ...}`); leave a mount, a
//! loop device or an image behind (ferrodax-hostkit's scratch guard and the FUSE side's guard
//! unmount and delete on every path, errors and panics included); report a pass for a run it did
//! not make: where the machine cannot make or mount the loop XFS (or, through FUSE, cannot mount
//! FUSE) it prints "SKIPPED: ..." and exits with [`EXIT_SKIPPED`], never 0. No `unsafe`: the
//! kernel calls std does not wrap (FICLONERANGE, FIDEDUPERANGE, fallocate, copy_file_range, lseek
//! SEEK_DATA/SEEK_HOLE, FS_IOC_FIEMAP, posix_fadvise, mmap, statx) live in ferrodax-hostkit's
//! `remap` and `mapping`.
//!
//! Exit status: 0 every step agreed (or differed only as documented), 1 a divergence, 2 the harness
//! itself failed (a remount, a read), 77 skipped.

mod fuse_side;
mod kernel;

use clap::Parser;
use ferrodax::dax::MapAccess;
use ferrodax::fs::falloc::SeekTarget;
use ferrodax::{DedupeStatus, DedupeTarget, File, Fs, OpenOptions, Pool};
use ferrodax_hostkit::xfs::XfsScratch;
use kernel::{KernelSide, XfsMount};
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

/// Exit status of a run that could not happen (automake's "skipped").
const EXIT_SKIPPED: i32 = 77;
/// Exit status of a run that found a divergence.
const EXIT_DIVERGED: i32 = 1;
/// Exit status of a run whose harness failed (a mount, a read of the oracle).
const EXIT_HARNESS: i32 = 2;

/// The block size of both sides.
const BLOCK: u64 = 4096;
/// By default no random step makes a file larger than this (so comparing every file after every
/// step stays cheap); `--max-file-size` changes it.
const DEFAULT_SIZE_CAP: u64 = 192 * 1024;
/// The largest file size ferrodax supports (docs/CONFORMANCE.md, D2).
const FERRODAX_MAX_FILE_SIZE: u64 = ferrodax::format::MAX_FILE_SIZE;
/// Files larger than this are compared in two windows (head and tail) instead of whole.
const WHOLE_COMPARE_LIMIT: u64 = 16 << 20;
/// The window size for files larger than [`WHOLE_COMPARE_LIMIT`].
const COMPARE_WINDOW: u64 = 1 << 20;
/// Size of the ferrodax pools of the random and edge sequences (memfd): small, so freed blocks
/// are reused soon and the log (16 blocks at this size) fills and is checkpointed about every
/// thousand steps.
const SMALL_POOL: u64 = 4 << 20;
/// Size of the ferrodax pools of the fstests cases (three 4 MB files and a clone).
const FSTESTS_POOL: u64 = 64 << 20;
/// Size of the XFS images in /dev/shm (sparse; mkfs.xfs wants at least 300 MB).
const XFS_IMAGE_SIZE: u64 = 512 << 20;
/// Replays the shrinker may spend on one divergence.
const SHRINK_REPLAY_BUDGET: usize = 3000;
/// Wall time the shrinker may spend on one divergence.
const SHRINK_TIME_BUDGET: Duration = Duration::from_secs(120);

/// Differential test against the kernel's XFS (root, xfsprogs, a loop device): the same random
/// operations on both, compared after every step; exits 77 when it cannot run.
#[derive(Parser, Debug)]
#[command(name = "ferrodax-difftest", version, about)]
struct DifftestArgs {
    /// Seed of the run (default: from the clock; printed). Sequence i uses seed + i, so
    /// `--seed S --sequences 1` replays one sequence of an earlier run exactly.
    #[arg(long)]
    seed: Option<u64>,
    /// Random sequences to run.
    #[arg(long, default_value_t = 10)]
    sequences: u64,
    /// Steps per sequence (the last one is always a remount of both sides).
    #[arg(long, default_value_t = 1000)]
    steps: u64,
    /// Files per sequence (1 to 8).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=8))]
    files: u64,
    /// No random step makes a file larger than this (k/m suffixes; 16k to 64m).
    #[arg(long, default_value_t = DEFAULT_SIZE_CAP, value_parser = parse_size_cap)]
    max_file_size: u64,
    /// Go on with the next sequence after a divergence (default: stop at the first).
    #[arg(long)]
    keep_going: bool,
    /// Skip the generic/157, generic/158 and fixed edge cases; run only random sequences.
    #[arg(long)]
    random_only: bool,
    /// Print every step with both sides' results.
    #[arg(long)]
    verbose: bool,
    /// The path the ferrodax side is driven through: `library` (its API, in this process) or
    /// `fuse` (a FUSE mount of the pool, with the same system calls as the XFS side).
    #[arg(long, value_enum, default_value_t = Through::Library)]
    through: Through,
    /// Self-test: make the ferrodax side write a wrong last byte in every unaligned pwrite of 2
    /// or more bytes that starts in a shared block, to prove the tester finds a divergence,
    /// shrinks it (to write, share, write) and prints both scripts.
    #[arg(long, hide = true, conflicts_with = "through")]
    inject_fault: bool,
    /// Self-test of the skip path: behave as if the machine could not make the loop XFS.
    #[arg(long, hide = true)]
    pretend_no_oracle: bool,
    /// Self-test of the skip path of `--through fuse`: behave as if FUSE could not mount.
    #[arg(long, hide = true)]
    pretend_no_fuse: bool,
}

/// The path the ferrodax side is driven through.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Through {
    /// The library's API (`Fs`, `File`), in this process.
    Library,
    /// A FUSE mount of the pool (`ferrodax::fuse`), through the kernel's system calls.
    Fuse,
}

/// Parses `--max-file-size`.
fn parse_size_cap(text: &str) -> Result<u64, String> {
    let size = ferrodax_hostkit::parse_size(text).map_err(|e| e.to_string())?;
    if !(16 << 10..=64 << 20).contains(&size) {
        return Err(format!("{text}: must be between 16k and 64m"));
    }
    Ok(size)
}

/// The pool a random sequence needs: room for every file at the cap, copy-on-write copies and the
/// metadata, but small enough that freed blocks come back soon.
fn pool_for(files: usize, size_cap: u64) -> u64 {
    SMALL_POOL.max((files as u64 * size_cap * 4).next_multiple_of(1 << 20))
}

// ----- a small deterministic random number generator -----

/// splitmix64: tiny, fast and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number in `[0, n)`; `n` > 0.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True `percent` times in a hundred.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// One of `items`.
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

// ----- operations and their outcomes -----

/// One step of a sequence, on files f0..fN of both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// pwrite `len` bytes of `seed` at `offset`.
    Pwrite { file: usize, seed: u8, offset: u64, len: u64 },
    /// ftruncate to `size`.
    Truncate { file: usize, size: u64 },
    /// FICLONERANGE (len 0 = to source EOF).
    Reflink { src: usize, src_offset: u64, dst: usize, dst_offset: u64, len: u64 },
    /// FIDEDUPERANGE with one destination.
    Dedupe { src: usize, src_offset: u64, dst: usize, dst_offset: u64, len: u64 },
    /// fallocate(FALLOC_FL_UNSHARE_RANGE).
    Unshare { file: usize, offset: u64, len: u64 },
    /// fallocate(2) with these `FALLOC_FL_*` mode bits (preallocate, punch, zero, collapse,
    /// insert, and invalid combinations).
    Fallocate { file: usize, mode: u32, offset: u64, len: u64 },
    /// copy_file_range(2) with explicit offsets.
    CopyRange { src: usize, src_offset: u64, dst: usize, dst_offset: u64, len: u64 },
    /// lseek(SEEK_DATA) (`data`) or lseek(SEEK_HOLE).
    Seek { file: usize, offset: u64, data: bool },
    /// fsync.
    Fsync { file: usize },
    /// mmap(MAP_SHARED, PROT_READ | PROT_WRITE) of the pages holding the range, plain stores of
    /// `len` bytes of `seed`, msync(MS_SYNC) when `sync`, munmap.
    MapStore { file: usize, seed: u8, offset: u64, len: u64, sync: bool },
    /// mmap(MAP_SHARED, PROT_READ) of the pages holding the range, loads of it, munmap.
    MapLoad { file: usize, offset: u64, len: u64 },
    /// open(2) of the name `/f{name}` (O_RDWR and `how`'s flags) into slot `file`, whose earlier
    /// file is closed; on failure the slot keeps its file.
    Open { file: usize, name: usize, how: Create },
    /// rename(2) of `/f{from}` to `/f{to}` (over an existing name or not).
    Rename { from: usize, to: usize },
    /// unlink(2) of `/f{name}` (the slots' open files stay usable).
    Unlink { name: usize },
    /// link(2): `/f{to}` becomes another name of `/f{from}`.
    Link { from: usize, to: usize },
    /// Close everything, unmount, mount, reopen (both sides).
    Remount,
}

/// How an [`Op::Open`] creates (O_CREAT, O_EXCL, O_TRUNC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Create {
    /// Opens an existing file only.
    No,
    /// O_CREAT.
    IfMissing,
    /// O_CREAT | O_EXCL.
    Exclusive,
    /// O_CREAT | O_TRUNC.
    Truncate,
}

impl Create {
    /// The open flags, as a C program spells them.
    fn flags(self) -> &'static str {
        match self {
            Create::No => "O_RDWR",
            Create::IfMissing => "O_RDWR|O_CREAT",
            Create::Exclusive => "O_RDWR|O_CREAT|O_EXCL",
            Create::Truncate => "O_RDWR|O_CREAT|O_TRUNC",
        }
    }
}

impl Op {
    /// The operation's name, for statistics and the shrinker's notion of "the same divergence".
    fn kind(&self) -> &'static str {
        match self {
            Op::Pwrite { .. } => "pwrite",
            Op::Truncate { .. } => "truncate",
            Op::Reflink { .. } => "reflink",
            Op::Dedupe { .. } => "dedupe",
            Op::Unshare { .. } => "funshare",
            Op::Fallocate { mode, .. } => fallocate_kind(*mode),
            Op::CopyRange { .. } => "copy_range",
            Op::Seek { data: true, .. } => "seek_data",
            Op::Seek { data: false, .. } => "seek_hole",
            Op::Fsync { .. } => "fsync",
            Op::MapStore { .. } => "mmap-store",
            Op::MapLoad { .. } => "mmap-load",
            Op::Open { how: Create::No, .. } => "open",
            Op::Open { .. } => "create",
            Op::Rename { .. } => "rename",
            Op::Unlink { .. } => "unlink",
            Op::Link { .. } => "link",
            Op::Remount => "remount",
        }
    }

    /// The highest file index the operation names.
    fn max_file(&self) -> usize {
        match *self {
            Op::Pwrite { file, .. }
            | Op::Truncate { file, .. }
            | Op::Unshare { file, .. }
            | Op::Fallocate { file, .. }
            | Op::Seek { file, .. }
            | Op::MapStore { file, .. }
            | Op::MapLoad { file, .. }
            | Op::Open { file, .. }
            | Op::Fsync { file } => file,
            Op::Reflink { src, dst, .. } | Op::Dedupe { src, dst, .. } | Op::CopyRange { src, dst, .. } => {
                src.max(dst)
            }
            Op::Rename { .. } | Op::Unlink { .. } | Op::Link { .. } | Op::Remount => 0,
        }
    }

    /// The highest name index the operation names (None: it names no path).
    fn max_name(&self) -> Option<usize> {
        match *self {
            Op::Open { name, .. } | Op::Unlink { name } => Some(name),
            Op::Rename { from, to } | Op::Link { from, to } => Some(from.max(to)),
            _ => None,
        }
    }

    /// True for the operations that change which names exist.
    fn is_namespace(&self) -> bool {
        matches!(self, Op::Open { .. } | Op::Rename { .. } | Op::Unlink { .. } | Op::Link { .. })
    }
}

/// The name of a fallocate mode, for statistics: xfs_io's command where it has one.
fn fallocate_kind(mode: u32) -> &'static str {
    match mode {
        0 => "falloc",
        FALLOC_FL_KEEP_SIZE => "falloc-k",
        m if m == FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE => "fpunch",
        FALLOC_FL_ZERO_RANGE => "fzero",
        m if m == FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE => "fzero-k",
        FALLOC_FL_COLLAPSE_RANGE => "fcollapse",
        FALLOC_FL_INSERT_RANGE => "finsert",
        m if m == FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_KEEP_SIZE => "funshare-k",
        _ => "fallocate-bad-mode",
    }
}

/// `FALLOC_FL_KEEP_SIZE` and the modes (linux/falloc.h).
const FALLOC_FL_KEEP_SIZE: u32 = 0x01;
const FALLOC_FL_PUNCH_HOLE: u32 = 0x02;
const FALLOC_FL_COLLAPSE_RANGE: u32 = 0x08;
const FALLOC_FL_ZERO_RANGE: u32 = 0x10;
const FALLOC_FL_INSERT_RANGE: u32 = 0x20;
const FALLOC_FL_UNSHARE_RANGE: u32 = 0x40;

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Op::Pwrite { file, seed, offset, len } => {
                write!(f, "f{file}: pwrite -S {seed:#04x} {offset} {len}")
            }
            Op::Truncate { file, size } => write!(f, "f{file}: truncate {size}"),
            Op::Reflink { src, src_offset, dst, dst_offset, len } => {
                write!(f, "f{dst}: reflink f{src} {src_offset} {dst_offset} {len}")
            }
            Op::Dedupe { src, src_offset, dst, dst_offset, len } => {
                write!(f, "f{dst}: dedupe f{src} {src_offset} {dst_offset} {len}")
            }
            Op::Unshare { file, offset, len } => write!(f, "f{file}: funshare {offset} {len}"),
            Op::Fallocate { file, mode, offset, len } => {
                write!(f, "f{file}: fallocate mode {mode:#x} ({}) {offset} {len}", fallocate_kind(mode))
            }
            Op::CopyRange { src, src_offset, dst, dst_offset, len } => {
                write!(f, "f{dst}: copy_range -s {src_offset} -d {dst_offset} -l {len} f{src}")
            }
            Op::Seek { file, offset, data } => {
                write!(f, "f{file}: seek {} {offset}", if data { "-d" } else { "-h" })
            }
            Op::Fsync { file } => write!(f, "f{file}: fsync"),
            Op::MapStore { file, seed, offset, len, sync } => write!(
                f,
                "f{file}: mmap store -S {seed:#04x} {offset} {len}{}",
                if sync { " + msync" } else { "" }
            ),
            Op::MapLoad { file, offset, len } => write!(f, "f{file}: mmap load {offset} {len}"),
            Op::Open { file, name, how } => write!(f, "f{file}: open /f{name} {}", how.flags()),
            Op::Rename { from, to } => write!(f, "rename /f{from} /f{to}"),
            Op::Unlink { name } => write!(f, "unlink /f{name}"),
            Op::Link { from, to } => write!(f, "link /f{from} /f{to}"),
            Op::Remount => write!(f, "remount"),
        }
    }
}

/// An errno.
type Errno = i32;

/// What a call returned, normalised so both sides compare with `==`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// Success without a count (ftruncate, FICLONERANGE, fallocate, fsync, remount).
    Done,
    /// pwrite's (or copy_file_range's) byte count.
    Wrote(u64),
    /// lseek's offset.
    Offset(u64),
    /// FIDEDUPERANGE: FILE_DEDUPE_RANGE_SAME with bytes_deduped.
    Same(u64),
    /// FIDEDUPERANGE: FILE_DEDUPE_RANGE_DIFFERS.
    Differs,
    /// FIDEDUPERANGE: the destination's status is this errno (the call itself succeeded).
    Status(Errno),
    /// The call failed with this errno (for the fstests cases: also the open of the destination).
    Failed(Errno),
    /// Loads through a mapping: the CRC-32C of the bytes loaded.
    Loaded(u32),
    /// The tester did not make the access: an mmap store reaching a page wholly past EOF (SIGBUS),
    /// or an mmap load reaching past EOF (bytes POSIX leaves unspecified in the EOF page).
    PastEof,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Outcome::Done => write!(f, "ok"),
            Outcome::Wrote(n) => write!(f, "wrote {n}"),
            Outcome::Offset(n) => write!(f, "offset {n}"),
            Outcome::Same(n) => write!(f, "SAME {n}"),
            Outcome::Differs => write!(f, "DIFFERS"),
            Outcome::Status(e) => write!(f, "status {}", errno_name(e)),
            Outcome::Failed(e) => write!(f, "{}", errno_name(e)),
            Outcome::Loaded(crc) => write!(f, "loaded crc32c {crc:#010x}"),
            Outcome::PastEof => write!(f, "past EOF, not accessed"),
        }
    }
}

/// The symbolic name of an errno.
fn errno_name(errno: Errno) -> String {
    let name = match errno {
        libc::EINVAL => "EINVAL",
        libc::EBADF => "EBADF",
        libc::EISDIR => "EISDIR",
        libc::EXDEV => "EXDEV",
        libc::EFBIG => "EFBIG",
        libc::EPERM => "EPERM",
        libc::ENOSPC => "ENOSPC",
        libc::EIO => "EIO",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENOTTY => "ENOTTY",
        libc::ETXTBSY => "ETXTBSY",
        libc::ENOENT => "ENOENT",
        libc::EACCES => "EACCES",
        libc::EROFS => "EROFS",
        libc::ENXIO => "ENXIO",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EEXIST => "EEXIST",
        libc::ENOTDIR => "ENOTDIR",
        libc::EMLINK => "EMLINK",
        libc::ESTALE => "ESTALE",
        _ => return format!("errno {errno}"),
    };
    name.to_string()
}

/// The errno of a host I/O error.
fn errno_of(e: &std::io::Error) -> Errno {
    e.raw_os_error().unwrap_or(libc::EIO)
}

// ----- the two sides -----

/// How a file is opened (xfs_io's flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Access {
    /// O_RDWR (xfs_io's default).
    ReadWrite,
    /// O_RDONLY (how xfs_io opens a reflink or dedupe source).
    ReadOnly,
    /// O_RDWR | O_APPEND (xfs_io -a).
    Append,
    /// O_RDWR | O_NONBLOCK (xfs_io -n).
    NonBlocking,
}

/// A special file the fstests cases use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Special {
    /// A character device (c 1 3, like /dev/null).
    CharDevice,
    /// A fifo.
    Fifo,
}

/// What both sides can do, in the words of the system calls. Paths are relative to the file
/// system's root; `other` selects a second file system (for EXDEV).
trait System {
    /// An open file.
    type Handle;
    /// Removes everything: the next sequence starts from empty file systems (a pool of
    /// `pool_bytes` where the side has one).
    fn wipe(&mut self, pool_bytes: u64) -> Result<(), String>;
    /// Makes the second file system ready.
    fn prepare_other(&mut self) -> Result<(), String>;
    /// Opens (creating it as `how` says) a file.
    fn open(&mut self, other: bool, path: &str, access: Access, how: Create) -> Result<Self::Handle, Errno>;
    /// Makes a directory (and its parents) on the main or the other file system.
    fn mkdir(&mut self, other: bool, path: &str) -> Result<(), String>;
    /// Makes a special file; false when the side has none.
    fn special(&mut self, path: &str, kind: Special) -> Result<bool, String>;
    /// pwrite.
    fn pwrite(&mut self, file: &Self::Handle, data: &[u8], offset: u64) -> Result<u64, Errno>;
    /// ftruncate.
    fn truncate(&mut self, file: &Self::Handle, size: u64) -> Result<(), Errno>;
    /// fsync.
    fn fsync(&mut self, file: &Self::Handle) -> Result<(), Errno>;
    /// FICLONERANGE, issued on `dst`.
    fn reflink(
        &mut self,
        src: &Self::Handle,
        src_offset: u64,
        dst: &Self::Handle,
        dst_offset: u64,
        len: u64,
    ) -> Result<(), Errno>;
    /// FIDEDUPERANGE with one destination, issued on `src`: Ok(per-destination outcome) or
    /// Err(errno of the whole call).
    fn dedupe(
        &mut self,
        src: &Self::Handle,
        src_offset: u64,
        len: u64,
        dst: &Self::Handle,
        dst_offset: u64,
    ) -> Result<Outcome, Errno>;
    /// fallocate(FALLOC_FL_UNSHARE_RANGE).
    fn unshare(&mut self, file: &Self::Handle, offset: u64, len: u64) -> Result<(), Errno>;
    /// fallocate(2) with `mode`.
    fn fallocate(&mut self, file: &Self::Handle, mode: u32, offset: u64, len: u64) -> Result<(), Errno>;
    /// copy_file_range(2): the bytes copied.
    fn copy_range(
        &mut self,
        src: &Self::Handle,
        src_offset: u64,
        dst: &Self::Handle,
        dst_offset: u64,
        len: u64,
    ) -> Result<u64, Errno>;
    /// lseek(SEEK_DATA) or lseek(SEEK_HOLE).
    fn seek(&mut self, file: &Self::Handle, offset: u64, data: bool) -> Result<u64, Errno>;
    /// The byte ranges SEEK_DATA calls data when no page cache is involved (XFS: written
    /// extents; ferrodax: mapped blocks), ascending and disjoint, when the side can say.
    fn data_ranges(&mut self, file: &Self::Handle) -> Option<Vec<(u64, u64)>>;
    /// fstat's size.
    fn size(&mut self, file: &Self::Handle) -> Result<u64, Errno>;
    /// pread of exactly `len` bytes at `offset` (the range is inside the file).
    fn read(&mut self, file: &Self::Handle, offset: u64, len: u64) -> Result<Vec<u8>, Errno>;
    /// Stores `data` at `offset` through a shared mapping of the pages holding it (msync when
    /// `sync`), then unmaps; the caller keeps the range out of pages wholly past EOF.
    fn map_store(&mut self, file: &Self::Handle, data: &[u8], offset: u64, sync: bool) -> Result<(), Errno>;
    /// Loads `len` bytes at `offset` through a shared mapping, then unmaps; the caller keeps the
    /// range inside the file.
    fn map_load(&mut self, file: &Self::Handle, offset: u64, len: u64) -> Result<Vec<u8>, Errno>;
    /// rename(2) on the main file system.
    fn rename(&mut self, from: &str, to: &str) -> Result<(), Errno>;
    /// unlink(2) on the main file system.
    fn unlink(&mut self, path: &str) -> Result<(), Errno>;
    /// link(2) on the main file system: `new` becomes another name of `existing`.
    fn link(&mut self, existing: &str, new: &str) -> Result<(), Errno>;
    /// fstat's inode number and link count.
    fn identity(&mut self, file: &Self::Handle) -> Result<(u64, u64), Errno>;
    /// stat(2) of a name: inode number, link count, size.
    fn stat_path(&mut self, path: &str) -> Result<(u64, u64, u64), Errno>;
    /// Unmounts and mounts the main file system again; the caller has closed every handle.
    fn remount(&mut self) -> Result<(), String>;
    /// The file system's own consistency check: a description of what is wrong, if anything.
    fn fsck(&mut self) -> Option<String>;
    /// Which blocks of `[first, first + count)` are mapped (not holes), when the side can say.
    fn mapped_blocks(&mut self, file: &Self::Handle, first: u64, count: u64) -> Option<Vec<bool>>;
    /// What the side's own machinery did so far (coverage, not compared), when it can say.
    fn coverage(&mut self) -> Option<String>;
}

// ----- the kernel side: XFS on a loop device, driven through system calls (kernel.rs) -----

// ----- the ferrodax side: a memfd pool through the library -----

/// The ferrodax side.
struct Ferrodax {
    pool: Pool,
    fs: Option<Fs>,
    other: Option<Fs>,
    /// Checkpoints written by file systems already unmounted.
    checkpoints_before: u64,
    /// Of those and the live one's, the ones mkfs wrote (not interesting).
    mkfs_checkpoints: u64,
    /// Log records replayed by the remounts.
    replayed: u64,
    /// Self-test: corrupt unaligned pwrites into shared blocks (see `--inject-fault`).
    inject_fault: bool,
}

fn library_error(context: &str, e: ferrodax::Error) -> String {
    format!("{context}: {e}")
}

impl Ferrodax {
    fn new(inject_fault: bool) -> Result<Ferrodax, String> {
        let pool = Pool::memfd(SMALL_POOL).map_err(|e| library_error("memfd pool", e))?;
        let fs = Fs::format(&pool).map_err(|e| library_error("format", e))?;
        let mkfs_checkpoints = fs.read_lock().journal().stats.checkpoints;
        Ok(Ferrodax {
            pool,
            fs: Some(fs),
            other: None,
            checkpoints_before: 0,
            mkfs_checkpoints,
            replayed: 0,
            inject_fault,
        })
    }

    /// Unmounts the main file system, keeping its checkpoint count: those written while mounted
    /// (a full log) and the one unmount writes when replaying the log would cost the next mount
    /// more than reading a checkpoint.
    fn unmount(&mut self) {
        if let Some(fs) = self.fs.take() {
            let live = fs.read_lock();
            self.checkpoints_before +=
                live.journal().stats.checkpoints + u64::from(live.checkpoint_due_at_unmount());
        }
    }

    fn fs(&self) -> Result<&Fs, Errno> {
        self.fs.as_ref().ok_or(libc::EIO)
    }

    /// Whether the block holding byte `offset` of `file` has other owners (for the self-test).
    fn block_is_shared(&self, file: &File, offset: u64) -> bool {
        let at = offset / BLOCK * BLOCK;
        file.fs()
            .fiemap(file)
            .map(|extents| extents.iter().any(|e| e.shared && e.logical <= at && at < e.logical + e.length))
            .unwrap_or(false)
    }
}

impl System for Ferrodax {
    type Handle = File;

    fn wipe(&mut self, pool_bytes: u64) -> Result<(), String> {
        self.unmount();
        self.other = None;
        self.pool = Pool::memfd(pool_bytes).map_err(|e| library_error("memfd pool", e))?;
        let fs = Fs::format(&self.pool).map_err(|e| library_error("format", e))?;
        self.mkfs_checkpoints += fs.read_lock().journal().stats.checkpoints;
        self.fs = Some(fs);
        Ok(())
    }

    fn prepare_other(&mut self) -> Result<(), String> {
        if self.other.is_none() {
            let pool = Pool::memfd(FSTESTS_POOL).map_err(|e| library_error("memfd pool", e))?;
            self.other = Some(Fs::format(&pool).map_err(|e| library_error("format", e))?);
        }
        Ok(())
    }

    fn open(&mut self, other: bool, path: &str, access: Access, how: Create) -> Result<File, Errno> {
        let fs = if other { self.other.as_ref().ok_or(libc::ENOENT)? } else { self.fs()? };
        let mut options = OpenOptions::new();
        options.read(true).mode(0o600);
        match access {
            Access::ReadWrite | Access::NonBlocking => options.write(true),
            Access::ReadOnly => options.write(false),
            Access::Append => options.append(true),
        };
        match how {
            Create::No => options.create(false),
            Create::IfMissing => options.create(true),
            Create::Exclusive => options.create_new(true),
            Create::Truncate => options.create(true).truncate(true),
        };
        fs.open(&format!("/{path}"), &options).map_err(|e| e.errno())
    }

    fn mkdir(&mut self, other: bool, path: &str) -> Result<(), String> {
        let fs =
            if other { self.other.as_ref().ok_or(libc::ENOENT) } else { self.fs() }.map_err(errno_name)?;
        let mut so_far = String::new();
        for part in path.split('/') {
            so_far.push('/');
            so_far.push_str(part);
            match fs.create_dir(&so_far) {
                Ok(()) => {}
                Err(e) if e.errno() == libc::EEXIST => {}
                Err(e) => return Err(library_error(&so_far, e)),
            }
        }
        Ok(())
    }

    fn special(&mut self, _path: &str, _kind: Special) -> Result<bool, String> {
        Ok(false)
    }

    fn pwrite(&mut self, file: &File, data: &[u8], offset: u64) -> Result<u64, Errno> {
        if self.inject_fault && data.len() >= 2 && offset % BLOCK != 0 && self.block_is_shared(file, offset) {
            let mut wrong = data.to_vec();
            let last = wrong.len() - 1;
            wrong[last] ^= 0xff;
            return file.write_at(&wrong, offset).map(|n| n as u64).map_err(|e| e.errno());
        }
        file.write_at(data, offset).map(|n| n as u64).map_err(|e| e.errno())
    }

    fn truncate(&mut self, file: &File, size: u64) -> Result<(), Errno> {
        file.set_len(size).map_err(|e| e.errno())
    }

    fn fsync(&mut self, file: &File) -> Result<(), Errno> {
        file.sync_all().map_err(|e| e.errno())
    }

    fn reflink(
        &mut self,
        src: &File,
        src_offset: u64,
        dst: &File,
        dst_offset: u64,
        len: u64,
    ) -> Result<(), Errno> {
        // The kernel issues the call on the destination.
        dst.fs().reflink(src, src_offset, dst, dst_offset, len).map(|_| ()).map_err(|e| e.errno())
    }

    fn dedupe(
        &mut self,
        src: &File,
        src_offset: u64,
        len: u64,
        dst: &File,
        dst_offset: u64,
    ) -> Result<Outcome, Errno> {
        let targets = [DedupeTarget { file: dst, offset: dst_offset }];
        let mut statuses = src.fs().dedupe(src, src_offset, len, &targets).map_err(|e| e.errno())?;
        Ok(match statuses.pop() {
            Some(DedupeStatus::Same { bytes_deduped }) => Outcome::Same(bytes_deduped),
            Some(DedupeStatus::Differs) => Outcome::Differs,
            Some(DedupeStatus::Failed(e)) => Outcome::Status(e.errno()),
            None => Outcome::Status(libc::EIO),
        })
    }

    fn unshare(&mut self, file: &File, offset: u64, len: u64) -> Result<(), Errno> {
        file.fs().unshare(file, offset, len).map_err(|e| e.errno())
    }

    fn fallocate(&mut self, file: &File, mode: u32, offset: u64, len: u64) -> Result<(), Errno> {
        file.fallocate(mode, offset, len).map_err(|e| e.errno())
    }

    fn copy_range(
        &mut self,
        src: &File,
        src_offset: u64,
        dst: &File,
        dst_offset: u64,
        len: u64,
    ) -> Result<u64, Errno> {
        dst.fs().copy_file_range(src, src_offset, dst, dst_offset, len).map_err(|e| e.errno())
    }

    fn seek(&mut self, file: &File, offset: u64, data: bool) -> Result<u64, Errno> {
        let target = if data { SeekTarget::Data } else { SeekTarget::Hole };
        file.find(offset, target).map_err(|e| e.errno())
    }

    fn data_ranges(&mut self, file: &File) -> Option<Vec<(u64, u64)>> {
        // ferrodax has no unwritten extents: every mapped block is data (preallocated ones too).
        let extents = file.fs().fiemap(file).ok()?;
        Some(merge_ranges(&extents.iter().map(|e| (e.logical, e.length)).collect::<Vec<_>>()))
    }

    fn size(&mut self, file: &File) -> Result<u64, Errno> {
        file.metadata().map(|m| m.size).map_err(|e| e.errno())
    }

    fn read(&mut self, file: &File, offset: u64, len: u64) -> Result<Vec<u8>, Errno> {
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, offset).map_err(|e| e.errno())?;
        Ok(buf)
    }

    fn map_store(&mut self, file: &File, data: &[u8], offset: u64, sync: bool) -> Result<(), Errno> {
        if data.is_empty() {
            return Err(libc::EINVAL); // mmap of length 0
        }
        // A DAX view of the pages holding the range; plain stores, as a program's (a store into
        // a shared block or a hole faults and the library copies or allocates the page).
        let start = offset / BLOCK * BLOCK;
        let end = (offset + data.len() as u64).next_multiple_of(BLOCK);
        let view = file.map(start, end - start, MapAccess::ReadWrite).map_err(|e| e.errno())?;
        view.store_plain((offset - start) as usize, data).map_err(|e| e.errno())?;
        if sync {
            view.sync().map_err(|e| e.errno())?;
        }
        Ok(())
    }

    fn map_load(&mut self, file: &File, offset: u64, len: u64) -> Result<Vec<u8>, Errno> {
        if len == 0 {
            return Err(libc::EINVAL); // mmap of length 0
        }
        let start = offset / BLOCK * BLOCK;
        let end = (offset + len).next_multiple_of(BLOCK);
        let view = file.map(start, end - start, MapAccess::Read).map_err(|e| e.errno())?;
        let mut buf = vec![0u8; len as usize];
        view.read_at((offset - start) as usize, &mut buf).map_err(|e| e.errno())?;
        Ok(buf)
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), Errno> {
        self.fs()?.rename(&format!("/{from}"), &format!("/{to}")).map_err(|e| e.errno())
    }

    fn unlink(&mut self, path: &str) -> Result<(), Errno> {
        self.fs()?.remove_file(&format!("/{path}")).map_err(|e| e.errno())
    }

    fn link(&mut self, existing: &str, new: &str) -> Result<(), Errno> {
        self.fs()?.hard_link(&format!("/{existing}"), &format!("/{new}")).map_err(|e| e.errno())
    }

    fn identity(&mut self, file: &File) -> Result<(u64, u64), Errno> {
        file.metadata().map(|m| (m.ino, u64::from(m.nlink))).map_err(|e| e.errno())
    }

    fn stat_path(&mut self, path: &str) -> Result<(u64, u64, u64), Errno> {
        let stat = self.fs()?.metadata(&format!("/{path}")).map_err(|e| e.errno())?;
        Ok((stat.ino, u64::from(stat.nlink), stat.size))
    }

    fn remount(&mut self) -> Result<(), String> {
        self.unmount();
        let fs = Fs::mount(&self.pool).map_err(|e| library_error("mount", e))?;
        self.replayed += fs.read_lock().journal().stats.replayed;
        self.fs = Some(fs);
        Ok(())
    }

    fn fsck(&mut self) -> Option<String> {
        let report = self.fs.as_ref()?.check();
        if report.is_clean() {
            return None;
        }
        Some(
            report
                .problems
                .iter()
                .map(|p| format!("{}: {}", p.structure, p.detail))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    fn mapped_blocks(&mut self, file: &File, first: u64, count: u64) -> Option<Vec<bool>> {
        let extents = file.fs().fiemap(file).ok()?;
        Some(
            (first..first + count)
                .map(|block| {
                    let at = block * BLOCK;
                    extents.iter().any(|e| e.logical <= at && at < e.logical + e.length)
                })
                .collect(),
        )
    }

    fn coverage(&mut self) -> Option<String> {
        let live = self.fs.as_ref().map_or(0, |fs| fs.read_lock().journal().stats.checkpoints);
        let checkpoints = (self.checkpoints_before + live).saturating_sub(self.mkfs_checkpoints);
        Some(format!(
            "ferrodax wrote {checkpoints} checkpoints (log full or at unmount) and replayed {} log records at remounts",
            self.replayed
        ))
    }
}

// ----- the pair: both sides in step -----

/// Why a step counts as a divergence.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Mismatch {
    /// The results differ.
    Result,
    /// A file's size differs.
    Size { file: usize, xfs: u64, ferrodax: u64 },
    /// A file's contents differ, first at `offset`.
    Contents { file: usize, offset: u64, xfs: u8, ferrodax: u8 },
    /// A slot's file has a different link count.
    Links { file: usize, xfs: u64, ferrodax: u64 },
    /// A name differs: missing on one side, or naming another file.
    Name { name: usize, xfs: NameState, ferrodax: NameState },
    /// ferrodax's fsck found a problem.
    Fsck(String),
    /// ferrodax failed where the kernel did not: a mount, reopening a file, fstat, pread.
    Failure(String),
}

impl Mismatch {
    /// The kind of mismatch, for the shrinker's notion of "the same divergence".
    fn kind(&self) -> &'static str {
        match self {
            Mismatch::Result => "result",
            Mismatch::Size { .. } => "size",
            Mismatch::Contents { .. } => "contents",
            Mismatch::Links { .. } => "links",
            Mismatch::Name { .. } => "name",
            Mismatch::Fsck(_) => "fsck",
            Mismatch::Failure(_) => "failure",
        }
    }
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Result => write!(f, "the results differ"),
            Mismatch::Size { file, xfs, ferrodax } => {
                write!(f, "f{file} size differs: xfs {xfs}, ferrodax {ferrodax}")
            }
            Mismatch::Contents { file, offset, xfs, ferrodax } => write!(
                f,
                "f{file} contents differ first at offset {offset}: xfs {xfs:#04x}, ferrodax {ferrodax:#04x}"
            ),
            Mismatch::Links { file, xfs, ferrodax } => {
                write!(f, "f{file} link count differs: xfs {xfs}, ferrodax {ferrodax}")
            }
            Mismatch::Name { name, xfs, ferrodax } => {
                write!(f, "name /f{name} differs: xfs {xfs}, ferrodax {ferrodax}")
            }
            Mismatch::Fsck(problems) => write!(f, "ferrodax fsck: {problems}"),
            Mismatch::Failure(what) => write!(f, "ferrodax failed: {what}"),
        }
    }
}

/// What a name is, in terms both sides share: which slot's file it names, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NameState {
    /// stat(2) of the name fails with this errno.
    Missing(Errno),
    /// The name is the file open in this slot (the lowest such slot).
    Slot(usize),
    /// The name is a file no slot has open, with this link count and size.
    Unopened { nlink: u64, size: u64 },
}

impl fmt::Display for NameState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NameState::Missing(e) => write!(f, "missing ({})", errno_name(e)),
            NameState::Slot(slot) => write!(f, "the file open as f{slot}"),
            NameState::Unopened { nlink, size } => {
                write!(f, "a file no slot has open (nlink {nlink}, size {size})")
            }
        }
    }
}

/// A step where the sides disagreed.
#[derive(Clone, Debug)]
struct Divergence {
    /// Index of the step in its sequence.
    step: usize,
    op: Op,
    xfs: Outcome,
    ferrodax: Outcome,
    mismatch: Mismatch,
}

impl Divergence {
    fn signature(&self) -> (&'static str, &'static str) {
        (self.op.kind(), self.mismatch.kind())
    }
}

/// A difference docs/CONFORMANCE.md documents, recognised exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Accepted {
    /// D1: dedupe of a hole against data that happens to be zeros (XFS SAME, ferrodax DIFFERS).
    HoleVersusZeroData,
    /// D2: a write, truncate or unshare that would end in the last partial block of the 63-bit
    /// offset space (XFS succeeds, ferrodax EFBIG).
    LastPartialBlockOfOffsetSpace,
    /// D3: SEEK_DATA/SEEK_HOLE answer from each side's own layout, and the layouts differ where
    /// the bytes are zeros (XFS's unwritten preallocation, funshare's preallocation, D1 dedupes).
    SeekFollowsLayoutOverZeros,
}

impl Accepted {
    fn label(self) -> &'static str {
        match self {
            Accepted::HoleVersusZeroData => {
                "D1 dedupe: hole vs zero-filled data (XFS SAME, ferrodax DIFFERS)"
            }
            Accepted::LastPartialBlockOfOffsetSpace => {
                "D2 file size in (2^63-4096, 2^63-1] (XFS accepts, ferrodax EFBIG)"
            }
            Accepted::SeekFollowsLayoutOverZeros => {
                "D3 seek: layouts differ over zeros (XFS unwritten or shared, ferrodax data or hole)"
            }
        }
    }
}

/// What one step did on both sides.
struct StepReport {
    /// The kernel's result (the generator learns from it).
    xfs: Outcome,
    /// ferrodax's result.
    ferrodax: Outcome,
    accepted: Option<Accepted>,
    divergence: Option<Divergence>,
}

/// The file systems a sequence starts from: how many files, and the ferrodax pool's size.
#[derive(Clone, Copy, Debug)]
struct Shape {
    files: usize,
    pool_bytes: u64,
}

/// Both sides with files f0..fN open.
struct Pair<X: System, F: System> {
    // Handles first: they must close before the sides (and the XFS mount) go away.
    xfs_files: Vec<X::Handle>,
    ferrodax_files: Vec<F::Handle>,
    xfs: X,
    ferrodax: F,
    /// Slots: files open on both sides (f0..fN at the start and after every remount).
    files: usize,
}

/// Names beyond the slots' own (/f{files}, /f{files + 1}) that namespace operations may use.
const EXTRA_NAMES: usize = 2;

impl<X: System, F: System> Drop for Pair<X, F> {
    fn drop(&mut self) {
        self.xfs_files.clear();
        self.ferrodax_files.clear();
    }
}

/// The bytes at which two files are compared: all of them, or a head and a tail window.
fn compare_windows(size: u64) -> Vec<(u64, u64)> {
    if size <= WHOLE_COMPARE_LIMIT {
        vec![(0, size)]
    } else {
        vec![(0, COMPARE_WINDOW), (size - COMPARE_WINDOW, COMPARE_WINDOW)]
    }
}

/// What lseek(SEEK_DATA / SEEK_HOLE) answers for a file of `size` bytes whose data is the
/// ascending, disjoint byte ranges `data_ranges`: ENXIO at or past EOF (and for data with none
/// after `offset`); EOF is a hole.
fn seek_over(data_ranges: &[(u64, u64)], size: u64, offset: u64, data: bool) -> Outcome {
    if offset >= size {
        return Outcome::Failed(libc::ENXIO);
    }
    let mut cursor = offset; // the first byte not known to be data
    for &(start, len) in data_ranges.iter().filter(|&&(start, len)| start + len > offset) {
        if data {
            let at = start.max(offset);
            return if at < size { Outcome::Offset(at) } else { Outcome::Failed(libc::ENXIO) };
        }
        if start > cursor {
            break;
        }
        cursor = cursor.max(start + len);
    }
    if data {
        Outcome::Failed(libc::ENXIO)
    } else {
        Outcome::Offset(cursor.min(size))
    }
}

/// Sorts byte ranges and joins the ones that overlap or touch.
fn merge_ranges(ranges: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut sorted: Vec<(u64, u64)> = ranges.iter().copied().filter(|r| r.1 > 0).collect();
    sorted.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(sorted.len());
    for (start, len) in sorted {
        match out.last_mut() {
            Some(last) if last.0 + last.1 >= start => last.1 = last.1.max(start + len - last.0),
            _ => out.push((start, len)),
        }
    }
    out
}

/// The byte ranges covered by exactly one of two sets of ascending, disjoint ranges.
fn xor_ranges(a: &[(u64, u64)], b: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let covers = |set: &[(u64, u64)], at: u64| set.iter().any(|&(s, l)| s <= at && at < s + l);
    let mut points: Vec<u64> = a.iter().chain(b).flat_map(|&(s, l)| [s, s + l]).collect();
    points.sort_unstable();
    points.dedup();
    let pieces =
        points.windows(2).filter(|w| covers(a, w[0]) != covers(b, w[0])).map(|w| (w[0], w[1] - w[0]));
    merge_ranges(&pieces.collect::<Vec<_>>())
}

/// The bytes generic_remap_checks lets a dedupe compare: the whole length when both ranges end at
/// their files' EOF, otherwise the length rounded down to whole blocks.
fn dedupe_compared_len(src_offset: u64, src_size: u64, dst_offset: u64, dst_size: u64, len: u64) -> u64 {
    let len = len.min(src_size.saturating_sub(src_offset));
    if src_offset + len == src_size && dst_offset + len == dst_size {
        len
    } else {
        len - len % BLOCK
    }
}

impl<X: System, F: System> Pair<X, F> {
    fn new(xfs: X, ferrodax: F) -> Self {
        Pair { xfs_files: Vec::new(), ferrodax_files: Vec::new(), xfs, ferrodax, files: 0 }
    }

    fn close_all(&mut self) {
        self.xfs_files.clear();
        self.ferrodax_files.clear();
    }

    /// Creates and opens f0..fN on both (empty) sides.
    fn create_all(&mut self) -> Result<(), String> {
        for i in 0..self.files {
            let name = format!("f{i}");
            let x = self.xfs.open(false, &name, Access::ReadWrite, Create::IfMissing);
            let f = self.ferrodax.open(false, &name, Access::ReadWrite, Create::IfMissing);
            match (x, f) {
                (Ok(x), Ok(f)) => {
                    self.xfs_files.push(x);
                    self.ferrodax_files.push(f);
                }
                (x, f) => {
                    return Err(format!(
                        "open {name}: xfs {}, ferrodax {}",
                        x.err().map_or("ok".into(), errno_name),
                        f.err().map_or("ok".into(), errno_name)
                    ))
                }
            }
        }
        Ok(())
    }

    /// Fresh, empty file systems (a pool of `pool_bytes` for ferrodax) with `files` empty files.
    fn start(&mut self, files: usize, pool_bytes: u64) -> Result<(), String> {
        self.close_all();
        self.xfs.wipe(pool_bytes)?;
        self.ferrodax.wipe(pool_bytes)?;
        self.files = files;
        self.create_all()
    }

    /// The file sizes on the kernel side (the oracle), for the generator.
    fn sizes(&mut self) -> Result<Vec<u64>, String> {
        let mut sizes = Vec::with_capacity(self.files);
        for i in 0..self.files {
            sizes.push(
                self.xfs
                    .size(&self.xfs_files[i])
                    .map_err(|e| format!("xfs fstat f{i}: {}", errno_name(e)))?,
            );
        }
        Ok(sizes)
    }

    /// Runs `op` on one side.
    fn apply_one<S: System>(sys: &mut S, files: &[S::Handle], op: &Op) -> Outcome {
        let done = |r: Result<(), Errno>| r.map_or_else(Outcome::Failed, |()| Outcome::Done);
        match *op {
            Op::Pwrite { file, seed, offset, len } => {
                let data = vec![seed; len as usize];
                sys.pwrite(&files[file], &data, offset).map_or_else(Outcome::Failed, Outcome::Wrote)
            }
            Op::Truncate { file, size } => done(sys.truncate(&files[file], size)),
            Op::Reflink { src, src_offset, dst, dst_offset, len } => {
                done(sys.reflink(&files[src], src_offset, &files[dst], dst_offset, len))
            }
            Op::Dedupe { src, src_offset, dst, dst_offset, len } => sys
                .dedupe(&files[src], src_offset, len, &files[dst], dst_offset)
                .unwrap_or_else(Outcome::Failed),
            Op::Unshare { file, offset, len } => done(sys.unshare(&files[file], offset, len)),
            Op::Fallocate { file, mode, offset, len } => done(sys.fallocate(&files[file], mode, offset, len)),
            Op::CopyRange { src, src_offset, dst, dst_offset, len } => sys
                .copy_range(&files[src], src_offset, &files[dst], dst_offset, len)
                .map_or_else(Outcome::Failed, Outcome::Wrote),
            Op::Seek { file, offset, data } => {
                sys.seek(&files[file], offset, data).map_or_else(Outcome::Failed, Outcome::Offset)
            }
            Op::Fsync { file } => done(sys.fsync(&files[file])),
            Op::MapStore { file, seed, offset, len, sync } => match sys.size(&files[file]) {
                Err(e) => Outcome::Failed(e),
                // A store into a page wholly past EOF raises SIGBUS: not made.
                Ok(size) if offset.saturating_add(len) > size.next_multiple_of(BLOCK) => Outcome::PastEof,
                Ok(_) => done(sys.map_store(&files[file], &vec![seed; len as usize], offset, sync)),
            },
            Op::MapLoad { file, offset, len } => match sys.size(&files[file]) {
                Err(e) => Outcome::Failed(e),
                // Past EOF a load raises SIGBUS or sees bytes POSIX leaves unspecified: not made.
                Ok(size) if offset.saturating_add(len) > size => Outcome::PastEof,
                Ok(_) => sys
                    .map_load(&files[file], offset, len)
                    .map_or_else(Outcome::Failed, |bytes| Outcome::Loaded(crc32c::crc32c(&bytes))),
            },
            Op::Rename { from, to } => done(sys.rename(&format!("f{from}"), &format!("f{to}"))),
            Op::Unlink { name } => done(sys.unlink(&format!("f{name}"))),
            Op::Link { from, to } => done(sys.link(&format!("f{from}"), &format!("f{to}"))),
            Op::Open { .. } | Op::Remount => unreachable!("opens and remounts are the pair's"),
        }
    }

    /// Opens `/f{name}` into slot `file` on both sides; each side's slot keeps its earlier file
    /// when its open fails.
    fn open_slot(&mut self, file: usize, name: usize, how: Create) -> (Outcome, Outcome) {
        let path = format!("f{name}");
        fn outcome<T>(r: &Result<T, Errno>) -> Outcome {
            r.as_ref().map_or_else(|e| Outcome::Failed(*e), |_| Outcome::Done)
        }
        let x = self.xfs.open(false, &path, Access::ReadWrite, how);
        let xo = outcome(&x);
        if let Ok(handle) = x {
            self.xfs_files[file] = handle;
        }
        let f = self.ferrodax.open(false, &path, Access::ReadWrite, how);
        let fo = outcome(&f);
        if let Ok(handle) = f {
            self.ferrodax_files[file] = handle;
        }
        (xo, fo)
    }

    /// Every slot's (inode number, link count) and every name's state on one side.
    fn namespace<S: System>(
        sys: &mut S,
        files: &[S::Handle],
        names: usize,
    ) -> Result<(Vec<u64>, Vec<NameState>), String> {
        let mut slots = Vec::with_capacity(files.len());
        for (i, file) in files.iter().enumerate() {
            slots.push(sys.identity(file).map_err(|e| format!("fstat f{i}: {}", errno_name(e)))?);
        }
        let mut states = Vec::with_capacity(names);
        for name in 0..names {
            states.push(match sys.stat_path(&format!("f{name}")) {
                Err(e) => NameState::Missing(e),
                Ok((ino, nlink, size)) => match slots.iter().position(|&(slot_ino, _)| slot_ino == ino) {
                    Some(slot) => NameState::Slot(slot),
                    None => NameState::Unopened { nlink, size },
                },
            });
        }
        Ok((slots.into_iter().map(|(_, nlink)| nlink).collect(), states))
    }

    /// The link counts of the slots' files and what every name is, compared; then the contents of
    /// every named file no slot has open.
    fn compare_namespace(&mut self) -> Result<Option<Mismatch>, String> {
        let names = self.files + EXTRA_NAMES;
        let (x_links, x_names) =
            Self::namespace(&mut self.xfs, &self.xfs_files, names).map_err(|e| format!("xfs {e}"))?;
        let (f_links, f_names) = match Self::namespace(&mut self.ferrodax, &self.ferrodax_files, names) {
            Ok(found) => found,
            Err(e) => return Ok(Some(Mismatch::Failure(e))),
        };
        if let Some(file) = (0..self.files).find(|&i| x_links[i] != f_links[i]) {
            return Ok(Some(Mismatch::Links { file, xfs: x_links[file], ferrodax: f_links[file] }));
        }
        if let Some(name) = (0..names).find(|&k| x_names[k] != f_names[k]) {
            return Ok(Some(Mismatch::Name { name, xfs: x_names[name], ferrodax: f_names[name] }));
        }
        for name in (0..names).filter(|&k| matches!(x_names[k], NameState::Unopened { .. })) {
            let path = format!("f{name}");
            let x = self
                .xfs
                .open(false, &path, Access::ReadOnly, Create::No)
                .map_err(|e| format!("xfs open /{path}: {}", errno_name(e)))?;
            let f = match self.ferrodax.open(false, &path, Access::ReadOnly, Create::No) {
                Ok(f) => f,
                Err(e) => return Ok(Some(Mismatch::Failure(format!("open /{path}: {}", errno_name(e))))),
            };
            if let Some(mismatch) = Self::compare_file(&mut self.xfs, &x, &mut self.ferrodax, &f, name)? {
                return Ok(Some(mismatch));
            }
        }
        Ok(None)
    }

    /// Closes every file, remounts both sides and reopens the files. A failure of the kernel side
    /// is the harness's; a failure of ferrodax's (mount, reopen) is a divergence.
    fn remount(&mut self) -> Result<Option<Mismatch>, String> {
        self.close_all();
        self.xfs.remount().map_err(|e| format!("xfs remount: {e}"))?;
        if let Err(e) = self.ferrodax.remount() {
            return Ok(Some(Mismatch::Failure(e)));
        }
        for i in 0..self.files {
            let name = format!("f{i}");
            // A slot whose name went away (renamed, unlinked) starts again with a new empty file.
            let x = self.xfs.open(false, &name, Access::ReadWrite, Create::IfMissing);
            self.xfs_files.push(x.map_err(|e| format!("xfs reopen {name}: {}", errno_name(e)))?);
            match self.ferrodax.open(false, &name, Access::ReadWrite, Create::IfMissing) {
                Ok(f) => self.ferrodax_files.push(f),
                Err(e) => return Ok(Some(Mismatch::Failure(format!("reopen {name}: {}", errno_name(e))))),
            }
        }
        Ok(None)
    }

    /// Every slot's size and contents, compared; then the link counts and the names.
    fn compare(&mut self) -> Result<Option<Mismatch>, String> {
        for i in 0..self.files {
            let mismatch = Self::compare_file(
                &mut self.xfs,
                &self.xfs_files[i],
                &mut self.ferrodax,
                &self.ferrodax_files[i],
                i,
            )?;
            if mismatch.is_some() {
                return Ok(mismatch);
            }
        }
        self.compare_namespace()
    }

    /// One file's size and contents on both sides (`label` i names it f{i} in the mismatch).
    fn compare_file(
        xfs: &mut X,
        x: &X::Handle,
        ferrodax: &mut F,
        f: &F::Handle,
        label: usize,
    ) -> Result<Option<Mismatch>, String> {
        let i = label;
        let xs = xfs.size(x).map_err(|e| format!("xfs fstat f{i}: {}", errno_name(e)))?;
        let fs = match ferrodax.size(f) {
            Ok(size) => size,
            Err(e) => return Ok(Some(Mismatch::Failure(format!("fstat f{i}: {}", errno_name(e))))),
        };
        if xs != fs {
            return Ok(Some(Mismatch::Size { file: i, xfs: xs, ferrodax: fs }));
        }
        for (offset, len) in compare_windows(xs) {
            let xb = xfs.read(x, offset, len).map_err(|e| format!("xfs pread f{i}: {}", errno_name(e)))?;
            let fb = match ferrodax.read(f, offset, len) {
                Ok(bytes) => bytes,
                Err(e) => return Ok(Some(Mismatch::Failure(format!("pread f{i}: {}", errno_name(e))))),
            };
            if let Some(at) = xb.iter().zip(&fb).position(|(a, b)| a != b) {
                return Ok(Some(Mismatch::Contents {
                    file: i,
                    offset: offset + at as u64,
                    xfs: xb[at],
                    ferrodax: fb[at],
                }));
            }
        }
        Ok(None)
    }

    /// Decides whether differing results are one of the documented differences, exactly.
    /// `sizes` are the file sizes before the step. May bring the kernel side back in step (D2).
    fn accepted(
        &mut self,
        op: &Op,
        x: Outcome,
        f: Outcome,
        sizes: &[u64],
    ) -> Result<Option<Accepted>, String> {
        match (*op, x, f) {
            (Op::Dedupe { src, src_offset, dst, dst_offset, len }, Outcome::Same(_), Outcome::Differs) => {
                // D1: the compared bytes are equal, and some block is a hole on one side and
                // mapped on the other (ferrodax's hole-vs-data rule); nothing else.
                let n = dedupe_compared_len(src_offset, sizes[src], dst_offset, sizes[dst], len);
                if n == 0 {
                    return Ok(None);
                }
                let (sf, df) = (&self.ferrodax_files[src], &self.ferrodax_files[dst]);
                let (Ok(a), Ok(b)) =
                    (self.ferrodax.read(sf, src_offset, n), self.ferrodax.read(df, dst_offset, n))
                else {
                    return Ok(None);
                };
                if a != b {
                    return Ok(None);
                }
                let blocks = n.div_ceil(BLOCK);
                let ma = self.ferrodax.mapped_blocks(sf, src_offset / BLOCK, blocks);
                let mb = self.ferrodax.mapped_blocks(df, dst_offset / BLOCK, blocks);
                let (Some(ma), Some(mb)) = (ma, mb) else { return Ok(None) };
                if ma.iter().zip(&mb).any(|(p, q)| p != q) {
                    return Ok(Some(Accepted::HoleVersusZeroData));
                }
                Ok(None)
            }
            // D2: XFS addresses the last partial block of the 63-bit offset space, ferrodax stops
            // at 2^63 - 4096: a full write against a short one (up to the limit) or EFBIG.
            (Op::Pwrite { file, offset, len, .. }, Outcome::Wrote(n), ferrodax_result)
                if n == len
                    && offset + len > FERRODAX_MAX_FILE_SIZE
                    && match ferrodax_result {
                        Outcome::Wrote(m) => m < len && offset + m == FERRODAX_MAX_FILE_SIZE,
                        Outcome::Failed(libc::EFBIG) => offset >= FERRODAX_MAX_FILE_SIZE,
                        _ => false,
                    } =>
            {
                self.resync_past_ferrodax_limit(file).map(Some)
            }
            (Op::CopyRange { dst, dst_offset, .. }, Outcome::Wrote(n), ferrodax_result)
                if dst_offset + n > FERRODAX_MAX_FILE_SIZE
                    && match ferrodax_result {
                        Outcome::Wrote(m) => m < n && dst_offset + m == FERRODAX_MAX_FILE_SIZE,
                        Outcome::Failed(libc::EFBIG) => dst_offset >= FERRODAX_MAX_FILE_SIZE,
                        _ => false,
                    } =>
            {
                self.resync_past_ferrodax_limit(dst).map(Some)
            }
            (Op::Truncate { file, size }, Outcome::Done, Outcome::Failed(libc::EFBIG))
                if size > FERRODAX_MAX_FILE_SIZE =>
            {
                self.resync_past_ferrodax_limit(file).map(Some)
            }
            (Op::Unshare { file, offset, len }, Outcome::Done, Outcome::Failed(libc::EFBIG))
                if offset + len > FERRODAX_MAX_FILE_SIZE =>
            {
                self.resync_past_ferrodax_limit(file).map(Some)
            }
            (Op::Fallocate { file, mode, offset, len }, Outcome::Done, Outcome::Failed(libc::EFBIG))
                if offset.saturating_add(len) > FERRODAX_MAX_FILE_SIZE
                    || (mode == FALLOC_FL_INSERT_RANGE
                        && sizes[file].saturating_add(len) > FERRODAX_MAX_FILE_SIZE) =>
            {
                self.resync_past_ferrodax_limit(file).map(Some)
            }
            (Op::Seek { file, offset, data }, x, f) => self.layout_explains_seek(file, offset, data, x, f),
            _ => Ok(None),
        }
    }

    /// D3: a seek whose results differ is accepted exactly when each side's answer is what its
    /// own layout gives (XFS: written extents from FIEMAP after writeback, with its page cache
    /// dropped before the seek; ferrodax: mapped blocks) and every block where the two layouts
    /// disagree reads as zeros.
    fn layout_explains_seek(
        &mut self,
        file: usize,
        offset: u64,
        data: bool,
        x: Outcome,
        f: Outcome,
    ) -> Result<Option<Accepted>, String> {
        /// The most differing bytes the rule reads to prove they are zeros.
        const READ_LIMIT: u64 = 64 << 20;
        let size = self.ferrodax.size(&self.ferrodax_files[file]).map_err(errno_name)?;
        let (Some(ours), Some(theirs)) = (
            self.ferrodax.data_ranges(&self.ferrodax_files[file]),
            self.xfs.data_ranges(&self.xfs_files[file]),
        ) else {
            return Ok(None);
        };
        if seek_over(&ours, size, offset, data) != f || seek_over(&theirs, size, offset, data) != x {
            return Ok(None);
        }
        let differing: Vec<(u64, u64)> = xor_ranges(&ours, &theirs)
            .into_iter()
            .filter(|&(start, _)| start < size)
            .map(|(start, len)| (start, len.min(size - start)))
            .collect();
        if differing.iter().map(|r| r.1).sum::<u64>() > READ_LIMIT {
            return Ok(None);
        }
        for (start, len) in differing {
            let bytes = self.ferrodax.read(&self.ferrodax_files[file], start, len).map_err(errno_name)?;
            if bytes.iter().any(|&b| b != 0) {
                return Ok(None);
            }
        }
        Ok(Some(Accepted::SeekFollowsLayoutOverZeros))
    }

    /// D2: the kernel grew a file past ferrodax's largest file size where ferrodax stopped at it or
    /// refused. Everything XFS has beyond ferrodax's new size lies past that limit, so cutting the
    /// kernel's file back to ferrodax's size brings the sides in step; the comparison that follows
    /// still checks every byte below it.
    fn resync_past_ferrodax_limit(&mut self, file: usize) -> Result<Accepted, String> {
        let xfs_size =
            self.xfs.size(&self.xfs_files[file]).map_err(|e| format!("xfs fstat: {}", errno_name(e)))?;
        let ferrodax_size = self
            .ferrodax
            .size(&self.ferrodax_files[file])
            .map_err(|e| format!("ferrodax fstat: {}", errno_name(e)))?;
        if xfs_size <= FERRODAX_MAX_FILE_SIZE || ferrodax_size > FERRODAX_MAX_FILE_SIZE {
            return Err(format!("D2: unexpected sizes xfs {xfs_size}, ferrodax {ferrodax_size}"));
        }
        self.xfs
            .truncate(&self.xfs_files[file], ferrodax_size)
            .map_err(|e| format!("xfs ftruncate f{file} back to {ferrodax_size}: {}", errno_name(e)))?;
        Ok(Accepted::LastPartialBlockOfOffsetSpace)
    }

    /// Runs one step and compares everything.
    fn step(&mut self, index: usize, op: &Op) -> Result<StepReport, String> {
        let sizes = self.sizes()?;
        let (x, f) = if *op == Op::Remount {
            if let Some(failure) = self.remount()? {
                let f = Outcome::Failed(libc::EIO);
                let divergence = Some(Divergence {
                    step: index,
                    op: *op,
                    xfs: Outcome::Done,
                    ferrodax: f,
                    mismatch: failure,
                });
                return Ok(StepReport { xfs: Outcome::Done, ferrodax: f, accepted: None, divergence });
            }
            (Outcome::Done, Outcome::Done)
        } else if let Op::Open { file, name, how } = *op {
            self.open_slot(file, name, how)
        } else {
            let x = Self::apply_one(&mut self.xfs, &self.xfs_files, op);
            let f = Self::apply_one(&mut self.ferrodax, &self.ferrodax_files, op);
            (x, f)
        };
        let mut report = StepReport { xfs: x, ferrodax: f, accepted: None, divergence: None };
        let diverged = |mismatch| Some(Divergence { step: index, op: *op, xfs: x, ferrodax: f, mismatch });
        if x != f {
            report.accepted = self.accepted(op, x, f, &sizes)?;
            if report.accepted.is_none() {
                report.divergence = diverged(Mismatch::Result);
                return Ok(report);
            }
        }
        if let Some(mismatch) = self.compare()? {
            report.divergence = diverged(mismatch);
            return Ok(report);
        }
        if *op == Op::Remount {
            if let Some(problems) = self.ferrodax.fsck() {
                report.divergence = diverged(Mismatch::Fsck(problems));
            }
        }
        Ok(report)
    }

    /// Runs a whole sequence from empty file systems; the first divergence, if any.
    fn replay(&mut self, ops: &[Op], shape: Shape) -> Result<Option<Divergence>, String> {
        self.start(shape.files, shape.pool_bytes)?;
        for (i, op) in ops.iter().enumerate() {
            if let Some(d) = self.step(i, op)?.divergence {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }
}

// ----- the generator -----

/// Makes random steps that hit the interesting cases often: aligned and unaligned offsets, at and
/// past EOF, length 0, the same file, equal contents for dedupe (mirrored writes, earlier clones)
/// and zero-filled data next to holes.
struct Generator {
    rng: Rng,
    files: usize,
    /// Names namespace operations use: the slots' own and [`EXTRA_NAMES`] more.
    names: usize,
    /// Whether link(2) is in the mix.
    hard_links: bool,
    /// No step makes a file larger than this.
    size_cap: u64,
    /// Random offsets fall below this (plus the "at or near EOF" choices).
    span: u64,
    /// The last pwrite (seed, offset, len), to mirror into another place.
    last_write: Option<(u8, u64, u64)>,
    /// Recent successful clones (src, src_offset, dst, dst_offset, len): ranges with equal contents.
    links: Vec<(usize, u64, usize, u64, u64)>,
}

/// Whether link(2) is in the mix (the library has `Fs::hard_link`, the FUSE mount serves link).
const HARD_LINKS: bool = true;

/// Byte patterns: few, so equal contents happen; zeros, so zero data meets holes.
const SEEDS: [u8; 6] = [0x00, 0x61, 0x62, 0x63, 0xcd, 0x00];

impl Generator {
    fn new(seed: u64, files: usize, size_cap: u64) -> Generator {
        let span = size_cap / 3 * 2;
        Generator {
            rng: Rng(seed),
            files,
            names: files + EXTRA_NAMES,
            hard_links: HARD_LINKS,
            size_cap,
            span,
            last_write: None,
            links: Vec::new(),
        }
    }

    /// A block-aligned offset below the span.
    fn aligned_offset(&mut self) -> u64 {
        self.rng.below(self.span / BLOCK + 1) * BLOCK
    }

    /// A length of many blocks, up to a quarter of the cap (for larger caps: many extents).
    fn long_length(&mut self) -> u64 {
        (1 + self.rng.below(self.size_cap / 4 / BLOCK)) * BLOCK
    }

    fn file(&mut self) -> usize {
        self.rng.below(self.files as u64) as usize
    }

    /// A source and a destination: the same file 15% of the time (or always, with one file).
    fn two_files(&mut self) -> (usize, usize) {
        let a = self.file();
        if self.files == 1 || self.rng.chance(15) {
            return (a, a);
        }
        let b = (a + 1 + self.rng.below(self.files as u64 - 1) as usize) % self.files;
        (a, b)
    }

    /// An offset near the interesting places of a file of `size` bytes; aligned down to a block
    /// `aligned` percent of the time.
    fn offset(&mut self, size: u64, aligned: u64) -> u64 {
        let raw = match self.rng.below(10) {
            0 => 0,
            1 | 2 => self.aligned_offset(),
            3 => self.rng.below(self.span),
            4 => size,
            5 => size / BLOCK * BLOCK,
            6 => size.next_multiple_of(BLOCK),
            7 => size + 1 + self.rng.below(2 * BLOCK),
            8 => size.saturating_sub(1 + self.rng.below(2 * BLOCK)),
            _ => self.rng.below(size.max(1)),
        };
        if self.rng.chance(aligned) {
            raw / BLOCK * BLOCK
        } else {
            raw
        }
    }

    /// A length for a range at `offset` of a file of `size` bytes: 0, whole blocks, odd sizes,
    /// exactly to EOF, past EOF, to the block boundary after EOF.
    fn length(&mut self, offset: u64, size: u64) -> u64 {
        let to_eof = size.saturating_sub(offset);
        match self.rng.below(11) {
            0 => 0,
            10 => self.long_length(),
            1..=3 => (1 + self.rng.below(8)) * BLOCK,
            4 => 1 + self.rng.below(12_000),
            5 | 6 => to_eof,
            7 => to_eof + 1 + self.rng.below(BLOCK),
            8 => size.next_multiple_of(BLOCK).saturating_sub(offset),
            _ => 1 + self.rng.below(BLOCK),
        }
    }

    /// A reflink or dedupe source offset: mostly a block inside the file (so the call can work),
    /// otherwise any interesting offset.
    fn source_offset(&mut self, size: u64) -> u64 {
        if size > 0 && self.rng.chance(60) {
            self.rng.below(size.div_ceil(BLOCK)) * BLOCK
        } else {
            self.offset(size, 80)
        }
    }

    /// A reflink or dedupe length: mostly one that can work (whole blocks inside the source, to
    /// EOF, 0), otherwise any interesting length.
    fn remap_length(&mut self, offset: u64, size: u64) -> u64 {
        let whole_blocks_left = size.saturating_sub(offset) / BLOCK;
        match self.rng.below(10) {
            0 => 0,
            1..=3 if whole_blocks_left > 0 => (1 + self.rng.below(whole_blocks_left.min(8))) * BLOCK,
            4 | 5 => size.saturating_sub(offset),
            _ => self.length(offset, size),
        }
    }

    fn seed(&mut self) -> u8 {
        self.rng.pick(&SEEDS)
    }

    /// A name index for a namespace operation.
    fn name(&mut self) -> usize {
        self.rng.below(self.names as u64) as usize
    }

    /// An mmap store (two times in three) or load: mostly inside the file (a store may reach
    /// into the EOF page's tail past EOF), sometimes past it (the tester does not make those).
    fn map_op(&mut self, sizes: &[u64]) -> Op {
        let file = self.file();
        let size = sizes[file];
        let store = self.rng.chance(65);
        let (offset, len) = if size == 0 || self.rng.chance(5) {
            (self.offset(size, 50), 1 + self.rng.below(2 * BLOCK))
        } else {
            let offset =
                if self.rng.chance(40) { self.rng.below(size) / BLOCK * BLOCK } else { self.rng.below(size) };
            let limit = if store { size.next_multiple_of(BLOCK) } else { size };
            let room = limit - offset;
            let len = match self.rng.below(4) {
                0 => room,
                1 => 1 + self.rng.below(room.min(3 * BLOCK)),
                2 => ((1 + self.rng.below(4)) * BLOCK).min(room),
                _ => 1 + self.rng.below(room),
            };
            (offset, len)
        };
        if store {
            Op::MapStore { file, seed: self.seed(), offset, len, sync: self.rng.chance(50) }
        } else {
            Op::MapLoad { file, offset, len }
        }
    }

    /// The end offset a step could make a file reach (for the size cap).
    fn reach(op: &Op, sizes: &[u64]) -> u64 {
        match *op {
            Op::Pwrite { offset, len, .. } | Op::Unshare { offset, len, .. } => offset + len,
            Op::Truncate { size, .. } => size,
            Op::Reflink { src, src_offset, dst_offset, len, .. } => {
                let len = if len == 0 { sizes[src].saturating_sub(src_offset) } else { len };
                dst_offset + len.next_multiple_of(BLOCK)
            }
            Op::Fallocate { file, mode, offset, len } => match mode {
                FALLOC_FL_INSERT_RANGE => sizes[file] + len,
                0 | FALLOC_FL_ZERO_RANGE => offset + len,
                _ => 0,
            },
            Op::CopyRange { src, src_offset, dst_offset, len, .. } => {
                dst_offset + len.min(sizes[src].saturating_sub(src_offset))
            }
            Op::Dedupe { .. }
            | Op::Seek { .. }
            | Op::Fsync { .. }
            | Op::MapStore { .. }
            | Op::MapLoad { .. }
            | Op::Open { .. }
            | Op::Rename { .. }
            | Op::Unlink { .. }
            | Op::Link { .. }
            | Op::Remount => 0,
        }
    }

    fn next_op(&mut self, sizes: &[u64]) -> Op {
        for _ in 0..16 {
            let op = self.candidate(sizes);
            if Self::reach(&op, sizes) <= self.size_cap {
                return op;
            }
        }
        Op::Fsync { file: self.file() }
    }

    fn candidate(&mut self, sizes: &[u64]) -> Op {
        match self.rng.below(141) {
            125..=133 => self.map_op(sizes),
            134..=135 => Op::Rename { from: self.name(), to: self.name() },
            136 => Op::Unlink { name: self.name() },
            137..=138 => {
                let how = match self.rng.below(20) {
                    0..=9 => Create::IfMissing,
                    10..=13 => Create::Exclusive,
                    14..=16 => Create::Truncate,
                    _ => Create::No,
                };
                Op::Open { file: self.file(), name: self.name(), how }
            }
            139..=140 if self.hard_links => {
                // Mostly onto the extra names, which are free more often than the slots' names.
                let to = if self.rng.chance(70) {
                    self.files + self.rng.below(EXTRA_NAMES as u64) as usize
                } else {
                    self.name()
                };
                Op::Link { from: self.name(), to }
            }
            139..=140 => Op::Rename { from: self.name(), to: self.name() },
            100..=111 => self.fallocate(sizes),
            112..=118 => {
                let (src, dst) = self.two_files();
                let src_offset = self.source_offset(sizes[src]);
                let dst_offset = if self.rng.chance(30) { src_offset } else { self.offset(sizes[dst], 70) };
                let len = self.remap_length(src_offset, sizes[src]);
                Op::CopyRange { src, src_offset, dst, dst_offset, len }
            }
            119..=124 => {
                let file = self.file();
                Op::Seek { file, offset: self.offset(sizes[file], 50), data: self.rng.chance(50) }
            }
            0..=29 => self.pwrite(sizes),
            30..=39 => {
                let file = self.file();
                let size = sizes[file];
                let new_size = match self.rng.below(6) {
                    0 => 0,
                    1 => size + 1 + self.rng.below(3 * BLOCK),
                    2 => size.saturating_sub(1 + self.rng.below(3 * BLOCK)),
                    3 => self.aligned_offset(),
                    4 => self.rng.below(self.span),
                    _ => size,
                };
                Op::Truncate { file, size: new_size }
            }
            40..=63 => {
                let (src, dst) = self.two_files();
                let src_offset = self.source_offset(sizes[src]);
                let dst_offset = if self.rng.chance(30) { src_offset } else { self.offset(sizes[dst], 80) };
                let len = self.remap_length(src_offset, sizes[src]);
                Op::Reflink { src, src_offset, dst, dst_offset, len }
            }
            64..=86 => self.dedupe(sizes),
            87..=94 => {
                let file = self.file();
                let offset = self.offset(sizes[file], 50);
                let len = self.length(offset, sizes[file]);
                Op::Unshare { file, offset, len }
            }
            95..=98 => Op::Fsync { file: self.file() },
            _ => Op::Remount,
        }
    }

    fn pwrite(&mut self, sizes: &[u64]) -> Op {
        let file = self.file();
        if let Some((seed, offset, len)) = self.last_write.filter(|_| self.rng.chance(35)) {
            // Mirror the last write: same bytes at the same place within a block, so a later
            // dedupe finds equal contents.
            let base = if self.rng.chance(50) { offset / BLOCK * BLOCK } else { self.aligned_offset() };
            return Op::Pwrite { file, seed, offset: base + offset % BLOCK, len };
        }
        let offset = self.offset(sizes[file], 40);
        let len = match self.rng.below(9) {
            0 => 0,
            8 => self.long_length(),
            1..=3 => (1 + self.rng.below(6)) * BLOCK,
            4 => BLOCK - offset % BLOCK,
            _ => 1 + self.rng.below(3 * BLOCK),
        };
        Op::Pwrite { file, seed: self.seed(), offset, len }
    }

    /// A fallocate: mostly valid modes; block-aligned ranges inside the file most of the time
    /// (collapse and insert need them), often over shared blocks (any file may hold clones).
    fn fallocate(&mut self, sizes: &[u64]) -> Op {
        let file = self.file();
        let size = sizes[file];
        let mode = match self.rng.below(20) {
            0..=2 => 0,
            3 => FALLOC_FL_KEEP_SIZE,
            4..=7 => FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
            8..=9 => FALLOC_FL_ZERO_RANGE,
            10 => FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
            11..=13 => FALLOC_FL_COLLAPSE_RANGE,
            14..=16 => FALLOC_FL_INSERT_RANGE,
            17 => FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_KEEP_SIZE,
            _ => self.rng.pick(&[
                FALLOC_FL_PUNCH_HOLE,
                FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_KEEP_SIZE,
                FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE,
                0x04,
                0x80,
                0x100,
            ]),
        };
        let aligned = if matches!(mode, FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE) { 85 } else { 40 };
        let offset = if size > 0 && self.rng.chance(50) {
            let raw = self.rng.below(size);
            if self.rng.chance(aligned) {
                raw / BLOCK * BLOCK
            } else {
                raw
            }
        } else {
            self.offset(size, aligned)
        };
        let len = match self.rng.below(6) {
            0..=2 => (1 + self.rng.below(4)) * BLOCK,
            3 => 1 + self.rng.below(3 * BLOCK),
            _ => self.length(offset, size),
        };
        Op::Fallocate { file, mode, offset, len }
    }

    fn dedupe(&mut self, sizes: &[u64]) -> Op {
        if !self.links.is_empty() && self.rng.chance(40) {
            let i = self.rng.below(self.links.len() as u64) as usize;
            let (mut src, mut so, mut dst, mut d_o, len) = self.links[i];
            if self.rng.chance(50) {
                (src, so, dst, d_o) = (dst, d_o, src, so);
            }
            let len = match self.rng.below(4) {
                0 => sizes[src].saturating_sub(so),
                1 => len.min(sizes[src].saturating_sub(so)),
                _ => len,
            };
            return Op::Dedupe { src, src_offset: so, dst, dst_offset: d_o, len };
        }
        let (src, dst) = self.two_files();
        let src_offset = self.source_offset(sizes[src]);
        let dst_offset = if self.rng.chance(50) { src_offset } else { self.offset(sizes[dst], 85) };
        let len = match self.rng.below(5) {
            // Both ranges to their EOF when that is possible: the partial-block rule.
            0 => sizes[src].saturating_sub(src_offset).min(sizes[dst].saturating_sub(dst_offset)),
            _ => self.remap_length(src_offset, sizes[src]),
        };
        Op::Dedupe { src, src_offset, dst, dst_offset, len }
    }

    /// Learns from what the oracle said.
    fn observe(&mut self, op: &Op, outcome: Outcome) {
        match *op {
            Op::Pwrite { seed, offset, len, .. } => self.last_write = Some((seed, offset, len)),
            Op::CopyRange { src, src_offset, dst, dst_offset, .. } if matches!(outcome, Outcome::Wrote(n) if n > 0) =>
            {
                let Outcome::Wrote(len) = outcome else { return };
                if self.links.len() == 8 {
                    self.links.remove(0);
                }
                self.links.push((src, src_offset, dst, dst_offset, len));
            }
            Op::Reflink { src, src_offset, dst, dst_offset, len } if outcome == Outcome::Done && len > 0 => {
                if self.links.len() == 8 {
                    self.links.remove(0);
                }
                self.links.push((src, src_offset, dst, dst_offset, len));
            }
            _ => {}
        }
    }
}

// ----- statistics -----

/// Counts of steps by operation and outcome, and of accepted differences.
#[derive(Default)]
struct Stats {
    /// Print every step.
    verbose: bool,
    steps: u64,
    sequences: u64,
    by_op: BTreeMap<&'static str, BTreeMap<String, u64>>,
    accepted: BTreeMap<Accepted, u64>,
}

impl Stats {
    fn count(&mut self, op: &Op, report: &StepReport) {
        if self.verbose {
            let note = report.accepted.map_or(String::new(), |a| format!("  [accepted: {}]", a.label()));
            println!(
                "    {:<56} xfs {:<14} ferrodax {}{note}",
                op.to_string(),
                report.xfs.to_string(),
                report.ferrodax
            );
        }
        self.steps += 1;
        let outcome = match report.xfs {
            Outcome::Wrote(_) | Outcome::Done | Outcome::Offset(_) | Outcome::Loaded(_) => "ok".to_string(),
            Outcome::Same(_) => "SAME".to_string(),
            other => other.to_string(),
        };
        *self.by_op.entry(op.kind()).or_default().entry(outcome).or_default() += 1;
        if let Some(a) = report.accepted {
            *self.accepted.entry(a).or_default() += 1;
        }
    }

    fn print(&self) {
        for (op, outcomes) in &self.by_op {
            let total: u64 = outcomes.values().sum();
            let detail: Vec<String> = outcomes.iter().map(|(o, n)| format!("{o} {n}")).collect();
            println!("  {op:<9} {total:>7}  ({})", detail.join(", "));
        }
        if self.accepted.is_empty() {
            println!("  documented differences seen: none");
        }
        for (a, n) in &self.accepted {
            println!("  documented difference {}: {n} steps", a.label());
        }
    }
}

// ----- replay scripts -----

/// The minimal sequence as a shell script of xfs_io calls on a fresh loop-mounted XFS.
fn xfs_io_script(ops: &[Op], files: usize, divergence: &Divergence) -> String {
    let mut s = String::new();
    s.push_str("#!/bin/sh\n# Replay on the kernel (root, xfsprogs, a loop device).\n");
    s.push_str("IMG=${IMG:-/dev/shm/difftest-replay.img}\nMNT=${MNT:-/tmp/difftest-replay}\n");
    s.push_str("rm -f \"$IMG\"; truncate -s 512M \"$IMG\" && mkfs.xfs -q -f -m reflink=1,rmapbt=1 \"$IMG\" || exit 1\n");
    s.push_str("mkdir -p \"$MNT\" && mount -o loop \"$IMG\" \"$MNT\" || exit 1\n");
    s.push_str(&namespace_note(ops));
    for i in 0..files {
        s.push_str(&format!("xfs_io -f -c \"truncate 0\" \"$MNT/f{i}\"\n"));
    }
    for (i, op) in ops.iter().enumerate() {
        s.push_str(&step_comment(i, op, divergence));
        let line = match *op {
            Op::Remount => "umount \"$MNT\" && mount -o loop \"$IMG\" \"$MNT\"".to_string(),
            Op::Rename { from, to } => format!("mv -f \"$MNT/f{from}\" \"$MNT/f{to}\""),
            Op::Unlink { name } => format!("rm \"$MNT/f{name}\""),
            Op::Link { from, to } => format!("ln \"$MNT/f{from}\" \"$MNT/f{to}\""),
            Op::Open { name, how, .. } => format!("{}\"$MNT/f{name}\"", open_command(how, "xfs_io ")),
            _ => format!("xfs_io -c \"{}\" \"$MNT/f{}\"", io_command(op, "$MNT/"), target_file(op)),
        };
        s.push_str(&line);
        s.push('\n');
    }
    s.push_str(&format!(
        "for f in {}; do printf '%s %s ' $f $(stat -c %s \"$MNT/$f\"); md5sum < \"$MNT/$f\"; done\n",
        (0..files).map(|i| format!("f{i}")).collect::<Vec<_>>().join(" ")
    ));
    s.push_str("umount \"$MNT\"; rmdir \"$MNT\"; rm -f \"$IMG\"\n");
    s
}

/// The minimal sequence as a shell script of `ferrodax io` calls on a fresh pool.
fn ferrodax_io_script(ops: &[Op], files: usize, pool_bytes: u64, divergence: &Divergence) -> String {
    let mut s = String::new();
    s.push_str("#!/bin/sh\n# Replay on ferrodax (every `ferrodax io` call mounts the pool afresh).\n");
    s.push_str("FERRODAX=${FERRODAX:-ferrodax}\nPOOL=${POOL:-/dev/shm/difftest-replay.pool}\n");
    // The tester's pool size: the log's size (and so when checkpoints happen) depends on it.
    s.push_str(&format!("\"$FERRODAX\" mkfs --force --size {pool_bytes} \"$POOL\" >/dev/null || exit 1\n"));
    s.push_str(&namespace_note(ops));
    for i in 0..files {
        s.push_str(&format!("\"$FERRODAX\" io -f -c \"truncate 0\" \"$POOL\" /f{i}\n"));
    }
    for (i, op) in ops.iter().enumerate() {
        s.push_str(&step_comment(i, op, divergence));
        let line = match *op {
            Op::Remount => ": remount (the next call mounts the pool again)".to_string(),
            Op::Rename { from, to } => format!("\"$FERRODAX\" mv \"$POOL\" /f{from} /f{to}"),
            Op::Unlink { name } => format!("\"$FERRODAX\" rm \"$POOL\" /f{name}"),
            Op::Link { from, to } => format!("\"$FERRODAX\" io -c \"link /f{to}\" \"$POOL\" /f{from}"),
            Op::Open { name, how, .. } => {
                format!("{}\"$POOL\" /f{name}", open_command(how, "\"$FERRODAX\" io "))
            }
            _ => format!("\"$FERRODAX\" io -c \"{}\" \"$POOL\" /f{}", io_command(op, "/"), target_file(op)),
        };
        s.push_str(&line);
        s.push('\n');
    }
    s.push_str(&format!(
        "for f in {}; do printf '%s ' $f; \"$FERRODAX\" cat \"$POOL\" /$f | wc -c | tr '\\n' ' '; \"$FERRODAX\" cat \"$POOL\" /$f | md5sum; done\n",
        (0..files).map(|i| format!("f{i}")).collect::<Vec<_>>().join(" ")
    ));
    s
}

/// For a sequence with namespace operations: how far a script of one call per step follows it.
fn namespace_note(ops: &[Op]) -> String {
    if !ops.iter().any(Op::is_namespace) {
        return String::new();
    }
    "# NOTE: the tester's steps act on open files (f0..fN are slots, reopened by name only at a\n\
     # remount); this script's act on the names /f0../fN. They agree while slot i's file is named\n\
     # /fi: a file unlinked (or renamed away) while open cannot be reached by a later call here.\n"
        .to_string()
}

/// The command that opens a name as [`Op::Open`] does (`prefix` is the tool), up to the path.
fn open_command(how: Create, prefix: &str) -> String {
    match how {
        Create::No => format!("{prefix}-c \"stat\" "),
        Create::IfMissing => format!("{prefix}-f -c \"stat\" "),
        Create::Exclusive => {
            format!("# O_EXCL: the tester's open fails where the name exists; this one does not\n{prefix}-f -c \"stat\" ")
        }
        Create::Truncate => format!("{prefix}-f -c \"truncate 0\" "),
    }
}

/// "# step 3" (and, at the diverging step, what each side did).
fn step_comment(i: usize, op: &Op, divergence: &Divergence) -> String {
    if i == divergence.step && *op == divergence.op {
        format!(
            "# step {}: DIVERGES here: xfs {}, ferrodax {} ({})\n",
            i + 1,
            divergence.xfs,
            divergence.ferrodax,
            divergence.mismatch
        )
    } else {
        format!("# step {}\n", i + 1)
    }
}

/// The file an xfs_io-style command runs on.
fn target_file(op: &Op) -> usize {
    match *op {
        Op::Pwrite { file, .. }
        | Op::Truncate { file, .. }
        | Op::Unshare { file, .. }
        | Op::Fallocate { file, .. }
        | Op::Seek { file, .. }
        | Op::MapStore { file, .. }
        | Op::MapLoad { file, .. }
        | Op::Fsync { file } => file,
        Op::Reflink { dst, .. } | Op::Dedupe { dst, .. } | Op::CopyRange { dst, .. } => dst,
        Op::Open { name, .. } | Op::Unlink { name } => name,
        Op::Rename { to, .. } | Op::Link { to, .. } => to,
        Op::Remount => 0,
    }
}

/// The page-aligned start and length of the pages holding `[offset, offset + len)`.
fn pages_holding(offset: u64, len: u64) -> (u64, u64) {
    let start = offset / BLOCK * BLOCK;
    (start, (offset + len.max(1)).next_multiple_of(BLOCK) - start)
}

/// The xfs_io command (the same text works for `ferrodax io`); `dir` prefixes source paths.
fn io_command(op: &Op, dir: &str) -> String {
    match *op {
        // One buffer of the whole length: one pwrite call, as the tester made.
        Op::Pwrite { seed, offset, len, .. } if len > 0 => {
            format!("pwrite -q -S {seed:#04x} -b {len} {offset} {len}")
        }
        Op::Pwrite { seed, offset, len, .. } => format!("pwrite -q -S {seed:#04x} {offset} {len}"),
        Op::Truncate { size, .. } => format!("truncate {size}"),
        Op::Reflink { src, src_offset, dst_offset, len, .. } => {
            format!("reflink -q {dir}f{src} {src_offset} {dst_offset} {len}")
        }
        Op::Dedupe { src, src_offset, dst_offset, len, .. } => {
            format!("dedupe {dir}f{src} {src_offset} {dst_offset} {len}")
        }
        Op::Unshare { offset, len, .. } => format!("funshare {offset} {len}"),
        Op::Fallocate { mode, offset, len, .. } => match fallocate_kind(mode) {
            "falloc" => format!("falloc {offset} {len}"),
            "falloc-k" => format!("falloc -k {offset} {len}"),
            "fzero-k" => format!("fzero -k {offset} {len}"),
            "funshare-k" => {
                format!("stat # fallocate(UNSHARE|KEEP_SIZE, {offset}, {len}): no xfs_io command")
            }
            "fallocate-bad-mode" => {
                format!("stat # fallocate mode {mode:#x} {offset} {len}: no xfs_io command")
            }
            command => format!("{command} {offset} {len}"),
        },
        // One call, as the tester made (xfs_io calls again while the kernel copies something).
        Op::CopyRange { src, src_offset, dst_offset, len, .. } => {
            format!("copy_range -s {src_offset} -d {dst_offset} -l {len} {dir}f{src}")
        }
        Op::Seek { offset, data, .. } => format!("seek {} {offset}", if data { "-d" } else { "-h" }),
        Op::Fsync { .. } => "fsync".to_string(),
        // Several commands in one call (the caller puts the whole text between -c "...").
        Op::MapStore { seed, offset, len, sync, .. } => {
            let (start, map_len) = pages_holding(offset, len);
            format!(
                "mmap -rw {start} {map_len}\" -c \"mwrite -S {seed:#04x} {offset} {len}{}\" -c \"munmap",
                if sync { "\" -c \"msync -s" } else { "" }
            )
        }
        Op::MapLoad { offset, len, .. } => {
            let (start, map_len) = pages_holding(offset, len);
            format!("mmap -r {start} {map_len}\" -c \"mread {offset} {len}\" -c \"munmap")
        }
        Op::Open { .. } | Op::Rename { .. } | Op::Unlink { .. } | Op::Link { .. } | Op::Remount => {
            String::new()
        }
    }
}

// ----- shrinking -----

/// Shrinks a diverging sequence to a minimal one that still diverges the same way (same operation,
/// same kind of mismatch), by removing chunks of steps and then single steps until none can go.
fn shrink<X: System, F: System>(
    pair: &mut Pair<X, F>,
    ops: &[Op],
    shape: Shape,
    original: &Divergence,
) -> Result<(Vec<Op>, Divergence, usize), String> {
    let started = Instant::now();
    let mut best: Vec<Op> = ops[..=original.step].to_vec();
    let mut best_divergence = original.clone();
    let mut replays = 0usize;
    let mut chunk = best.len().div_ceil(2).max(1);
    loop {
        let mut removed_any = false;
        let mut i = 0;
        while i < best.len() {
            if replays >= SHRINK_REPLAY_BUDGET || started.elapsed() > SHRINK_TIME_BUDGET {
                return Ok((best, best_divergence, replays));
            }
            let mut candidate: Vec<Op> = best[..i].to_vec();
            candidate.extend_from_slice(&best[(i + chunk).min(best.len())..]);
            if candidate.is_empty() {
                i += chunk;
                continue;
            }
            replays += 1;
            match pair.replay(&candidate, shape)? {
                Some(d) if d.signature() == original.signature() => {
                    candidate.truncate(d.step + 1);
                    best = candidate;
                    best_divergence = d;
                    removed_any = true;
                }
                _ => i += chunk,
            }
        }
        if chunk == 1 && !removed_any {
            break;
        }
        if !removed_any || chunk > 1 {
            chunk = (chunk / 2).max(1);
        }
    }
    Ok((best, best_divergence, replays))
}

/// Shrinks and prints a divergence of a sequence.
fn report_divergence<X: System, F: System>(
    pair: &mut Pair<X, F>,
    title: &str,
    replay_hint: &str,
    ops: &[Op],
    shape: Shape,
    divergence: &Divergence,
) -> Result<(), String> {
    println!();
    println!("DIVERGENCE in {title} at step {} of {}: {}", divergence.step + 1, ops.len(), divergence.op);
    println!("  xfs:      {}", divergence.xfs);
    println!("  ferrodax: {}", divergence.ferrodax);
    println!("  {}", divergence.mismatch);
    println!("  replay: {replay_hint}");
    let (minimal, last, replays) = shrink(pair, ops, shape, divergence)?;
    // The files the scripts make first: the slots' names the minimal sequence uses.
    let files_used = minimal
        .iter()
        .map(|op| op.max_file().max(op.max_name().unwrap_or(0)))
        .max()
        .unwrap_or(0)
        .min(shape.files - 1)
        + 1;
    println!(
        "minimal sequence: {} step{} (shrunk with {replays} replays); it diverges at its last step: {}",
        minimal.len(),
        if minimal.len() == 1 { "" } else { "s" },
        last.mismatch
    );
    for (i, op) in minimal.iter().enumerate() {
        println!("  {:>3}. {op}", i + 1);
    }
    println!("  at the last step: xfs {}, ferrodax {}", last.xfs, last.ferrodax);
    println!("----- xfs_io script -----");
    print!("{}", xfs_io_script(&minimal, files_used.max(1), &last));
    println!("----- ferrodax io script -----");
    print!("{}", ferrodax_io_script(&minimal, files_used.max(1), shape.pool_bytes, &last));
    println!("----- end of scripts -----");
    Ok(())
}

// ----- fstests generic/157 and generic/158 -----

/// The objects the fstests cases use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Obj {
    File1,
    File2,
    File3,
    /// file1 on the other file system.
    OtherFile1,
    Dir1,
    Dev1,
    Fifo1,
}

impl Obj {
    fn path(self) -> (bool, &'static str) {
        match self {
            Obj::File1 => (false, "t/file1"),
            Obj::File2 => (false, "t/file2"),
            Obj::File3 => (false, "t/file3"),
            Obj::OtherFile1 => (true, "t/file1"),
            Obj::Dir1 => (false, "t/dir1"),
            Obj::Dev1 => (false, "t/dev1"),
            Obj::Fifo1 => (false, "t/fifo1"),
        }
    }

    fn is_special(self) -> bool {
        matches!(self, Obj::Dev1 | Obj::Fifo1)
    }
}

/// One case of generic/157 (reflink) or generic/158 (dedupe), with the kernel's golden result.
struct FstestsCase {
    test: &'static str,
    title: &'static str,
    dedupe: bool,
    src: Obj,
    src_offset: u64,
    dst: Obj,
    dst_offset: u64,
    len: u64,
    dst_access: Access,
    /// What the golden output (and /tmp/xfsref on this kernel) says.
    golden: Outcome,
}

/// Blocks in file1..file3 (as in the tests).
const FSTESTS_BLOCKS: u64 = 1000;

fn fstests_cases() -> Vec<FstestsCase> {
    use Access::*;
    use Obj::*;
    use Outcome::*;
    let b = BLOCK;
    let past = (FSTESTS_BLOCKS + 10) * b;
    let case = |test, title, dedupe, src, src_offset, dst, dst_offset, len, dst_access, golden| FstestsCase {
        test,
        title,
        dedupe,
        src,
        src_offset,
        dst,
        dst_offset,
        len,
        dst_access,
        golden,
    };
    let r = "generic/157";
    let d = "generic/158";
    vec![
        case(
            r,
            "Try cross-device reflink",
            false,
            File1,
            0,
            OtherFile1,
            0,
            b,
            ReadWrite,
            Failed(libc::EXDEV),
        ),
        case(r, "Try unaligned reflink", false, File1, 37, File1, 59, 23, ReadWrite, Failed(libc::EINVAL)),
        case(r, "Try overlapping reflink", false, File1, 0, File1, 1, 2 * b, ReadWrite, Failed(libc::EINVAL)),
        case(r, "Try reflink past EOF", false, File1, past, File1, 0, b, ReadWrite, Failed(libc::EINVAL)),
        case(r, "Try to reflink a dir", false, Dir1, 0, File2, 0, b, ReadWrite, Failed(libc::EISDIR)),
        case(r, "Try to reflink a device", false, Dev1, 0, File2, 0, b, ReadWrite, Failed(libc::EINVAL)),
        case(r, "Try to reflink to a dir", false, File1, 0, Dir1, 0, b, ReadWrite, Failed(libc::EISDIR)),
        case(r, "Try to reflink to a device", false, File1, 0, Dev1, 0, b, ReadWrite, Failed(libc::EINVAL)),
        case(r, "Try to reflink to a fifo", false, File1, 0, Fifo1, 0, b, NonBlocking, Failed(libc::EINVAL)),
        case(
            r,
            "Try to reflink an append-only file",
            false,
            File1,
            0,
            File3,
            0,
            b,
            Append,
            Failed(libc::EBADF),
        ),
        case(r, "Reflink two files", false, File1, 0, File2, 0, b, ReadWrite, Done),
        case(d, "Try cross-device dedupe", true, File1, 0, OtherFile1, 0, b, ReadWrite, Status(libc::EXDEV)),
        case(d, "Try unaligned dedupe", true, File1, 37, File1, 59, 23, ReadWrite, Status(libc::EINVAL)),
        case(d, "Try overlapping dedupe", true, File1, 0, File1, 1, 2 * b, ReadWrite, Status(libc::EINVAL)),
        case(d, "Try dedupe from past EOF", true, File1, past, File1, 0, b, ReadWrite, Failed(libc::EINVAL)),
        case(
            d,
            "Try dedupe to past EOF, destination offset beyond EOF",
            true,
            File1,
            0,
            File1,
            past,
            b,
            ReadWrite,
            Status(libc::EINVAL),
        ),
        case(
            d,
            "Try dedupe to past EOF, destination offset behind EOF",
            true,
            File1,
            0,
            File1,
            (FSTESTS_BLOCKS - 1) * b,
            2 * b,
            ReadWrite,
            Status(libc::EINVAL),
        ),
        case(d, "Try to dedupe a dir", true, Dir1, 0, File2, 0, b, ReadWrite, Failed(libc::EISDIR)),
        case(d, "Try to dedupe a device", true, Dev1, 0, File2, 0, b, ReadWrite, Failed(libc::EINVAL)),
        case(d, "Try to dedupe to a dir", true, File1, 0, Dir1, 0, b, ReadWrite, Failed(libc::EISDIR)),
        case(d, "Try to dedupe to a device", true, File1, 0, Dev1, 0, b, ReadWrite, Status(libc::EINVAL)),
        case(d, "Try to dedupe to a fifo", true, File1, 0, Fifo1, 0, b, NonBlocking, Status(libc::EINVAL)),
        case(d, "Try to dedupe an append-only file", true, File1, 0, File3, 0, b, Append, Same(b)),
        case(d, "Dedupe two files", true, File1, 0, File2, 0, b, ReadWrite, Same(b)),
    ]
}

/// The fstests setup: file1..file3 of 1000 blocks of 0x61, dir1, dev1, fifo1, and file1 on the
/// other file system. Returns whether the side has special files.
fn fstests_setup<S: System>(sys: &mut S) -> Result<bool, String> {
    sys.wipe(FSTESTS_POOL)?;
    sys.prepare_other()?;
    sys.mkdir(false, "t/dir1")?;
    sys.mkdir(true, "t")?;
    let data = vec![0x61u8; (FSTESTS_BLOCKS * BLOCK) as usize];
    for (other, path) in [Obj::File1, Obj::File2, Obj::File3, Obj::OtherFile1].map(Obj::path) {
        let file = sys
            .open(other, path, Access::ReadWrite, Create::IfMissing)
            .map_err(|e| format!("create {path}: {}", errno_name(e)))?;
        let n = sys.pwrite(&file, &data, 0).map_err(|e| format!("write {path}: {}", errno_name(e)))?;
        if n != data.len() as u64 {
            return Err(format!("short write to {path}"));
        }
    }
    let dev = sys.special(Obj::Dev1.path().1, Special::CharDevice)?;
    let fifo = sys.special(Obj::Fifo1.path().1, Special::Fifo)?;
    Ok(dev && fifo)
}

/// Opens `obj` on a side.
fn fstests_open<S: System>(sys: &mut S, obj: Obj, access: Access, create: bool) -> Result<S::Handle, Errno> {
    let (other, path) = obj.path();
    sys.open(other, path, access, if create { Create::IfMissing } else { Create::No })
}

/// Runs one case on one side: the outcome and a checksum of every regular file afterwards.
fn fstests_run<S: System>(sys: &mut S, case: &FstestsCase) -> Result<(Outcome, Vec<(u64, u32)>), String> {
    // xfs_io opens the reflink/dedupe source read-only, and the target with -f (create) and the
    // case's flags.
    let outcome = match fstests_open(sys, case.src, Access::ReadOnly, false) {
        Err(e) => Outcome::Failed(e),
        Ok(src) => match fstests_open(sys, case.dst, case.dst_access, !case.dst.is_special()) {
            Err(e) => Outcome::Failed(e),
            Ok(dst) => {
                if case.dedupe {
                    sys.dedupe(&src, case.src_offset, case.len, &dst, case.dst_offset)
                        .unwrap_or_else(Outcome::Failed)
                } else {
                    sys.reflink(&src, case.src_offset, &dst, case.dst_offset, case.len)
                        .map_or_else(Outcome::Failed, |()| Outcome::Done)
                }
            }
        },
    };
    let mut sums = Vec::new();
    for obj in [Obj::File1, Obj::File2, Obj::File3, Obj::OtherFile1] {
        let file = fstests_open(sys, obj, Access::ReadOnly, false)
            .map_err(|e| format!("reopen {:?}: {}", obj, errno_name(e)))?;
        let size = sys.size(&file).map_err(errno_name)?;
        let bytes = sys.read(&file, 0, size).map_err(|e| format!("read {:?}: {}", obj, errno_name(e)))?;
        sums.push((size, crc32c::crc32c(&bytes)));
    }
    Ok((outcome, sums))
}

/// Results of the fixed case lists.
#[derive(Default)]
struct CaseTally {
    run: u64,
    diverged: u64,
    kernel_only: u64,
    kernel_off_reference: u64,
}

/// Runs generic/157 and generic/158 on both sides.
fn run_fstests<X: System, F: System>(pair: &mut Pair<X, F>, tally: &mut CaseTally) -> Result<(), String> {
    println!("== fstests generic/157 (invalid reflink) and generic/158 (invalid dedupe), both sides");
    pair.close_all();
    let xfs_special = fstests_setup(&mut pair.xfs)?;
    let ferrodax_special = fstests_setup(&mut pair.ferrodax)?;
    for case in fstests_cases() {
        let special = case.src.is_special() || case.dst.is_special();
        let (x, x_sums) = fstests_run(&mut pair.xfs, &case)?;
        let on_reference = x == case.golden;
        if !on_reference {
            tally.kernel_off_reference += 1;
        }
        let reference_note =
            if on_reference { String::new() } else { format!(" (reference says {})", case.golden) };
        if special && !(xfs_special && ferrodax_special) {
            tally.kernel_only += 1;
            println!(
                "  {} {:<58} xfs {x}{reference_note}; ferrodax: not applicable (no device or fifo files)",
                case.test, case.title
            );
            continue;
        }
        tally.run += 1;
        let (f, f_sums) = fstests_run(&mut pair.ferrodax, &case)?;
        let verdict = if x != f {
            tally.diverged += 1;
            "DIVERGES"
        } else if x_sums != f_sums {
            tally.diverged += 1;
            "DIVERGES (file contents)"
        } else {
            "same"
        };
        println!("  {} {:<58} xfs {x}, ferrodax {f}: {verdict}{reference_note}", case.test, case.title);
    }
    Ok(())
}

// ----- fixed edge sequences -----

/// Fixed sequences from /tmp/xfsref's verified kernel behaviour: partial EOF blocks, length 0,
/// the same file, the far end of the offset space, funshare growing a file; and fallocate over
/// shared blocks, its errors and ranges around EOF, and copy_file_range linked, shortened and
/// byte-copied.
fn edge_sequences() -> Vec<(&'static str, usize, Vec<Op>)> {
    use Op::*;
    let w = |file, seed, offset, len| Pwrite { file, seed, offset, len };
    let clone = |src, src_offset, dst, dst_offset, len| Reflink { src, src_offset, dst, dst_offset, len };
    let dedupe = |src, src_offset, dst, dst_offset, len| Dedupe { src, src_offset, dst, dst_offset, len };
    let mut out = Vec::new();
    // A partial EOF block cloned into a destination of size S at 16384 (EINVAL once S > 18192).
    for size in [16384, 17000, 18192, 18193, 20000, 20480] {
        out.push((
            "clone a partial EOF block into a destination",
            2,
            vec![w(0, 0x61, 0, 10000), w(1, 0x62, 0, size), clone(0, 8192, 1, 16384, 1808), Remount],
        ));
    }
    out.push((
        "clone a partial EOF block past the destination's EOF",
        2,
        vec![
            w(0, 0x61, 0, 10000),
            w(1, 0x62, 0, 20000),
            clone(0, 8192, 1, 20480, 1808),
            clone(0, 8192, 1, 24576, 1808),
            clone(0, 0, 1, 0, 10000),
            clone(0, 8192, 1, 0, 2000),
            clone(0, 0, 1, 0, 5000),
            clone(0, 8192, 1, 0, 4096),
            clone(0, 4096, 1, 0, 100000),
            Remount,
        ],
    ));
    out.push((
        "clone with length 0 (to source EOF)",
        2,
        vec![
            w(0, 0x61, 0, 10000),
            clone(0, 4096, 1, 0, 0),
            clone(0, 10000, 1, 0, 0),
            clone(0, 12288, 1, 0, 0),
            clone(0, 8192, 1, 0, 0),
            clone(0, 1, 1, 0, 0),
            clone(0, 0, 1, 1, 0),
            clone(0, 0, 1, 16384, 0),
            clone(0, 0, 1, 0, 0),
            Remount,
        ],
    ));
    out.push((
        "dedupe partial EOF blocks",
        3,
        vec![
            w(0, 0x61, 0, 10000),
            w(1, 0x61, 0, 10000),
            w(2, 0x61, 0, 20000),
            dedupe(0, 0, 1, 0, 10000),
            dedupe(0, 8192, 1, 8192, 1808),
            dedupe(0, 0, 2, 0, 10000),
            dedupe(0, 8192, 2, 8192, 1808),
            dedupe(0, 8192, 2, 16384, 1808),
            dedupe(2, 0, 0, 0, 10000),
            dedupe(2, 16384, 0, 8192, 1808),
            dedupe(2, 0, 0, 0, 5000),
            dedupe(2, 0, 0, 0, 100),
            dedupe(2, 0, 0, 0, 20000),
            dedupe(0, 0, 2, 0, 20000),
            dedupe(0, 0, 1, 0, 12288),
            dedupe(0, 0, 1, 0, 0),
            dedupe(0, 10000, 1, 0, 0),
            dedupe(0, 12288, 1, 0, 0),
            dedupe(0, 0, 1, 12288, 0),
            dedupe(0, 1, 1, 0, 0),
            Remount,
            w(1, 0x62, 100, 1),
            dedupe(0, 0, 1, 0, 4096),
        ],
    ));
    out.push((
        "reflink and dedupe within one file",
        1,
        vec![
            w(0, 0x61, 0, 8192),
            clone(0, 0, 0, 0, 4096),
            clone(0, 0, 0, 8192, 4096),
            clone(0, 0, 0, 16384, 0),
            clone(0, 0, 0, 0, 0),
            dedupe(0, 0, 0, 0, 4096),
            dedupe(0, 0, 0, 4096, 4096),
            dedupe(0, 0, 0, 4096, 8192),
            clone(0, 0, 0, 4096, 8192),
            Remount,
        ],
    ));
    out.push((
        "holes and zero-filled data",
        2,
        vec![
            w(0, 0x00, 0, 8192),
            Truncate { file: 1, size: 8192 },
            dedupe(0, 0, 1, 0, 8192),
            dedupe(1, 0, 0, 0, 8192),
            w(1, 0x61, 4096, 4096),
            w(0, 0x61, 4096, 4096),
            dedupe(0, 4096, 1, 4096, 4096),
            dedupe(0, 0, 1, 0, 8192),
            Remount,
        ],
    ));
    let top = i64::MAX as u64;
    let last_block = top & !(BLOCK - 1); // 2^63 - 4096
    out.push((
        "the far end of the offset space",
        2,
        vec![
            w(0, 0x61, 0, 8192),
            clone(0, 0, 1, last_block, 4096),
            clone(0, 0, 1, last_block - BLOCK, 4096),
            clone(0, 4096, 1, 0, last_block),
            Truncate { file: 1, size: 0 },
            w(1, 0x62, last_block - 100, 100),
            w(1, 0x62, last_block - 100, 200),
            w(1, 0x62, last_block, 4096),
            w(1, 0x62, last_block, 1),
            w(1, 0x62, top - 1, 1),
            w(1, 0x62, top, 1),
            Truncate { file: 1, size: top },
            Truncate { file: 1, size: last_block + 1 },
            Truncate { file: 1, size: last_block },
            Unshare { file: 0, offset: last_block, len: 4095 },
            Unshare { file: 0, offset: last_block, len: 4096 },
            Unshare { file: 0, offset: last_block - BLOCK, len: 4096 },
            Remount,
        ],
    ));
    out.push((
        "funshare",
        2,
        vec![
            w(0, 0x61, 0, 16384),
            clone(0, 0, 1, 0, 0),
            Unshare { file: 1, offset: 0, len: 4096 },
            Unshare { file: 1, offset: 0, len: 0 },
            Unshare { file: 1, offset: 100, len: 10 },
            Unshare { file: 1, offset: 4100, len: 10 },
            Unshare { file: 1, offset: 0, len: 100_000 },
            Unshare { file: 0, offset: 200_000, len: 4096 },
            Remount,
        ],
    ));
    let fa = |file, mode, offset, len| Fallocate { file, mode, offset, len };
    let copy = |src, src_offset, dst, dst_offset, len| CopyRange { src, src_offset, dst, dst_offset, len };
    let seek = |file, offset, data| Seek { file, offset, data };
    const PUNCH: u32 = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
    out.push((
        "fallocate over shared blocks: punch, zero, collapse, insert",
        2,
        vec![
            w(0, 0x61, 0, 40000),
            clone(0, 0, 1, 0, 0),
            fa(1, PUNCH, 5000, 3000),
            fa(1, PUNCH, 8192, 8192),
            fa(1, FALLOC_FL_ZERO_RANGE, 20000, 5000),
            fa(1, FALLOC_FL_COLLAPSE_RANGE, 4096, 8192),
            fa(1, FALLOC_FL_INSERT_RANGE, 0, 4096),
            fa(0, FALLOC_FL_INSERT_RANGE, 36864, 8192),
            fa(0, FALLOC_FL_COLLAPSE_RANGE, 0, 4096),
            seek(1, 0, true),
            seek(1, 0, false),
            seek(1, 4096, true),
            Remount,
        ],
    ));
    out.push((
        "fallocate errors and ranges at and past EOF",
        1,
        vec![
            w(0, 0x62, 0, 10000),
            fa(0, FALLOC_FL_COLLAPSE_RANGE, 4096, 4096),
            fa(0, FALLOC_FL_COLLAPSE_RANGE, 0, 100),
            fa(0, FALLOC_FL_COLLAPSE_RANGE, 4096, 8192),
            fa(0, FALLOC_FL_INSERT_RANGE, 12288, 4096),
            fa(0, FALLOC_FL_INSERT_RANGE, 8192, 4096),
            fa(0, FALLOC_FL_INSERT_RANGE, 4096, 1 << 62),
            fa(0, FALLOC_FL_PUNCH_HOLE, 0, 4096),
            fa(0, FALLOC_FL_KEEP_SIZE, 0, 0),
            fa(0, 0x04, 0, 4096),
            fa(0, 0x80, 0, 4096),
            fa(0, FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_KEEP_SIZE, 0, 4096),
            fa(0, FALLOC_FL_KEEP_SIZE, 20000, 8192),
            fa(0, PUNCH, 9000, 100_000),
            fa(0, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 12000, 100_000),
            fa(0, FALLOC_FL_ZERO_RANGE, 30000, 100),
            fa(0, 0, 50000, 4096),
            fa(0, 0, FERRODAX_MAX_FILE_SIZE - 4096, 4096),
            seek(0, 0, true),
            seek(0, 12000, true),
            seek(0, 12000, false),
            seek(0, 1 << 40, false),
            Remount,
        ],
    ));
    out.push((
        "copy_file_range: reflinked, shortened, byte-copied",
        2,
        vec![
            w(0, 0x63, 0, 30000),
            w(1, 0x64, 0, 50000),
            copy(0, 0, 1, 0, 8192),
            copy(0, 4096, 1, 8192, 10000),
            copy(0, 100, 1, 300, 5000),
            copy(0, 24576, 1, 4096, 10000),
            copy(0, 24576, 1, 49152, 10000),
            copy(0, 0, 0, 4096, 8192),
            copy(0, 0, 0, 16384, 8192),
            copy(0, 29000, 1, 0, 100),
            copy(0, 40000, 1, 0, 100),
            copy(0, 0, 1, 0, 0),
            copy(1, 0, 0, FERRODAX_MAX_FILE_SIZE - 10, 100),
            Remount,
        ],
    ));
    let store = |file, seed, offset, len, sync| MapStore { file, seed, offset, len, sync };
    let load = |file, offset, len| MapLoad { file, offset, len };
    out.push((
        "mmap stores into the EOF page past EOF, then the file grows",
        1,
        vec![
            w(0, 0x61, 0, 5000),
            store(0, 0x62, 4000, 4192, false),
            load(0, 0, 5000),
            load(0, 4000, 1001),
            Truncate { file: 0, size: 12000 },
            store(0, 0x63, 11000, 1288, true),
            w(0, 0x64, 20000, 10),
            store(0, 0x65, 20005, 100, true),
            Truncate { file: 0, size: 20003 },
            fa(0, 0, 20003, 4096),
            store(0, 0x66, 24000, 576, false),
            fa(0, FALLOC_FL_ZERO_RANGE, 24099, 10),
            store(0, 0x67, 30000, 10, true),
            load(0, 24096, 3),
            Remount,
        ],
    ));
    out.push((
        "mmap stores over shared blocks and holes, then remap calls",
        2,
        vec![
            w(0, 0x61, 0, 16384),
            clone(0, 0, 1, 0, 0),
            store(1, 0x62, 100, 5000, true),
            store(0, 0x63, 8192, 4096, false),
            clone(0, 8192, 1, 8192, 4096),
            copy(1, 0, 0, 0, 8192),
            Truncate { file: 1, size: 40000 },
            store(1, 0x64, 32768, 100, false),
            seek(1, 16384, true),
            dedupe(0, 0, 1, 0, 8192),
            load(1, 0, 40000),
            fa(1, PUNCH, 0, 4096),
            store(1, 0x65, 0, 4096, false),
            Fsync { file: 1 },
            Remount,
        ],
    ));
    out.push((
        "unlink an open file and go on with it; create, rename over and onto itself",
        3,
        vec![
            w(0, 0x61, 0, 9000),
            Unlink { name: 0 },
            w(0, 0x62, 100, 5000),
            store(0, 0x63, 8000, 1000, true),
            Truncate { file: 0, size: 20000 },
            copy(0, 0, 1, 0, 9000),
            clone(0, 0, 2, 0, 8192),
            Open { file: 0, name: 0, how: Create::Exclusive },
            Open { file: 0, name: 0, how: Create::Exclusive },
            w(0, 0x64, 0, 100),
            Rename { from: 1, to: 0 },
            Rename { from: 0, to: 0 },
            Rename { from: 3, to: 4 },
            Open { file: 1, name: 3, how: Create::No },
            Open { file: 1, name: 2, how: Create::Truncate },
            Rename { from: 2, to: 3 },
            w(1, 0x65, 0, 3000),
            Unlink { name: 0 },
            Unlink { name: 0 },
            Remount,
        ],
    ));
    if HARD_LINKS {
        out.push((
            "hard links: link counts, rename between links of one file, unlink of one name",
            3,
            vec![
                w(0, 0x61, 0, 6000),
                Link { from: 0, to: 3 },
                Link { from: 0, to: 3 },
                Link { from: 4, to: 2 },
                Link { from: 0, to: 1 },
                Rename { from: 0, to: 3 },
                Unlink { name: 0 },
                w(0, 0x62, 1000, 100),
                Open { file: 1, name: 3, how: Create::No },
                store(1, 0x63, 0, 100, true),
                Rename { from: 2, to: 3 },
                Link { from: 3, to: 0 },
                Unlink { name: 1 },
                Open { file: 2, name: 0, how: Create::Truncate },
                Remount,
            ],
        ));
    }
    out.push((
        "writes and truncates of length 0 and around EOF",
        1,
        vec![
            w(0, 0x61, 0, 0),
            w(0, 0x61, 8192, 0),
            w(0, 0x61, 100, 5000),
            Truncate { file: 0, size: 4097 },
            Truncate { file: 0, size: 100_000 },
            w(0, 0x62, 99_999, 2),
            Truncate { file: 0, size: 50 },
            Truncate { file: 0, size: 8192 },
            Fsync { file: 0 },
            Remount,
        ],
    ));
    out
}

/// Runs the fixed edge sequences; prints and shrinks any divergence.
fn run_edge_sequences<X: System, F: System>(
    pair: &mut Pair<X, F>,
    tally: &mut CaseTally,
    stats: &mut Stats,
) -> Result<(), String> {
    println!(
        "== fixed edge sequences (partial EOF blocks, length 0, same file, offset limits, funshare, fallocate, \
         copy_file_range, seek)"
    );
    for (title, files, ops) in edge_sequences() {
        let shape = Shape { files, pool_bytes: SMALL_POOL };
        pair.start(files, shape.pool_bytes)?;
        tally.run += 1;
        let mut diverged = None;
        for (i, op) in ops.iter().enumerate() {
            let report = pair.step(i, op)?;
            stats.count(op, &report);
            if let Some(d) = report.divergence {
                diverged = Some(d);
                break;
            }
        }
        match diverged {
            None => println!("  {title}: {} steps, same", ops.len()),
            Some(d) => {
                tally.diverged += 1;
                report_divergence(
                    pair,
                    &format!("edge sequence \"{title}\""),
                    "ferrodax difftest (edge sequences run first)",
                    &ops,
                    shape,
                    &d,
                )?;
            }
        }
    }
    Ok(())
}

// ----- the run -----

/// Prints the skip loudly and returns [`EXIT_SKIPPED`]; `what` is what the machine lacks.
fn skipped(what: &str, why: &str) -> i32 {
    let line = format!(
        "SKIPPED: ferrodax difftest did not run: {what} is not available here ({why}). \
         Nothing was compared; this is not a pass."
    );
    println!("{line}");
    eprintln!("{line}");
    EXIT_SKIPPED
}

fn main() {
    ferrodax_hostkit::closed_pipe::end_quietly_on_closed_pipe();
    std::process::exit(run(DifftestArgs::parse()));
}

/// Runs the differential test; returns the exit status.
fn run(args: DifftestArgs) -> i32 {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    let files = args.files as usize;
    println!(
        "difftest: seed {seed}, {} sequences x {} steps over {files} files{}",
        args.sequences,
        args.steps,
        if args.inject_fault {
            " (SELF-TEST: fault injected into ferrodax's unaligned pwrites into shared blocks)"
        } else {
            ""
        }
    );
    // Through FUSE: what the machine lacks for the mount is said before anything is made.
    if args.through == Through::Fuse {
        let missing = if args.pretend_no_fuse {
            Some("--pretend-no-fuse was given".to_string())
        } else {
            fuse_side::missing_prerequisite()
        };
        if let Some(why) = missing {
            return skipped("a FUSE mount", &why);
        }
    }
    let scratch = if args.pretend_no_oracle {
        Err("--pretend-no-oracle was given".to_string())
    } else {
        XfsScratch::set_up("difftest-main", XFS_IMAGE_SIZE)
    };
    let main = match scratch {
        Ok(scratch) => scratch,
        Err(why) => return skipped("the kernel XFS oracle", &why),
    };
    println!(
        "kernel side: XFS (reflink=1, rmapbt=1) on {} at {}",
        main.image().display(),
        main.mountpoint().display()
    );
    let xfs = KernelSide { mount: XfsMount { main, other: None } };
    let outcome = match args.through {
        Through::Library => {
            let ferrodax = match Ferrodax::new(args.inject_fault) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("difftest: {e}");
                    return EXIT_HARNESS;
                }
            };
            println!("ferrodax side: memfd pools driven through the library");
            run_all(&mut Pair::new(xfs, ferrodax), &args, seed, files)
        }
        Through::Fuse => {
            let backend = match fuse_side::FuseBackend::set_up() {
                Ok(backend) => backend,
                Err(why) => return skipped("a FUSE mount", &why),
            };
            println!(
                "ferrodax side: memfd pools mounted through FUSE (ferrodax::fuse, in this process) at {}, \
                 driven through the kernel's system calls",
                fuse_side::FuseBackend::mountpoint(&backend).display()
            );
            run_all(&mut Pair::new(xfs, KernelSide { mount: backend }), &args, seed, files)
        }
    };
    match outcome {
        Ok(status) => status,
        Err(e) => {
            println!("difftest: HARNESS FAILURE: {e}");
            eprintln!("difftest: harness failure: {e}");
            EXIT_HARNESS
        }
    }
}

fn run_all<X: System, F: System>(
    pair: &mut Pair<X, F>,
    args: &DifftestArgs,
    seed: u64,
    files: usize,
) -> Result<i32, String> {
    let started = Instant::now();
    let mut tally = CaseTally::default();
    let mut stats = Stats { verbose: args.verbose, ..Stats::default() };
    if !args.random_only {
        if args.through == Through::Library {
            run_fstests(pair, &mut tally)?;
        } else {
            println!(
                "== fstests generic/157 and generic/158: not run through FUSE (every case is a FICLONERANGE or \
                 FIDEDUPERANGE call, which the kernel refuses on FUSE before ferrodax sees it)"
            );
        }
        run_edge_sequences(pair, &mut tally, &mut stats)?;
    }
    println!("== random sequences");
    let mut divergences = tally.diverged;
    let mut random_steps = 0u64;
    let mut diverged_seeds = Vec::new();
    for s in 0..args.sequences {
        let sequence_seed = seed.wrapping_add(s);
        let shape = Shape { files, pool_bytes: pool_for(files, args.max_file_size) };
        pair.start(files, shape.pool_bytes)?;
        let mut generator = Generator::new(sequence_seed, files, args.max_file_size);
        let mut ops = Vec::with_capacity(args.steps as usize);
        let mut diverged = None;
        for i in 0..args.steps as usize {
            let op =
                if i + 1 == args.steps as usize { Op::Remount } else { generator.next_op(&pair.sizes()?) };
            ops.push(op);
            let report = pair.step(i, &op)?;
            stats.count(&op, &report);
            random_steps += 1;
            generator.observe(&op, report.xfs);
            if let Some(d) = report.divergence {
                diverged = Some(d);
                break;
            }
        }
        stats.sequences += 1;
        if let Some(d) = diverged {
            divergences += 1;
            diverged_seeds.push(sequence_seed);
            let hint = format!(
                "ferrodax difftest --random-only --seed {sequence_seed} --sequences 1 --steps {} --files {files} \
                 --max-file-size {}{}{}",
                args.steps,
                args.max_file_size,
                if args.inject_fault { " --inject-fault" } else { "" },
                if args.through == Through::Fuse { " --through fuse" } else { "" }
            );
            report_divergence(pair, &format!("sequence seed {sequence_seed}"), &hint, &ops, shape, &d)?;
            if !args.keep_going {
                break;
            }
        }
    }
    println!();
    println!("== summary");
    if !args.random_only {
        println!(
            "  fixed cases: {} compared on both sides, {} kernel-only (no special files in ferrodax), {} diverged{}",
            tally.run,
            tally.kernel_only,
            tally.diverged,
            if tally.kernel_off_reference > 0 {
                format!(", WARNING: {} kernel results differ from the recorded reference", tally.kernel_off_reference)
            } else {
                String::new()
            }
        );
    }
    println!(
        "  random: {} sequences (seeds {}..={}), {random_steps} steps compared",
        stats.sequences,
        seed,
        seed.wrapping_add(stats.sequences.saturating_sub(1))
    );
    println!("  all steps compared (random + edge): {}", stats.steps);
    if let Some(coverage) = pair.ferrodax.coverage() {
        println!("  coverage: {coverage}");
    }
    stats.print();
    println!("  time: {:.1} s", started.elapsed().as_secs_f64());
    if divergences > 0 {
        println!(
            "RESULT: FAIL: {divergences} divergence(s){}",
            if diverged_seeds.is_empty() {
                String::new()
            } else {
                format!(" (sequence seeds {diverged_seeds:?})")
            }
        );
        return Ok(EXIT_DIVERGED);
    }
    println!("RESULT: PASS: no divergence other than those documented in docs/CONFORMANCE.md");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedupe_compare_length_follows_generic_remap_checks() {
        // Both ranges end at EOF: the partial block is compared.
        assert_eq!(dedupe_compared_len(0, 10000, 0, 10000, 10000), 10000);
        // Only the source ends at EOF: rounded down to whole blocks.
        assert_eq!(dedupe_compared_len(0, 10000, 0, 20000, 10000), 8192);
        // Mid-file unaligned length: rounded down, possibly to nothing.
        assert_eq!(dedupe_compared_len(0, 20000, 0, 20000, 100), 0);
    }

    #[test]
    fn generator_is_reproducible_and_stays_under_the_size_cap() {
        let run = |seed| {
            let mut g = Generator::new(seed, 3, DEFAULT_SIZE_CAP);
            let mut sizes = vec![0u64; 3];
            let mut ops = Vec::new();
            for _ in 0..2000 {
                let op = g.next_op(&sizes);
                assert!(Generator::reach(&op, &sizes) <= DEFAULT_SIZE_CAP, "{op}");
                // A crude size model is enough to drive the generator here.
                match op {
                    Op::Pwrite { file, offset, len, .. } if len > 0 => {
                        sizes[file] = sizes[file].max(offset + len)
                    }
                    Op::Truncate { file, size } => sizes[file] = size,
                    _ => {}
                }
                ops.push(op);
            }
            ops
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn scripts_name_every_step_and_mark_the_divergence() {
        let ops = vec![
            Op::Pwrite { file: 0, seed: 0x61, offset: 100, len: 5000 },
            Op::Remount,
            Op::Dedupe { src: 1, src_offset: 0, dst: 0, dst_offset: 4096, len: 4096 },
        ];
        let d = Divergence {
            step: 2,
            op: ops[2],
            xfs: Outcome::Same(4096),
            ferrodax: Outcome::Differs,
            mismatch: Mismatch::Result,
        };
        let x = xfs_io_script(&ops, 2, &d);
        assert!(x.contains("xfs_io -c \"pwrite -q -S 0x61 -b 5000 100 5000\" \"$MNT/f0\""), "{x}");
        assert!(x.contains("umount \"$MNT\" && mount -o loop \"$IMG\" \"$MNT\""), "{x}");
        assert!(x.contains("xfs_io -c \"dedupe $MNT/f1 0 4096 4096\" \"$MNT/f0\""), "{x}");
        assert!(x.contains("# step 3: DIVERGES here: xfs SAME 4096, ferrodax DIFFERS"), "{x}");
        let f = ferrodax_io_script(&ops, 2, SMALL_POOL, &d);
        assert!(f.contains("\"$FERRODAX\" io -c \"dedupe /f1 0 4096 4096\" \"$POOL\" /f0"), "{f}");
        assert!(f.contains("\"$FERRODAX\" io -f -c \"truncate 0\" \"$POOL\" /f1"), "{f}");
    }

    #[test]
    fn scripts_replay_mmap_and_namespace_steps_and_say_where_names_and_slots_part() {
        let ops = vec![
            Op::MapStore { file: 0, seed: 0x61, offset: 100, len: 5000, sync: true },
            Op::MapLoad { file: 0, offset: 4096, len: 10 },
            Op::Link { from: 0, to: 3 },
            Op::Unlink { name: 0 },
        ];
        let d = Divergence {
            step: 3,
            op: ops[3],
            xfs: Outcome::Done,
            ferrodax: Outcome::Failed(libc::ENOENT),
            mismatch: Mismatch::Result,
        };
        let x = xfs_io_script(&ops, 1, &d);
        let store = "xfs_io -c \"mmap -rw 0 8192\" -c \"mwrite -S 0x61 100 5000\" -c \"msync -s\" -c \"munmap\" \"$MNT/f0\"";
        assert!(x.contains(store), "{x}");
        assert!(
            x.contains("xfs_io -c \"mmap -r 4096 4096\" -c \"mread 4096 10\" -c \"munmap\" \"$MNT/f0\""),
            "{x}"
        );
        assert!(x.contains("ln \"$MNT/f0\" \"$MNT/f3\""), "{x}");
        assert!(x.contains("rm \"$MNT/f0\""), "{x}");
        assert!(x.contains("# NOTE: the tester's steps act on open files"), "{x}");
        let f = ferrodax_io_script(&ops, 1, SMALL_POOL, &d);
        assert!(f.contains("\"$FERRODAX\" io -c \"link /f3\" \"$POOL\" /f0"), "{f}");
        assert!(f.contains("\"$FERRODAX\" rm \"$POOL\" /f0"), "{f}");
        assert!(f.contains("# step 4: DIVERGES here: xfs ok, ferrodax ENOENT"), "{f}");
    }
}
