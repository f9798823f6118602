//! fallocate(2) (preallocate, punch a hole, zero, collapse, insert, unshare), SEEK_DATA and
//! SEEK_HOLE, and the remap half of copy_file_range(2).
//!
//! Owns the errno rules of `vfs_fallocate` (fs/open.c) and of XFS's `xfs_file_fallocate`, in the
//! kernel's order, and the meaning of each mode on ferrodax's layout: holes are the absence of an
//! extent, and no file maps a block past its EOF, so preallocation is zeroed blocks (there are no
//! unwritten extents) and `FALLOC_FL_KEEP_SIZE` preallocates nothing past EOF
//! (docs/CONFORMANCE.md). Every mode is one record of `Map` and `PutInode` mutations
//! (docs/ARCHITECTURE.md section 4): blocks that change contents are written into new blocks first
//! (Rule 1), and collapse and insert only re-point this file's own extents, so the ownership map
//! follows through `State::apply` and other files' bytes are never touched.
//!
//! Must never: store into a block that is mapped (partial blocks are copied into new blocks), map
//! a block past EOF, or free a block that a later mutation of the same record maps again (moved
//! extents are mapped at their new place before their old place is unmapped).

use super::{blocks_of, modified, FileSystem, Handle};
use crate::error::{Error, Result};
use crate::format::record::Mutation;
use crate::format::{BLOCK_SIZE, MAX_FILE_SIZE};

/// `FALLOC_FL_KEEP_SIZE`: the file size does not change.
pub const FALLOC_FL_KEEP_SIZE: u32 = 0x01;
/// `FALLOC_FL_PUNCH_HOLE`: deallocate the range (only with `FALLOC_FL_KEEP_SIZE`).
pub const FALLOC_FL_PUNCH_HOLE: u32 = 0x02;
/// `FALLOC_FL_NO_HIDE_STALE`: reserved; always EOPNOTSUPP.
pub const FALLOC_FL_NO_HIDE_STALE: u32 = 0x04;
/// `FALLOC_FL_COLLAPSE_RANGE`: remove the range and shift the rest of the file down.
pub const FALLOC_FL_COLLAPSE_RANGE: u32 = 0x08;
/// `FALLOC_FL_ZERO_RANGE`: make the range read as zeros, allocated.
pub const FALLOC_FL_ZERO_RANGE: u32 = 0x10;
/// `FALLOC_FL_INSERT_RANGE`: insert a hole at the offset, shifting the rest of the file up.
pub const FALLOC_FL_INSERT_RANGE: u32 = 0x20;
/// `FALLOC_FL_UNSHARE_RANGE`: give the file private copies of the shared blocks of the range.
pub const FALLOC_FL_UNSHARE_RANGE: u32 = 0x40;
/// `FALLOC_FL_WRITE_ZEROES` (Linux 6.17): accepted by the VFS, not supported by XFS: EOPNOTSUPP.
pub const FALLOC_FL_WRITE_ZEROES: u32 = 0x80;
/// The mutually exclusive modes (`FALLOC_FL_MODE_MASK`); allocation is "no bit set".
pub const FALLOC_FL_MODE_MASK: u32 = FALLOC_FL_PUNCH_HOLE
    | FALLOC_FL_COLLAPSE_RANGE
    | FALLOC_FL_ZERO_RANGE
    | FALLOC_FL_INSERT_RANGE
    | FALLOC_FL_UNSHARE_RANGE
    | FALLOC_FL_WRITE_ZEROES;

/// The most bytes one read or write moves (`MAX_RW_COUNT`: `INT_MAX` rounded down to a page):
/// copy_file_range does at most this much per call.
pub const MAX_RW_COUNT: u64 = (i32::MAX as u64) & !(BLOCK_SIZE - 1);

/// What `lseek` looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SeekTarget {
    /// `SEEK_DATA`: the first mapped byte at or after the offset.
    Data,
    /// `SEEK_HOLE`: the first byte of a hole at or after the offset (EOF counts as one).
    Hole,
}

/// The checks `vfs_fallocate` makes before the file system sees the call, in its order: a
/// negative offset or a length <= 0 is EINVAL, an unknown or malformed mode EOPNOTSUPP, a handle
/// not open for writing EBADF; then the offset plus length past the largest file size is EFBIG.
/// (The directory check between the last two needs the inode: [`FileSystem::fallocate`] makes it.)
pub fn vfs_fallocate_checks(mode: u32, offset: u64, len: u64, writable: bool) -> Result<()> {
    let max = i64::MAX as u64;
    if offset > max || len == 0 || len > max {
        return Err(Error::Invalid(format!("fallocate of [{offset}, +{len})")));
    }
    if mode & !(FALLOC_FL_MODE_MASK | FALLOC_FL_KEEP_SIZE) != 0 {
        return Err(Error::NotSupported(format!("fallocate mode {mode:#x}")));
    }
    let keep = mode & FALLOC_FL_KEEP_SIZE != 0;
    let valid = match mode & FALLOC_FL_MODE_MASK {
        0 | FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_ZERO_RANGE => true,
        FALLOC_FL_PUNCH_HOLE => keep,
        FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE | FALLOC_FL_WRITE_ZEROES => !keep,
        _ => false,
    };
    if !valid {
        return Err(Error::NotSupported(format!("fallocate mode {mode:#x} (modes are exclusive)")));
    }
    if !writable {
        return Err(Error::BadHandle("fallocate needs a handle open for writing".into()));
    }
    Ok(())
}

/// One block to rewrite into a new block: bytes `[zero_from, zero_to)` of it (block-relative)
/// become zeros, the rest inside EOF is copied from `old` (zeros for a hole).
#[derive(Debug, Clone, Copy)]
struct Rewrite {
    file_block: u64,
    old: Option<u64>,
    zero_from: u64,
    zero_to: u64,
}

impl FileSystem {
    /// fallocate(2) on `file`: `mode` is the kernel's bit set (`FALLOC_FL_*`). The errno rules
    /// are `vfs_fallocate`'s, then `xfs_file_fallocate`'s, each in the kernel's order. Every
    /// successful call stamps the modification and change times, as `file_modified` does.
    pub fn fallocate(&mut self, file: Handle, mode: u32, offset: u64, len: u64) -> Result<()> {
        vfs_fallocate_checks(mode, offset, len, file.access.write)?;
        self.writable()?;
        let ino = file.ino;
        self.file(ino)?;
        let end = offset + len;
        if end > MAX_FILE_SIZE {
            return Err(Error::TooBig(format!("fallocate to {end}, past the largest file size")));
        }
        let keep_size = mode & FALLOC_FL_KEEP_SIZE != 0;
        match mode & FALLOC_FL_MODE_MASK {
            0 => self.allocate_range(ino, offset, end, keep_size),
            FALLOC_FL_PUNCH_HOLE => self.punch_hole(ino, offset, end),
            FALLOC_FL_ZERO_RANGE => self.zero_range(ino, offset, end, keep_size),
            FALLOC_FL_COLLAPSE_RANGE => self.collapse_range(ino, offset, len),
            FALLOC_FL_INSERT_RANGE => self.insert_range(ino, offset, len),
            FALLOC_FL_UNSHARE_RANGE => self.unshare_range(ino, offset, len, keep_size),
            _ => Err(Error::NotSupported(format!("fallocate mode {mode:#x} on this file system"))),
        }
    }

    /// The size a preallocating mode leaves: `end` unless `keep_size` or the file is longer.
    fn size_after(&self, ino: u64, end: u64, keep_size: bool) -> Result<u64> {
        let size = self.file(ino)?.attrs.size;
        Ok(if keep_size { size } else { size.max(end) })
    }

    /// Mode 0 (and `FALLOC_FL_KEEP_SIZE`): every hole of the blocks the range touches, below the
    /// new EOF, gets a zeroed block; mapped blocks (shared or not) stay as they are.
    fn allocate_range(&mut self, ino: u64, offset: u64, end: u64, keep_size: bool) -> Result<()> {
        let new_size = self.size_after(ino, end, keep_size)?;
        self.clear_tail_before_growth(ino, new_size)?;
        let inode = self.file(ino)?;
        let (fb0, fb_end) = (offset / BLOCK_SIZE, blocks_of(end.min(new_size)));
        let holes: Vec<(u64, u64)> = if fb_end > fb0 {
            inode
                .extents
                .pieces(fb0, fb_end - fb0)
                .into_iter()
                .filter(|p| p.phys.is_none())
                .map(|p| (p.file_block, p.len))
                .collect()
        } else {
            Vec::new()
        };
        let mut attrs = inode.attrs.clone();
        let goal = self.goal_for(inode, fb0);
        let total: u64 = holes.iter().map(|h| h.1).sum();
        let runs = if total > 0 { self.allocate_data(total, goal)? } else { Vec::new() };
        if let Err(e) = self.zero_runs(&runs) {
            self.give_back(&runs);
            return Err(e);
        }
        let mut tx = map_holes_to_runs(ino, &holes, &runs);
        modified(&mut attrs, new_size);
        tx.push(Mutation::PutInode(attrs));
        self.commit_or_give_back(&tx, &runs)
    }

    /// Fills `runs` with zeros and flushes them.
    fn zero_runs(&self, runs: &[(u64, u64)]) -> Result<()> {
        for &(s, l) in runs {
            self.backend.fill(s * BLOCK_SIZE, l * BLOCK_SIZE, 0)?;
            self.backend.flush(s * BLOCK_SIZE, l * BLOCK_SIZE);
        }
        Ok(())
    }

    /// `FALLOC_FL_PUNCH_HOLE`: whole blocks of the range become holes (this file's references are
    /// dropped; other owners keep theirs); the bytes of partial blocks inside EOF become zeros in
    /// a new block (a hole stays a hole). Nothing past EOF changes, and the size never does.
    fn punch_hole(&mut self, ino: u64, offset: u64, end: u64) -> Result<()> {
        let inode = self.file(ino)?;
        let size = inode.attrs.size;
        let eof_block = blocks_of(size);
        let (first_whole, end_whole) = (offset.div_ceil(BLOCK_SIZE), (end / BLOCK_SIZE).min(eof_block));
        let mut tx = Vec::new();
        if end_whole > first_whole {
            for piece in inode.extents.pieces(first_whole, end_whole - first_whole) {
                if piece.phys.is_some() {
                    tx.push(Mutation::Map { ino, file_block: piece.file_block, len: piece.len, phys: None });
                }
            }
        }
        // A hole inside an extent splits it: keep room for the checkpoint to say so.
        self.ensure_metadata_room((tx.len() as u64 * 48).div_ceil(BLOCK_SIZE))?;
        let inode = self.file(ino)?;
        // xfs_free_file_space zeroes the partial blocks (those not dropped whole) up to EOF only.
        let mut edges = vec![offset / BLOCK_SIZE, (end - 1) / BLOCK_SIZE];
        edges.dedup();
        let rewrites: Vec<Rewrite> = edges
            .into_iter()
            .filter(|fb| offset < size && !(first_whole..end_whole).contains(fb) && fb * BLOCK_SIZE < size)
            .filter_map(|fb| {
                let start = fb * BLOCK_SIZE;
                let zero_from = offset.saturating_sub(start);
                let zero_to = (end.min(size) - start).min(BLOCK_SIZE);
                let old = inode.extents.lookup(fb)?;
                Some(Rewrite { file_block: fb, old: Some(old), zero_from, zero_to })
            })
            .collect();
        let mut attrs = inode.attrs.clone();
        let runs = self.rewrite_blocks(ino, &rewrites, size, &mut tx)?;
        modified(&mut attrs, size);
        tx.push(Mutation::PutInode(attrs));
        self.commit_or_give_back(&tx, &runs)
    }

    /// Writes each rewrite into a fresh block (kept bytes copied, the rest zero), flushes them and
    /// appends their maps to `tx`. Fails with EIO, taking nothing, when an old block is poisoned.
    /// Returns the runs taken (free again if the caller's commit fails).
    fn rewrite_blocks(
        &mut self,
        ino: u64,
        rewrites: &[Rewrite],
        size: u64,
        tx: &mut Vec<Mutation>,
    ) -> Result<Vec<(u64, u64)>> {
        if rewrites.is_empty() {
            return Ok(Vec::new());
        }
        for r in rewrites {
            let in_eof = size.saturating_sub(r.file_block * BLOCK_SIZE).min(BLOCK_SIZE);
            if r.zero_from.min(in_eof) > 0 || r.zero_to < in_eof {
                self.readable_block(ino, r.file_block, r.old)?;
            }
        }
        let goal = {
            let inode = self.file(ino)?;
            self.goal_for(inode, rewrites[0].file_block).or(rewrites[0].old.map(|p| p + 1))
        };
        let runs = self.allocate_data(rewrites.len() as u64, goal)?;
        let mut fresh = runs.iter().flat_map(|&(s, l)| s..s + l);
        for r in rewrites {
            let new = fresh.next().expect("one block per rewrite");
            // Bytes past EOF in the block are zero in the new block.
            let in_eof = size.saturating_sub(r.file_block * BLOCK_SIZE).min(BLOCK_SIZE);
            let head = r.zero_from.min(in_eof);
            let filled = self
                .backend
                .fill(new * BLOCK_SIZE, BLOCK_SIZE, 0)
                .and_then(|()| if head > 0 { self.copy_or_zero(r.old, 0, new, head) } else { Ok(()) })
                .and_then(|()| {
                    if r.zero_to < in_eof {
                        self.copy_or_zero(r.old, r.zero_to, new, in_eof - r.zero_to)
                    } else {
                        Ok(())
                    }
                });
            if let Err(e) = filled {
                self.give_back(&runs);
                return Err(e);
            }
            self.backend.flush(new * BLOCK_SIZE, BLOCK_SIZE);
            tx.push(Mutation::Map { ino, file_block: r.file_block, len: 1, phys: Some(new) });
        }
        Ok(runs)
    }

    /// `FALLOC_FL_ZERO_RANGE`: every block the range touches below the new EOF gets a new block
    /// (allocated, as XFS allocates the range): zeros inside the range, the old bytes outside it.
    fn zero_range(&mut self, ino: u64, offset: u64, end: u64, keep_size: bool) -> Result<()> {
        let new_size = self.size_after(ino, end, keep_size)?;
        self.clear_tail_before_growth(ino, new_size)?;
        let inode = self.file(ino)?;
        let zero_end = end.min(new_size);
        let mut tx = Vec::new();
        let mut rewrites = Vec::new();
        if offset < zero_end {
            let (fb0, fb_end) = (offset / BLOCK_SIZE, blocks_of(zero_end));
            for fb in fb0..fb_end {
                let block_start = fb * BLOCK_SIZE;
                let zero_from = offset.saturating_sub(block_start).min(BLOCK_SIZE);
                let zero_to = (end - block_start).min(BLOCK_SIZE);
                rewrites.push(Rewrite { file_block: fb, old: inode.extents.lookup(fb), zero_from, zero_to });
            }
        }
        let mut attrs = inode.attrs.clone();
        let runs = self.rewrite_blocks(ino, &rewrites, new_size, &mut tx)?;
        // One map per block: join the ones that continue each other.
        tx = join_maps(tx);
        modified(&mut attrs, new_size);
        tx.push(Mutation::PutInode(attrs));
        self.commit_or_give_back(&tx, &runs)
    }

    /// `FALLOC_FL_COLLAPSE_RANGE`: block-aligned, ending before EOF (else EINVAL). The range's
    /// blocks are dropped and every extent after it moves down by `len`: mapped at its new place
    /// first (in ascending order, so no block ever loses its last owner on the way), then the
    /// stale tail is unmapped. The size shrinks by `len`.
    fn collapse_range(&mut self, ino: u64, offset: u64, len: u64) -> Result<()> {
        let inode = self.file(ino)?;
        let size = inode.attrs.size;
        if (offset | len) % BLOCK_SIZE != 0 {
            return Err(Error::Invalid(format!("collapse of [{offset}, +{len}) is not block-aligned")));
        }
        if offset + len >= size {
            return Err(Error::Invalid(format!(
                "collapse of [{offset}, +{len}) reaches EOF {size} (use truncate)"
            )));
        }
        let (first, n, eof_block) = (offset / BLOCK_SIZE, len / BLOCK_SIZE, blocks_of(size));
        let mut tx = Vec::new();
        for piece in inode.extents.pieces(first + n, eof_block - first - n) {
            let dst = piece.file_block - n;
            self.push_move(ino, dst, piece.len, piece.phys, &mut tx)?;
        }
        self.push_unmap(ino, eof_block - n, n, &mut tx)?;
        self.commit_shift(ino, size - len, tx)
    }

    /// `FALLOC_FL_INSERT_RANGE`: block-aligned (else EINVAL), not past the largest file size
    /// (EFBIG), at an offset inside the file (else EINVAL). Every extent at or after the offset
    /// moves up by `len` (in descending order, so no block loses its last owner on the way), and
    /// the range becomes a hole. The size grows by `len`.
    fn insert_range(&mut self, ino: u64, offset: u64, len: u64) -> Result<()> {
        let inode = self.file(ino)?;
        let size = inode.attrs.size;
        if (offset | len) % BLOCK_SIZE != 0 {
            return Err(Error::Invalid(format!("insert of [{offset}, +{len}) is not block-aligned")));
        }
        if MAX_FILE_SIZE - size < len {
            return Err(Error::TooBig(format!("insert of {len} bytes into a file of {size}")));
        }
        if offset >= size {
            return Err(Error::Invalid(format!("insert at {offset}, at or past EOF {size}")));
        }
        let (first, n, eof_block) = (offset / BLOCK_SIZE, len / BLOCK_SIZE, blocks_of(size));
        let mut tx = Vec::new();
        for piece in inode.extents.pieces(first, eof_block - first).into_iter().rev() {
            self.push_move(ino, piece.file_block + n, piece.len, piece.phys, &mut tx)?;
        }
        self.push_unmap(ino, first, n, &mut tx)?;
        self.commit_shift(ino, size + len, tx)
    }

    /// Appends the map that puts `phys` (or a hole) at `[dst, dst + len)` of `ino`. A hole is
    /// only mapped where something is mapped now: the moves of one shift write disjoint ranges,
    /// so what a destination holds now is what it holds when this mutation applies.
    fn push_move(
        &self,
        ino: u64,
        dst: u64,
        len: u64,
        phys: Option<u64>,
        tx: &mut Vec<Mutation>,
    ) -> Result<()> {
        match phys {
            Some(_) => tx.push(Mutation::Map { ino, file_block: dst, len, phys }),
            None => self.push_unmap(ino, dst, len, tx)?,
        }
        Ok(())
    }

    /// Appends maps that turn the mapped parts of `[first, first + len)` of `ino` into holes.
    fn push_unmap(&self, ino: u64, first: u64, len: u64, tx: &mut Vec<Mutation>) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        for piece in self.file(ino)?.extents.pieces(first, len) {
            if piece.phys.is_some() {
                tx.push(Mutation::Map { ino, file_block: piece.file_block, len: piece.len, phys: None });
            }
        }
        Ok(())
    }

    /// Commits the moves of a collapse or insert with the new size, keeping room for the
    /// checkpoint to record extents that the shift may split.
    fn commit_shift(&mut self, ino: u64, new_size: u64, mut tx: Vec<Mutation>) -> Result<()> {
        self.ensure_metadata_room((tx.len() as u64 * 48).div_ceil(BLOCK_SIZE))?;
        let mut attrs = self.file(ino)?.attrs.clone();
        modified(&mut attrs, new_size);
        tx.push(Mutation::PutInode(attrs));
        self.commit(&tx)
    }

    /// `generic_copy_file_checks` and `rw_verify_area` of copy_file_range(2), for two files of
    /// this pool (the EXDEV check is the caller's, between EBADF and EOVERFLOW), in the kernel's
    /// order and with its arithmetic (offsets are signed 64-bit; the wrap check is unsigned).
    /// Returns the bytes to copy: `len` shortened to source EOF and to the largest file size.
    pub fn copy_file_range_checks(
        &self,
        src: Handle,
        src_off: u64,
        dst: Handle,
        dst_off: u64,
        len: u64,
    ) -> Result<u64> {
        self.not_removed()?;
        let (s, d) = (self.state.inode(src.ino)?, self.state.inode(dst.ino)?);
        if s.is_dir() || d.is_dir() {
            return Err(Error::IsDir("copy_file_range of a directory".into()));
        }
        if !src.access.read || !dst.access.write || dst.access.append {
            return Err(Error::BadHandle(
                "copy_file_range needs a readable source and a writable, non-append destination".into(),
            ));
        }
        if src_off.checked_add(len).is_none() || dst_off.checked_add(len).is_none() {
            return Err(Error::os(
                format!("copy_file_range of {len} bytes at {src_off} to {dst_off} wraps"),
                std::io::Error::from_raw_os_error(libc::EOVERFLOW),
            ));
        }
        let size_in = s.attrs.size;
        let mut count =
            if src_off as i64 >= size_in as i64 { 0 } else { len.min(size_in.wrapping_sub(src_off)) };
        // generic_write_check_limits.
        if dst_off as i64 >= MAX_FILE_SIZE as i64 {
            return Err(Error::TooBig(format!("copy_file_range to offset {dst_off}")));
        }
        if dst_off <= i64::MAX as u64 {
            count = count.min(MAX_FILE_SIZE - dst_off);
        }
        if src.ino == dst.ino
            && dst_off.wrapping_add(count) > src_off
            && dst_off < src_off.wrapping_add(count)
        {
            return Err(Error::Invalid("copy_file_range ranges overlap in the same file".into()));
        }
        let max = i64::MAX as u64;
        for pos in [src_off, dst_off] {
            if count > max || pos > max || pos + count > max {
                return Err(Error::Invalid(format!("copy_file_range of {count} bytes at offset {pos}")));
            }
        }
        Ok(count)
    }

    /// lseek(SEEK_DATA / SEEK_HOLE) in `ino` from `offset`: ENXIO at or past EOF (a directory
    /// has no data: always ENXIO) and, for data, when nothing is mapped from `offset` to EOF; a
    /// hole search finds EOF when nothing else. Mapped blocks are data, whatever they hold.
    pub fn seek(&self, ino: u64, offset: u64, target: SeekTarget) -> Result<u64> {
        self.not_removed()?;
        let inode = self.state.inode(ino)?;
        let size = if inode.is_dir() { 0 } else { inode.attrs.size };
        let nothing = || {
            Error::NoSuchOffset(
                format!("no {target:?} at or after offset {offset} (size {size})").to_lowercase(),
            )
        };
        if offset >= size {
            return Err(nothing());
        }
        let fb = offset / BLOCK_SIZE;
        let eof_block = blocks_of(size);
        for piece in inode.extents.pieces(fb, eof_block - fb) {
            let wanted = match target {
                SeekTarget::Data => piece.phys.is_some(),
                SeekTarget::Hole => piece.phys.is_none(),
            };
            if wanted {
                return Ok((piece.file_block * BLOCK_SIZE).max(offset));
            }
        }
        match target {
            SeekTarget::Data => Err(nothing()),
            SeekTarget::Hole => Ok(size),
        }
    }
}

/// Maps each hole `(first file block, length)` onto the next blocks of `runs`, in order.
fn map_holes_to_runs(ino: u64, holes: &[(u64, u64)], runs: &[(u64, u64)]) -> Vec<Mutation> {
    let mut tx = Vec::new();
    let mut run = runs.iter().copied();
    let mut current: Option<(u64, u64)> = None; // (next block, blocks left) of the run in use
    for &(mut fb, mut left) in holes {
        while left > 0 {
            let (start, avail) = match current.take() {
                Some(c) if c.1 > 0 => c,
                _ => run.next().expect("runs cover the holes"),
            };
            let take = left.min(avail);
            tx.push(Mutation::Map { ino, file_block: fb, len: take, phys: Some(start) });
            current = Some((start + take, avail - take));
            fb += take;
            left -= take;
        }
    }
    tx
}

/// Joins one-block maps that continue each other (same file, next file block, next pool block).
fn join_maps(tx: Vec<Mutation>) -> Vec<Mutation> {
    let mut out: Vec<Mutation> = Vec::with_capacity(tx.len());
    for m in tx {
        if let (
            Some(Mutation::Map { ino: i, file_block: f, len, phys: Some(p) }),
            Mutation::Map { ino, file_block, len: l, phys: Some(q) },
        ) = (out.last_mut(), &m)
        {
            if *i == *ino && *f + *len == *file_block && *p + *len == *q {
                *len += l;
                continue;
            }
        }
        out.push(m);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holes_are_mapped_onto_runs_in_order_across_run_boundaries() {
        let tx = map_holes_to_runs(7, &[(0, 3), (10, 2)], &[(100, 2), (200, 3)]);
        let maps: Vec<(u64, u64, Option<u64>)> = tx
            .iter()
            .map(|m| match m {
                Mutation::Map { file_block, len, phys, .. } => (*file_block, *len, *phys),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(maps, vec![(0, 2, Some(100)), (2, 1, Some(200)), (10, 2, Some(201))]);
    }

    #[test]
    fn vfs_checks_follow_the_kernel_order() {
        let errno = |r: Result<()>| r.err().map(|e| e.errno());
        assert_eq!(errno(vfs_fallocate_checks(0xff00, 0, 0, false)), Some(libc::EINVAL));
        assert_eq!(errno(vfs_fallocate_checks(0xff00, 0, 1, false)), Some(libc::EOPNOTSUPP));
        assert_eq!(errno(vfs_fallocate_checks(FALLOC_FL_PUNCH_HOLE, 0, 1, false)), Some(libc::EOPNOTSUPP));
        assert_eq!(
            errno(vfs_fallocate_checks(FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_KEEP_SIZE, 0, 1, true)),
            Some(libc::EOPNOTSUPP)
        );
        assert_eq!(
            errno(vfs_fallocate_checks(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE, 0, 1, true)),
            Some(libc::EOPNOTSUPP)
        );
        assert_eq!(errno(vfs_fallocate_checks(FALLOC_FL_NO_HIDE_STALE, 0, 1, true)), Some(libc::EOPNOTSUPP));
        assert_eq!(errno(vfs_fallocate_checks(FALLOC_FL_KEEP_SIZE, 0, 1, false)), Some(libc::EBADF));
        assert_eq!(errno(vfs_fallocate_checks(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 1, true)), None);
    }
}
