//! Log records: one record is one atomic transaction, a list of [`Mutation`]s.
//!
//! Record layout (little-endian, records start 8-byte aligned inside the log region):
//! ```text
//!  0  4  magic "FDXR"
//!  4  4  payload length in bytes
//!  8  8  sequence number (one more than the previous record's, across generations)
//! 16  4  CRC-32C of bytes 0..24 (this field as zero) and the payload
//! 20  4  number of mutations
//! 24  .  payload: the mutations, each a tag byte then its fields
//! ```
//! A record counts only if magic, sequence and checksum all match; the first one that does not
//! ends the log. Owns the encoding only.

use super::codec::{u32_at, u64_at, Reader, Writer};
use super::{
    checksum, checksum_with_hole, MAX_FILE_SIZE, MAX_NAME_LEN, MAX_SYMLINK_LEN, MAX_XATTR_NAME_LEN,
    MAX_XATTR_VALUE_LEN,
};
use crate::error::Result;

/// Magic of a log record header.
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"FDXR");
/// Bytes in a record header.
pub const HEADER_LEN: usize = 24;
/// Records start at multiples of this many bytes.
pub const RECORD_ALIGN: usize = 8;

/// What kind of object an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum InodeKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link: its target is stored inline ([`Mutation::SetTarget`]).
    Symlink,
}

impl InodeKind {
    pub(crate) fn code(self) -> u8 {
        match self {
            InodeKind::File => 1,
            InodeKind::Dir => 2,
            InodeKind::Symlink => 3,
        }
    }
    pub(crate) fn from_code(code: u8, r: &Reader<'_>) -> Result<Self> {
        match code {
            1 => Ok(InodeKind::File),
            2 => Ok(InodeKind::Dir),
            3 => Ok(InodeKind::Symlink),
            other => Err(r.corrupt(format!("unknown inode kind {other}"))),
        }
    }
}

/// The durable attributes of one inode. Its extents, its directory entries, its extended
/// attributes and a symlink's target travel as separate mutations; its names live in the
/// directories that hold them ([`Mutation::Link`]), never in the inode, so a file may have many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InodeAttrs {
    /// Inode number (1 is the root directory).
    pub ino: u64,
    /// File, directory or symlink.
    pub kind: InodeKind,
    /// Permission bits and set-id/sticky bits (`mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (0 for directories, the target's length for symlinks).
    pub size: u64,
    /// Number of names: directory entries naming a file or symlink (0 = unlinked while open,
    /// reclaimed at last close or at the next mount); 2 plus its subdirectories for a directory.
    pub nlink: u32,
    /// Access time, ns since the Unix epoch.
    pub atime_ns: i64,
    /// Modification time.
    pub mtime_ns: i64,
    /// Change time.
    pub ctime_ns: i64,
}

impl Default for InodeAttrs {
    /// An empty directory numbered 0 (a placeholder to fill in).
    fn default() -> Self {
        InodeAttrs::empty_dir(0, 0, 0, 0, 0)
    }
}

/// Bytes of an encoded [`InodeAttrs`].
pub const INODE_ATTRS_LEN: usize = 8 + 1 + 4 + 4 + 4 + 8 + 4 + 24;

impl InodeAttrs {
    /// The attributes of a new, empty directory (two links) owned by `uid`/`gid`, made at `now_ns`.
    pub fn empty_dir(ino: u64, mode: u32, uid: u32, gid: u32, now_ns: i64) -> Self {
        Self {
            ino,
            kind: InodeKind::Dir,
            mode: mode & 0o7777,
            uid,
            gid,
            size: 0,
            nlink: 2,
            atime_ns: now_ns,
            mtime_ns: now_ns,
            ctime_ns: now_ns,
        }
    }

    /// Appends the encoding shared by log records and checkpoints.
    pub fn encode_into(&self, w: &mut Writer) {
        w.u64(self.ino);
        w.u8(self.kind.code());
        w.u32(self.mode);
        w.u32(self.uid);
        w.u32(self.gid);
        w.u64(self.size);
        w.u32(self.nlink);
        w.i64(self.atime_ns);
        w.i64(self.mtime_ns);
        w.i64(self.ctime_ns);
    }

    /// Decodes what `encode_into` wrote.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self> {
        let ino = r.u64()?;
        let kind = InodeKind::from_code(r.u8()?, r)?;
        let attrs = Self {
            ino,
            kind,
            mode: r.u32()?,
            uid: r.u32()?,
            gid: r.u32()?,
            size: r.u64()?,
            nlink: r.u32()?,
            atime_ns: r.i64()?,
            mtime_ns: r.i64()?,
            ctime_ns: r.i64()?,
        };
        attrs.check_decoded(r)?;
        Ok(attrs)
    }

    /// The checks every decoded inode passes before it reaches the state.
    pub(crate) fn check_decoded(&self, r: &Reader<'_>) -> Result<()> {
        if self.size > MAX_FILE_SIZE {
            return Err(
                r.corrupt(format!("inode {}: size {} past the largest file size", self.ino, self.size))
            );
        }
        if self.mode & !0o7777 != 0 {
            return Err(r.corrupt(format!("inode {}: mode {:o} has bits beyond 0o7777", self.ino, self.mode)));
        }
        Ok(())
    }
}

/// Reads a length-prefixed name (u16 length) of at most `max` bytes.
pub(crate) fn read_bytes16(r: &mut Reader<'_>, max: usize, what: &str) -> Result<Vec<u8>> {
    let len = r.u16()? as usize;
    if len > max {
        return Err(r.corrupt(format!("{what} of {len} bytes (at most {max})")));
    }
    Ok(r.take(len)?.to_vec())
}

fn write_bytes16(w: &mut Writer, bytes: &[u8]) {
    w.u16(bytes.len() as u16);
    w.raw(bytes);
}

/// One change to the durable state. Replaying a record's mutations in order reproduces exactly the
/// in-memory change the operation made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Create an inode or replace its attributes.
    PutInode(InodeAttrs),
    /// Delete an inode; its extents must already be unmapped and its names removed.
    FreeInode {
        /// The inode.
        ino: u64,
    },
    /// Point file blocks `[file_block, file_block + len)` of `ino` at pool blocks
    /// `[phys, phys + len)`, or make them a hole when `phys` is `None`. Whatever those file blocks
    /// mapped before loses one reference.
    Map {
        /// The inode.
        ino: u64,
        /// First file block.
        file_block: u64,
        /// Number of blocks.
        len: u64,
        /// First pool block, or `None` for a hole.
        phys: Option<u64>,
    },
    /// Mark pool blocks as bad: never handed out again.
    Quarantine {
        /// First pool block.
        block: u64,
        /// Number of blocks.
        len: u64,
    },
    /// Add the entry `name` -> `ino` to directory `dir` (the name must be free). The inode's
    /// link count is the operation's to set, in a `PutInode` of the same record.
    Link {
        /// The directory.
        dir: u64,
        /// The entry's name.
        name: Vec<u8>,
        /// The inode it names.
        ino: u64,
    },
    /// Remove the entry `name` of directory `dir`, which must name `ino`.
    Unlink {
        /// The directory.
        dir: u64,
        /// The entry's name.
        name: Vec<u8>,
        /// The inode it names.
        ino: u64,
    },
    /// Set (`Some`) or remove (`None`) the extended attribute `name` of `ino`.
    SetXattr {
        /// The inode.
        ino: u64,
        /// The full name, namespace included ("user.comment").
        name: Vec<u8>,
        /// The value.
        value: Option<Vec<u8>>,
    },
    /// Set the target of symlink `ino` (once, when it is made).
    SetTarget {
        /// The symlink.
        ino: u64,
        /// What it points at.
        target: Vec<u8>,
    },
    /// Point file blocks `[dst_block, dst_block + len)` of `dst` at what file blocks
    /// `[src_block, src_block + len)` of `src` map when this mutation applies, hole for hole: the
    /// `Map` of every piece of the source range, in one fixed-size mutation (reflink, dedupe;
    /// format version 4). Whatever the destination blocks mapped before loses one reference. Within
    /// one file the two ranges must not overlap.
    Clone {
        /// The source file.
        src: u64,
        /// First block of the source range.
        src_block: u64,
        /// The destination file (may be `src`).
        dst: u64,
        /// First block of the destination range.
        dst_block: u64,
        /// Number of blocks.
        len: u64,
    },
}

const TAG_PUT_INODE: u8 = 1;
const TAG_FREE_INODE: u8 = 2;
const TAG_MAP: u8 = 3;
const TAG_QUARANTINE: u8 = 4;
const TAG_LINK: u8 = 5;
const TAG_UNLINK: u8 = 6;
const TAG_SET_XATTR: u8 = 7;
const TAG_SET_TARGET: u8 = 8;
const TAG_CLONE: u8 = 9;
const NO_PHYS: u64 = u64::MAX;
const NO_VALUE: u32 = u32::MAX;

impl Mutation {
    /// Upper bound of this mutation's encoded size.
    pub fn encoded_len(&self) -> usize {
        match self {
            Mutation::PutInode(_) => 1 + INODE_ATTRS_LEN,
            Mutation::FreeInode { .. } => 9,
            Mutation::Map { .. } => 33,
            Mutation::Quarantine { .. } => 17,
            Mutation::Link { name, .. } | Mutation::Unlink { name, .. } => 1 + 8 + 2 + name.len() + 8,
            Mutation::SetXattr { name, value, .. } => {
                1 + 8 + 2 + name.len() + 4 + value.as_ref().map_or(0, Vec::len)
            }
            Mutation::SetTarget { target, .. } => 1 + 8 + 2 + target.len(),
            Mutation::Clone { .. } => 41,
        }
    }

    fn encode_into(&self, w: &mut Writer) {
        match self {
            Mutation::PutInode(attrs) => {
                w.u8(TAG_PUT_INODE);
                attrs.encode_into(w);
            }
            Mutation::FreeInode { ino } => {
                w.u8(TAG_FREE_INODE);
                w.u64(*ino);
            }
            Mutation::Map { ino, file_block, len, phys } => {
                w.u8(TAG_MAP);
                w.u64(*ino);
                w.u64(*file_block);
                w.u64(*len);
                w.u64(phys.unwrap_or(NO_PHYS));
            }
            Mutation::Quarantine { block, len } => {
                w.u8(TAG_QUARANTINE);
                w.u64(*block);
                w.u64(*len);
            }
            Mutation::Link { dir, name, ino } | Mutation::Unlink { dir, name, ino } => {
                w.u8(if matches!(self, Mutation::Link { .. }) { TAG_LINK } else { TAG_UNLINK });
                w.u64(*dir);
                write_bytes16(w, name);
                w.u64(*ino);
            }
            Mutation::SetXattr { ino, name, value } => {
                w.u8(TAG_SET_XATTR);
                w.u64(*ino);
                write_bytes16(w, name);
                match value {
                    Some(v) => {
                        w.u32(v.len() as u32);
                        w.raw(v);
                    }
                    None => w.u32(NO_VALUE),
                }
            }
            Mutation::SetTarget { ino, target } => {
                w.u8(TAG_SET_TARGET);
                w.u64(*ino);
                write_bytes16(w, target);
            }
            Mutation::Clone { src, src_block, dst, dst_block, len } => {
                w.u8(TAG_CLONE);
                for field in [src, src_block, dst, dst_block, len] {
                    w.u64(*field);
                }
            }
        }
    }

    pub(crate) fn decode_from(r: &mut Reader<'_>) -> Result<Self> {
        Ok(match r.u8()? {
            TAG_PUT_INODE => Mutation::PutInode(InodeAttrs::decode_from(r)?),
            TAG_FREE_INODE => Mutation::FreeInode { ino: r.u64()? },
            TAG_MAP => {
                let ino = r.u64()?;
                let file_block = r.u64()?;
                let len = r.u64()?;
                let phys = r.u64()?;
                Mutation::Map { ino, file_block, len, phys: (phys != NO_PHYS).then_some(phys) }
            }
            TAG_QUARANTINE => Mutation::Quarantine { block: r.u64()?, len: r.u64()? },
            tag @ (TAG_LINK | TAG_UNLINK) => {
                let dir = r.u64()?;
                let name = read_bytes16(r, MAX_NAME_LEN, "a name")?;
                let ino = r.u64()?;
                if tag == TAG_LINK {
                    Mutation::Link { dir, name, ino }
                } else {
                    Mutation::Unlink { dir, name, ino }
                }
            }
            TAG_SET_XATTR => {
                let ino = r.u64()?;
                let name = read_bytes16(r, MAX_XATTR_NAME_LEN, "an extended attribute name")?;
                let value = match r.u32()? {
                    NO_VALUE => None,
                    len if len as usize <= MAX_XATTR_VALUE_LEN => Some(r.take(len as usize)?.to_vec()),
                    len => return Err(r.corrupt(format!("an extended attribute value of {len} bytes"))),
                };
                Mutation::SetXattr { ino, name, value }
            }
            TAG_SET_TARGET => {
                let ino = r.u64()?;
                let target = read_bytes16(r, MAX_SYMLINK_LEN, "a symlink target")?;
                Mutation::SetTarget { ino, target }
            }
            TAG_CLONE => Mutation::Clone {
                src: r.u64()?,
                src_block: r.u64()?,
                dst: r.u64()?,
                dst_block: r.u64()?,
                len: r.u64()?,
            },
            other => return Err(r.corrupt(format!("unknown mutation tag {other}"))),
        })
    }
}

/// Encodes a whole record (header and payload), padded to [`RECORD_ALIGN`].
pub fn encode_record(seq: u64, mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_record_into(seq, mutations, &mut bytes);
    bytes
}

/// [`encode_record`] into `bytes`, replacing what it held: a caller that keeps one buffer for
/// every record allocates none per record.
pub fn encode_record_into(seq: u64, mutations: &[Mutation], bytes: &mut Vec<u8>) {
    bytes.clear();
    bytes.reserve(record_len_bound(mutations));
    let mut w = Writer { bytes: std::mem::take(bytes) };
    w.u32(RECORD_MAGIC);
    w.u32(0); // payload length, patched below
    w.u64(seq);
    w.u32(0); // checksum, patched below
    w.u32(mutations.len() as u32);
    for m in mutations {
        m.encode_into(&mut w);
    }
    *bytes = w.bytes;
    let payload_len = (bytes.len() - HEADER_LEN) as u32;
    bytes[4..8].copy_from_slice(&payload_len.to_le_bytes());
    // The checksum field still holds its four zero bytes: the checksum with a hole there is the
    // checksum of the bytes as they are, in one pass.
    debug_assert_eq!(bytes[16..20], [0; 4]);
    let crc = checksum(bytes);
    debug_assert_eq!(crc, checksum_with_hole(&bytes[..16], &bytes[20..]));
    bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    bytes.resize(bytes.len().next_multiple_of(RECORD_ALIGN), 0);
}

/// Upper bound of the encoded size of a record holding `mutations`.
pub fn record_len_bound(mutations: &[Mutation]) -> usize {
    (HEADER_LEN + mutations.iter().map(Mutation::encoded_len).sum::<usize>()).next_multiple_of(RECORD_ALIGN)
}

/// What lies at one position of the log (`M`: the mutations of the format version read).
#[derive(Debug)]
pub enum RecordAt<M = Mutation> {
    /// A valid record with the expected sequence number, and its padded length.
    Valid(Vec<M>, usize),
    /// Anything else: the end of the log (a torn or stale record, or unused space).
    End,
}

/// Decodes the record at the start of `bytes` if it is valid and carries sequence number `seq`.
///
/// A record whose checksum matches but whose mutations do not decode is corruption, not the end.
pub fn decode_record(bytes: &[u8], seq: u64) -> Result<RecordAt> {
    decode_record_with(bytes, seq, Mutation::decode_from)
}

/// Whether a whole record with sequence number `seq` and a matching checksum starts `bytes`,
/// whatever its mutations say (any format version).
pub fn record_checksum_valid(bytes: &[u8], seq: u64) -> bool {
    if bytes.len() < HEADER_LEN || u32_at(bytes, 0) != RECORD_MAGIC || u64_at(bytes, 8) != seq {
        return false;
    }
    let total = HEADER_LEN.saturating_add(u32_at(bytes, 4) as usize);
    total <= bytes.len() && checksum_with_hole(&bytes[..16], &bytes[20..total]) == u32_at(bytes, 16)
}

/// [`decode_record`] with the mutation decoder of some format version.
pub(crate) fn decode_record_with<M>(
    bytes: &[u8],
    seq: u64,
    decode: impl Fn(&mut Reader<'_>) -> Result<M>,
) -> Result<RecordAt<M>> {
    if bytes.len() < HEADER_LEN || u32_at(bytes, 0) != RECORD_MAGIC || u64_at(bytes, 8) != seq {
        return Ok(RecordAt::End);
    }
    let payload_len = u32_at(bytes, 4) as usize;
    let Some(total) = HEADER_LEN.checked_add(payload_len).filter(|t| *t <= bytes.len()) else {
        return Ok(RecordAt::End);
    };
    let crc = checksum_with_hole(&bytes[..16], &bytes[20..total]);
    if crc != u32_at(bytes, 16) {
        return Ok(RecordAt::End);
    }
    let count = u32_at(bytes, 20) as usize;
    let mut r = Reader::new(&bytes[HEADER_LEN..total], "record payload");
    let mut mutations = Vec::with_capacity(count.min(payload_len));
    for _ in 0..count {
        mutations.push(decode(&mut r)?);
    }
    if r.remaining() != 0 {
        return Err(r.corrupt(format!("{} trailing bytes in record {seq}", r.remaining())));
    }
    Ok(RecordAt::Valid(mutations, total.next_multiple_of(RECORD_ALIGN)))
}
