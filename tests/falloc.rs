//! fallocate, SEEK_DATA/SEEK_HOLE and copy_file_range where the model test cannot look: DAX views
//! of the changed file follow a punch, a zero, a collapse and an insert (and views of a clone that
//! shares the blocks keep their bytes), the reverse map names the moved owners at their new file
//! offsets, poisoned blocks fail a punch that must read them and move with a collapse,
//! copy_file_range between pools is EXDEV after the handle checks, and a client of the pool
//! server gets the same results and errnos as a direct mount.

mod server_common;

use ferrodax::dax::{MapAccess, PageState};
use ferrodax::fs::falloc::{
    FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE,
    FALLOC_FL_ZERO_RANGE,
};
use ferrodax::{File, Fs, OwnerKind, Pool};
use server_common::{rw, Server, TestPool};

const BLOCK: u64 = 4096;
const PUNCH: u32 = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;

/// A file whose block `i` holds the byte `i + 1` throughout.
fn numbered(fs: &Fs, path: &str, blocks: u64) -> File {
    let f = fs.open(path, &rw()).unwrap();
    for i in 0..blocks {
        f.write_at(&vec![i as u8 + 1; BLOCK as usize], i * BLOCK).unwrap();
    }
    f
}

/// The first byte of each block of the file, read through `read_at`.
fn block_bytes(f: &File) -> Vec<u8> {
    let size = f.metadata().unwrap().size;
    (0..size.div_ceil(BLOCK))
        .map(|i| {
            let mut b = [0u8; 1];
            f.read_at(&mut b, i * BLOCK).unwrap();
            b[0]
        })
        .collect()
}

/// The first byte of each of the first `pages` pages of a view, read through the view.
fn view_bytes(view: &ferrodax::api::Mapping, pages: u64) -> Vec<u8> {
    (0..pages)
        .map(|i| {
            let mut b = [0u8; 1];
            view.read_at((i * BLOCK) as usize, &mut b).unwrap();
            b[0]
        })
        .collect()
}

fn assert_clean(fs: &Fs) {
    let report = fs.check();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn a_view_follows_punch_zero_collapse_and_insert_of_its_file() {
    let fs = Fs::format(&Pool::memfd(16 << 20).unwrap()).unwrap();
    let f = numbered(&fs, "/f", 8);
    let view = f.map(0, 16 * BLOCK, MapAccess::ReadWrite).unwrap();
    assert_eq!(view_bytes(&view, 8), vec![1, 2, 3, 4, 5, 6, 7, 8]);

    f.fallocate(PUNCH, 2 * BLOCK, BLOCK).unwrap();
    assert_eq!(view.page_state(2), PageState::Hole);
    assert_eq!(view_bytes(&view, 8), vec![1, 2, 0, 4, 5, 6, 7, 8]);
    assert_clean(&fs);

    f.fallocate(FALLOC_FL_ZERO_RANGE, 5 * BLOCK, 10).unwrap();
    let mut head = [0xffu8; 12];
    view.read_at((5 * BLOCK) as usize, &mut head).unwrap();
    assert_eq!(
        head,
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 6, 6],
        "the zeroed bytes and the kept ones, through the view"
    );
    assert_clean(&fs);

    // Block 3 goes; blocks 4.. move down by one; the size shrinks; the last page is past EOF.
    f.fallocate(FALLOC_FL_COLLAPSE_RANGE, 3 * BLOCK, BLOCK).unwrap();
    assert_eq!(f.metadata().unwrap().size, 7 * BLOCK);
    assert_eq!(view_bytes(&view, 7), vec![1, 2, 0, 5, 0, 7, 8]);
    assert_eq!(view.page_state(7), PageState::PastEof);
    assert_eq!(block_bytes(&f), vec![1, 2, 0, 5, 0, 7, 8]);
    assert_clean(&fs);

    // A hole opens at block 1; everything from there moves up by one.
    f.fallocate(FALLOC_FL_INSERT_RANGE, BLOCK, BLOCK).unwrap();
    assert_eq!(view.page_state(1), PageState::Hole);
    assert_eq!(view_bytes(&view, 8), vec![1, 0, 2, 0, 5, 0, 7, 8]);
    assert_clean(&fs);

    // A store through the view lands at the page's new file offset.
    view.store_plain((3 * BLOCK) as usize, &[0x5a]).unwrap();
    assert_eq!(block_bytes(&f), vec![1, 0, 2, 0x5a, 5, 0, 7, 8]);
    assert_clean(&fs);
}

#[test]
fn a_clone_keeps_its_bytes_and_the_reverse_map_follows_the_moved_owner() {
    let fs = Fs::format(&Pool::memfd(16 << 20).unwrap()).unwrap();
    let a = numbered(&fs, "/a", 6);
    let b = fs.open("/b", &rw()).unwrap();
    fs.reflink(&a, 0, &b, 0, 0).unwrap();
    let b_view = b.map(0, 6 * BLOCK, MapAccess::Read).unwrap();
    let b_block = |i: u64| {
        fs.fiemap(&b)
            .unwrap()
            .iter()
            .find(|e| e.logical <= i * BLOCK && i * BLOCK < e.logical + e.length)
            .map(|e| e.physical + (i * BLOCK - e.logical))
            .unwrap()
    };
    let pool_block_4 = b_block(4);

    a.fallocate(FALLOC_FL_COLLAPSE_RANGE, 0, 2 * BLOCK).unwrap();
    a.fallocate(PUNCH, 100, 200).unwrap();
    a.fallocate(FALLOC_FL_INSERT_RANGE, BLOCK, 3 * BLOCK).unwrap();
    assert_eq!(block_bytes(&a), vec![3, 0, 0, 0, 4, 5, 6]);
    assert_eq!(block_bytes(&b), vec![1, 2, 3, 4, 5, 6], "the clone's bytes never change");
    assert_eq!(view_bytes(&b_view, 6), vec![1, 2, 3, 4, 5, 6], "nor what its view shows");

    // Pool block of /b's block 4 (byte 5) is /a's block 5 now: both owners, at their offsets.
    let mut owners: Vec<(String, u64, usize)> = fs
        .owners(pool_block_4, BLOCK)
        .into_iter()
        .map(|o| match o.owner {
            OwnerKind::File { path, file_offset, refcount, .. } => (path.unwrap(), file_offset, refcount),
            other => panic!("{other:?}"),
        })
        .collect();
    owners.sort();
    assert_eq!(owners, vec![("/a".to_string(), 5 * BLOCK, 2), ("/b".to_string(), 4 * BLOCK, 2)]);
    assert_clean(&fs);
}

#[test]
fn seek_finds_data_and_holes_and_says_enxio_past_eof() {
    let fs = Fs::format(&Pool::memfd(16 << 20).unwrap()).unwrap();
    let mut f = fs.open("/f", &rw()).unwrap();
    f.write_at(b"x", 3 * BLOCK + 5).unwrap();
    f.fallocate(FALLOC_FL_KEEP_SIZE, BLOCK, 10).unwrap();
    assert_eq!(f.seek_data(0).unwrap(), BLOCK, "preallocated blocks are data");
    assert_eq!(f.seek_hole(BLOCK).unwrap(), 2 * BLOCK);
    assert_eq!(f.seek_data(2 * BLOCK + 7).unwrap(), 3 * BLOCK);
    assert_eq!(f.seek_hole(3 * BLOCK).unwrap(), 3 * BLOCK + 6, "EOF is a hole");
    assert_eq!(f.seek_data(3 * BLOCK + 6).unwrap_err().errno(), libc::ENXIO);
    assert_eq!(f.seek_hole(1 << 40).unwrap_err().errno(), libc::ENXIO);
}

#[test]
fn poisoned_blocks_fail_a_partial_punch_with_eio_and_move_with_a_collapse() {
    let fs = Fs::format(&Pool::memfd(16 << 20).unwrap()).unwrap();
    let f = numbered(&fs, "/f", 4);
    let bad = fs.fiemap(&f).unwrap()[0].physical + 2 * BLOCK; // file block 2
    fs.memory_failure(bad, BLOCK, ferrodax::memfail::FailureFlags::default()).unwrap();
    let eio = |r: ferrodax::Result<()>| r.unwrap_err().errno();
    assert_eq!(eio(f.fallocate(PUNCH, 2 * BLOCK + 10, 10)), libc::EIO, "the kept bytes cannot be read");
    assert_eq!(eio(f.fallocate(FALLOC_FL_ZERO_RANGE, 2 * BLOCK, 10)), libc::EIO);
    let mut kept = [0u8; 2 * BLOCK as usize];
    f.read_exact_at(&mut kept, 0).unwrap();
    assert!(kept[..BLOCK as usize].iter().all(|&b| b == 1) && kept[BLOCK as usize..].iter().all(|&b| b == 2));
    assert_eq!(f.metadata().unwrap().size, 4 * BLOCK, "nothing changed");
    // Moving the bad block reads nothing: the poison goes with it, to file block 1.
    f.fallocate(FALLOC_FL_COLLAPSE_RANGE, BLOCK, BLOCK).unwrap();
    let mut b = [0u8; 1];
    assert_eq!(f.read_at(&mut b, BLOCK).unwrap_err().errno(), libc::EIO);
    f.read_at(&mut b, 2 * BLOCK).unwrap();
    assert_eq!(b, [4]);
    // Punching it whole drops the reference without reading it.
    f.fallocate(PUNCH, BLOCK, BLOCK).unwrap();
    f.read_at(&mut b, BLOCK).unwrap();
    assert_eq!(b, [0]);
    assert_eq!(fs.bad_blocks(), vec![(bad / BLOCK, 1)], "the bad block stays quarantined");
    assert_clean(&fs);
}

#[test]
fn copy_file_range_between_pools_is_exdev_after_the_handle_checks() {
    let one = Fs::format(&Pool::memfd(16 << 20).unwrap()).unwrap();
    let two = Fs::format(&Pool::memfd(16 << 20).unwrap()).unwrap();
    let a = numbered(&one, "/a", 2);
    let b = two.open("/b", &rw()).unwrap();
    assert_eq!(one.copy_file_range(&a, 0, &b, 0, BLOCK).unwrap_err().errno(), libc::EXDEV);
    let read_only = two.open("/b", ferrodax::OpenOptions::new().read(true)).unwrap();
    assert_eq!(
        one.copy_file_range(&a, 0, &read_only, 0, BLOCK).unwrap_err().errno(),
        libc::EBADF,
        "EBADF comes before EXDEV"
    );
    two.create_dir("/d").unwrap();
    let dir = two.open("/d", ferrodax::OpenOptions::new().read(true)).unwrap();
    assert_eq!(one.copy_file_range(&a, 0, &dir, 0, BLOCK).unwrap_err().errno(), libc::EISDIR);
    assert_eq!(b.metadata().unwrap().size, 0, "nothing was copied");
}

#[test]
fn a_client_of_the_pool_server_gets_the_same_results_and_errnos() {
    let pool = TestPool::new(64 << 20);
    let server = Server::start(&pool);
    let fs = server.connect();
    let mut f = numbered(&fs, "/f", 4);
    let g = fs.open("/g", &rw()).unwrap();
    let view = f.map(0, 8 * BLOCK, MapAccess::Read).unwrap();

    f.fallocate(PUNCH, BLOCK, BLOCK).unwrap();
    assert_eq!(f.seek_hole(0).unwrap(), BLOCK);
    assert_eq!(f.seek_data(BLOCK).unwrap(), 2 * BLOCK);
    assert_eq!(f.seek_data(4 * BLOCK).unwrap_err().errno(), libc::ENXIO);
    assert_eq!(f.fallocate(FALLOC_FL_PUNCH_HOLE, 0, BLOCK).unwrap_err().errno(), libc::EOPNOTSUPP);
    assert_eq!(f.fallocate(FALLOC_FL_COLLAPSE_RANGE, 0, 100).unwrap_err().errno(), libc::EINVAL);

    f.fallocate(FALLOC_FL_COLLAPSE_RANGE, 0, BLOCK).unwrap();
    assert_eq!(view_bytes(&view, 3), vec![0, 3, 4], "the client's view follows the collapse");
    assert_eq!(view.page_state(3), PageState::PastEof);

    // Aligned: linked (and shortened to whole blocks); unaligned: bytes.
    assert_eq!(fs.copy_file_range(&f, 0, &g, 0, 2 * BLOCK + 1).unwrap(), 2 * BLOCK);
    assert_eq!(fs.copy_file_range(&f, 2 * BLOCK + 1, &g, 7, 100).unwrap(), 100);
    assert!(fs.fiemap(&g).unwrap().iter().any(|e| e.shared), "the aligned copy shares blocks");
    assert_eq!(fs.copy_file_range(&f, 0, &f, 10, 100).unwrap_err().errno(), libc::EINVAL, "overlap");
    assert_clean(&fs);
    drop((view, f, g, fs));
    server.stop();
}
