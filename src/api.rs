//! The library front end: `Pool`, `Fs`, `File` and `OpenOptions`, in the style of `std::fs`.
//!
//! Owns handles, their access modes and the locks that make the file system safe to share between
//! threads: the file system lock (many readers, one writer of the state) and the per-file locks
//! that order reads and in-place overwrites of one file (docs/ARCHITECTURE.md, section 3.1). An
//! `Fs` is either a direct mount (this process owns the pool) or a connection to a pool server
//! ([`Fs::connect`]); both give the same API, and a connected one sends each call to the server
//! (`crate::server::client`), whose own direct mount runs it. Must never implement file system logic itself: every call checks what only a handle
//! knows (EBADF, EXDEV) and hands the rest to `fs::FileSystem` or to the server.

use crate::dax::fault::{self, FaultOutcome, FaultTarget, LockMark};
use crate::dax::vm::{self, PageProtection};
use crate::dax::{DaxLayer, Holder, MapAccess, Notice, NoticeKind, PageShare, PageState, Subscription, View};
use crate::error::{Error, Result};
use crate::format::record::InodeKind;
use crate::format::{BLOCK_SIZE, MAX_FILE_SIZE};
use crate::fs::check::CheckReport;
use crate::fs::falloc::{self, SeekTarget, MAX_RW_COUNT};
use crate::fs::namespace::OpenIntent;
use crate::fs::{
    BlockOwner, DedupeOutcome, DirEntry, FiemapExtent, FileSystem, FsStats, Handle, HandleAccess,
    MadePrivate, ShareState, SpaceUsage, Stat,
};
use crate::memfail::{FailureFlags, FailureReport, PendingNotices, PreRemoveReport};
use crate::pool::{Backend, MappedBackend, Persistence, SharedBackend};
use crate::server::client::Client;
use crate::server::protocol::{Answer, Op, OpenSpec, PoolAccess, WireDedupe};
use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, RwLock};

mod names;

/// A memory pool, not yet mounted: where the file system's bytes live.
#[derive(Clone)]
pub struct Pool {
    backend: SharedBackend,
}

impl Pool {
    /// Creates a new sparse pool file of `size` bytes (EEXIST if it exists).
    pub fn create(path: impl AsRef<Path>, size: u64) -> Result<Pool> {
        let path = path.as_ref();
        let backend = MappedBackend::create_file(path, size).map_err(|e| open_error(path, e))?;
        Ok(Pool { backend: Arc::new(backend) })
    }

    /// Creates a new pool file of `size` bytes with every byte allocated on the host file system
    /// (EEXIST if it exists; ENOSPC, and no file left behind, if the host has no room), so the pool
    /// can never run into a full host file system later.
    pub fn create_allocated(path: impl AsRef<Path>, size: u64) -> Result<Pool> {
        let path = path.as_ref();
        let backend = MappedBackend::create_file_allocated(path, size).map_err(|e| open_error(path, e))?;
        Ok(Pool { backend: Arc::new(backend) })
    }

    /// Opens an existing pool for reading and writing: a pool file or a /dev/dax device. The pool
    /// has one read-write owner at a time: while another process has it open this way (or
    /// read-only), this fails at once with EBUSY, naming the holder; share a pool between
    /// processes with a pool server (`ferrodax serve`, [`Fs::connect`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Pool> {
        let path = path.as_ref();
        let backend = MappedBackend::open_path(path).map_err(|e| open_error(path, e))?;
        Ok(Pool { backend: Arc::new(backend) })
    }

    /// Opens an existing pool file or /dev/dax device for reading and writing and uses only its
    /// first `size` bytes (rounded up to 4096): what `mkfs --size` formats on a device. EINVAL
    /// when `size` is larger than the pool. A later [`Pool::open`] maps the whole device; the
    /// superblock written by [`Fs::format`] says how many blocks the file system uses.
    pub fn open_sized(path: impl AsRef<Path>, size: u64) -> Result<Pool> {
        let path = path.as_ref();
        let backend = MappedBackend::open_path_sized(path, size).map_err(|e| open_error(path, e))?;
        Ok(Pool { backend: Arc::new(backend) })
    }

    /// Opens an existing pool for reading only: the file need only be readable, and nothing is
    /// ever stored into it; mount it with [`Fs::mount_read_only`]. Any number of read-only
    /// openers may share a pool, but not with a read-write owner (EBUSY, naming the holder).
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Pool> {
        let path = path.as_ref();
        let backend = MappedBackend::open_path_read_only(path).map_err(|e| open_error(path, e))?;
        Ok(Pool { backend: Arc::new(backend) })
    }

    /// Opens a pool file whose page cache is itself the persistence domain (a file on /dev/shm or
    /// on a DAX file system): stores are made durable with cache flushes instead of msync.
    pub fn open_with_cache_flush(path: impl AsRef<Path>) -> Result<Pool> {
        let path = path.as_ref();
        let backend = MappedBackend::open_path(path)
            .map_err(|e| open_error(path, e))?
            .with_persistence(Persistence::CacheFlush);
        Ok(Pool { backend: Arc::new(backend) })
    }

    /// A new anonymous memfd pool of `size` bytes (volatile; for tests and benchmarks).
    pub fn memfd(size: u64) -> Result<Pool> {
        let backend =
            MappedBackend::create_memfd("ferrodax-pool", size).map_err(|e| Error::os("memfd_create", e))?;
        Ok(Pool { backend: Arc::new(backend) })
    }

    /// A pool over any backend (recording backends in crash tests, for example).
    pub fn from_backend(backend: SharedBackend) -> Pool {
        Pool { backend }
    }

    /// The backend.
    pub fn backend(&self) -> &SharedBackend {
        &self.backend
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.backend.len()
    }

    /// Always false.
    pub fn is_empty(&self) -> bool {
        self.backend.is_empty()
    }
}

/// A pool that could not be opened: a refused lock is EBUSY with the holder named; the rest are
/// the host's errors.
fn open_error(path: &Path, e: io::Error) -> Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        Error::Busy(e.to_string())
    } else if e.kind() == io::ErrorKind::InvalidInput && e.raw_os_error().is_none() {
        // The backend's own refusals (a size larger than the device, a mapping the device does
        // not accept) carry their reason in the message.
        Error::Invalid(e.to_string())
    } else {
        Error::os(path.display(), e)
    }
}

/// The direct mounts of this process, for [`watch_action_optional_machine_checks`].
fn live_mounts() -> &'static std::sync::Mutex<Vec<std::sync::Weak<Shared>>> {
    static MOUNTS: std::sync::OnceLock<std::sync::Mutex<Vec<std::sync::Weak<Shared>>>> =
        std::sync::OnceLock::new();
    MOUNTS.get_or_init(Default::default)
}

/// Set by [`expect_short_life`]: mounts start no machine-check listener thread unless early kill
/// is in effect.
static SHORT_LIFE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Tells the library that this process runs one command and exits (the `ferrodax` CLI does, for
/// every command but the long-running ones). Its direct mounts then start no thread to record
/// action-optional machine checks unless early kill is in effect when they mount: without early
/// kill the kernel sends none. One that arrives anyway (early kill turned on later) waits in the
/// report pipe and is recorded at the process's next file-system call (unmount included), on the
/// calling thread, before that call takes its lock.
pub fn expect_short_life() {
    SHORT_LIFE.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether the kernel may send this process action-optional machine checks now: its early-kill
/// policy (prctl `PR_MCE_KILL`) is early, or it follows the system's and
/// `/proc/sys/vm/memory_failure_early_kill` is not 0 (a kernel without memory-failure support has
/// no such file and sends none).
fn early_kill_in_effect() -> bool {
    // SAFETY: PR_MCE_KILL_GET reads this process's policy; the unused arguments must be zero.
    match unsafe { libc::prctl(libc::PR_MCE_KILL_GET, 0, 0, 0, 0) } {
        libc::PR_MCE_KILL_EARLY => true,
        libc::PR_MCE_KILL_DEFAULT => {
            std::fs::read("/proc/sys/vm/memory_failure_early_kill").is_ok_and(|v| v.trim_ascii() != b"0")
        }
        _ => false,
    }
}

/// The read end (non-blocking) of the pipe the SIGBUS handler reports action-optional machine
/// checks at pool addresses into, made once per process with the first direct mount; `None` when
/// no pipe could be made (the signal is then forwarded, as without ferrodax).
fn machine_check_pipe() -> Option<i32> {
    static PIPE: std::sync::OnceLock<Option<i32>> = std::sync::OnceLock::new();
    *PIPE.get_or_init(|| {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 fills two descriptors that this process then owns for its whole life.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return None;
        }
        // Only the read end is non-blocking: the handler's 16-byte writes stay atomic and whole.
        // SAFETY: fcntl on the descriptor just made.
        unsafe { libc::fcntl(fds[0], libc::F_SETFL, libc::O_NONBLOCK) };
        crate::pool::mcsafe::report_action_optional_to(fds[1]);
        Some(fds[0])
    })
}

/// Records every report waiting in the pipe (see [`record_machine_check_at`]).
fn drain_machine_check_reports(read_end: i32) {
    loop {
        let mut bytes = [0u8; 16];
        // SAFETY: read(2) into a stack buffer from the pipe's read end, which lives as long as
        // the process.
        let n = unsafe { libc::read(read_end, bytes.as_mut_ptr().cast(), 16) };
        if n == 16 {
            let addr = u64::from_ne_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
            let lsb = u64::from_ne_bytes(bytes[8..].try_into().expect("8 bytes")) as u32;
            record_machine_check_at(addr, lsb);
        } else if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        } else {
            // Empty (EAGAIN); reports are written whole, 16 bytes at a time.
            return;
        }
    }
}

/// Records the reports an action-optional machine check left in the pipe, when no listener thread
/// took them (a short-lived process, [`expect_short_life`]). Called before a file-system call
/// takes its lock; a thread that holds a ferrodax lock leaves them for its next call.
fn record_waiting_machine_checks() {
    if !fault::holds_lock() && crate::pool::mcsafe::take_action_optional_pending() {
        if let Some(read_end) = machine_check_pipe() {
            drain_machine_check_reports(read_end);
        }
    }
}

/// Registers a direct mount so that an action-optional machine check the kernel sends for one of
/// its pool addresses (early kill: bad memory found, not yet consumed) becomes a memory failure
/// of that block. The SIGBUS handler cannot take the file system's lock: it writes the address
/// into a pipe, and one thread of this process, started with the first mount, records it (in a
/// short-lived process, only if early kill is in effect; otherwise the next file-system call does:
/// [`expect_short_life`]).
fn watch_action_optional_machine_checks(shared: &Arc<Shared>) {
    static LISTENER: std::sync::Once = std::sync::Once::new();
    {
        let mut mounts = live_mounts().lock().unwrap_or_else(|e| e.into_inner());
        mounts.retain(|m| m.strong_count() > 0);
        mounts.push(Arc::downgrade(shared));
    }
    let Some(read_end) = machine_check_pipe() else { return };
    if LISTENER.is_completed()
        || (SHORT_LIFE.load(std::sync::atomic::Ordering::Relaxed) && !early_kill_in_effect())
    {
        return;
    }
    LISTENER.call_once(|| {
        let listen = move || loop {
            let mut waiting = libc::pollfd { fd: read_end, events: libc::POLLIN, revents: 0 };
            // SAFETY: poll(2) on one descriptor described by a stack pollfd.
            let rc = unsafe { libc::poll(&mut waiting, 1, -1) };
            if rc < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                return;
            }
            crate::pool::mcsafe::take_action_optional_pending();
            drain_machine_check_reports(read_end);
        };
        // Without the thread, the reports wait for the next call (`record_waiting_machine_checks`).
        let _ = std::thread::Builder::new().name("ferrodax-mce".into()).spawn(listen);
    });
}

/// Records the memory failure the kernel reported at `addr` (granule `2^lsb` bytes) in whichever
/// direct mount maps it. A page-sized granule names the bad page. A larger one (a device-dax
/// mapping entry: 2 MiB) only says "somewhere in here": every page of it is probed with a
/// machine-check-safe read, and the pages that fail are recorded; if none fails (the poison cannot
/// be seen by a load), nothing is recorded and a line says so, rather than quarantining 2 MiB
/// (superblocks and log included) on a guess.
fn record_machine_check_at(addr: usize, lsb: u32) {
    let mounts: Vec<Arc<Shared>> =
        live_mounts().lock().unwrap_or_else(|e| e.into_inner()).iter().filter_map(|m| m.upgrade()).collect();
    for shared in mounts {
        let (base, len) = {
            let guard = shared.fs.read().unwrap_or_else(|e| e.into_inner());
            (guard.fs.backend().base() as usize, guard.fs.backend().len() as usize)
        };
        if addr >= base && addr < base + len {
            let fs = Fs { kind: FsKind::Local(shared) };
            let offset = (addr - base) as u64;
            let granule = 1u64 << lsb.clamp(12, 30);
            let bad: Vec<u64> = if granule <= BLOCK_SIZE {
                vec![offset / BLOCK_SIZE * BLOCK_SIZE]
            } else {
                let start = offset / granule * granule;
                let end = (start + granule).min(len as u64);
                let backend = fs.backend();
                let mut page = vec![0u8; BLOCK_SIZE as usize];
                (start..end)
                    .step_by(BLOCK_SIZE as usize)
                    .filter(|&at| crate::pool::read_into(backend.as_ref(), at, &mut page).is_err())
                    .collect()
            };
            if bad.is_empty() {
                eprintln!(
                    "ferrodax: action-optional machine check in pool [{offset:#x}, +{granule:#x}): no page there fails a read; nothing recorded"
                );
            }
            for at in bad {
                match fs.memory_failure(at, 1, FailureFlags::default()) {
                    Ok(_) => eprintln!("ferrodax: action-optional machine check at pool offset {at:#x}: recorded as a memory failure"),
                    Err(e) => eprintln!("ferrodax: action-optional machine check at pool offset {at:#x}: {e}"),
                }
            }
            return;
        }
    }
}

/// The file system and the views of its files, behind one lock.
pub struct Mounted {
    /// The file system.
    pub fs: FileSystem,
    /// Live DAX views.
    pub dax: DaxLayer,
}

struct Shared {
    /// The file system lock: shared for reads and in-place overwrites, exclusive for every
    /// change of the state. Sharded: a shared acquisition touches a cache line of the calling
    /// thread's shard only, so threads of different files do not bounce one line between cores.
    fs: ShardedLock<Mounted>,
    /// Each file's own lock, taken after `fs`'s shared lock by readers (shared) and by in-place
    /// overwrites (exclusive), so a read sees an in-place overwrite of the same file whole or
    /// not at all, and two of them do not interleave. Holders of `fs`'s exclusive lock need none.
    files: FileLocks,
}

/// Per-file locks, striped: file `ino` uses stripe `ino % FILE_LOCK_STRIPES` (each on a cache
/// line of its own, so writers of different files do not share one).
struct FileLocks {
    stripes: Vec<FileLockStripe>,
}

/// How many stripes [`FileLocks`] has: files whose numbers differ by a multiple of it share one.
const FILE_LOCK_STRIPES: u64 = 64;

#[repr(align(128))]
#[derive(Default)]
struct FileLockStripe(RwLock<()>);

impl FileLocks {
    fn new() -> FileLocks {
        FileLocks { stripes: (0..FILE_LOCK_STRIPES).map(|_| FileLockStripe::default()).collect() }
    }

    /// The lock of file `ino`.
    fn of(&self, ino: u64) -> &RwLock<()> {
        &self.stripes[(ino % FILE_LOCK_STRIPES) as usize].0
    }
}

/// Shared access to the mounted file system; dereferences to [`FileSystem`].
pub struct ReadGuard<'a> {
    guard: ShardedLockReadGuard<'a, Mounted>,
    _mark: LockMark,
}

impl ReadGuard<'_> {
    /// The views.
    pub fn dax(&self) -> &DaxLayer {
        &self.guard.dax
    }
}

impl std::ops::Deref for ReadGuard<'_> {
    type Target = FileSystem;
    fn deref(&self) -> &FileSystem {
        &self.guard.fs
    }
}

/// Exclusive access; dereferences to [`FileSystem`]. When dropped, it brings every view in line
/// with the layout changes made through it, before the lock is released.
pub struct WriteGuard<'a> {
    guard: ShardedLockWriteGuard<'a, Mounted>,
    _mark: LockMark,
}

impl WriteGuard<'_> {
    fn mounted(&mut self) -> &mut Mounted {
        &mut self.guard
    }

    /// Write-protects the views' pages of bytes `[offset, offset + len)` of `ino` until the views
    /// are brought in line again (at the latest when the guard is dropped); see
    /// [`DaxLayer::write_protect`].
    fn write_protect(&mut self, ino: u64, offset: u64, len: u64) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let first = offset / BLOCK_SIZE;
        let end = offset.saturating_add(len).div_ceil(BLOCK_SIZE);
        self.mounted().dax.write_protect(ino, first, end - first)
    }

    /// Makes file block `file_block` of `ino` private for a store through a view: a shared block
    /// that no view shows at any other file block stays with `ino` (the faulting page then only
    /// changes protection) and its other owners take the copy; see
    /// [`FileSystem::make_block_private_for_store`].
    fn make_block_private_for_store(&mut self, ino: u64, file_block: u64) -> Result<()> {
        let m = &mut *self.guard;
        let dax = &m.dax;
        let made = m.fs.make_block_private_for_store(ino, file_block, |block| {
            dax.shown_only_at(block, ino, file_block)
        })?;
        if let MadePrivate::KeptBlock { block } = made {
            // No layout change was recorded for this: the views of this file page turn writable.
            m.dax.show_kept_block(&m.fs, ino, file_block, block)?;
        }
        Ok(())
    }

    /// Applies pending layout changes to the views now. The file system records layout changes
    /// only while some view exists (nobody else reads them).
    fn sync_views(&mut self) -> Result<()> {
        let m = &mut *self.guard;
        let applied = m.dax.apply_changes(&m.fs, m.fs.layout_changes());
        m.fs.clear_layout_changes();
        m.fs.set_layout_tracking(m.dax.view_count() > 0);
        applied
    }
}

impl std::ops::Deref for WriteGuard<'_> {
    type Target = FileSystem;
    fn deref(&self) -> &FileSystem {
        &self.guard.fs
    }
}

impl std::ops::DerefMut for WriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut FileSystem {
        &mut self.guard.fs
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.sync_views() {
            // Re-pointing failed (the kernel refused a mapping, e.g. too many mappings). check()
            // reports the view as out of line; nothing durable is affected.
            eprintln!("ferrodax: could not update views after a layout change: {e}");
        }
    }
}

/// A mounted file system, cheap to clone and safe to share between threads: a direct mount of a
/// pool, or a connection to the pool server that owns it ([`Fs::connect`]).
#[derive(Clone)]
pub struct Fs {
    kind: FsKind,
}

#[derive(Clone)]
enum FsKind {
    /// This process owns the pool.
    Local(Arc<Shared>),
    /// A pool server owns it; calls go over its socket.
    Remote(Arc<Client>),
}

/// Options for [`Fs::open`], like `std::fs::OpenOptions`.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    create: bool,
    create_new: bool,
    truncate: bool,
    mode: u32,
    no_follow: bool,
    in_place: bool,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenOptions {
    /// All options off; mode 0o644.
    pub fn new() -> Self {
        Self {
            read: false,
            write: false,
            append: false,
            create: false,
            create_new: false,
            truncate: false,
            mode: 0o644,
            no_follow: false,
            in_place: false,
        }
    }
    /// Overwrites through this handle store in place into blocks the file owns alone, instead
    /// of copy-on-write: atomic per 8-byte word, like a kernel DAX write (a crash may leave such
    /// a write partly done), and run beside writers of other files instead of one at a time.
    /// Such an overwrite records nothing while the file's recorded modification and change
    /// times are within [`crate::fs::inplace::IN_PLACE_TIME_LAG_NS`] of it (the times may lag
    /// the write by up to that much); otherwise it records the new times. Writes that allocate,
    /// grow the file or meet shared or poisoned blocks stay copy-on-write there. For
    /// applications that keep their own log of what they overwrite (databases).
    pub fn in_place(&mut self, on: bool) -> &mut Self {
        self.in_place = on;
        self
    }
    /// Fail with ELOOP when the path's last component is a symlink (O_NOFOLLOW).
    pub fn no_follow(&mut self, on: bool) -> &mut Self {
        self.no_follow = on;
        self
    }
    /// Open for reading.
    pub fn read(&mut self, on: bool) -> &mut Self {
        self.read = on;
        self
    }
    /// Open for writing.
    pub fn write(&mut self, on: bool) -> &mut Self {
        self.write = on;
        self
    }
    /// Every write goes to the end of the file (O_APPEND); implies write.
    pub fn append(&mut self, on: bool) -> &mut Self {
        self.append = on;
        self
    }
    /// Create the file if it does not exist.
    pub fn create(&mut self, on: bool) -> &mut Self {
        self.create = on;
        self
    }
    /// Create the file; fail with EEXIST if it exists.
    pub fn create_new(&mut self, on: bool) -> &mut Self {
        self.create_new = on;
        self
    }
    /// Truncate the file to 0 bytes on open.
    pub fn truncate(&mut self, on: bool) -> &mut Self {
        self.truncate = on;
        self
    }
    /// Permission bits for a created file.
    pub fn mode(&mut self, mode: u32) -> &mut Self {
        self.mode = mode;
        self
    }
    fn access(&self) -> HandleAccess {
        HandleAccess { read: self.read, write: self.write || self.append, append: self.append }
    }
}

/// Per-destination outcome of [`Fs::dedupe`], as FIDEDUPERANGE reports it.
#[derive(Debug)]
pub enum DedupeStatus {
    /// FILE_DEDUPE_RANGE_SAME: the ranges now share blocks.
    Same {
        /// bytes_deduped as the kernel reports it (the requested length, capped at 1 GiB).
        bytes_deduped: u64,
    },
    /// FILE_DEDUPE_RANGE_DIFFERS: contents differ; nothing changed.
    Differs,
    /// This destination failed with an errno (EBADF, EINVAL, EPERM, EXDEV, EISDIR, EIO, ...).
    Failed(Error),
}

/// The periodic sync of group commit ([`Fs::sync_periodically`]): dropping it stops the thread
/// and waits for it.
pub struct PeriodicSync {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for PeriodicSync {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One destination of a dedupe call.
pub struct DedupeTarget<'a> {
    /// The destination file.
    pub file: &'a File,
    /// Offset in it.
    pub offset: u64,
}

impl Fs {
    fn wrap(fs: FileSystem) -> Fs {
        // No view yet: layout changes are recorded from the first view on (`sync_views`).
        let mut fs = fs;
        fs.set_layout_tracking(false);
        let shared = Arc::new(Shared {
            fs: ShardedLock::new(Mounted { fs, dax: DaxLayer::new() }),
            files: FileLocks::new(),
        });
        watch_action_optional_machine_checks(&shared);
        Fs { kind: FsKind::Local(shared) }
    }

    /// Connects to the pool server listening at `socket` (`ferrodax serve POOL`): the same API as
    /// a direct mount, for any number of processes at once. Views place the pool's pages in this
    /// process (the server sends the pool's descriptor when this process may read the pool file);
    /// data read with `read_at` and written with `write_at` crosses the socket. When the server
    /// goes away, every call fails with ENOTCONN and every view's pages raise SIGBUS.
    pub fn connect(socket: impl AsRef<Path>) -> Result<Fs> {
        Ok(Fs { kind: FsKind::Remote(Arc::new(Client::connect(socket.as_ref())?)) })
    }

    /// True when this `Fs` is a connection to a pool server rather than a direct mount.
    pub fn is_connected(&self) -> bool {
        matches!(self.kind, FsKind::Remote(_))
    }

    /// The server connection, for a connected `Fs`.
    fn remote(&self) -> Option<&Client> {
        match &self.kind {
            FsKind::Remote(c) => Some(c),
            FsKind::Local(_) => None,
        }
    }

    /// The direct mount's state.
    ///
    /// # Panics
    /// On a connected `Fs`: the state lives in the server.
    fn local(&self) -> &Arc<Shared> {
        match &self.kind {
            FsKind::Local(shared) => shared,
            FsKind::Remote(c) => panic!(
                "the file system state lives in the pool server at {}; only a direct mount can lock it",
                c.socket().display()
            ),
        }
    }

    /// Makes a new, empty file system on `pool` (mkfs) and mounts it.
    pub fn format(pool: &Pool) -> Result<Fs> {
        Ok(Self::wrap(FileSystem::format(pool.backend.clone())?))
    }

    /// Mounts the file system on `pool`. When the pool sits on persistent memory that keeps a
    /// bad-block list (a pool file on a DAX file system over /dev/pmemN, or a /dev/dax instance
    /// of a pmem region), the device's list is imported at once ([`Fs::import_device_badblocks`]).
    pub fn mount(pool: &Pool) -> Result<Fs> {
        let fs = Self::wrap(FileSystem::mount(pool.backend.clone(), false)?);
        fs.import_device_badblocks()?;
        Ok(fs)
    }

    /// Records as memory failures the bad ranges of the device the pool sits on, read from its
    /// sysfs bad-block list (sectors translated into pool offsets: through the pool file's
    /// FIEMAP extents and its partition's start, or past a /dev/dax instance's offset in its
    /// region); blocks already recorded are skipped. A no-op (an empty list) for a pool that is
    /// not on such a device, and for a connected `Fs` (the server's mount imported it).
    pub fn import_device_badblocks(&self) -> Result<Vec<FailureReport>> {
        let FsKind::Local(shared) = &self.kind else { return Ok(Vec::new()) };
        let (backend, pool_len) = {
            let guard = shared.fs.read().unwrap_or_else(|e| e.into_inner());
            (guard.fs.backend().clone(), guard.fs.total_blocks() * BLOCK_SIZE)
        };
        // Finding the device is best effort: a pool whose device cannot be examined mounts as one
        // that is not on pmem.
        let Ok(Some((_, ranges))) = crate::memfail::hardware::device_bad_ranges(backend.as_ref(), pool_len)
        else {
            return Ok(Vec::new());
        };
        let mut reports = Vec::new();
        let bad = self.read_whole()?.bad_blocks();
        for r in ranges {
            let (first, count) = r.blocks();
            let known = (first..first + count).all(|b| bad.iter().any(|&(s, n)| (s..s + n).contains(&b)));
            if !known {
                reports.push(self.memory_failure(r.offset, r.len, FailureFlags::default())?);
            }
        }
        Ok(reports)
    }

    /// Mounts without writing anything (fsck, inspection); changes fail with EROFS.
    pub fn mount_read_only(pool: &Pool) -> Result<Fs> {
        Ok(Self::wrap(FileSystem::mount(pool.backend.clone(), true)?))
    }

    /// [`Fs::mount_read_only`], reading inodes from the checkpoint only as they are needed: for a
    /// process that opens a file or two of a large pool and reads them. Opening a file, and
    /// `metadata`, `symlink_metadata`, `read_link`, `access`, `get_xattr` and `list_xattrs` of a
    /// path, read the inodes of the path; `read_dir` those and every entry's inode too; reading,
    /// `metadata`, `find` (seek) and closing an open
    /// file read nothing more. Every other call reads the whole state first, as `mount_read_only` would
    /// have at mount, and fails with the damage that finds (EUCLEAN). A pool of an older format,
    /// with records in its log or with anything a mount would repair or note is mounted whole
    /// right away. See `fs/lazy.rs`.
    pub fn mount_read_only_lazy(pool: &Pool) -> Result<Fs> {
        Ok(Self::wrap(FileSystem::mount_lazy(pool.backend.clone())?))
    }

    /// Mounts a damaged pool that does not mount normally, read-only, keeping whatever is readable:
    /// every file reachable from what survives of the checkpoint and the log, files whose place in
    /// the tree was lost under `/lost+found/ino-N`. [`MountNotes::lost`](crate::fs::journal::MountNotes)
    /// (through `read_lock().mount_notes()`) says what could not be recovered. For copying files
    /// out (`ferrodax salvage`); changes fail with EROFS.
    pub fn mount_salvage(pool: &Pool) -> Result<Fs> {
        Ok(Self::wrap(FileSystem::mount_salvage(pool.backend.clone())?))
    }

    /// Rebuilds a damaged pool in place from what a salvage mount reads (`ferrodax check
    /// --repair` when a normal mount fails): the salvaged state is written as a new checkpoint in
    /// both chains and both log copies start over. Returns the salvage's notes: what was lost and
    /// what was moved or renamed. The pool must not be mounted elsewhere.
    pub fn repair(pool: &Pool) -> Result<crate::fs::journal::MountNotes> {
        FileSystem::repair(pool.backend.clone())
    }

    /// On a lazy mount ([`Fs::mount_read_only_lazy`]) that has not read its whole state: how
    /// many inodes it has read so far. `None` on any other mount, and through a pool server.
    pub fn lazy_inodes_read(&self) -> Option<usize> {
        if self.is_connected() {
            return None;
        }
        let guard = self.read_as_loaded();
        guard.is_partial().then(|| guard.state().inodes.len())
    }

    /// Locks the file system for reading (for tools and tests that need the raw state). On a lazy
    /// mount ([`Fs::mount_read_only_lazy`]) the whole state is read first; when that finds damage,
    /// the guard shows the inodes read so far, and the next call that can fail says why.
    ///
    /// # Panics
    /// On a connected `Fs` ([`Fs::connect`]): the state lives in the server.
    pub fn read_lock(&self) -> ReadGuard<'_> {
        self.read_whole().unwrap_or_else(|_| self.read_as_loaded())
    }

    /// Exclusive access to the file system, for tools and tests that drive it directly; views are
    /// brought in line with any layout change when the guard drops. On a lazy mount the whole
    /// state is read first, as [`Fs::read_lock`] does.
    ///
    /// # Panics
    /// On a connected `Fs` ([`Fs::connect`]): the state lives in the server.
    pub fn exclusive(&self) -> WriteGuard<'_> {
        self.write_lock()
    }

    /// [`Fs::exclusive`].
    pub(crate) fn write_lock(&self) -> WriteGuard<'_> {
        self.write_whole().unwrap_or_else(|_| self.write_as_loaded())
    }

    /// Shared access to the whole state: a lazy mount reads it first (EUCLEAN naming the damage
    /// when that fails; see `fs/lazy.rs`).
    fn read_whole(&self) -> Result<ReadGuard<'_>> {
        let guard = self.read_as_loaded();
        if !guard.is_partial() {
            return Ok(guard);
        }
        drop(guard);
        self.write_as_loaded().read_whole()?;
        Ok(self.read_as_loaded())
    }

    /// Shared access to a state that holds every inode resolving `path` touches: on a lazy mount
    /// they are read first, and nothing else (see `FileSystem::read_path`). For the calls that
    /// look at one path and the inode it names.
    pub(crate) fn read_for_path(&self, path: &str) -> Result<ReadGuard<'_>> {
        self.read_first(|fs| fs.read_path(path))
    }

    /// [`Fs::read_for_path`], for listing the directory at `path`: on a lazy mount its entries
    /// and the inodes they name are read too (`FileSystem::read_listing`).
    fn read_for_listing(&self, path: &str) -> Result<ReadGuard<'_>> {
        self.read_first(|fs| fs.read_listing(path))
    }

    /// Shared access to the state once `read` has read what a call needs into a lazy mount's
    /// partial state (under the exclusive lock); on any other mount, at once.
    fn read_first(&self, read: impl FnOnce(&mut FileSystem) -> Result<()>) -> Result<ReadGuard<'_>> {
        let guard = self.read_as_loaded();
        if !guard.is_partial() {
            return Ok(guard);
        }
        drop(guard);
        read(&mut self.write_as_loaded())?;
        // Whatever another thread did meanwhile only read more (a path, or the whole state).
        Ok(self.read_as_loaded())
    }

    /// Exclusive access to the whole state (see [`Fs::read_whole`]).
    fn write_whole(&self) -> Result<WriteGuard<'_>> {
        let mut guard = self.write_as_loaded();
        guard.read_whole()?;
        Ok(guard)
    }

    /// Shared access to the state as it is: on a lazy mount, only the inodes read so far. For the
    /// operations that need no other inode than those (reads, stat and seek of an open file).
    fn read_as_loaded(&self) -> ReadGuard<'_> {
        record_waiting_machine_checks();
        let mark = LockMark::new();
        ReadGuard { guard: self.local().fs.read().unwrap_or_else(|e| e.into_inner()), _mark: mark }
    }

    /// Exclusive access to the state as it is (see [`Fs::read_as_loaded`]): for opening a file,
    /// which reads its path's inodes first, and for closing one.
    fn write_as_loaded(&self) -> WriteGuard<'_> {
        record_waiting_machine_checks();
        let mark = LockMark::new();
        WriteGuard { guard: self.local().fs.write().unwrap_or_else(|e| e.into_inner()), _mark: mark }
    }

    fn same_pool(&self, other: &Fs) -> bool {
        match (&self.kind, &other.kind) {
            (FsKind::Local(a), FsKind::Local(b)) => Arc::ptr_eq(a, b),
            (FsKind::Remote(a), FsKind::Remote(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    /// Sends `op` to the server and unpacks the answer with `pick`.
    fn ask<T>(client: &Client, op: Op, pick: impl FnOnce(Answer) -> Option<T>) -> Result<T> {
        let (answer, _) = client.call(op, &[])?;
        let text = format!("{answer:?}");
        pick(answer).ok_or_else(|| Error::Io(format!("pool server sent an unexpected answer: {text}")))
    }

    /// Opens (and maybe creates) a file, like `std::fs::OpenOptions::open`.
    pub fn open(&self, path: &str, options: &OpenOptions) -> Result<File> {
        let access = options.access();
        if !access.read && !access.write {
            return Err(Error::Invalid(format!("{path}: open needs read, write or append")));
        }
        if (options.create || options.create_new || options.truncate) && !access.write {
            return Err(Error::Invalid(format!("{path}: create and truncate need write access")));
        }
        if let Some(c) = self.remote() {
            let spec = OpenSpec {
                read: options.read,
                write: options.write,
                append: options.append,
                create: options.create,
                create_new: options.create_new,
                truncate: options.truncate,
                mode: options.mode,
                no_follow: options.no_follow,
                in_place: options.in_place,
            };
            let op = Op::Open { path: path.to_string(), options: spec };
            let (handle, ino, access) = Self::ask(c, op, |a| match a {
                Answer::Opened { handle, ino, access } => Some((handle, ino, access)),
                _ => None,
            })?;
            return Ok(File { fs: self.clone(), ino, pos: 0, access, handle, in_place: options.in_place });
        }
        let intent = OpenIntent {
            read: access.read,
            write: access.write,
            create: options.create || options.create_new,
            exclusive: options.create_new,
            truncate: options.truncate,
            mode: options.mode,
            no_follow: options.no_follow,
        };
        // A lazy mount reads the inodes of the path, and no other (`fs/lazy.rs`).
        let mut fs = self.write_as_loaded();
        fs.read_path(path)?;
        let ino = fs.open_path(path, &intent)?;
        fs.open_ref(ino);
        drop(fs);
        Ok(File { fs: self.clone(), ino, pos: 0, access, handle: 0, in_place: options.in_place })
    }

    /// Creates a directory, mode 0755 (EEXIST if the name exists).
    pub fn create_dir(&self, path: &str) -> Result<()> {
        self.create_dir_with_mode(path, 0o755)
    }

    /// Creates a directory with permission bits `mode` (`mkdir(2)`, the umask already applied).
    pub fn create_dir_with_mode(&self, path: &str, mode: u32) -> Result<()> {
        if let Some(c) = self.remote() {
            return c.call_unit(Op::CreateDir { path: path.into(), mode });
        }
        self.write_whole()?.mkdir(path, mode).map(|_| ())
    }

    /// Removes an empty directory.
    pub fn remove_dir(&self, path: &str) -> Result<()> {
        if let Some(c) = self.remote() {
            return c.call_unit(Op::RemoveDir { path: path.into() });
        }
        self.write_whole()?.rmdir(path)
    }

    /// Removes a file's name (unlink).
    pub fn remove_file(&self, path: &str) -> Result<()> {
        if let Some(c) = self.remote() {
            return c.call_unit(Op::RemoveFile { path: path.into() });
        }
        self.write_whole()?.unlink(path)
    }

    /// Renames, replacing a compatible target.
    pub fn rename(&self, from: &str, to: &str) -> Result<()> {
        if let Some(c) = self.remote() {
            return c.call_unit(Op::Rename { from: from.into(), to: to.into() });
        }
        self.write_whole()?.rename(from, to)
    }

    /// Lists a directory.
    pub fn read_dir(&self, path: &str) -> Result<Vec<DirEntry>> {
        if let Some(c) = self.remote() {
            return Self::ask(c, Op::ReadDir { path: path.into() }, |a| match a {
                Answer::Entries(e) => Some(e),
                _ => None,
            });
        }
        self.read_for_listing(path)?.read_dir(path)
    }

    /// Attributes of the object at `path`.
    pub fn metadata(&self, path: &str) -> Result<Stat> {
        if let Some(c) = self.remote() {
            return Self::ask(c, Op::Metadata { path: path.into() }, |a| match a {
                Answer::Stat(s) => Some(s),
                _ => None,
            });
        }
        let fs = self.read_for_path(path)?;
        let ino = fs.resolve(path)?;
        fs.stat(ino)
    }

    /// FICLONERANGE: shares `len` bytes (0 = to source EOF) of `src` at `src_off` into `dst` at
    /// `dst_off`. Returns the bytes linked.
    pub fn reflink(&self, src: &File, src_off: u64, dst: &File, dst_off: u64, len: u64) -> Result<u64> {
        if !self.same_pool(&src.fs) || !self.same_pool(&dst.fs) {
            return Err(Error::CrossPool("reflink between different pools".into()));
        }
        if let Some(c) = self.remote() {
            let op = Op::Reflink { src: src.handle, src_off, dst: dst.handle, dst_off, len };
            return Self::ask(c, op, |a| match a {
                Answer::Count(n) => Some(n),
                _ => None,
            });
        }
        self.write_whole()?.reflink(src.handle(), src_off, dst.handle(), dst_off, len)
    }

    /// FIDEDUPERANGE: for each destination, shares the range with the source if the contents are
    /// equal. Request-level errors fail the call; the rest become per-destination statuses.
    pub fn dedupe(
        &self,
        src: &File,
        src_off: u64,
        len: u64,
        targets: &[DedupeTarget<'_>],
    ) -> Result<Vec<DedupeStatus>> {
        if !self.same_pool(&src.fs) {
            return Err(Error::CrossPool("dedupe source is in another pool".into()));
        }
        if !src.access.read {
            // vfs_dedupe_file_range: EINVAL (not EBADF) for a source not open for reading.
            return Err(Error::Invalid("dedupe source is not open for reading".into()));
        }
        if let Some(c) = self.remote() {
            return self.dedupe_remote(c, src, src_off, len, targets);
        }
        let mut fs = self.write_whole()?;
        let len = fs.dedupe_source_checks(src.ino, src_off, len)?;
        let mut out = Vec::with_capacity(targets.len());
        for t in targets {
            // vfs_dedupe_file_range_one: remap_verify_area before the EXDEV check.
            if t.offset > i64::MAX as u64 || t.offset.checked_add(len).is_none_or(|e| e > i64::MAX as u64) {
                out.push(DedupeStatus::Failed(Error::Invalid(format!(
                    "dedupe destination range [{}, +{len}) out of range",
                    t.offset
                ))));
                continue;
            }
            if !self.same_pool(&t.file.fs) {
                out.push(DedupeStatus::Failed(Error::CrossPool(
                    "dedupe destination is in another pool".into(),
                )));
                continue;
            }
            // A store through a view must not land between the compare and the remap.
            let protected = fs
                .write_protect(src.ino, src_off, len)
                .and_then(|()| fs.write_protect(t.file.ino, t.offset, len));
            if let Err(e) = protected {
                out.push(DedupeStatus::Failed(e));
                continue;
            }
            out.push(match fs.dedupe_one(src.ino, src_off, t.file.ino, t.offset, len) {
                Ok(DedupeOutcome::Same(bytes)) => DedupeStatus::Same { bytes_deduped: bytes },
                Ok(DedupeOutcome::Differs) => DedupeStatus::Differs,
                Err(e) => DedupeStatus::Failed(e),
            });
        }
        drop(fs);
        // A compare that met bad memory: recorded now, that destination fails with EIO.
        for status in &mut out {
            if let DedupeStatus::Failed(Error::MediaError { pool_offset }) = *status {
                *status = DedupeStatus::Failed(self.record_media_error(pool_offset));
            }
        }
        Ok(out)
    }

    /// [`Fs::dedupe`] through the server: destinations in another pool fail here, the rest there.
    fn dedupe_remote(
        &self,
        c: &Client,
        src: &File,
        src_off: u64,
        len: u64,
        targets: &[DedupeTarget<'_>],
    ) -> Result<Vec<DedupeStatus>> {
        let sent: Vec<(u64, u64)> = targets
            .iter()
            .filter(|t| self.same_pool(&t.file.fs))
            .map(|t| (t.file.handle, t.offset))
            .collect();
        let op = Op::Dedupe { src: src.handle, src_off, len, targets: sent };
        let mut answers = Self::ask(c, op, |a| match a {
            Answer::Dedupe(d) => Some(d),
            _ => None,
        })?
        .into_iter();
        let mut out = Vec::with_capacity(targets.len());
        for t in targets {
            if !self.same_pool(&t.file.fs) {
                out.push(DedupeStatus::Failed(Error::CrossPool(
                    "dedupe destination is in another pool".into(),
                )));
                continue;
            }
            out.push(match answers.next() {
                Some(WireDedupe::Same { bytes_deduped }) => DedupeStatus::Same { bytes_deduped },
                Some(WireDedupe::Differs) => DedupeStatus::Differs,
                Some(WireDedupe::Failed(e)) => DedupeStatus::Failed(e.into()),
                None => {
                    return Err(Error::Io("pool server answered fewer dedupe destinations than asked".into()))
                }
            });
        }
        Ok(out)
    }

    /// Rewrites the shared blocks of a range into private ones (FALLOC_FL_UNSHARE_RANGE).
    pub fn unshare(&self, file: &File, offset: u64, len: u64) -> Result<()> {
        // vfs_fallocate: a negative offset or a length <= 0 is EINVAL before the EBADF check.
        if offset > i64::MAX as u64 || len == 0 || len > i64::MAX as u64 {
            return Err(Error::Invalid(format!("unshare of [{offset}, +{len})")));
        }
        if !file.access.write {
            return Err(Error::BadHandle("unshare needs a writable handle".into()));
        }
        if let Some(c) = self.remote() {
            return c.call_unit(Op::Unshare { handle: file.handle, offset, len });
        }
        let result = self.write_whole()?.unshare(file.ino, offset, len);
        self.after_media_error(result)
    }

    /// copy_file_range(2): copies up to `len` bytes of `src` at `src_off` to `dst` at `dst_off`
    /// and returns how many it copied (0 at or past source EOF). As the kernel does for XFS, it
    /// first tries a reflink that may shorten the request (whole blocks, or up to source EOF;
    /// block-aligned offsets), and copies bytes when that links nothing. Errno rules of
    /// `generic_copy_file_checks`, in order: EISDIR, EBADF (source not readable, destination not
    /// writable or append-only), EXDEV (another pool), EOVERFLOW (wrapping ranges), EFBIG, EINVAL
    /// (overlapping ranges of one file, negative offsets). At most [`MAX_RW_COUNT`] bytes a call.
    pub fn copy_file_range(
        &self,
        src: &File,
        src_off: u64,
        dst: &File,
        dst_off: u64,
        len: u64,
    ) -> Result<u64> {
        if !self.same_pool(&src.fs) || !self.same_pool(&dst.fs) || !src.fs.same_pool(&dst.fs) {
            // generic_file_rw_checks comes before the EXDEV check.
            let (s, d) = (src.metadata()?, dst.metadata()?);
            if s.kind == InodeKind::Dir || d.kind == InodeKind::Dir {
                return Err(Error::IsDir("copy_file_range of a directory".into()));
            }
            if !src.access.read || !dst.access.write || dst.access.append {
                return Err(Error::BadHandle(
                    "copy_file_range needs a readable source and a writable, non-append destination".into(),
                ));
            }
            return Err(Error::CrossPool("copy_file_range between different pools".into()));
        }
        if let Some(c) = self.remote() {
            let op = Op::CopyFileRange { src: src.handle, src_off, dst: dst.handle, dst_off, len };
            return Self::ask(c, op, |a| match a {
                Answer::Count(n) => Some(n),
                _ => None,
            });
        }
        let count =
            self.read_whole()?.copy_file_range_checks(src.handle(), src_off, dst.handle(), dst_off, len)?;
        if count == 0 {
            return Ok(0);
        }
        let count = count.min(MAX_RW_COUNT);
        let linked = {
            let mut fs = self.write_whole()?;
            fs.reflink_shortening(src.handle(), src_off, dst.handle(), dst_off, count)
        };
        match linked {
            Ok(n) if n > 0 => return Ok(n),
            // Bad memory met on the way is recorded; the byte copy below then meets the poison.
            Err(e @ Error::MediaError { .. }) => {
                let _ = self.after_media_error::<()>(Err(e));
            }
            _ => {}
        }
        copy_bytes(src, src_off, dst, dst_off, count)
    }

    /// Every owner of any byte of `[pool_offset, pool_offset + len)`. Through a server whose
    /// connection is gone: none (the error shows on the next call that can fail).
    pub fn owners(&self, pool_offset: u64, len: u64) -> Vec<BlockOwner> {
        if let Some(c) = self.remote() {
            return Self::ask(c, Op::Owners { pool_offset, len }, |a| match a {
                Answer::Owners(o) => Some(o),
                _ => None,
            })
            .unwrap_or_default();
        }
        self.read_lock().owners(pool_offset, len)
    }

    /// [`Fs::owners`], with the error when a pool server cannot answer.
    pub fn try_owners(&self, pool_offset: u64, len: u64) -> Result<Vec<BlockOwner>> {
        match self.remote() {
            Some(c) => Self::ask(c, Op::Owners { pool_offset, len }, |a| match a {
                Answer::Owners(o) => Some(o),
                _ => None,
            }),
            None => Ok(self.read_whole()?.owners(pool_offset, len)),
        }
    }

    /// The share state of one pool block (free when a pool server cannot answer).
    pub fn share_state(&self, block: u64) -> ShareState {
        if let Some(c) = self.remote() {
            return Self::ask(c, Op::ShareState { block }, |a| match a {
                Answer::ShareState(s) => Some(s),
                _ => None,
            })
            .unwrap_or(ShareState::Free);
        }
        self.read_lock().share_state(block)
    }

    /// A file's extents with shared flags.
    pub fn fiemap(&self, file: &File) -> Result<Vec<FiemapExtent>> {
        if let Some(c) = self.remote() {
            return Self::ask(c, Op::Fiemap { handle: file.handle }, |a| match a {
                Answer::Fiemap(f) => Some(f),
                _ => None,
            });
        }
        self.read_whole()?.fiemap(file.ino)
    }

    /// Runs fsck on the mounted file system, including every view's pages (in every process, for
    /// a pool server) and the page share state. A pool server that cannot answer is a problem.
    pub fn check(&self) -> CheckReport {
        if let Some(c) = self.remote() {
            return Self::ask(c, Op::Check, |a| match a {
                Answer::Check(r) => Some(r),
                _ => None,
            })
            .unwrap_or_else(|e| {
                let mut report = CheckReport::default();
                report.problems.push(crate::fs::check::Problem {
                    structure: "pool server".into(),
                    detail: e.to_string(),
                });
                report
            });
        }
        let guard = match self.read_whole() {
            Ok(guard) => guard,
            // A lazy mount whose whole state does not read: that is the finding.
            Err(e) => {
                let mut report = CheckReport::default();
                report
                    .problems
                    .push(crate::fs::check::Problem { structure: "mount".into(), detail: e.to_string() });
                return report;
            }
        };
        let mut report = guard.check();
        for detail in guard.dax().check(&guard) {
            report.problems.push(crate::fs::check::Problem { structure: "dax views".into(), detail });
        }
        report
    }

    /// Handles the failure of pool bytes `[pool_offset, pool_offset + len)` (SPEC section 5): every
    /// owner from the reverse map, the poison recorded durably (reads of it are EIO until a
    /// whole-block rewrite), metadata moved off it, free blocks quarantined, and every view page
    /// that showed it taken out (an access raises SIGBUS with BUS_MCEERR_AR) before this returns.
    /// Early subscribers of those views get action-optional notices before it returns, called on
    /// this thread after the lock is released; the report's owner paths are looked up after that
    /// (the names as they are then), so a holder is told without waiting for 10,000 sharers to be
    /// named. `flags.accessor` names the view address whose
    /// access consumed the poison (see [`FailureFlags`]). Blocks already bad show in no view, so a
    /// repeated failure reports them as `already_bad` and sends no notice. EIO after a pre-remove.
    pub fn memory_failure(&self, pool_offset: u64, len: u64, flags: FailureFlags) -> Result<FailureReport> {
        if let Some(c) = self.remote() {
            // The accessor's address means something only with its view: name the view.
            let accessor = flags.accessor.and_then(|a| c.view_at(a).map(|v| (v.id, a)));
            let report = Self::ask(c, Op::MemoryFailure { pool_offset, len, accessor }, |a| match a {
                Answer::Failure(r) => Some(r),
                _ => None,
            });
            // Like a direct mount: this process's early subscribers were told before it returns.
            c.wait_for_notices();
            return report;
        }
        let mut guard = self.write_whole()?;
        if guard.is_removed() {
            return Err(Error::Io("memory failure after the pool was removed".into()));
        }
        let m = guard.mounted();
        let (mut report, notices) = crate::memfail::handle(&mut m.fs, &m.dax, pool_offset, len, flags)?;
        guard.sync_views()?;
        drop(guard);
        notices.deliver();
        // The owners' paths for the report, once every holder has been told.
        let guard = self.read_whole()?;
        crate::memfail::name_owners(&guard, &mut report);
        Ok(report)
    }

    /// Pre-remove (SPEC section 5 step 7): the pool is going away. Every view is written back and
    /// invalidated (each page raises SIGBUS BUS_MCEERR_AR from now on), every subscriber, early or
    /// not, gets action-optional notices for the pool blocks its view showed (after the lock is
    /// released), a final checkpoint is written (unless mounted read-only), and the file system is
    /// unmounted: afterwards every operation on it fails with EIO, as on a shut-down file system;
    /// dropping handles and mappings still works. A second pre-remove is EIO.
    pub fn pre_remove(&self) -> Result<PreRemoveReport> {
        if let Some(c) = self.remote() {
            let report = Self::ask(c, Op::PreRemove, |a| match a {
                Answer::PreRemove(r) => Some(r),
                _ => None,
            });
            c.wait_for_notices();
            return report;
        }
        let mut guard = self.write_whole()?;
        if guard.is_removed() {
            return Err(Error::Io("the pool was already removed".into()));
        }
        let m = guard.mounted();
        let runs = m.dax.invalidate_all(m.fs.backend().as_ref())?;
        let mut pending = PendingNotices::default();
        let mut notices = Vec::new();
        let mut unsubscribed_views = Vec::new();
        for (view, first, pages, phys) in runs {
            let Some(subscription) = view.subscription() else {
                if !unsubscribed_views.contains(&view.id) {
                    unsubscribed_views.push(view.id);
                }
                continue;
            };
            let notice = Notice {
                kind: NoticeKind::ActionOptional,
                view: view.id,
                ino: view.ino,
                path: m.fs.path_of(view.ino),
                file_offset: (view.first_page + first) * BLOCK_SIZE,
                address: view.addr() + (first * BLOCK_SIZE) as usize,
                pool_offset: phys * BLOCK_SIZE,
                length: pages * BLOCK_SIZE,
            };
            notices.push(notice.clone());
            pending.push(subscription.callback, notice);
        }
        let checkpoint_written = !m.fs.is_read_only();
        if checkpoint_written {
            m.fs.checkpoint()?;
        }
        m.fs.backend().drain();
        m.fs.mark_removed();
        let views_invalidated = m.dax.view_count();
        drop(guard);
        pending.deliver();
        Ok(PreRemoveReport { views_invalidated, notices, unsubscribed_views, checkpoint_written })
    }

    /// Records every range of a bad-block list in the pmem sysfs format (`first_sector count`
    /// lines in 512-byte sectors, as in /sys/block/pmemX/badblocks) as a memory failure; call it
    /// right after mounting a pool on a device that has such a list. `source` names the list in
    /// errors. Returns one report per range.
    pub fn import_badblocks(&self, text: &str, source: &str) -> Result<Vec<FailureReport>> {
        if let Some(c) = self.remote() {
            let op = Op::ImportBadblocks { text: text.into(), source: source.into() };
            let reports = Self::ask(c, op, |a| match a {
                Answer::Failures(r) => Some(r),
                _ => None,
            });
            c.wait_for_notices();
            return reports;
        }
        let ranges = crate::memfail::badblocks::parse(text, source)?;
        ranges
            .into_iter()
            .map(|r| self.memory_failure(r.offset, r.len, crate::memfail::FailureFlags::default()))
            .collect()
    }

    /// Bad pool block runs as (first block, count).
    pub fn bad_blocks(&self) -> Vec<(u64, u64)> {
        self.try_bad_blocks().unwrap_or_default()
    }

    /// [`Fs::bad_blocks`], with the error when a pool server cannot answer.
    pub fn try_bad_blocks(&self) -> Result<Vec<(u64, u64)>> {
        if let Some(c) = self.remote() {
            return Self::ask(c, Op::BadBlocks, |a| match a {
                Answer::BadBlocks(b) => Some(b),
                _ => None,
            });
        }
        Ok(self.read_whole()?.bad_blocks())
    }

    /// The page share state of a mapped pool block (`None` when no view, in any process, maps it).
    pub fn page_share(&self, block: u64) -> Option<PageShare> {
        if let Some(c) = self.remote() {
            return Self::ask(c, Op::PageShare { block }, |a| match a {
                Answer::PageShare(p) => Some(p),
                _ => None,
            })
            .ok()
            .flatten();
        }
        self.read_lock().dax().page_share(block)
    }

    /// Number of live views (in every process, for a pool server).
    pub fn view_count(&self) -> usize {
        if let Some(c) = self.remote() {
            return Self::ask(c, Op::ViewCount, |a| match a {
                Answer::Count(n) => Some(n as usize),
                _ => None,
            })
            .unwrap_or(0);
        }
        self.read_lock().dax().view_count()
    }

    /// Space and object counts.
    pub fn stats(&self) -> FsStats {
        self.try_stats().unwrap_or_default()
    }

    /// [`Fs::stats`], with the error when a pool server cannot answer.
    pub fn try_stats(&self) -> Result<FsStats> {
        if let Some(c) = self.remote() {
            return Self::ask(c, Op::Stats, |a| match a {
                Answer::Stats(s) => Some(s),
                _ => None,
            });
        }
        Ok(self.read_whole()?.stats())
    }

    /// Where the pool's blocks are (data, shared, metadata, free, reserve, quarantined) and the
    /// free runs by size, for `df`; the error when a pool server cannot answer.
    pub fn space_usage(&self) -> Result<SpaceUsage> {
        if let Some(c) = self.remote() {
            return Self::ask(c, Op::SpaceUsage, |a| match a {
                Answer::SpaceUsage(u) => Some(u),
                _ => None,
            });
        }
        Ok(self.read_whole()?.space_usage())
    }

    /// The path of an inode, if it has one.
    pub fn path_of(&self, ino: u64) -> Option<String> {
        if let Some(c) = self.remote() {
            return Self::ask(c, Op::PathOf { ino }, |a| match a {
                Answer::Path(p) => Some(p),
                _ => None,
            })
            .ok()
            .flatten();
        }
        self.read_lock().path_of(ino)
    }

    /// When `result` is a memory error met while reading pool memory (a machine check landed by
    /// `pool::mcsafe`), records it as a memory failure — every owner, every view in every
    /// process — and turns it into EIO saying so. Call with no ferrodax lock held.
    fn after_media_error<T>(&self, result: Result<T>) -> Result<T> {
        match result {
            Err(Error::MediaError { pool_offset }) => Err(self.record_media_error(pool_offset)),
            other => other,
        }
    }

    /// Records the memory error met at `pool_offset` as a memory failure and returns the EIO that
    /// says so (see [`Fs::after_media_error`]).
    fn record_media_error(&self, pool_offset: u64) -> Error {
        let what = match self.memory_failure(pool_offset, 1, FailureFlags::default()) {
            Ok(report) => format!(
                "recorded as a memory failure ({} file owner(s), {} view page(s) taken out)",
                report.files.len(),
                report.views.len()
            ),
            Err(e) => format!("recording it as a memory failure failed: {e}"),
        };
        Error::Io(format!("bad memory at pool offset {pool_offset:#x}: {what}"))
    }

    /// Pool server: a view of `file` whose memory is at `base` in the client `peer`, with the id the
    /// client chose. Its layout reaches the client before this returns.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn map_for_peer(
        &self,
        file: &File,
        id: u64,
        offset: u64,
        len: u64,
        access: MapAccess,
        holder: Holder,
        peer: Arc<dyn crate::dax::ViewPeer>,
        base: usize,
    ) -> Result<()> {
        file.check_map(offset, len, access)?;
        let mut guard = self.write_whole()?;
        if guard.is_removed() {
            return Err(Error::Io("map after the pool was removed".into()));
        }
        let pages = len.div_ceil(BLOCK_SIZE);
        let m = guard.mounted();
        m.fs.set_layout_tracking(true);
        m.dax.create_remote_view(
            &m.fs,
            id,
            file.ino,
            offset / BLOCK_SIZE,
            pages,
            access,
            holder,
            peer,
            base,
        )?;
        m.fs.open_ref(file.ino);
        Ok(())
    }

    /// Pool server: forgets a client's view (its process unmapped it or is gone) and drops the
    /// view's open reference on its file.
    pub(crate) fn unmap_for_peer(&self, id: u64) {
        let mut guard = self.write_lock();
        let m = guard.mounted();
        let Some(view) = m.dax.view(id) else { return };
        m.dax.remove_view(id);
        // Stores the client made through the view must reach the pool before a later fsync asks.
        m.dax.flush_retired(m.fs.backend().as_ref());
        let _ = guard.close_ref(view.ino);
    }

    /// Pool server: a store fault in page `page` of a client's view: the file block becomes
    /// private, and every view of it in every process follows before this returns.
    pub(crate) fn make_page_private_for_peer(&self, id: u64, page: u64) -> Result<()> {
        let mut guard = self.write_whole()?;
        let view = guard.mounted().dax.view(id).ok_or_else(|| Error::Invalid(format!("no view {id:#x}")))?;
        if view.access != MapAccess::ReadWrite {
            return Err(Error::BadHandle("the view is read-only".into()));
        }
        if page >= view.pages {
            return Err(Error::Invalid(format!("page {page} is outside view {id:#x}")));
        }
        guard.make_block_private_for_store(view.ino, view.first_page + page)?;
        guard.sync_views()
    }

    /// Pool server: sets a client view's subscription (its callback sends the notices).
    pub(crate) fn subscribe_for_peer(&self, id: u64, subscription: Subscription) -> Result<()> {
        let guard = self.read_whole()?;
        let view = guard.dax().view(id).ok_or_else(|| Error::Invalid(format!("no view {id:#x}")))?;
        view.subscribe(subscription);
        Ok(())
    }

    /// Pool server: msync of a client's view (its writable pages are flushed from here: the
    /// same memory).
    pub(crate) fn sync_view_for_peer(&self, id: u64) -> Result<()> {
        let guard = self.read_whole()?;
        let view = guard.dax().view(id).ok_or_else(|| Error::Invalid(format!("no view {id:#x}")))?;
        let backend = guard.backend().clone();
        flush_writable_pages(backend.as_ref(), &view);
        backend.drain();
        sync_grouped(guard, self)
    }

    /// syncfs: every operation that returned before it is durable when it returns (stores made
    /// through views are not: msync or fsync writes those back). Only a pool whose commits are
    /// grouped (a pool file on a disk) has anything to do.
    pub fn sync(&self) -> Result<()> {
        if let Some(c) = self.remote() {
            return c.call_unit(Op::SyncFs);
        }
        sync_grouped(self.read_whole()?, self)
    }

    /// Starts the periodic sync point of group commit for a long-running front end (the pool
    /// server, a FUSE mount): a thread that makes the operations not yet durable durable once the
    /// oldest of them is [`GROUP_COMMIT_INTERVAL`] old, as ext4's commit thread does every 5
    /// seconds, even when no further operation comes. Nothing to do (no thread) on a connection
    /// or a pool whose commits are not grouped. The thread holds this file system until the
    /// returned guard is dropped, which stops it and waits for it.
    ///
    /// [`GROUP_COMMIT_INTERVAL`]: crate::fs::journal::GROUP_COMMIT_INTERVAL
    pub fn sync_periodically(&self) -> PeriodicSync {
        let groups = matches!(self.kind, FsKind::Local(_)) && self.read_lock().journal().groups_commits();
        if !groups {
            return PeriodicSync { stop: None, thread: None };
        }
        let interval = crate::fs::journal::GROUP_COMMIT_INTERVAL;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let fs = self.clone();
        let thread = std::thread::Builder::new().name("ferrodax-sync".into()).spawn(move || loop {
            match stopped.recv_timeout(interval / 4) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            if fs.read_lock().has_unsynced() {
                if let Err(e) = fs.write_lock().sync_if_older(interval) {
                    eprintln!("ferrodax: periodic sync failed ({e}); the next sync point tries again");
                }
            }
        });
        match thread {
            Ok(thread) => PeriodicSync { stop: Some(stop), thread: Some(thread) },
            Err(e) => {
                eprintln!(
                    "ferrodax: no periodic sync thread ({e}): operations become durable at fsync and unmount"
                );
                PeriodicSync { stop: None, thread: None }
            }
        }
    }

    /// Pool server: reserves the blocks of a placed write to `file` (see
    /// [`FileSystem::reserve_for_placed_write`]), after the checks of [`File::write_at`].
    pub(crate) fn reserve_for_peer(&self, file: &File, offset: u64, len: u64) -> Result<Vec<(u64, u64)>> {
        check_io_offset(offset)?;
        if !file.access.write || file.access.append {
            return Err(Error::BadHandle("a placed write needs a writable, not append-only handle".into()));
        }
        check_io_range(offset, len as usize)?;
        self.write_whole()?.reserve_for_placed_write(file.ino, offset, len)
    }

    /// Pool server: commits a placed write whose data a client stored into `runs`.
    pub(crate) fn commit_placed_for_peer(
        &self,
        file: &File,
        offset: u64,
        len: u64,
        runs: &[(u64, u64)],
    ) -> Result<usize> {
        self.write_whole()?.write_placed(file.ino, offset, len, runs)
    }

    /// Pool server: gives back the runs of placed writes that will not happen.
    pub(crate) fn release_reserved(&self, runs: &[(u64, u64)]) {
        self.write_lock().release_reserved(runs);
    }

    /// Writes a checkpoint now (a pool server's final act): the next mount replays nothing.
    pub fn checkpoint(&self) -> Result<()> {
        if let Some(c) = self.remote() {
            return Err(Error::NotSupported(format!(
                "a checkpoint is the pool server's business ({})",
                c.socket().display()
            )));
        }
        let mut guard = self.write_whole()?;
        if guard.is_read_only() {
            return Ok(());
        }
        guard.checkpoint()
    }

    /// The pool's backend.
    ///
    /// # Panics
    /// On a connected `Fs` ([`Fs::connect`]): the backend lives in the server.
    pub fn backend(&self) -> SharedBackend {
        self.read_lock().backend().clone()
    }
}

/// Through a pool server, writes at least this long store their data straight into blocks the
/// server reserved (zero copy); shorter ones cross the socket.
pub const PLACED_WRITE_MIN: usize = 256 << 10;

/// An open file: a position, an access mode and the inode.
pub struct File {
    fs: Fs,
    ino: u64,
    pos: u64,
    access: HandleAccess,
    /// The server's handle for a connected `Fs` (0 for a direct mount).
    handle: u64,
    /// Opened with [`OpenOptions::in_place`].
    in_place: bool,
}

impl File {
    fn handle(&self) -> Handle {
        Handle { ino: self.ino, access: self.access }
    }

    /// The inode number.
    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// The file system this handle belongs to.
    pub fn fs(&self) -> &Fs {
        &self.fs
    }

    /// How the handle was opened.
    pub fn access(&self) -> HandleAccess {
        self.access
    }

    /// pread: reads at `offset` without moving the position.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        check_io_offset(offset)?;
        if !self.access.read {
            return Err(Error::BadHandle("not open for reading".into()));
        }
        check_io_range(offset, buf.len())?;
        if let Some(c) = self.fs.remote() {
            // The bytes are copied into `buf` after the answer arrived, under no lock: a buffer
            // in a view may fault and be resolved by the server meanwhile.
            return c.read_at(self.handle, buf, offset);
        }
        match self.read_local(buf, offset) {
            Err(e @ Error::MediaError { .. }) => {
                // Bad memory met on the way: recorded now (every owner and view handled), the
                // read is answered like any read of a poisoned range: short, or EIO.
                let _ = self.fs.after_media_error::<()>(Err(e));
                self.read_local(buf, offset)
            }
            other => other,
        }
    }

    fn read_local(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        if fault::overlaps_view(buf.as_ptr() as usize, buf.len()) {
            // The buffer is view memory: filling it may fault, and the fault handler needs the
            // lock. Read into a bounce buffer under the lock, copy after releasing it.
            let mut bounce = vec![0u8; buf.len()];
            let n = self.read_locked(&mut bounce, offset)?;
            buf[..n].copy_from_slice(&bounce[..n]);
            return Ok(n);
        }
        self.read_locked(buf, offset)
    }

    /// Reads under the shared lock and the file's own (shared): an in-place overwrite of this
    /// file is seen whole or not at all.
    fn read_locked(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        let guard = self.fs.read_as_loaded();
        let _file = self.fs.local().files.of(self.ino).read().unwrap_or_else(|e| e.into_inner());
        guard.read(self.ino, offset, buf)
    }

    /// pwrite: writes at `offset` (at EOF for append handles) without moving the position.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<usize> {
        check_io_offset(offset)?;
        if !self.access.write {
            return Err(Error::BadHandle("not open for writing".into()));
        }
        check_io_range(offset, buf.len())?;
        // A source buffer inside a view is copied before locking (a load there may fault too).
        let bounce;
        let buf = if fault::overlaps_view(buf.as_ptr() as usize, buf.len()) {
            bounce = buf.to_vec();
            &bounce[..]
        } else {
            buf
        };
        if let Some(c) = self.fs.remote() {
            if buf.len() >= PLACED_WRITE_MIN
                && !self.access.append
                && c.pool_access() == PoolAccess::ReadWrite
            {
                return c.write_placed(self.handle, buf, offset);
            }
            return c.write_at(self.handle, buf, offset);
        }
        match self.write_local(buf, offset) {
            Err(e @ Error::MediaError { .. }) => {
                // Bad memory met on the way (an edge's old block, the log): recorded now — which
                // moves a bad log — then the write is tried once more: it succeeds, or fails with
                // the EIO of a poisoned block it must read.
                let _ = self.fs.after_media_error::<()>(Err(e));
                let again = self.write_local(buf, offset);
                self.fs.after_media_error(again)
            }
            other => other,
        }
    }

    fn write_local(&self, buf: &[u8], offset: u64) -> Result<usize> {
        if self.in_place && !self.access.append && self.overwrite_in_place(buf, offset)? {
            return Ok(buf.len());
        }
        let mut guard = self.fs.write_whole()?;
        let offset = if self.access.append { guard.stat(self.ino)?.size } else { offset };
        if self.in_place || guard.mounted().dax.has_views(self.ino) {
            guard.write_in_place_where_private(self.ino, offset, buf)
        } else {
            guard.write(self.ino, offset, buf)
        }
    }

    /// An in-place handle's overwrite of private blocks under the shared lock and the file's own
    /// lock ([`FileSystem::overwrite_private_in_place`]): false when the write needs the
    /// exclusive lock.
    fn overwrite_in_place(&self, buf: &[u8], offset: u64) -> Result<bool> {
        let guard = self.fs.read_whole()?;
        let _file = self.fs.local().files.of(self.ino).write().unwrap_or_else(|e| e.into_inner());
        guard.overwrite_private_in_place(self.ino, offset, buf)
    }

    /// Maps `len` bytes of the file from `offset` (both multiples of 4096) as a DAX view: its pages
    /// are the pool's pages. See [`Mapping`].
    pub fn map(&self, offset: u64, len: u64, access: MapAccess) -> Result<Mapping> {
        self.map_with_holder(offset, len, access, Holder::current(""))
    }

    /// Like [`File::map`], naming the holder for later notices.
    pub fn map_with_holder(
        &self,
        offset: u64,
        len: u64,
        access: MapAccess,
        holder: Holder,
    ) -> Result<Mapping> {
        self.check_map(offset, len, access)?;
        if let Some(c) = self.fs.remote() {
            return self.map_through_server(c, offset, len, access, holder);
        }
        let mut guard = self.fs.write_whole()?;
        if guard.is_removed() {
            return Err(Error::Io("map after the pool was removed".into()));
        }
        let pages = len.div_ceil(BLOCK_SIZE);
        let m = guard.mounted();
        m.fs.set_layout_tracking(true);
        let view = m.dax.create_view(&m.fs, self.ino, offset / BLOCK_SIZE, pages, access, holder)?;
        m.fs.open_ref(self.ino);
        drop(guard);
        let inner = Arc::new(MappingInner { fs: self.fs.clone(), view });
        let target: Arc<dyn FaultTarget> = inner.clone();
        fault::register(inner.view.addr(), inner.view.len(), Arc::downgrade(&target));
        Ok(Mapping { inner })
    }

    /// The argument and access rules of a view (EINVAL, EBADF).
    fn check_map(&self, offset: u64, len: u64, access: MapAccess) -> Result<()> {
        if offset % BLOCK_SIZE != 0 || len == 0 || offset.checked_add(len).is_none_or(|e| e > MAX_FILE_SIZE) {
            return Err(Error::Invalid(format!(
                "map of [{offset}, +{len}): offset must be page-aligned, length positive"
            )));
        }
        if !self.access.read || (access == MapAccess::ReadWrite && (!self.access.write || self.access.append))
        {
            return Err(Error::BadHandle("the handle's access does not allow this mapping".into()));
        }
        Ok(())
    }

    /// [`File::map_with_holder`] for a connected `Fs`: the view's memory is reserved here, the
    /// server keeps its bookkeeping and sends the layout (a recall) before it answers.
    fn map_through_server(
        &self,
        c: &Client,
        offset: u64,
        len: u64,
        access: MapAccess,
        holder: Holder,
    ) -> Result<Mapping> {
        match (c.pool_access(), access) {
            (PoolAccess::ReadWrite, _) | (PoolAccess::ReadOnly, MapAccess::Read) => {}
            (PoolAccess::ReadOnly, MapAccess::ReadWrite) | (PoolAccess::None, _) => {
                return Err(Error::os(
                    "a view needs the pool file (read access, and write access for a read-write view); \
                     this process may not open it that way, so use read_at and write_at",
                    io::Error::from_raw_os_error(libc::EACCES),
                ))
            }
        }
        if !vm::page_size_ok() {
            return Err(Error::Invalid("views need a 4096-byte page size".into()));
        }
        let pages = len.div_ceil(BLOCK_SIZE);
        let bytes =
            usize::try_from(pages * BLOCK_SIZE).map_err(|_| Error::Invalid("view too large".into()))?;
        let reservation = vm::Reservation::new(bytes, 2 << 20)?;
        let base = reservation.base();
        let id = c.next_view_id();
        let view = Arc::new(View::for_client(
            id,
            self.ino,
            offset / BLOCK_SIZE,
            access,
            holder.clone(),
            reservation,
        ));
        c.add_view(view.clone());
        let op = Op::Map { handle: self.handle, view: id, offset, len, access, holder, base };
        if let Err(e) = c.call_unit(op) {
            c.remove_view(id);
            return Err(e);
        }
        let inner = Arc::new(MappingInner { fs: self.fs.clone(), view });
        let target: Arc<dyn FaultTarget> = inner.clone();
        fault::register(inner.view.addr(), inner.view.len(), Arc::downgrade(&target));
        Ok(Mapping { inner })
    }

    /// Reads exactly `buf.len()` bytes at `offset` or fails.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let n = self.read_at(buf, offset)?;
        if n != buf.len() {
            return Err(Error::Io(format!("short read: {n} of {} bytes at {offset}", buf.len())));
        }
        Ok(())
    }

    /// ftruncate.
    pub fn set_len(&self, size: u64) -> Result<()> {
        if size > i64::MAX as u64 {
            return Err(Error::Invalid(format!("truncate to a negative size ({size})")));
        }
        if !self.access.write {
            return Err(Error::Invalid("truncate needs a writable handle".into()));
        }
        if let Some(c) = self.fs.remote() {
            return c.call_unit(Op::SetLen { handle: self.handle, size });
        }
        let truncated = {
            let mut guard = self.fs.write_whole()?;
            // The kept part of a partial last page is copied: no store through a view may land
            // meanwhile.
            if size % BLOCK_SIZE != 0 {
                guard.write_protect(self.ino, size, 1)?;
            }
            guard.truncate(self.ino, size)
        };
        self.fs.after_media_error(truncated)
    }

    /// fallocate(2): `mode` is the kernel's `FALLOC_FL_*` bit set ([`crate::fs::falloc`]):
    /// preallocate (0, or `FALLOC_FL_KEEP_SIZE`), punch a hole, zero a range, collapse or insert a
    /// range, unshare. The errno rules are `vfs_fallocate`'s and XFS's (see
    /// [`FileSystem::fallocate`]); views of the file follow the change before this returns.
    pub fn fallocate(&self, mode: u32, offset: u64, len: u64) -> Result<()> {
        falloc::vfs_fallocate_checks(mode, offset, len, self.access.write)?;
        if let Some(c) = self.fs.remote() {
            return c.call_unit(Op::Fallocate { handle: self.handle, mode, offset, len });
        }
        let result = {
            let mut guard = self.fs.write_whole()?;
            // The kept bytes of partial blocks are copied into new blocks: no store through a view
            // may land in between.
            if matches!(
                mode & falloc::FALLOC_FL_MODE_MASK,
                falloc::FALLOC_FL_PUNCH_HOLE | falloc::FALLOC_FL_ZERO_RANGE
            ) {
                let end = offset.saturating_add(len);
                if offset % BLOCK_SIZE != 0 {
                    guard.write_protect(self.ino, offset, 1)?;
                }
                if end % BLOCK_SIZE != 0 {
                    guard.write_protect(self.ino, end - 1, 1)?;
                }
            }
            guard.fallocate(self.handle(), mode, offset, len)
        };
        self.fs.after_media_error(result)
    }

    /// lseek(SEEK_DATA) or lseek(SEEK_HOLE) without moving the position: the first byte at or
    /// after `offset` that is data (a mapped block) or in a hole (EOF counts as a hole). ENXIO at
    /// or past EOF, and for data when there is none after `offset`.
    pub fn find(&self, offset: u64, target: SeekTarget) -> Result<u64> {
        if let Some(c) = self.fs.remote() {
            return Fs::ask(c, Op::Seek { handle: self.handle, offset, target }, |a| match a {
                Answer::Count(n) => Some(n),
                _ => None,
            });
        }
        self.fs.read_as_loaded().seek(self.ino, offset, target)
    }

    /// lseek(fd, offset, SEEK_DATA): moves the position to the first data at or after `offset`.
    pub fn seek_data(&mut self, offset: u64) -> Result<u64> {
        self.pos = self.find(offset, SeekTarget::Data)?;
        Ok(self.pos)
    }

    /// lseek(fd, offset, SEEK_HOLE): moves the position to the first hole at or after `offset`.
    pub fn seek_hole(&mut self, offset: u64) -> Result<u64> {
        self.pos = self.find(offset, SeekTarget::Hole)?;
        Ok(self.pos)
    }

    /// fstat.
    pub fn metadata(&self) -> Result<Stat> {
        if let Some(c) = self.fs.remote() {
            return Fs::ask(c, Op::FileStat { handle: self.handle }, |a| match a {
                Answer::Stat(s) => Some(s),
                _ => None,
            });
        }
        self.fs.read_as_loaded().stat(self.ino)
    }

    /// fsync: every operation that returned before it (on any file: the pool has one log) is
    /// durable when it returns, and stores made through the file's views are written back here
    /// (blocks that stopped being writable in a view already were).
    pub fn sync_all(&self) -> Result<()> {
        if let Some(c) = self.fs.remote() {
            return c.call_unit(Op::SyncAll { handle: self.handle });
        }
        let guard = self.fs.read_whole()?;
        guard.stat(self.ino)?;
        let views = guard.dax().views_of(self.ino);
        if !views.is_empty() {
            let backend = guard.backend().clone();
            for view in &views {
                flush_writable_pages(backend.as_ref(), view);
            }
            backend.drain();
        }
        sync_grouped(guard, &self.fs)
    }
}

/// A sync point for a caller holding `guard`: operations not yet durable (group commit) become
/// durable, under the exclusive lock.
fn sync_grouped(guard: ReadGuard<'_>, fs: &Fs) -> Result<()> {
    if !guard.has_unsynced() {
        return Ok(());
    }
    drop(guard);
    fs.write_whole()?.sync()
}

/// The byte copy of copy_file_range (the kernel's splice fallback): `count` bytes, or up to the
/// source's EOF, in pieces of at most 1 MiB; not atomic. An error after some bytes were copied
/// ends the copy short, as a short splice does.
fn copy_bytes(src: &File, src_off: u64, dst: &File, dst_off: u64, count: u64) -> Result<u64> {
    const PIECE: u64 = 1 << 20;
    let mut buf = vec![0u8; count.min(PIECE) as usize];
    let mut done = 0u64;
    while done < count {
        let want = (count - done).min(PIECE) as usize;
        let step = src.read_at(&mut buf[..want], src_off + done).and_then(|n| {
            if n == 0 {
                return Ok((0, 0));
            }
            dst.write_at(&buf[..n], dst_off + done).map(|w| (n, w))
        });
        match step {
            Ok((0, _)) => break,
            Ok((n, w)) => {
                done += w as u64;
                if w < n {
                    break;
                }
            }
            Err(_) if done > 0 => break,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// pread/pwrite: a negative offset (as the kernel's signed loff_t) is EINVAL, before EBADF.
fn check_io_offset(offset: u64) -> Result<()> {
    if offset > i64::MAX as u64 {
        return Err(Error::Invalid(format!("offset {offset} is negative as a signed 64-bit offset")));
    }
    Ok(())
}

/// rw_verify_area: an I/O whose end overflows a signed 64-bit offset is EINVAL.
fn check_io_range(offset: u64, len: usize) -> Result<()> {
    if offset.checked_add(len as u64).is_none_or(|e| e > i64::MAX as u64) {
        return Err(Error::Invalid(format!("{len} bytes at offset {offset} overflow")));
    }
    Ok(())
}

impl Read for File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.write_at(buf, self.pos)?;
        self.pos = if self.access.append { self.metadata()?.size } else { self.pos + n as u64 };
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for File {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let base = match pos {
            SeekFrom::Start(p) => {
                self.pos = p;
                return Ok(p);
            }
            SeekFrom::Current(d) => (self.pos, d),
            SeekFrom::End(d) => (self.metadata()?.size, d),
        };
        let new =
            base.0.checked_add_signed(base.1).ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        self.pos = new;
        Ok(new)
    }
}

impl Drop for File {
    fn drop(&mut self) {
        // The last close of an unlinked file frees its blocks; a failure here can only be ENOSPC
        // for the log, and the orphan is then reclaimed at the next mount.
        if let Some(c) = self.fs.remote() {
            // A server that is gone has closed every handle of this connection already.
            let _ = c.call_unit(Op::Close { handle: self.handle });
            return;
        }
        let _ = self.fs.write_as_loaded().close_ref(self.ino);
    }
}

struct MappingInner {
    fs: Fs,
    view: Arc<View>,
}

impl MappingInner {
    /// Makes view page `page` writable: the file block becomes private, and every view of it follows.
    fn make_page_writable(&self, page: u64) -> Result<()> {
        if self.view.access != MapAccess::ReadWrite {
            return Err(Error::BadHandle("the view is read-only".into()));
        }
        if let Some(c) = self.fs.remote() {
            // The server re-points this page in every process, this one included (a recall that
            // the reader thread applies), before it answers.
            c.call_unit(Op::MakePrivate { view: self.view.id, page })?;
        } else {
            let copied = {
                let mut guard = self.fs.write_whole()?;
                guard
                    .make_block_private_for_store(self.view.ino, self.view.first_page + page)
                    .and_then(|_| guard.sync_views())
            };
            self.fs.after_media_error(copied)?;
        }
        // The page is writable now, unless an operation that ran since (a dedupe or truncate
        // protecting it, a truncate below it, a memory failure) changed it again: then the retried
        // store faults again and meets the page as it is then.
        Ok(())
    }
}

impl FaultTarget for MappingInner {
    fn poisoned(&self, addr: usize) -> bool {
        DaxLayer::poisoned_at(&self.view, addr)
    }

    fn poisoned_access(&self, addr: usize) {
        let page = ((addr - self.view.addr()) / vm::PAGE) as u64;
        let PageState::Poisoned { phys } = self.view.page_state(page) else { return };
        let Some(subscription) = self.view.subscription() else { return };
        let delta = (addr - self.view.addr()) as u64 % BLOCK_SIZE;
        // Through a server the path would cost a round trip from signal context: the notice names
        // the inode instead.
        let path = if self.fs.is_connected() { None } else { self.fs.read_lock().path_of(self.view.ino) };
        let notice = Notice {
            kind: NoticeKind::ActionRequired,
            view: self.view.id,
            ino: self.view.ino,
            path,
            file_offset: (self.view.first_page + page) * BLOCK_SIZE + delta,
            address: addr,
            pool_offset: phys * BLOCK_SIZE + delta,
            length: 1,
        };
        (subscription.callback)(&notice);
    }

    fn machine_check(&self, addr: usize, action_required: bool) -> bool {
        let page = ((addr - self.view.addr()) / vm::PAGE) as u64;
        let PageState::Block { phys, .. } = self.view.page_state(page) else { return false };
        let pool_offset = phys * BLOCK_SIZE + (addr - self.view.addr()) as u64 % BLOCK_SIZE;
        let flags = FailureFlags {
            accessor: action_required.then_some(addr),
            accessor_view: action_required.then_some(self.view.id),
        };
        self.fs.memory_failure(pool_offset, 1, flags).is_ok()
    }

    fn resolve_store_fault(&self, addr: usize) -> FaultOutcome {
        let page = ((addr - self.view.addr()) / vm::PAGE) as u64;
        match self.make_page_writable(page) {
            Ok(()) => FaultOutcome::Resolved,
            Err(Error::BadHandle(_)) => FaultOutcome::Refused,
            // Past EOF by now (a truncate won the race): the retried store meets the past-EOF
            // sentinel and raises SIGBUS like the kernel's mapping would.
            Err(Error::Invalid(_)) => FaultOutcome::Resolved,
            Err(e) => {
                // Signal context (see dax::fault): one line on stderr with a plain write(2).
                let file = match self.fs.remote() {
                    Some(_) => format!("inode {}", self.view.ino),
                    None => self
                        .fs
                        .read_lock()
                        .path_of(self.view.ino)
                        .unwrap_or(format!("inode {}", self.view.ino)),
                };
                let line = format!(
                    "ferrodax: copy-on-write fault in {file} at file offset {} (address {addr:#x}) cannot be served: {}: SIGBUS\n",
                    (self.view.first_page + page) * BLOCK_SIZE,
                    e
                );
                // SAFETY: write(2) of a buffer we own to standard error.
                unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
                FaultOutcome::Failed
            }
        }
    }
}

/// A live DAX view of a file range: its pages are the pool's pages, so loads and stores through
/// [`Mapping::as_ptr`] reach the pool directly. Private blocks are writable in place; a store into a
/// shared block or a hole traps, and the library copies (or allocates) the page and re-points this
/// file's views at it before the store resumes. Pages past EOF raise SIGBUS.
pub struct Mapping {
    inner: Arc<MappingInner>,
}

impl Mapping {
    /// First byte of the view. Loads and stores through it are plain memory accesses.
    pub fn as_ptr(&self) -> *mut u8 {
        self.inner.view.addr() as *mut u8
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.inner.view.len()
    }

    /// Always false.
    pub fn is_empty(&self) -> bool {
        self.inner.view.is_empty()
    }

    /// File offset of the first byte.
    pub fn file_offset(&self) -> u64 {
        self.inner.view.first_page * BLOCK_SIZE
    }

    /// The inode shown.
    pub fn ino(&self) -> u64 {
        self.inner.view.ino
    }

    /// Who holds the view.
    pub fn holder(&self) -> &Holder {
        &self.inner.view.holder
    }

    /// The pool block page `page` of the view shows, if any.
    pub fn page_state(&self, page: u64) -> PageState {
        self.inner.view.page_state(page)
    }

    fn check_range(&self, offset: usize, len: usize) -> Result<()> {
        if offset.checked_add(len).is_none_or(|e| e > self.len()) {
            return Err(Error::Invalid(format!(
                "[{offset}, +{len}) is outside the {}-byte view",
                self.len()
            )));
        }
        Ok(())
    }

    /// Copies view bytes at `offset` into `buf` (a load through the view; past EOF is SIGBUS).
    pub fn read_at(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len())?;
        self.inner.view.reservation().load(offset, buf);
        Ok(())
    }

    /// Breaks sharing for every page of `[offset, offset + len)` without faulting: afterwards the
    /// pages are private to this file and writable in this view.
    pub fn make_writable(&self, offset: usize, len: usize) -> Result<()> {
        self.check_range(offset, len)?;
        if len == 0 {
            return Ok(());
        }
        for page in offset / vm::PAGE..(offset + len).div_ceil(vm::PAGE) {
            if !matches!(
                self.page_state(page as u64),
                PageState::Block { prot: PageProtection::ReadWrite, .. }
            ) {
                self.inner.make_page_writable(page as u64)?;
            }
        }
        Ok(())
    }

    /// Stores `data` at `offset` through the view, breaking sharing first (the safe path).
    pub fn write_at(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.make_writable(offset, data.len())?;
        self.inner.view.reservation().store(offset, data);
        Ok(())
    }

    /// Plain stores, faults resolved by the handler: copies `data` into the view at `offset` with
    /// ordinary memory stores and no preparation, exactly what a program storing through
    /// [`Mapping::as_ptr`] does. A store into a shared block or a hole faults, and the process-wide
    /// fault handler copies (or allocates) the page and makes it writable before the store resumes;
    /// this is the way to exercise or measure copy-on-write faults without `unsafe`.
    /// [`Mapping::write_at`] breaks sharing first instead, and never faults.
    ///
    /// Fails with EINVAL outside the view and EBADF on a read-only view (where a store would be
    /// SIGSEGV). Like a store through the pointer, a store into a page past EOF raises SIGBUS, and
    /// a fault that cannot be resolved (no space for the copy) raises SIGSEGV.
    pub fn store_plain(&self, offset: usize, data: &[u8]) -> Result<()> {
        self.check_range(offset, data.len())?;
        if self.inner.view.access != MapAccess::ReadWrite {
            return Err(Error::BadHandle("the view is read-only".into()));
        }
        self.inner.view.reservation().store(offset, data);
        Ok(())
    }

    /// Subscribes the view's holder to memory-failure notices (replacing an earlier subscription).
    /// With `early`, an action-optional notice comes as soon as a failure hits a page of the view
    /// (on the thread that handles the failure, after the file-system lock is released); without,
    /// the holder is told when it touches the page. Any subscriber whose access consumes poison
    /// gets an action-required notice: that callback runs in signal context on the accessing
    /// thread, just before the SIGBUS (BUS_MCEERR_AR) is queued to it, so it must not take locks
    /// the interrupted code may hold nor call into this file system. See [`Notice`].
    pub fn subscribe(&self, early: bool, callback: Arc<dyn Fn(&Notice) + Send + Sync>) {
        self.inner.view.subscribe(Subscription { early, callback });
        if let Some(c) = self.inner.fs.remote() {
            // The server sends action-optional notices for this view; a lost connection shows
            // on the next call.
            let _ = c.call_unit(Op::Subscribe { view: self.inner.view.id, early });
        }
    }

    /// Whether stores are allowed ([`MapAccess::ReadWrite`]).
    pub fn access(&self) -> MapAccess {
        self.inner.view.access
    }

    /// msync: makes every store through the view durable. Only pages writable now can hold
    /// stores not yet written back: pages that stopped being writable were flushed then.
    pub fn sync(&self) -> Result<()> {
        if let Some(c) = self.inner.fs.remote() {
            return c.call_unit(Op::SyncView { view: self.inner.view.id });
        }
        let guard = self.inner.fs.read_whole()?;
        let backend = guard.backend().clone();
        flush_writable_pages(backend.as_ref(), &self.inner.view);
        backend.drain();
        // The stores' blocks may have been placed by copy-on-write faults: those are durable too.
        sync_grouped(guard, &self.inner.fs)
    }
}

/// Flushes (without draining) the blocks a view maps writable: where its stores may be pending.
fn flush_writable_pages(backend: &dyn Backend, view: &View) {
    for phys in view.writable_blocks() {
        backend.flush(phys * BLOCK_SIZE, BLOCK_SIZE);
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        fault::unregister(self.inner.view.addr());
        if let Some(c) = self.inner.fs.remote() {
            // The server forgets the view before its memory goes (when `inner` drops), so no
            // recall reaches memory that is no longer a view.
            let _ = c.call_unit(Op::Unmap { view: self.inner.view.id });
            c.remove_view(self.inner.view.id);
            return;
        }
        let mut guard = self.inner.fs.write_lock();
        let m = guard.mounted();
        // Unmapping does not make stores durable, but a later fsync must find them written back.
        m.dax.remove_view(self.inner.view.id);
        m.dax.flush_retired(m.fs.backend().as_ref());
        let _ = guard.close_ref(self.inner.view.ino);
    }
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping")
            .field("ino", &self.ino())
            .field("addr", &self.as_ptr())
            .field("len", &self.len())
            .finish()
    }
}

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("File").field("ino", &self.ino).field("pos", &self.pos).finish()
    }
}
