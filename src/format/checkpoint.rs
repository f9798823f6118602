//! Checkpoints: the whole durable state written out, so the log can start over.
//!
//! A checkpoint is a payload (every inode with its extents, the quarantine list) cut into a chain of
//! blocks. Each block (little-endian):
//! ```text
//!  0  8  magic "FDXCKPT1"
//!  8  8  generation of the superblock that points at this chain
//! 16  8  next block of the chain (0 = last)
//! 24  4  payload bytes in this block (at most 4064)
//! 28  4  CRC-32C of bytes 0..32 (this field as zero) and this block's payload bytes
//! 32  .  payload bytes
//! ```
//! Payload: `next_ino u64, inode_count u64, inodes…, quarantine_count u64, (block u64, len u64)…`;
//! an inode is its [`InodeAttrs`] encoding, `extent_count u64`, then `(file_block, phys, len)` u64
//! triples. Owns the encoding only.

use super::codec::{u32_at, u64_at, Reader, Writer};
use super::record::InodeAttrs;
use super::{checksum, checksum_with_hole, BLOCK_SIZE};
use crate::error::{Error, Result};

/// Magic of a checkpoint block.
pub const MAGIC: &[u8; 8] = b"FDXCKPT1";
/// Header bytes per checkpoint block.
pub const HEADER_LEN: usize = 32;
/// Payload bytes per checkpoint block.
pub const PAYLOAD_PER_BLOCK: usize = BLOCK_SIZE as usize - HEADER_LEN;

/// One inode as a checkpoint stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InodeImage {
    /// Its attributes.
    pub attrs: InodeAttrs,
    /// Its mapped extents as (file block, pool block, length in blocks), ascending.
    pub extents: Vec<(u64, u64, u64)>,
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

impl StateImage {
    /// Encodes the payload.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u64(self.next_ino);
        w.u64(self.inodes.len() as u64);
        for inode in &self.inodes {
            inode.attrs.encode_into(&mut w);
            w.u64(inode.extents.len() as u64);
            for &(fb, phys, len) in &inode.extents {
                w.u64(fb);
                w.u64(phys);
                w.u64(len);
            }
        }
        w.u64(self.quarantine.len() as u64);
        for &(block, len) in &self.quarantine {
            w.u64(block);
            w.u64(len);
        }
        w.bytes
    }

    /// Decodes a payload; every count is checked against the bytes actually present.
    pub fn decode(payload: &[u8]) -> Result<Self> {
        let mut r = Reader::new(payload, "checkpoint");
        let next_ino = r.u64()?;
        let count = r.u64()?;
        if count > r.remaining() as u64 / 40 {
            return Err(r.corrupt(format!("inode count {count} exceeds payload")));
        }
        let mut inodes = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let attrs = InodeAttrs::decode_from(&mut r)?;
            let n = r.u64()?;
            if n > r.remaining() as u64 / 24 {
                return Err(r.corrupt(format!("extent count {n} of inode {} exceeds payload", attrs.ino)));
            }
            let mut extents = Vec::with_capacity(n as usize);
            for _ in 0..n {
                extents.push((r.u64()?, r.u64()?, r.u64()?));
            }
            inodes.push(InodeImage { attrs, extents });
        }
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
        Ok(Self { next_ino, inodes, quarantine })
    }
}

/// Number of blocks a payload of `len` bytes needs.
pub fn blocks_for(len: usize) -> usize {
    len.div_ceil(PAYLOAD_PER_BLOCK).max(1)
}

/// Cuts `payload` into checkpoint blocks chained through `blocks` (which must hold exactly
/// `blocks_for(payload.len())` block numbers). Returns (block number, 4096 bytes) pairs.
pub fn frame(payload: &[u8], generation: u64, blocks: &[u64]) -> Vec<(u64, Vec<u8>)> {
    assert_eq!(blocks.len(), blocks_for(payload.len()));
    let mut out = Vec::with_capacity(blocks.len());
    for (i, &block) in blocks.iter().enumerate() {
        let chunk = payload
            .get(i * PAYLOAD_PER_BLOCK..((i + 1) * PAYLOAD_PER_BLOCK).min(payload.len()))
            .unwrap_or(&[]);
        let next = blocks.get(i + 1).copied().unwrap_or(0);
        let mut w = Writer::new();
        w.raw(MAGIC);
        w.u64(generation);
        w.u64(next);
        w.u32(chunk.len() as u32);
        w.u32(0);
        w.raw(chunk);
        let mut bytes = w.bytes;
        let crc = checksum_with_hole(&bytes[..28], &bytes[32..]);
        bytes[28..32].copy_from_slice(&crc.to_le_bytes());
        bytes.resize(BLOCK_SIZE as usize, 0);
        out.push((block, bytes));
    }
    out
}

/// Follows a checkpoint chain from `head`, reading blocks with `read_block`, and returns the
/// payload and the blocks it occupies. Checks every block and the whole payload's checksum.
pub fn read_chain(
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
    let max_blocks = blocks_for(payload_len as usize);
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
        if &bytes[..8] != MAGIC {
            return Err(Error::Corrupt(format!("{what}: bad magic")));
        }
        if u64_at(&bytes, 8) != generation {
            return Err(Error::Corrupt(format!(
                "{what}: generation {} but the superblock says {generation}",
                u64_at(&bytes, 8)
            )));
        }
        let len = u32_at(&bytes, 24) as usize;
        if len > PAYLOAD_PER_BLOCK {
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
