//! Files' extents as mount leaves them: packed (in the checkpoint's payload, or copied into one
//! buffer) and read in place (no tree built), shared by a whole-file reflink, turned into a tree by
//! the first change of the file that changes (and only that file), written back by the next
//! checkpoint as they are, and through all of it read, owned and checked exactly as extents held
//! in a tree.

use ferrodax::pool::RecordingBackend;
use ferrodax::{Fs, OpenOptions, Pool};
use std::sync::Arc;

const BLOCK: u64 = 4096;
/// Blocks written to /big, every other one: as many extents.
const BIG_EXTENTS: u64 = 192;

fn rw() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true);
    o
}

/// The bytes written to file block `block` of /big.
fn block_bytes(block: u64) -> Vec<u8> {
    (0..BLOCK)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).wrapping_add(block as u32 * 7919) as u8)
        .collect()
}

fn read_only() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true);
    o
}

fn mount(image: Vec<u8>) -> (Arc<RecordingBackend>, Fs) {
    let backend = Arc::new(RecordingBackend::from_image(image));
    let fs = Fs::mount(&Pool::from_backend(backend.clone())).unwrap();
    (backend, fs)
}

/// A pool whose checkpoint holds /big (an extent at every other block, `BIG_EXTENTS` of them),
/// /small (three extents) and /empty (none), with an empty log.
fn checkpointed_pool() -> Vec<u8> {
    let backend = Arc::new(RecordingBackend::new(16 << 20));
    let fs = Fs::format(&Pool::from_backend(backend.clone())).unwrap();
    let big = fs.open("/big", &rw()).unwrap();
    for i in 0..BIG_EXTENTS {
        big.write_at(&block_bytes(2 * i), 2 * i * BLOCK).unwrap();
    }
    let small = fs.open("/small", &rw()).unwrap();
    for i in 0..3 {
        small.write_at(&block_bytes(100 + i), 2 * i * BLOCK).unwrap();
    }
    fs.open("/empty", &rw()).unwrap();
    fs.checkpoint().unwrap();
    drop((big, small));
    drop(fs);
    backend.volatile_image()
}

fn packed(fs: &Fs, path: &str) -> bool {
    let ino = fs.metadata(path).unwrap().ino;
    fs.read_lock().state().inodes[&ino].extents.is_packed()
}

/// The bytes of `path`, whole.
fn contents(fs: &Fs, path: &str) -> Vec<u8> {
    let file = fs.open(path, &read_only()).unwrap();
    let mut buf = vec![0; fs.metadata(path).unwrap().size as usize];
    assert_eq!(file.read_at(&mut buf, 0).unwrap(), buf.len());
    buf
}

/// What /big holds as written: its blocks, zeros in the holes between them.
fn big_as_written() -> Vec<u8> {
    let mut bytes = vec![0; ((2 * BIG_EXTENTS - 1) * BLOCK) as usize];
    for i in 0..BIG_EXTENTS {
        let at = (2 * i * BLOCK) as usize;
        bytes[at..at + BLOCK as usize].copy_from_slice(&block_bytes(2 * i));
    }
    bytes
}

#[test]
fn a_mount_leaves_every_files_extents_packed_and_reads_them_as_written() {
    let (_, fs) = mount(checkpointed_pool());
    assert!(packed(&fs, "/big") && packed(&fs, "/small"), "extents are read in place");
    assert!(!packed(&fs, "/empty"), "a file without extents has nothing to pack");
    assert_eq!(contents(&fs, "/big"), big_as_written());
    let big = fs.open("/big", &read_only()).unwrap();
    assert_eq!(fs.fiemap(&big).unwrap().len() as u64, BIG_EXTENTS);
    let report = fs.check();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.extents, BIG_EXTENTS + 3);
    assert!(packed(&fs, "/big"), "reading, mapping and checking change nothing");
}

#[test]
fn a_whole_file_reflink_shares_the_packed_extents_and_a_write_unpacks_only_the_file_written() {
    let (_, fs) = mount(checkpointed_pool());
    let big = fs.open("/big", &rw()).unwrap();
    let copy = fs.open("/copy", &rw()).unwrap();
    let len = fs.metadata("/big").unwrap().size;
    assert_eq!(fs.reflink(&big, 0, &copy, 0, len).unwrap(), len);
    assert!(packed(&fs, "/big") && packed(&fs, "/copy"), "the clone shares the packed extents");
    assert_eq!(contents(&fs, "/copy"), big_as_written());
    // Every block of /big now has two owners: /big and /copy.
    let first = fs.fiemap(&big).unwrap()[0].physical;
    let owners = fs.owners(first, BLOCK);
    assert_eq!(owners.len(), 2, "{owners:?}");

    let new_block = vec![0xa5; BLOCK as usize];
    copy.write_at(&new_block, 4 * BLOCK).unwrap();
    assert!(!packed(&fs, "/copy"), "the file written is unpacked");
    assert!(packed(&fs, "/big"), "the other file keeps its packed extents");
    assert_eq!(contents(&fs, "/big"), big_as_written());
    let mut expected = big_as_written();
    expected[(4 * BLOCK) as usize..(5 * BLOCK) as usize].copy_from_slice(&new_block);
    assert_eq!(contents(&fs, "/copy"), expected);
    assert_eq!(fs.owners(first, BLOCK).len(), 2, "block 0 is still shared");
    let report = fs.check();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn a_checkpoint_keeps_packed_extents_packed_and_the_next_mount_reads_the_same_files() {
    let (backend, fs) = mount(checkpointed_pool());
    let big = fs.open("/big", &rw()).unwrap();
    let copy = fs.open("/copy", &rw()).unwrap();
    let len = fs.metadata("/big").unwrap().size;
    fs.reflink(&big, 0, &copy, 0, len).unwrap();
    fs.open("/small", &rw()).unwrap().write_at(b"changed", 0).unwrap();
    fs.checkpoint().unwrap();
    assert!(packed(&fs, "/big"), "a checkpoint reads packed extents in place too");
    drop((big, copy));
    drop(fs);
    let (_, fs) = mount(backend.volatile_image());
    assert!(packed(&fs, "/big") && packed(&fs, "/copy"));
    assert_eq!(contents(&fs, "/big"), big_as_written());
    assert_eq!(contents(&fs, "/copy"), big_as_written());
    assert_eq!(&contents(&fs, "/small")[..7], b"changed");
    let report = fs.check();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.shared_blocks, BIG_EXTENTS);
}
