//! Who is asking, and what Linux lets them do: credentials and the permission rules.
//!
//! Owns [`Credentials`], the caller of the operations running on this thread (like the kernel's
//! `current_cred()`: the pool server and the FUSE mount set it per request with [`as_caller`];
//! everything else acts with the credentials of its own process), and the rules the file system
//! applies with them: the mode bits (owner, group or other class; root passes read and write
//! always and execute when any execute bit is set), search permission on every directory of a
//! path, write and search permission on a directory whose entries change, the sticky bit, and who
//! may change modes, owners and times. Must never look at the pool or the file system's state
//! beyond the attributes it is handed.

use crate::format::record::{InodeAttrs, InodeKind};
use std::cell::RefCell;

/// Read permission (`R_OK`).
pub const MAY_READ: u32 = 4;
/// Write permission (`W_OK`).
pub const MAY_WRITE: u32 = 2;
/// Execute permission, search for a directory (`X_OK`).
pub const MAY_EXEC: u32 = 1;

/// The set-user-ID bit.
pub const S_ISUID: u32 = 0o4000;
/// The set-group-ID bit.
pub const S_ISGID: u32 = 0o2000;
/// The sticky bit: in a directory, only an entry's owner (or the directory's) may remove it.
pub const S_ISVTX: u32 = 0o1000;

/// The identity operations are checked against: user, group and supplementary groups.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    /// Effective (file system) user id.
    pub uid: u32,
    /// Effective (file system) group id.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
}

thread_local! {
    static CALLER: RefCell<Option<Credentials>> = const { RefCell::new(None) };
}

impl Credentials {
    /// The credentials of this process: effective user and group, supplementary groups.
    pub fn of_process() -> Credentials {
        let groups = rustix::process::getgroups().unwrap_or_default();
        Credentials {
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
            groups: groups.into_iter().map(|g| g.as_raw()).collect(),
        }
    }

    /// The superuser (uid 0, gid 0).
    pub fn root() -> Credentials {
        Credentials { uid: 0, gid: 0, groups: Vec::new() }
    }

    /// The credentials of process `pid` as /proc shows them (effective ids, supplementary
    /// groups), or `None` when it is gone.
    pub fn of_pid(pid: u32) -> Option<Credentials> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> Option<Vec<u32>> {
            let line = status.lines().find(|l| l.starts_with(name))?;
            Some(line[name.len()..].split_whitespace().filter_map(|v| v.parse().ok()).collect())
        };
        // "Uid:" and "Gid:" list real, effective, saved and file system ids: the last one decides.
        let uid = *field("Uid:")?.get(3)?;
        let gid = *field("Gid:")?.get(3)?;
        Some(Credentials { uid, gid, groups: field("Groups:").unwrap_or_default() })
    }

    /// The caller of the operation running on this thread: set by [`as_caller`], else this
    /// process.
    pub fn current() -> Credentials {
        CALLER.with(|c| c.borrow().clone()).unwrap_or_else(Credentials::of_process)
    }

    /// The caller [`as_caller`] set on this thread, if any (a request made for someone else).
    pub fn explicit() -> Option<Credentials> {
        CALLER.with(|c| c.borrow().clone())
    }

    /// True for uid 0, which Linux lets past the permission bits (CAP_DAC_OVERRIDE, CAP_FOWNER,
    /// CAP_CHOWN).
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Whether `gid` is this caller's group or one of its supplementary groups.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }

    /// Whether this caller owns the inode (or is root, which may act as any owner).
    pub fn owns(&self, attrs: &InodeAttrs) -> bool {
        self.is_root() || self.uid == attrs.uid
    }

    /// Whether the mode bits of `attrs` grant every permission in `mask` ([`MAY_READ`] |
    /// [`MAY_WRITE`] | [`MAY_EXEC`]) to this caller, as Linux's `generic_permission` decides.
    pub fn permits(&self, attrs: &InodeAttrs, mask: u32) -> bool {
        if self.is_root() {
            // Read and write always; execute when someone may execute, or for a directory.
            return mask & MAY_EXEC == 0 || attrs.kind == InodeKind::Dir || attrs.mode & 0o111 != 0;
        }
        let bits = if self.uid == attrs.uid {
            (attrs.mode >> 6) & 7
        } else if self.in_group(attrs.gid) {
            (attrs.mode >> 3) & 7
        } else {
            attrs.mode & 7
        };
        bits & mask == mask
    }

    /// Whether this caller may remove or replace the entry naming `child` in directory `dir`
    /// (write and search permission granted already): in a sticky directory only the owner of
    /// the entry's inode or of the directory may.
    pub fn may_delete_from(&self, dir: &InodeAttrs, child: &InodeAttrs) -> bool {
        dir.mode & S_ISVTX == 0 || self.is_root() || self.uid == child.uid || self.uid == dir.uid
    }
}

/// Runs `f` with `caller` as the credentials of the operations it makes on this thread (a
/// server's request, a FUSE request), then restores the previous caller.
pub fn as_caller<T>(caller: Credentials, f: impl FnOnce() -> T) -> T {
    let previous = CALLER.with(|c| c.borrow_mut().replace(caller));
    struct Restore(Option<Credentials>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CALLER.with(|c| *c.borrow_mut() = previous);
        }
    }
    let _restore = Restore(previous);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(kind: InodeKind, mode: u32, uid: u32, gid: u32) -> InodeAttrs {
        InodeAttrs { kind, mode, uid, gid, ..InodeAttrs::default() }
    }

    #[test]
    fn the_class_of_the_caller_picks_the_bits_as_linux_does() {
        let alice = Credentials { uid: 1000, gid: 1000, groups: vec![27] };
        // Owner class decides even when group or other would grant more.
        assert!(!alice.permits(&attrs(InodeKind::File, 0o077, 1000, 1000), MAY_READ));
        assert!(alice.permits(&attrs(InodeKind::File, 0o040, 0, 27), MAY_READ));
        assert!(!alice.permits(&attrs(InodeKind::File, 0o040, 0, 27), MAY_WRITE));
        assert!(alice.permits(&attrs(InodeKind::File, 0o004, 0, 0), MAY_READ));
        assert!(!alice.permits(&attrs(InodeKind::Dir, 0o006, 0, 0), MAY_EXEC | MAY_WRITE));
        let root = Credentials::root();
        assert!(root.permits(&attrs(InodeKind::File, 0, 5, 5), MAY_READ | MAY_WRITE));
        assert!(!root.permits(&attrs(InodeKind::File, 0o600, 5, 5), MAY_EXEC));
        assert!(root.permits(&attrs(InodeKind::Dir, 0, 5, 5), MAY_EXEC));
    }

    #[test]
    fn as_caller_sets_the_caller_for_its_scope_only() {
        let me = Credentials::of_process();
        let bob = Credentials { uid: 4242, gid: 4242, groups: vec![] };
        let seen = as_caller(bob.clone(), Credentials::current);
        assert_eq!(seen, bob);
        assert_eq!(Credentials::current(), me);
    }

    #[test]
    fn sticky_directories_keep_entries_to_their_owners() {
        let dir = attrs(InodeKind::Dir, 0o1777, 0, 0);
        let theirs = attrs(InodeKind::File, 0o666, 7, 7);
        let alice = Credentials { uid: 1000, gid: 1000, groups: vec![] };
        assert!(!alice.may_delete_from(&dir, &theirs));
        assert!(alice.may_delete_from(&dir, &attrs(InodeKind::File, 0o600, 1000, 1000)));
        assert!(alice.may_delete_from(&attrs(InodeKind::Dir, 0o777, 0, 0), &theirs));
    }
}
