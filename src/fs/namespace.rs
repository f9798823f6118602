//! The namespace: paths, names, hard links, symlinks, attributes (mode, owner, times), extended
//! attributes, rename with its flags, and the permission checks of each, for the caller of
//! [`Credentials::current`].
//!
//! Owns path resolution as Linux does it — paths are resolved from the pool's root directory
//! (a relative path too: the pool has no working directory), every directory on the way must
//! grant search permission, symlinks in the middle of a path are followed (at most
//! [`MAX_SYMLINK_FOLLOWS`], then ELOOP; an absolute target starts again at the pool's root), a
//! final symlink is followed only where the operation says so, and a trailing slash demands a
//! directory (ENOTDIR) — and the rules of each namespace operation: which errno for which
//! mistake, which times change (a changed entry stamps its directory's mtime and ctime, a changed
//! inode its ctime; reads never write: atime behaves as under `noatime`), and what one record
//! holds. Must never touch file data: the data operations live in `fs/mod.rs` and `falloc`.

use super::access::{Credentials, MAY_EXEC, MAY_READ, MAY_WRITE, S_ISGID, S_ISUID};
use super::journal::now_ns;
use super::state::Inode;
use super::validate::{name_problem, xattr_problem};
use super::{FileSystem, Stat};
use crate::error::{Error, Result};
use crate::format::record::{InodeAttrs, InodeKind, Mutation};
use crate::format::{
    BLOCK_SIZE, MAX_NAME_LEN, MAX_SYMLINK_LEN, MAX_XATTR_NAME_LEN, MAX_XATTR_VALUE_LEN, ROOT_INO,
};
use std::collections::VecDeque;

/// How many symlinks one path may go through before ELOOP (Linux's MAXSYMLINKS).
pub const MAX_SYMLINK_FOLLOWS: usize = 40;

/// The most names one file may have (EMLINK beyond), as XFS allows.
pub const MAX_LINKS: u32 = i32::MAX as u32;

/// `setxattr` flag: fail with EEXIST if the attribute exists.
pub const XATTR_CREATE: u32 = 1;
/// `setxattr` flag: fail with ENODATA if the attribute does not exist.
pub const XATTR_REPLACE: u32 = 2;

/// `renameat2` flag: fail with EEXIST if the destination exists.
pub const RENAME_NOREPLACE: u32 = 1;
/// `renameat2` flag: swap the two names, which must both exist.
pub const RENAME_EXCHANGE: u32 = 2;
/// `renameat2` flag: leave a whiteout (overlayfs); not supported here.
pub const RENAME_WHITEOUT: u32 = 4;

/// A time to set with [`FileSystem::set_attributes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TimeSet {
    /// The current time (`UTIME_NOW`): the owner or anyone with write permission may.
    Now,
    /// This time, ns since the epoch: only the owner (or root) may.
    At(i64),
}

/// The attributes `chmod`, `chown` and `utimensat` change; `None` keeps one as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SetAttributes {
    /// New permission bits (`& 0o7777`).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New access time.
    pub atime: Option<TimeSet>,
    /// New modification time.
    pub mtime: Option<TimeSet>,
}

/// How an open resolves and checks its path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenIntent {
    /// Read access is asked for.
    pub read: bool,
    /// Write access is asked for.
    pub write: bool,
    /// Create the file if the name is free.
    pub create: bool,
    /// Fail with EEXIST if the name exists.
    pub exclusive: bool,
    /// Truncate to 0 when opened for writing.
    pub truncate: bool,
    /// Permission bits of a created file.
    pub mode: u32,
    /// Do not follow a final symlink (`O_NOFOLLOW`: ELOOP on one).
    pub no_follow: bool,
}

/// The components of a path ("." kept: it demands a directory, and follows a symlink before it).
/// A symlink's target as a path to walk: its bytes when they are UTF-8, else the empty path
/// (which names the directory the link is in).
pub(super) fn target_path(target: &[u8]) -> &str {
    std::str::from_utf8(target).unwrap_or_default()
}

pub(super) fn components(path: &str) -> impl Iterator<Item = &[u8]> {
    path.as_bytes().split(|&b| b == b'/').filter(|c| !c.is_empty())
}

/// Whether the last component of `path` is "." or "..": such a path names a directory through
/// the walk, never an entry to create or remove.
fn ends_in_dot(path: &str) -> bool {
    matches!(path.trim_end_matches('/').rsplit('/').next(), Some(".") | Some(".."))
}

fn shown(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

impl FileSystem {
    /// The inode of `path`, following every symlink on the way and a final one.
    pub fn resolve(&self, path: &str) -> Result<u64> {
        self.walk(path, true)
    }

    /// The inode of `path`, following symlinks on the way but not a final one (`lstat`).
    pub fn resolve_no_follow(&self, path: &str) -> Result<u64> {
        self.walk(path, false)
    }

    /// Walks `path` from the root (see the module documentation).
    fn walk(&self, path: &str, follow_last: bool) -> Result<u64> {
        self.not_removed()?;
        let cred = Credentials::current();
        let mut pending: VecDeque<Vec<u8>> = components(path).map(<[u8]>::to_vec).collect();
        let needs_dir = path.ends_with('/') && !pending.is_empty();
        let mut cur = ROOT_INO;
        let mut follows = 0;
        while let Some(name) = pending.pop_front() {
            let dir = self.state.inode(cur)?;
            if !dir.is_dir() {
                return Err(Error::NotDir(path.into()));
            }
            if !cred.permits(&dir.attrs, MAY_EXEC) {
                return Err(Error::AccessDenied(path.into()));
            }
            if name == b"." {
                continue;
            }
            if name == b".." {
                cur = dir.parent();
                continue;
            }
            let next = dir.entry(&name).ok_or_else(|| Error::NotFound(path.into()))?;
            let node = self.state.inode(next)?;
            let last = pending.is_empty();
            if node.attrs.kind == InodeKind::Symlink && (!last || follow_last || needs_dir) {
                follows += 1;
                if follows > MAX_SYMLINK_FOLLOWS {
                    return Err(Error::Loop(path.into()));
                }
                let target = target_path(node.target());
                if node.target().starts_with(b"/") {
                    cur = ROOT_INO;
                }
                for c in components(target).collect::<Vec<_>>().into_iter().rev() {
                    pending.push_front(c.to_vec());
                }
                continue;
            }
            cur = next;
        }
        if needs_dir && !self.state.inode(cur)?.is_dir() {
            return Err(Error::NotDir(path.into()));
        }
        Ok(cur)
    }

    /// Splits a path into its parent directory's inode (symlinks followed) and its last name,
    /// checking the name; the flag says whether the path ended in a slash.
    fn resolve_parent(&self, path: &str) -> Result<(u64, Vec<u8>, bool)> {
        let trimmed = path.trim_end_matches('/');
        let trailing_slash = trimmed.len() != path.len();
        let (dir, name) = match trimmed.rfind('/') {
            Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
            None => ("", trimmed),
        };
        if name.is_empty() || name == "." || name == ".." {
            return Err(Error::Invalid(format!("{path}: not a name that can be created or removed")));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(Error::NameTooLong(path.into()));
        }
        if name.contains('\0') {
            return Err(Error::Invalid(format!("{path}: name contains NUL")));
        }
        let parent = self.walk(if dir.is_empty() { "/" } else { dir }, true)?;
        let inode = self.state.inode(parent)?;
        if !inode.is_dir() {
            return Err(Error::NotDir(path.into()));
        }
        if !Credentials::current().permits(&inode.attrs, MAY_EXEC) {
            return Err(Error::AccessDenied(path.into()));
        }
        Ok((parent, name.as_bytes().to_vec(), trailing_slash))
    }

    /// Looks the last name of `path` up in its directory, without following a final symlink.
    pub fn lookup(&self, path: &str) -> Result<Option<u64>> {
        let (parent, name, _) = self.resolve_parent(path)?;
        Ok(self.state.inode(parent)?.entry(&name))
    }

    /// Fails with EACCES unless the caller may change the entries of directory `dir`.
    fn may_change_entries(&self, dir: u64, path: &str) -> Result<&Inode> {
        let inode = self.state.inode(dir)?;
        if !Credentials::current().permits(&inode.attrs, MAY_WRITE | MAY_EXEC) {
            return Err(Error::AccessDenied(path.into()));
        }
        Ok(inode)
    }

    /// Fails unless the caller may remove the entry of `dir` naming `child` (write and search on
    /// the directory, EACCES; the sticky bit, EPERM).
    fn may_delete(&self, dir: u64, child: u64, path: &str) -> Result<()> {
        let dir_attrs = &self.may_change_entries(dir, path)?.attrs;
        if !Credentials::current().may_delete_from(dir_attrs, &self.state.inode(child)?.attrs) {
            return Err(Error::NotPermitted(format!(
                "{path}: the directory is sticky and the caller owns neither it nor the entry"
            )));
        }
        Ok(())
    }

    /// A directory's attributes after an entry changed: link count moved by `nlink_delta`,
    /// modification and change times `now`.
    fn touched_dir(&self, dir: u64, nlink_delta: i32, now: i64) -> Mutation {
        let mut attrs = self.state.inodes[&dir].attrs.clone();
        attrs.nlink = (attrs.nlink as i64 + nlink_delta as i64) as u32;
        attrs.mtime_ns = now;
        attrs.ctime_ns = now;
        Mutation::PutInode(attrs)
    }

    fn new_inode(&mut self, path: &str, kind: InodeKind, mode: u32, target: &[u8]) -> Result<u64> {
        self.writable()?;
        let (parent, name, trailing_slash) = self.resolve_parent(path)?;
        if self.state.inode(parent)?.entry(&name).is_some() {
            return Err(Error::Exists(path.into()));
        }
        if trailing_slash && kind != InodeKind::Dir {
            return Err(Error::IsDir(format!("{path}: a name ending in '/' names a directory")));
        }
        let parent_attrs = self.may_change_entries(parent, path)?.attrs.clone();
        // Every new inode grows the next checkpoint; keep room for it.
        self.ensure_metadata_room(1)?;
        let cred = Credentials::current();
        let now = now_ns();
        let ino = self.state.next_ino;
        // The group of a new inode: the directory's if it is set-group-ID (and a new directory
        // inherits the bit), else the caller's.
        let sgid_dir = parent_attrs.mode & S_ISGID != 0;
        let gid = if sgid_dir { parent_attrs.gid } else { cred.gid };
        let mut mode = match kind {
            InodeKind::Symlink => 0o777,
            // vfs_mkdir keeps the permission bits and the sticky bit; set-group-ID comes only
            // from the parent, below.
            InodeKind::Dir => mode & 0o1777,
            _ => mode & 0o7777,
        };
        if kind == InodeKind::Dir {
            // mkdir(2) keeps the permission and sticky bits; set-group-ID comes from the parent.
            mode &= 0o1777;
            if sgid_dir {
                mode |= S_ISGID;
            }
        } else if kind == InodeKind::File
            && mode & (S_ISGID | 0o010) == (S_ISGID | 0o010)
            && !cred.is_root()
            && !cred.in_group(gid)
        {
            mode &= !S_ISGID;
        }
        let attrs = InodeAttrs {
            ino,
            kind,
            mode,
            uid: cred.uid,
            gid,
            size: target.len() as u64,
            nlink: if kind == InodeKind::Dir { 2 } else { 1 },
            atime_ns: now,
            mtime_ns: now,
            ctime_ns: now,
        };
        let dir_delta = if kind == InodeKind::Dir { 1 } else { 0 };
        let mut tx = vec![Mutation::PutInode(attrs)];
        if kind == InodeKind::Symlink {
            tx.push(Mutation::SetTarget { ino, target: target.to_vec() });
        }
        tx.push(Mutation::Link { dir: parent, name, ino });
        tx.push(self.touched_dir(parent, dir_delta, now));
        self.commit(&tx)?;
        Ok(ino)
    }

    /// Creates an empty regular file owned by the caller; fails with EEXIST if the name exists.
    pub fn create_file(&mut self, path: &str, mode: u32) -> Result<u64> {
        self.new_inode(path, InodeKind::File, mode, &[])
    }

    /// Creates a directory owned by the caller.
    pub fn mkdir(&mut self, path: &str, mode: u32) -> Result<u64> {
        self.new_inode(path, InodeKind::Dir, mode, &[])
    }

    /// Creates a symlink at `path` pointing at `target` (stored as given, never checked).
    pub fn symlink(&mut self, target: &str, path: &str) -> Result<u64> {
        if target.is_empty() {
            return Err(Error::NotFound(format!("{path}: an empty symlink target")));
        }
        if target.len() > MAX_SYMLINK_LEN {
            return Err(Error::NameTooLong(format!("{path}: a symlink target of {} bytes", target.len())));
        }
        if target.contains('\0') {
            return Err(Error::Invalid(format!("{path}: a symlink target with NUL")));
        }
        self.new_inode(path, InodeKind::Symlink, 0o777, target.as_bytes())
    }

    /// The target of symlink `ino` (EINVAL for anything else).
    pub fn read_link(&self, ino: u64) -> Result<Vec<u8>> {
        self.not_removed()?;
        let inode = self.state.inode(ino)?;
        if inode.attrs.kind != InodeKind::Symlink {
            return Err(Error::Invalid(format!("inode {ino} is not a symlink")));
        }
        Ok(inode.target().clone())
    }

    /// Gives the file or symlink at `existing` (a final symlink is not followed, as `link(2)`)
    /// the further name `new`. EPERM for a directory, or for another user's file the caller may
    /// not read and write (Linux's `protected_hardlinks`), EEXIST when `new` exists, EMLINK past
    /// [`MAX_LINKS`].
    pub fn hard_link(&mut self, existing: &str, new: &str) -> Result<()> {
        self.writable()?;
        // do_linkat's order: the old path, the new name (EEXIST), may_linkat (EPERM), then
        // vfs_link (EACCES on the directory, EPERM for a directory, ENOENT, EMLINK).
        let ino = self.resolve_no_follow(existing)?;
        let (parent, name, trailing_slash) = self.resolve_parent(new)?;
        if self.state.inode(parent)?.entry(&name).is_some() {
            return Err(Error::Exists(new.into()));
        }
        if trailing_slash {
            return Err(Error::NotDir(new.into()));
        }
        // fs.protected_hardlinks (on by default): a caller may link only a file it owns, or a
        // regular file it may read and write that is neither set-user-ID nor executable
        // set-group-ID.
        let cred = Credentials::current();
        let a = &self.state.inode(ino)?.attrs;
        let safe = a.kind == InodeKind::File
            && a.mode & S_ISUID == 0
            && a.mode & (S_ISGID | 0o010) != (S_ISGID | 0o010)
            && cred.permits(a, MAY_READ | MAY_WRITE);
        if !cred.owns(a) && !safe {
            return Err(Error::NotPermitted(format!(
                "{existing}: linking a file of another user needs read and write permission on it \
                 (protected_hardlinks)"
            )));
        }
        self.may_change_entries(parent, new)?;
        let inode = self.state.inode(ino)?;
        if inode.is_dir() {
            return Err(Error::NotPermitted(format!("{existing}: a directory cannot get a second name")));
        }
        if inode.attrs.nlink == 0 {
            return Err(Error::NotFound(format!("{existing}: unlinked")));
        }
        if inode.attrs.nlink >= MAX_LINKS {
            return Err(Error::TooManyLinks(existing.into()));
        }
        self.ensure_metadata_room(0)?;
        let now = now_ns();
        let mut attrs = self.state.inodes[&ino].attrs.clone();
        attrs.nlink += 1;
        attrs.ctime_ns = now;
        let tx = vec![
            Mutation::PutInode(attrs),
            Mutation::Link { dir: parent, name, ino },
            self.touched_dir(parent, 0, now),
        ];
        self.commit(&tx)
    }

    /// Removes an empty directory.
    pub fn rmdir(&mut self, path: &str) -> Result<()> {
        self.writable()?;
        if path.trim_matches('/').is_empty() {
            return Err(Error::Busy(format!("{path}: the root directory")));
        }
        let (parent, name, _) = self.resolve_parent(path)?;
        let ino = self.state.inode(parent)?.entry(&name).ok_or_else(|| Error::NotFound(path.into()))?;
        // vfs_rmdir's order: may_delete (permission, sticky bit), then the kind, then emptiness.
        self.may_delete(parent, ino, path)?;
        let inode = self.state.inode(ino)?;
        if !inode.is_dir() {
            return Err(Error::NotDir(path.into()));
        }
        if !inode.children().is_empty() {
            return Err(Error::NotEmpty(path.into()));
        }
        let tx = vec![
            Mutation::Unlink { dir: parent, name, ino },
            Mutation::FreeInode { ino },
            self.touched_dir(parent, -1, now_ns()),
        ];
        self.commit(&tx)
    }

    /// Removes a name of a file or symlink; the inode goes with its last name, at once or, if
    /// it is open, at its last close.
    pub fn unlink(&mut self, path: &str) -> Result<()> {
        self.writable()?;
        let (parent, name, trailing_slash) = self.resolve_parent(path)?;
        let ino = self.state.inode(parent)?.entry(&name).ok_or_else(|| Error::NotFound(path.into()))?;
        // do_unlinkat's order: a trailing slash is judged before permission, a directory after.
        let is_dir = self.state.inode(ino)?.is_dir();
        if trailing_slash {
            return Err(if is_dir { Error::IsDir(path.into()) } else { Error::NotDir(path.into()) });
        }
        self.may_delete(parent, ino, path)?;
        if is_dir {
            return Err(Error::IsDir(path.into()));
        }
        let now = now_ns();
        let mut tx = vec![Mutation::Unlink { dir: parent, name, ino }];
        self.drop_name_mutations(ino, now, &mut tx);
        tx.push(self.touched_dir(parent, 0, now));
        self.commit(&tx)
    }

    /// Mutations that take one name away from a file or symlink whose entry the record already
    /// removes: one link fewer, and at the last one the inode is freed, or kept as an open orphan.
    fn drop_name_mutations(&self, ino: u64, now: i64, tx: &mut Vec<Mutation>) {
        let mut attrs = self.state.inodes[&ino].attrs.clone();
        attrs.nlink -= 1;
        attrs.ctime_ns = now;
        if attrs.nlink == 0 && self.open_counts.get(&ino).copied().unwrap_or(0) == 0 {
            self.release_inode_mutations(ino, tx);
        } else {
            tx.push(Mutation::PutInode(attrs));
        }
    }

    /// Renames `from` to `to`, replacing a compatible `to` (POSIX rename).
    pub fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        self.rename_with_flags(from, to, 0)
    }

    /// `renameat2`: [`FileSystem::rename`] with [`RENAME_NOREPLACE`] (EEXIST when `to` exists)
    /// or [`RENAME_EXCHANGE`] (swap two existing names, of any kinds). Unknown flags, both at
    /// once, or [`RENAME_WHITEOUT`] are EINVAL.
    pub fn rename_with_flags(&mut self, from: &str, to: &str, flags: u32) -> Result<()> {
        self.writable()?;
        if flags & !(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT) != 0
            || flags & RENAME_WHITEOUT != 0
            || flags == RENAME_NOREPLACE | RENAME_EXCHANGE
        {
            return Err(Error::Invalid(format!("rename flags {flags:#x}")));
        }
        // do_renameat2's order: both parents, the source, NOREPLACE and EXCHANGE, trailing
        // slashes, lock_rename's ancestry traps; then vfs_rename's permission and kind checks.
        let (src_parent, src_name, src_slash) = self.resolve_parent(from)?;
        let (dst_parent, dst_name, dst_slash) = self.resolve_parent(to)?;
        let ino =
            self.state.inode(src_parent)?.entry(&src_name).ok_or_else(|| Error::NotFound(from.into()))?;
        let moving_dir = self.state.inode(ino)?.is_dir();
        let existing = self.state.inode(dst_parent)?.entry(&dst_name);
        if flags & RENAME_NOREPLACE != 0 && existing.is_some() {
            return Err(Error::Exists(to.into()));
        }
        let exchange = flags & RENAME_EXCHANGE != 0;
        if exchange {
            let Some(other) = existing else { return Err(Error::NotFound(to.into())) };
            if dst_slash && !self.state.inode(other)?.is_dir() {
                return Err(Error::NotDir(to.into()));
            }
        }
        if !moving_dir && (src_slash || !exchange && dst_slash) {
            return Err(Error::NotDir(if src_slash { from.into() } else { to.into() }));
        }
        if src_parent != dst_parent {
            if self.is_ancestor_or_self(ino, dst_parent, to)? {
                return Err(Error::Invalid(format!("cannot move {from} inside itself ({to})")));
            }
            if let Some(target) = existing {
                if self.is_ancestor_or_self(target, src_parent, from)? {
                    return Err(if exchange {
                        Error::Invalid(format!("{to} contains {from}: they cannot swap"))
                    } else {
                        Error::NotEmpty(format!("{to} contains {from}"))
                    });
                }
            }
        }
        if let (true, Some(other)) = (exchange, existing) {
            return self.exchange(from, to, (src_parent, src_name, ino), (dst_parent, dst_name, other));
        }
        // Two names of one inode: POSIX says rename does nothing.
        if existing == Some(ino) {
            return Ok(());
        }
        self.may_delete(src_parent, ino, from)?;
        match existing {
            Some(target) => {
                // may_delete: permission, the sticky bit, then the kinds must agree.
                self.may_delete(dst_parent, target, to)?;
                match (moving_dir, self.state.inode(target)?.is_dir()) {
                    (true, false) => return Err(Error::NotDir(to.into())),
                    (false, true) => return Err(Error::IsDir(to.into())),
                    _ => {}
                }
            }
            None => {
                self.may_change_entries(dst_parent, to)?;
            }
        }
        if moving_dir && src_parent != dst_parent {
            // Its ".." changes: write permission on the directory itself.
            if !Credentials::current().permits(&self.state.inodes[&ino].attrs, MAY_WRITE) {
                return Err(Error::AccessDenied(from.into()));
            }
        }
        if dst_name.len() > src_name.len() {
            // A longer name grows the next checkpoint: keep room for it, as create does.
            self.ensure_metadata_room(0)?;
        }
        let now = now_ns();
        let mut tx = vec![Mutation::Unlink { dir: src_parent, name: src_name, ino }];
        let mut dst_dir_delta = if moving_dir && src_parent != dst_parent { 1 } else { 0 };
        if let Some(target) = existing {
            // The kinds agree (checked above): an empty directory goes, a file loses a name.
            let t = self.state.inode(target)?;
            if t.is_dir() {
                if !t.children().is_empty() {
                    return Err(Error::NotEmpty(to.into()));
                }
                tx.push(Mutation::Unlink { dir: dst_parent, name: dst_name.clone(), ino: target });
                tx.push(Mutation::FreeInode { ino: target });
                dst_dir_delta -= 1;
            } else {
                tx.push(Mutation::Unlink { dir: dst_parent, name: dst_name.clone(), ino: target });
                self.drop_name_mutations(target, now, &mut tx);
            }
        }
        tx.push(Mutation::Link { dir: dst_parent, name: dst_name, ino });
        let mut attrs = self.state.inodes[&ino].attrs.clone();
        attrs.ctime_ns = now;
        tx.push(Mutation::PutInode(attrs));
        if src_parent == dst_parent {
            tx.push(self.touched_dir(src_parent, dst_dir_delta, now));
        } else {
            tx.push(self.touched_dir(src_parent, if moving_dir { -1 } else { 0 }, now));
            tx.push(self.touched_dir(dst_parent, dst_dir_delta, now));
        }
        self.commit(&tx)
    }

    /// Whether `ancestor` is `ino` or one of its ancestors (`path` names `ino` in errors).
    fn is_ancestor_or_self(&self, ancestor: u64, ino: u64, path: &str) -> Result<bool> {
        let mut cur = ino;
        for _ in 0..=self.state.inodes.len() {
            if cur == ancestor {
                return Ok(true);
            }
            if cur == ROOT_INO {
                return Ok(false);
            }
            cur = self.state.inode(cur)?.parent();
        }
        Err(Error::Corrupt(format!("the ancestors of {path} never reach the root")))
    }

    /// `RENAME_EXCHANGE`: the entries `a` and `b` (directory, name, inode) swap their inodes.
    fn exchange(
        &mut self,
        from: &str,
        to: &str,
        a: (u64, Vec<u8>, u64),
        b: (u64, Vec<u8>, u64),
    ) -> Result<()> {
        let (a_dir, a_name, a_ino) = a;
        let (b_dir, b_name, b_ino) = b;
        if a_ino == b_ino {
            return Ok(());
        }
        let a_is_dir = self.state.inode(a_ino)?.is_dir();
        let b_is_dir = self.state.inode(b_ino)?.is_dir();
        self.may_delete(a_dir, a_ino, from)?;
        self.may_delete(b_dir, b_ino, to)?;
        if a_dir != b_dir {
            let cred = Credentials::current();
            for (is_dir, ino, path) in [(a_is_dir, a_ino, from), (b_is_dir, b_ino, to)] {
                if is_dir && !cred.permits(&self.state.inodes[&ino].attrs, MAY_WRITE) {
                    return Err(Error::AccessDenied(path.into()));
                }
            }
        }
        let now = now_ns();
        let mut tx = vec![
            Mutation::Unlink { dir: a_dir, name: a_name.clone(), ino: a_ino },
            Mutation::Unlink { dir: b_dir, name: b_name.clone(), ino: b_ino },
            Mutation::Link { dir: a_dir, name: a_name, ino: b_ino },
            Mutation::Link { dir: b_dir, name: b_name, ino: a_ino },
        ];
        for ino in [a_ino, b_ino] {
            let mut attrs = self.state.inodes[&ino].attrs.clone();
            attrs.ctime_ns = now;
            tx.push(Mutation::PutInode(attrs));
        }
        if a_dir == b_dir {
            tx.push(self.touched_dir(a_dir, 0, now));
        } else {
            // A directory that changes parent moves one subdirectory link with it.
            let a_delta = i32::from(b_is_dir) - i32::from(a_is_dir);
            tx.push(self.touched_dir(a_dir, a_delta, now));
            tx.push(self.touched_dir(b_dir, -a_delta, now));
        }
        self.commit(&tx)
    }

    /// Lists a directory, sorted by name (read permission on it needed).
    pub fn read_dir(&self, path: &str) -> Result<Vec<super::DirEntry>> {
        let ino = self.resolve(path)?;
        let dir = self.state.inode(ino)?;
        if !dir.is_dir() {
            return Err(Error::NotDir(path.into()));
        }
        if !Credentials::current().permits(&dir.attrs, MAY_READ) {
            return Err(Error::AccessDenied(path.into()));
        }
        Ok(dir
            .children()
            .iter()
            .map(|(name, &child)| super::DirEntry {
                name: String::from_utf8_lossy(name).into_owned(),
                ino: child,
                kind: self.state.inodes[&child].attrs.kind,
            })
            .collect())
    }

    /// File attributes.
    pub fn stat(&self, ino: u64) -> Result<Stat> {
        self.not_removed()?;
        let i = self.state.inode(ino)?;
        Ok(Stat {
            ino,
            kind: i.attrs.kind,
            mode: i.attrs.mode,
            uid: i.attrs.uid,
            gid: i.attrs.gid,
            size: i.attrs.size,
            blocks: i.extents.mapped_blocks() * (BLOCK_SIZE / 512),
            nlink: i.attrs.nlink,
            atime_ns: i.attrs.atime_ns,
            mtime_ns: i.attrs.mtime_ns,
            ctime_ns: i.attrs.ctime_ns,
            extents: i.extents.len() as u64,
        })
    }

    /// `access(2)`: whether the caller may `mask` ([`MAY_READ`] | [`MAY_WRITE`] | [`MAY_EXEC`]) the
    /// inode at `path` (EACCES otherwise).
    pub fn access(&self, path: &str, mask: u32) -> Result<()> {
        let ino = self.resolve(path)?;
        self.check_permission(ino, mask, path)
    }

    /// EACCES unless the caller's permission on `ino` covers `mask`; EROFS for write on a
    /// read-only mount.
    pub fn check_permission(&self, ino: u64, mask: u32, path: &str) -> Result<()> {
        let attrs = &self.state.inode(ino)?.attrs;
        if mask & MAY_WRITE != 0 && self.read_only {
            return Err(Error::ReadOnly(path.into()));
        }
        if !Credentials::current().permits(attrs, mask) {
            return Err(Error::AccessDenied(path.into()));
        }
        Ok(())
    }

    /// Resolves, checks and if asked creates or truncates the file an `open(2)` names; returns
    /// its inode. EISDIR for write access to a directory, ELOOP for a final symlink with
    /// `no_follow`, EACCES where the mode bits refuse, ENOENT/EEXIST as `O_CREAT`/`O_EXCL` say.
    pub fn open_path(&mut self, path: &str, intent: &OpenIntent) -> Result<u64> {
        self.not_removed()?;
        let found = if path.trim_matches('/').is_empty() || ends_in_dot(path) {
            Some(self.walk(path, true)?)
        } else {
            let (parent, name, _) = self.resolve_parent(path)?;
            match self.state.inode(parent)?.entry(&name) {
                Some(ino) if self.state.inode(ino)?.attrs.kind == InodeKind::Symlink => {
                    if intent.exclusive {
                        return Err(Error::Exists(path.into()));
                    }
                    if intent.no_follow {
                        return Err(Error::Loop(path.into()));
                    }
                    match self.resolve(path) {
                        Ok(ino) => Some(ino),
                        // A dangling symlink: O_CREAT creates what it points at, as Linux does.
                        Err(Error::NotFound(_)) if intent.create => {
                            let target =
                                String::from_utf8_lossy(self.state.inode(ino)?.target()).into_owned();
                            let dir = path.trim_end_matches('/').rsplit_once('/').map_or("", |(d, _)| d);
                            let created =
                                if target.starts_with('/') { target } else { format!("{dir}/{target}") };
                            return self.open_path(&created, &OpenIntent { no_follow: false, ..*intent });
                        }
                        Err(e) => return Err(e),
                    }
                }
                other => other,
            }
        };
        let ino = match found {
            Some(_) if intent.exclusive => return Err(Error::Exists(path.into())),
            Some(ino) => {
                let inode = self.state.inode(ino)?;
                if path.ends_with('/') && !inode.is_dir() {
                    return Err(Error::NotDir(path.into()));
                }
                if inode.is_dir() && intent.write {
                    return Err(Error::IsDir(path.into()));
                }
                let mask = if intent.read { MAY_READ } else { 0 } | if intent.write { MAY_WRITE } else { 0 };
                self.check_permission(ino, mask, path)?;
                if intent.truncate
                    && intent.write
                    && inode.attrs.kind == InodeKind::File
                    && inode.attrs.size != 0
                {
                    self.truncate(ino, 0)?;
                }
                ino
            }
            None if intent.create => self.create_file(path, intent.mode)?,
            None => return Err(Error::NotFound(path.into())),
        };
        Ok(ino)
    }

    /// `chmod`, `chown`, `utimensat` in one: see [`SetAttributes`]. EPERM where Linux refuses
    /// (changing another's mode or owner, giving a file away, explicit times on another's file),
    /// EACCES for `UTIME_NOW` on another's file without write permission. Any chown of a
    /// non-directory clears set-user-ID (and set-group-ID with group execute, or for a caller
    /// outside the file's group), even by root to the same owner, as Linux does; a caller outside
    /// the group who changes the mode loses set-group-ID. The change time is now.
    pub fn set_attributes(&mut self, ino: u64, set: &SetAttributes) -> Result<()> {
        self.writable()?;
        let cred = Credentials::current();
        let inode = self.state.inode(ino)?;
        let old = inode.attrs.clone();
        let mut attrs = old.clone();
        let what = || self.path_of(ino).unwrap_or_else(|| format!("inode {ino}"));
        let owner = cred.owns(&old);
        if set.uid.is_some_and(|u| u != old.uid) && !cred.is_root() {
            return Err(Error::NotPermitted(format!("{}: only root gives a file away", what())));
        }
        if let Some(gid) = set.gid.filter(|&g| g != old.gid) {
            if !(cred.is_root() || owner && cred.in_group(gid)) {
                return Err(Error::NotPermitted(format!(
                    "{}: only its owner may change its group, and only to a group of theirs",
                    what()
                )));
            }
        }
        if set.uid.is_some() || set.gid.is_some() {
            if !cred.is_root() && !owner {
                return Err(Error::NotPermitted(what()));
            }
            attrs.uid = set.uid.unwrap_or(old.uid);
            attrs.gid = set.gid.unwrap_or(old.gid);
            // chown_common: every chown of a non-directory, even to the same owner and by root,
            // clears set-user-ID, and set-group-ID with group execute or for a caller outside
            // the file's group (setattr_should_drop_sgid).
            if old.kind != InodeKind::Dir {
                attrs.mode &= !S_ISUID;
                if attrs.mode & 0o010 != 0 || !cred.is_root() && !cred.in_group(old.gid) {
                    attrs.mode &= !S_ISGID;
                }
            }
        }
        if let Some(mode) = set.mode {
            // A writer may drop set-user-ID and set-group-ID (the kernel asks for that before a
            // write by someone else: file_remove_privs), nothing more.
            let only_drops_set_id = mode & 0o7777 == old.mode & !(S_ISUID | S_ISGID) && mode != old.mode;
            if !(owner || only_drops_set_id && cred.permits(&old, MAY_WRITE)) {
                return Err(Error::NotPermitted(format!("{}: only its owner may change its mode", what())));
            }
            attrs.mode = mode & 0o7777;
            // setattr_prepare: directories too.
            if !cred.is_root() && !cred.in_group(attrs.gid) {
                attrs.mode &= !S_ISGID;
            }
        }
        for (time, field) in [(set.atime, &mut attrs.atime_ns), (set.mtime, &mut attrs.mtime_ns)] {
            match time {
                None => {}
                Some(TimeSet::Now) => {
                    if !owner && !cred.permits(&old, MAY_WRITE) {
                        return Err(Error::AccessDenied(what()));
                    }
                    *field = now_ns();
                }
                Some(TimeSet::At(ns)) => {
                    if !owner {
                        return Err(Error::NotPermitted(format!(
                            "{}: only its owner may set its times to a given value",
                            what()
                        )));
                    }
                    *field = ns;
                }
            }
        }
        attrs.ctime_ns = now_ns();
        self.commit(&[Mutation::PutInode(attrs)])
    }

    /// Checks an extended attribute name for the `user.` namespace (EOPNOTSUPP for others, ERANGE
    /// for a name too long, EINVAL for one with NUL) and that `ino` may carry one: a symlink has
    /// none (EPERM to set, ENODATA to read, as Linux answers for `user.` on symlinks).
    fn xattr_target(&self, ino: u64, name: &str, setting: bool) -> Result<()> {
        if !name.starts_with("user.") || name.len() == 5 {
            return Err(Error::NotSupported(format!(
                "extended attribute {name:?}: only the user. namespace is kept"
            )));
        }
        if name.len() > MAX_XATTR_NAME_LEN {
            return Err(Error::TooSmall(format!("extended attribute name of {} bytes", name.len())));
        }
        if name.contains('\0') {
            return Err(Error::Invalid(format!("extended attribute name {name:?} contains NUL")));
        }
        if self.state.inode(ino)?.attrs.kind == InodeKind::Symlink {
            return Err(if setting {
                Error::NotPermitted("user. extended attributes are for files and directories".into())
            } else {
                Error::NoAttribute(name.into())
            });
        }
        Ok(())
    }

    /// The value of extended attribute `name` of `ino` (ENODATA if absent; read permission).
    pub fn get_xattr(&self, ino: u64, name: &str) -> Result<Vec<u8>> {
        self.not_removed()?;
        self.xattr_target(ino, name, false)?;
        self.check_permission(ino, MAY_READ, name)?;
        self.state
            .inode(ino)?
            .xattrs()
            .get(name.as_bytes())
            .cloned()
            .ok_or_else(|| Error::NoAttribute(name.into()))
    }

    /// The names of the extended attributes of `ino`, ascending.
    pub fn list_xattrs(&self, ino: u64) -> Result<Vec<String>> {
        self.not_removed()?;
        Ok(self.state.inode(ino)?.xattrs().keys().map(|n| shown(n)).collect())
    }

    /// Sets extended attribute `name` of `ino` ([`XATTR_CREATE`]: EEXIST if it exists;
    /// [`XATTR_REPLACE`]: ENODATA if not; E2BIG past 64 KiB; write permission, and in a sticky
    /// directory ownership).
    pub fn set_xattr(&mut self, ino: u64, name: &str, value: &[u8], flags: u32) -> Result<()> {
        self.writable()?;
        self.xattr_target(ino, name, true)?;
        if flags & !(XATTR_CREATE | XATTR_REPLACE) != 0 {
            return Err(Error::Invalid(format!("setxattr flags {flags:#x}")));
        }
        if value.len() > MAX_XATTR_VALUE_LEN {
            return Err(Error::os(
                format!("extended attribute {name:?}"),
                std::io::Error::from_raw_os_error(libc::E2BIG),
            ));
        }
        self.may_change_xattrs(ino, name)?;
        let exists = self.state.inode(ino)?.xattrs().contains_key(name.as_bytes());
        if exists && flags & XATTR_CREATE != 0 {
            return Err(Error::Exists(name.into()));
        }
        if !exists && flags & XATTR_REPLACE != 0 {
            return Err(Error::NoAttribute(name.into()));
        }
        // What replay would refuse is refused here (the rule lives in one place: validate).
        if let Some(problem) = xattr_problem(name.as_bytes(), value) {
            return Err(Error::Invalid(problem));
        }
        // Both checkpoint chains grow by the name and the value.
        let growth = (name.len() + value.len()) as u64 + 6;
        self.ensure_metadata_room(1 + 2 * growth.div_ceil(BLOCK_SIZE))?;
        let mut attrs = self.state.inodes[&ino].attrs.clone();
        attrs.ctime_ns = now_ns();
        let tx = vec![
            Mutation::SetXattr { ino, name: name.as_bytes().to_vec(), value: Some(value.to_vec()) },
            Mutation::PutInode(attrs),
        ];
        self.commit(&tx)
    }

    /// Removes extended attribute `name` of `ino` (ENODATA if absent).
    pub fn remove_xattr(&mut self, ino: u64, name: &str) -> Result<()> {
        self.writable()?;
        self.xattr_target(ino, name, true)?;
        self.may_change_xattrs(ino, name)?;
        if !self.state.inode(ino)?.xattrs().contains_key(name.as_bytes()) {
            return Err(Error::NoAttribute(name.into()));
        }
        let mut attrs = self.state.inodes[&ino].attrs.clone();
        attrs.ctime_ns = now_ns();
        let tx = vec![
            Mutation::SetXattr { ino, name: name.as_bytes().to_vec(), value: None },
            Mutation::PutInode(attrs),
        ];
        self.commit(&tx)
    }

    fn may_change_xattrs(&self, ino: u64, name: &str) -> Result<()> {
        let attrs = &self.state.inode(ino)?.attrs;
        let cred = Credentials::current();
        // A sticky directory's user attributes are its owner's (Linux's xattr_permission).
        if attrs.kind == InodeKind::Dir && attrs.mode & super::access::S_ISVTX != 0 && !cred.owns(attrs) {
            return Err(Error::NotPermitted(format!("{name}: a sticky directory of another user")));
        }
        self.check_permission(ino, MAY_WRITE, name)
    }
}

/// Whether `name` may be an entry's name (for callers outside the file system).
pub fn valid_name(name: &str) -> bool {
    name_problem(name.as_bytes()).is_none()
}
