//! Guards SPEC section 6's second promise: "a corrupt pool image never crashes the program: mount
//! or fsck says what is wrong and where", and the superblock redundancy of the format.
//!
//! A pool is built with a known history (one log record per operation, the tree after each).
//! Then bytes are flipped in one superblock copy (mount repairs it from the other), in both (mount
//! fails naming both copies), in the checkpoint (mount fails naming the checkpoint), in the log (a
//! damaged last record is indistinguishable from a torn write and is dropped; a damaged record
//! with intact later records is refused, since replaying up to it would silently lose committed
//! operations whose freed blocks may already hold other data), and in unused space (harmless).
//! Proptests flip random bytes of random metadata; CRC-valid but meaningless records are
//! appended by hand; and the `ferrodax::fuzzing` entry points run over hundreds of hostile images.

use ferrodax::format::record::{encode_record, InodeAttrs, Mutation};
use ferrodax::format::{checksum, checksum_with_hole, BLOCK_SIZE};
use ferrodax::fs::ownership::MetaStructure;
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
    /// Checkpoint blocks with the bytes of their header and payload.
    checkpoint: Vec<(usize, usize)>,
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
        let checkpoint = layout
            .iter()
            .filter(|m| m.0 == MetaStructure::Checkpoint)
            .map(|m| {
                let at = m.1 as usize * BLOCK;
                let payload = u32::from_le_bytes(image[at + 24..at + 28].try_into().unwrap()) as usize;
                (at, at + 32 + payload)
            })
            .collect();
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
            checkpoint,
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
    for copy in 0..2usize {
        for &p in &SUPERBLOCK_POSITIONS {
            let image = flipped(&h.image, &[copy * BLOCK + p]);
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
                repaired[copy * BLOCK..(copy + 1) * BLOCK][..256],
                h.image[copy * BLOCK..(copy + 1) * BLOCK][..256],
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
        let image = flipped(&h.image, &[p, BLOCK + SUPERBLOCK_POSITIONS[(p + 1) % 6]]);
        for read_only in [true, false] {
            let msg = corrupt_mount(&image, read_only);
            assert!(msg.contains("superblock copy 0") && msg.contains("superblock copy 1"), "{msg}");
        }
    }
    // A pool of zeros names both copies too (and calls them what they are not).
    let msg = corrupt_mount(&vec![0; 64 * BLOCK], true);
    assert!(msg.contains("copy 0") && msg.contains("copy 1") && msg.contains("magic"), "{msg}");
}

#[test]
fn damaged_checkpoint_fails_to_mount_naming_the_checkpoint() {
    let h = history();
    assert!(!h.checkpoint.is_empty());
    for &(start, end) in &h.checkpoint {
        // Magic, generation, next pointer, payload length, checksum, first and last payload byte.
        for p in [start, start + 9, start + 17, start + 25, start + 29, start + 32, end - 1] {
            for read_only in [true, false] {
                let msg = corrupt_mount(&flipped(&h.image, &[p]), read_only);
                assert!(msg.contains("checkpoint"), "byte {} of the block: {msg}", p - start);
            }
        }
        // The rest of the block is not part of the checkpoint: damage there changes nothing.
        if end < start + BLOCK {
            let fs = mount(&flipped(&h.image, &[end, start + BLOCK - 1]), true).unwrap();
            assert!(fs.check().is_clean());
            assert_eq!(&tree(&fs), h.trees.last().unwrap());
        }
    }
}

#[test]
fn damaged_last_log_record_is_dropped_like_a_torn_write() {
    let h = history();
    let &(start, end) = h.records.last().unwrap();
    // Header (magic, length, sequence, checksum) and payload bytes.
    for p in [start, start + 5, start + 9, start + 17, start + 30, end - 9] {
        for read_only in [true, false] {
            let fs = mount(&flipped(&h.image, &[p]), read_only).unwrap();
            let report = fs.check();
            assert!(report.is_clean(), "byte {} of the last record: {report}", p - start);
            assert_eq!(&tree(&fs), &h.trees[h.trees.len() - 2], "the last operation must be dropped whole");
        }
    }
}

#[test]
fn damaged_log_record_followed_by_intact_ones_refuses_to_mount() {
    let h = history();
    for (i, &(start, end)) in h.records.iter().enumerate().take(h.records.len() - 1) {
        for p in [start, start + 9, start + 17, (start + end) / 2] {
            for read_only in [true, false] {
                let msg = corrupt_mount(&flipped(&h.image, &[p]), read_only);
                assert!(
                    msg.contains("damaged, yet later records are present"),
                    "record of operation {}: byte {}: {msg}",
                    i + 1,
                    p - start
                );
            }
        }
    }
}

#[test]
fn damage_in_unused_log_space_is_harmless() {
    let h = history();
    let end = h.records.last().unwrap().1;
    // Right after the last record, and far beyond it (stale records of an earlier generation).
    for p in [end, end + 8, end + 1000, h.log.1 - 1] {
        for read_only in [true, false] {
            let fs = mount(&flipped(&h.image, &[p]), read_only).unwrap();
            assert!(fs.check().is_clean());
            assert_eq!(&tree(&fs), h.trees.last().unwrap());
        }
    }
}

/// What flipping bytes at `positions` (all inside one structure of the history image) must lead
/// to; `image` is the damaged image.
fn expect_outcome(h: &History, image: &[u8], positions: &[usize], read_only: bool) -> Result<(), String> {
    let in_range = |(s, e): (usize, usize)| positions.iter().all(|&p| s <= p && p < e);
    let meaningful: Vec<usize> =
        positions.iter().copied().filter(|&p| !h.padding.iter().any(|&(s, e)| s <= p && p < e)).collect();
    let damaged_op = h.records.iter().position(|&r| in_range(r)).filter(|_| !meaningful.is_empty());
    let in_checkpoint = h.checkpoint.iter().any(|&r| in_range(r));
    match mount(image, read_only) {
        Err(e) => {
            if e.errno() != libc::EUCLEAN {
                return Err(format!("mount failed with {e:?}, not Corrupt"));
            }
            let msg = e.to_string();
            let expected = match damaged_op {
                _ if in_checkpoint => msg.contains("checkpoint"),
                Some(i) => i + 1 < h.records.len() && msg.contains("later records are present"),
                None => false, // a superblock copy (the other serves) or unused space
            };
            if expected {
                Ok(())
            } else {
                Err(format!("unexpected mount failure: {msg}"))
            }
        }
        Ok(fs) => {
            let report = fs.check();
            if !report.is_clean() {
                return Err(format!("mounted but check is not clean:\n{report}"));
            }
            if in_checkpoint {
                return Err("damage in the checkpoint went unnoticed".into());
            }
            let expected = match damaged_op {
                Some(i) if i + 1 == h.records.len() => &h.trees[i],
                Some(i) => return Err(format!("damage in the record of operation {} went unnoticed", i + 1)),
                None => h.trees.last().unwrap(),
            };
            if &tree(&fs) != expected {
                return Err("mounted a tree that is not the expected one".into());
            }
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

    /// Flips 1-4 bytes inside one structure (a superblock copy's checksummed bytes, a checkpoint
    /// block's header and payload, one log record, or unused log space) and checks the exact
    /// outcome the structure calls for.
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
        ranges.extend(&h.records);
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

/// Appends a record with a valid checksum but hostile content at the end of the history's log.
fn with_record(mutations: &[Mutation]) -> Vec<u8> {
    let h = history();
    let fs = mount(&h.image, true).unwrap();
    let g = fs.read_lock();
    let seq = g.journal().superblock().log_first_seq + g.journal().stats.replayed;
    let record = encode_record(seq, mutations);
    let at = h.records.last().unwrap().1;
    let mut image = h.image.clone();
    image[at..at + record.len()].copy_from_slice(&record);
    image
}

fn attrs_of(path: &str) -> InodeAttrs {
    let fs = mount(&history().image, true).unwrap();
    let ino = fs.metadata(path).unwrap().ino;
    let attrs = fs.read_lock().state().inodes[&ino].attrs.clone();
    attrs
}

#[test]
fn checksummed_but_meaningless_records_are_refused_or_reported() {
    // A directory (or the root) without a name: a read-only mount shows it and check reports
    // it; a read-write mount must refuse rather than try to reclaim it like an orphan file.
    for path in ["/dir", "/"] {
        let mut dir = attrs_of(path);
        dir.nlink = 0;
        let image = with_record(&[Mutation::PutInode(dir)]);
        let fs = mount(&image, true).unwrap();
        let report = fs.check();
        assert!(!report.is_clean(), "{path}: {report}");
        let msg = corrupt_mount(&image, false);
        assert!(msg.contains("link count 0"), "{path}: {msg}");
    }
    // Inode numbers that cannot be handed out, sizes past the largest file, maps past it.
    let mut max = attrs_of("/a");
    max.ino = u64::MAX;
    max.name = b"max".to_vec();
    let mut huge = attrs_of("/a");
    huge.size = u64::MAX - 5;
    let a = attrs_of("/a").ino;
    for (what, mutation, expect) in [
        ("inode number", Mutation::PutInode(max), "inode number"),
        ("size", Mutation::PutInode(huge), "largest file size"),
        ("map", Mutation::Map { ino: a, file_block: u64::MAX / 4096, len: 1, phys: None }, "bad range"),
        (
            "pool range",
            Mutation::Map { ino: a, file_block: 0, len: 1, phys: Some(1 << 40) },
            "outside the pool",
        ),
        ("free with blocks", Mutation::FreeInode { ino: a }, "still has blocks"),
    ] {
        for read_only in [true, false] {
            let msg = corrupt_mount(&with_record(std::slice::from_ref(&mutation)), read_only);
            assert!(msg.contains(expect), "{what}: {msg}");
        }
    }
}

#[test]
fn checkpoint_with_inode_numbers_at_or_above_next_ino_is_refused() {
    // Rewrite the checkpoint's next_ino (the first payload field) to 2 and reseal every checksum
    // over it: every inode above 1 would be handed out again.
    let h = history();
    assert_eq!(h.checkpoint.len(), 1, "the history's checkpoint fits one block");
    let (start, end) = h.checkpoint[0];
    let mut image = h.image.clone();
    image[start + 32..start + 40].copy_from_slice(&2u64.to_le_bytes());
    let crc = checksum_with_hole(&image[start..start + 28], &image[start + 32..end]);
    image[start + 28..start + 32].copy_from_slice(&crc.to_le_bytes());
    let payload_crc = checksum(&image[start + 32..end]);
    for copy in 0..2 {
        let sb = copy * BLOCK;
        image[sb + 96..sb + 100].copy_from_slice(&payload_crc.to_le_bytes());
        let crc = checksum_with_hole(&image[sb..sb + 252], &[]);
        image[sb + 252..sb + 256].copy_from_slice(&crc.to_le_bytes());
    }
    for read_only in [true, false] {
        let msg = corrupt_mount(&image, read_only);
        assert!(msg.contains("checkpoint") && msg.contains("next free inode number 2"), "{msg}");
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
fn fuzz_entry_points_survive_hundreds_of_hostile_images() {
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
            // Metadata edits of the populated image, half of them with every checksum resealed.
            0 | 1 => {
                let mut edits = vec![(seed / 4 % 4) as u8];
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
    // The inputs must reach every depth: refused at mount, mounted clean, mounted with problems.
    assert!(outcomes.get("refused").copied().unwrap_or(0) >= 50, "{outcomes:?}");
    assert!(outcomes.get("mounted clean").copied().unwrap_or(0) >= 100, "{outcomes:?}");
    assert!(outcomes.get("mounted, problems reported").copied().unwrap_or(0) >= 1, "{outcomes:?}");
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
    assert!(verdicts.get("clean").copied().unwrap_or(0) >= 50, "{verdicts:?}");

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
        "create", "mkdir", "rmdir", "unlink", "rename", "write", "truncate", "reflink", "dedupe", "unshare",
        "remount", "poison",
    ] {
        assert!(succeeded.get(kind).copied().unwrap_or(0) >= 1, "{kind}: {succeeded:?}");
    }
}
