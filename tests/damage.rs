//! Guards SPEC section 6's second promise: "a corrupt pool image never crashes the program: mount
//! or fsck says what is wrong and where", and the redundancy of the format: every superblock,
//! checkpoint block and log record has a second copy.
//!
//! A pool is built with a known history (one log record per operation, the tree after each).
//! Then bytes are flipped in one copy of a structure (mount reads the other copy, says so, and a
//! read-write mount makes both whole again), in both copies (mount fails naming both, or, for a
//! committed log record, naming the record and the proof that it was committed; salvage and
//! repair keep the rest), and in unused space (harmless). Whole metadata blocks are destroyed one
//! at a time: every file still reads back byte-exact. Proptests flip random bytes of random
//! metadata; CRC-valid but meaningless records are appended by hand (42 kinds: each refused at
//! mount, read-only or not, with EUCLEAN naming the record's sequence number and log byte and what
//! is wrong; for the 16 kinds that only the whole record reveals, fsck finds the same problem when
//! the record is applied in memory unvalidated); checkpoints are rewritten by hand through the
//! format's encode and frame functions (17 kinds, each refused naming the checkpoint and the
//! inode); and the `ferrodax::fuzzing` entry points run over hundreds of hostile images, of which
//! every one that mounts checks clean.

use ferrodax::format::checkpoint::{self, InodeImage, StateImage};
use ferrodax::format::indexed;
use ferrodax::format::record::{encode_record, InodeAttrs, InodeKind, Mutation};
use ferrodax::format::superblock::{self, Superblock};
use ferrodax::format::{checksum, BLOCK_SIZE};
use ferrodax::fs::ownership::MetaStructure;
use ferrodax::fs::state::{ApplyMode, State};
use ferrodax::fuzzing::{self, MountOutcome};
use ferrodax::pool::RecordingBackend;
use ferrodax::{DedupeTarget, Error, Fs, OpenOptions, Pool};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

const BLOCK: usize = BLOCK_SIZE as usize;

/// Every path with its kind and bytes.
type Tree = BTreeMap<String, Option<Vec<u8>>>;

fn tree(fs: &Fs) -> Tree {
    fn walk(fs: &Fs, dir: &str, out: &mut Tree) {
        let mut read = OpenOptions::new();
        read.read(true);
        for e in fs.read_dir(dir).expect("read_dir") {
            let path = if dir == "/" { format!("/{}", e.name) } else { format!("{dir}/{}", e.name) };
            if e.kind == ferrodax::format::record::InodeKind::Dir {
                out.insert(path.clone(), None);
                walk(fs, &path, out);
            } else {
                let f = fs.open(&path, &read).expect("open");
                let mut bytes = vec![0; f.metadata().unwrap().size as usize];
                f.read_exact_at(&mut bytes, 0).expect("read");
                out.insert(path, Some(bytes));
            }
        }
    }
    let mut out = Tree::new();
    walk(fs, "/", &mut out);
    out
}

fn mount(image: &[u8], read_only: bool) -> ferrodax::Result<Fs> {
    let pool = Pool::from_backend(Arc::new(RecordingBackend::from_image(image.to_vec())));
    if read_only {
        Fs::mount_read_only(&pool)
    } else {
        Fs::mount(&pool)
    }
}

/// A mount that must fail with EUCLEAN; returns the message.
fn corrupt_mount(image: &[u8], read_only: bool) -> String {
    match mount(image, read_only) {
        Ok(fs) => panic!("mount (read_only {read_only}) succeeded: {}", fs.check()),
        Err(e @ Error::Corrupt(_)) => {
            assert_eq!(e.errno(), libc::EUCLEAN);
            e.to_string()
        }
        Err(e) => panic!("mount failed with {e:?}, not Corrupt"),
    }
}

/// A pool image with a known history: the tree after every operation and where each operation's
/// log record lies.
struct History {
    image: Vec<u8>,
    /// trees[0] is the tree before the first recorded operation, trees[i] after operation i.
    trees: Vec<Tree>,
    /// Byte range of operation i's records (index i - 1) inside the pool.
    records: Vec<(usize, usize)>,
    /// Alignment padding after each record: not covered by any checksum, and never read.
    padding: Vec<(usize, usize)>,
    /// Metadata blocks: (structure, first block, blocks).
    layout: Vec<(MetaStructure, u64, u64)>,
    /// The log region in bytes.
    log: (usize, usize),
    /// Where the log mirror starts, counted from the log's start, in bytes: the mirror copy of the
    /// bytes at log position `p` is at `p + mirror_offset` (it may be negative in theory; it is
    /// not, since the mirror lies at the end of the pool).
    mirror_offset: usize,
    /// Checkpoint blocks of chain 0 with the bytes of their header and payload.
    checkpoint: Vec<(usize, usize)>,
    /// The same for chain 1 (the same bytes at other places).
    checkpoint_mirror: Vec<(usize, usize)>,
}

impl History {
    /// The range in the log mirror that holds the same bytes as `range` in the log.
    fn mirrored(&self, (start, end): (usize, usize)) -> (usize, usize) {
        (start + self.mirror_offset, end + self.mirror_offset)
    }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    fuzzing::pattern(seed, len)
}

/// One step of the history.
type Operation = Box<dyn Fn(&Fs)>;

fn history() -> &'static History {
    static HISTORY: OnceLock<History> = OnceLock::new();
    HISTORY.get_or_init(|| {
        let backend = Arc::new(RecordingBackend::new(1 << 20));
        let fs = Fs::format(&Pool::from_backend(backend.clone())).unwrap();
        let mut rw = OpenOptions::new();
        rw.read(true).write(true).create(true);
        // Some history before the last checkpoint, so the log region holds stale records too.
        fuzzing::populate(&fs).unwrap();
        let log_pos = |fs: &Fs| {
            let g = fs.read_lock();
            (g.journal().superblock().log_blocks * BLOCK_SIZE - g.journal().log_free_bytes()) as usize
        };
        let log_start = fs.read_lock().journal().superblock().log_start as usize * BLOCK;
        let mut trees = vec![tree(&fs)];
        let mut records = Vec::new();
        let ops: Vec<Operation> = vec![
            Box::new(|fs| fs.create_dir("/h").unwrap()),
            Box::new(move |fs| drop(fs.open("/h/x", &rw).unwrap())),
            Box::new(|fs| {
                let x = fs.open("/h/x", OpenOptions::new().write(true)).unwrap();
                x.write_at(&pattern(20, 3 * BLOCK + 77), 10).unwrap();
            }),
            Box::new(|fs| {
                let x = fs.open("/h/x", OpenOptions::new().read(true)).unwrap();
                let a = fs.open("/a", OpenOptions::new().read(true).write(true)).unwrap();
                fs.reflink(&x, 0, &a, 0, 2 * BLOCK_SIZE).unwrap();
            }),
            Box::new(|fs| {
                let a = fs.open("/a", OpenOptions::new().write(true)).unwrap();
                a.write_at(b"copy-on-write", 100).unwrap();
            }),
            Box::new(|fs| fs.rename("/h/x", "/h/y").unwrap()),
            Box::new(|fs| {
                let y = fs.open("/h/y", OpenOptions::new().read(true)).unwrap();
                let d = fs.open("/d", OpenOptions::new().read(true).write(true)).unwrap();
                let _ = fs.dedupe(&y, 0, BLOCK_SIZE, &[DedupeTarget { file: &d, offset: 0 }]).unwrap();
                d.set_len(BLOCK_SIZE + 5).unwrap();
            }),
            Box::new(|fs| fs.remove_file("/dir/b").unwrap()),
            Box::new(|fs| {
                let y = fs.open("/h/y", OpenOptions::new().write(true)).unwrap();
                y.write_at(&pattern(21, 2 * BLOCK), 3 * BLOCK_SIZE).unwrap();
            }),
        ];
        let checkpoints = fs.read_lock().journal().stats.checkpoints;
        for op in ops {
            let before = log_pos(&fs);
            op(&fs);
            let after = log_pos(&fs);
            // An op may commit more than once (the dedupe step also truncates): keep the range of
            // all its records; the tree is the state once they are all in.
            records.push((log_start + before, log_start + after));
            trees.push(tree(&fs));
        }
        assert_eq!(fs.read_lock().journal().stats.checkpoints, checkpoints, "history must stay in one log");
        assert!(fs.check().is_clean());
        let g = fs.read_lock();
        let layout = g.metadata_layout();
        let sb = g.journal().superblock().clone();
        let image = backend.volatile_image();
        assert_eq!(backend.unpersisted_lines(), 0);
        let chain = |structure: MetaStructure| -> Vec<(usize, usize)> {
            layout
                .iter()
                .filter(|m| m.0 == structure)
                .map(|m| {
                    let at = m.1 as usize * BLOCK;
                    let payload = u32::from_le_bytes(image[at + 36..at + 40].try_into().unwrap()) as usize;
                    (at, at + checkpoint::HEADER_LEN + payload)
                })
                .collect()
        };
        let checkpoint = chain(MetaStructure::Checkpoint);
        let checkpoint_mirror = chain(MetaStructure::CheckpointMirror);
        drop(g);
        let mut padding = Vec::new();
        for &(start, end) in &records {
            let mut at = start;
            while at < end {
                let payload = u32::from_le_bytes(image[at + 4..at + 8].try_into().unwrap()) as usize;
                let unpadded = at + 24 + payload;
                let next = at + (24 + payload).next_multiple_of(8);
                padding.push((unpadded, next));
                at = next;
            }
            assert_eq!(at, end, "records tile the operation's range");
        }
        History {
            image,
            trees,
            records,
            padding,
            layout,
            log: (sb.log_start as usize * BLOCK, (sb.log_start + sb.log_blocks) as usize * BLOCK),
            mirror_offset: (sb.log_mirror_start - sb.log_start) as usize * BLOCK,
            checkpoint,
            checkpoint_mirror,
        }
    })
}

fn flipped(image: &[u8], positions: &[usize]) -> Vec<u8> {
    let mut out = image.to_vec();
    for &p in positions {
        out[p] ^= 0x5a;
    }
    out
}

/// Bytes of a superblock copy that are covered by its checksum: magic, geometry, generation,
/// checkpoint pointer, the reserved area and the checksum itself.
const SUPERBLOCK_POSITIONS: [usize; 6] = [0, 20, 48, 80, 200, 253];

#[test]
fn one_damaged_superblock_copy_is_named_and_rewritten_by_a_read_write_mount() {
    let h = history();
    let last = h.trees.last().unwrap();
    // The slot that holds the current generation (the other holds the previous one).
    let slot = superblock::SLOT_OFFSETS[current_superblock(&h.image).slot()];
    for copy in 0..2usize {
        for &p in &SUPERBLOCK_POSITIONS {
            let image = flipped(&h.image, &[copy * BLOCK + slot + p]);
            let what = format!("superblock copy {copy}");
            // Read-only: mounts from the other copy, says which one it worked around.
            let fs = mount(&image, true).unwrap();
            let notes = fs.read_lock().mount_notes().clone();
            assert_eq!(notes.stale_superblocks, vec![copy as u32], "byte {p}");
            assert!(notes.repaired.iter().any(|r| r.contains(&what)), "byte {p}: {:?}", notes.repaired);
            let report = fs.check();
            assert!(report.is_clean(), "byte {p}: {report}");
            assert!(report.repaired.iter().any(|r| r.contains(&what)), "byte {p}: {report}");
            assert_eq!(&tree(&fs), last);
            drop(fs);
            // Read-write: rewrites the copy; the next mount has nothing to report.
            let backend = Arc::new(RecordingBackend::from_image(image));
            let fs = Fs::mount(&Pool::from_backend(backend.clone())).unwrap();
            assert_eq!(backend.unpersisted_lines(), 0, "the repair must be durable");
            drop(fs);
            let repaired = backend.durable_image();
            assert_eq!(
                repaired[copy * BLOCK + slot..][..256],
                h.image[copy * BLOCK + slot..][..256],
                "byte {p}: the copy must be rewritten as it was"
            );
            let fs = mount(&repaired, true).unwrap();
            assert!(fs.read_lock().mount_notes().repaired.is_empty(), "byte {p}");
            let report = fs.check();
            assert!(report.is_clean() && report.repaired.is_empty(), "byte {p}: {report}");
            assert_eq!(&tree(&fs), last);
        }
    }
}

#[test]
fn both_superblock_copies_damaged_fail_to_mount_naming_both() {
    let h = history();
    for &p in &SUPERBLOCK_POSITIONS {
        // Both slots of both copies.
        let q = SUPERBLOCK_POSITIONS[(p + 1) % 6];
        let [s0, s1] = superblock::SLOT_OFFSETS;
        let image = flipped(&h.image, &[s0 + p, s1 + q, BLOCK + s0 + q, BLOCK + s1 + p]);
        for read_only in [true, false] {
            let msg = corrupt_mount(&image, read_only);
            assert!(msg.contains("superblock copy 0") && msg.contains("superblock copy 1"), "{msg}");
        }
    }
    // A pool of zeros names both copies too (and calls them what they are not).
    let msg = corrupt_mount(&vec![0; 64 * BLOCK], true);
    assert!(msg.contains("copy 0") && msg.contains("copy 1") && msg.contains("magic"), "{msg}");
}

/// The newest valid superblock slot of copy 0 in `image`.
fn current_superblock(image: &[u8]) -> Superblock {
    superblock::SLOT_OFFSETS
        .iter()
        .filter_map(|&at| Superblock::decode(&image[at..at + superblock::ENCODED_LEN], 0).ok())
        .max_by_key(|s| s.generation)
        .expect("a valid superblock")
}

/// Mounts `image` read-only and read-write and checks that each shows `expected`, that the
/// read-only mount says (in its notes and in check's "repaired" list) that it used a second copy,
/// naming `what`, and that after the read-write mount nothing is left to report.
fn second_copy_serves(image: &[u8], expected: &Tree, what: &str) {
    let fs = mount(image, true).unwrap();
    let notes = fs.read_lock().mount_notes().clone();
    assert!(notes.repaired.iter().any(|r| r.contains(what)), "{what}: {:?}", notes.repaired);
    let report = fs.check();
    assert!(report.is_clean(), "{what}: {report}");
    assert!(report.repaired.iter().any(|r| r.contains(what)), "{what}: {report}");
    assert_eq!(&tree(&fs), expected, "{what}");
    drop(fs);
    let backend = Arc::new(RecordingBackend::from_image(image.to_vec()));
    let fs = Fs::mount(&Pool::from_backend(backend.clone())).unwrap();
    assert_eq!(&tree(&fs), expected, "{what}");
    drop(fs);
    assert_eq!(backend.unpersisted_lines(), 0, "the repair must be durable");
    let fs = mount(&backend.durable_image(), true).unwrap();
    assert!(fs.read_lock().mount_notes().repaired.is_empty(), "{what}: {:?}", fs.read_lock().mount_notes());
    let report = fs.check();
    assert!(report.is_clean() && report.repaired.is_empty(), "{what}: {report}");
    assert_eq!(&tree(&fs), expected, "{what}");
}

#[test]
fn a_damaged_checkpoint_block_is_read_from_the_other_chain_and_rewritten() {
    let h = history();
    assert!(!h.checkpoint.is_empty() && h.checkpoint.len() == h.checkpoint_mirror.len());
    for (chain, blocks) in [(0, &h.checkpoint), (1, &h.checkpoint_mirror)] {
        for &(start, end) in blocks {
            // Magic, generation, both next pointers, index, payload length, checksum, first and
            // last payload byte.
            for p in [
                start,
                start + 9,
                start + 17,
                start + 25,
                start + 33,
                start + 37,
                start + 41,
                start + 48,
                end - 1,
            ] {
                let image = flipped(&h.image, &[p]);
                second_copy_serves(
                    &image,
                    h.trees.last().unwrap(),
                    &format!("checkpoint chain {chain} block"),
                );
            }
        }
    }
}

#[test]
fn a_checkpoint_block_damaged_in_both_chains_fails_naming_both_and_salvage_and_repair_go_on() {
    let h = history();
    let (a, b) = (h.checkpoint[0], h.checkpoint_mirror[0]);
    let image = flipped(&h.image, &[a.0 + 60, b.0 + 70]);
    for read_only in [true, false] {
        let msg = corrupt_mount(&image, read_only);
        assert!(msg.contains("both copies") && msg.contains("chain 0") && msg.contains("chain 1"), "{msg}");
        assert!(msg.contains("check --repair"), "the message says what to run: {msg}");
    }
    salvage_then_repair(&image);
}

/// A pool whose checkpoint is a base and a delta: twenty files (each with a 1500-byte extended
/// attribute), a whole checkpoint, then one
/// file rewritten and a checkpoint of that (a delta). The image, its tree, and the delta's first
/// block in each chain.
fn base_and_delta() -> (Vec<u8>, Tree, [u64; 2]) {
    let backend = Arc::new(RecordingBackend::new(1 << 20));
    let fs = Fs::format(&Pool::from_backend(backend.clone())).unwrap();
    let mut rw = OpenOptions::new();
    rw.read(true).write(true).create(true);
    for i in 0..20u8 {
        fs.open(&format!("/f{i}"), &rw).unwrap().write_at(&[i; 3000], 0).unwrap();
        // Bulk for the base: a delta is written when it takes at most a quarter of its blocks.
        fs.set_xattr(&format!("/f{i}"), "user.bulk", &[i; 1500], 0).unwrap();
    }
    fs.checkpoint().unwrap();
    fs.open("/f3", &rw).unwrap().write_at(b"changed", 100).unwrap();
    fs.checkpoint().unwrap();
    let first = {
        let g = fs.read_lock();
        let deltas = g.journal().delta_blocks();
        assert_eq!(deltas.len(), 1, "a base and one delta");
        [deltas[0][0][0], deltas[0][1][0]]
    };
    let expected = tree(&fs);
    drop(fs);
    (backend.volatile_image(), expected, first)
}

#[test]
fn a_damaged_delta_block_is_read_from_the_other_chain_and_rewritten() {
    let (image, expected, [b0, b1]) = base_and_delta();
    for (chain, block) in [(0, b0), (1, b1)] {
        let start = (block * BLOCK_SIZE) as usize;
        // The magic, the checksum, a payload byte.
        for p in [start, start + 41, start + 60] {
            second_copy_serves(
                &flipped(&image, &[p]),
                &expected,
                &format!("checkpoint delta chain {chain} block"),
            );
        }
    }
}

#[test]
fn a_delta_block_damaged_in_both_chains_fails_naming_the_delta_and_salvage_and_repair_go_on() {
    let (image, _, [b0, b1]) = base_and_delta();
    let damaged = flipped(&image, &[(b0 * BLOCK_SIZE) as usize + 60, (b1 * BLOCK_SIZE) as usize + 70]);
    for read_only in [true, false] {
        let msg = corrupt_mount(&damaged, read_only);
        assert!(msg.contains("checkpoint delta: both copies of block #0"), "{msg}");
        assert!(msg.contains("check --repair"), "the message says what to run: {msg}");
    }
    let salvaged = salvage_then_repair(&damaged);
    // The base's twenty files survive; /f3 as the base holds it (the delta's change is lost).
    assert_eq!(salvaged.keys().filter(|p| p.starts_with("/f")).count(), 20, "{:?}", salvaged.keys());
}

/// `image` with both copies of its newest superblock slot changed by `edit` (and re-encoded, so
/// their checksums hold).
fn with_superblock_edit(image: &[u8], edit: impl Fn(&mut Superblock)) -> Vec<u8> {
    let mut out = image.to_vec();
    let slot = superblock::SLOT_OFFSETS[current_superblock(image).slot()];
    for copy in 0..2u32 {
        let at = copy as usize * BLOCK_SIZE as usize + slot;
        let mut sb = Superblock::decode(&out[at..at + superblock::ENCODED_LEN], copy).unwrap();
        edit(&mut sb);
        let bytes = sb.encode();
        out[at..at + bytes.len()].copy_from_slice(&bytes);
    }
    out
}

#[test]
fn a_delta_on_checkpoint_blocks_or_naming_a_delta_of_its_own_generation_is_refused() {
    let (image, _, _) = base_and_delta();
    let base_head = current_superblock(&image).checkpoint_head;
    // The delta's chain 0 named at the base's first block (every checksum holds).
    let shared = with_superblock_edit(&image, |sb| sb.delta.as_mut().unwrap().heads[0] = base_head);
    for read_only in [true, false] {
        let msg = corrupt_mount(&shared, read_only);
        assert!(msg.contains("checkpoint delta"), "{msg}");
    }
    // The fuzz image's delta made to name a previous delta of its own generation (a loop), every
    // checksum resealed: the walk back refuses it instead of going round.
    let (delta_image, meta) = fuzzing::populated_delta_image();
    let sb = current_superblock(delta_image);
    let head = sb.delta.unwrap().heads[0];
    let selector = meta.iter().position(|&b| b == head).unwrap() as u8;
    let payload = checkpoint::HEADER_LEN as u16; // the link to the previous delta starts the payload
    let mut edits = vec![1u8 | 4]; // reseal, the image with a delta
    for (offset, value) in [(payload, 5u8), (payload + 8, 6), (payload + 32, sb.generation as u8)] {
        edits.push(selector);
        edits.extend_from_slice(&offset.to_le_bytes());
        edits.push(value);
    }
    let looped = fuzzing::edited_image(&edits);
    let msg = corrupt_mount(&looped, true);
    assert!(msg.contains(&format!("checkpoint delta: a delta of generation {}", sb.generation)), "{msg}");
}

/// A salvage mount of `image` and a repair of it both work, and the repaired pool mounts normally
/// and checks clean; returns the salvaged tree.
fn salvage_then_repair(image: &[u8]) -> Tree {
    let pool = Pool::from_backend(Arc::new(RecordingBackend::from_image(image.to_vec())));
    let fs = Fs::mount_salvage(&pool).unwrap();
    assert!(!fs.read_lock().mount_notes().lost.is_empty(), "salvage reports what it lost");
    let salvaged = tree(&fs);
    drop(fs);
    let backend = Arc::new(RecordingBackend::from_image(image.to_vec()));
    let notes = Fs::repair(&Pool::from_backend(backend.clone())).unwrap();
    assert!(!notes.lost.is_empty());
    assert_eq!(backend.unpersisted_lines(), 0, "the repair must be durable");
    let fs = mount(&backend.durable_image(), false).unwrap();
    let report = fs.check();
    assert!(report.is_clean() && report.repaired.is_empty(), "{report}");
    assert_eq!(tree(&fs), salvaged, "repair keeps what salvage shows");
    salvaged
}

#[test]
fn a_damaged_log_record_is_read_from_its_other_copy_and_rewritten() {
    let h = history();
    for (i, &record) in h.records.iter().enumerate() {
        for (copy, (start, end), what) in
            [(0, record, "read from the log mirror"), (1, h.mirrored(record), "log mirror: record")]
        {
            // Header (magic, length, sequence, checksum) and payload bytes.
            for p in [start, start + 5, start + 9, start + 17, (start + end) / 2, end - 9] {
                let image = flipped(&h.image, &[p]);
                let expected = h.trees.last().unwrap();
                let run = catch_unwind(AssertUnwindSafe(|| second_copy_serves(&image, expected, what)));
                assert!(run.is_ok(), "record of operation {} (copy {copy}), byte {}", i + 1, p - start);
            }
        }
    }
}

#[test]
fn a_committed_record_damaged_in_both_copies_is_refused_naming_it_never_dropped() {
    let h = history();
    for (i, &record) in h.records.iter().enumerate() {
        let last = i + 1 == h.records.len();
        let (start, end) = record;
        let (m_start, m_end) = h.mirrored(record);
        // Payload bytes in both copies (the mirror's header still names the record), and for a
        // record in the middle also both headers (the records after it prove it was committed).
        let mut cases = vec![vec![(start + end) / 2, (m_start + m_end) / 2 + 1]];
        if !last {
            cases.push(vec![start, m_start + 9]);
        }
        for positions in cases {
            let image = flipped(&h.image, &positions);
            for read_only in [true, false] {
                let msg = corrupt_mount(&image, read_only);
                assert!(
                    msg.contains("damaged in both copies, yet it was committed")
                        && msg.contains("check --repair"),
                    "record of operation {}: {msg}",
                    i + 1
                );
            }
            let salvaged = salvage_then_repair(&image);
            // What the lost operation did not touch is still there.
            let before = &h.trees[i];
            let untouched_by_op = |path: &String| {
                h.trees[i + 1].get(path) == before.get(path)
                    && h.trees.last().unwrap().get(path) == before.get(path)
            };
            for (path, node) in before.iter().filter(|(p, _)| untouched_by_op(p)) {
                assert_eq!(salvaged.get(path), Some(node), "operation {}: {path} survives salvage", i + 1);
            }
        }
    }
}

#[test]
fn a_last_record_torn_in_the_log_before_its_mirror_copy_began_is_dropped() {
    // A crash between the record's two fences: its log copy is partly written, its mirror copy
    // not begun. Nothing proves the operation happened; mount ends the log before it.
    let h = history();
    let (start, end) = *h.records.last().unwrap();
    let (m_start, m_end) = h.mirrored((start, end));
    let mut image = flipped(&h.image, &[(start + end) / 2]);
    image[m_start..m_end].fill(0);
    for read_only in [true, false] {
        let fs = mount(&image, read_only).unwrap();
        let report = fs.check();
        assert!(report.is_clean(), "{report}");
        assert_eq!(&tree(&fs), &h.trees[h.trees.len() - 2], "the torn operation is dropped whole");
    }
}

#[test]
fn damage_in_unused_log_space_is_harmless() {
    let h = history();
    let end = h.records.last().unwrap().1;
    // Right after the last record, and far beyond it (stale records of an earlier generation), in
    // both copies of the log.
    for p in [end, end + 8, end + 1000, h.log.1 - 1] {
        for p in [p, p + h.mirror_offset] {
            for read_only in [true, false] {
                let fs = mount(&flipped(&h.image, &[p]), read_only).unwrap();
                assert!(fs.check().is_clean());
                assert!(fs.read_lock().mount_notes().repaired.is_empty());
                assert_eq!(&tree(&fs), h.trees.last().unwrap());
            }
        }
    }
}

#[test]
fn every_metadata_block_destroyed_alone_loses_no_file() {
    // The closing-note number: destroy one whole metadata block with random bytes, for every
    // metadata block of the pool in turn; count the files that read back byte-exact.
    let h = history();
    let expected = h.trees.last().unwrap();
    let files = expected.values().filter(|n| n.is_some()).count();
    let mut rng = Rng(7);
    let (mut recovered, mut total) = (0usize, 0usize);
    let blocks: Vec<(MetaStructure, u64)> =
        h.layout.iter().flat_map(|&(structure, s, l)| (s..s + l).map(move |b| (structure, b))).collect();
    for &(structure, block) in &blocks {
        let mut image = h.image.clone();
        for byte in &mut image[block as usize * BLOCK..(block as usize + 1) * BLOCK] {
            *byte = rng.next() as u8;
        }
        // Read-only first: the damage is reported (unless the block held nothing: unused log).
        let fs = mount(&image, true).unwrap_or_else(|e| panic!("{structure} block {block} destroyed: {e}"));
        let held_something = !matches!(structure, MetaStructure::Log | MetaStructure::LogMirror)
            || (block as usize * BLOCK)
                < h.records.last().unwrap().1
                    + h.mirror_offset * usize::from(structure == MetaStructure::LogMirror);
        let reported = !fs.read_lock().mount_notes().repaired.is_empty();
        assert!(reported || !held_something, "{structure} block {block}: the damage is reported");
        drop(fs);
        // Read-write: every file, and a clean check once the mount has repaired it.
        let fs = mount(&image, false).unwrap_or_else(|e| panic!("{structure} block {block} destroyed: {e}"));
        let got = tree(&fs);
        total += files;
        recovered += expected.iter().filter(|(p, n)| n.is_some() && got.get(*p) == Some(n)).count();
        let report = fs.check();
        assert!(report.is_clean(), "{structure} block {block}: {report}");
    }
    eprintln!(
        "metadata blocks destroyed one at a time: {}; files recovered byte-exact: {recovered} of {total}",
        blocks.len()
    );
    assert_eq!(recovered, total);
}

/// What flipping bytes at `positions` (all inside one copy of one structure of the history image)
/// must lead to: the other copy serves, so the pool mounts, checks clean and shows the last tree.
fn expect_outcome(h: &History, image: &[u8], positions: &[usize], read_only: bool) -> Result<(), String> {
    match mount(image, read_only) {
        Err(e) => Err(format!("mount failed with {e}")),
        Ok(fs) => {
            let report = fs.check();
            if !report.is_clean() {
                return Err(format!("mounted but check is not clean:\n{report}"));
            }
            let notes = fs.read_lock().mount_notes().clone();
            // A position in the log mirror stands for the same position in the log.
            let in_log = |p: usize| if p >= h.log.0 + h.mirror_offset { p - h.mirror_offset } else { p };
            let meaningful =
                positions.iter().any(|&p| !h.padding.iter().any(|&(s, e)| s <= in_log(p) && in_log(p) < e));
            let in_unused =
                positions.iter().all(|&p| in_log(p) >= h.records.last().unwrap().1 && in_log(p) < h.log.1);
            if meaningful && !in_unused && notes.repaired.is_empty() {
                return Err("damage went unreported".into());
            }
            if &tree(&fs) != h.trees.last().unwrap() {
                return Err("mounted a tree that is not the last one".into());
            }
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    /// Flips 1-4 bytes inside one copy of one structure (a superblock copy's checksummed bytes, a
    /// checkpoint block of either chain, one log record in either log copy, or unused log space):
    /// the other copy always serves.
    #[test]
    fn flips_inside_one_structure_have_the_outcome_it_calls_for(
        which in 0usize..1000,
        offsets in proptest::collection::vec(0usize..1 << 20, 1..5),
        values in proptest::collection::vec(1u8..=255, 4),
        read_only in any::<bool>(),
    ) {
        let h = history();
        let mut ranges = vec![(0, 256), (BLOCK, BLOCK + 256), (h.records.last().unwrap().1, h.log.1)];
        ranges.extend(&h.checkpoint);
        ranges.extend(&h.checkpoint_mirror);
        ranges.extend(&h.records);
        ranges.extend(h.records.iter().map(|&r| h.mirrored(r)));
        let (start, end) = ranges[which % ranges.len()];
        let positions: Vec<usize> = offsets.iter().map(|o| start + o % (end - start)).collect();
        let mut image = h.image.clone();
        for (p, v) in positions.iter().zip(values.iter().cycle()) {
            image[*p] ^= v;
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| expect_outcome(h, &image, &positions, read_only)));
        match outcome {
            Err(panic) => prop_assert!(false, "PANIC at positions {:?}: {:?}", positions, panic.downcast_ref::<String>()),
            Ok(Err(why)) => prop_assert!(false, "positions {:?} (read_only {}): {}", positions, read_only, why),
            Ok(Ok(())) => {}
        }
    }

    /// Flips random bytes anywhere in random metadata blocks (superblocks, log, checkpoint):
    /// never a panic; a failed mount says Corrupt; a mount that succeeds has a check() verdict,
    /// and when that verdict is clean every file reads back.
    #[test]
    fn random_flips_in_metadata_never_panic_and_stay_coherent(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..BLOCK, 1u8..=255), 1..12),
        read_only in any::<bool>(),
    ) {
        let h = history();
        let blocks: Vec<u64> = h.layout.iter().flat_map(|&(_, s, l)| s..s + l).collect();
        let mut image = h.image.clone();
        let mut positions = Vec::new();
        for (block, offset, value) in &flips {
            let at = *block.get(&blocks) as usize * BLOCK + offset;
            image[at] ^= value;
            positions.push(at);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| -> Result<(), String> {
            match mount(&image, read_only) {
                Err(e) if e.errno() == libc::EUCLEAN && !e.to_string().is_empty() => Ok(()),
                Err(e) => Err(format!("mount failed with {e:?}")),
                Ok(fs) => {
                    let report = fs.check();
                    if report.is_clean() {
                        let _ = tree(&fs);
                    } else if report.problems.iter().any(|p| p.structure.is_empty() || p.detail.is_empty()) {
                        return Err(format!("a problem without a name:\n{report}"));
                    }
                    Ok(())
                }
            }
        }));
        match outcome {
            Err(panic) => prop_assert!(false, "PANIC at positions {:?}: {:?}", positions, panic.downcast_ref::<String>()),
            Ok(Err(why)) => prop_assert!(false, "positions {:?}: {}", positions, why),
            Ok(Ok(())) => {}
        }
    }
}

/// A record with a valid checksum but hostile content, appended at the end of the history's log.
struct HostileRecord {
    image: Vec<u8>,
    /// Its sequence number.
    seq: u64,
    /// Its offset inside the log region.
    log_byte: usize,
}

impl HostileRecord {
    /// How mount names this record in a refusal.
    fn name(&self) -> String {
        format!("log record {} (log byte {})", self.seq, self.log_byte)
    }
}

fn with_record(mutations: &[Mutation]) -> HostileRecord {
    let h = history();
    let fs = mount(&h.image, true).unwrap();
    let g = fs.read_lock();
    let seq = g.journal().superblock().log_first_seq + g.journal().stats.replayed;
    let record = encode_record(seq, mutations);
    let at = h.records.last().unwrap().1;
    let mut image = h.image.clone();
    image[at..at + record.len()].copy_from_slice(&record);
    HostileRecord { image, seq, log_byte: at - h.log.0 }
}

/// The history's final state, mounted read-only.
fn final_state() -> State {
    let fs = mount(&history().image, true).unwrap();
    let state = fs.read_lock().state().clone();
    state
}

fn attrs_of(path: &str) -> InodeAttrs {
    let fs = mount(&history().image, true).unwrap();
    let ino = fs.metadata(path).unwrap().ino;
    let attrs = fs.read_lock().state().inodes[&ino].attrs.clone();
    attrs
}

/// `path`'s attributes changed by `edit`.
fn edited(path: &str, edit: impl FnOnce(&mut InodeAttrs)) -> Mutation {
    let mut attrs = attrs_of(path);
    edit(&mut attrs);
    Mutation::PutInode(attrs)
}

/// A new inode's attributes: the next inode number, of `kind`, with one name.
fn new_inode(kind: InodeKind) -> InodeAttrs {
    let mut attrs = attrs_of("/a");
    attrs.ino = final_state().next_ino;
    attrs.kind = kind;
    attrs.size = 0;
    attrs.nlink = if kind == InodeKind::Dir { 2 } else { 1 };
    attrs
}

/// The entry `name` -> `ino` added to the root directory.
fn link_in_root(name: &[u8], ino: u64) -> Mutation {
    Mutation::Link { dir: 1, name: name.to_vec(), ino }
}

/// The first free block of the history's final state.
fn free_block() -> u64 {
    final_state().free.runs().next().unwrap().0
}

/// First block of a metadata structure of the history.
fn meta_block(structure: MetaStructure) -> u64 {
    history().layout.iter().find(|m| m.0 == structure).unwrap().1
}

/// Every problem `check()` reports once `mutations` are applied to the history's final state in
/// memory, one by one and without the record-level validation of replay, as "structure: detail".
/// Every mutation must apply.
fn check_after_unvalidated(mutations: &[Mutation]) -> Vec<String> {
    let report = fuzzing::check_after_tampering(&history().image, |state| {
        for m in mutations {
            state.apply(m, ApplyMode::Replay).unwrap_or_else(|e| panic!("{m:?} does not apply: {e}"));
        }
    });
    report.problems.iter().map(|p| format!("{}: {}", p.structure, p.detail)).collect()
}

/// One kind of hostile record: what it is, its mutations, and the text the refusal must hold
/// (after the record's name).
struct Crafted {
    kind: &'static str,
    mutations: Vec<Mutation>,
    refusal: String,
}

fn crafted(kind: &'static str, mutations: Vec<Mutation>, refusal: impl Into<String>) -> Crafted {
    Crafted { kind, mutations, refusal: refusal.into() }
}

/// Hostile records that mount refused before replay validated whole records: the decoder or a
/// single mutation catches them.
fn crafted_refused_by_one_mutation() -> Vec<Crafted> {
    let a = attrs_of("/a").ino;
    let d = attrs_of("/d").ino;
    let dir = attrs_of("/dir").ino;
    let root_nlink = attrs_of("/").nlink;
    let free = free_block();
    let log = meta_block(MetaStructure::Log);
    let ckpt = meta_block(MetaStructure::Checkpoint);
    let missing = final_state().next_ino + 10;
    let total = final_state().total_blocks;
    vec![
        crafted(
            "inode number u64::MAX",
            vec![edited("/a", |x| x.ino = u64::MAX)],
            "inode number 18446744073709551615 cannot be handed out",
        ),
        crafted("inode number 0", vec![edited("/a", |x| x.ino = 0)], "inode number 0 cannot be handed out"),
        crafted(
            "size past the largest file size",
            vec![edited("/a", |x| x.size = u64::MAX - 5)],
            "past the largest file size",
        ),
        crafted(
            "mode bits beyond 0o7777",
            vec![edited("/a", |x| x.mode = 0o170644)],
            "mode 170644 has bits beyond 0o7777",
        ),
        crafted("name longer than 255 bytes", vec![link_in_root(&[b'n'; 256], a)], "a name of 256 bytes"),
        crafted(
            "map: file blocks overflow",
            vec![Mutation::Map { ino: a, file_block: u64::MAX / 4096, len: 1, phys: None }],
            format!("map of inode {a}: bad range [{}, +1)", u64::MAX / 4096),
        ),
        crafted(
            "map: file_block + len wraps",
            vec![Mutation::Map { ino: a, file_block: 5, len: u64::MAX - 2, phys: Some(free) }],
            "bad range",
        ),
        crafted(
            "map: zero blocks",
            vec![Mutation::Map { ino: a, file_block: 0, len: 0, phys: Some(free) }],
            "bad range [0, +0)",
        ),
        crafted(
            "map: pool blocks outside the pool",
            vec![Mutation::Map { ino: a, file_block: 0, len: 1, phys: Some(1 << 40) }],
            format!(
                "map of inode {a} onto pool blocks [{}, +1) outside the pool of {total} blocks",
                1u64 << 40
            ),
        ),
        crafted(
            "map: phys + len wraps",
            vec![Mutation::Map { ino: a, file_block: 0, len: 4, phys: Some(u64::MAX - 1) }],
            "outside the pool",
        ),
        crafted(
            "map: onto block 0",
            vec![Mutation::Map { ino: a, file_block: 0, len: 1, phys: Some(0) }],
            format!("map of inode {a} onto pool blocks [0, +1): block 0 and 1 are the superblocks"),
        ),
        crafted(
            "map: onto block 1",
            vec![Mutation::Map { ino: a, file_block: 0, len: 2, phys: Some(1) }],
            "pool blocks [1, +2): block 0 and 1 are the superblocks",
        ),
        crafted(
            "map: onto the log region",
            vec![Mutation::Map { ino: a, file_block: 0, len: 1, phys: Some(log + 1) }],
            format!("map of inode {a} onto pool blocks [{}, +1) overlap the log region", log + 1),
        ),
        crafted(
            "map: onto the checkpoint",
            vec![Mutation::Map { ino: a, file_block: 0, len: 1, phys: Some(ckpt) }],
            format!("map of inode {a} onto pool blocks [{ckpt}, +1) overlap the checkpoint"),
        ),
        crafted(
            "map: onto a bad block nobody owns",
            vec![
                Mutation::Quarantine { block: free, len: 1 },
                Mutation::Map { ino: a, file_block: 0, len: 1, phys: Some(free) },
            ],
            format!("block {free} is quarantined (bad) and no file owns it"),
        ),
        crafted(
            "map: of a directory",
            vec![Mutation::Map { ino: dir, file_block: 0, len: 1, phys: Some(free) }],
            format!("map of missing or non-file inode {dir}"),
        ),
        crafted(
            "map: of a missing inode",
            vec![Mutation::Map { ino: missing, file_block: 0, len: 1, phys: None }],
            format!("map of missing or non-file inode {missing}"),
        ),
        crafted(
            "free: a missing inode",
            vec![Mutation::FreeInode { ino: missing }],
            format!("free of missing inode {missing}"),
        ),
        crafted(
            "free: a file with blocks",
            vec![Mutation::FreeInode { ino: a }],
            format!("free of inode {a} that still has blocks or entries"),
        ),
        crafted(
            "free: a directory with entries",
            vec![Mutation::FreeInode { ino: dir }, edited("/", |x| x.nlink = root_nlink - 1)],
            format!("free of inode {dir} that still has blocks or entries"),
        ),
        crafted(
            "free: an inode a directory still names",
            vec![
                Mutation::PutInode(new_inode(InodeKind::File)),
                link_in_root(b"new", final_state().next_ino),
                Mutation::FreeInode { ino: final_state().next_ino },
            ],
            format!("free of inode {} that a directory still names", final_state().next_ino),
        ),
        crafted("free: the root", vec![Mutation::FreeInode { ino: 1 }], "free of the root directory"),
        crafted(
            "a file turned into a directory",
            vec![edited("/a", |x| x.kind = InodeKind::Dir)],
            format!("inode {a} changes kind"),
        ),
        crafted(
            "entry in a missing directory",
            vec![Mutation::Link { dir: missing, name: b"x".to_vec(), ino: a }],
            format!("inode {a} is named in missing directory {missing}"),
        ),
        crafted(
            "entry in a file",
            vec![Mutation::Link { dir: a, name: b"x".to_vec(), ino: d }],
            format!("inode {d} is named in inode {a}, which is not a directory"),
        ),
        crafted(
            "duplicate name",
            vec![link_in_root(b"a", d)],
            format!("directory 1 already has an entry \"a\" (inode {a}): a duplicate name"),
        ),
        crafted(
            "entry naming a missing inode",
            vec![link_in_root(b"ghost", missing)],
            format!("entry \"ghost\" of directory 1 names missing inode {missing}"),
        ),
        crafted(
            "entry naming the root",
            vec![Mutation::Link { dir, name: b"root".to_vec(), ino: 1 }],
            format!("entry \"root\" of directory {dir} names the root directory"),
        ),
        crafted(
            "a second name of a directory",
            vec![link_in_root(b"dir2", dir)],
            format!("directory {dir} gets a second name \"dir2\" in directory 1"),
        ),
        crafted(
            "removal of an entry the directory does not hold",
            vec![Mutation::Unlink { dir: 1, name: b"nope".to_vec(), ino: a }],
            format!("removal of entry \"nope\" -> inode {a} that directory 1 does not hold"),
        ),
        crafted(
            "removal of an extended attribute the inode lacks",
            vec![Mutation::SetXattr { ino: a, name: b"user.none".to_vec(), value: None }],
            format!("removal of extended attribute \"user.none\" that inode {a} does not have"),
        ),
        crafted(
            "a symlink target on a file",
            vec![Mutation::SetTarget { ino: a, target: b"x".to_vec() }],
            format!("symlink target of missing or non-symlink inode {a}"),
        ),
        crafted(
            "quarantine outside the pool",
            vec![Mutation::Quarantine { block: total, len: 1 }],
            format!("quarantine of pool blocks [{total}, +1) outside the pool"),
        ),
        crafted(
            "quarantine of block 0",
            vec![Mutation::Quarantine { block: 0, len: 1 }],
            "quarantine of pool blocks [0, +1): block 0 and 1 are the superblocks",
        ),
    ]
}

/// Hostile records that every mutation accepts but that leave the state inconsistent once the
/// record is in: mounted before replay validated whole records.
fn crafted_refused_by_the_whole_record() -> Vec<Crafted> {
    let a = attrs_of("/a").ino;
    let dir = attrs_of("/dir").ino;
    let sub = attrs_of("/dir/sub").ino;
    let root = attrs_of("/");
    let dir_nlink = attrs_of("/dir").nlink;
    let sub_nlink = attrs_of("/dir/sub").nlink;
    let a_blocks = attrs_of("/a").size.div_ceil(BLOCK_SIZE);
    let free = free_block();
    let new = final_state().next_ino;
    // A second name for /a, its link count raised to match: only the name is wrong.
    let named = |name: &[u8]| vec![link_in_root(name, a), edited("/a", |x| x.nlink = 2)];
    vec![
        crafted("name with '/'", named(b"x/y"), format!("inode {a}: the name \"x/y\" contains '/'")),
        crafted("empty name", named(b""), format!("inode {a}: an empty name")),
        crafted("name \".\"", named(b"."), format!("inode {a}: the name \".\" is reserved")),
        crafted("name \"..\"", named(b".."), format!("inode {a}: the name \"..\" is reserved")),
        crafted("name with NUL", named(b"a\0b"), format!("inode {a}: the name \"a\\0b\" contains NUL")),
        crafted(
            "file with link count 2 and one name",
            vec![edited("/a", |x| x.nlink = 2)],
            format!("inode {a}: link count 2 but 1 name(s)"),
        ),
        crafted(
            "a hard link without its link count",
            vec![link_in_root(b"a2", a)],
            format!("inode {a}: link count 1 but 2 name(s)"),
        ),
        crafted(
            "directory with a wrong link count",
            vec![edited("/dir", |x| x.nlink = 7)],
            format!(
                "inode {dir}: directory link count 7 but {} subdirectories (expected {dir_nlink})",
                dir_nlink - 2
            ),
        ),
        crafted(
            "mkdir without the parent's link",
            vec![Mutation::PutInode(new_inode(InodeKind::Dir)), link_in_root(b"newdir", new)],
            format!(
                "inode 1: directory link count {} but {} subdirectories (expected {})",
                root.nlink,
                root.nlink - 1,
                root.nlink + 1
            ),
        ),
        crafted(
            "a directory without a name",
            vec![Mutation::PutInode(new_inode(InodeKind::Dir))],
            format!("inode {new}: a directory with 0 names (a directory has exactly one)"),
        ),
        crafted(
            "root with link count 0",
            vec![edited("/", |x| x.nlink = 0)],
            format!("inode 1: directory link count 0 but {} subdirectories", root.nlink - 2),
        ),
        crafted(
            "directory with a size",
            vec![edited("/dir", |x| x.size = 4096)],
            format!("inode {dir}: a directory of size 4096"),
        ),
        crafted(
            "map past EOF",
            vec![Mutation::Map { ino: a, file_block: 100, len: 1, phys: Some(free) }],
            format!("inode {a}: blocks mapped past EOF"),
        ),
        crafted(
            "size cut below the mapped blocks",
            vec![edited("/a", |x| x.size = 0)],
            format!("inode {a}: blocks mapped past EOF (size 0, mapped to block {a_blocks})"),
        ),
        crafted(
            "a symlink without a target",
            vec![Mutation::PutInode(new_inode(InodeKind::Symlink)), link_in_root(b"s", new)],
            format!("inode {new}: a symlink target of 0 bytes, empty or with NUL"),
        ),
        crafted(
            "an extended attribute outside user.",
            vec![Mutation::SetXattr { ino: a, name: b"trusted.x".to_vec(), value: Some(b"v".to_vec()) }],
            format!("inode {a}: the extended attribute \"trusted.x\" is not named user.<something>"),
        ),
        crafted(
            "directory cycle",
            vec![
                Mutation::Unlink { dir: 1, name: b"dir".to_vec(), ino: dir },
                Mutation::Link { dir: sub, name: b"dir".to_vec(), ino: dir },
                edited("/", |x| x.nlink = root.nlink - 1),
                edited("/dir/sub", |x| x.nlink = sub_nlink + 1),
            ],
            format!("inode {dir}: directory {dir} is inside itself: a directory cycle"),
        ),
    ]
}

/// A mount (read-only or not) that refuses `record` with EUCLEAN; returns the message after
/// checking that it names the record.
fn refusal_of(record: &HostileRecord, read_only: bool) -> String {
    let msg = corrupt_mount(&record.image, read_only);
    assert!(msg.contains(&format!("{}: ", record.name())), "the message must name the record: {msg}");
    msg
}

#[test]
fn hostile_records_caught_by_one_mutation_are_refused_naming_the_record_and_the_problem() {
    let cases = crafted_refused_by_one_mutation();
    assert_eq!(cases.len(), 34);
    for case in cases {
        let record = with_record(&case.mutations);
        for read_only in [true, false] {
            let msg = refusal_of(&record, read_only);
            assert!(msg.contains(&case.refusal), "{}: {msg}", case.kind);
        }
    }
}

#[test]
fn hostile_records_caught_only_by_the_whole_record_are_refused_and_check_finds_them_too() {
    let cases = crafted_refused_by_the_whole_record();
    assert_eq!(cases.len(), 17);
    for case in cases {
        let record = with_record(&case.mutations);
        for read_only in [true, false] {
            let msg = refusal_of(&record, read_only);
            assert!(msg.contains(&format!("{}: {}", record.name(), case.refusal)), "{}: {msg}", case.kind);
        }
        // The same mutations applied in memory without record validation: fsck finds the same
        // problem by itself (as "inode N: detail").
        let problems = check_after_unvalidated(&case.mutations);
        assert!(
            problems.iter().any(|p| p.contains(&case.refusal)),
            "{}: check does not report {:?}: {problems:#?}",
            case.kind,
            case.refusal
        );
    }
}

#[test]
fn check_finds_on_a_live_state_what_no_single_record_can_carry() {
    let h = history();
    let a = attrs_of("/a").ino;
    let dir = attrs_of("/dir").ino;
    let problems_after = |tamper: &dyn Fn(&mut State)| -> Vec<String> {
        let report = fuzzing::check_after_tampering(&h.image, tamper);
        report.problems.iter().map(|p| format!("{}: {}", p.structure, p.detail)).collect()
    };
    let has = |problems: &[String], text: &str| problems.iter().any(|p| p.contains(text));
    // A name longer than 255 bytes (the decoder refuses it in a record).
    let p = problems_after(&|s| s.inodes.get_mut(&a).unwrap().names[0].1 = vec![b'n'; 300].into());
    assert!(has(&p, &format!("inode {a}: a name of 300 bytes (at most 255)")), "{p:#?}");
    // Inode numbers at or above next_ino (replay raises next_ino past every inode it puts).
    let p = problems_after(&|s| s.next_ino = 2);
    assert!(
        has(&p, &format!("inode {a}: inode number {a} is not below the next free inode number 2")),
        "{p:#?}"
    );
    // Extents on the superblocks, the log and the checkpoint (replay refuses such a Map).
    for (phys, what) in [
        (0, "block 0 and 1 are the superblocks".to_string()),
        (meta_block(MetaStructure::Log), "overlap the log region".to_string()),
        (meta_block(MetaStructure::Checkpoint), "overlap the checkpoint".to_string()),
    ] {
        let p = problems_after(&|s| {
            s.inodes.get_mut(&a).unwrap().extents.set(0, 1, Some(phys));
        });
        assert!(has(&p, &format!("inode {a}: extent at file block 0: pool blocks [{phys}, +1)")), "{p:#?}");
        assert!(has(&p, &what), "{what}: {p:#?}");
    }
    // An extent whose end wraps around (no overflow in check itself).
    let p = problems_after(&|s| {
        s.inodes.get_mut(&a).unwrap().extents.set(0, 2, Some(u64::MAX - 1));
    });
    assert!(
        has(&p, &format!("inode {a}: extent at file block 0 (pool blocks [{}, +2)) outside", u64::MAX - 1)),
        "{p:#?}"
    );
    // Names that disagree with the entries: an entry the inode does not list, and a name no
    // entry holds.
    let b = attrs_of("/d").ino;
    let p = problems_after(&|s| s.inodes.get_mut(&b).unwrap().names[0].1 = b"elsewhere".to_vec().into());
    assert!(has(&p, &format!("inode {b}: its names do not list the entry \"d\" of directory 1")), "{p:#?}");
    let p = problems_after(&|s| s.inodes.get_mut(&b).unwrap().add_name(1, b"extra".to_vec().into()));
    assert!(has(&p, &format!("inode {b}: 2 names tracked but 1 directory entries name it")), "{p:#?}");
    // A file holding entries, and a tracked subdirectory count that disagrees with the entries.
    let p = problems_after(&|s| {
        s.inodes.get_mut(&a).unwrap().children_mut().insert(b"x".to_vec().into(), b);
    });
    assert!(has(&p, &format!("inode {a}: a file with directory entries")), "{p:#?}");
    let p = problems_after(&|s| *s.inodes.get_mut(&dir).unwrap().subdir_count_mut() += 1);
    assert!(has(&p, &format!("inode {dir}: 1 subdirectories but 2 tracked")), "{p:#?}");
}

/// The history's image with its checkpoint replaced by `edit` of the state it holds: framed into
/// the same blocks and resealed (block checksums and the superblocks' payload length and checksum)
/// through the format's public functions, so every checksum matches.
fn with_checkpoint(edit: impl FnOnce(&mut StateImage)) -> Vec<u8> {
    with_checkpoint_and_runs(edit, |_| {})
}

/// [`with_checkpoint`], the run map's runs (chain 0's, chain 1's) changed by `edit_runs` too.
fn with_checkpoint_and_runs(
    edit: impl FnOnce(&mut StateImage),
    edit_runs: impl FnOnce(&mut [Vec<(u64, u64)>; 2]),
) -> Vec<u8> {
    let h = history();
    let mut image = h.image.clone();
    // The newest superblock slot of copy 0 names the checkpoint.
    let slots: Vec<Superblock> = superblock::SLOT_OFFSETS
        .iter()
        .filter_map(|&at| Superblock::decode(&image[at..at + superblock::ENCODED_LEN], 0).ok())
        .collect();
    let sb = slots.iter().max_by_key(|s| s.generation).unwrap().clone();
    let root = checkpoint::ChainRoot {
        heads: [sb.checkpoint_head, sb.checkpoint_mirror_head],
        generation: sb.generation,
        payload_len: sb.checkpoint_len,
        payload_crc: sb.checkpoint_crc,
        total_blocks: sb.total_blocks,
    };
    let read = checkpoint::read_chains(root, false, |b| {
        Ok(image[b as usize * BLOCK..(b as usize + 1) * BLOCK].to_vec())
    })
    .unwrap();
    let (mut state, mut map) = indexed::decode(Arc::new(read.payload), sb.total_blocks).unwrap();
    edit(&mut state);
    edit_runs(&mut map.runs);
    let mut payload = indexed::encode(&state);
    assert!(indexed::set_runs(&mut payload, [&map.runs[0], &map.runs[1]]), "the runs fit as before");
    let [chain0, chain1] = &read.blocks;
    assert_eq!(
        checkpoint::blocks_for(payload.len()),
        chain0.len(),
        "the edited checkpoint must fit its blocks"
    );
    for (i, bytes) in checkpoint::frame(&payload, sb.generation, [chain0, chain1]).iter().enumerate() {
        for chain in [chain0, chain1] {
            let block = chain[i] as usize;
            image[block * BLOCK..(block + 1) * BLOCK].copy_from_slice(bytes);
        }
    }
    for copy in 0..2u32 {
        let at = copy as usize * BLOCK + superblock::SLOT_OFFSETS[sb.slot()];
        let mut sb = Superblock::decode(&image[at..at + superblock::ENCODED_LEN], copy).unwrap();
        sb.checkpoint_len = payload.len() as u64;
        sb.checkpoint_crc = checksum(&payload);
        let bytes = sb.encode();
        image[at..at + bytes.len()].copy_from_slice(&bytes);
    }
    image
}

/// The inode the first entry named `name` names, in a checkpoint's state.
fn ino_named(state: &StateImage, name: &str) -> u64 {
    state.inodes.iter().flat_map(|i| i.entries.iter()).find(|(n, _)| n == name.as_bytes()).unwrap().1
}

/// The inode image of [`ino_named`].
fn inode_named<'a>(state: &'a mut StateImage, name: &str) -> &'a mut InodeImage {
    let ino = ino_named(state, name);
    state.inodes.iter_mut().find(|i| i.attrs.ino == ino).unwrap()
}

/// The inode image numbered `ino`.
fn inode_numbered(state: &mut StateImage, ino: u64) -> &mut InodeImage {
    state.inodes.iter_mut().find(|i| i.attrs.ino == ino).unwrap()
}

#[test]
fn a_run_map_that_names_other_blocks_than_the_chains_link_is_refused() {
    // Chain 0's and chain 1's runs swapped: each still covers a chain's worth of valid blocks.
    let image = with_checkpoint_and_runs(|_| {}, |runs| runs.swap(0, 1));
    for read_only in [true, false] {
        let msg = corrupt_mount(&image, read_only);
        assert!(msg.contains("the runs of chain 0 are not the blocks the chain links"), "{msg}");
    }
}

#[test]
fn resealed_but_unedited_checkpoint_mounts_clean() {
    let image = with_checkpoint(|_| {});
    let fs = mount(&image, true).unwrap();
    assert!(fs.check().is_clean());
    assert_eq!(&tree(&fs), history().trees.last().unwrap());
}

#[test]
fn checkpoint_with_inode_numbers_at_or_above_next_ino_is_refused() {
    let image = with_checkpoint(|s| s.next_ino = 2);
    for read_only in [true, false] {
        let msg = corrupt_mount(&image, read_only);
        assert!(
            msg.contains("checkpoint: inode number") && msg.contains("next free inode number 2"),
            "{msg}"
        );
    }
}

#[test]
fn hostile_checkpoints_are_refused_naming_the_checkpoint_the_inode_and_the_problem() {
    let h = history();
    let ckpt = meta_block(MetaStructure::Checkpoint);
    let log = meta_block(MetaStructure::Log);
    type Edit = Box<dyn Fn(&mut StateImage) -> String>;
    let rename = |name: &'static [u8]| -> Edit {
        Box::new(move |s| {
            let a = ino_named(s, "a");
            let root = inode_numbered(s, 1);
            root.entries.iter_mut().find(|(n, _)| n == b"a").unwrap().0 = name.to_vec();
            root.entries.sort();
            format!("checkpoint: inode {a}: ")
        })
    };
    let cases: Vec<(&str, Edit, &str)> = vec![
        ("name with '/'", rename(b"x/y"), "the name \"x/y\" contains '/'"),
        ("empty name", rename(b""), "an empty name"),
        ("name \".\"", rename(b"."), "the name \".\" is reserved"),
        ("name \"..\"", rename(b".."), "the name \"..\" is reserved"),
        ("name with NUL", rename(b"a\0"), "contains NUL"),
        (
            "file with link count 2 and one name",
            Box::new(|s| {
                let a = inode_named(s, "a");
                a.attrs.nlink = 2;
                format!("checkpoint: inode {}: ", a.attrs.ino)
            }),
            "link count 2 but 1 name(s)",
        ),
        (
            "directory with a wrong link count",
            Box::new(|s| {
                let d = inode_named(s, "dir");
                d.attrs.nlink = 2;
                format!("checkpoint: inode {}: ", d.attrs.ino)
            }),
            "directory link count 2 but 1 subdirectories (expected 3)",
        ),
        (
            "directory with link count 0",
            Box::new(|s| {
                let d = inode_named(s, "sub");
                d.attrs.nlink = 0;
                format!("checkpoint: inode {}: ", d.attrs.ino)
            }),
            "directory link count 0 but 0 subdirectories (expected 2)",
        ),
        (
            "an entry naming the root",
            Box::new(|s| {
                let d = inode_named(s, "dir");
                d.entries.insert(0, (b"0root".to_vec(), 1));
                format!("checkpoint: entry \"0root\" of directory {} names the root directory", d.attrs.ino)
            }),
            "",
        ),
        (
            "directory with a size",
            Box::new(|s| {
                let d = inode_named(s, "dir");
                d.attrs.size = 1;
                format!("checkpoint: inode {}: ", d.attrs.ino)
            }),
            "a directory of size 1",
        ),
        (
            "an entry in a file",
            Box::new(|s| {
                let b = ino_named(s, "b");
                let a = inode_named(s, "a");
                a.entries.push((b"x".to_vec(), b));
                format!("checkpoint: inode {b} is named in inode {}, which is not a directory", a.attrs.ino)
            }),
            "",
        ),
        (
            "duplicate name",
            Box::new(|s| {
                // /dir/b also appears in the root under the name "a".
                let b = ino_named(s, "b");
                let root = inode_numbered(s, 1);
                let at = root.entries.iter().position(|(n, _)| n == b"a").unwrap();
                root.entries.insert(at, (b"a".to_vec(), b));
                "entries of directory 1 are not in ascending order".into()
            }),
            "",
        ),
        (
            "directory cycle",
            Box::new(|s| {
                let sub = ino_named(s, "sub");
                let dir = ino_named(s, "dir");
                let root = inode_numbered(s, 1);
                root.entries.retain(|(n, _)| n != b"dir");
                root.attrs.nlink -= 1;
                let sub_image = inode_numbered(s, sub);
                sub_image.entries.push((b"dir".to_vec(), dir));
                sub_image.attrs.nlink += 1;
                format!("checkpoint: inode {dir}: directory {dir} is inside itself: a directory cycle")
            }),
            "",
        ),
        (
            "blocks past EOF",
            Box::new(|s| {
                let a = inode_named(s, "a");
                a.attrs.size = 1;
                format!("checkpoint: inode {}: ", a.attrs.ino)
            }),
            "blocks mapped past EOF (size 1,",
        ),
        (
            "extent on block 1",
            Box::new(|s| {
                let a = inode_named(s, "a");
                a.extents.to_mut()[0].1 = 1;
                a.extents.to_mut()[0].2 = 1;
                format!("checkpoint: inode {}: ", a.attrs.ino)
            }),
            "pool blocks [1, +1): block 0 and 1 are the superblocks",
        ),
        (
            "extent on the log",
            Box::new(move |s| {
                let a = inode_named(s, "a");
                a.extents.to_mut()[0].1 = log;
                a.extents.to_mut()[0].2 = 1;
                format!("checkpoint: inode {}: pool blocks [{log}, +1) overlap the log region", a.attrs.ino)
            }),
            "",
        ),
        (
            "extent on the checkpoint",
            Box::new(move |s| {
                let a = inode_named(s, "a");
                a.extents.to_mut()[0].1 = ckpt;
                a.extents.to_mut()[0].2 = 1;
                format!("checkpoint: inode {}: pool blocks [{ckpt}, +1) overlap the checkpoint", a.attrs.ino)
            }),
            "",
        ),
    ];
    assert_eq!(cases.len(), 17);
    for (kind, edit, tail) in cases {
        let mut head = String::new();
        let image = with_checkpoint(|s| head = edit(s));
        assert_ne!(image, h.image, "{kind}: the edit changed nothing");
        for read_only in [true, false] {
            let msg = corrupt_mount(&image, read_only);
            assert!(msg.contains(&head) && msg.contains(tail), "{kind}: {msg}");
        }
    }
}

/// A small deterministic generator for the fuzz-entry test (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn the_fuzz_image_with_a_delta_mounts_clean_as_it_is_and_resealed() {
    // Flag bit 2: the populated image whose checkpoint is a base and a delta; bit 0 reseals every
    // checksum (the delta's too), which must leave an unedited image exactly as valid.
    for flags in [4u8, 5] {
        let outcome = fuzzing::mount_edited_image(&[flags]);
        for o in [&outcome.read_only, &outcome.read_write] {
            assert!(matches!(o, MountOutcome::Mounted(true)), "flags {flags}: {o:?}");
        }
    }
    let (image, meta) = fuzzing::populated_delta_image();
    assert_ne!(image, &fuzzing::populated_image().0, "a different image");
    let fs = mount(image, true).unwrap();
    assert!(fs.read_lock().journal().superblock().delta.is_some(), "its superblock names a delta");
    assert!(meta.len() > fuzzing::populated_image().1.len(), "the delta's blocks are metadata too");
}

#[test]
fn the_fuzz_image_with_nothing_in_its_log_mounts_lazily_and_clean() {
    // Flag bit 3: a base and two deltas, nothing in the log; bit 0 reseals every checksum.
    for flags in [8u8, 9] {
        let outcome = fuzzing::mount_edited_image(&[flags]);
        for o in [&outcome.read_only, &outcome.read_write] {
            assert!(matches!(o, MountOutcome::Mounted(true)), "flags {flags}: {o:?}");
        }
    }
    let (image, _) = fuzzing::populated_checkpointed_image();
    let pool = Pool::from_backend(Arc::new(RecordingBackend::from_image(image.clone())));
    let lazy = Fs::mount_read_only_lazy(&pool).unwrap();
    assert_eq!(lazy.lazy_inodes_read(), Some(1), "mounted lazily: the root alone");
    let whole = mount(image, true).unwrap();
    let read = |fs: &Fs| {
        let f = fs.open("/dir/renamed-again", OpenOptions::new().read(true)).unwrap();
        let mut buf = vec![0; f.metadata().unwrap().size as usize];
        f.read_exact_at(&mut buf, 0).unwrap();
        buf
    };
    assert_eq!(read(&lazy), read(&whole));
    assert_eq!(lazy.lazy_inodes_read(), Some(3), "the root, /dir and the file");
}

#[test]
fn fuzz_entry_points_survive_hundreds_of_hostile_images_and_what_mounts_checks_clean() {
    let base = fuzzing::populated_image().0.clone();
    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut tally = |o: &MountOutcome| {
        *outcomes
            .entry(match o {
                MountOutcome::NotTried => "not tried",
                MountOutcome::Failed(_) => "refused",
                MountOutcome::Mounted(true) => "mounted clean",
                MountOutcome::Mounted(false) => "mounted, problems reported",
            })
            .or_default() += 1;
    };
    for seed in 0..1000u64 {
        let mut rng = Rng(seed);
        let run = catch_unwind(AssertUnwindSafe(|| match seed % 4 {
            // Metadata edits of the populated image (a quarter of them of the one whose
            // checkpoint is a base and a delta, half of them of the one with nothing in its log,
            // which a lazy mount reads too), half of them with every checksum resealed.
            0 | 1 => {
                let mut edits = vec![(seed / 4 % 16) as u8];
                for _ in 0..1 + rng.below(12) {
                    edits.extend_from_slice(&(rng.next() as u32).to_le_bytes());
                }
                Some(fuzzing::mount_edited_image(&edits))
            }
            // Random flips anywhere in the image, data blocks included.
            2 => {
                let mut image = base.clone();
                for _ in 0..1 + rng.below(6) {
                    let p = rng.below(image.len() as u64) as usize;
                    image[p] ^= 1 + rng.below(255) as u8;
                }
                Some(fuzzing::mount_arbitrary_image(&image))
            }
            // Random bytes, and real log bytes with a few flips, through the decoders.
            _ => {
                let len = rng.below(3 * BLOCK as u64) as usize;
                let noise: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                fuzzing::decode_records(&noise);
                let log = 2 * BLOCK;
                let mut bytes = base[log - 8..log + 4 * BLOCK].to_vec();
                let first_seq = u64::from_le_bytes(base[72..80].try_into().unwrap());
                bytes[..8].copy_from_slice(&(first_seq + rng.below(3)).to_le_bytes());
                for _ in 0..rng.below(6) {
                    let p = 8 + rng.below(2 * BLOCK as u64) as usize;
                    bytes[p] ^= rng.next() as u8;
                }
                fuzzing::decode_records(&bytes);
                None
            }
        }));
        match run {
            Err(_) => panic!("a fuzz entry point panicked on seed {seed} (message above)"),
            Ok(Some(outcome)) => {
                tally(&outcome.read_only);
                tally(&outcome.read_write);
            }
            Ok(None) => {}
        }
    }
    eprintln!("hostile image outcomes: {outcomes:?}");
    // The inputs must reach both outcomes: refused at mount, and mounted clean. Mount validates
    // everything it decodes, so what it accepts, check() finds clean: none mounts with problems.
    assert!(outcomes.get("refused").copied().unwrap_or(0) >= 50, "{outcomes:?}");
    assert!(outcomes.get("mounted clean").copied().unwrap_or(0) >= 100, "{outcomes:?}");
    assert_eq!(outcomes.get("mounted, problems reported"), None, "{outcomes:?}");
}

#[test]
fn a_log_moved_off_bad_memory_keeps_its_mirror_and_either_copy_serves() {
    // A memory failure in the log moves it (a checkpoint names the new region); records written
    // after that go to the new log and to the mirror, and damage to either copy costs nothing.
    for poisoned in [MetaStructure::Log, MetaStructure::LogMirror] {
        let backend = Arc::new(RecordingBackend::new(1 << 20));
        let fs = Fs::format(&Pool::from_backend(backend.clone())).unwrap();
        fuzzing::populate(&fs).unwrap();
        let (old, mirror_offset) = {
            let g = fs.read_lock();
            let sb = g.journal().superblock().clone();
            let region = g.metadata_layout().into_iter().find(|m| m.0 == poisoned).unwrap();
            (region.1, (sb.log_mirror_start - sb.log_start) as i64)
        };
        fs.memory_failure(old * BLOCK_SIZE + 2 * BLOCK_SIZE, BLOCK_SIZE, Default::default()).unwrap();
        let (log_start, mirror_start, moved) = {
            let g = fs.read_lock();
            let sb = g.journal().superblock().clone();
            let now = if poisoned == MetaStructure::Log { sb.log_start } else { sb.log_mirror_start };
            (sb.log_start, sb.log_mirror_start, now != old)
        };
        assert!(moved, "{poisoned} moved off the bad block");
        assert_ne!((mirror_start - log_start) as i64, mirror_offset, "{poisoned}: the distance changed");
        let mut rw = OpenOptions::new();
        rw.read(true).write(true).create(true);
        let f = fs.open("/after-move", &rw).unwrap();
        f.write_at(&pattern(30, 3 * BLOCK), 0).unwrap();
        drop(f);
        fs.rename("/after-move", "/moved").unwrap();
        let expected = tree(&fs);
        let records_end = {
            let g = fs.read_lock();
            (g.journal().superblock().log_blocks * BLOCK_SIZE - g.journal().log_free_bytes()) as usize
        };
        drop(fs);
        let image = backend.durable_image();
        for base in [log_start, mirror_start] {
            // The first and the last record of the new generation, in one copy.
            for at in [30, records_end - 9] {
                let damaged = flipped(&image, &[base as usize * BLOCK + at]);
                second_copy_serves(&damaged, &expected, "log");
            }
        }
    }
}

#[test]
fn checkpoint_replay_and_operation_sequence_entry_points_survive_hundreds_of_inputs() {
    use ferrodax::fuzzing::ReplayVerdict;
    let seeds = fuzzing::seed_corpus();
    let of = |target: &str| -> Vec<Vec<u8>> {
        seeds.iter().filter(|s| s.0 == target).map(|s| s.2.clone()).collect()
    };
    // Each input is a seed with a few bytes changed, or (every fourth) plain noise.
    let mutated = |base: &[Vec<u8>], seed: u64| -> Vec<u8> {
        let mut rng = Rng(seed);
        if seed % 4 == 3 {
            return (0..rng.below(600)).map(|_| rng.next() as u8).collect();
        }
        let mut bytes = base[rng.below(base.len() as u64) as usize].clone();
        for _ in 0..1 + rng.below(4) {
            if !bytes.is_empty() {
                let p = rng.below(bytes.len() as u64) as usize;
                bytes[p] = rng.next() as u8;
            }
        }
        bytes
    };
    let run = |what: &str, seed: u64, f: &mut dyn FnMut()| {
        if catch_unwind(AssertUnwindSafe(f)).is_err() {
            panic!("{what} panicked on input {seed} (message above)");
        }
    };

    let checkpoints = of("decode_checkpoint");
    for seed in 0..300 {
        let input = mutated(&checkpoints, seed);
        run("decode_checkpoint", seed, &mut || fuzzing::decode_checkpoint(&input));
    }

    let mut verdicts: BTreeMap<&str, usize> = BTreeMap::new();
    let replays = of("replay_log");
    for seed in 0..300 {
        let input = mutated(&replays, seed);
        run("replay_log", seed, &mut || {
            let outcome = fuzzing::replay_log(&input);
            outcome.assert_no_new_finding();
            for v in [&outcome.read_only, &outcome.read_write] {
                *verdicts
                    .entry(match v {
                        ReplayVerdict::Refused(_) => "refused",
                        ReplayVerdict::Clean => "clean",
                        ReplayVerdict::AcceptedUnsound(_) => "accepted, known gap",
                    })
                    .or_default() += 1;
            }
        });
    }
    eprintln!("replay verdicts: {verdicts:?}");
    // The inputs reach both sides of replay: records refused, and records that replay cleanly.
    assert!(verdicts.get("refused").copied().unwrap_or(0) >= 100, "{verdicts:?}");
    assert!(verdicts.get("clean").copied().unwrap_or(0) >= 25, "{verdicts:?}");

    let mut succeeded: BTreeMap<&str, usize> = BTreeMap::new();
    let sequences = of("op_sequence");
    for seed in 0..200 {
        let input = mutated(&sequences, seed);
        run("op_sequence", seed, &mut || {
            for (kind, n) in fuzzing::op_sequence(&input).succeeded {
                *succeeded.entry(kind).or_default() += n;
            }
        });
    }
    eprintln!("operations that succeeded: {succeeded:?}");
    // Every kind of step succeeded somewhere, so the model was compared after each kind.
    for kind in [
        "create",
        "mkdir",
        "rmdir",
        "unlink",
        "rename",
        "write",
        "truncate",
        "reflink",
        "dedupe",
        "unshare",
        "remount",
        "poison",
        "lazy mount",
    ] {
        assert!(succeeded.get(kind).copied().unwrap_or(0) >= 1, "{kind}: {succeeded:?}");
    }
}

#[test]
fn repairing_a_pool_whose_first_record_is_lost_leaves_a_pool_that_mounts() {
    // The only record of the generation, at log byte 0, damaged in both copies (the mirror's
    // header still names it): the repaired pool's log must start beyond it, or the leftover header
    // would "prove" a lost record of the new generation and the repaired pool would refuse to
    // mount again.
    let backend = Arc::new(RecordingBackend::new(1 << 20));
    let fs = Fs::format(&Pool::from_backend(backend.clone())).unwrap();
    fs.checkpoint().unwrap();
    fs.create_dir("/only-record").unwrap();
    let sb = fs.read_lock().journal().superblock().clone();
    drop(fs);
    let mut image = backend.durable_image();
    for base in [sb.log_start, sb.log_mirror_start] {
        image[base as usize * BLOCK + 40] ^= 0x5a;
    }
    assert!(matches!(mount(&image, true), Err(Error::Corrupt(_))));
    let backend = Arc::new(RecordingBackend::from_image(image));
    Fs::repair(&Pool::from_backend(backend.clone())).unwrap();
    for round in 0..3 {
        let fs = Fs::mount(&Pool::from_backend(backend.clone()))
            .unwrap_or_else(|e| panic!("round {round}: the repaired pool does not mount: {e}"));
        let report = fs.check();
        assert!(report.is_clean() && report.repaired.is_empty(), "round {round}: {report}");
        let mut rw = OpenOptions::new();
        rw.read(true).write(true).create(true);
        fs.open(&format!("/after-repair-{round}"), &rw).unwrap().write_at(b"new", 0).unwrap();
    }
}

#[test]
fn the_newest_superblock_slot_damaged_in_both_copies_is_never_a_silent_roll_back() {
    // The newest slot bad in both copies: mount falls back to the previous generation only saying
    // so, or refuses it (here its checkpoint chains were freed and reused since).
    let h = history();
    let sb = current_superblock(&h.image);
    let slot = superblock::SLOT_OFFSETS[sb.slot()];
    let image = flipped(&h.image, &[slot + 48, BLOCK + slot + 48]);
    for read_only in [true, false] {
        match mount(&image, read_only) {
            // The older generation's checkpoint was freed and reused, or its log has newer records.
            Err(e) => assert_eq!(e.errno(), libc::EUCLEAN, "{e}"),
            Ok(fs) => {
                let notes = fs.read_lock().mount_notes().repaired.clone();
                assert!(notes.iter().any(|n| n.contains("newer generation")), "{notes:?}");
            }
        }
    }
}

/// Mount ends its search for records past the end of the log at an aligned stretch of
/// `LOG_TERMINATOR_BYTES` zeros. Records holding the longest zero run a record can carry (64 KiB
/// extended-attribute values of zeros, one after another) must never pass for such a stretch: the
/// first of them, damaged in both copies, is still proven committed by the record behind its
/// zeros, and mount refuses instead of silently ending the log there.
#[test]
fn records_full_of_zeros_never_end_the_search_for_later_records() {
    let backend = Arc::new(RecordingBackend::new(64 << 20));
    let fs = Fs::format(&Pool::from_backend(backend.clone())).unwrap();
    drop(fs.open("/f", OpenOptions::new().write(true).create(true)).unwrap());
    let log_pos = |fs: &Fs| {
        let g = fs.read_lock();
        (g.journal().superblock().log_blocks * BLOCK_SIZE - g.journal().log_free_bytes()) as usize
    };
    let checkpoints = fs.read_lock().journal().stats.checkpoints;
    let zeros = vec![0u8; ferrodax::format::MAX_XATTR_VALUE_LEN];
    // The damaged record is the first of them: the search starts at it and crosses its zeros.
    let damaged = log_pos(&fs);
    for i in 0..6 {
        fs.set_xattr("/f", &format!("user.zeros{i}"), &zeros, 0).unwrap();
    }
    fs.set_xattr("/f", "user.last", b"behind the zeros", 0).unwrap();
    // Log that the checkpoint does not grow by (one value replaced), so the log outweighs it.
    for _ in 0..3 {
        fs.set_xattr("/f", "user.pad", &[1; 4096], 0).unwrap();
    }
    let end = log_pos(&fs) as u64;
    assert!(end > 3 * ferrodax::fs::journal::LOG_TERMINATOR_BYTES, "the zeros span several stretches");
    assert_eq!(fs.read_lock().journal().stats.checkpoints, checkpoints, "all in one log");
    let sb = fs.read_lock().journal().superblock().clone();
    // Taken while mounted: unmounting writes a checkpoint after this much log.
    let image = backend.volatile_image();
    assert!(fs.read_lock().checkpoint_due_at_unmount());
    let log = sb.log_start as usize * BLOCK + damaged;
    let mirror = sb.log_mirror_start as usize * BLOCK + damaged;
    // The log copy's magic and the mirror copy's sequence number: no header names the record.
    let image = flipped(&image, &[log, mirror + 9]);
    for read_only in [true, false] {
        let msg = corrupt_mount(&image, read_only);
        assert!(msg.contains("damaged in both copies, yet it was committed"), "{msg}");
    }
}

/// Review: a checkpoint now zeroes the first two terminator stretches of the old log. When the
/// newest superblock slot is then damaged in both copies, mount falls back to the previous
/// generation, whose log held the records the lost checkpoint was made of: before the change they
/// were still there and replayed; now they are gone and mount succeeds with the older checkpoint
/// alone (only a "may be lost" note), dropping operations committed in that generation's log.
#[test]
fn falling_back_to_the_previous_generation_replays_its_log_or_refuses() {
    let backend = Arc::new(RecordingBackend::new(64 << 20));
    let fs = Fs::format(&Pool::from_backend(backend.clone())).unwrap();
    fs.checkpoint().unwrap();
    let mut rw = OpenOptions::new();
    rw.read(true).write(true).create(true);
    fs.open("/kept", &rw).unwrap().write_at(b"committed in the older generation's log", 0).unwrap();
    let expected = tree(&fs);
    // What an unmount does once the log outgrew a checkpoint; no record follows it.
    fs.checkpoint().unwrap();
    let image = backend.durable_image();
    let sb = current_superblock(&image);
    let slot = superblock::SLOT_OFFSETS[sb.slot()];
    let image = flipped(&image, &[slot + 48, BLOCK + slot + 48]);
    for read_only in [true, false] {
        match mount(&image, read_only) {
            Err(e) => assert_eq!(e.errno(), libc::EUCLEAN, "{e}"),
            Ok(fs) => {
                assert_eq!(tree(&fs), expected, "read_only {read_only}: {:?}", fs.read_lock().mount_notes())
            }
        }
    }
}
