//! Checkpoints: the whole durable state written out, so the log can start over.
//!
//! A checkpoint is a payload (every inode with its extents, the quarantine list) cut into blocks,
//! written twice: chain 0 and chain 1 hold byte-identical blocks at independently allocated places.
//! Every block names its successor in *both* chains, so a reader that finds block i of one chain
//! damaged takes block i of the other and still knows where both chains go on. Each block
//! (little-endian):
//! ```text
//!  0  8  magic "FDXCKPT2"
//!  8  8  generation of the superblock that points at this chain
//! 16  8  next block of chain 0 (0 = last)
//! 24  8  next block of chain 1 (0 = last)
//! 32  4  index of this block in its chain (0 = head)
//! 36  4  payload bytes in this block (at most 4048)
//! 40  4  CRC-32C of bytes 0..48 (this field as zero) and this block's payload bytes
//! 44  4  zero
//! 48  .  payload bytes
//! ```
//! Payload (format versions 3 and 4): `next_ino u64, inode_count u64, inodes…, quarantine_count u64,
//! (block u64, len u64)…`; an inode is its [`InodeAttrs`] encoding, `extent_count u64` and
//! `(file_block, phys, len)` u64 triples, `entry_count u64` and `(name_len u16, name, ino u64)`
//! entries ascending by name (directories), `xattr_count u32` and `(name_len u16, name,
//! value_len u32, value)` ascending by name, then `target_len u16, target` (symlinks). Versions 1
//! and 2 kept each inode's one name in the inode instead ([`super::legacy`] reads them). Format version 1 had one chain of blocks with a 32-byte header (magic "FDXCKPT1",
//! generation, next, payload bytes, CRC); [`read_chain_v1`] still reads it.
//!
//! A *delta* (format version 5) is written in the same blocks (its own two chains, carrying the
//! generation of the superblock that first named it) when few inodes changed since the last
//! checkpoint; the last whole checkpoint stays where it is as the *base*, and the deltas written
//! since form a chain, each naming the one before it. Delta payload: the previous delta
//! ([`DeltaLink`]: `head0 u64, head1 u64, len u64, crc u32, zero u32, generation u64`, all zero
//! for the first delta after the base), `next_ino u64, inode_count u64, inodes…` (ascending by
//! inode number, each encoded as above: the whole inode as it is now), `removed_count u64, ino
//! u64…` (ascending: inodes that no longer exist), `quarantine_count u64, (block u64, len u64)…`
//! (the whole list). Each delta holds what changed since the checkpoint before it: the state is
//! the base with every delta applied in order ([`StateImage::with_delta`]). Owns the encoding only.

use super::codec::{u32_at, u64_at, Reader, Writer};
use super::record::{read_bytes16, InodeAttrs, INODE_ATTRS_LEN};
use super::{
    checksum, checksum_with_hole, BLOCK_SIZE, MAX_NAME_LEN, MAX_SYMLINK_LEN, MAX_XATTR_NAME_LEN,
    MAX_XATTR_VALUE_LEN,
};
use crate::error::{Error, Result};
use std::sync::Arc;

/// Magic of a checkpoint block (format versions 2 to 4: the block layout is the same; version 2's payload differs).
pub const MAGIC: &[u8; 8] = b"FDXCKPT2";
/// Header bytes per checkpoint block.
pub const HEADER_LEN: usize = 48;
/// Payload bytes per checkpoint block.
pub const PAYLOAD_PER_BLOCK: usize = BLOCK_SIZE as usize - HEADER_LEN;
/// Magic of a format version 1 checkpoint block (read only, to convert old pools).
pub const MAGIC_V1: &[u8; 8] = b"FDXCKPT1";
/// Header bytes per format version 1 checkpoint block.
pub const HEADER_LEN_V1: usize = 32;
/// Payload bytes per format version 1 checkpoint block.
pub const PAYLOAD_PER_BLOCK_V1: usize = BLOCK_SIZE as usize - HEADER_LEN_V1;

/// Bytes of one extent in a payload: (file block, pool block, length), each a little-endian u64.
pub const EXTENT_BYTES: usize = 24;

/// `count` extents as a payload stores them ([`EXTENT_BYTES`] each) at byte `offset` of a buffer
/// shared with whatever else holds it (the decoded payload, other files cloned from this one):
/// read in place. Cloning shares the bytes. Owns nothing but its view; never checks the extents
/// (whoever builds a file from them does).
#[derive(Clone)]
pub struct PackedExtents {
    bytes: Arc<Vec<u8>>,
    offset: usize,
    count: usize,
}

impl PackedExtents {
    /// The `count` extents at byte `offset` of `bytes`, which must hold them.
    fn new(bytes: Arc<Vec<u8>>, offset: usize, count: usize) -> Self {
        assert!(offset + count * EXTENT_BYTES <= bytes.len(), "packed extents past their buffer");
        Self { bytes, offset, count }
    }

    /// Number of extents.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Extent `i` as (file block, pool block, length); `i` must be below [`PackedExtents::len`].
    pub fn get(&self, i: usize) -> (u64, u64, u64) {
        assert!(i < self.count, "extent {i} of {}", self.count);
        let at = self.offset + i * EXTENT_BYTES;
        (u64_at(&self.bytes, at), u64_at(&self.bytes, at + 8), u64_at(&self.bytes, at + 16))
    }

    /// Extents `from..`, in order.
    pub fn iter_from(&self, from: usize) -> PackedIter<'_> {
        let from = from.min(self.count);
        PackedIter(
            self.bytes[self.offset + from * EXTENT_BYTES..self.offset + self.count * EXTENT_BYTES]
                .chunks_exact(EXTENT_BYTES),
        )
    }

    /// The number of leading extents for which `before` holds, by binary search: `before` must
    /// hold for every extent up to some index and for none after it.
    fn partition_point(&self, before: impl Fn((u64, u64, u64)) -> bool) -> usize {
        let (mut low, mut high) = (0, self.count);
        while low < high {
            let mid = (low + high) / 2;
            if before(self.get(mid)) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        low
    }

    /// The index of the first extent that ends after `file_block` (the one containing it, or the
    /// first after it), or [`PackedExtents::len`]. The extents must ascend without overlapping, as
    /// a checked file's do, so their ends ascend too.
    pub fn first_ending_after(&self, file_block: u64) -> usize {
        self.partition_point(|(fb, _, len)| fb.saturating_add(len) <= file_block)
    }

    /// The index of the first extent that starts at or after `file_block`, or
    /// [`PackedExtents::len`] (the extents must ascend, as a checked file's do).
    pub fn first_starting_at_or_after(&self, file_block: u64) -> usize {
        self.partition_point(|(fb, _, _)| fb < file_block)
    }

    /// The extents' bytes as a payload stores them.
    fn raw(&self) -> &[u8] {
        &self.bytes[self.offset..self.offset + self.count * EXTENT_BYTES]
    }
}

/// Packed extents in order, as (file block, pool block, length).
pub struct PackedIter<'a>(std::slice::ChunksExact<'a, u8>);

impl Iterator for PackedIter<'_> {
    type Item = (u64, u64, u64);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|e| (u64_at(e, 0), u64_at(e, 8), u64_at(e, 16)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for PackedIter<'_> {}

/// The extents of an [`ExtentList`] in order, however it holds them.
pub enum ExtentListIter<'a> {
    /// A decoded list's.
    Decoded(std::slice::Iter<'a, (u64, u64, u64)>),
    /// Packed extents'.
    Packed(PackedIter<'a>),
}

impl Iterator for ExtentListIter<'_> {
    type Item = (u64, u64, u64);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            ExtentListIter::Decoded(it) => it.next().copied(),
            ExtentListIter::Packed(it) => it.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            ExtentListIter::Decoded(it) => it.size_hint(),
            ExtentListIter::Packed(it) => it.size_hint(),
        }
    }
}

impl ExactSizeIterator for ExtentListIter<'_> {}

impl std::fmt::Debug for PackedExtents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter_from(0)).finish()
    }
}

/// A file's extents as (file block, pool block, length in blocks), ascending: decoded into a
/// list, or packed in the payload they came from.
#[derive(Debug, Clone)]
pub enum ExtentList {
    /// A list of their own.
    Decoded(Vec<(u64, u64, u64)>),
    /// Read in place from a shared buffer.
    Packed(PackedExtents),
}

impl ExtentList {
    /// Number of extents.
    pub fn len(&self) -> usize {
        match self {
            ExtentList::Decoded(list) => list.len(),
            ExtentList::Packed(packed) => packed.len(),
        }
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every extent, in order.
    pub fn iter(&self) -> ExtentListIter<'_> {
        match self {
            ExtentList::Decoded(list) => ExtentListIter::Decoded(list.iter()),
            ExtentList::Packed(packed) => ExtentListIter::Packed(packed.iter_from(0)),
        }
    }

    /// The extents as a list to change: packed ones are decoded into one first.
    pub fn to_mut(&mut self) -> &mut Vec<(u64, u64, u64)> {
        if let ExtentList::Packed(packed) = self {
            *self = ExtentList::Decoded(packed.iter_from(0).collect());
        }
        match self {
            ExtentList::Decoded(list) => list,
            ExtentList::Packed(_) => unreachable!("just decoded"),
        }
    }

    /// The extents as a list of their own.
    pub fn into_vec(self) -> Vec<(u64, u64, u64)> {
        match self {
            ExtentList::Decoded(list) => list,
            ExtentList::Packed(packed) => packed.iter_from(0).collect(),
        }
    }
}

impl Default for ExtentList {
    fn default() -> Self {
        ExtentList::Decoded(Vec::new())
    }
}

impl From<Vec<(u64, u64, u64)>> for ExtentList {
    fn from(list: Vec<(u64, u64, u64)>) -> Self {
        ExtentList::Decoded(list)
    }
}

impl PartialEq for ExtentList {
    /// The same extents, however each side holds them.
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for ExtentList {}

/// One inode as a checkpoint stores it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InodeImage {
    /// Its attributes.
    pub attrs: InodeAttrs,
    /// Its mapped extents as (file block, pool block, length in blocks), ascending.
    pub extents: ExtentList,
    /// A directory's entries as (name, inode), ascending by name (empty for other kinds).
    pub entries: Vec<(Vec<u8>, u64)>,
    /// Extended attributes as (full name, value), ascending by name.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// A symlink's target (empty for other kinds).
    pub target: Vec<u8>,
}

/// The whole durable state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateImage {
    /// The next inode number to hand out.
    pub next_ino: u64,
    /// Every inode.
    pub inodes: Vec<InodeImage>,
    /// Bad pool block ranges, never to be reused.
    pub quarantine: Vec<(u64, u64)>,
}

/// The fewest payload bytes one inode takes (its attributes and four empty counts).
const MIN_INODE_BYTES: u64 = (INODE_ATTRS_LEN + 8 + 8 + 4 + 2) as u64;

impl InodeImage {
    pub(crate) fn encode_into(&self, w: &mut Writer) {
        self.attrs.encode_into(w);
        w.u64(self.extents.len() as u64);
        match &self.extents {
            ExtentList::Packed(packed) => w.raw(packed.raw()),
            ExtentList::Decoded(list) => {
                for &(fb, phys, len) in list {
                    w.u64(fb);
                    w.u64(phys);
                    w.u64(len);
                }
            }
        }
        w.u64(self.entries.len() as u64);
        for (name, ino) in &self.entries {
            w.u16(name.len() as u16);
            w.raw(name);
            w.u64(*ino);
        }
        w.u32(self.xattrs.len() as u32);
        for (name, value) in &self.xattrs {
            w.u16(name.len() as u16);
            w.raw(name);
            w.u32(value.len() as u32);
            w.raw(value);
        }
        w.u16(self.target.len() as u16);
        w.raw(&self.target);
    }

    /// Decodes one inode; every count is checked against the bytes left, every list must be in
    /// ascending order without duplicates.
    fn decode_from(r: &mut Reader<'_>) -> Result<Self> {
        Self::decode_sharing(r, None)
    }

    /// [`InodeImage::decode_from`], keeping a non-empty extent list packed in `payload` (the bytes
    /// `r` reads) when given.
    pub(crate) fn decode_sharing(r: &mut Reader<'_>, payload: Option<&Arc<Vec<u8>>>) -> Result<Self> {
        Self::decode_with_entries(r, payload, decode_entries)
    }

    /// [`InodeImage::decode_sharing`], the directory entries read by `entries` (given the reader
    /// at the entry count and the inode number).
    pub(crate) fn decode_with_entries(
        r: &mut Reader<'_>,
        payload: Option<&Arc<Vec<u8>>>,
        entries: impl FnOnce(&mut Reader<'_>, u64) -> Result<Vec<(Vec<u8>, u64)>>,
    ) -> Result<Self> {
        let attrs = InodeAttrs::decode_from(r)?;
        let ino = attrs.ino;
        let n = r.u64()?;
        if n > (r.remaining() / EXTENT_BYTES) as u64 {
            return Err(r.corrupt(format!("extent count {n} of inode {ino} exceeds payload")));
        }
        let n = n as usize;
        let extents = match payload {
            Some(payload) if n > 0 => {
                let offset = r.position();
                r.take(n * EXTENT_BYTES)?;
                ExtentList::Packed(PackedExtents::new(Arc::clone(payload), offset, n))
            }
            _ => {
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    list.push((r.u64()?, r.u64()?, r.u64()?));
                }
                ExtentList::Decoded(list)
            }
        };
        let entries = entries(r, ino)?;
        let n = r.u32()?;
        if n as usize > r.remaining() / 6 {
            return Err(r.corrupt(format!("extended attribute count {n} of inode {ino} exceeds payload")));
        }
        let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let name = read_bytes16(r, MAX_XATTR_NAME_LEN, "an extended attribute name")?;
            let len = r.u32()? as usize;
            if len > MAX_XATTR_VALUE_LEN {
                return Err(r.corrupt(format!("an extended attribute value of {len} bytes")));
            }
            let value = r.take(len)?.to_vec();
            if xattrs.last().is_some_and(|(last, _)| *last >= name) {
                return Err(
                    r.corrupt(format!("extended attributes of inode {ino} are not in ascending order"))
                );
            }
            xattrs.push((name, value));
        }
        let target = read_bytes16(r, MAX_SYMLINK_LEN, "a symlink target")?;
        Ok(InodeImage { attrs, extents, entries, xattrs, target })
    }
}

/// A directory's entries as a payload holds them, the reader at their count: ascending by name,
/// each checked against the bytes left.
fn decode_entries(r: &mut Reader<'_>, ino: u64) -> Result<Vec<(Vec<u8>, u64)>> {
    let n = entry_count(r, ino)?;
    let mut entries: Vec<(Vec<u8>, u64)> = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let name = read_bytes16(r, MAX_NAME_LEN, "a name")?;
        let child = r.u64()?;
        if entries.last().is_some_and(|(last, _)| *last >= name) {
            return Err(r.corrupt(format!("entries of directory {ino} are not in ascending order")));
        }
        entries.push((name, child));
    }
    Ok(entries)
}

/// The entry count of directory `ino`, checked against the bytes left (an entry takes 10 at least).
pub(crate) fn entry_count(r: &mut Reader<'_>, ino: u64) -> Result<u64> {
    let n = r.u64()?;
    if n > r.remaining() as u64 / 10 {
        return Err(r.corrupt(format!("entry count {n} of inode {ino} exceeds payload")));
    }
    Ok(n)
}

impl StateImage {
    /// Encodes the payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u64(self.next_ino);
        w.u64(self.inodes.len() as u64);
        for inode in &self.inodes {
            inode.encode_into(&mut w);
        }
        w.u64(self.quarantine.len() as u64);
        for &(block, len) in &self.quarantine {
            w.u64(block);
            w.u64(len);
        }
        w.bytes
    }

    /// Decodes as much of a damaged or cut payload as is whole (salvage): every inode decoded before
    /// the first undecodable byte, and the quarantine list if the payload reaches it intact.
    pub fn decode_prefix(payload: &[u8]) -> Self {
        let (next_ino, inodes, quarantine) =
            decode_prefix_with(payload, MIN_INODE_BYTES, InodeImage::decode_from);
        StateImage { next_ino, inodes, quarantine }
    }

    /// Decodes a payload; every count is checked against the bytes actually present.
    pub fn decode(payload: &[u8]) -> Result<Self> {
        let (next_ino, inodes, quarantine) = decode_with(payload, MIN_INODE_BYTES, InodeImage::decode_from)?;
        Ok(StateImage { next_ino, inodes, quarantine })
    }

    /// [`StateImage::decode`], with every non-empty extent list left packed (a mount reads the
    /// extents in place instead of building a tree of them, and a whole-file clone shares them; a
    /// packed extent costs 24 bytes where a tree's smallest node holds up to 11 in about 280).
    /// They stay in `payload` when they are at least 7/8 of it (a large file: nothing is copied);
    /// else they are copied, one after another, into one buffer of their own and the payload is
    /// freed, so the other bytes of the payload (attributes, names) are not kept alive for them.
    pub fn decode_sharing(payload: Arc<Vec<u8>>) -> Result<Self> {
        let share = Some(&payload);
        let (next_ino, mut inodes, quarantine) =
            decode_with(&payload, MIN_INODE_BYTES, |r| InodeImage::decode_sharing(r, share))?;
        repack_extents(payload.len(), &mut inodes);
        Ok(StateImage { next_ino, inodes, quarantine })
    }
}

/// [`StateImage::decode_sharing`]'s choice for `inodes` decoded from a payload of `payload_len`
/// bytes with their extents packed in it: left there when they are at least 7/8 of it, else
/// copied into one buffer of their own (so the payload can be freed).
pub(crate) fn repack_extents(payload_len: usize, inodes: &mut [InodeImage]) {
    let packed = |inode: &InodeImage| match &inode.extents {
        ExtentList::Packed(packed) => Some(packed.raw().len()),
        ExtentList::Decoded(_) => None,
    };
    let packed_bytes: usize = inodes.iter().filter_map(packed).sum();
    if packed_bytes * 8 >= payload_len * 7 {
        return;
    }
    let mut bytes = Vec::with_capacity(packed_bytes);
    for inode in inodes.iter() {
        if let ExtentList::Packed(packed) = &inode.extents {
            bytes.extend_from_slice(packed.raw());
        }
    }
    let bytes = Arc::new(bytes);
    let mut offset = 0;
    for inode in inodes.iter_mut() {
        if let ExtentList::Packed(packed) = &inode.extents {
            let count = packed.len();
            inode.extents = ExtentList::Packed(PackedExtents::new(Arc::clone(&bytes), offset, count));
            offset += count * EXTENT_BYTES;
        }
    }
}

/// Where a delta lives: two chains of checkpoint blocks holding the same bytes, carrying the
/// generation the delta was written at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaLink {
    /// First block of chain 0 and of chain 1.
    pub heads: [u64; 2],
    /// Payload length in bytes.
    pub len: u64,
    /// CRC-32C of the whole payload.
    pub crc: u32,
    /// The generation its blocks carry.
    pub generation: u64,
}

/// Bytes of a [`DeltaLink`] in a delta payload.
pub const DELTA_LINK_LEN: usize = 40;

/// The inodes changed since the checkpoint before (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeltaImage {
    /// The delta before this one, if any (none: it follows the base).
    pub previous: Option<DeltaLink>,
    /// The next inode number to hand out.
    pub next_ino: u64,
    /// Every inode created or changed since the checkpoint before, as it is now, ascending by
    /// inode number.
    pub inodes: Vec<InodeImage>,
    /// Inodes freed since the checkpoint before, ascending.
    pub removed: Vec<u64>,
    /// Bad pool block ranges, never to be reused (the whole list).
    pub quarantine: Vec<(u64, u64)>,
}

impl DeltaImage {
    /// Encodes the delta payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        let link = self.previous.unwrap_or(DeltaLink { heads: [0, 0], len: 0, crc: 0, generation: 0 });
        w.u64(link.heads[0]);
        w.u64(link.heads[1]);
        w.u64(link.len);
        w.u32(link.crc);
        w.u32(0);
        w.u64(link.generation);
        w.u64(self.next_ino);
        w.u64(self.inodes.len() as u64);
        for inode in &self.inodes {
            inode.encode_into(&mut w);
        }
        w.u64(self.removed.len() as u64);
        for &ino in &self.removed {
            w.u64(ino);
        }
        w.u64(self.quarantine.len() as u64);
        for &(block, len) in &self.quarantine {
            w.u64(block);
            w.u64(len);
        }
        w.bytes
    }

    /// Decodes a delta payload; every count is checked against the bytes present, inodes and
    /// removed numbers must be strictly ascending.
    pub fn decode(payload: &[u8]) -> Result<Self> {
        let mut r = Reader::new(payload, "checkpoint delta");
        let previous = read_link(&mut r)?;
        let next_ino = r.u64()?;
        let count = r.u64()?;
        if count > r.remaining() as u64 / MIN_INODE_BYTES {
            return Err(r.corrupt(format!("inode count {count} exceeds payload")));
        }
        let mut inodes: Vec<InodeImage> = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let inode = InodeImage::decode_from(&mut r)?;
            if inodes.last().is_some_and(|last| last.attrs.ino >= inode.attrs.ino) {
                return Err(r.corrupt(format!("inode {} is out of ascending order", inode.attrs.ino)));
            }
            inodes.push(inode);
        }
        let count = r.u64()?;
        if count > r.remaining() as u64 / 8 {
            return Err(r.corrupt(format!("removed count {count} exceeds payload")));
        }
        let mut removed: Vec<u64> = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let ino = r.u64()?;
            if removed.last().is_some_and(|&last| last >= ino) {
                return Err(r.corrupt(format!("removed inode {ino} is out of ascending order")));
            }
            removed.push(ino);
        }
        let quarantine = quarantine_to_the_end(&mut r)?;
        Ok(DeltaImage { previous, next_ino, inodes, removed, quarantine })
    }

    /// Decodes as much of a damaged or cut delta as is whole (salvage): the inodes before the first
    /// undecodable byte; the removed list and the quarantine only if the payload reaches them
    /// intact (else none: the base's inodes stand, and its quarantine).
    pub fn decode_prefix(payload: &[u8]) -> Option<Self> {
        let mut r = Reader::new(payload, "checkpoint delta");
        let previous = read_link(&mut r).ok()?;
        let (Ok(next_ino), Ok(count)) = (r.u64(), r.u64()) else { return None };
        let mut delta = DeltaImage { previous, next_ino, ..DeltaImage::default() };
        for _ in 0..count.min(payload.len() as u64 / MIN_INODE_BYTES) {
            match InodeImage::decode_from(&mut r) {
                Ok(inode) if delta.inodes.last().is_none_or(|l| l.attrs.ino < inode.attrs.ino) => {
                    delta.inodes.push(inode)
                }
                _ => return Some(delta),
            }
        }
        let Ok(count) = r.u64() else { return Some(delta) };
        let mut removed = Vec::new();
        for _ in 0..count.min(r.remaining() as u64 / 8) {
            match r.u64() {
                Ok(ino) => removed.push(ino),
                Err(_) => return Some(delta),
            }
        }
        if removed.len() as u64 != count || !removed.is_sorted() {
            return Some(delta);
        }
        delta.removed = removed;
        if let Ok(q) = r.u64() {
            let mut quarantine = Vec::new();
            for _ in 0..q.min(r.remaining() as u64 / 16) {
                match (r.u64(), r.u64()) {
                    (Ok(b), Ok(l)) => quarantine.push((b, l)),
                    _ => break,
                }
            }
            delta.quarantine = quarantine;
        }
        Some(delta)
    }
}

/// Reads a [`DeltaLink`]: all zeros is none; else both heads set and the padding zero.
fn read_link(r: &mut Reader<'_>) -> Result<Option<DeltaLink>> {
    let heads = [r.u64()?, r.u64()?];
    let (len, crc, zero, generation) = (r.u64()?, r.u32()?, r.u32()?, r.u64()?);
    if zero != 0 {
        return Err(r.corrupt(format!("previous-delta padding {zero:#x}")));
    }
    if heads == [0, 0] && len == 0 && crc == 0 && generation == 0 {
        return Ok(None);
    }
    if heads.contains(&0) {
        return Err(r.corrupt(format!("previous delta at blocks {heads:?}")));
    }
    Ok(Some(DeltaLink { heads, len, crc, generation }))
}

impl StateImage {
    /// The state a base checkpoint and a delta written since describe: the base's inodes but
    /// those the delta holds or removes, then the delta's; the delta's `next_ino` and quarantine.
    /// An inode both held and removed by the delta is damage.
    pub fn with_delta(self, delta: DeltaImage) -> Result<StateImage> {
        self.with_deltas([delta])
    }

    /// [`StateImage::with_delta`] of each delta in turn, oldest first, in one pass over the
    /// base's inodes whatever the number of deltas: the newest version of every inode a delta
    /// names (its image, or its removal) is found first, then each base inode it names is replaced
    /// where it stands (or dropped), and the inodes no base holds follow, ascending. A mount of a
    /// million inodes with dozens of deltas moves each inode once, not once per delta.
    pub fn with_deltas(mut self, deltas: impl IntoIterator<Item = DeltaImage>) -> Result<StateImage> {
        let newer = NewerVersions::of(deltas)?;
        let mut newest = newer.inodes;
        if let Some((next_ino, quarantine)) = newer.last {
            self.next_ino = next_ino;
            self.quarantine = quarantine;
        }
        if newest.is_empty() {
            return Ok(self);
        }
        let mut removed: crate::intmap::IntMap<u64, ()> = Default::default();
        for inode in &mut self.inodes {
            match newest.remove(&inode.attrs.ino) {
                Some(Some(new)) => *inode = new,
                Some(None) => {
                    removed.insert(inode.attrs.ino, ());
                }
                None => {}
            }
        }
        if !removed.is_empty() {
            self.inodes.retain(|i| !removed.contains_key(&i.attrs.ino));
        }
        let mut added: Vec<InodeImage> = newest.into_values().flatten().collect();
        added.sort_unstable_by_key(|i| i.attrs.ino);
        self.inodes.extend(added);
        Ok(self)
    }
}

/// What the deltas over a base say, taken together: the newest version of every inode they name,
/// and the newest delta's next inode number and bad blocks.
pub struct NewerVersions {
    /// Per inode number: the newest image a delta holds, or `None` where a delta removed it.
    pub inodes: crate::intmap::IntMap<u64, Option<InodeImage>>,
    /// The newest delta's `next_ino` and quarantine list (`None`: no delta).
    pub last: Option<(u64, Vec<(u64, u64)>)>,
}

impl NewerVersions {
    /// Of `deltas`, oldest first. An inode both held and removed by one delta is damage.
    pub fn of(deltas: impl IntoIterator<Item = DeltaImage>) -> Result<NewerVersions> {
        let mut newer = NewerVersions { inodes: Default::default(), last: None };
        for delta in deltas {
            let held: crate::intmap::IntMap<u64, ()> =
                delta.inodes.iter().map(|i| (i.attrs.ino, ())).collect();
            if let Some(ino) = delta.removed.iter().find(|ino| held.contains_key(ino)) {
                return Err(Error::Corrupt(format!(
                    "checkpoint delta: inode {ino} is both changed and removed"
                )));
            }
            newer.inodes.extend(delta.inodes.into_iter().map(|i| (i.attrs.ino, Some(i))));
            newer.inodes.extend(delta.removed.into_iter().map(|ino| (ino, None)));
            newer.last = Some((delta.next_ino, delta.quarantine));
        }
        Ok(newer)
    }
}

/// What a checkpoint payload holds, with inodes of some format version: `next_ino`, the inodes,
/// the quarantine runs.
pub(crate) type Decoded<I> = (u64, Vec<I>, Vec<(u64, u64)>);

/// [`StateImage::decode_prefix`] with the inode decoder of some format version, whose smallest
/// inode takes `min_inode_bytes`.
pub(crate) fn decode_prefix_with<I>(
    payload: &[u8],
    min_inode_bytes: u64,
    decode_inode: impl Fn(&mut Reader<'_>) -> Result<I>,
) -> Decoded<I> {
    let mut r = Reader::new(payload, "checkpoint");
    let (mut inodes, mut quarantine) = (Vec::new(), Vec::new());
    let (Ok(next_ino), Ok(count)) = (r.u64(), r.u64()) else {
        return (0, inodes, quarantine);
    };
    for _ in 0..count.min(payload.len() as u64 / min_inode_bytes) {
        match decode_inode(&mut r) {
            Ok(inode) => inodes.push(inode),
            Err(_) => return (next_ino, inodes, quarantine),
        }
    }
    if let Ok(q) = r.u64() {
        for _ in 0..q.min(r.remaining() as u64 / 16) {
            match (r.u64(), r.u64()) {
                (Ok(b), Ok(l)) => quarantine.push((b, l)),
                _ => break,
            }
        }
    }
    (next_ino, inodes, quarantine)
}

/// [`StateImage::decode`] with the inode decoder of some format version.
pub(crate) fn decode_with<I>(
    payload: &[u8],
    min_inode_bytes: u64,
    decode_inode: impl Fn(&mut Reader<'_>) -> Result<I>,
) -> Result<Decoded<I>> {
    let mut r = Reader::new(payload, "checkpoint");
    let next_ino = r.u64()?;
    let count = r.u64()?;
    if count > r.remaining() as u64 / min_inode_bytes {
        return Err(r.corrupt(format!("inode count {count} exceeds payload")));
    }
    let mut inodes = Vec::with_capacity(count as usize);
    for _ in 0..count {
        inodes.push(decode_inode(&mut r)?);
    }
    let quarantine = quarantine_to_the_end(&mut r)?;
    Ok((next_ino, inodes, quarantine))
}

/// The quarantine list that ends a payload: its count, checked against the bytes left, the
/// (block, len) pairs, and nothing after them.
pub(crate) fn quarantine_to_the_end(r: &mut Reader<'_>) -> Result<Vec<(u64, u64)>> {
    let q = r.u64()?;
    if q > r.remaining() as u64 / 16 {
        return Err(r.corrupt(format!("quarantine count {q} exceeds payload")));
    }
    let mut quarantine = Vec::with_capacity(q as usize);
    for _ in 0..q {
        quarantine.push((r.u64()?, r.u64()?));
    }
    if r.remaining() != 0 {
        return Err(r.corrupt(format!("{} trailing bytes", r.remaining())));
    }
    Ok(quarantine)
}

/// Number of blocks a payload of `len` bytes needs (in each chain).
pub fn blocks_for(len: usize) -> usize {
    len.div_ceil(PAYLOAD_PER_BLOCK).max(1)
}

/// Cuts `payload` into checkpoint blocks for two chains: block i goes to `chains[0][i]` and to
/// `chains[1][i]` (each must hold exactly `blocks_for(payload.len())` block numbers). Returns the
/// 4096 bytes of each block index, the same for both chains.
pub fn frame(payload: &[u8], generation: u64, chains: [&[u64]; 2]) -> Vec<Vec<u8>> {
    let n = blocks_for(payload.len());
    assert!(chains[0].len() == n && chains[1].len() == n);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let chunk = payload
            .get(i * PAYLOAD_PER_BLOCK..((i + 1) * PAYLOAD_PER_BLOCK).min(payload.len()))
            .unwrap_or(&[]);
        let mut w = Writer::new();
        w.raw(MAGIC);
        w.u64(generation);
        w.u64(chains[0].get(i + 1).copied().unwrap_or(0));
        w.u64(chains[1].get(i + 1).copied().unwrap_or(0));
        w.u32(i as u32);
        w.u32(chunk.len() as u32);
        w.u32(0);
        w.u32(0);
        w.raw(chunk);
        let mut bytes = w.bytes;
        let crc = checksum_with_hole(&bytes[..40], &bytes[44..]);
        bytes[40..44].copy_from_slice(&crc.to_le_bytes());
        bytes.resize(BLOCK_SIZE as usize, 0);
        out.push(bytes);
    }
    out
}

/// What [`read_chains`] found: the payload, the blocks of both chains, and the blocks that had to
/// be read from the other chain because they were damaged or unreadable.
#[derive(Debug, Clone, Default)]
pub struct ChainsRead {
    /// The whole payload, checksum verified.
    pub payload: Vec<u8>,
    /// The blocks of chain 0 and chain 1, in order.
    pub blocks: [Vec<u64>; 2],
    /// One line per damaged block that the other chain stood in for.
    pub damaged: Vec<String>,
    /// False when both copies of a block were bad and the reader was asked for what precedes
    /// them (`payload` then holds the blocks before the damage, unchecked as a whole).
    pub complete: bool,
}

/// What the superblock says of the checkpoint it names.
#[derive(Debug, Clone, Copy)]
pub struct ChainRoot {
    /// First block of chain 0 and of chain 1.
    pub heads: [u64; 2],
    /// The superblock's generation, which every block carries.
    pub generation: u64,
    /// Payload length in bytes.
    pub payload_len: u64,
    /// CRC-32C of the whole payload.
    pub payload_crc: u32,
    /// Blocks in the pool (every block number must be below it).
    pub total_blocks: u64,
}

/// Checks one block read from a chain: magic, generation, index, length, checksum. Returns
/// (next in chain 0, next in chain 1, payload bytes) or what is wrong.
fn decode_block(
    bytes: &[u8],
    generation: u64,
    index: usize,
) -> std::result::Result<(u64, u64, &[u8]), String> {
    if bytes.len() < BLOCK_SIZE as usize || &bytes[..8] != MAGIC {
        return Err("bad magic".into());
    }
    let len = u32_at(bytes, 36) as usize;
    if len > PAYLOAD_PER_BLOCK {
        return Err(format!("payload length {len}"));
    }
    let crc = checksum_with_hole(&bytes[..40], &bytes[44..HEADER_LEN + len]);
    if crc != u32_at(bytes, 40) {
        return Err("checksum mismatch".into());
    }
    if u64_at(bytes, 8) != generation {
        return Err(format!("generation {} but the superblock says {generation}", u64_at(bytes, 8)));
    }
    if u32_at(bytes, 32) as usize != index {
        return Err(format!("says it is block #{} of the chain", u32_at(bytes, 32)));
    }
    Ok((u64_at(bytes, 16), u64_at(bytes, 24), &bytes[HEADER_LEN..HEADER_LEN + len]))
}

/// The payload bytes of one checkpoint block read on its own (not by following its chain): what
/// [`read_chains`] checks of each block it reads (magic, `generation`, that it is block `index`
/// of its chain, length, checksum), or what is wrong.
pub fn check_block(bytes: &[u8], generation: u64, index: usize) -> std::result::Result<&[u8], String> {
    decode_block(bytes, generation, index).map(|(_, _, chunk)| chunk)
}

/// Follows both checkpoint chains from `root.heads`, reading every block of both with
/// `read_block`, taking each block from chain 0 and, where that one is damaged or unreadable, from
/// chain 1; a damaged block of either chain is listed in `damaged`. Where both copies
/// of one block are bad it fails naming both, or, with `partial_ok` (salvage), returns what precedes
/// them with `complete` false. A complete payload's length and checksum are verified.
pub fn read_chains(
    root: ChainRoot,
    partial_ok: bool,
    mut read_block: impl FnMut(u64) -> Result<Vec<u8>>,
) -> Result<ChainsRead> {
    // Nothing to compare in place with: every block of both chains is read and checked.
    read_chains_comparing(root, partial_ok, &mut read_block, |_, _| Ok(false))
}

/// [`read_chains`], with a cheaper check of chain 1: where block #i of chain 0 is valid,
/// `same_as(b1, b0)` says whether chain 1's block `b1` holds the same 4096 bytes as chain 0's block
/// `b0`, as the two chains are written (the same bytes for each block index), and so is valid too:
/// compared in place, nothing copied or checksummed twice.
/// When it does not (or cannot be compared), `b1` is read and checked as [`read_chains`] does, so
/// the damage found and reported is the same.
pub fn read_chains_comparing(
    root: ChainRoot,
    partial_ok: bool,
    mut read_block: impl FnMut(u64) -> Result<Vec<u8>>,
    mut same_as: impl FnMut(u64, u64) -> Result<bool>,
) -> Result<ChainsRead> {
    let mut out = ChainsRead {
        payload: Vec::with_capacity(root.payload_len.min(1 << 30) as usize),
        complete: true,
        ..ChainsRead::default()
    };
    let max_blocks = blocks_for(root.payload_len as usize);
    let mut next = root.heads;
    for index in 0.. {
        if index >= max_blocks {
            return Err(Error::Corrupt(format!(
                "checkpoint chains longer than their {}-byte payload needs",
                root.payload_len
            )));
        }
        for (chain, &block) in next.iter().enumerate() {
            if block < 2 || block >= root.total_blocks {
                return Err(Error::Corrupt(format!("checkpoint chain {chain} points at block {block}")));
            }
        }
        // Both copies are read, so a damaged second copy is found (and rewritten by the next
        // checkpoint) before it is needed.
        let mut reasons = Vec::new();
        let mut found = None;
        for (chain, &block) in next.iter().enumerate() {
            let what = || format!("checkpoint chain {chain} block {block} (#{index})");
            // Chain 1's copy of a block chain 0 holds valid: the same bytes are valid too. Any
            // difference, or bad memory met comparing, and it is read and checked in full.
            if chain == 1 && found.is_some() && same_as(block, next[0]).unwrap_or(false) {
                continue;
            }
            match read_block(block) {
                Err(e) => reasons.push(format!("{}: unreadable ({e})", what())),
                Ok(bytes) => match decode_block(&bytes, root.generation, index) {
                    Err(why) => reasons.push(format!("{}: {why}", what())),
                    Ok((n0, n1, chunk)) => {
                        if found.is_none() {
                            out.payload.extend_from_slice(chunk);
                            found = Some((n0, n1));
                        }
                    }
                },
            }
        }
        let Some((n0, n1)) = found else {
            let why =
                format!("checkpoint: both copies of block #{index} are damaged: {}", reasons.join("; "));
            if partial_ok {
                out.damaged.push(why);
                out.complete = false;
                return Ok(out);
            }
            return Err(Error::Corrupt(why));
        };
        out.damaged.extend(reasons.into_iter().map(|r| format!("{r}; the other chain holds it")));
        out.blocks[0].push(next[0]);
        out.blocks[1].push(next[1]);
        if (n0 == 0) != (n1 == 0) {
            return Err(Error::Corrupt(format!(
                "checkpoint block #{index}: one chain ends, the other goes on"
            )));
        }
        if n0 == 0 {
            break;
        }
        next = [n0, n1];
    }
    if out.payload.len() as u64 != root.payload_len {
        return Err(Error::Corrupt(format!(
            "checkpoint payload is {} bytes, the superblock says {}",
            out.payload.len(),
            root.payload_len
        )));
    }
    if checksum(&out.payload) != root.payload_crc {
        return Err(Error::Corrupt("checkpoint payload checksum mismatch".into()));
    }
    let mut all: Vec<u64> = out.blocks.iter().flatten().copied().collect();
    all.sort_unstable();
    if all.windows(2).any(|w| w[0] == w[1]) {
        return Err(Error::Corrupt("checkpoint chains use one block twice".into()));
    }
    Ok(out)
}

/// Follows a format version 1 checkpoint chain (one chain, 32-byte headers) from `head` and returns
/// the payload and the blocks it occupies. Checks every block and the whole payload's checksum.
pub fn read_chain_v1(
    head: u64,
    generation: u64,
    payload_len: u64,
    payload_crc: u32,
    total_blocks: u64,
    mut read_block: impl FnMut(u64) -> Result<Vec<u8>>,
) -> Result<(Vec<u8>, Vec<u64>)> {
    let mut payload = Vec::with_capacity(payload_len.min(1 << 30) as usize);
    let mut blocks = Vec::new();
    let mut block = head;
    let max_blocks = payload_len.div_ceil(PAYLOAD_PER_BLOCK_V1 as u64).max(1) as usize;
    loop {
        if block < 2 || block >= total_blocks {
            return Err(Error::Corrupt(format!("checkpoint chain points at block {block}")));
        }
        if blocks.len() >= max_blocks {
            return Err(Error::Corrupt(format!(
                "checkpoint chain longer than its {payload_len}-byte payload needs"
            )));
        }
        let bytes = read_block(block)?;
        let what = format!("checkpoint block {block} (#{} of the chain)", blocks.len());
        if &bytes[..8] != MAGIC_V1 {
            return Err(Error::Corrupt(format!("{what}: bad magic")));
        }
        if u64_at(&bytes, 8) != generation {
            return Err(Error::Corrupt(format!(
                "{what}: generation {} but the superblock says {generation}",
                u64_at(&bytes, 8)
            )));
        }
        let len = u32_at(&bytes, 24) as usize;
        if len > PAYLOAD_PER_BLOCK_V1 {
            return Err(Error::Corrupt(format!("{what}: payload length {len}")));
        }
        let crc = checksum_with_hole(&bytes[..28], &bytes[32..32 + len]);
        if crc != u32_at(&bytes, 28) {
            return Err(Error::Corrupt(format!("{what}: checksum mismatch")));
        }
        payload.extend_from_slice(&bytes[32..32 + len]);
        blocks.push(block);
        let next = u64_at(&bytes, 16);
        if next == 0 {
            break;
        }
        block = next;
    }
    if payload.len() as u64 != payload_len {
        return Err(Error::Corrupt(format!(
            "checkpoint payload is {} bytes, the superblock says {payload_len}",
            payload.len()
        )));
    }
    if checksum(&payload) != payload_crc {
        return Err(Error::Corrupt("checkpoint payload checksum mismatch".into()));
    }
    Ok((payload, blocks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A three-block payload framed into chains 0 (blocks 10..) and 1 (blocks 20..), as a map
    /// from block number to its bytes, with the root that names it.
    fn two_chains() -> (Vec<u8>, BTreeMap<u64, Vec<u8>>, ChainRoot) {
        let payload: Vec<u8> = (0..2 * PAYLOAD_PER_BLOCK + 100).map(|i| (i % 251) as u8).collect();
        let chains: [Vec<u64>; 2] = [vec![10, 11, 12], vec![20, 21, 22]];
        let mut blocks = BTreeMap::new();
        for (i, bytes) in frame(&payload, 7, [&chains[0], &chains[1]]).into_iter().enumerate() {
            blocks.insert(chains[0][i], bytes.clone());
            blocks.insert(chains[1][i], bytes);
        }
        let root = ChainRoot {
            heads: [10, 20],
            generation: 7,
            payload_len: payload.len() as u64,
            payload_crc: checksum(&payload),
            total_blocks: 64,
        };
        (payload, blocks, root)
    }

    #[test]
    fn chain_one_blocks_equal_to_valid_chain_zero_blocks_are_not_read_and_a_damaged_one_is_reported() {
        let (payload, mut blocks, root) = two_chains();
        blocks.get_mut(&21).unwrap()[100] ^= 1; // chain 1's block #1 damaged
        let mut reads = Vec::new();
        let read = |b: u64| {
            reads.push(b);
            Ok(blocks[&b].clone())
        };
        let same_as = |b1: u64, b0: u64| Ok(blocks[&b1] == blocks[&b0]);
        let got = read_chains_comparing(root, false, read, same_as).unwrap();
        assert_eq!(got.payload, payload);
        assert_eq!(got.blocks, [vec![10, 11, 12], vec![20, 21, 22]]);
        // Chain 0 in full; of chain 1 only the block that differs.
        assert_eq!(reads, [10, 11, 21, 12]);
        assert_eq!(
            got.damaged,
            ["checkpoint chain 1 block 21 (#1): checksum mismatch; the other chain holds it"]
        );
        // Reading both chains in full finds the same damage and the same payload.
        let full = read_chains(root, false, |b| Ok(blocks[&b].clone())).unwrap();
        assert_eq!((full.payload, full.damaged), (got.payload, got.damaged));
    }

    #[test]
    fn a_damaged_chain_zero_block_is_taken_from_chain_one_without_an_in_place_comparison() {
        let (payload, mut blocks, root) = two_chains();
        blocks.get_mut(&10).unwrap()[0] ^= 1;
        let compared = std::cell::Cell::new(Vec::new());
        let same_as = |b1: u64, b0: u64| {
            let mut c = compared.take();
            c.push((b1, b0));
            compared.set(c);
            Ok(blocks[&b1] == blocks[&b0])
        };
        let got = read_chains_comparing(root, false, |b| Ok(blocks[&b].clone()), same_as).unwrap();
        assert_eq!(got.payload, payload);
        assert_eq!(got.damaged, ["checkpoint chain 0 block 10 (#0): bad magic; the other chain holds it"]);
        assert_eq!(compared.take(), [(21, 11), (22, 12)]);
    }

    fn inode(ino: u64, size: u64, extents: Vec<(u64, u64, u64)>) -> InodeImage {
        let mut attrs = InodeAttrs::empty_dir(ino, 0o644, 0, 0, 0);
        attrs.kind = crate::format::record::InodeKind::File;
        attrs.size = size;
        attrs.nlink = 1;
        InodeImage { attrs, extents: extents.into(), ..InodeImage::default() }
    }

    /// `n` one-block extents at every other file block, as a fragmented file has them.
    fn every_other_block(n: u64) -> Vec<(u64, u64, u64)> {
        (0..n).map(|i| (2 * i, 1000 + 3 * i, 1)).collect()
    }

    /// Where packed extents read from: their buffer's length, and whether it is `payload`'s.
    fn buffer_of(list: &ExtentList, payload: &Arc<Vec<u8>>) -> (usize, bool) {
        match list {
            ExtentList::Packed(p) => (p.bytes.len(), Arc::ptr_eq(&p.bytes, payload)),
            ExtentList::Decoded(_) => panic!("not packed"),
        }
    }

    #[test]
    fn decode_sharing_keeps_extents_packed_in_the_payload_when_they_are_most_of_it() {
        let big = every_other_block(3000);
        let image = StateImage {
            next_ino: 5,
            inodes: vec![
                inode(2, 1 << 30, big.clone()),
                inode(3, 4096, vec![(0, 9000, 1)]),
                inode(4, 0, vec![]),
            ],
            quarantine: vec![(5, 1)],
        };
        let payload = Arc::new(image.encode());
        let shared = StateImage::decode_sharing(Arc::clone(&payload)).unwrap();
        assert_eq!(shared, image, "the same state, however the extents are held");
        assert_eq!(buffer_of(&shared.inodes[0].extents, &payload), (payload.len(), true));
        assert_eq!(buffer_of(&shared.inodes[1].extents, &payload), (payload.len(), true));
        assert!(matches!(shared.inodes[2].extents, ExtentList::Decoded(_)), "nothing to pack");
        assert_eq!(shared.inodes[0].extents.iter().collect::<Vec<_>>(), big);
        // Encoding packed extents copies their bytes as they are.
        assert_eq!(shared.encode(), *payload);
    }

    #[test]
    fn decode_sharing_copies_extents_into_one_buffer_when_they_are_a_small_part_of_the_payload() {
        // Many small files: their attributes outweigh their one extent each.
        let inodes: Vec<InodeImage> =
            (2..200).map(|ino| inode(ino, 4096, vec![(0, 5000 + ino, 1)])).collect();
        let image = StateImage { next_ino: 200, inodes, quarantine: vec![] };
        let payload = Arc::new(image.encode());
        let shared = StateImage::decode_sharing(Arc::clone(&payload)).unwrap();
        assert_eq!(shared, image);
        let extents_bytes = 198 * EXTENT_BYTES;
        for inode in &shared.inodes {
            assert_eq!(buffer_of(&inode.extents, &payload), (extents_bytes, false));
        }
        assert_eq!(Arc::strong_count(&payload), 1, "nothing holds the payload any more");
    }

    #[test]
    fn decode_sharing_refuses_what_decode_refuses() {
        let image = StateImage {
            next_ino: 3,
            inodes: vec![inode(2, 1 << 20, every_other_block(100))],
            quarantine: vec![],
        };
        let payload = image.encode();
        for cut in [payload.len() - 1, payload.len() / 2, 40] {
            let short = payload[..cut].to_vec();
            let plain = StateImage::decode(&short).unwrap_err().to_string();
            let shared = StateImage::decode_sharing(Arc::new(short)).unwrap_err().to_string();
            assert_eq!(plain, shared, "cut at {cut}");
        }
    }

    #[test]
    fn first_ending_after_finds_the_extent_holding_a_block_or_the_next_one() {
        let image = StateImage {
            next_ino: 3,
            inodes: vec![inode(2, 1 << 20, every_other_block(100))],
            quarantine: vec![],
        };
        let shared = StateImage::decode_sharing(Arc::new(image.encode())).unwrap();
        let ExtentList::Packed(packed) = &shared.inodes[0].extents else { panic!("not packed") };
        let n = packed.len();
        // Extent i maps file block 2i; block 2i + 1 is a hole before extent i + 1.
        for block in 0..2 * n as u64 + 3 {
            let expected = (block as usize).div_ceil(2).min(n);
            assert_eq!(packed.first_ending_after(block), expected, "block {block}");
        }
    }

    #[test]
    fn a_delta_replaces_the_inodes_it_holds_removes_those_it_lists_and_brings_its_quarantine() {
        let base = StateImage {
            next_ino: 5,
            inodes: vec![
                inode(2, 4096, vec![(0, 100, 1)]),
                inode(3, 0, vec![]),
                inode(4, 8192, vec![(0, 200, 2)]),
            ],
            quarantine: vec![(50, 1)],
        };
        let delta = DeltaImage {
            previous: Some(DeltaLink { heads: [30, 40], len: 500, crc: 0x55aa, generation: 3 }),
            next_ino: 7,
            inodes: vec![inode(2, 8192, vec![(0, 100, 1), (1, 300, 1)]), inode(6, 0, vec![])],
            removed: vec![3, 5],
            quarantine: vec![(50, 1), (60, 2)],
        };
        let encoded = delta.encode();
        assert_eq!(DeltaImage::decode(&encoded).unwrap(), delta, "round trip");
        assert_eq!(DeltaImage::decode_prefix(&encoded), Some(delta.clone()), "a whole delta decodes whole");
        let merged = base.with_delta(delta).unwrap();
        let mut inos: Vec<(u64, u64)> = merged.inodes.iter().map(|i| (i.attrs.ino, i.attrs.size)).collect();
        inos.sort_unstable();
        // 2 replaced (its new size), 3 removed, 4 kept, 6 new; 5 (removed, never in the base) is no error.
        assert_eq!(inos, [(2, 8192), (4, 8192), (6, 0)]);
        assert_eq!((merged.next_ino, merged.quarantine), (7, vec![(50, 1), (60, 2)]));
    }

    #[test]
    fn deltas_applied_together_give_what_applying_them_one_by_one_gives() {
        let base = StateImage {
            next_ino: 6,
            inodes: (2..6).map(|ino| inode(ino, 4096 * ino, vec![(0, 100 * ino, 1)])).collect(),
            quarantine: vec![],
        };
        let deltas = [
            // 2 changed, 3 removed, 6 created.
            DeltaImage {
                next_ino: 7,
                inodes: vec![inode(2, 1, vec![]), inode(6, 6, vec![(0, 600, 1)])],
                removed: vec![3],
                quarantine: vec![(50, 1)],
                ..DeltaImage::default()
            },
            // 2 changed again, 6 removed, 4 changed, 7 created.
            DeltaImage {
                next_ino: 8,
                inodes: vec![inode(2, 2, vec![]), inode(4, 4, vec![]), inode(7, 7, vec![])],
                removed: vec![6],
                quarantine: vec![(50, 1), (60, 1)],
                ..DeltaImage::default()
            },
        ];
        let one_by_one = deltas.iter().cloned().fold(base.clone(), |image, d| image.with_delta(d).unwrap());
        let together = base.with_deltas(deltas).unwrap();
        let sorted = |image: &StateImage| {
            let mut inodes = image.inodes.clone();
            inodes.sort_by_key(|i| i.attrs.ino);
            (image.next_ino, inodes, image.quarantine.clone())
        };
        assert_eq!(sorted(&together), sorted(&one_by_one));
        let sizes: Vec<(u64, u64)> =
            sorted(&together).1.iter().map(|i| (i.attrs.ino, i.attrs.size)).collect();
        assert_eq!(sizes, [(2, 2), (4, 4), (5, 5 * 4096), (7, 7)]);
    }

    #[test]
    fn a_delta_out_of_order_or_both_holding_and_removing_an_inode_is_damage() {
        let unordered = DeltaImage {
            next_ino: 9,
            inodes: vec![inode(4, 0, vec![]), inode(3, 0, vec![])],
            ..DeltaImage::default()
        };
        let e = DeltaImage::decode(&unordered.encode()).unwrap_err().to_string();
        assert!(e.contains("inode 3 is out of ascending order"), "{e}");
        let removed = DeltaImage { next_ino: 9, removed: vec![5, 5], ..DeltaImage::default() };
        let e = DeltaImage::decode(&removed.encode()).unwrap_err().to_string();
        assert!(e.contains("removed inode 5 is out of ascending order"), "{e}");
        let both = DeltaImage {
            next_ino: 9,
            inodes: vec![inode(4, 0, vec![])],
            removed: vec![4],
            ..DeltaImage::default()
        };
        let e = StateImage::default().with_delta(both).unwrap_err().to_string();
        assert!(e.contains("inode 4 is both changed and removed"), "{e}");
        let mut half_link = DeltaImage::default().encode();
        half_link[..8].copy_from_slice(&9u64.to_le_bytes());
        let e = DeltaImage::decode(&half_link).unwrap_err().to_string();
        assert!(e.contains("previous delta at blocks [9, 0]"), "{e}");
        let mut cut = DeltaImage {
            next_ino: 9,
            inodes: vec![inode(4, 0, vec![])],
            removed: vec![7],
            quarantine: vec![(1, 1)],
            ..DeltaImage::default()
        }
        .encode();
        cut.truncate(cut.len() - 20);
        assert!(DeltaImage::decode(&cut).is_err(), "a cut delta does not decode");
        let prefix = DeltaImage::decode_prefix(&cut).unwrap();
        assert_eq!(
            (prefix.inodes.len(), prefix.removed.clone(), prefix.quarantine.len()),
            (1, vec![7], 0),
            "{prefix:?}"
        );
    }
}
