//! The FUSE request handlers: each request becomes calls of the public API (`Fs`, `File`).
//!
//! Owns the table of open FUSE file handles (each one a [`File`]), the directory listings taken
//! at opendir, and turning [`Stat`] into FUSE attributes and [`Error`] into errnos. Must never
//! call below the API, and never hold its own tables' locks while calling `Fs` (a slow call must
//! not stall the other FUSE threads).
//!
//! FUSE names inodes by number and the API by path: a request on inode N finds N's path with
//! [`Fs::path_of`] (ferrodax inode numbers are never reused, and the root is 1, as in FUSE), and
//! an opened [`File`] is checked to be inode N (a rename by another client in between is ESTALE,
//! which makes the kernel look the name up again). An unlinked file that is still open has no
//! path: its requests go through a handle open on it.

use super::pending;
use crate::fs::access::{as_caller, Credentials, S_ISGID, S_ISUID};
use crate::fs::namespace::{SetAttributes, TimeSet};
use crate::{Error, File, Fs, InodeKind, OpenOptions, Stat};
use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileAttr, FileHandle, FileType, Filesystem,
    FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the kernel may keep attributes and names without asking again. Other processes
/// change the pool through the pool server beside the mount, so this is short.
const CACHE_TTL: Duration = Duration::from_secs(1);

/// The largest write request asked of the kernel (it may cap it lower).
const MAX_WRITE: u32 = 1 << 20;

/// Block size reported by stat and statfs.
const BLOCK: u32 = 4096;

/// The longest name (as the pool stores it).
const NAME_MAX: u32 = 255;

/// How the kernel treats an open file: through its page cache (no direct I/O, so mmap works),
/// keeping the file's cached pages across opens (FOPEN_KEEP_CACHE) — they are dropped when the
/// attributes, asked again after [`CACHE_TTL`], show another size or mtime (FUSE_AUTO_INVAL_DATA,
/// asked for at init): so a change another process made through the pool server shows within
/// that time — and without a FLUSH request at close (every write reaches the pool when answered,
/// as durable as a library write: close is no sync point, as in POSIX; a shared mapping's dirty
/// pages are written back when it is unmapped).
const OPEN_FLAGS: FopenFlags = FopenFlags::FOPEN_KEEP_CACHE.union(FopenFlags::FOPEN_NOFLUSH);

/// A directory as opendir saw it: ".", "..", then its entries by name.
type Listing = Vec<(u64, FileType, String)>;

/// The FUSE file system of one `Fs`: a direct mount, or a connection to a pool server.
pub struct FuseFs {
    fs: Fs,
    files: Mutex<HashMap<u64, Arc<File>>>,
    dirs: Mutex<HashMap<u64, Arc<Listing>>>,
    next_handle: AtomicU64,
    groups: Mutex<GroupsCache>,
}

/// How long the supplementary groups read for a process are used again without reading them anew
/// (a process that changes its groups is seen with its new ones after this at the latest).
const GROUPS_TTL: Duration = Duration::from_secs(1);

/// Supplementary groups by (pid, uid, gid), as read from /proc, and when.
type GroupsCache = HashMap<(u32, u32, u32), (Vec<u32>, Instant)>;

/// The credentials of the process that made `req`: its file system user and group as the kernel
/// sent them, its supplementary groups from /proc (FUSE does not send them), read at most once per
/// [`GROUPS_TTL`] per process.
fn caller(req: &Request, cache: &Mutex<GroupsCache>) -> Credentials {
    let key = (req.pid(), req.uid(), req.gid());
    let now = Instant::now();
    let cached = {
        let cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(&key).filter(|(_, at)| now.duration_since(*at) < GROUPS_TTL).map(|(g, _)| g.clone())
    };
    let groups = cached.unwrap_or_else(|| {
        let groups = Credentials::of_pid(req.pid()).map(|c| c.groups).unwrap_or_default();
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 4096 {
            cache.retain(|_, (_, at)| now.duration_since(*at) < GROUPS_TTL);
        }
        cache.insert(key, (groups.clone(), now));
        groups
    });
    Credentials { uid: req.uid(), gid: req.gid(), groups }
}

fn time_set(t: Option<TimeOrNow>) -> Option<TimeSet> {
    t.map(|t| match t {
        TimeOrNow::Now => TimeSet::Now,
        TimeOrNow::SpecificTime(at) => TimeSet::At(match at.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos().min(i64::MAX as u128) as i64,
            Err(e) => -(e.duration().as_nanos().min(i64::MAX as u128) as i64),
        }),
    })
}

/// Whether a mode change that `caller` sends is the kernel clearing the set-user-ID or
/// set-group-ID bits of a file `caller` does not own after writing to or truncating it
/// (`file_remove_privs`: FUSE sends that as a SETATTR of the mode, made by the writer): only those
/// bits go and nothing else changes. The pool lets only the owner change a mode, so the mount makes
/// this change as root. No other mode change by a non-owner reaches the mount: with
/// `default_permissions` the kernel refuses it (EPERM) before sending it.
fn is_privilege_kill(old_mode: u32, new_mode: u32, file_uid: u32, caller: &Credentials) -> bool {
    let (old, new) = (old_mode & 0o7777, new_mode & 0o7777);
    let cleared = old & !new;
    !caller.is_root()
        && caller.uid != file_uid
        && cleared != 0
        && new & !old == 0
        && cleared & !(S_ISUID | S_ISGID) == 0
}

/// The mode a file keeps after `caller` truncated it by opening it with O_TRUNC, as Linux's
/// `file_remove_privs` decides for a caller without CAP_FSETID: no set-user-ID, and no set-group-ID
/// when group execute is set or the caller is outside the file's group. FUSE clears these itself on
/// write and truncate, but not on an O_TRUNC open that the file system truncates (FUSE_ATOMIC_O_TRUNC).
fn mode_after_truncate_by(caller: &Credentials, stat: &Stat) -> u32 {
    let mut mode = stat.mode & 0o7777;
    if caller.is_root() {
        return mode;
    }
    mode &= !S_ISUID;
    if mode & 0o010 != 0 || !caller.in_group(stat.gid) {
        mode &= !S_ISGID;
    }
    mode
}

/// The errno of a library error.
fn errno(e: &Error) -> Errno {
    Errno::from_i32(e.errno())
}

/// A FUSE name as the API's path component: names must be UTF-8 (EINVAL otherwise).
fn name_str(name: &OsStr) -> Result<&str, Errno> {
    name.to_str().ok_or(Errno::EINVAL)
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn time(ns: i64) -> SystemTime {
    if ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(ns as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(ns.unsigned_abs())
    }
}

fn file_type(kind: InodeKind) -> FileType {
    match kind {
        InodeKind::Dir => FileType::Directory,
        InodeKind::File => FileType::RegularFile,
        InodeKind::Symlink => FileType::Symlink,
    }
}

impl FuseFs {
    /// The FUSE file system of `fs`: files show the owner, group and mode the pool keeps, and
    /// every request that creates, removes, renames or changes an inode runs with the
    /// credentials of the process that made it ([`caller`]).
    pub fn new(fs: Fs) -> FuseFs {
        FuseFs {
            fs,
            files: Mutex::new(HashMap::new()),
            dirs: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            groups: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `f` as the process that made `req` (see [`caller`]).
    fn as_requester<T>(&self, req: &Request, f: impl FnOnce() -> T) -> T {
        as_caller(caller(req, &self.groups), f)
    }

    fn attr(&self, s: &Stat) -> FileAttr {
        FileAttr {
            ino: INodeNo(s.ino),
            size: s.size,
            blocks: s.blocks,
            atime: time(s.atime_ns),
            mtime: time(s.mtime_ns),
            ctime: time(s.ctime_ns),
            crtime: time(s.ctime_ns),
            kind: file_type(s.kind),
            perm: (s.mode & 0o7777) as u16,
            nlink: s.nlink,
            uid: s.uid,
            gid: s.gid,
            rdev: 0,
            blksize: BLOCK,
            flags: 0,
        }
    }

    fn file(&self, fh: FileHandle) -> Result<Arc<File>, Errno> {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).get(&fh.0).cloned().ok_or(Errno::EBADF)
    }

    /// Some open handle on `ino` (a writable one if `writable`), for an inode without a path.
    fn open_handle_of(&self, ino: u64, writable: bool) -> Option<Arc<File>> {
        let files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        files.values().find(|f| f.ino() == ino && (!writable || f.access().write)).cloned()
    }

    fn remember(&self, file: File) -> u64 {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.files.lock().unwrap_or_else(|e| e.into_inner()).insert(fh, Arc::new(file));
        fh
    }

    fn path(&self, ino: INodeNo) -> Result<String, Errno> {
        self.fs.path_of(ino.0).ok_or(Errno::ENOENT)
    }

    /// A path of inode `ino` that still names it (ESTALE when a rename by another client moved
    /// another inode there since), for requests the API takes by path.
    fn path_naming(&self, ino: INodeNo) -> Result<String, Errno> {
        let path = self.path(ino)?;
        match self.fs.symlink_metadata(&path) {
            Ok(s) if s.ino == ino.0 => Ok(path),
            Ok(_) => Err(Errno::ESTALE),
            Err(e) => Err(errno(&e)),
        }
    }

    fn child(&self, parent: INodeNo, name: &OsStr) -> Result<String, Errno> {
        Ok(join(&self.path(parent)?, name_str(name)?))
    }

    /// The attributes of inode `ino`: through the handle `fh` when given, else by its path, else
    /// through any handle open on it (an unlinked, still open file).
    fn stat(&self, ino: INodeNo, fh: Option<FileHandle>) -> Result<Stat, Errno> {
        if let Some(file) = fh.and_then(|fh| self.file(fh).ok()) {
            return file.metadata().map_err(|e| errno(&e));
        }
        if let Some(path) = self.fs.path_of(ino.0) {
            match self.fs.symlink_metadata(&path) {
                Ok(s) if s.ino == ino.0 => return Ok(s),
                Ok(_) => return Err(Errno::ESTALE),
                Err(e) if e.errno() != libc::ENOENT => return Err(errno(&e)),
                Err(_) => {}
            }
        }
        match self.open_handle_of(ino.0, false) {
            Some(file) => file.metadata().map_err(|e| errno(&e)),
            None => Err(Errno::ENOENT),
        }
    }

    /// Opens inode `ino` through its path with `options`; ESTALE when the path now names another
    /// inode (renamed by another client meanwhile).
    fn open_ino(&self, ino: INodeNo, options: &OpenOptions) -> Result<File, Errno> {
        let path = self.path(ino)?;
        let file = self.fs.open(&path, options).map_err(|e| errno(&e))?;
        if file.ino() != ino.0 {
            return Err(Errno::ESTALE);
        }
        Ok(file)
    }

    /// The attributes of what `path` names, a symlink itself (the kernel follows symlinks).
    fn entry(&self, path: &str) -> Result<FileAttr, Errno> {
        self.fs.symlink_metadata(path).map(|s| self.attr(&s)).map_err(|e| errno(&e))
    }

    /// setattr: mode, owner and times through [`SetAttributes`] (for the requester, as the
    /// caller of the surrounding [`as_caller`]), then the size through a writable handle. A size
    /// change stamps mtime and ctime itself, so "times = now" sent along with it (truncate(2)) is
    /// left to it.
    #[allow(clippy::too_many_arguments)]
    fn set_attributes(
        &self,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        fh: Option<FileHandle>,
    ) -> Result<Stat, Errno> {
        let now = self.stat(ino, fh)?;
        let mut mode = mode.map(|m| m & 0o7777);
        if let Some(kill) = mode.filter(|&m| is_privilege_kill(now.mode, m, now.uid, &Credentials::current()))
        {
            let set = SetAttributes { mode: Some(kill), ..SetAttributes::default() };
            as_caller(Credentials::root(), || self.change_attributes(ino, &set))?;
            mode = None;
        }
        let with_size = |t: Option<TimeOrNow>| t.filter(|t| !(size.is_some() && *t == TimeOrNow::Now));
        let set = SetAttributes {
            mode,
            uid,
            gid,
            atime: time_set(with_size(atime)),
            mtime: time_set(with_size(mtime)),
        };
        if set != SetAttributes::default() {
            self.change_attributes(ino, &set)?;
        }
        let Some(size) = size else { return self.stat(ino, fh) };
        if now.kind == InodeKind::Dir {
            return Err(Errno::EISDIR);
        }
        let handle = fh.and_then(|fh| self.file(fh).ok()).filter(|f| f.access().write);
        let file = match handle.or_else(|| self.open_handle_of(ino.0, true)) {
            Some(file) => file,
            None => {
                let mut write = OpenOptions::new();
                write.write(true);
                Arc::new(self.open_ino(ino, &write)?)
            }
        };
        file.set_len(size).map_err(|e| errno(&e))?;
        file.metadata().map_err(|e| errno(&e))
    }

    /// Clears what [`mode_after_truncate_by`] says `caller` clears by truncating `file`.
    fn drop_privileges_after_truncate(&self, caller: &Credentials, file: &File) -> Result<(), Errno> {
        let stat = file.metadata().map_err(|e| errno(&e))?;
        let mode = mode_after_truncate_by(caller, &stat);
        if mode == stat.mode & 0o7777 {
            return Ok(());
        }
        let set = SetAttributes { mode: Some(mode), ..SetAttributes::default() };
        as_caller(Credentials::root(), || file.set_attributes(&set)).map_err(|e| errno(&e))
    }

    /// Changes the attributes of inode `ino` as `set` says, for the caller of the surrounding
    /// [`as_caller`]: by its path, else through a handle open on it (an unlinked, open file).
    fn change_attributes(&self, ino: INodeNo, set: &SetAttributes) -> Result<(), Errno> {
        let changed = match self.fs.path_of(ino.0).map(|_| self.path_naming(ino)) {
            Some(path) => self.fs.set_attributes(&path?, set, false),
            None => match self.open_handle_of(ino.0, false) {
                Some(file) => file.set_attributes(set),
                None => return Err(Errno::ENOENT),
            },
        };
        changed.map_err(|e| errno(&e))
    }

    fn listing(&self, ino: INodeNo) -> Result<Listing, Errno> {
        let path = self.path(ino)?;
        let entries = self.fs.read_dir(&path).map_err(|e| errno(&e))?;
        let parent = if ino == INodeNo::ROOT {
            ino.0
        } else {
            let up = path.rsplit_once('/').map_or("/", |(dir, _)| if dir.is_empty() { "/" } else { dir });
            self.fs.metadata(up).map_err(|e| errno(&e))?.ino
        };
        let mut listing = Vec::with_capacity(entries.len() + 2);
        listing.push((ino.0, FileType::Directory, ".".to_string()));
        listing.push((parent, FileType::Directory, "..".to_string()));
        listing.extend(entries.into_iter().map(|e| (e.ino, file_type(e.kind), e.name)));
        Ok(listing)
    }
}

/// Answers a getxattr/listxattr: the size when asked with size 0, ERANGE when `bytes` do not
/// fit, else the bytes.
fn xattr_reply(reply: ReplyXattr, size: u32, bytes: &[u8]) {
    if size == 0 {
        reply.size(bytes.len() as u32);
    } else if (size as usize) < bytes.len() {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(bytes);
    }
}

/// Answers `reply` with the value or the errno.
macro_rules! answer {
    ($reply:expr, $result:expr, |$v:ident| $ok:expr) => {
        match $result {
            Ok($v) => $ok,
            Err(e) => $reply.error(e),
        }
    };
}

impl Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Best effort: a kernel that caps these keeps its own limits.
        let _ = config.set_max_write(MAX_WRITE);
        // O_TRUNC arrives with the open (one request instead of open + setattr).
        let _ = config.add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC);
        // Cached pages are dropped when the file's size or mtime changed (see OPEN_FLAGS).
        let _ = config.add_capabilities(InitFlags::FUSE_AUTO_INVAL_DATA);
        Ok(())
    }

    fn destroy(&mut self) {
        // Every handle the kernel did not release is closed here, before the pool's final
        // checkpoint: an unlinked file's blocks are freed now.
        self.files.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.dirs.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let result = self.child(parent, name).and_then(|path| self.entry(&path));
        answer!(reply, result, |attr| reply.entry(&CACHE_TTL, &attr, Generation(0)));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        answer!(reply, self.stat(ino, fh), |s| reply.attr(&CACHE_TTL, &self.attr(&s)));
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let result =
            self.as_requester(req, || self.set_attributes(ino, mode, uid, gid, size, atime, mtime, fh));
        answer!(reply, result, |s| reply.attr(&CACHE_TTL, &self.attr(&s)));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let result = self.path(ino).and_then(|path| self.fs.read_link(&path).map_err(|e| errno(&e)));
        answer!(reply, result, |target| reply.data(target.as_bytes()));
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            // Devices, FIFOs and sockets need an inode kind the pool does not have.
            return reply.error(Errno::EPERM);
        }
        let result = self.child(parent, name).and_then(|path| {
            let mut create = OpenOptions::new();
            create.write(true).create_new(true).mode(mode & 0o7777);
            let file = self.as_requester(req, || self.fs.open(&path, &create)).map_err(|e| errno(&e))?;
            file.metadata().map(|s| self.attr(&s)).map_err(|e| errno(&e))
        });
        answer!(reply, result, |attr| reply.entry(&CACHE_TTL, &attr, Generation(0)));
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, reply: ReplyEntry) {
        let result = self.child(parent, name).and_then(|path| {
            self.as_requester(req, || self.fs.create_dir_with_mode(&path, mode & 0o7777))
                .map_err(|e| errno(&e))?;
            self.entry(&path)
        });
        answer!(reply, result, |attr| reply.entry(&CACHE_TTL, &attr, Generation(0)));
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = self
            .child(parent, name)
            .and_then(|path| self.as_requester(req, || self.fs.remove_file(&path)).map_err(|e| errno(&e)));
        answer!(reply, result, |_v| reply.ok());
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = self
            .child(parent, name)
            .and_then(|path| self.as_requester(req, || self.fs.remove_dir(&path)).map_err(|e| errno(&e)));
        answer!(reply, result, |_v| reply.ok());
    }

    fn symlink(&self, req: &Request, parent: INodeNo, name: &OsStr, target: &Path, reply: ReplyEntry) {
        let result = self.child(parent, name).and_then(|path| {
            let target = target.to_str().ok_or(Errno::EINVAL)?;
            self.as_requester(req, || self.fs.symlink(target, &path)).map_err(|e| errno(&e))?;
            self.fs.symlink_metadata(&path).map(|s| self.attr(&s)).map_err(|e| errno(&e))
        });
        answer!(reply, result, |attr| reply.entry(&CACHE_TTL, &attr, Generation(0)));
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let result = self.child(parent, name).and_then(|from| {
            let to = self.child(newparent, newname)?;
            self.as_requester(req, || self.fs.rename_with_flags(&from, &to, flags.bits()))
                .map_err(|e| errno(&e))
        });
        answer!(reply, result, |_v| reply.ok());
    }

    fn link(&self, req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let result = self.path(ino).and_then(|existing| {
            let new = self.child(newparent, newname)?;
            self.as_requester(req, || self.fs.hard_link(&existing, &new)).map_err(|e| errno(&e))?;
            self.fs.symlink_metadata(&new).map(|s| self.attr(&s)).map_err(|e| errno(&e))
        });
        answer!(reply, result, |attr| reply.entry(&CACHE_TTL, &attr, Generation(0)));
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        // Every handle can read: the page cache reads through whichever handle it has. O_APPEND
        // is not passed on: the kernel puts appended writes at EOF itself, and a write-back of a
        // mapped page through an append handle must land where the page is.
        let mut options = OpenOptions::new();
        options.read(true);
        let truncate = flags.acc_mode() != OpenAccMode::O_RDONLY && flags.0 & libc::O_TRUNC != 0;
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            options.write(true).truncate(truncate);
        }
        let result = self.open_ino(ino, &options).and_then(|file| {
            if truncate && req.uid() != 0 {
                self.drop_privileges_after_truncate(&caller(req, &self.groups), &file)?;
            }
            Ok(self.remember(file))
        });
        answer!(reply, result, |fh| reply.opened(FileHandle(fh), OPEN_FLAGS));
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        thread_local! {
            /// Each FUSE thread reads into its own buffer, kept between requests: a fresh one
            /// would be zeroed first, for every request.
            static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUFFER.with_borrow_mut(|buf| {
            if buf.len() < size as usize {
                buf.resize(size as usize, 0);
            }
            let result = self.file(fh).and_then(|file| {
                let buf = &mut buf[..size as usize];
                let mut done = 0;
                // A short read means EOF to the page cache: read until full or at EOF.
                while done < buf.len() {
                    let n = file.read_at(&mut buf[done..], offset + done as u64).map_err(|e| errno(&e))?;
                    if n == 0 {
                        break;
                    }
                    done += n;
                }
                Ok(done)
            });
            answer!(reply, result, |done| reply.data(&buf[..done]));
        });
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let result = self.file(fh).and_then(|file| {
            let mut done = 0;
            while done < data.len() {
                match file.write_at(&data[done..], offset + done as u64) {
                    Ok(0) => break,
                    Ok(n) => done += n,
                    // A write that made progress is short, as the kernel's are (the rest met
                    // the largest file size, or no space): the bytes written stay written.
                    Err(_) if done > 0 => break,
                    Err(e) => return Err(errno(&e)),
                }
            }
            Ok(done as u32)
        });
        answer!(reply, result, |n| reply.written(n));
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Every write reached the pool when its request was answered: nothing is left to flush
        // (close is no sync point: fsync is).
        answer!(reply, self.file(fh), |_f| reply.ok());
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let file = self.files.lock().unwrap_or_else(|e| e.into_inner()).remove(&fh.0);
        // The close (the last one of an unlinked file frees it) runs outside the table's lock.
        drop(file);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        let result = self.file(fh).and_then(|file| file.sync_all().map_err(|e| errno(&e)));
        answer!(reply, result, |_v| reply.ok());
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let result = self.listing(ino).map(|listing| {
            let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
            self.dirs.lock().unwrap_or_else(|e| e.into_inner()).insert(fh, Arc::new(listing));
            fh
        });
        answer!(reply, result, |fh| reply.opened(FileHandle(fh), FopenFlags::empty()));
    }

    fn readdir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let listing = self.dirs.lock().unwrap_or_else(|e| e.into_inner()).get(&fh.0).cloned();
        let Some(listing) = listing else { return reply.error(Errno::EBADF) };
        for (i, (ino, kind, name)) in listing.iter().enumerate().skip(offset as usize) {
            // The offset of an entry is where the next readdir starts.
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.dirs.lock().unwrap_or_else(|e| e.into_inner()).remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // The pool has one log: every change that was answered becomes durable (group commit).
        let result = self.fs.sync().map_err(|e| errno(&e));
        answer!(reply, result, |_v| reply.ok());
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // The figures of `ferrodax df`: so df(1) on the mount says what it says.
        let result = self.fs.space_usage().and_then(|usage| Ok((usage, self.fs.try_stats()?.inodes)));
        answer!(reply, result.map_err(|e| errno(&e)), |figures| {
            let (usage, inodes) = figures;
            // Inodes have no fixed table: each new one needs room in the metadata, so the free
            // "inodes" are counted as the blocks a new file could still get.
            reply.statfs(
                usage.total_blocks,
                usage.free_blocks,
                usage.available_blocks,
                inodes + usage.available_blocks,
                usage.available_blocks,
                BLOCK,
                NAME_MAX,
                BLOCK,
            )
        });
    }

    // Extended attributes: the user. namespace is the pool's; a name in any other namespace has
    // no value (ENODATA at once, without asking the pool: the kernel looks for
    // security.capability before writes) and cannot be set (EOPNOTSUPP).

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let result = name_str(name).and_then(|name| {
            let path = self.path_naming(ino)?;
            self.as_requester(req, || self.fs.set_xattr(&path, name, value, flags as u32))
                .map_err(|e| errno(&e))
        });
        answer!(reply, result, |_v| reply.ok());
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if !name.as_encoded_bytes().starts_with(b"user.") {
            return reply.error(Errno::ENODATA);
        }
        let result = name_str(name).and_then(|name| {
            let path = self.path_naming(ino)?;
            self.as_requester(req, || self.fs.get_xattr(&path, name)).map_err(|e| errno(&e))
        });
        answer!(reply, result, |value| xattr_reply(reply, size, &value));
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let result = self.path_naming(ino).and_then(|path| {
            // The kernel asks about a symlink itself (llistxattr); the path call would follow it
            // and list its target's. A symlink has no user. attributes of its own.
            if self.fs.symlink_metadata(&path).map_err(|e| errno(&e))?.kind == InodeKind::Symlink {
                return Ok(Vec::new());
            }
            self.fs.list_xattrs(&path).map_err(|e| errno(&e))
        });
        answer!(reply, result, |names| {
            let mut list = Vec::new();
            for n in names {
                list.extend_from_slice(n.as_bytes());
                list.push(0);
            }
            xattr_reply(reply, size, &list)
        });
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = name_str(name).and_then(|name| {
            let path = self.path_naming(ino)?;
            self.as_requester(req, || self.fs.remove_xattr(&path, name)).map_err(|e| errno(&e))
        });
        answer!(reply, result, |_v| reply.ok());
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        // The mount asks the kernel to check permissions itself (default_permissions), which then
        // does not send access(2) here; answered anyway with the pool's own rules.
        let result = self.path_naming(ino).and_then(|path| {
            self.as_requester(req, || self.fs.access(&path, mask.bits() as u32)).map_err(|e| errno(&e))
        });
        answer!(reply, result, |_v| reply.ok());
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let result = self.child(parent, name).and_then(|path| {
            let mut options = OpenOptions::new();
            options.read(true).write(true).mode(mode & 0o7777);
            if flags & libc::O_EXCL != 0 {
                options.create_new(true);
            } else {
                options.create(true).truncate(flags & libc::O_TRUNC != 0);
            }
            let file = self.as_requester(req, || self.fs.open(&path, &options)).map_err(|e| errno(&e))?;
            let attr = file.metadata().map(|s| self.attr(&s)).map_err(|e| errno(&e))?;
            Ok((attr, self.remember(file)))
        });
        answer!(reply, result, |made| reply.created(
            &CACHE_TTL,
            &made.0,
            Generation(0),
            FileHandle(made.1),
            OPEN_FLAGS
        ));
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let result = self.file(fh).and_then(|file| pending::fallocate(&self.fs, &file, offset, length, mode));
        answer!(reply, result, |_v| reply.ok());
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let result = self.file(fh).and_then(|file| pending::lseek(&self.fs, &file, offset, whence));
        answer!(reply, result, |position| reply.offset(position));
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        _ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        let result = self.file(fh_in).and_then(|src| {
            let dst = self.file(fh_out)?;
            pending::copy_file_range(&self.fs, (&src, offset_in), (&dst, offset_out), len, flags.bits())
        });
        answer!(reply, result, |n| reply.written(n));
    }
}
