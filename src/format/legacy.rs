//! Format versions 1 and 2, read only: their inode encoding kept each inode's one name (parent
//! directory and name) in the inode itself, and had no owners, symlinks or extended attributes.
//!
//! Owns decoding those bytes into the current structures: a checkpoint payload becomes a current
//! [`StateImage`] (each named inode becomes an entry of its parent directory), a log record
//! becomes [`LegacyMutation`]s, which the file system translates against its state (a renamed
//! inode's new name is a new entry there, see `fs::upgrade`). Inodes get the owner the caller
//! names (whoever converts the pool) and no other attributes. Must never write anything: old
//! pools are converted by writing a current checkpoint, never by editing them in place.

use super::checkpoint::{decode_prefix_with, decode_with, InodeImage, StateImage};
use super::codec::Reader;
use super::record::{self, InodeAttrs, InodeKind, Mutation, RecordAt};
use super::{MAX_FILE_SIZE, MAX_NAME_LEN, ROOT_INO};
use crate::error::{Error, Result};
use std::collections::HashMap;

/// An inode as versions 1 and 2 stored it: current attributes plus its one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyAttrs {
    /// The attributes (owner as the caller named it).
    pub attrs: InodeAttrs,
    /// The directory holding its one name (the root names itself).
    pub parent: u64,
    /// Its name inside `parent` (empty for the root; kept while open after an unlink).
    pub name: Vec<u8>,
}

/// A log record's mutation as versions 1 and 2 wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyMutation {
    /// Create an inode or replace its attributes, its one name included.
    PutInode(LegacyAttrs),
    /// Every other mutation, which means the same in the current format (`FreeInode` then also
    /// removed the inode's name).
    Same(Mutation),
}

/// A version 1/2 inode of a checkpoint: attributes with the name, and extents.
type LegacyInode = (LegacyAttrs, Vec<(u64, u64, u64)>);

/// The smallest version 1/2 inode: its fixed fields and an empty extent list.
const MIN_LEGACY_INODE_BYTES: u64 = 8 + 8 + 1 + 2 + 4 + 8 + 4 + 24 + 8;

fn decode_attrs(r: &mut Reader<'_>, owner: (u32, u32)) -> Result<LegacyAttrs> {
    let ino = r.u64()?;
    let parent = r.u64()?;
    let kind = match r.u8()? {
        1 => InodeKind::File,
        2 => InodeKind::Dir,
        other => return Err(r.corrupt(format!("unknown inode kind {other}"))),
    };
    let name_len = r.u16()? as usize;
    if name_len > MAX_NAME_LEN {
        return Err(r.corrupt(format!("name of {name_len} bytes")));
    }
    let name = r.take(name_len)?.to_vec();
    let attrs = InodeAttrs {
        ino,
        kind,
        mode: r.u32()? & 0o7777,
        uid: owner.0,
        gid: owner.1,
        size: r.u64()?,
        nlink: r.u32()?,
        atime_ns: r.i64()?,
        mtime_ns: r.i64()?,
        ctime_ns: r.i64()?,
    };
    if attrs.size > MAX_FILE_SIZE {
        return Err(r.corrupt(format!("inode {ino}: size {} past the largest file size", attrs.size)));
    }
    Ok(LegacyAttrs { attrs, parent, name })
}

fn decode_inode(r: &mut Reader<'_>, owner: (u32, u32)) -> Result<LegacyInode> {
    let attrs = decode_attrs(r, owner)?;
    let n = r.u64()?;
    if n > r.remaining() as u64 / 24 {
        return Err(r.corrupt(format!("extent count {n} of inode {} exceeds payload", attrs.attrs.ino)));
    }
    let mut extents = Vec::with_capacity(n as usize);
    for _ in 0..n {
        extents.push((r.u64()?, r.u64()?, r.u64()?));
    }
    Ok((attrs, extents))
}

/// Turns version 1/2 inodes into current ones: each named inode (link count above 0, not the
/// root) becomes the entry `name -> ino` of its parent. With `strict`, a name whose parent is not
/// a directory of the image, or that another inode holds already, is `Error::Corrupt`; without
/// (salvage), such a name is dropped and salvage finds the inode a place.
fn to_current(
    next_ino: u64,
    legacy: Vec<LegacyInode>,
    quarantine: Vec<(u64, u64)>,
    strict: bool,
) -> Result<StateImage> {
    let index: HashMap<u64, usize> = legacy.iter().enumerate().map(|(i, (a, _))| (a.attrs.ino, i)).collect();
    let mut inodes: Vec<InodeImage> = Vec::with_capacity(legacy.len());
    let mut names = Vec::new();
    for (l, extents) in legacy {
        if l.attrs.ino != ROOT_INO && l.attrs.nlink > 0 {
            names.push((l.parent, l.name, l.attrs.ino));
        }
        inodes.push(InodeImage { attrs: l.attrs, extents: extents.into(), ..InodeImage::default() });
    }
    for (parent, name, ino) in names {
        let dir = index.get(&parent).map(|&i| &mut inodes[i]).filter(|d| d.attrs.kind == InodeKind::Dir);
        let problem = match dir {
            None => {
                format!("inode {ino} is named in inode {parent}, which is not a directory of the checkpoint")
            }
            Some(dir) if dir.entries.iter().any(|(n, _)| *n == name) => {
                format!("directory {parent} has two entries named {:?}", String::from_utf8_lossy(&name))
            }
            Some(dir) => {
                dir.entries.push((name, ino));
                continue;
            }
        };
        if strict {
            return Err(Error::Corrupt(format!("checkpoint (format version 2): {problem}")));
        }
    }
    for inode in &mut inodes {
        inode.entries.sort_unstable();
    }
    Ok(StateImage { next_ino, inodes, quarantine })
}

/// Decodes a version 1/2 checkpoint payload as a current image; inodes belong to `owner`.
pub fn decode_image(payload: &[u8], owner: (u32, u32)) -> Result<StateImage> {
    let (next_ino, inodes, quarantine) =
        decode_with(payload, MIN_LEGACY_INODE_BYTES, |r| decode_inode(r, owner))?;
    to_current(next_ino, inodes, quarantine, true)
}

/// [`decode_image`] of a damaged payload, as much as is whole (see
/// [`StateImage::decode_prefix`]); names that do not fit are dropped.
pub fn decode_image_prefix(payload: &[u8], owner: (u32, u32)) -> StateImage {
    let (next_ino, inodes, quarantine) =
        decode_prefix_with(payload, MIN_LEGACY_INODE_BYTES, |r| decode_inode(r, owner));
    to_current(next_ino, inodes, quarantine, false).expect("lenient conversion never fails")
}

/// Decodes the version 1/2 record at the start of `bytes` (see [`record::decode_record`]).
pub fn decode_record(bytes: &[u8], seq: u64, owner: (u32, u32)) -> Result<RecordAt<LegacyMutation>> {
    record::decode_record_with(bytes, seq, |r| {
        // Tag 1 was the inode with its name; tags 2-4 are encoded as they still are.
        if r.peek_u8() == Some(1) {
            r.u8()?;
            return decode_attrs(r, owner).map(LegacyMutation::PutInode);
        }
        match Mutation::decode_from(r)? {
            m @ (Mutation::FreeInode { .. } | Mutation::Map { .. } | Mutation::Quarantine { .. }) => {
                Ok(LegacyMutation::Same(m))
            }
            _ => Err(r.corrupt("a mutation tag that format version 2 does not have")),
        }
    })
}
