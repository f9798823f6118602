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
use super::{checksum_with_hole, MAX_FILE_SIZE, MAX_NAME_LEN};
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
}

impl InodeKind {
    fn code(self) -> u8 {
        match self {
            InodeKind::File => 1,
            InodeKind::Dir => 2,
        }
    }
    fn from_code(code: u8, r: &Reader<'_>) -> Result<Self> {
        match code {
            1 => Ok(InodeKind::File),
            2 => Ok(InodeKind::Dir),
            other => Err(r.corrupt(format!("unknown inode kind {other}"))),
        }
    }
}

/// The durable attributes of one inode (its extents travel as separate `Map` mutations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InodeAttrs {
    /// Inode number (1 is the root directory).
    pub ino: u64,
    /// The directory holding its one name (the root names itself).
    pub parent: u64,
    /// Its name inside `parent` (empty for the root and for unlinked files still open).
    pub name: Vec<u8>,
    /// File or directory.
    pub kind: InodeKind,
    /// Permission bits.
    pub mode: u32,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Number of names (0 = unlinked, reclaimed at last close or at the next mount).
    pub nlink: u32,
    /// Access time, ns since the Unix epoch.
    pub atime_ns: i64,
    /// Modification time.
    pub mtime_ns: i64,
    /// Change time.
    pub ctime_ns: i64,
}

impl InodeAttrs {
    /// The attributes of a new, empty directory (mode 0755, two links) made at `now_ns`.
    pub fn empty_dir(ino: u64, parent: u64, name: &[u8], now_ns: i64) -> Self {
        Self {
            ino,
            parent,
            name: name.to_vec(),
            kind: InodeKind::Dir,
            mode: 0o755,
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
        w.u64(self.parent);
        w.u8(self.kind.code());
        w.u16(self.name.len() as u16);
        w.raw(&self.name);
        w.u32(self.mode);
        w.u64(self.size);
        w.u32(self.nlink);
        w.i64(self.atime_ns);
        w.i64(self.mtime_ns);
        w.i64(self.ctime_ns);
    }

    /// Decodes what `encode_into` wrote.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self> {
        let ino = r.u64()?;
        let parent = r.u64()?;
        let kind = InodeKind::from_code(r.u8()?, r)?;
        let name_len = r.u16()? as usize;
        if name_len > MAX_NAME_LEN {
            return Err(r.corrupt(format!("name of {name_len} bytes")));
        }
        let name = r.take(name_len)?.to_vec();
        let attrs = Self {
            ino,
            parent,
            name,
            kind,
            mode: r.u32()?,
            size: r.u64()?,
            nlink: r.u32()?,
            atime_ns: r.i64()?,
            mtime_ns: r.i64()?,
            ctime_ns: r.i64()?,
        };
        if attrs.size > MAX_FILE_SIZE {
            return Err(r.corrupt(format!("inode {ino}: size {} past the largest file size", attrs.size)));
        }
        Ok(attrs)
    }
}

/// One change to the durable state. Replaying a record's mutations in order reproduces exactly the
/// in-memory change the operation made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Create an inode or replace its attributes.
    PutInode(InodeAttrs),
    /// Delete an inode; its extents must already be unmapped.
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
}

const TAG_PUT_INODE: u8 = 1;
const TAG_FREE_INODE: u8 = 2;
const TAG_MAP: u8 = 3;
const TAG_QUARANTINE: u8 = 4;
const NO_PHYS: u64 = u64::MAX;

impl Mutation {
    /// Upper bound of this mutation's encoded size.
    pub fn encoded_len(&self) -> usize {
        match self {
            Mutation::PutInode(a) => 1 + 8 + 8 + 1 + 2 + a.name.len() + 4 + 8 + 4 + 24,
            Mutation::FreeInode { .. } => 9,
            Mutation::Map { .. } => 33,
            Mutation::Quarantine { .. } => 17,
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
        }
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self> {
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
            other => return Err(r.corrupt(format!("unknown mutation tag {other}"))),
        })
    }
}

/// Encodes a whole record (header and payload), padded to [`RECORD_ALIGN`].
pub fn encode_record(seq: u64, mutations: &[Mutation]) -> Vec<u8> {
    let mut w = Writer { bytes: Vec::with_capacity(record_len_bound(mutations)) };
    w.u32(RECORD_MAGIC);
    w.u32(0); // payload length, patched below
    w.u64(seq);
    w.u32(0); // checksum, patched below
    w.u32(mutations.len() as u32);
    for m in mutations {
        m.encode_into(&mut w);
    }
    let mut bytes = w.bytes;
    let payload_len = (bytes.len() - HEADER_LEN) as u32;
    bytes[4..8].copy_from_slice(&payload_len.to_le_bytes());
    let crc = checksum_with_hole(&bytes[..16], &bytes[20..]);
    bytes[16..20].copy_from_slice(&crc.to_le_bytes());
    bytes.resize(bytes.len().next_multiple_of(RECORD_ALIGN), 0);
    bytes
}

/// Upper bound of the encoded size of a record holding `mutations`.
pub fn record_len_bound(mutations: &[Mutation]) -> usize {
    (HEADER_LEN + mutations.iter().map(Mutation::encoded_len).sum::<usize>()).next_multiple_of(RECORD_ALIGN)
}

/// What lies at one position of the log.
#[derive(Debug)]
pub enum RecordAt {
    /// A valid record with the expected sequence number, and its padded length.
    Valid(Vec<Mutation>, usize),
    /// Anything else: the end of the log (a torn or stale record, or unused space).
    End,
}

/// Decodes the record at the start of `bytes` if it is valid and carries sequence number `seq`.
///
/// A record whose checksum matches but whose mutations do not decode is corruption, not the end.
pub fn decode_record(bytes: &[u8], seq: u64) -> Result<RecordAt> {
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
        mutations.push(Mutation::decode_from(&mut r)?);
    }
    if r.remaining() != 0 {
        return Err(r.corrupt(format!("{} trailing bytes in record {seq}", r.remaining())));
    }
    Ok(RecordAt::Valid(mutations, total.next_multiple_of(RECORD_ALIGN)))
}
