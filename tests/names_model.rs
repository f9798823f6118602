//! Model-based property test of the namespace (format 3): names in directory entries, hard
//! links, symlinks, modes and owners, times, `user.` extended attributes, renameat2 flags, and
//! data operations on files that have several names.
//!
//! Guards: after any sequence of create, mkdir, hard_link, symlink, unlink, rmdir, rename (plain,
//! RENAME_NOREPLACE, RENAME_EXCHANGE; over files, directories, another name of the same inode,
//! into subdirectories, a directory below itself), chmod, chown, utimensat (explicit times and
//! UTIME_NOW), set_xattr (XATTR_CREATE, XATTR_REPLACE) and remove_xattr, pwrite, whole-file
//! copies, reflink, dedupe and hole punching through any name of a file, remounts, and a few of
//! these steps run for a user who is not root (`as_caller`), the file system equals a plain model
//! that is a tree of names pointing at inodes and implements Linux's rules itself (path walk with
//! symlinks, the kernel's errno order, generic_permission, the sticky bit, protected_hardlinks,
//! the set-user-ID and set-group-ID rules). Every failing step must fail with the model's errno,
//! and after every step: every path's lstat (kind, nlink, mode, uid, gid, size, explicitly set
//! times) and stat through symlinks (or its errno), inode identity (two names share an inode
//! exactly when the model says so), every directory listing, every symlink target, every
//! extended attribute, every file's bytes, block sharing against the model's abstract block ids,
//! the reverse map against a brute-force FIEMAP scan, and `check()` clean.
//!
//! Knobs: PROPTEST_CASES (default 2000, about 10 s in release; e.g. `PROPTEST_CASES=2000 cargo test --release --test
//! names_model` for a long run), FERRODAX_PROPTEST_STEPS (default 40), FERRODAX_PROPTEST_SEED
//! (default fixed; a number, or "random").

mod model_common;

use ferrodax::format::record::InodeKind;
use ferrodax::fs::access::{as_caller, Credentials};
use ferrodax::fs::falloc::{FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE};
use ferrodax::fs::namespace::{
    SetAttributes, TimeSet, RENAME_EXCHANGE, RENAME_NOREPLACE, XATTR_CREATE, XATTR_REPLACE,
};
use ferrodax::{DedupeStatus, DedupeTarget, File, Fs, OpenOptions, Pool};
use model_common::{
    assert_bytes, block_map, env_u64, errno, pattern, read_all, seeded_runner, verify_space, BlockIds, BS,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

const POOL_BYTES: u64 = 4 << 20;
/// Creations that would make the tree hold more inodes than this are skipped.
const NODE_LIMIT: usize = 32;
/// Data operations that would make a file longer than this many blocks are skipped.
const FILE_BLOCK_LIMIT: u64 = 16;
/// Names the generated paths are made of.
const NAMES: [&str; 4] = ["a", "b", "c", "d"];
const XATTR_NAMES: [&str; 3] = ["user.x", "user.y", "user.long.name"];
/// Linux's MAXSYMLINKS.
const MAX_FOLLOWS: usize = 40;
const ROOT: u64 = 0;
/// The user the unprivileged steps run as (not root, in none of root's groups).
const USER: u32 = 1000;
/// Permission bits chmod, mkdir and create pick from: the usual ones, the special bits, none.
const MODES: [u32; 14] =
    [0o644, 0o755, 0o600, 0o700, 0o777, 0o000, 0o444, 0o711, 0o1777, 0o2755, 0o4755, 0o6775, 0o2745, 0o666];

fn user() -> Credentials {
    Credentials { uid: USER, gid: USER, groups: Vec::new() }
}

// ----- coverage counters: the run must have done what this file claims -----

static STEPS_RUN: AtomicU64 = AtomicU64::new(0);
static STEPS_FAILED: AtomicU64 = AtomicU64::new(0);
static HARD_LINKS: AtomicU64 = AtomicU64::new(0);
static EXCHANGES: AtomicU64 = AtomicU64::new(0);
static RENAMES_OVER_LINKS: AtomicU64 = AtomicU64::new(0);
static RENAMES_BELOW_ITSELF: AtomicU64 = AtomicU64::new(0);
static SYMLINK_WALKS: AtomicU64 = AtomicU64::new(0);
static USER_REFUSALS: AtomicU64 = AtomicU64::new(0);
static USER_SUCCESSES: AtomicU64 = AtomicU64::new(0);
static SHARED_MULTI_NAME: AtomicU64 = AtomicU64::new(0);
static DEDUPES_SHARED: AtomicU64 = AtomicU64::new(0);
static REMOUNTS: AtomicU64 = AtomicU64::new(0);

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

// ----- operations as generated: paths picked relative to the model when the step runs -----

/// A path, resolved against the model's tree when the step runs.
#[derive(Debug, Clone)]
enum Pick {
    /// The k-th existing path (modulo their number), symlinks and directories included.
    Existing(usize),
    /// A name in the k-th existing directory (which may or may not exist).
    InDir(usize, usize),
    /// Names from the root, existing or not.
    Raw(Vec<usize>),
}

/// A symlink target.
#[derive(Debug, Clone)]
enum Target {
    /// The absolute path of an existing object.
    Absolute(Pick),
    /// A name relative to the symlink's directory.
    Relative(usize),
    /// `../name`.
    Up(usize),
    /// The symlink's own path (a loop).
    Itself,
}

#[derive(Debug, Clone)]
enum Op {
    Create { path: Pick, mode: u32 },
    Mkdir { path: Pick, mode: u32, slash: bool },
    Link { existing: Pick, new: Pick },
    Symlink { target: Target, path: Pick },
    Unlink { path: Pick, slash: bool },
    Rmdir { path: Pick, slash: bool },
    Rename { from: Pick, to: Pick, flags: u32, slash: bool },
    Chmod { path: Pick, mode: u32 },
    Chown { path: Pick, uid: Option<u32>, gid: Option<u32>, follow: bool },
    Utimes { path: Pick, atime: Option<TimeSet>, mtime: Option<TimeSet>, follow: bool },
    SetXattr { path: Pick, name: usize, value: (u8, usize), flags: u32 },
    RemoveXattr { path: Pick, name: usize },
    Write { file: usize, off: u64, len: u64, seed: u8 },
    CopyWhole { src: usize, dst: usize },
    Reflink { src: usize, dst: usize, src_block: u64, dst_block: u64, blocks: u64 },
    Dedupe { src: usize, dst: usize, src_block: u64, dst_block: u64, blocks: u64 },
    Punch { file: usize, off: u64, len: u64 },
    Remount,
    AsUser(Box<Op>),
}

/// An operation with concrete paths and numbers.
#[derive(Debug, Clone)]
enum ROp {
    Create {
        path: String,
        mode: u32,
    },
    Mkdir {
        path: String,
        mode: u32,
    },
    Link {
        existing: String,
        new: String,
    },
    Symlink {
        target: String,
        path: String,
    },
    Unlink {
        path: String,
    },
    Rmdir {
        path: String,
    },
    Rename {
        from: String,
        to: String,
        flags: u32,
    },
    SetAttributes {
        path: String,
        set: SetAttributes,
        follow: bool,
    },
    SetXattr {
        path: String,
        name: String,
        value: Vec<u8>,
        flags: u32,
    },
    RemoveXattr {
        path: String,
        name: String,
    },
    Write {
        path: String,
        off: u64,
        len: u64,
        seed: u8,
    },
    CopyWhole {
        src: String,
        dst: String,
    },
    Reflink {
        src: String,
        dst: String,
        src_off: u64,
        dst_off: u64,
        len: u64,
    },
    Dedupe {
        src: String,
        dst: String,
        src_off: u64,
        dst_off: u64,
        len: u64,
    },
    Punch {
        path: String,
        off: u64,
        len: u64,
    },
    Remount,
    AsUser(Box<ROp>),
    /// The model cannot follow this step (it would outgrow the limits): not run.
    Skip,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Done,
    Bytes(u64),
    Dedupe(Result<u64, i32>),
}

type Res = Result<Outcome, i32>;

// ----- the model -----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
}

#[derive(Debug, Clone)]
struct Node {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    xattrs: BTreeMap<String, Vec<u8>>,
    target: String,
    data: Vec<u8>,
    /// Abstract block id per file block (None: a hole); equal ids share a pool block.
    blocks: Vec<Option<u64>>,
    children: BTreeMap<String, u64>,
    /// A directory's parent.
    parent: u64,
    /// Times known to the model (set explicitly); None once something stamped "now".
    atime: Option<i64>,
    mtime: Option<i64>,
}

impl Node {
    fn new(kind: Kind, mode: u32, uid: u32, gid: u32, parent: u64) -> Node {
        Node {
            kind,
            mode,
            uid,
            gid,
            xattrs: BTreeMap::new(),
            target: String::new(),
            data: Vec::new(),
            blocks: Vec::new(),
            children: BTreeMap::new(),
            parent,
            atime: None,
            mtime: None,
        }
    }
    fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }
}

const MAY_READ: u32 = 4;
const MAY_WRITE: u32 = 2;
const MAY_EXEC: u32 = 1;
const S_ISUID: u32 = 0o4000;
const S_ISGID: u32 = 0o2000;
const S_ISVTX: u32 = 0o1000;

/// Linux's generic_permission with root's capabilities (CAP_DAC_OVERRIDE).
fn permits(c: &Credentials, n: &Node, mask: u32) -> bool {
    if c.uid == 0 {
        return mask & MAY_EXEC == 0 || n.is_dir() || n.mode & 0o111 != 0;
    }
    let bits = if c.uid == n.uid {
        n.mode >> 6
    } else if c.gid == n.gid || c.groups.contains(&n.gid) {
        n.mode >> 3
    } else {
        n.mode
    } & 7;
    bits & mask == mask
}

fn owns(c: &Credentials, n: &Node) -> bool {
    c.uid == 0 || c.uid == n.uid
}

fn in_group(c: &Credentials, gid: u32) -> bool {
    c.uid == 0 || c.gid == gid || c.groups.contains(&gid)
}

fn components(path: &str) -> Vec<String> {
    path.split('/').filter(|c| !c.is_empty() && *c != ".").map(str::to_string).collect()
}

#[derive(Debug, Clone)]
struct Model {
    nodes: BTreeMap<u64, Node>,
    next_node: u64,
    next_block: u64,
}

impl Model {
    fn new() -> Model {
        let mut nodes = BTreeMap::new();
        nodes.insert(ROOT, Node::new(Kind::Dir, 0o755, 0, 0, ROOT));
        Model { nodes, next_node: 1, next_block: 0 }
    }

    fn node(&self, id: u64) -> &Node {
        &self.nodes[&id]
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes.get_mut(&id).expect("model node")
    }

    /// Every name in the tree (a symlink's target is not followed): path and inode, depth first.
    fn paths(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut stack = vec![(String::new(), ROOT)];
        while let Some((prefix, dir)) = stack.pop() {
            for (name, &child) in self.node(dir).children.iter().rev() {
                let path = format!("{prefix}/{name}");
                if self.node(child).is_dir() {
                    stack.push((path.clone(), child));
                }
                out.push((path, child));
            }
        }
        out.sort();
        out
    }

    /// The number of names of a non-directory; 2 plus subdirectories for a directory.
    fn nlink(&self, id: u64) -> u32 {
        let n = self.node(id);
        if n.is_dir() {
            return 2 + n.children.values().filter(|c| self.node(**c).is_dir()).count() as u32;
        }
        self.nodes.values().flat_map(|d| d.children.values()).filter(|&&c| c == id).count() as u32
    }

    /// Whether `a` is `b` or one of its ancestors.
    fn is_ancestor_or_self(&self, a: u64, b: u64) -> bool {
        let mut cur = b;
        loop {
            if cur == a {
                return true;
            }
            if cur == ROOT {
                return false;
            }
            cur = self.node(cur).parent;
        }
    }

    /// Linux's path walk from the root: search permission on every directory, symlinks followed
    /// in the middle (and at the end when `follow_last` or a trailing slash), ELOOP past 40.
    fn walk(&self, path: &str, follow_last: bool, c: &Credentials) -> Result<u64, i32> {
        let mut pending: VecDeque<String> = components(path).into();
        let needs_dir = path.ends_with('/') && !pending.is_empty();
        let mut cur = ROOT;
        let mut follows = 0;
        while let Some(name) = pending.pop_front() {
            let dir = self.node(cur);
            if !dir.is_dir() {
                return Err(libc::ENOTDIR);
            }
            if !permits(c, dir, MAY_EXEC) {
                return Err(libc::EACCES);
            }
            if name == ".." {
                cur = dir.parent;
                continue;
            }
            let next = *dir.children.get(&name).ok_or(libc::ENOENT)?;
            let node = self.node(next);
            if node.kind == Kind::Symlink && (!pending.is_empty() || follow_last || needs_dir) {
                follows += 1;
                if follows > MAX_FOLLOWS {
                    return Err(libc::ELOOP);
                }
                if node.target.starts_with('/') {
                    cur = ROOT;
                }
                for part in components(&node.target).into_iter().rev() {
                    pending.push_front(part);
                }
                continue;
            }
            cur = next;
        }
        if needs_dir && !self.node(cur).is_dir() {
            return Err(libc::ENOTDIR);
        }
        Ok(cur)
    }

    /// The parent directory of a path's last name (walked, searchable), the name, and whether
    /// the path ended in a slash.
    fn parent_of(&self, path: &str, c: &Credentials) -> Result<(u64, String, bool), i32> {
        let trimmed = path.trim_end_matches('/');
        let slash = trimmed.len() != path.len();
        let (dir, name) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
        let parent = self.walk(if dir.is_empty() { "/" } else { dir }, true, c)?;
        let p = self.node(parent);
        if !p.is_dir() {
            return Err(libc::ENOTDIR);
        }
        if !permits(c, p, MAY_EXEC) {
            return Err(libc::EACCES);
        }
        Ok((parent, name.to_string(), slash))
    }

    /// may_create: write and search permission on the directory.
    fn may_create(&self, dir: u64, c: &Credentials) -> Result<(), i32> {
        if permits(c, self.node(dir), MAY_WRITE | MAY_EXEC) {
            Ok(())
        } else {
            Err(libc::EACCES)
        }
    }

    /// may_delete's permission part: EACCES, then the sticky bit's EPERM.
    fn may_delete(&self, dir: u64, child: u64, c: &Credentials) -> Result<(), i32> {
        self.may_create(dir, c)?;
        let (d, n) = (self.node(dir), self.node(child));
        if d.mode & S_ISVTX != 0 && c.uid != 0 && c.uid != n.uid && c.uid != d.uid {
            return Err(libc::EPERM);
        }
        Ok(())
    }

    /// An entry changed in `dir`: its modification time is now.
    fn touch_dir(&mut self, dir: u64) {
        self.node_mut(dir).mtime = None;
    }

    fn new_node(&mut self, parent: u64, name: String, kind: Kind, mode: u32, c: &Credentials) -> u64 {
        let p = self.node(parent);
        let sgid_dir = p.mode & S_ISGID != 0;
        let gid = if sgid_dir { p.gid } else { c.gid };
        let mut mode = match kind {
            Kind::Symlink => 0o777,
            // vfs_mkdir keeps the permission bits and the sticky bit only.
            Kind::Dir => mode & 0o1777,
            Kind::File => mode & 0o7777,
        };
        if kind == Kind::Dir && sgid_dir {
            mode |= S_ISGID;
        } else if kind == Kind::File && mode & S_ISGID != 0 && !in_group(c, gid) {
            mode &= !S_ISGID;
        }
        let id = self.next_node;
        self.next_node += 1;
        self.nodes.insert(id, Node::new(kind, mode, c.uid, gid, parent));
        self.node_mut(parent).children.insert(name, id);
        self.touch_dir(parent);
        id
    }

    /// Removes the entry `name` of `dir`; the inode goes with its last name.
    fn drop_name(&mut self, dir: u64, name: &str) {
        let id = self.node_mut(dir).children.remove(name).expect("entry");
        self.touch_dir(dir);
        if self.node(id).is_dir() || self.nlink(id) == 0 {
            self.nodes.remove(&id);
        }
    }

    fn fresh_block(&mut self) -> Option<u64> {
        self.next_block += 1;
        Some(self.next_block)
    }

    /// open(2) of an existing file (symlinks followed) for reading and maybe writing.
    fn open_file(&self, path: &str, write: bool, c: &Credentials) -> Result<u64, i32> {
        let id = self.walk(path, true, c)?;
        let n = self.node(id);
        if n.is_dir() && write {
            return Err(libc::EISDIR);
        }
        if !permits(c, n, MAY_READ | if write { MAY_WRITE } else { 0 }) {
            return Err(libc::EACCES);
        }
        Ok(id)
    }

    /// pwrite of `bytes` at `off`: every written block is a new block.
    fn write_bytes(&mut self, id: u64, off: u64, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let end = off + bytes.len() as u64;
        let fresh: Vec<Option<u64>> = (off / BS..end.div_ceil(BS)).map(|_| self.fresh_block()).collect();
        let n = self.node_mut(id);
        if end > n.data.len() as u64 {
            n.data.resize(end as usize, 0);
            n.blocks.resize(end.div_ceil(BS) as usize, None);
        }
        n.data[off as usize..end as usize].copy_from_slice(bytes);
        n.blocks[(off / BS) as usize..end.div_ceil(BS) as usize].copy_from_slice(&fresh);
        n.mtime = None;
    }

    /// Applies one step for caller `c`: what it returns, and the tree it leaves.
    fn apply(&mut self, op: &ROp, c: &Credentials) -> Res {
        match op {
            ROp::Skip => unreachable!("skipped steps are not run"),
            ROp::AsUser(inner) => self.apply(inner, &user()),
            ROp::Remount => Ok(Outcome::Done),
            ROp::Create { path, mode } => {
                let (dir, name, _) = self.parent_of(path, c)?;
                if self.node(dir).children.contains_key(&name) {
                    return Err(libc::EEXIST);
                }
                self.may_create(dir, c)?;
                self.new_node(dir, name, Kind::File, *mode, c);
                Ok(Outcome::Done)
            }
            ROp::Mkdir { path, mode } => {
                let (dir, name, _) = self.parent_of(path, c)?;
                if self.node(dir).children.contains_key(&name) {
                    return Err(libc::EEXIST);
                }
                self.may_create(dir, c)?;
                self.new_node(dir, name, Kind::Dir, *mode, c);
                Ok(Outcome::Done)
            }
            ROp::Symlink { target, path } => {
                let (dir, name, _) = self.parent_of(path, c)?;
                if self.node(dir).children.contains_key(&name) {
                    return Err(libc::EEXIST);
                }
                self.may_create(dir, c)?;
                let id = self.new_node(dir, name, Kind::Symlink, 0o777, c);
                self.node_mut(id).target = target.clone();
                Ok(Outcome::Done)
            }
            ROp::Link { existing, new } => {
                // do_linkat: the old path, the new name, may_linkat, then vfs_link.
                let id = self.walk(existing, false, c)?;
                let (dir, name, _) = self.parent_of(new, c)?;
                if self.node(dir).children.contains_key(&name) {
                    return Err(libc::EEXIST);
                }
                let n = self.node(id);
                let safe_source = n.kind == Kind::File
                    && n.mode & S_ISUID == 0
                    && n.mode & (S_ISGID | 0o010) != (S_ISGID | 0o010)
                    && permits(c, n, MAY_READ | MAY_WRITE);
                if !owns(c, n) && !safe_source {
                    return Err(libc::EPERM);
                }
                self.may_create(dir, c)?;
                if self.node(id).is_dir() {
                    return Err(libc::EPERM);
                }
                self.node_mut(dir).children.insert(name, id);
                self.touch_dir(dir);
                bump(&HARD_LINKS);
                Ok(Outcome::Done)
            }
            ROp::Unlink { path } => {
                let (dir, name, slash) = self.parent_of(path, c)?;
                let id = *self.node(dir).children.get(&name).ok_or(libc::ENOENT)?;
                let is_dir = self.node(id).is_dir();
                if slash {
                    return Err(if is_dir { libc::EISDIR } else { libc::ENOTDIR });
                }
                self.may_delete(dir, id, c)?;
                if is_dir {
                    return Err(libc::EISDIR);
                }
                self.drop_name(dir, &name);
                Ok(Outcome::Done)
            }
            ROp::Rmdir { path } => {
                let (dir, name, _) = self.parent_of(path, c)?;
                let id = *self.node(dir).children.get(&name).ok_or(libc::ENOENT)?;
                self.may_delete(dir, id, c)?;
                if !self.node(id).is_dir() {
                    return Err(libc::ENOTDIR);
                }
                if !self.node(id).children.is_empty() {
                    return Err(libc::ENOTEMPTY);
                }
                self.drop_name(dir, &name);
                Ok(Outcome::Done)
            }
            ROp::Rename { from, to, flags } => self.rename(from, to, *flags, c),
            ROp::SetAttributes { path, set, follow } => {
                let id = self.walk(path, *follow, c)?;
                self.set_attributes(id, set, c)
            }
            ROp::SetXattr { path, name, value, flags } => {
                let id = self.walk(path, true, c)?;
                self.may_change_xattrs(id, c)?;
                let exists = self.node(id).xattrs.contains_key(name);
                if exists && flags & XATTR_CREATE != 0 {
                    return Err(libc::EEXIST);
                }
                if !exists && flags & XATTR_REPLACE != 0 {
                    return Err(libc::ENODATA);
                }
                self.node_mut(id).xattrs.insert(name.clone(), value.clone());
                Ok(Outcome::Done)
            }
            ROp::RemoveXattr { path, name } => {
                let id = self.walk(path, true, c)?;
                self.may_change_xattrs(id, c)?;
                self.node_mut(id).xattrs.remove(name).map(|_| Outcome::Done).ok_or(libc::ENODATA)
            }
            ROp::Write { path, off, len, seed } => {
                let id = self.open_file(path, true, c)?;
                self.write_bytes(id, *off, &pattern(*seed, *off, *len as usize));
                Ok(Outcome::Bytes(*len))
            }
            ROp::CopyWhole { src, dst } => {
                let s = self.open_file(src, false, c)?;
                let d = self.open_file(dst, true, c)?;
                let n = self.node_mut(d);
                if !n.data.is_empty() {
                    n.mtime = None;
                }
                n.data.clear();
                n.blocks.clear();
                let bytes = self.node(s).data.clone();
                self.write_bytes(d, 0, &bytes);
                Ok(Outcome::Bytes(bytes.len() as u64))
            }
            ROp::Reflink { src, dst, src_off, dst_off, len } => {
                let s = self.open_file(src, false, c)?;
                let d = self.open_file(dst, true, c)?;
                if s == d && dst_off + len > *src_off && *dst_off < src_off + len {
                    return Err(libc::EINVAL);
                }
                self.share_range(s, *src_off, d, *dst_off, *len);
                Ok(Outcome::Bytes(*len))
            }
            ROp::Dedupe { src, dst, src_off, dst_off, len } => {
                let s = self.open_file(src, false, c)?;
                let d = self.open_file(dst, true, c)?;
                let (so, dof, l) = (*src_off as usize, *dst_off as usize, *len as usize);
                if s == d && dof + l > so && dof < so + l {
                    return Ok(Outcome::Dedupe(Err(libc::EINVAL)));
                }
                // As XFS on DAX (docs/CONFORMANCE.md D1): a hole against data differs.
                let holes = |id: u64, off: usize| {
                    self.node(id).blocks[off / BS as usize..(off + l) / BS as usize]
                        .iter()
                        .map(Option::is_none)
                };
                if self.node(s).data[so..so + l] != self.node(d).data[dof..dof + l]
                    || holes(s, so).ne(holes(d, dof))
                {
                    return Ok(Outcome::Dedupe(Err(0)));
                }
                let before = self.node(d).blocks.clone();
                self.share_range(s, *src_off, d, *dst_off, *len);
                if self.node(d).blocks != before {
                    bump(&DEDUPES_SHARED);
                }
                Ok(Outcome::Dedupe(Ok(*len)))
            }
            ROp::Punch { path, off, len } => {
                let id = self.open_file(path, true, c)?;
                self.punch(id, *off, *len);
                Ok(Outcome::Done)
            }
        }
    }

    /// Block-aligned whole blocks of `s` become the blocks of `d` (reflink, dedupe).
    fn share_range(&mut self, s: u64, src_off: u64, d: u64, dst_off: u64, len: u64) {
        let bytes = self.node(s).data[src_off as usize..(src_off + len) as usize].to_vec();
        let ids = self.node(s).blocks[(src_off / BS) as usize..((src_off + len) / BS) as usize].to_vec();
        let n = self.node_mut(d);
        let end = (dst_off + len) as usize;
        if end > n.data.len() {
            n.data.resize(end, 0);
            n.blocks.resize(end.div_ceil(BS as usize), None);
        }
        n.data[dst_off as usize..end].copy_from_slice(&bytes);
        n.blocks[(dst_off / BS) as usize..][..ids.len()].copy_from_slice(&ids);
        n.mtime = None;
    }

    /// FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE: whole blocks inside become holes, partly
    /// punched mapped blocks are rewritten (new blocks), the bytes read zero.
    fn punch(&mut self, id: u64, off: u64, len: u64) {
        let end = off + len;
        let size = self.node(id).data.len() as u64;
        let (first_whole, end_whole) = (off.div_ceil(BS), (end / BS).min(size.div_ceil(BS)));
        for fb in first_whole..end_whole.max(first_whole) {
            self.node_mut(id).blocks[fb as usize] = None;
        }
        if off < size {
            let mut edges = vec![off / BS, (end - 1) / BS];
            edges.dedup();
            for fb in edges {
                if (first_whole..end_whole).contains(&fb) || fb * BS >= size {
                    continue;
                }
                if self.node(id).blocks[fb as usize].is_some() {
                    let fresh = self.fresh_block();
                    self.node_mut(id).blocks[fb as usize] = fresh;
                }
            }
            self.node_mut(id).data[off as usize..end.min(size) as usize].fill(0);
        }
        self.node_mut(id).mtime = None;
    }

    /// xattr_permission for `user.` names: a sticky directory is its owner's (EPERM), then
    /// write permission (EACCES).
    fn may_change_xattrs(&self, id: u64, c: &Credentials) -> Result<(), i32> {
        let n = self.node(id);
        if n.is_dir() && n.mode & S_ISVTX != 0 && !owns(c, n) {
            return Err(libc::EPERM);
        }
        if !permits(c, n, MAY_WRITE) {
            return Err(libc::EACCES);
        }
        Ok(())
    }

    /// renameat2 in do_renameat2's and vfs_rename's order.
    fn rename(&mut self, from: &str, to: &str, flags: u32, c: &Credentials) -> Res {
        if flags == RENAME_NOREPLACE | RENAME_EXCHANGE {
            return Err(libc::EINVAL);
        }
        let exchange = flags & RENAME_EXCHANGE != 0;
        let (od, on, oslash) = self.parent_of(from, c)?;
        let (nd, nn, nslash) = self.parent_of(to, c)?;
        let old = *self.node(od).children.get(&on).ok_or(libc::ENOENT)?;
        let new = self.node(nd).children.get(&nn).copied();
        if flags & RENAME_NOREPLACE != 0 && new.is_some() {
            return Err(libc::EEXIST);
        }
        if exchange {
            let t = new.ok_or(libc::ENOENT)?;
            if !self.node(t).is_dir() && nslash {
                return Err(libc::ENOTDIR);
            }
        }
        let old_is_dir = self.node(old).is_dir();
        if !old_is_dir && (oslash || !exchange && nslash) {
            return Err(libc::ENOTDIR);
        }
        // lock_rename's trap: the source may not be an ancestor of the new parent, nor the
        // target one of the old parent.
        if od != nd && self.is_ancestor_or_self(old, nd) {
            bump(&RENAMES_BELOW_ITSELF);
            return Err(libc::EINVAL);
        }
        if od != nd && new.is_some_and(|t| self.is_ancestor_or_self(t, od)) {
            return Err(if exchange { libc::EINVAL } else { libc::ENOTEMPTY });
        }
        if new == Some(old) {
            bump(&RENAMES_OVER_LINKS);
            return Ok(Outcome::Done);
        }
        self.may_delete(od, old, c)?;
        match new {
            None => self.may_create(nd, c)?,
            Some(t) => {
                self.may_delete(nd, t, c)?;
                let target_is_dir = self.node(t).is_dir();
                if !exchange && old_is_dir && !target_is_dir {
                    return Err(libc::ENOTDIR);
                }
                if !exchange && !old_is_dir && target_is_dir {
                    return Err(libc::EISDIR);
                }
            }
        }
        if od != nd {
            if old_is_dir && !permits(c, self.node(old), MAY_WRITE) {
                return Err(libc::EACCES);
            }
            if exchange && new.is_some_and(|t| self.node(t).is_dir() && !permits(c, self.node(t), MAY_WRITE))
            {
                return Err(libc::EACCES);
            }
        }
        if exchange {
            let t = new.expect("checked");
            self.node_mut(od).children.insert(on, t);
            self.node_mut(nd).children.insert(nn, old);
            self.node_mut(t).parent = od;
            self.node_mut(old).parent = nd;
            bump(&EXCHANGES);
        } else {
            if let Some(t) = new {
                if self.node(t).is_dir() && !self.node(t).children.is_empty() {
                    return Err(libc::ENOTEMPTY);
                }
                self.drop_name(nd, &nn);
            }
            self.node_mut(od).children.remove(&on);
            self.node_mut(nd).children.insert(nn, old);
            self.node_mut(old).parent = nd;
        }
        self.touch_dir(od);
        self.touch_dir(nd);
        Ok(Outcome::Done)
    }

    /// notify_change for chmod, chown and utimensat: setattr_prepare's checks, chown_common's
    /// set-user-ID and set-group-ID stripping.
    fn set_attributes(&mut self, id: u64, set: &SetAttributes, c: &Credentials) -> Res {
        let old = self.node(id).clone();
        let owner = owns(c, &old);
        let mut n = old.clone();
        if set.uid.is_some() || set.gid.is_some() {
            let uid_ok = set.uid.is_none_or(|u| c.uid == 0 || c.uid == old.uid && u == old.uid);
            let gid_ok = set.gid.is_none_or(|g| c.uid == 0 || owner && (g == old.gid || in_group(c, g)));
            if !uid_ok || !gid_ok {
                return Err(libc::EPERM);
            }
            if !old.is_dir() {
                n.mode &= !S_ISUID;
                if old.mode & S_ISGID != 0 && (old.mode & 0o010 != 0 || !in_group(c, old.gid)) {
                    n.mode &= !S_ISGID;
                }
            }
            n.uid = set.uid.unwrap_or(old.uid);
            n.gid = set.gid.unwrap_or(old.gid);
        }
        if let Some(mode) = set.mode {
            if !owner {
                return Err(libc::EPERM);
            }
            n.mode = mode & 0o7777;
            if !in_group(c, n.gid) {
                n.mode &= !S_ISGID;
            }
        }
        for (time, field) in [(set.atime, &mut n.atime), (set.mtime, &mut n.mtime)] {
            match time {
                None => {}
                Some(TimeSet::Now) => {
                    if !owner && !permits(c, &old, MAY_WRITE) {
                        return Err(libc::EACCES);
                    }
                    *field = None;
                }
                Some(TimeSet::At(ns)) => {
                    if !owner {
                        return Err(libc::EPERM);
                    }
                    *field = Some(ns);
                }
            }
        }
        *self.node_mut(id) = n;
        Ok(Outcome::Done)
    }

    fn data_blocks(&self) -> usize {
        let mut ids: Vec<u64> =
            self.nodes.values().flat_map(|n| n.blocks.iter().flatten().copied()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }
}

// ----- resolving generated operations -----

fn resolve_pick(pick: &Pick, m: &Model) -> String {
    match pick {
        Pick::Existing(k) => {
            let paths = m.paths();
            if paths.is_empty() {
                return "/a".into();
            }
            paths[k % paths.len()].0.clone()
        }
        Pick::InDir(k, name) => {
            let mut dirs: Vec<String> =
                m.paths().into_iter().filter(|(_, id)| m.node(*id).is_dir()).map(|(p, _)| p).collect();
            dirs.insert(0, String::new());
            format!("{}/{}", dirs[k % dirs.len()], NAMES[name % NAMES.len()])
        }
        Pick::Raw(names) => names.iter().map(|n| format!("/{}", NAMES[n % NAMES.len()])).collect(),
    }
}

/// The path of the k-th regular file (by any of its names), if there is one.
fn file_path(k: usize, m: &Model) -> Option<(String, u64)> {
    let files: Vec<(String, u64)> =
        m.paths().into_iter().filter(|(_, id)| m.node(*id).kind == Kind::File).collect();
    (!files.is_empty()).then(|| files[k % files.len()].clone())
}

fn with_slash(path: String, slash: bool) -> String {
    if slash {
        path + "/"
    } else {
        path
    }
}

fn resolve(op: &Op, m: &Model) -> ROp {
    let p = |pick: &Pick| resolve_pick(pick, m);
    let creates = m.nodes.len() >= NODE_LIMIT;
    let size_blocks = |id: u64| m.node(id).data.len() as u64 / BS;
    match op {
        Op::Create { .. } | Op::Mkdir { .. } | Op::Symlink { .. } | Op::Link { .. } if creates => ROp::Skip,
        Op::Create { path, mode } => ROp::Create { path: p(path), mode: *mode },
        Op::Mkdir { path, mode, slash } => ROp::Mkdir { path: with_slash(p(path), *slash), mode: *mode },
        Op::Link { existing, new } => ROp::Link { existing: p(existing), new: p(new) },
        Op::Symlink { target, path } => {
            let path = p(path);
            let target = match target {
                Target::Absolute(pick) => p(pick),
                Target::Relative(n) => NAMES[n % NAMES.len()].to_string(),
                Target::Up(n) => format!("../{}", NAMES[n % NAMES.len()]),
                Target::Itself => path.clone(),
            };
            ROp::Symlink { target, path }
        }
        Op::Unlink { path, slash } => ROp::Unlink { path: with_slash(p(path), *slash) },
        Op::Rmdir { path, slash } => ROp::Rmdir { path: with_slash(p(path), *slash) },
        Op::Rename { from, to, flags, slash } => {
            ROp::Rename { from: p(from), to: with_slash(p(to), *slash), flags: *flags }
        }
        Op::Chmod { path, mode } => ROp::SetAttributes {
            path: p(path),
            set: SetAttributes { mode: Some(*mode), ..SetAttributes::default() },
            follow: true,
        },
        Op::Chown { path, uid, gid, follow } => ROp::SetAttributes {
            path: p(path),
            set: SetAttributes { uid: *uid, gid: *gid, ..SetAttributes::default() },
            follow: *follow,
        },
        Op::Utimes { path, atime, mtime, follow } => ROp::SetAttributes {
            path: p(path),
            set: SetAttributes { atime: *atime, mtime: *mtime, ..SetAttributes::default() },
            follow: *follow,
        },
        Op::SetXattr { path, name, value: (seed, len), flags } => ROp::SetXattr {
            path: p(path),
            name: XATTR_NAMES[name % XATTR_NAMES.len()].into(),
            value: pattern(*seed, 0, *len),
            flags: *flags,
        },
        Op::RemoveXattr { path, name } => {
            ROp::RemoveXattr { path: p(path), name: XATTR_NAMES[name % XATTR_NAMES.len()].into() }
        }
        Op::Write { file, off, len, seed } => match file_path(*file, m) {
            Some((path, _)) if (off + len).div_ceil(BS) <= FILE_BLOCK_LIMIT => {
                ROp::Write { path, off: *off, len: *len, seed: *seed }
            }
            _ => ROp::Skip,
        },
        Op::CopyWhole { src, dst } => match (file_path(*src, m), file_path(*dst, m)) {
            (Some((src, _)), Some((dst, _))) => ROp::CopyWhole { src, dst },
            _ => ROp::Skip,
        },
        Op::Reflink { src, dst, src_block, dst_block, blocks }
        | Op::Dedupe { src, dst, src_block, dst_block, blocks } => {
            let (Some((sp, s)), Some((dp, d))) = (file_path(*src, m), file_path(*dst, m)) else {
                return ROp::Skip;
            };
            let dedupe = matches!(op, Op::Dedupe { .. });
            let sb = (*src_block).min(size_blocks(s).saturating_sub(1));
            // Dedupe stays inside the destination's whole blocks; reflink may extend it.
            let db = if dedupe { *dst_block } else { (*dst_block).min(size_blocks(d) + 1) };
            let mut n = (*blocks).min(size_blocks(s).saturating_sub(sb));
            if dedupe {
                n = n.min(size_blocks(d).saturating_sub(db));
            }
            if n == 0 || db + n > FILE_BLOCK_LIMIT {
                return ROp::Skip;
            }
            let (src_off, dst_off, len) = (sb * BS, db * BS, n * BS);
            if dedupe {
                ROp::Dedupe { src: sp, dst: dp, src_off, dst_off, len }
            } else {
                ROp::Reflink { src: sp, dst: dp, src_off, dst_off, len }
            }
        }
        Op::Punch { file, off, len } => match file_path(*file, m) {
            Some((path, _)) => ROp::Punch { path, off: *off, len: *len },
            None => ROp::Skip,
        },
        Op::Remount => ROp::Remount,
        Op::AsUser(inner) => match resolve(inner, m) {
            ROp::Skip => ROp::Skip,
            r => ROp::AsUser(Box::new(r)),
        },
    }
}

// ----- the file system under test -----

struct Real {
    pool: Pool,
    fs: Option<Fs>,
}

impl Real {
    fn fs(&self) -> &Fs {
        self.fs.as_ref().expect("mounted")
    }

    fn open(&self, path: &str, write: bool) -> Result<File, i32> {
        let mut o = OpenOptions::new();
        o.read(true).write(write);
        errno(self.fs().open(path, &o))
    }

    fn apply(&mut self, op: &ROp) -> Res {
        let fs = self.fs().clone();
        let done = |r: ferrodax::Result<()>| errno(r).map(|()| Outcome::Done);
        match op {
            ROp::Skip => unreachable!("skipped steps are not run"),
            ROp::AsUser(inner) => as_caller(user(), || self.apply(inner)),
            ROp::Remount => {
                drop(fs);
                drop(self.fs.take());
                self.fs = Some(Fs::mount(&self.pool).expect("remount"));
                bump(&REMOUNTS);
                Ok(Outcome::Done)
            }
            ROp::Create { path, mode } => {
                let mut o = OpenOptions::new();
                o.read(true).write(true).create_new(true).mode(*mode);
                errno(fs.open(path, &o)).map(|_| Outcome::Done)
            }
            ROp::Mkdir { path, mode } => done(fs.create_dir_with_mode(path, *mode)),
            ROp::Link { existing, new } => done(fs.hard_link(existing, new)),
            ROp::Symlink { target, path } => done(fs.symlink(target, path)),
            ROp::Unlink { path } => done(fs.remove_file(path)),
            ROp::Rmdir { path } => done(fs.remove_dir(path)),
            ROp::Rename { from, to, flags } => done(fs.rename_with_flags(from, to, *flags)),
            ROp::SetAttributes { path, set, follow } => done(fs.set_attributes(path, set, *follow)),
            ROp::SetXattr { path, name, value, flags } => done(fs.set_xattr(path, name, value, *flags)),
            ROp::RemoveXattr { path, name } => done(fs.remove_xattr(path, name)),
            ROp::Write { path, off, len, seed } => {
                let f = self.open(path, true)?;
                errno(f.write_at(&pattern(*seed, *off, *len as usize), *off))
                    .map(|n| Outcome::Bytes(n as u64))
            }
            ROp::CopyWhole { src, dst } => {
                let s = self.open(src, false)?;
                let mut o = OpenOptions::new();
                o.read(true).write(true).truncate(true);
                let d = errno(fs.open(dst, &o))?;
                let bytes = read_all(&s);
                errno(d.write_at(&bytes, 0)).map(|n| Outcome::Bytes(n as u64))
            }
            ROp::Reflink { src, dst, src_off, dst_off, len } => {
                let s = self.open(src, false)?;
                let d = self.open(dst, true)?;
                errno(fs.reflink(&s, *src_off, &d, *dst_off, *len)).map(Outcome::Bytes)
            }
            ROp::Dedupe { src, dst, src_off, dst_off, len } => {
                let s = self.open(src, false)?;
                let d = self.open(dst, true)?;
                let status =
                    errno(fs.dedupe(&s, *src_off, *len, &[DedupeTarget { file: &d, offset: *dst_off }]))?;
                Ok(Outcome::Dedupe(match &status[..] {
                    [DedupeStatus::Same { bytes_deduped }] => Ok(*bytes_deduped),
                    [DedupeStatus::Differs] => Err(0),
                    [DedupeStatus::Failed(e)] => Err(e.errno()),
                    other => panic!("one destination, statuses {other:?}"),
                }))
            }
            ROp::Punch { path, off, len } => {
                let f = self.open(path, true)?;
                done(f.fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, *off, *len))
            }
        }
    }
}

fn kind_of(k: InodeKind) -> Kind {
    match k {
        InodeKind::File => Kind::File,
        InodeKind::Dir => Kind::Dir,
        InodeKind::Symlink => Kind::Symlink,
    }
}

/// Everything that must hold after every step. `inos` maps model inodes to the file system's
/// inode numbers (learned on first sight, then held: inode numbers survive remounts).
fn verify(fs: &Fs, m: &Model, inos: &mut BTreeMap<u64, u64>) -> Result<(), String> {
    inos.retain(|id, _| m.nodes.contains_key(id));
    let root = Credentials::root();
    let mut paths = m.paths();
    paths.insert(0, ("/".into(), ROOT));
    // lstat of every name, and inode identity.
    for (path, id) in &paths {
        let n = m.node(*id);
        let st = fs.symlink_metadata(path).map_err(|e| format!("lstat {path}: {e}"))?;
        let want_size = match n.kind {
            Kind::File => Some(n.data.len() as u64),
            Kind::Symlink => Some(n.target.len() as u64),
            Kind::Dir => None,
        };
        let got = (kind_of(st.kind), st.mode, st.uid, st.gid, st.nlink);
        let want = (n.kind, n.mode, n.uid, n.gid, m.nlink(*id));
        if got != want || want_size.is_some_and(|s| s != st.size) {
            return Err(format!(
                "lstat {path}: (kind, mode, uid, gid, nlink) = {got:?} size {}, model {want:?} size {want_size:?}",
                st.size
            ));
        }
        for (what, known, actual) in [("atime", n.atime, st.atime_ns), ("mtime", n.mtime, st.mtime_ns)] {
            if known.is_some_and(|t| t != actual) {
                return Err(format!("{path}: {what} {actual}, set to {known:?}"));
            }
        }
        let ino = *inos.entry(*id).or_insert(st.ino);
        if ino != st.ino {
            return Err(format!("{path}: inode {} but the model's inode {id} was seen as {ino}", st.ino));
        }
    }
    let mut seen = BTreeMap::new();
    for (id, ino) in inos.iter() {
        if let Some(other) = seen.insert(*ino, *id) {
            return Err(format!("inode {ino} stands for the model's distinct inodes {other} and {id}"));
        }
    }
    for (path, id) in &paths {
        let n = m.node(*id);
        // stat through symlinks: the inode the model's walk finds, or its errno.
        let followed = fs.metadata(path).map(|st| st.ino).map_err(|e| e.errno());
        let want = m.walk(path, true, &root).map(|id| inos[&id]);
        if followed != want {
            return Err(format!("stat {path}: {followed:?}, model {want:?} (as inode numbers)"));
        }
        if n.kind == Kind::Symlink && want.is_ok() {
            bump(&SYMLINK_WALKS);
        }
        match n.kind {
            Kind::Symlink => {
                let target = fs.read_link(path).map_err(|e| format!("readlink {path}: {e}"))?;
                if target != n.target {
                    return Err(format!("readlink {path}: {target:?}, model {:?}", n.target));
                }
            }
            Kind::Dir => {
                let got: Vec<(String, u64, Kind)> = fs
                    .read_dir(path)
                    .map_err(|e| format!("read_dir {path}: {e}"))?
                    .into_iter()
                    .map(|e| (e.name, e.ino, kind_of(e.kind)))
                    .collect();
                let want: Vec<(String, u64, Kind)> =
                    n.children.iter().map(|(name, c)| (name.clone(), inos[c], m.node(*c).kind)).collect();
                if got != want {
                    return Err(format!("read_dir {path}: {got:?}, model {want:?}"));
                }
            }
            Kind::File => {}
        }
        if n.kind != Kind::Symlink {
            let names = fs.list_xattrs(path).map_err(|e| format!("listxattr {path}: {e}"))?;
            if names.iter().ne(n.xattrs.keys()) {
                return Err(format!("listxattr {path}: {names:?}, model {:?}", n.xattrs.keys()));
            }
            for (name, value) in &n.xattrs {
                let got = fs.get_xattr(path, name).map_err(|e| format!("getxattr {path} {name}: {e}"))?;
                if &got != value {
                    return Err(format!(
                        "getxattr {path} {name}: {} bytes differ from the model's",
                        got.len()
                    ));
                }
            }
        }
    }
    // Every file's bytes and block sharing, once per inode; the reverse map; check().
    let mut handles = Vec::new();
    let mut ids = BlockIds::default();
    let mut done = std::collections::BTreeSet::new();
    for (path, id) in &paths {
        let n = m.node(*id);
        if n.kind != Kind::File || !done.insert(*id) {
            continue;
        }
        let f = fs.open(path, OpenOptions::new().read(true)).map_err(|e| format!("open {path}: {e}"))?;
        assert_bytes(&read_all(&f), &n.data, path);
        let map = block_map(fs, &f).map_err(|e| format!("{path}: {e}"))?;
        ids.check(path, &n.blocks, &map)?;
        if m.nlink(*id) > 1
            && n.blocks
                .iter()
                .flatten()
                .any(|b| m.nodes.values().filter(|o| o.blocks.contains(&Some(*b))).count() > 1)
        {
            bump(&SHARED_MULTI_NAME);
        }
        handles.push(f);
    }
    verify_space(fs, &handles)
}

fn run_case(ops: &[Op]) -> Result<(), TestCaseError> {
    as_caller(Credentials::root(), || run_case_as_root(ops))
}

fn run_case_as_root(ops: &[Op]) -> Result<(), TestCaseError> {
    let pool = Pool::memfd(POOL_BYTES).expect("memfd pool");
    let fs = Fs::format(&pool).expect("format");
    let mut real = Real { pool, fs: Some(fs) };
    let mut model = Model::new();
    let mut inos = BTreeMap::new();
    // A start with a file of two names, equal data in another (for dedupe), and a sticky directory.
    let setup = [
        ROp::Mkdir { path: "/d".into(), mode: 0o755 },
        ROp::Create { path: "/a".into(), mode: 0o644 },
        ROp::Write { path: "/a".into(), off: 0, len: 3 * BS + 100, seed: 1 },
        ROp::Link { existing: "/a".into(), new: "/d/b".into() },
        ROp::Create { path: "/c".into(), mode: 0o666 },
        ROp::Write { path: "/c".into(), off: 0, len: 4 * BS, seed: 1 },
        // A sticky directory anyone may write, with an entry of the unprivileged user.
        ROp::Mkdir { path: "/t".into(), mode: 0o1777 },
        ROp::AsUser(Box::new(ROp::Create { path: "/t/u".into(), mode: 0o644 })),
    ];
    let root = Credentials::root();
    let mut step = |i: usize, rop: &ROp, model: &mut Model, real: &mut Real| -> Result<(), TestCaseError> {
        let mut next = model.clone();
        let expected = next.apply(rop, &root);
        if next.data_blocks() > 600 {
            return Ok(());
        }
        bump(&STEPS_RUN);
        let actual = real.apply(rop);
        if actual != expected {
            return Err(TestCaseError::fail(format!(
                "step {i} {rop:?}: the file system returned {actual:?}, the model expects {expected:?}"
            )));
        }
        if expected.is_err() {
            bump(&STEPS_FAILED);
        }
        if let ROp::AsUser(_) = rop {
            bump(if expected.is_err() { &USER_REFUSALS } else { &USER_SUCCESSES });
        }
        *model = next;
        verify(real.fs(), model, &mut inos)
            .map_err(|e| TestCaseError::fail(format!("after step {i} {rop:?}: {e}")))
    };
    for (i, rop) in setup.iter().enumerate() {
        step(i, rop, &mut model, &mut real)?;
    }
    for (i, op) in ops.iter().enumerate() {
        let rop = resolve(op, &model);
        if !matches!(rop, ROp::Skip) {
            step(setup.len() + i, &rop, &mut model, &mut real)?;
        }
    }
    Ok(())
}

// ----- strategies -----

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        6 => (0usize..64).prop_map(Pick::Existing),
        4 => (0usize..16, 0..NAMES.len()).prop_map(|(k, n)| Pick::InDir(k, n)),
        1 => proptest::collection::vec(0..NAMES.len(), 1..4).prop_map(Pick::Raw),
    ]
}

fn mode() -> impl Strategy<Value = u32> {
    proptest::sample::select(MODES.to_vec())
}

fn slash() -> impl Strategy<Value = bool> {
    proptest::bool::weighted(0.1)
}

fn time() -> impl Strategy<Value = Option<TimeSet>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(TimeSet::Now)),
        2 => (0i64..4).prop_map(|k| Some(TimeSet::At(1_000_000_000 * k + 7))),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        4 => pick().prop_map(Target::Absolute),
        2 => (0..NAMES.len()).prop_map(Target::Relative),
        2 => (0..NAMES.len()).prop_map(Target::Up),
        1 => Just(Target::Itself),
    ]
}

/// Operations on names and attributes (the ones a non-root caller also makes).
fn namespace_op() -> impl Strategy<Value = Op> {
    let flags =
        prop_oneof![3 => Just(0), 2 => Just(RENAME_NOREPLACE), 3 => Just(RENAME_EXCHANGE), 1 => Just(3)];
    let xattr_flags = prop_oneof![Just(0), Just(XATTR_CREATE), Just(XATTR_REPLACE)];
    prop_oneof![
        4 => (pick(), mode()).prop_map(|(path, mode)| Op::Create { path, mode }),
        3 => (pick(), mode(), slash()).prop_map(|(path, mode, slash)| Op::Mkdir { path, mode, slash }),
        5 => (pick(), pick()).prop_map(|(existing, new)| Op::Link { existing, new }),
        3 => (target(), pick()).prop_map(|(target, path)| Op::Symlink { target, path }),
        4 => (pick(), slash()).prop_map(|(path, slash)| Op::Unlink { path, slash }),
        2 => (pick(), slash()).prop_map(|(path, slash)| Op::Rmdir { path, slash }),
        8 => (pick(), pick(), flags, slash()).prop_map(|(from, to, flags, slash)| Op::Rename { from, to, flags, slash }),
        3 => (pick(), mode()).prop_map(|(path, mode)| Op::Chmod { path, mode }),
        2 => (pick(), time(), time(), any::<bool>())
            .prop_map(|(path, atime, mtime, follow)| Op::Utimes { path, atime, mtime, follow }),
        3 => (pick(), 0..XATTR_NAMES.len(), (any::<u8>(), 0usize..300), xattr_flags)
            .prop_map(|(path, name, value, flags)| Op::SetXattr { path, name, value, flags }),
        2 => (pick(), 0..XATTR_NAMES.len()).prop_map(|(path, name)| Op::RemoveXattr { path, name }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let id = prop_oneof![Just(None), Just(Some(0u32)), Just(Some(USER))];
    let blocks = 0u64..6;
    prop_oneof![
        30 => namespace_op(),
        5 => (pick(), id.clone(), id, any::<bool>())
            .prop_map(|(path, uid, gid, follow)| Op::Chown { path, uid, gid, follow }),
        6 => (0usize..16, 0u64..10 * BS, 1u64..3 * BS, 1u8..4)
            .prop_map(|(file, off, len, seed)| Op::Write { file, off, len, seed }),
        2 => (0usize..16, 0usize..16).prop_map(|(src, dst)| Op::CopyWhole { src, dst }),
        4 => (0usize..16, 0usize..16, blocks.clone(), blocks.clone(), 1u64..4).prop_map(
            |(src, dst, src_block, dst_block, blocks)| Op::Reflink { src, dst, src_block, dst_block, blocks }
        ),
        4 => (0usize..16, 0usize..16, blocks.clone(), blocks, 1u64..4).prop_map(
            |(src, dst, src_block, dst_block, blocks)| Op::Dedupe { src, dst, src_block, dst_block, blocks }
        ),
        3 => (0usize..16, 0u64..8 * BS, 1u64..3 * BS).prop_map(|(file, off, len)| Op::Punch { file, off, len }),
        2 => Just(Op::Remount),
        6 => namespace_op().prop_map(|op| Op::AsUser(Box::new(op))),
    ]
}

#[test]
fn random_namespace_sequences_match_the_model() {
    let cases = env_u64("PROPTEST_CASES", 2000) as u32;
    let steps = env_u64("FERRODAX_PROPTEST_STEPS", 40) as usize;
    let (mut runner, seed) = seeded_runner(cases, 0x11a3_e5ed);
    eprintln!("names model: {cases} cases x up to {steps} steps, FERRODAX_PROPTEST_SEED={seed}");
    if let Err(e) = runner.run(&proptest::collection::vec(op(), 1..=steps), |ops| run_case(&ops)) {
        panic!("{e}\n(reproduce with FERRODAX_PROPTEST_SEED={seed})");
    }
    let counters = [
        ("steps", &STEPS_RUN),
        ("failed steps", &STEPS_FAILED),
        ("hard links", &HARD_LINKS),
        ("exchanges", &EXCHANGES),
        ("renames onto another name of the same inode", &RENAMES_OVER_LINKS),
        ("renames of a directory below itself", &RENAMES_BELOW_ITSELF),
        ("stats through a symlink", &SYMLINK_WALKS),
        ("refusals of a non-root caller", &USER_REFUSALS),
        ("successes of a non-root caller", &USER_SUCCESSES),
        ("shared blocks of files with several names", &SHARED_MULTI_NAME),
        ("dedupes that shared blocks", &DEDUPES_SHARED),
        ("remounts", &REMOUNTS),
    ];
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    eprintln!(
        "coverage: {}",
        counters.iter().map(|(what, c)| format!("{} {what}", get(c))).collect::<Vec<_>>().join(", ")
    );
    if cases >= 64 {
        for (what, c) in counters {
            assert!(get(c) > 0, "the run never produced {what}");
        }
    }
}
