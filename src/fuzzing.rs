//! Entry points for the fuzz targets in `fuzz/`, shared with stable tests that run them too.
//!
//! Owns drivers that feed hostile bytes to the on-media decoders and to mount, then exercise
//! whatever mounted. What they assert is the promise of SPEC section 6, "a corrupt pool image never
//! crashes the program", plus a few identities that must hold for any input: a decoded structure
//! encodes back to the same bytes, a failed mount says `Corrupt` (EUCLEAN), a read-only mount refuses
//! changes with EROFS, and operations on a pool that checked clean keep it clean. One more hook,
//! [`check_after_tampering`], lets tests damage a mounted state in memory and see what fsck says.
//! Beside this file: checkpoint payloads through the state builder ([`decode_checkpoint`]), records
//! appended to a valid pool's log and mounted ([`replay`]), operation sequences against a model
//! ([`ops`]), and the generated seed corpus ([`seed_corpus`]). docs/FUZZING.md describes the targets.
//!
//! Must never: touch a real pool (every pool here is a volatile [`RecordingBackend`] copy), or
//! swallow a panic: a panic is exactly what the fuzzer is looking for.

mod checkpoint_image;
pub mod ops;
pub mod replay;
mod seeds;
pub mod source;

pub use checkpoint_image::decode_checkpoint;
pub use ops::{op_sequence, OpsSummary};
pub use replay::{replay_log, ReplayOutcome, ReplayVerdict, KNOWN_REPLAY_GAPS};
pub use seeds::{populating_steps, seed_corpus, TARGETS};

use crate::api::{DedupeTarget, Fs, OpenOptions, Pool};
use crate::error::Error;
use crate::format::checkpoint::{self, StateImage};
use crate::format::codec::{u32_at, u64_at};
use crate::format::record::{self, RecordAt};
use crate::format::superblock::{self, Superblock};
use crate::format::{checksum, checksum_with_hole, BLOCK_SIZE, SUPERBLOCK_BLOCKS};
use crate::fs::check::CheckReport;
use crate::fs::state::State;
use crate::fs::FileSystem;
use crate::pool::RecordingBackend;
use std::sync::{Arc, OnceLock};

/// Images shorter than this many blocks are padded with zeros (a pool needs room for its
/// superblocks, log and checkpoint).
pub const MIN_IMAGE_BLOCKS: usize = 32;

/// Images longer than this are cut (keeps one fuzz iteration cheap).
pub const MAX_IMAGE_BYTES: usize = 8 << 20;

/// Size of the populated pool that [`populated_image`] builds.
pub const POPULATED_POOL_BYTES: u64 = 1 << 20;

/// At most this many file bytes are read back from one mounted image.
const READ_BUDGET: usize = 4 << 20;

/// Turns arbitrary bytes into a pool image: cut to [`MAX_IMAGE_BYTES`], padded with zeros to a
/// whole number of blocks and at least [`MIN_IMAGE_BLOCKS`] blocks.
pub fn image_from_bytes(bytes: &[u8]) -> Vec<u8> {
    let mut image = bytes[..bytes.len().min(MAX_IMAGE_BYTES)].to_vec();
    let len = image.len().next_multiple_of(BLOCK_SIZE as usize).max(MIN_IMAGE_BLOCKS * BLOCK_SIZE as usize);
    image.resize(len, 0);
    image
}

/// A pool over a volatile copy of `image`.
fn pool_over(image: &[u8]) -> Pool {
    Pool::from_backend(Arc::new(RecordingBackend::from_image(image.to_vec())))
}

/// Mounts arbitrary bytes as a pool image, read-only and then read-write (each on its own copy),
/// runs `check()`, reads everything and performs a few operations. Panics only when ferrodax
/// breaks one of the promises listed in the module documentation.
pub fn mount_arbitrary_image(bytes: &[u8]) -> ImageOutcome {
    let image = image_from_bytes(bytes);
    ImageOutcome { read_only: exercise_read_only(&image), read_write: exercise_read_write(&image) }
}

/// What one mount of a hostile image came to, for tests that want to know how deep it got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageOutcome {
    /// The read-only mount.
    pub read_only: MountOutcome,
    /// The read-write mount (check's verdict is the one before any operation).
    pub read_write: MountOutcome,
}

/// How one mount went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MountOutcome {
    /// Not attempted.
    #[default]
    NotTried,
    /// Mount failed with this error text.
    Failed(String),
    /// Mounted; check() was clean (`true`) or reported problems (`false`).
    Mounted(bool),
}

/// Mounts the built-in [`populated_image`] after applying `edits` to its metadata blocks.
///
/// `edits` is read as a flags byte, then 4-byte edits: a metadata block selector (indexing the
/// superblocks, the log region's blocks and the checkpoint chain, wrapping), a little-endian u16
/// byte offset in that block (wrapping; superblocks only have 256 meaningful bytes), and a value.
/// Flag bit 0 reseals every checksum afterwards (superblocks, checkpoint blocks and payload, the
/// newest delta's blocks and payload, log records), so the damage reaches the decoders and log
/// replay instead of stopping at a checksum; bit 1 XORs the value in instead of storing it; bit 2
/// starts from [`populated_delta_image`] (a base, a delta and a log) instead, bit 3 from
/// [`populated_checkpointed_image`] (a base and two deltas, nothing in the log: what a lazy mount
/// reads).
pub fn mount_edited_image(edits: &[u8]) -> ImageOutcome {
    mount_arbitrary_image(&edited_image(edits))
}

/// The image [`mount_edited_image`] mounts: the populated image (with flag bit 2: the one whose
/// checkpoint is a base and a delta, [`populated_delta_image`]; with bit 3, the one with nothing
/// in its log, [`populated_checkpointed_image`]) with `edits` applied.
pub fn edited_image(edits: &[u8]) -> Vec<u8> {
    let Some((&flags, edits)) = edits.split_first() else { return populated_image().0.clone() };
    let (mut image, meta_blocks) = if flags & 8 != 0 {
        populated_checkpointed_image().clone()
    } else if flags & 4 != 0 {
        populated_delta_image().clone()
    } else {
        populated_image().clone()
    };
    for edit in edits.chunks_exact(4) {
        let block = meta_blocks[edit[0] as usize % meta_blocks.len()];
        let offset = u16::from_le_bytes([edit[1], edit[2]]) as usize;
        // In a superblock block, a byte of one of its two slots; elsewhere anywhere in the block.
        let inside = if SUPERBLOCK_BLOCKS.contains(&block) {
            superblock::SLOT_OFFSETS[offset & 1] + (offset >> 1) % superblock::ENCODED_LEN
        } else {
            offset % BLOCK_SIZE as usize
        };
        let at = block as usize * BLOCK_SIZE as usize + inside;
        if flags & 2 != 0 {
            image[at] ^= edit[3];
        } else {
            image[at] = edit[3];
        }
    }
    if flags & 1 != 0 {
        reseal_checksums(&mut image);
    }
    image
}

/// Feeds arbitrary bytes to every on-media decoder. The first 8 bytes pick the record sequence
/// number; the rest is read as a superblock, a checkpoint payload, a checkpoint chain and a log
/// region, twice: as given, and with every checksum resealed so that the bytes behind the
/// checksums get decoded too. Records that decode are replayed onto the state of the
/// [`populated_image`], which must fail cleanly or keep its ownership map well formed.
pub fn decode_records(bytes: &[u8]) {
    if bytes.len() < 8 {
        return;
    }
    let seq = u64_at(bytes, 0);
    decode_all(seq, &bytes[8..]);
    let mut sealed = bytes[8..].to_vec();
    reseal_superblock(&mut sealed);
    reseal_records(&mut sealed, seq);
    decode_all(seq, &sealed);
}

fn decode_all(first_seq: u64, log: &[u8]) {
    // Superblock: whatever decodes must encode back to itself.
    for copy in 0..2 {
        if let Ok(sb) = Superblock::decode(log, copy) {
            let again = Superblock::decode(&sb.encode(), copy).expect("a re-encoded superblock decodes");
            assert_eq!(again, sb, "superblock round trip");
        }
    }

    // Checkpoint payload: decoding accepts exactly what encoding produces.
    if let Ok(image) = StateImage::decode(log) {
        assert_eq!(image.encode(), log, "checkpoint payload round trip");
        let _ = State::from_image(image, 1 << 20, &[]);
    }

    // A checkpoint chain read from the bytes cut into 4096-byte blocks.
    let blocks: Vec<&[u8]> = log.chunks_exact(BLOCK_SIZE as usize).collect();
    if !blocks.is_empty() {
        let total = blocks.len() as u64 + 2;
        let head = 2 + first_seq % blocks.len() as u64;
        let payload_len = (first_seq >> 16) % (1 << 20);
        let mirror = 2 + (first_seq >> 24) % blocks.len() as u64;
        let root = checkpoint::ChainRoot {
            heads: [head, mirror],
            generation: first_seq >> 8,
            payload_len,
            payload_crc: first_seq as u32,
            total_blocks: total,
        };
        for partial_ok in [false, true] {
            let _ = checkpoint::read_chains(root, partial_ok, |b| Ok(blocks[(b - 2) as usize].to_vec()));
        }
        let _ = checkpoint::read_chain_v1(head, first_seq >> 8, payload_len, first_seq as u32, total, |b| {
            Ok(blocks[(b - 2) as usize].to_vec())
        });
    }

    // The log: decode record after record, replaying onto a populated state.
    let mut state = small_state();
    let mut pos = 0usize;
    let mut seq = first_seq;
    while pos < log.len() {
        match record::decode_record(&log[pos..], seq) {
            Ok(RecordAt::Valid(mutations, len)) => {
                let payload_len = u32_at(&log[pos..], 4) as usize;
                let unpadded = record::HEADER_LEN + payload_len;
                assert!(len >= unpadded && len % record::RECORD_ALIGN == 0, "record length {len}");
                let again = record::encode_record(seq, &mutations);
                assert_eq!(&again[..unpadded], &log[pos..pos + unpadded], "record {seq} round trip");
                assert!(record::record_len_bound(&mutations) >= again.len(), "record bound too small");
                if state.replay_record(&mutations, seq, pos as u64).is_err() {
                    return;
                }
                if let Err(e) = state.owners().validate() {
                    panic!("replay of record {seq} {mutations:?} left the ownership map malformed: {}", e.0);
                }
                pos += len;
                seq = seq.wrapping_add(1);
            }
            Ok(RecordAt::End) | Err(_) => {
                // Resynchronise on the next aligned position, as a damaged log would be scanned.
                pos += record::RECORD_ALIGN;
            }
        }
    }
}

/// Recomputes the checksum of a superblock at the start of `bytes`, if there is room for one.
fn reseal_superblock(bytes: &mut [u8]) {
    if bytes.len() >= superblock::ENCODED_LEN {
        let crc = checksum_with_hole(&bytes[..252], &[]);
        bytes[252..256].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Recomputes the checksum of every record header in `log` that carries the expected sequence
/// number at a record boundary, starting at `seq` and resynchronising like [`decode_all`].
fn reseal_records(log: &mut [u8], first_seq: u64) {
    let mut pos = 0usize;
    let mut seq = first_seq;
    while pos + record::HEADER_LEN <= log.len() {
        let r = &mut log[pos..];
        let total = record::HEADER_LEN.saturating_add(u32_at(r, 4) as usize);
        if u32_at(r, 0) == record::RECORD_MAGIC && u64_at(r, 8) == seq && total <= r.len() {
            let crc = checksum_with_hole(&r[..16], &r[20..total]);
            r[16..20].copy_from_slice(&crc.to_le_bytes());
            pos += total.next_multiple_of(record::RECORD_ALIGN);
            seq = seq.wrapping_add(1);
        } else {
            pos += record::RECORD_ALIGN;
        }
    }
}

/// The state of the [`populated_image`], for replay fuzzing.
fn small_state() -> State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE
        .get_or_init(|| {
            let (image, _) = populated_image();
            let backend: crate::pool::SharedBackend = Arc::new(RecordingBackend::from_image(image.clone()));
            let fs = FileSystem::mount(backend, true).expect("the populated image mounts");
            fs.state().clone()
        })
        .clone()
}

/// Mounts `image` read-only, lets `tamper` change the mounted state in memory only (the media
/// stays as it was), and returns what `check()` says of the result: for tests proving that fsck
/// finds by itself each problem that mount validation refuses on media (check also reports that
/// the media differs from memory). Panics if `image` does not mount.
pub fn check_after_tampering(image: &[u8], tamper: impl FnOnce(&mut State)) -> CheckReport {
    let backend: crate::pool::SharedBackend = Arc::new(RecordingBackend::from_image(image.to_vec()));
    let mut fs = FileSystem::mount(backend, true).expect("the image to tamper with mounts");
    tamper(fs.state_mut());
    fs.check()
}

/// A small populated pool image ([`POPULATED_POOL_BYTES`]): directories, files with private,
/// shared (reflinked and deduped) and partial blocks, an unlinked file and a truncated one, with
/// records in the log after a checkpoint. Returns the image and its metadata blocks (superblocks,
/// log region, checkpoint chain), in that order. Built once.
pub fn populated_image() -> &'static (Vec<u8>, Vec<u64>) {
    static IMAGE: OnceLock<(Vec<u8>, Vec<u64>)> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let backend = Arc::new(RecordingBackend::new(POPULATED_POOL_BYTES));
        let pool = Pool::from_backend(backend.clone());
        let fs = Fs::format(&pool).expect("format");
        populate(&fs).expect("populate");
        let meta: Vec<u64> =
            fs.read_lock().metadata_layout().iter().flat_map(|&(_, start, len)| start..start + len).collect();
        drop(fs);
        (backend.volatile_image(), meta)
    })
}

/// [`populated_image`], then one file rewritten and a checkpoint of it written as a delta beside
/// the base (format 5), then a few more operations left in the log: a pool whose mount reads a
/// base, a delta and a log. With its metadata blocks, as [`populated_image`].
pub fn populated_delta_image() -> &'static (Vec<u8>, Vec<u64>) {
    static IMAGE: OnceLock<(Vec<u8>, Vec<u64>)> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let backend = Arc::new(RecordingBackend::from_image(populated_image().0.clone()));
        let fs = Fs::mount(&Pool::from_backend(backend.clone())).expect("the populated image mounts");
        let mut rw = OpenOptions::new();
        rw.read(true).write(true).create(true);
        fs.open("/dir/b", &rw).and_then(|b| b.write_at(&pattern(7, 500), 100)).expect("write");
        fs.exclusive().prefer_delta_checkpoints(true);
        fs.checkpoint().expect("checkpoint");
        assert_eq!(fs.read_lock().journal().delta_blocks().len(), 1, "the checkpoint is a delta");
        fs.set_xattr("/a", "user.after", b"the delta", 0).expect("setxattr");
        fs.rename("/dir/sub/renamed", "/dir/renamed-again").expect("rename");
        let meta: Vec<u64> =
            fs.read_lock().metadata_layout().iter().flat_map(|&(_, start, len)| start..start + len).collect();
        drop(fs);
        (backend.volatile_image(), meta)
    })
}

/// [`populated_delta_image`], then another checkpoint written as a delta: a base, two deltas and
/// nothing in the log, a pool a lazy mount serves (`fs/lazy.rs`). With its metadata blocks, as
/// [`populated_image`].
pub fn populated_checkpointed_image() -> &'static (Vec<u8>, Vec<u64>) {
    static IMAGE: OnceLock<(Vec<u8>, Vec<u64>)> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let backend = Arc::new(RecordingBackend::from_image(populated_delta_image().0.clone()));
        let fs = Fs::mount(&Pool::from_backend(backend.clone())).expect("the delta image mounts");
        fs.exclusive().prefer_delta_checkpoints(true);
        fs.checkpoint().expect("checkpoint");
        assert_eq!(fs.read_lock().journal().delta_blocks().len(), 2, "the checkpoint is a second delta");
        let meta: Vec<u64> =
            fs.read_lock().metadata_layout().iter().flat_map(|&(_, start, len)| start..start + len).collect();
        drop(fs);
        (backend.volatile_image(), meta)
    })
}

/// Fills a file system with the mix [`populated_image`] describes.
pub fn populate(fs: &Fs) -> crate::Result<()> {
    let mut rw = OpenOptions::new();
    rw.read(true).write(true).create(true);
    fs.create_dir("/dir")?;
    fs.create_dir("/dir/sub")?;
    let a = fs.open("/a", &rw)?;
    a.write_at(&pattern(1, 5 * 4096 + 100), 0)?;
    let b = fs.open("/dir/b", &rw)?;
    fs.reflink(&a, 0, &b, 0, 3 * 4096)?;
    b.write_at(&pattern(2, 700), 4096 + 33)?;
    let c = fs.open("/dir/sub/c", &rw)?;
    c.write_at(&pattern(1, 2 * 4096), 4096)?;
    fs.dedupe(&a, 4096, 2 * 4096, &[DedupeTarget { file: &c, offset: 4096 }])?;
    let gone = fs.open("/gone", &rw)?;
    gone.write_at(&pattern(3, 3 * 4096), 0)?;
    drop(gone);
    fs.remove_file("/gone")?;
    a.set_len(4 * 4096 + 10)?;
    // Enough records to fill the log and force a checkpoint, then some more in the fresh log.
    let checkpoints = fs.read_lock().journal().stats.checkpoints;
    let mut round = 0u64;
    while fs.read_lock().journal().stats.checkpoints == checkpoints || round % 50 != 0 {
        let f = fs.open(&format!("/dir/log{}", round % 5), &rw)?;
        f.write_at(&pattern(round as u8, 300), round % 7 * 1000)?;
        round += 1;
    }
    let d = fs.open("/d", &rw)?;
    d.write_at(&pattern(4, 9000), 100)?;
    fs.reflink(&d, 0, &a, 8192, 4096)?;
    fs.rename("/dir/log0", "/dir/sub/renamed")?;
    Ok(())
}

/// Deterministic bytes for test data: `len` bytes that depend on `seed` and position.
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed as u32 * 97).to_le_bytes()[2])
        .collect()
}

/// Recomputes every checksum of the image so that damage reaches the decoders behind them.
fn reseal_checksums(image: &mut [u8]) {
    let blocks = image.len() as u64 / BLOCK_SIZE;
    let block_at = |b: u64| (b * BLOCK_SIZE) as usize;
    // log start, log blocks, first seq, chain 0 head, log mirror start, chain 1 head: from the
    // slot with the highest generation.
    let slots = || {
        SUPERBLOCK_BLOCKS
            .iter()
            .flat_map(|&copy| superblock::SLOT_OFFSETS.iter().map(move |&slot| block_at(copy) + slot))
    };
    let newest = slots()
        .filter(|&at| &image[at..at + 8] == superblock::MAGIC)
        .max_by_key(|&at| u64_at(&image[at..], 48));
    let sb_fields: Option<(u64, u64, u64, u64, u64, u64)> = newest.map(|at| {
        let sb = &image[at..at + superblock::ENCODED_LEN];
        (u64_at(sb, 56), u64_at(sb, 64), u64_at(sb, 72), u64_at(sb, 80), u64_at(sb, 116), u64_at(sb, 124))
    });
    // Checkpoint chains: reseal each block, then the payload checksum in the superblocks; the
    // same for the newest delta (format 5; an older delta's checksum lives in the newer one's
    // payload and is left as it is).
    let payload = sb_fields.map(|f| reseal_chains(image, [f.3, f.5])).unwrap_or_default();
    let delta =
        newest.filter(|&at| u32_at(&image[at..], 8) >= superblock::FIRST_VERSION_WITH_DELTA).and_then(|at| {
            let heads = [u64_at(&image[at..], 140), u64_at(&image[at..], 148)];
            (heads != [0, 0]).then(|| reseal_chains(image, heads))
        });
    // Log records (both copies): every header at a record boundary with the sequence number
    // expected there.
    if let Some((log_start, log_blocks, first_seq, _, mirror_start, _)) = sb_fields {
        for start in [log_start, mirror_start] {
            if start >= 2 && log_blocks > 0 && start.saturating_add(log_blocks) <= blocks {
                reseal_records(&mut image[block_at(start)..block_at(start + log_blocks)], first_seq);
            }
        }
    }
    let all_slots: Vec<usize> = slots().collect();
    for at in all_slots {
        let sb = &mut image[at..at + superblock::ENCODED_LEN];
        if &sb[..8] != superblock::MAGIC {
            continue;
        }
        if sb_fields.is_some_and(|f| f.3 != 0) {
            sb[88..96].copy_from_slice(&(payload.len() as u64).to_le_bytes());
            sb[96..100].copy_from_slice(&checksum(&payload).to_le_bytes());
        }
        if let Some(delta) = &delta {
            if u32_at(sb, 8) >= superblock::FIRST_VERSION_WITH_DELTA && u64_at(sb, 140) != 0 {
                sb[156..164].copy_from_slice(&(delta.len() as u64).to_le_bytes());
                sb[164..168].copy_from_slice(&checksum(delta).to_le_bytes());
            }
        }
        reseal_superblock(sb);
    }
}

/// Reseals every block of the two checkpoint chains that start at `heads` (each block names its
/// successor in both chains) and returns chain 0's payload.
fn reseal_chains(image: &mut [u8], heads: [u64; 2]) -> Vec<u8> {
    let blocks = image.len() as u64 / BLOCK_SIZE;
    let mut payload = Vec::new();
    for (chain, head) in heads.into_iter().enumerate() {
        let mut block = head;
        let mut seen = 0;
        while block >= 2 && block < blocks && seen < blocks {
            let at = (block * BLOCK_SIZE) as usize;
            let bytes = &mut image[at..at + BLOCK_SIZE as usize];
            let len = (u32_at(bytes, 36) as usize).min(checkpoint::PAYLOAD_PER_BLOCK);
            let end = checkpoint::HEADER_LEN + len;
            let crc = checksum_with_hole(&bytes[..40], &bytes[44..end]);
            bytes[40..44].copy_from_slice(&crc.to_le_bytes());
            if chain == 0 {
                payload.extend_from_slice(&bytes[checkpoint::HEADER_LEN..end]);
            }
            block = u64_at(bytes, 16 + 8 * chain);
            seen += 1;
            if block == 0 {
                break;
            }
        }
    }
    payload
}

/// Every path below `dir`, depth first, at most `limit` of them.
fn walk(fs: &Fs, dir: &str, limit: usize, out: &mut Vec<(String, bool)>) {
    let Ok(entries) = fs.read_dir(dir) else { return };
    for e in entries {
        if out.len() >= limit {
            return;
        }
        let path = if dir == "/" { format!("/{}", e.name) } else { format!("{dir}/{}", e.name) };
        let is_dir = e.kind == crate::format::record::InodeKind::Dir;
        out.push((path.clone(), is_dir));
        if is_dir {
            walk(fs, &path, limit, out);
        }
    }
}

/// Reads every file, asks every query, runs check; nothing here may panic.
fn read_everything(fs: &Fs) {
    let mut paths = Vec::new();
    walk(fs, "/", 4096, &mut paths);
    let mut budget = READ_BUDGET;
    let mut read = OpenOptions::new();
    read.read(true);
    for (path, is_dir) in &paths {
        let _ = fs.metadata(path);
        if *is_dir {
            continue;
        }
        let Ok(f) = fs.open(path, &read) else { continue };
        let size = f.metadata().map(|s| s.size).unwrap_or(0);
        let want = (size.min(1 << 20) as usize).min(budget);
        let mut buf = vec![0; want];
        if let Ok(n) = f.read_at(&mut buf, 0) {
            budget -= n.min(budget);
        }
        let _ = f.read_at(&mut [0; 16], size.saturating_sub(7));
        let _ = fs.fiemap(&f);
    }
    let stats = fs.stats();
    let pool_bytes = stats.total_blocks.saturating_mul(BLOCK_SIZE);
    let _ = fs.owners(0, pool_bytes);
    for block in (0..stats.total_blocks).step_by(7) {
        let _ = fs.share_state(block);
    }
    let _ = fs.path_of(crate::format::ROOT_INO);
    let report = fs.check();
    let _ = report.to_string();
}

/// Opens and reads `path` on `fs`: its bytes (at most [`LAZY_READ_BYTES`]), or the errno.
fn open_and_read(fs: &Fs, path: &str) -> std::result::Result<Vec<u8>, i32> {
    let f = fs.open(path, OpenOptions::new().read(true)).map_err(|e| e.errno())?;
    let size = f.metadata().map_err(|e| e.errno())?.size;
    let mut buf = vec![0; size.min(LAZY_READ_BYTES) as usize];
    let n = f.read_at(&mut buf, 0).map_err(|e| e.errno())?;
    buf.truncate(n);
    Ok(buf)
}

/// Bytes of a file the lazy mount's comparison reads.
const LAZY_READ_BYTES: u64 = 64 << 10;

/// Paths the lazy mount opens on every image: the populated pools' files, directories and names
/// that do not exist.
const LAZY_PATHS: &[&str] = &[
    "/a",
    "/d",
    "/dir/b",
    "/dir/sub/c",
    "/dir/sub/renamed",
    "/dir/renamed-again",
    "/dir/log1",
    "/gone",
    "/dir/../a",
    "/dir/sub/../b",
    "/missing/x",
];

/// A lazy mount of `image` (`fs/lazy.rs`), opening and reading [`LAZY_PATHS`] and `files`:
/// nothing may panic, no open may meet an inode the walk before it did not read (EIO), and
/// when a whole read-only mount of the image succeeded (`whole`), every path opens and reads as
/// there.
fn exercise_lazy(image: &[u8], files: &[String], whole: Option<&Fs>) {
    let lazy = match Fs::mount_read_only_lazy(&pool_over(image)) {
        Ok(fs) => fs,
        Err(e) => {
            assert!(whole.is_none(), "a lazy mount failed where a whole one worked: {e}");
            return;
        }
    };
    for path in LAZY_PATHS.iter().copied().chain(files.iter().map(String::as_str)) {
        if let Err(e) = lazy.open(path, OpenOptions::new().read(true)) {
            assert!(
                !e.to_string().contains("was not read"),
                "{path}: a lazy open met an inode it had not read: {e}"
            );
        }
        let got = open_and_read(&lazy, path);
        if let Some(whole) = whole {
            assert_eq!(got, open_and_read(whole, path), "{path}: the lazy mount reads otherwise");
        }
    }
}

fn exercise_read_only(image: &[u8]) -> MountOutcome {
    let pool = pool_over(image);
    let fs = match Fs::mount_read_only(&pool) {
        Ok(fs) => fs,
        Err(e) => {
            assert!(matches!(e, Error::Corrupt(_)), "a failed mount must say Corrupt, not {e:?}");
            exercise_lazy(image, &[], None);
            return MountOutcome::Failed(e.to_string());
        }
    };
    let clean = fs.check().is_clean();
    let mut paths = Vec::new();
    walk(&fs, "/", 64, &mut paths);
    let files: Vec<String> = paths.into_iter().filter(|(_, dir)| !dir).map(|(p, _)| p).collect();
    exercise_lazy(image, &files, Some(&fs));
    read_everything(&fs);
    let mut create = OpenOptions::new();
    create.write(true).create(true);
    let refused = fs.open("/fuzz-ro", &create).expect_err("a read-only mount must refuse creating");
    assert_eq!(refused.errno(), libc::EROFS, "{refused}");
    let refused = fs.create_dir("/fuzz-ro-dir").expect_err("a read-only mount must refuse mkdir");
    assert_eq!(refused.errno(), libc::EROFS, "{refused}");
    MountOutcome::Mounted(clean)
}

fn exercise_read_write(image: &[u8]) -> MountOutcome {
    let pool = pool_over(image);
    let fs = match Fs::mount(&pool) {
        Ok(fs) => fs,
        Err(e) => {
            // A read-write mount may also run out of space while reclaiming orphans.
            assert!(matches!(e, Error::Corrupt(_) | Error::NoSpace(_)), "mount failed with {e:?}");
            return MountOutcome::Failed(e.to_string());
        }
    };
    let clean_before = fs.check().is_clean();
    read_everything(&fs);
    // Changes are made only to pools that checked clean: on a damaged one, check has already
    // told the user what is wrong (like a kernel file system that shuts down on corruption).
    if clean_before {
        run_operations(&fs);
        let after = fs.check();
        assert!(after.is_clean(), "operations on a clean pool left it unclean:\n{after}");
    }
    // The media alone must mount to what memory holds (check compared them already; this also
    // proves a fresh mount of the result does not panic).
    drop(fs);
    if let Ok(again) = Fs::mount_read_only(&pool) {
        read_everything(&again);
    }
    MountOutcome::Mounted(clean_before)
}

/// A few operations of every kind, on new files and on whatever the image already holds.
fn run_operations(fs: &Fs) {
    let mut rw = OpenOptions::new();
    rw.read(true).write(true).create(true);
    let mut existing = Vec::new();
    walk(fs, "/", 64, &mut existing);
    if let (Ok(x), Ok(y)) = (fs.open("/fuzz-x", &rw), fs.open("/fuzz-y", &rw)) {
        let _ = x.write_at(&pattern(9, 3 * 4096 + 5), 100);
        let _ = fs.reflink(&x, 0, &y, 0, 0);
        let _ = y.write_at(b"cow", 4097);
        let _ = fs.dedupe(&x, 0, 4096, &[DedupeTarget { file: &y, offset: 0 }]);
        let _ = fs.unshare(&y, 0, 8192);
        let _ = x.set_len(5000);
        let _ = y.set_len(20_000);
        for (path, is_dir) in existing.iter().take(8) {
            if *is_dir {
                continue;
            }
            if let Ok(f) = fs.open(path, &rw) {
                let size = f.metadata().map(|s| s.size).unwrap_or(0);
                let _ = f.write_at(b"fuzz", size / 2);
                let _ = fs.reflink(&f, 0, &y, 8192, 0);
                let _ = fs.reflink(&x, 0, &f, 0, 4096);
                let _ = f.set_len(size / 3);
                let _ = fs.unshare(&f, 0, size.max(1));
            }
        }
    }
    let _ = fs.rename("/fuzz-x", "/fuzz-z");
    let _ = fs.create_dir("/fuzz-dir");
    let _ = fs.rename("/fuzz-y", "/fuzz-dir/y");
    let _ = fs.remove_file("/fuzz-dir/y");
    let _ = fs.remove_dir("/fuzz-dir");
    for (path, is_dir) in existing.iter().rev().take(4) {
        let _ = if *is_dir { fs.remove_dir(path) } else { fs.remove_file(path) };
    }
}
