//! The library API of the namespace beyond open/mkdir/rename: hard links, symlinks, `lstat`,
//! `chmod`/`chown`/`utimensat`, `renameat2` flags, `access`, and `user.` extended attributes.
//!
//! Owns nothing but the dispatch: a direct mount runs `fs::FileSystem`'s namespace operations
//! under the lock, a connected `Fs` sends them to the pool server, which runs them for the
//! caller's credentials. Must never decide a rule itself (those live in `fs::namespace`).

use super::{File, Fs};
use crate::error::Result;
use crate::fs::namespace::SetAttributes;
use crate::fs::Stat;
use crate::server::protocol::{Answer, Op};

impl Fs {
    /// `link(2)`: gives the file or symlink at `existing` (a final symlink is not followed) the
    /// further name `new`.
    pub fn hard_link(&self, existing: &str, new: &str) -> Result<()> {
        if let Some(c) = self.remote() {
            return c.call_unit(Op::Link { existing: existing.into(), new: new.into() });
        }
        self.write_whole()?.hard_link(existing, new)
    }

    /// `symlink(2)`: creates `path`, a symlink pointing at `target`.
    pub fn symlink(&self, target: &str, path: &str) -> Result<()> {
        if let Some(c) = self.remote() {
            return c.call_unit(Op::Symlink { target: target.into(), path: path.into() });
        }
        self.write_whole()?.symlink(target, path).map(drop)
    }

    /// `readlink(2)`: the target of the symlink at `path`.
    pub fn read_link(&self, path: &str) -> Result<String> {
        if let Some(c) = self.remote() {
            return Self::ask(c, Op::ReadLink { path: path.into() }, |a| match a {
                Answer::Path(Some(p)) => Some(p),
                _ => None,
            });
        }
        let fs = self.read_for_path(path)?;
        let ino = fs.resolve_no_follow(path)?;
        Ok(String::from_utf8_lossy(&fs.read_link(ino)?).into_owned())
    }

    /// `lstat(2)`: the attributes of `path` itself, a final symlink not followed.
    pub fn symlink_metadata(&self, path: &str) -> Result<Stat> {
        if let Some(c) = self.remote() {
            return Self::ask(c, Op::SymlinkMetadata { path: path.into() }, |a| match a {
                Answer::Stat(s) => Some(s),
                _ => None,
            });
        }
        let fs = self.read_for_path(path)?;
        let ino = fs.resolve_no_follow(path)?;
        fs.stat(ino)
    }

    /// `chmod`, `chown`, `utimensat` of `path` (a final symlink followed when `follow`, else the
    /// symlink itself, as `lchown` and `AT_SYMLINK_NOFOLLOW`).
    pub fn set_attributes(&self, path: &str, set: &SetAttributes, follow: bool) -> Result<()> {
        if let Some(c) = self.remote() {
            return c.call_unit(Op::SetAttributes { path: path.into(), set: set.clone(), follow });
        }
        let mut fs = self.write_whole()?;
        let ino = if follow { fs.resolve(path)? } else { fs.resolve_no_follow(path)? };
        fs.set_attributes(ino, set)
    }

    /// `chmod(path, mode)`.
    pub fn set_permissions(&self, path: &str, mode: u32) -> Result<()> {
        self.set_attributes(path, &SetAttributes { mode: Some(mode), ..SetAttributes::default() }, true)
    }

    /// `renameat2(from, to, flags)`: [`crate::fs::namespace::RENAME_NOREPLACE`] or
    /// [`crate::fs::namespace::RENAME_EXCHANGE`].
    pub fn rename_with_flags(&self, from: &str, to: &str, flags: u32) -> Result<()> {
        if let Some(c) = self.remote() {
            return c.call_unit(Op::RenameWithFlags { from: from.into(), to: to.into(), flags });
        }
        self.write_whole()?.rename_with_flags(from, to, flags)
    }

    /// `access(2)`: Ok when the caller may `mask` (R_OK 4 | W_OK 2 | X_OK 1) the object at
    /// `path` (EACCES otherwise; mask 0 checks that it exists).
    pub fn access(&self, path: &str, mask: u32) -> Result<()> {
        if let Some(c) = self.remote() {
            return c.call_unit(Op::Access { path: path.into(), mask });
        }
        self.read_for_path(path)?.access(path, mask)
    }

    /// `getxattr(2)`: the value of extended attribute `name` of `path` (ENODATA if absent).
    pub fn get_xattr(&self, path: &str, name: &str) -> Result<Vec<u8>> {
        if let Some(c) = self.remote() {
            return Self::ask(c, Op::GetXattr { path: path.into(), name: name.into() }, |a| match a {
                Answer::Bytes(b) => Some(b),
                _ => None,
            });
        }
        let fs = self.read_for_path(path)?;
        let ino = fs.resolve(path)?;
        fs.get_xattr(ino, name)
    }

    /// `listxattr(2)`: the names of the extended attributes of `path`.
    pub fn list_xattrs(&self, path: &str) -> Result<Vec<String>> {
        if let Some(c) = self.remote() {
            return Self::ask(c, Op::ListXattrs { path: path.into() }, |a| match a {
                Answer::Names(n) => Some(n),
                _ => None,
            });
        }
        let fs = self.read_for_path(path)?;
        let ino = fs.resolve(path)?;
        fs.list_xattrs(ino)
    }

    /// `setxattr(2)` with `flags` ([`crate::fs::namespace::XATTR_CREATE`],
    /// [`crate::fs::namespace::XATTR_REPLACE`]).
    pub fn set_xattr(&self, path: &str, name: &str, value: &[u8], flags: u32) -> Result<()> {
        if let Some(c) = self.remote() {
            let op = Op::SetXattr { path: path.into(), name: name.into(), value: value.to_vec(), flags };
            return c.call_unit(op);
        }
        let mut fs = self.write_whole()?;
        let ino = fs.resolve(path)?;
        fs.set_xattr(ino, name, value, flags)
    }

    /// `removexattr(2)` (ENODATA if absent).
    pub fn remove_xattr(&self, path: &str, name: &str) -> Result<()> {
        if let Some(c) = self.remote() {
            return c.call_unit(Op::RemoveXattr { path: path.into(), name: name.into() });
        }
        let mut fs = self.write_whole()?;
        let ino = fs.resolve(path)?;
        fs.remove_xattr(ino, name)
    }
}

impl File {
    /// `fchmod`, `fchown`, `futimens` of the open file.
    pub fn set_attributes(&self, set: &SetAttributes) -> Result<()> {
        if let Some(c) = self.fs.remote() {
            return c.call_unit(Op::FileSetAttributes { handle: self.handle, set: set.clone() });
        }
        self.fs.write_whole()?.set_attributes(self.ino, set)
    }
}
