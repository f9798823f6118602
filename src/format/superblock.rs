//! The superblock: pool identity, geometry and the root of the durable state.
//!
//! Two copies live in blocks 0 and 1, and each block has two slots (bytes 0..256 and 2048..2304): a
//! checkpoint of generation g writes slot g % 2 of each copy, so the slot it overwrites is never
//! the newest one, and a torn write of it leaves the other slot (the previous generation) intact —
//! even when one copy is lost and only one block is left. Each slot is written whole and
//! checksummed; mount takes the valid slot with the highest generation. The superblock names both
//! copies of the log region and both checkpoint chains (since format version 2). Version 3 keeps
//! names in directory entries (hard links), owners, symlinks and extended attributes; the layout of
//! this block is the same; version 4 adds the `Clone` log mutation and changes nothing else. Version
//! 5 adds the *delta*: a checkpoint may write only the inodes changed since the last checkpoint,
//! as a pair of chains beside the last whole checkpoint (the base); the superblock names the newest
//! delta (each names the one before it), and the base keeps the generation it was written at.
//! Version 6 begins each whole checkpoint's payload with a run map (where both chains' blocks are)
//! and ends it with an inode index (where each inode's bytes are), for reading one inode without
//! the rest ([`super::indexed`]); the layout of this block is version 5's. Version 1 pools (one
//! log, one chain), version 2 pools (names inside inodes) and versions 3 to 5 are still read, and
//! a read-write mount converts them. Owns the layout only; never writes the pool.
//!
//! Layout (little-endian, the rest of the 4096-byte block is zero):
//! ```text
//!   0  8  magic "FERRODAX"
//!   8  4  format version (6; 1 to 5 are read and converted)
//!  12  4  block size (4096)
//!  16 16  uuid
//!  32  8  total blocks in the pool
//!  40  8  incompatible feature flags (none defined: must be 0)
//!  48  8  generation: +1 at every checkpoint
//!  56  8  log start block
//!  64  8  log length in blocks
//!  72  8  sequence number of the first log record of this generation
//!  80  8  first block of checkpoint chain 0 (0 = no checkpoint: empty file system)
//!  88  8  checkpoint payload length in bytes
//!  96  4  CRC-32C of the whole checkpoint payload
//! 100  4  copy index (0 or 1)
//! 104  8  creation time, ns since the Unix epoch
//! 112  4  lost copies: bit n set = copy n sits on bad memory and is no longer written
//! 116  8  first block of the log mirror (version 2; 0 in version 1)
//! 124  8  first block of checkpoint chain 1, the mirror (version 2; 0 in version 1)
//! 132  8  generation the checkpoint's blocks carry (version 5; before it, the generation at 48)
//! 140  8  first block of delta chain 0 (version 5; 0 = no delta)
//! 148  8  first block of delta chain 1
//! 156  8  delta payload length in bytes
//! 164  4  CRC-32C of the whole delta payload
//! 168 84  reserved, zero
//! 252  4  CRC-32C of bytes 0..252 with this field as zero
//! ```

use super::codec::{u32_at, Reader, Writer};
use super::{checksum_with_hole, BLOCK_SIZE};
use crate::error::{Error, Result};

/// The superblock's magic bytes.
pub const MAGIC: &[u8; 8] = b"FERRODAX";
/// The format version this code writes. Version 4 added the `Clone` log mutation (a reflink or
/// dedupe as one fixed-size mutation); its checkpoints are version 3's. Version 5 added the delta
/// (the fields at bytes 132..168). Version 6 begins every whole checkpoint with a run map and ends
/// it with an inode index; this block's layout is version 5's.
pub const VERSION: u32 = 6;
/// The first format version whose superblock can name a delta beside the checkpoint.
pub const FIRST_VERSION_WITH_DELTA: u32 = 5;
/// The first format version whose whole checkpoints begin with a run map and end with an inode
/// index ([`super::indexed`]).
pub const FIRST_VERSION_WITH_INDEX: u32 = 6;
/// The first format version whose inodes carry no name (names are directory entries); versions
/// before it are read through [`super::legacy`].
pub const FIRST_VERSION_WITH_ENTRIES: u32 = 3;
/// The oldest format version this code reads (and converts on a read-write mount): one log region,
/// one checkpoint chain with 32-byte block headers.
pub const OLDEST_READABLE_VERSION: u32 = 1;
/// Bytes covered by the checksum, which follows them.
const CRC_OFFSET: usize = 252;
/// Encoded size of a superblock (one slot).
pub const ENCODED_LEN: usize = 256;
/// Byte offsets of the two slots inside a superblock block (since format version 2; version 1 pools
/// have slot 0 only, and zeros in slot 1).
pub const SLOT_OFFSETS: [usize; 2] = [0, 2048];

/// The decoded superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// Format version: [`VERSION`] for every pool this code writes, [`OLDEST_READABLE_VERSION`]
    /// for an old pool until a read-write mount converts it.
    pub version: u32,
    /// Identifies the pool: reflink between pools with different uuids fails with EXDEV.
    pub uuid: [u8; 16],
    /// Number of 4096-byte blocks in the pool.
    pub total_blocks: u64,
    /// Incompatible features; mount refuses any bit it does not know.
    pub features: u64,
    /// Bumped by one at every checkpoint; mount prefers the higher valid copy.
    pub generation: u64,
    /// First block of the log region.
    pub log_start: u64,
    /// Length of the log region in blocks.
    pub log_blocks: u64,
    /// Sequence number the first log record of this generation carries.
    pub log_first_seq: u64,
    /// First block of the checkpoint chain, or 0 for none.
    pub checkpoint_head: u64,
    /// Length of the checkpoint payload in bytes.
    pub checkpoint_len: u64,
    /// CRC-32C of the whole checkpoint payload.
    pub checkpoint_crc: u32,
    /// Which copy this is (0 = block 0, 1 = block 1).
    pub copy: u32,
    /// When the pool was made, in ns since the Unix epoch.
    pub created_ns: i64,
    /// Bit n set: copy n is on bad memory (poisoned) and is no longer written or repaired.
    pub lost_copies: u32,
    /// First block of the log mirror, a second region of `log_blocks` blocks holding the same
    /// records at the same offsets (0 in a version 1 pool, which has none).
    pub log_mirror_start: u64,
    /// First block of checkpoint chain 1, which holds the same blocks as chain 0 (0 when there is
    /// no checkpoint, and in a version 1 pool).
    pub checkpoint_mirror_head: u64,
    /// The generation the checkpoint's blocks carry: the one it was written at, which a delta
    /// written since leaves behind (before version 5: always `generation`).
    pub checkpoint_generation: u64,
    /// The newest delta, when checkpoints since the last whole one wrote only what changed (it
    /// names the delta before it); its blocks carry `generation`.
    pub delta: Option<DeltaRoot>,
}

/// Where a delta lives (format version 5): two chains of checkpoint blocks holding the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaRoot {
    /// First block of delta chain 0 and of delta chain 1.
    pub heads: [u64; 2],
    /// Delta payload length in bytes.
    pub len: u64,
    /// CRC-32C of the whole delta payload.
    pub crc: u32,
}

impl Superblock {
    /// First block of log copy `copy` (0 the log, 1 its mirror; 0 = none).
    pub fn log_copy_start(&self, copy: usize) -> u64 {
        if copy == 0 {
            self.log_start
        } else {
            self.log_mirror_start
        }
    }

    /// Moves log copy `copy` (0 the log, 1 its mirror) to `start`.
    pub fn set_log_copy_start(&mut self, copy: usize, start: u64) {
        if copy == 0 {
            self.log_start = start;
        } else {
            self.log_mirror_start = start;
        }
    }

    /// The slot a superblock of this generation is written to.
    pub fn slot(&self) -> usize {
        (self.generation % 2) as usize
    }

    /// Encodes this superblock as one slot ([`ENCODED_LEN`] bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(MAGIC);
        w.u32(self.version);
        w.u32(BLOCK_SIZE as u32);
        w.raw(&self.uuid);
        w.u64(self.total_blocks);
        w.u64(self.features);
        w.u64(self.generation);
        w.u64(self.log_start);
        w.u64(self.log_blocks);
        w.u64(self.log_first_seq);
        w.u64(self.checkpoint_head);
        w.u64(self.checkpoint_len);
        w.u32(self.checkpoint_crc);
        w.u32(self.copy);
        w.i64(self.created_ns);
        w.u32(self.lost_copies);
        w.u64(self.log_mirror_start);
        w.u64(self.checkpoint_mirror_head);
        if self.version >= FIRST_VERSION_WITH_DELTA {
            w.u64(self.checkpoint_generation);
            let delta = self.delta.unwrap_or(DeltaRoot { heads: [0, 0], len: 0, crc: 0 });
            w.u64(delta.heads[0]);
            w.u64(delta.heads[1]);
            w.u64(delta.len);
            w.u32(delta.crc);
        }
        let mut bytes = w.bytes;
        bytes.resize(ENCODED_LEN, 0);
        let crc = checksum_with_hole(&bytes[..CRC_OFFSET], &bytes[CRC_OFFSET + 4..ENCODED_LEN]);
        bytes[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Decodes and validates one slot of copy `copy` (its first [`ENCODED_LEN`] bytes); the error
    /// names the copy and what is wrong with it.
    pub fn decode(bytes: &[u8], copy: u32) -> Result<Self> {
        let what = if copy == 0 { "superblock copy 0 (block 0)" } else { "superblock copy 1 (block 1)" };
        if bytes.len() < ENCODED_LEN {
            return Err(Error::Corrupt(format!("{what}: pool too small to hold it")));
        }
        if &bytes[..8] != MAGIC {
            return Err(Error::Corrupt(format!("{what}: bad magic (not a ferrodax pool?)")));
        }
        let stored = u32_at(bytes, CRC_OFFSET);
        let computed = checksum_with_hole(&bytes[..CRC_OFFSET], &bytes[CRC_OFFSET + 4..ENCODED_LEN]);
        if stored != computed {
            return Err(Error::Corrupt(format!(
                "{what}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            )));
        }
        let mut r = Reader::new(&bytes[8..ENCODED_LEN], what);
        let version = r.u32()?;
        if !(OLDEST_READABLE_VERSION..=VERSION).contains(&version) {
            return Err(Error::Corrupt(format!(
                "{what}: format version {version}, but this ferrodax reads versions \
                 {OLDEST_READABLE_VERSION} to {VERSION}{}",
                if version > VERSION { " (made by a newer ferrodax: use that one)" } else { "" }
            )));
        }
        let block_size = r.u32()?;
        if block_size as u64 != BLOCK_SIZE {
            return Err(Error::Corrupt(format!("{what}: unsupported block size {block_size}")));
        }
        let mut uuid = [0; 16];
        uuid.copy_from_slice(r.take(16)?);
        let mut sb = Superblock {
            version,
            uuid,
            total_blocks: r.u64()?,
            features: r.u64()?,
            generation: r.u64()?,
            log_start: r.u64()?,
            log_blocks: r.u64()?,
            log_first_seq: r.u64()?,
            checkpoint_head: r.u64()?,
            checkpoint_len: r.u64()?,
            checkpoint_crc: r.u32()?,
            copy: r.u32()?,
            created_ns: r.i64()?,
            lost_copies: r.u32()?,
            log_mirror_start: r.u64()?,
            checkpoint_mirror_head: r.u64()?,
            checkpoint_generation: 0,
            delta: None,
        };
        if version >= FIRST_VERSION_WITH_DELTA {
            sb.checkpoint_generation = r.u64()?;
            let heads = [r.u64()?, r.u64()?];
            let (len, crc) = (r.u64()?, r.u32()?);
            if heads != [0, 0] || len != 0 || crc != 0 {
                sb.delta = Some(DeltaRoot { heads, len, crc });
            }
        } else {
            sb.checkpoint_generation = sb.generation;
        }
        if sb.lost_copies & !0b11 != 0 || sb.lost_copies & (1 << copy) != 0 {
            return Err(Error::Corrupt(format!("{what}: bad lost-copies mask {:#x}", sb.lost_copies)));
        }
        if sb.copy != copy {
            return Err(Error::Corrupt(format!("{what}: claims to be copy {}", sb.copy)));
        }
        if sb.features != 0 {
            return Err(Error::Corrupt(format!("{what}: unknown feature flags {:#x}", sb.features)));
        }
        sb.validate_geometry().map_err(|detail| Error::Corrupt(format!("{what}: {detail}")))?;
        Ok(sb)
    }

    /// Checks that the regions it names fit the pool; returns what is wrong.
    fn validate_geometry(&self) -> std::result::Result<(), String> {
        if self.total_blocks < 4 {
            return Err(format!("pool of {} blocks is too small", self.total_blocks));
        }
        let log_end = self.log_start.checked_add(self.log_blocks);
        if self.log_start < 2 || self.log_blocks == 0 || log_end.is_none_or(|e| e > self.total_blocks) {
            return Err(format!(
                "log region [{}, +{}) does not fit {} blocks",
                self.log_start, self.log_blocks, self.total_blocks
            ));
        }
        if self.checkpoint_head != 0
            && (self.checkpoint_head < 2 || self.checkpoint_head >= self.total_blocks)
        {
            return Err(format!("checkpoint head block {} out of range", self.checkpoint_head));
        }
        if self.checkpoint_head == 0 && self.checkpoint_len != 0 {
            return Err("checkpoint length without a checkpoint".into());
        }
        if self.version == OLDEST_READABLE_VERSION {
            if self.log_mirror_start != 0 || self.checkpoint_mirror_head != 0 {
                return Err("a version 1 superblock with mirror fields set".into());
            }
            return Ok(());
        }
        let mirror_end = self.log_mirror_start.checked_add(self.log_blocks);
        if self.log_mirror_start < 2 || mirror_end.is_none_or(|e| e > self.total_blocks) {
            return Err(format!(
                "log mirror [{}, +{}) does not fit {} blocks",
                self.log_mirror_start, self.log_blocks, self.total_blocks
            ));
        }
        if self.log_mirror_start < self.log_start + self.log_blocks
            && self.log_start < self.log_mirror_start + self.log_blocks
        {
            return Err(format!(
                "log mirror [{}, +{}) overlaps the log [{}, +{})",
                self.log_mirror_start, self.log_blocks, self.log_start, self.log_blocks
            ));
        }
        if (self.checkpoint_head == 0) != (self.checkpoint_mirror_head == 0)
            || (self.checkpoint_mirror_head != 0
                && (self.checkpoint_mirror_head < 2 || self.checkpoint_mirror_head >= self.total_blocks))
        {
            return Err(format!("checkpoint mirror head block {} out of range", self.checkpoint_mirror_head));
        }
        if self.checkpoint_generation > self.generation {
            return Err(format!(
                "checkpoint generation {} is newer than the superblock's {}",
                self.checkpoint_generation, self.generation
            ));
        }
        if let Some(delta) = self.delta {
            if self.checkpoint_head == 0 {
                return Err("a delta without a checkpoint".into());
            }
            if delta.heads.iter().any(|&h| h < 2 || h >= self.total_blocks) {
                return Err(format!("delta head blocks {:?} out of range", delta.heads));
            }
            if self.checkpoint_generation == self.generation {
                return Err(format!(
                    "a delta of generation {} beside a checkpoint of the same",
                    self.generation
                ));
            }
        }
        Ok(())
    }

    /// The uuid as the usual 8-4-4-4-12 hex text.
    pub fn uuid_string(&self) -> String {
        let h: String = self.uuid.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(version: u32) -> Superblock {
        Superblock {
            version,
            uuid: [7; 16],
            total_blocks: 1000,
            features: 0,
            generation: 9,
            log_start: 2,
            log_blocks: 16,
            log_first_seq: 40,
            checkpoint_head: 100,
            checkpoint_len: 5000,
            checkpoint_crc: 0xabcd,
            copy: 0,
            created_ns: 1,
            lost_copies: 0,
            log_mirror_start: 984,
            checkpoint_mirror_head: 900,
            checkpoint_generation: if version >= FIRST_VERSION_WITH_DELTA { 6 } else { 9 },
            delta: (version >= FIRST_VERSION_WITH_DELTA).then_some(DeltaRoot {
                heads: [200, 800],
                len: 300,
                crc: 0x1234,
            }),
        }
    }

    #[test]
    fn a_version_5_superblock_keeps_its_delta_and_a_version_4_one_reads_as_having_none() {
        let v5 = sample(5);
        assert_eq!(Superblock::decode(&v5.encode(), 0).unwrap(), v5);
        let v4 = sample(4);
        let bytes = v4.encode();
        assert!(bytes[132..252].iter().all(|&b| b == 0), "version 4 leaves the delta fields zero");
        let read = Superblock::decode(&bytes, 0).unwrap();
        assert_eq!((read.checkpoint_generation, read.delta), (9, None));
        assert_eq!(read, v4);
    }

    #[test]
    fn a_delta_needs_a_checkpoint_blocks_in_the_pool_and_a_newer_generation() {
        let refuse = |edit: &dyn Fn(&mut Superblock), want: &str| {
            let mut sb = sample(5);
            edit(&mut sb);
            let e = Superblock::decode(&sb.encode(), 0).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        };
        refuse(
            &|sb| sb.delta.as_mut().unwrap().heads[1] = 1000,
            "delta head blocks [200, 1000] out of range",
        );
        refuse(&|sb| sb.checkpoint_generation = 9, "a delta of generation 9 beside a checkpoint of the same");
        refuse(
            &|sb| sb.checkpoint_generation = 10,
            "checkpoint generation 10 is newer than the superblock's 9",
        );
        refuse(
            &|sb| {
                sb.checkpoint_head = 0;
                sb.checkpoint_mirror_head = 0;
                sb.checkpoint_len = 0;
            },
            "a delta without a checkpoint",
        );
    }
}
