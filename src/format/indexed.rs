//! The run map and the inode index of a whole checkpoint (format version 6 and later): what lets a
//! reader find one inode's bytes in the checkpoint chains without reading the rest of them.
//!
//! A whole checkpoint's payload (the bytes its chain blocks carry, one after another):
//! ```text
//!        0  4048  run map: the whole payload of the chain's first block
//!     4048     .  body: next_ino u64, inode_count u64, inodes…, quarantine_count u64,
//!                 (block u64, len u64)… (format versions 3 to 5 wrote this body alone)
//! index_at     .  inode index, to the end of the payload: inode_count × (ino u64, at u64),
//!                 strictly ascending by ino; `at` is the payload offset of that inode's encoding
//! ```
//! The run map (little-endian):
//! ```text
//!  0  8  index_at: payload offset of the inode index
//!  8  8  quarantine_at: payload offset of quarantine_count
//! 16  4  runs of chain 0 (r0)
//! 20  4  runs of chain 1 (r1)
//! 24  .  (first block u64, length u64) × r0, then × r1: each chain's blocks in chain order
//!  .  .  zero to byte 4048
//! ```
//! Both run counts are zero when the runs do not fit the map (a fragmented pool): that checkpoint
//! is then only ever read whole. Block `i` of chain `c` is the `i`-th block its runs cover; every
//! block still carries its own header (generation, index in the chain, checksum), so a block read
//! through the map is checked as one read by following the chain.
//!
//! Owns these encodings. Must never touch the pool (callers hand it bytes) or decide what a state
//! means (the file system validates what it builds from an image).

use super::checkpoint::{
    blocks_for, entry_count, quarantine_to_the_end, repack_extents, InodeImage, StateImage, PAYLOAD_PER_BLOCK,
};
use super::codec::{u32_at, u64_at, Reader, Writer};
use super::MAX_NAME_LEN;
use crate::error::{Error, Result};
use std::sync::Arc;

/// Payload bytes of the run map: the whole payload of the first block of each chain.
pub const RUN_MAP_BYTES: usize = PAYLOAD_PER_BLOCK;
/// Bytes of one inode index entry: (inode number, payload offset), a little-endian u64 each.
pub const INDEX_ENTRY_BYTES: usize = 16;
/// Bytes of the run map before its runs.
const RUN_MAP_HEADER: usize = 24;
/// The most runs (both chains together) a run map holds.
pub const MAX_MAPPED_RUNS: usize = (RUN_MAP_BYTES - RUN_MAP_HEADER) / 16;
/// The fewest bytes a body takes: next_ino, inode_count and quarantine_count.
const MIN_BODY_BYTES: usize = 24;

/// What the run map of a whole checkpoint says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunMap {
    /// Payload offset of the inode index (it runs to the end of the payload).
    pub index_at: u64,
    /// Payload offset of the quarantine list's count.
    pub quarantine_at: u64,
    /// The blocks of chain 0 and chain 1 as (first block, length) runs in chain order; both empty
    /// when they did not fit the map.
    pub runs: [Vec<(u64, u64)>; 2],
}

impl RunMap {
    /// Whether the map lists the chains' blocks (else the checkpoint is read whole).
    pub fn has_runs(&self) -> bool {
        !self.runs[0].is_empty()
    }

    /// Block `index` of chain `chain`, if the map lists the chains and the chain is that long.
    pub fn block(&self, chain: usize, index: u64) -> Option<u64> {
        let mut skipped = 0;
        for &(start, len) in &self.runs[chain] {
            if index < skipped + len {
                return Some(start + (index - skipped));
            }
            skipped += len;
        }
        None
    }

    /// How many inodes the index lists, in a payload of `payload_len` bytes.
    pub fn inode_count(&self, payload_len: u64) -> u64 {
        (payload_len - self.index_at) / INDEX_ENTRY_BYTES as u64
    }
}

/// Encodes `image` as a whole checkpoint payload whose run map lists no runs yet
/// ([`set_runs`] fills them in once the chains' blocks are allocated). The index lists the inodes
/// in the order `image.inodes` has them: a valid checkpoint has them strictly ascending by inode
/// number, as [`crate::fs::state::State::to_image`] lists them ([`decode`] refuses any other).
pub fn encode(image: &StateImage) -> Vec<u8> {
    let mut w = Writer::new();
    w.raw(&[0; RUN_MAP_BYTES]);
    w.u64(image.next_ino);
    w.u64(image.inodes.len() as u64);
    let mut index = Vec::with_capacity(image.inodes.len());
    for inode in &image.inodes {
        index.push((inode.attrs.ino, w.bytes.len() as u64));
        inode.encode_into(&mut w);
    }
    let quarantine_at = w.bytes.len() as u64;
    w.u64(image.quarantine.len() as u64);
    for &(block, len) in &image.quarantine {
        w.u64(block);
        w.u64(len);
    }
    let index_at = w.bytes.len() as u64;
    for (ino, at) in index {
        w.u64(ino);
        w.u64(at);
    }
    let mut payload = w.bytes;
    payload[0..8].copy_from_slice(&index_at.to_le_bytes());
    payload[8..16].copy_from_slice(&quarantine_at.to_le_bytes());
    payload
}

/// Writes the runs of both chains (each chain's blocks in order, `blocks_for(payload.len())` of
/// them) into the run map of a payload [`encode`] made. Returns false, leaving the map without
/// runs, when they do not fit.
pub fn set_runs(payload: &mut [u8], runs: [&[(u64, u64)]; 2]) -> bool {
    if runs[0].len() + runs[1].len() > MAX_MAPPED_RUNS {
        return false;
    }
    let mut w = Writer::new();
    w.u32(runs[0].len() as u32);
    w.u32(runs[1].len() as u32);
    for &(start, len) in runs.iter().copied().flatten() {
        w.u64(start);
        w.u64(len);
    }
    payload[16..16 + w.bytes.len()].copy_from_slice(&w.bytes);
    true
}

/// Decodes and checks the run map at the start of a whole checkpoint payload of `payload_len`
/// bytes (`map` holds at least its first `RUN_MAP_BYTES.min(payload_len)` bytes) in a pool of
/// `total_blocks` blocks: the offsets lie in the payload in their order, the index is whole
/// entries, and each chain's runs lie in the pool past the superblocks and cover exactly the
/// blocks the payload needs.
pub fn decode_run_map(map: &[u8], payload_len: u64, total_blocks: u64) -> Result<RunMap> {
    let bad = |detail: String| Error::Corrupt(format!("checkpoint run map: {detail}"));
    if payload_len < (RUN_MAP_BYTES + MIN_BODY_BYTES) as u64 || map.len() < RUN_MAP_BYTES {
        return Err(bad(format!("a {payload_len}-byte payload is too short to hold one")));
    }
    let index_at = u64_at(map, 0);
    let quarantine_at = u64_at(map, 8);
    let body_start = (RUN_MAP_BYTES + 16) as u64;
    if quarantine_at < body_start
        || quarantine_at.checked_add(8).is_none_or(|end| end > index_at)
        || index_at > payload_len
    {
        return Err(bad(format!(
            "quarantine at byte {quarantine_at} and index at byte {index_at} do not fit a \
             {payload_len}-byte payload"
        )));
    }
    if (payload_len - index_at) % INDEX_ENTRY_BYTES as u64 != 0 {
        return Err(bad(format!("an index of {} bytes is not whole entries", payload_len - index_at)));
    }
    let counts = [u32_at(map, 16) as usize, u32_at(map, 20) as usize];
    if counts[0] + counts[1] > MAX_MAPPED_RUNS || (counts[0] == 0) != (counts[1] == 0) {
        return Err(bad(format!("{} and {} runs", counts[0], counts[1])));
    }
    let blocks = blocks_for(payload_len as usize) as u64;
    let mut at = RUN_MAP_HEADER;
    let mut runs: [Vec<(u64, u64)>; 2] = Default::default();
    for chain in 0..2 {
        let mut covered = 0u64;
        for _ in 0..counts[chain] {
            let (start, len) = (u64_at(map, at), u64_at(map, at + 8));
            at += 16;
            if start < 2 || len == 0 || start.checked_add(len).is_none_or(|end| end > total_blocks) {
                return Err(bad(format!("chain {chain}: run of {len} blocks at block {start}")));
            }
            covered = covered.saturating_add(len);
            runs[chain].push((start, len));
        }
        if counts[chain] != 0 && covered != blocks {
            return Err(bad(format!("chain {chain}: runs of {covered} blocks for a {blocks}-block payload")));
        }
    }
    // No block twice, in one chain or both (so the payload cannot be longer than the pool).
    let mut all: Vec<(u64, u64)> = runs.iter().flatten().copied().collect();
    all.sort_unstable();
    if let Some(w) = all.windows(2).find(|w| w[0].0 + w[0].1 > w[1].0) {
        return Err(bad(format!("the runs at blocks {} and {} overlap", w[0].0, w[1].0)));
    }
    if map[at..RUN_MAP_BYTES].iter().any(|&b| b != 0) {
        return Err(bad("bytes after the runs are not zero".into()));
    }
    Ok(RunMap { index_at, quarantine_at, runs })
}

/// Inode index entry `k` of `index` (the index's bytes): (inode number, payload offset).
pub fn index_entry(index: &[u8], k: usize) -> (u64, u64) {
    let at = k * INDEX_ENTRY_BYTES;
    (u64_at(index, at), u64_at(index, at + 8))
}

/// Decodes a whole checkpoint payload (format version 6 and later) in a pool of `total_blocks`
/// blocks, keeping extents packed as [`StateImage::decode_sharing`] does, and checks the run map
/// and that the index lists every inode, ascending, at the offset where it is.
pub fn decode(payload: Arc<Vec<u8>>, total_blocks: u64) -> Result<(StateImage, RunMap)> {
    let map = decode_run_map(&payload, payload.len() as u64, total_blocks)?;
    let index_at = map.index_at as usize;
    let index = &payload[index_at..];
    let mut r = Reader::new(&payload[..index_at], "checkpoint");
    r.take(RUN_MAP_BYTES)?;
    let next_ino = r.u64()?;
    let count = r.u64()?;
    let listed = index.len() / INDEX_ENTRY_BYTES;
    if count != listed as u64 {
        return Err(r.corrupt(format!("{count} inodes, but the inode index lists {listed}")));
    }
    let mut inodes = Vec::with_capacity(listed);
    for k in 0..listed {
        let at = r.position() as u64;
        let (ino, listed_at) = index_entry(index, k);
        let inode = InodeImage::decode_sharing(&mut r, Some(&payload))?;
        if inode.attrs.ino != ino || listed_at != at {
            return Err(Error::Corrupt(format!(
                "checkpoint inode index: entry {k} says inode {ino} at byte {listed_at}, but inode {} \
                 is at byte {at}",
                inode.attrs.ino
            )));
        }
        if k > 0 && index_entry(index, k - 1).0 >= ino {
            return Err(Error::Corrupt(format!(
                "checkpoint inode index: inode {ino} follows inode {}",
                index_entry(index, k - 1).0
            )));
        }
        inodes.push(inode);
    }
    if r.position() as u64 != map.quarantine_at {
        return Err(r.corrupt(format!("the run map puts the quarantine at byte {}", map.quarantine_at)));
    }
    let quarantine = quarantine_to_the_end(&mut r)?;
    repack_extents(payload.len(), &mut inodes);
    Ok((StateImage { next_ino, inodes, quarantine }, map))
}

/// Decodes as much of a damaged or cut whole payload as is whole (salvage), as
/// [`StateImage::decode_prefix`] does for the body after the run map.
pub fn decode_prefix(payload: &[u8]) -> StateImage {
    StateImage::decode_prefix(payload.get(RUN_MAP_BYTES..).unwrap_or(&[]))
}

/// Decodes the one inode whose encoding is all of `bytes` (the bytes between its index entry's
/// offset and the next one's, or the quarantine's), which the index says is inode `ino`.
pub fn decode_inode(bytes: &[u8], ino: u64) -> Result<InodeImage> {
    let mut r = Reader::new(bytes, "checkpoint inode");
    let inode = InodeImage::decode_sharing(&mut r, None)?;
    alone(inode, &r, ino)
}

/// `inode`, decoded by `r` from the bytes the index gives inode `ino`, if it is that inode and
/// took them all.
fn alone(inode: InodeImage, r: &Reader<'_>, ino: u64) -> Result<InodeImage> {
    if inode.attrs.ino != ino {
        return Err(Error::Corrupt(format!(
            "checkpoint inode index: inode {ino} is listed where inode {} is",
            inode.attrs.ino
        )));
    }
    if r.remaining() != 0 {
        return Err(r.corrupt(format!("{} bytes after inode {ino}", r.remaining())));
    }
    Ok(inode)
}

/// A directory's entries left as the checkpoint encodes them (`name_len u16, name, ino u64`,
/// ascending by name), for a reader that looks up a name or two of a large directory instead of
/// building a map of every entry. Owns a copy of those bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodedEntries {
    bytes: Vec<u8>,
    count: u64,
    dir: u64,
}

impl EncodedEntries {
    /// The inode that entry `name` names, if the directory holds one. The entries before it (in
    /// name order) are checked on the way ([`EncodedEntries::walk`]).
    pub fn find(&self, name: &[u8]) -> Result<Option<u64>> {
        let mut found = None;
        self.walk(|here, child| match here.cmp(name) {
            std::cmp::Ordering::Less => true,
            std::cmp::Ordering::Equal => {
                found = Some(child);
                false
            }
            std::cmp::Ordering::Greater => false,
        })?;
        Ok(found)
    }

    /// Every entry, as (name, inode), each checked ([`EncodedEntries::walk`]).
    pub fn decode_all(&self) -> Result<Vec<(Vec<u8>, u64)>> {
        let mut out = Vec::with_capacity(self.count.min(self.bytes.len() as u64 / 10) as usize);
        self.walk(|name, child| {
            out.push((name.to_vec(), child));
            true
        })?;
        Ok(out)
    }

    /// Hands `visit` each entry in order, while it says go on, checking each one it reaches: its
    /// length against the bytes and the name limit, and that it follows the one before in name
    /// order. What breaks either is EUCLEAN.
    fn walk(&self, mut visit: impl FnMut(&[u8], u64) -> bool) -> Result<()> {
        let mut r = Reader::new(&self.bytes, "checkpoint directory entries");
        let mut previous: Option<&[u8]> = None;
        for _ in 0..self.count {
            let len = r.u16()? as usize;
            if len > MAX_NAME_LEN {
                return Err(r.corrupt(format!("a name of {len} bytes (at most {MAX_NAME_LEN})")));
            }
            let here = r.take(len)?;
            let child = r.u64()?;
            if previous.is_some_and(|p| p >= here) {
                return Err(
                    r.corrupt(format!("entries of directory {} are not in ascending order", self.dir))
                );
            }
            if !visit(here, child) {
                return Ok(());
            }
            previous = Some(here);
        }
        Ok(())
    }

    /// How many entries the directory holds.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether the directory holds no entry.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// [`decode_inode`], leaving a directory's entries encoded (the image's `entries` stay empty):
/// they are only walked over, by their lengths, to reach what follows them.
pub fn decode_inode_keeping_entries(bytes: &[u8], ino: u64) -> Result<(InodeImage, EncodedEntries)> {
    let mut kept = EncodedEntries { dir: ino, ..EncodedEntries::default() };
    let mut r = Reader::new(bytes, "checkpoint inode");
    let inode = InodeImage::decode_with_entries(&mut r, None, |r, ino| {
        let count = entry_count(r, ino)?;
        let start = r.position();
        for _ in 0..count {
            let len = r.u16()? as usize;
            r.take(len + 8)?;
        }
        kept.bytes = bytes[start..r.position()].to_vec();
        kept.count = count;
        Ok(Vec::new())
    })?;
    Ok((alone(inode, &r, ino)?, kept))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::record::{InodeAttrs, InodeKind};

    fn image(inos: &[u64]) -> StateImage {
        StateImage {
            next_ino: 100,
            inodes: inos
                .iter()
                .map(|&ino| InodeImage {
                    attrs: InodeAttrs { ino, kind: InodeKind::File, nlink: 1, ..Default::default() },
                    extents: vec![(0, 10 + ino, 1)].into(),
                    ..Default::default()
                })
                .collect(),
            quarantine: vec![(7, 1)],
        }
    }

    #[test]
    fn an_encoded_image_decodes_to_itself_with_its_runs() {
        let img = image(&[1, 2, 5, 9]);
        let mut payload = encode(&img);
        let blocks = blocks_for(payload.len()) as u64;
        assert!(set_runs(&mut payload, [&[(10, blocks)], &[(50, 1), (60, blocks - 1)]]));
        let (back, map) = decode(Arc::new(payload.clone()), 1000).unwrap();
        assert_eq!(back, img);
        assert_eq!(map.runs, [vec![(10, blocks)], vec![(50, 1), (60, blocks - 1)]]);
        assert_eq!(map.inode_count(payload.len() as u64), 4);
        assert_eq!(map.block(1, 1), if blocks > 1 { Some(60) } else { None });
        let index = &payload[map.index_at as usize..];
        let (ino, at) = index_entry(index, 2);
        let (_, next) = index_entry(index, 3);
        assert_eq!(decode_inode(&payload[at as usize..next as usize], ino).unwrap(), img.inodes[2]);
    }

    #[test]
    fn an_index_entry_that_points_at_another_inode_is_corrupt() {
        let img = image(&[1, 2, 5]);
        let mut payload = encode(&img);
        let index_at = u64_at(&payload, 0) as usize;
        // Entry 1 says inode 2 is where inode 5 is.
        let third = u64_at(&payload, index_at + 2 * INDEX_ENTRY_BYTES + 8);
        payload[index_at + INDEX_ENTRY_BYTES + 8..index_at + 2 * INDEX_ENTRY_BYTES]
            .copy_from_slice(&third.to_le_bytes());
        let e = decode(Arc::new(payload), 1000).unwrap_err().to_string();
        assert!(e.contains("entry 1 says inode 2"), "{e}");
    }

    #[test]
    fn runs_that_cover_the_wrong_number_of_blocks_are_corrupt() {
        let mut payload = encode(&image(&[1]));
        assert!(set_runs(&mut payload, [&[(10, 5)], &[(20, 5)]]));
        let e = decode(Arc::new(payload), 1000).unwrap_err().to_string();
        assert!(e.contains("chain 0: runs of 5 blocks for a 2-block payload"), "{e}");
    }

    #[test]
    fn encoded_entries_find_a_name_and_refuse_entries_out_of_order() {
        let mut dir = image(&[1]).inodes.remove(0);
        dir.attrs.kind = InodeKind::Dir;
        dir.extents = Vec::new().into();
        dir.entries = vec![(b"a".to_vec(), 5), (b"bb".to_vec(), 6), (b"c".to_vec(), 7)];
        let mut w = Writer::new();
        dir.encode_into(&mut w);
        let (alone, entries) = decode_inode_keeping_entries(&w.bytes, 1).unwrap();
        assert!(alone.entries.is_empty());
        assert_eq!(alone.attrs, dir.attrs);
        assert_eq!(entries.len(), 3);
        assert_eq!(entries.find(b"bb").unwrap(), Some(6));
        assert_eq!(entries.find(b"c").unwrap(), Some(7));
        assert_eq!(entries.find(b"b").unwrap(), None);
        assert_eq!(entries.find(b"d").unwrap(), None);
        assert_eq!(entries.decode_all().unwrap(), dir.entries);
        dir.entries.swap(0, 1);
        let mut w = Writer::new();
        dir.encode_into(&mut w);
        let (_, entries) = decode_inode_keeping_entries(&w.bytes, 1).unwrap();
        let e = entries.find(b"c").unwrap_err().to_string();
        assert!(e.contains("entries of directory 1 are not in ascending order"), "{e}");
        let e = entries.decode_all().unwrap_err().to_string();
        assert!(e.contains("entries of directory 1 are not in ascending order"), "{e}");
    }

    #[test]
    fn runs_that_overlap_and_offsets_near_the_end_of_u64_are_corrupt() {
        let mut payload = encode(&image(&[1]));
        assert!(set_runs(&mut payload, [&[(10, 2)], &[(11, 2)]]));
        let e = decode(Arc::new(payload), 1000).unwrap_err().to_string();
        assert!(e.contains("the runs at blocks 10 and 11 overlap"), "{e}");
        let mut payload = encode(&image(&[1]));
        payload[8..16].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
        let e = decode_run_map(&payload, payload.len() as u64, 1000).unwrap_err().to_string();
        assert!(e.contains("do not fit"), "{e}");
    }

    #[test]
    fn too_many_runs_leave_the_map_without_runs() {
        let mut payload = encode(&image(&[1]));
        let many: Vec<(u64, u64)> = (0..MAX_MAPPED_RUNS as u64).map(|i| (10 + 2 * i, 1)).collect();
        assert!(!set_runs(&mut payload, [&many, &[(5, 1)]]));
        let (_, map) = decode(Arc::new(payload), 10_000).unwrap();
        assert!(!map.has_runs());
    }
}
