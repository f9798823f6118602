//! The on-media format: byte layouts of the superblock, log records and checkpoint blocks, and
//! their checksums. docs/ARCHITECTURE.md draws each layout byte by byte.
//!
//! Owns encoding and decoding, and nothing else: it never touches the pool (callers hand it bytes)
//! and never decides what an operation means. Every decoder treats its input as hostile: a damaged
//! image yields [`crate::Error::Corrupt`] naming the structure, never a panic.

pub mod checkpoint;
pub mod codec;
pub mod indexed;
pub mod legacy;
pub mod record;
pub mod superblock;

/// Bytes per block: the unit of allocation, sharing and poison.
pub const BLOCK_SIZE: u64 = 4096;

/// Block numbers of the two superblock copies.
pub const SUPERBLOCK_BLOCKS: [u64; 2] = [0, 1];

/// The inode number of the root directory.
pub const ROOT_INO: u64 = 1;

/// The largest file size: like XFS, the largest byte count a signed 64-bit offset can address,
/// rounded down to a whole block.
pub const MAX_FILE_SIZE: u64 = (i64::MAX as u64) & !(BLOCK_SIZE - 1);

/// The longest name in a directory, in bytes.
pub const MAX_NAME_LEN: usize = 255;

/// The longest symlink target, in bytes (PATH_MAX less its NUL, as Linux).
pub const MAX_SYMLINK_LEN: usize = 4095;

/// The longest extended attribute name, namespace prefix included (XATTR_NAME_MAX).
pub const MAX_XATTR_NAME_LEN: usize = 255;

/// The largest extended attribute value (XATTR_SIZE_MAX).
pub const MAX_XATTR_VALUE_LEN: usize = 65536;

/// The CRC-32C of `bytes`, the checksum of every on-media structure.
pub fn checksum(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// The CRC-32C of `head`, four zero bytes standing for the checksum field, then `tail`.
pub fn checksum_with_hole(head: &[u8], tail: &[u8]) -> u32 {
    let crc = crc32c::crc32c_append(crc32c::crc32c(head), &[0; 4]);
    crc32c::crc32c_append(crc, tail)
}
