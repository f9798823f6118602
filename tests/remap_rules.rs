//! Every error rule and sharing rule of SPEC sections 1-3, one test each, with exact errno values:
//! reflink (FICLONERANGE) and dedupe (FIDEDUPERANGE) argument rules, including the fstests
//! generic/157 and generic/158 lists and what kernel XFS was seen to do on partial EOF blocks, and
//! the copy-on-write rules (only written blocks stop being shared, edges copied or zeroed, a
//! zero-byte write changes nothing, unshare, truncate into a shared block).
//!
//! Guards that the library returns the errno the kernel would, that a failed call changes nothing,
//! and that sharing (FIEMAP shared flags, owners(), share_state) is exactly what the rule says.

mod model_common;

use ferrodax::{DedupeStatus, DedupeTarget, File, Fs, Pool, ShareState};
use model_common::{
    assert_bytes, assert_clean, block_map, create, errno, expect_errno, open, pattern, read_all,
    verify_reverse_map, Mode, BS,
};

fn new_fs() -> Fs {
    Fs::format(&Pool::memfd(8 << 20).expect("memfd pool")).expect("format")
}

/// Creates `path` holding `data`.
fn file_with(fs: &Fs, path: &str, data: &[u8]) -> File {
    let f = create(fs, path);
    f.write_at(data, 0).expect("write");
    f
}

/// The pool blocks of a file, one per file block (None = hole).
fn blocks(fs: &Fs, f: &File) -> Vec<Option<u64>> {
    block_map(fs, f).expect("fiemap")
}

/// How many owners pool block `b` has.
fn refcount(fs: &Fs, b: u64) -> usize {
    match fs.share_state(b) {
        ShareState::Single { .. } => 1,
        ShareState::Shared { count } => count,
        _ => 0,
    }
}

fn status_errno(s: &DedupeStatus) -> Option<i32> {
    match s {
        DedupeStatus::Failed(e) => Some(e.errno()),
        _ => None,
    }
}

/// Asserts a failed remap changed nothing: contents and mappings of every file are as before.
struct Snapshot(Vec<(Vec<u8>, Vec<Option<u64>>)>);

impl Snapshot {
    fn take(fs: &Fs, files: &[&File]) -> Snapshot {
        Snapshot(files.iter().map(|f| (read_all(f), blocks(fs, f))).collect())
    }
    fn assert_unchanged(&self, fs: &Fs, files: &[&File]) {
        let now = Snapshot::take(fs, files);
        assert!(self.0 == now.0, "a failed call changed a file");
    }
}

/// A file of 10000 bytes: two whole blocks and a partial last block of 1808 bytes.
const PARTIAL: usize = 10000;

// ----- SPEC 1: reflink -----

#[test]
fn reflink_between_two_pools_is_exdev() {
    let (fs1, fs2) = (new_fs(), new_fs());
    let a = file_with(&fs1, "/a", &pattern(1, 0, 8192));
    let b = file_with(&fs2, "/b", &pattern(2, 0, 8192));
    let snap = (Snapshot::take(&fs1, &[&a]), Snapshot::take(&fs2, &[&b]));
    assert_eq!(expect_errno(fs1.reflink(&a, 0, &b, 0, BS)), libc::EXDEV);
    assert_eq!(expect_errno(fs2.reflink(&a, 0, &b, 0, BS)), libc::EXDEV);
    assert_eq!(expect_errno(fs1.reflink(&a, 0, &b, 0, 0)), libc::EXDEV);
    snap.0.assert_unchanged(&fs1, &[&a]);
    snap.1.assert_unchanged(&fs2, &[&b]);
    assert_clean(&fs1);
    assert_clean(&fs2);
}

#[test]
fn reflink_with_a_directory_as_source_is_eisdir() {
    let fs = new_fs();
    fs.create_dir("/dir1").unwrap();
    let dir = open(&fs, "/dir1", Mode::ReadOnly);
    let f = file_with(&fs, "/file2", &pattern(1, 0, 8192));
    assert_eq!(expect_errno(fs.reflink(&dir, 0, &f, 0, BS)), libc::EISDIR);
    assert_eq!(expect_errno(fs.reflink(&dir, 0, &f, 0, 0)), libc::EISDIR);
}

#[test]
fn opening_a_directory_for_writing_is_eisdir() {
    let fs = new_fs();
    fs.create_dir("/dir1").unwrap();
    for mode in [Mode::ReadWrite, Mode::WriteOnly, Mode::Append, Mode::ReadAppend] {
        assert_eq!(expect_errno(fs.open("/dir1", &mode.options())), libc::EISDIR, "{mode:?}");
    }
}

#[test]
fn reflink_into_a_read_only_directory_handle_is_eisdir() {
    let fs = new_fs();
    fs.create_dir("/dir1").unwrap();
    let dir = open(&fs, "/dir1", Mode::ReadOnly);
    let f = file_with(&fs, "/file1", &pattern(1, 0, 8192));
    // EISDIR comes before the EBADF a read-only destination would otherwise get.
    assert_eq!(expect_errno(fs.reflink(&f, 0, &dir, 0, BS)), libc::EISDIR);
}

#[test]
fn reflink_into_an_append_only_handle_is_ebadf() {
    let fs = new_fs();
    let src = file_with(&fs, "/file1", &pattern(1, 0, 8192));
    create(&fs, "/file3");
    for mode in [Mode::Append, Mode::ReadAppend] {
        let dst = open(&fs, "/file3", mode);
        assert_eq!(expect_errno(fs.reflink(&src, 0, &dst, 0, BS)), libc::EBADF, "{mode:?}");
        assert_eq!(expect_errno(fs.reflink(&src, 0, &dst, 0, 0)), libc::EBADF, "whole file, {mode:?}");
        assert_eq!(dst.metadata().unwrap().size, 0);
    }
}

#[test]
fn reflink_from_a_source_not_open_for_reading_is_ebadf() {
    let fs = new_fs();
    file_with(&fs, "/src", &pattern(1, 0, 8192));
    let src = open(&fs, "/src", Mode::WriteOnly);
    let dst = create(&fs, "/dst");
    assert_eq!(expect_errno(fs.reflink(&src, 0, &dst, 0, BS)), libc::EBADF);
    assert_eq!(dst.metadata().unwrap().size, 0);
}

#[test]
fn reflink_into_a_destination_not_open_for_writing_is_ebadf() {
    let fs = new_fs();
    let src = file_with(&fs, "/src", &pattern(1, 0, 8192));
    let before = pattern(2, 0, 8192);
    file_with(&fs, "/dst", &before);
    let dst = open(&fs, "/dst", Mode::ReadOnly);
    assert_eq!(expect_errno(fs.reflink(&src, 0, &dst, 0, BS)), libc::EBADF);
    assert_bytes(&read_all(&dst), &before, "read_all(&dst)");
}

#[test]
fn reflink_offsets_or_lengths_overflowing_a_signed_offset_are_einval() {
    let fs = new_fs();
    let src = file_with(&fs, "/src", &pattern(1, 0, 8192));
    let dst = create(&fs, "/dst");
    let max = i64::MAX as u64;
    for (s, d, l) in [
        (1 << 63, 0, BS),
        (0, 1 << 63, BS),
        (0, 0, u64::MAX),
        (0, 0, 1 << 63),
        (max - BS + 1, 0, BS),
        (0, max - BS + 1, BS),
        (0, max & !(BS - 1), 2 * BS),
    ] {
        assert_eq!(expect_errno(fs.reflink(&src, s, &dst, d, l)), libc::EINVAL, "({s}, {d}, {l})");
    }
    // remap_verify_area runs before the file type checks: EINVAL even with a directory.
    fs.create_dir("/dir").unwrap();
    let dir = open(&fs, "/dir", Mode::ReadOnly);
    assert_eq!(expect_errno(fs.reflink(&dir, 1 << 63, &dst, 0, BS)), libc::EINVAL);
    assert_eq!(dst.metadata().unwrap().size, 0);
}

#[test]
fn reflink_with_unaligned_offsets_is_einval() {
    // generic/157 "Try unaligned reflink": 37 59 23, and each offset unaligned on its own.
    let fs = new_fs();
    let src = file_with(&fs, "/file1", &pattern(1, 0, 4 * BS as usize));
    let dst = create(&fs, "/file2");
    assert_eq!(expect_errno(fs.reflink(&src, 37, &src, 59, 23)), libc::EINVAL);
    assert_eq!(expect_errno(fs.reflink(&src, 37, &dst, 59, 23)), libc::EINVAL);
    assert_eq!(expect_errno(fs.reflink(&src, 1, &dst, 0, BS)), libc::EINVAL);
    assert_eq!(expect_errno(fs.reflink(&src, 0, &dst, 1, BS)), libc::EINVAL);
    // Length 0 does not skip the alignment check.
    assert_eq!(expect_errno(fs.reflink(&src, 1, &dst, 0, 0)), libc::EINVAL);
    assert_eq!(expect_errno(fs.reflink(&src, 0, &dst, 1, 0)), libc::EINVAL);
    assert_eq!(dst.metadata().unwrap().size, 0);
}

#[test]
fn reflink_with_an_unaligned_length_not_at_source_eof_is_einval() {
    let fs = new_fs();
    let src = file_with(&fs, "/ps", &pattern(1, 0, PARTIAL));
    let dst = create(&fs, "/pd");
    assert_eq!(expect_errno(fs.reflink(&src, 8192, &dst, 0, 1000)), libc::EINVAL);
    assert_eq!(expect_errno(fs.reflink(&src, 0, &dst, 0, 5000)), libc::EINVAL);
    assert_eq!(expect_errno(fs.reflink(&src, 0, &dst, 0, 100)), libc::EINVAL);
    assert_eq!(dst.metadata().unwrap().size, 0);
}

#[test]
fn reflink_of_overlapping_ranges_in_one_file_is_einval() {
    // generic/157 "Try overlapping reflink", and the same offset.
    let fs = new_fs();
    let data = pattern(3, 0, 4 * BS as usize);
    let f = file_with(&fs, "/file1", &data);
    let snap = Snapshot::take(&fs, &[&f]);
    assert_eq!(expect_errno(fs.reflink(&f, 0, &f, 1, 8192)), libc::EINVAL);
    assert_eq!(expect_errno(fs.reflink(&f, 0, &f, 4096, 8192)), libc::EINVAL);
    assert_eq!(expect_errno(fs.reflink(&f, 4096, &f, 0, 8192)), libc::EINVAL);
    assert_eq!(expect_errno(fs.reflink(&f, 0, &f, 0, BS)), libc::EINVAL);
    assert_eq!(expect_errno(fs.reflink(&f, 0, &f, 0, 0)), libc::EINVAL, "whole file onto itself");
    snap.assert_unchanged(&fs, &[&f]);
    // Touching but not overlapping is fine, and grows the file.
    assert_eq!(fs.reflink(&f, 0, &f, 4 * BS, 2 * BS).unwrap(), 2 * BS);
    let mut want = data.clone();
    want.extend_from_slice(&data[..2 * BS as usize]);
    assert_bytes(&read_all(&f), &want, "read_all(&f)");
    let map = blocks(&fs, &f);
    assert_eq!(map[4], map[0], "block 4 is block 0");
    assert_eq!(map[5], map[1]);
    verify_reverse_map(&fs, &[&f]).unwrap();
    assert_clean(&fs);
}

#[test]
fn reflink_with_the_source_offset_past_eof_is_einval() {
    // generic/157 "Try reflink past EOF".
    let fs = new_fs();
    let src = file_with(&fs, "/file1", &pattern(1, 0, 4 * BS as usize));
    let dst = create(&fs, "/file2");
    assert_eq!(expect_errno(fs.reflink(&src, 8 * BS, &dst, 0, BS)), libc::EINVAL);
    assert_eq!(expect_errno(fs.reflink(&src, 4 * BS, &dst, 0, BS)), libc::EINVAL, "at EOF, len != 0");
    assert_eq!(expect_errno(fs.reflink(&src, 8 * BS, &dst, 0, 0)), libc::EINVAL, "len 0 past EOF");
    assert_eq!(dst.metadata().unwrap().size, 0);
}

#[test]
fn reflink_of_a_range_reaching_past_source_eof_is_einval() {
    let fs = new_fs();
    let src = file_with(&fs, "/ps", &pattern(1, 0, PARTIAL));
    let dst = create(&fs, "/pd");
    assert_eq!(expect_errno(fs.reflink(&src, 8192, &dst, 0, BS)), libc::EINVAL);
    assert_eq!(expect_errno(fs.reflink(&src, 4096, &dst, 0, 100_000)), libc::EINVAL);
    assert_eq!(expect_errno(fs.reflink(&src, 0, &dst, 0, 3 * BS)), libc::EINVAL, "no shortening for clone");
    assert_eq!(dst.metadata().unwrap().size, 0);
}

#[test]
fn reflink_with_length_zero_links_to_source_eof() {
    let fs = new_fs();
    let data = pattern(1, 0, PARTIAL);
    let src = file_with(&fs, "/ps", &data);
    let d1 = create(&fs, "/d1");
    assert_eq!(fs.reflink(&src, 4096, &d1, 0, 0).unwrap(), 5904);
    assert_bytes(&read_all(&d1), &data[4096..], "read_all(&d1)");
    let d2 = create(&fs, "/d2");
    assert_eq!(fs.reflink(&src, 0, &d2, 16384, 0).unwrap(), PARTIAL as u64);
    assert_eq!(d2.metadata().unwrap().size, 16384 + PARTIAL as u64);
    let got = read_all(&d2);
    assert!(got[..16384].iter().all(|&b| b == 0));
    assert_bytes(&got[16384..], &data[..], "got[16384..]");
    // Whole-file clone (FICLONE): every block shared, the partial last one too.
    let d3 = create(&fs, "/d3");
    assert_eq!(fs.reflink(&src, 0, &d3, 0, 0).unwrap(), PARTIAL as u64);
    assert_eq!(blocks(&fs, &d3), blocks(&fs, &src));
    verify_reverse_map(&fs, &[&src, &d1, &d2, &d3]).unwrap();
    assert_clean(&fs);
}

#[test]
fn reflink_at_source_eof_with_length_zero_is_a_no_op_returning_zero() {
    let fs = new_fs();
    let src = file_with(&fs, "/ps", &pattern(1, 0, PARTIAL));
    let before = pattern(2, 0, 100);
    let dst = file_with(&fs, "/pd", &before);
    let mtime = dst.metadata().unwrap().mtime_ns;
    // src_off == size needs no alignment (10000 is unaligned), nor does dst_off.
    assert_eq!(fs.reflink(&src, PARTIAL as u64, &dst, 0, 0).unwrap(), 0);
    assert_eq!(fs.reflink(&src, PARTIAL as u64, &dst, 77, 0).unwrap(), 0);
    assert_bytes(&read_all(&dst), &before, "read_all(&dst)");
    assert_eq!(dst.metadata().unwrap().mtime_ns, mtime);
    let empty = create(&fs, "/empty");
    assert_eq!(fs.reflink(&empty, 0, &dst, 0, 0).unwrap(), 0, "an empty source");
    assert_bytes(&read_all(&dst), &before, "read_all(&dst)");
}

#[test]
fn reflink_of_a_partial_eof_block_lands_only_at_or_past_destination_eof() {
    // Source 10000 bytes; range [8192, +1808) ends at its unaligned EOF; destination offset 16384.
    let fs = new_fs();
    let data = pattern(1, 0, PARTIAL);
    let src = file_with(&fs, "/ps", &data);
    for (dst_size, ok) in
        [(16384u64, true), (17000, true), (18192, true), (18193, false), (20000, false), (20480, false)]
    {
        let dst = create(&fs, &format!("/pd{dst_size}"));
        dst.write_at(&pattern(2, 0, dst_size as usize), 0).unwrap();
        let r = fs.reflink(&src, 8192, &dst, 16384, 1808);
        if ok {
            assert_eq!(r.unwrap(), 1808, "dest size {dst_size}");
            assert_eq!(dst.metadata().unwrap().size, 18192, "dest size {dst_size}");
            let got = read_all(&dst);
            assert_bytes(&got[16384..], &data[8192..], "got[16384..]");
            assert_eq!(blocks(&fs, &dst)[4], blocks(&fs, &src)[2], "the partial block is shared");
        } else {
            assert_eq!(expect_errno(r), libc::EINVAL, "dest size {dst_size}");
            assert_eq!(dst.metadata().unwrap().size, dst_size);
        }
    }
    // Destination offset past destination EOF: fine, the file grows to the end of the range.
    let dst = file_with(&fs, "/past", &pattern(2, 0, 20000));
    assert_eq!(fs.reflink(&src, 8192, &dst, 24576, 1808).unwrap(), 1808);
    assert_eq!(dst.metadata().unwrap().size, 24576 + 1808);
    let got = read_all(&dst);
    assert!(got[20000..24576].iter().all(|&b| b == 0));
    // Into a new file at offset 0 and at 8192.
    let n1 = create(&fs, "/n1");
    assert_eq!(fs.reflink(&src, 8192, &n1, 0, 1808).unwrap(), 1808);
    assert_eq!(n1.metadata().unwrap().size, 1808);
    let n2 = create(&fs, "/n2");
    assert_eq!(fs.reflink(&src, 8192, &n2, 8192, 1808).unwrap(), 1808);
    assert_eq!(n2.metadata().unwrap().size, PARTIAL as u64);
    assert_clean(&fs);
}

#[test]
fn whole_file_reflink_onto_a_larger_destination_is_einval() {
    let fs = new_fs();
    let src = file_with(&fs, "/ps", &pattern(1, 0, PARTIAL));
    let before = pattern(2, 0, 20000);
    let dst = file_with(&fs, "/big", &before);
    assert_eq!(expect_errno(fs.reflink(&src, 0, &dst, 0, 0)), libc::EINVAL);
    assert_bytes(&read_all(&dst), &before, "read_all(&dst)");
}

#[test]
fn reflink_releases_the_destination_blocks_and_keeps_source_holes() {
    let fs = new_fs();
    // Source: data, hole, data.
    let src = create(&fs, "/src");
    src.write_at(&pattern(1, 0, BS as usize), 0).unwrap();
    src.write_at(&pattern(1, 2 * BS, BS as usize), 2 * BS).unwrap();
    let dst = file_with(&fs, "/dst", &pattern(2, 0, 3 * BS as usize));
    let old = blocks(&fs, &dst);
    assert_eq!(fs.reflink(&src, 0, &dst, 0, 3 * BS).unwrap(), 3 * BS);
    let map = blocks(&fs, &dst);
    assert_eq!(map, blocks(&fs, &src));
    assert_eq!(map[1], None, "the source hole is a hole in the destination");
    for b in old.into_iter().flatten() {
        assert_eq!(fs.share_state(b), ShareState::Free, "old destination block {b} was freed");
    }
    assert_bytes(&read_all(&dst), &read_all(&src), "read_all(&dst)");
    verify_reverse_map(&fs, &[&src, &dst]).unwrap();
    assert_clean(&fs);
}

#[test]
fn reflink_of_two_files_shares_blocks() {
    // generic/157 "Reflink two files".
    let fs = new_fs();
    let data = pattern(1, 0, 4 * BS as usize);
    let a = file_with(&fs, "/file1", &data);
    let b = file_with(&fs, "/file2", &pattern(2, 0, 4 * BS as usize));
    assert_eq!(fs.reflink(&a, 0, &b, 0, BS).unwrap(), BS);
    let (ma, mb) = (blocks(&fs, &a), blocks(&fs, &b));
    assert_eq!(ma[0], mb[0]);
    assert_eq!(refcount(&fs, ma[0].unwrap()), 2);
    assert_bytes(&read_all(&b)[..BS as usize], &data[..BS as usize], "read_all(&b)[..BS as usize]");
    let ext = fs.fiemap(&b).unwrap();
    assert!(ext[0].shared && !ext[1].shared, "{ext:?}");
    verify_reverse_map(&fs, &[&a, &b]).unwrap();
    assert_clean(&fs);
}

// ----- SPEC 2: dedupe -----

#[test]
fn dedupe_request_level_errors_fail_the_whole_call() {
    let fs = new_fs();
    fs.create_dir("/dir1").unwrap();
    let dir = open(&fs, "/dir1", Mode::ReadOnly);
    let data = pattern(1, 0, PARTIAL);
    let src = file_with(&fs, "/qa", &data);
    let dst = file_with(&fs, "/qb", &data);
    let t = [DedupeTarget { file: &dst, offset: 0 }];
    // generic/158 "Try to dedupe a dir".
    assert_eq!(expect_errno(fs.dedupe(&dir, 0, BS, &t)), libc::EISDIR);
    assert_eq!(expect_errno(fs.dedupe(&dir, 0, 0, &t)), libc::EISDIR);
    // Source range past source EOF (generic/158 "dedupe past EOF": 4136960 0 4096).
    assert_eq!(expect_errno(fs.dedupe(&src, 0, 12288, &t)), libc::EINVAL);
    assert_eq!(expect_errno(fs.dedupe(&src, 0, 20000, &t)), libc::EINVAL);
    assert_eq!(expect_errno(fs.dedupe(&src, 12288, 0, &t)), libc::EINVAL, "offset past EOF, len 0");
    assert_eq!(expect_errno(fs.dedupe(&src, 12288, BS, &t)), libc::EINVAL);
    // Offsets that overflow a signed offset.
    assert_eq!(expect_errno(fs.dedupe(&src, 1 << 63, BS, &t)), libc::EINVAL);
    assert_eq!(expect_errno(fs.dedupe(&src, 0, u64::MAX, &t)), libc::EINVAL);
    // A source not open for reading: FIDEDUPERANGE says EINVAL.
    let wo = open(&fs, "/qa", Mode::WriteOnly);
    assert_eq!(expect_errno(fs.dedupe(&wo, 0, BS, &t)), libc::EINVAL);
    assert_ne!(blocks(&fs, &src)[0], blocks(&fs, &dst)[0], "nothing was shared");
    assert_clean(&fs);
}

#[test]
fn dedupe_reports_a_status_per_destination() {
    let (fs, other) = (new_fs(), new_fs());
    fs.create_dir("/dir1").unwrap();
    let data = pattern(4, 0, 2 * BS as usize);
    let src = file_with(&fs, "/src", &data);
    let same = file_with(&fs, "/same", &data);
    let differs = file_with(&fs, "/differs", &pattern(5, 0, 2 * BS as usize));
    let short = file_with(&fs, "/short", &data[..BS as usize]);
    let far = file_with(&other, "/far", &data);
    let dir = open(&fs, "/dir1", Mode::ReadOnly);
    let snap = Snapshot::take(&fs, &[&differs, &short]);
    let statuses = fs
        .dedupe(
            &src,
            0,
            2 * BS,
            &[
                DedupeTarget { file: &same, offset: 0 },
                DedupeTarget { file: &differs, offset: 0 },
                DedupeTarget { file: &short, offset: 0 },
                DedupeTarget { file: &far, offset: 0 },
                DedupeTarget { file: &dir, offset: 0 },
                DedupeTarget { file: &same, offset: 100 },
                DedupeTarget { file: &src, offset: 0 },
                DedupeTarget { file: &same, offset: 1 << 63 },
            ],
        )
        .unwrap();
    assert_eq!(statuses.len(), 8);
    assert!(matches!(statuses[0], DedupeStatus::Same { bytes_deduped } if bytes_deduped == 2 * BS));
    assert!(matches!(statuses[1], DedupeStatus::Differs), "{:?}", statuses[1]);
    assert_eq!(status_errno(&statuses[2]), Some(libc::EINVAL), "range past the destination's EOF");
    assert_eq!(status_errno(&statuses[3]), Some(libc::EXDEV), "another pool");
    assert_eq!(status_errno(&statuses[4]), Some(libc::EISDIR), "a directory");
    assert_eq!(status_errno(&statuses[5]), Some(libc::EINVAL), "unaligned destination offset");
    assert_eq!(status_errno(&statuses[6]), Some(libc::EINVAL), "overlaps the source in the same file");
    assert_eq!(status_errno(&statuses[7]), Some(libc::EINVAL), "offset overflows");
    assert_eq!(blocks(&fs, &same), blocks(&fs, &src), "the SAME destination now shares the blocks");
    snap.assert_unchanged(&fs, &[&differs, &short]);
    assert_bytes(&read_all(&far), &data, "read_all(&far)");
    verify_reverse_map(&fs, &[&src, &same, &differs, &short]).unwrap();
    assert_clean(&fs);
    assert_clean(&other);
}

#[test]
fn dedupe_into_append_only_or_read_only_handles_succeeds() {
    // generic/158 "Try to dedupe an append-only file": must succeed.
    let fs = new_fs();
    let data = pattern(1, 0, BS as usize);
    let src = file_with(&fs, "/file1", &data);
    file_with(&fs, "/file3", &data);
    file_with(&fs, "/file4", &data);
    let append = open(&fs, "/file3", Mode::Append);
    let read_only = open(&fs, "/file4", Mode::ReadOnly);
    let st = fs
        .dedupe(
            &src,
            0,
            BS,
            &[DedupeTarget { file: &append, offset: 0 }, DedupeTarget { file: &read_only, offset: 0 }],
        )
        .unwrap();
    assert!(
        st.iter().all(|s| matches!(s, DedupeStatus::Same { bytes_deduped } if *bytes_deduped == BS)),
        "{st:?}"
    );
    let b = blocks(&fs, &src)[0].unwrap();
    assert_eq!(refcount(&fs, b), 3);
    assert_clean(&fs);
}

#[test]
fn dedupe_with_unaligned_or_overlapping_ranges_fails_that_destination_with_einval() {
    // generic/158 "Try unaligned dedupe" (37 59 23) and "Try overlapping dedupe" (0 1 8192,
    // 0 4096 8192); non-overlapping ranges of one file work (0 8192 8192).
    let fs = new_fs();
    let data = pattern(2, 0, 4 * BS as usize);
    let f = file_with(&fs, "/file1", &data);
    for (src_off, dst_off, len) in [(37, 59, 23), (0, 1, 8192), (0, 4096, 8192), (4096, 0, 8192), (0, 0, BS)]
    {
        let st = fs.dedupe(&f, src_off, len, &[DedupeTarget { file: &f, offset: dst_off }]).unwrap();
        assert_eq!(status_errno(&st[0]), Some(libc::EINVAL), "({src_off}, {dst_off}, {len})");
    }
    let st = fs.dedupe(&f, 0, 8192, &[DedupeTarget { file: &f, offset: 8192 }]).unwrap();
    assert!(matches!(st[0], DedupeStatus::Same { bytes_deduped: 8192 }), "{st:?}");
    let map = blocks(&fs, &f);
    assert_eq!((map[2], map[3]), (map[0], map[1]));
    assert_bytes(&read_all(&f), &data, "read_all(&f)");
    assert_clean(&fs);
}

#[test]
fn dedupe_with_the_destination_range_past_its_eof_fails_that_destination_with_einval() {
    // generic/158: "0 4136960 4096" and "0 4091904 8192" on a 4 MiB file.
    let fs = new_fs();
    let data = pattern(2, 0, 4 * BS as usize);
    let f = file_with(&fs, "/file1", &data);
    let g = file_with(&fs, "/file2", &data);
    for (dst_off, len) in [(8 * BS, BS), (3 * BS, 2 * BS), (4 * BS, BS)] {
        let st = fs.dedupe(&f, 0, len, &[DedupeTarget { file: &g, offset: dst_off }]).unwrap();
        assert_eq!(status_errno(&st[0]), Some(libc::EINVAL), "({dst_off}, {len})");
    }
    assert_eq!(g.metadata().unwrap().size, 4 * BS);
    assert_ne!(blocks(&fs, &f)[0], blocks(&fs, &g)[0]);
}

#[test]
fn dedupe_compares_holes_as_equal_and_hole_against_data_as_different() {
    let fs = new_fs();
    let h1 = create(&fs, "/hole1");
    h1.set_len(2 * BS).unwrap();
    let h2 = create(&fs, "/hole2");
    h2.set_len(2 * BS).unwrap();
    let zeros = file_with(&fs, "/zeros", &vec![0u8; 2 * BS as usize]);
    let st = fs
        .dedupe(
            &h1,
            0,
            2 * BS,
            &[DedupeTarget { file: &h2, offset: 0 }, DedupeTarget { file: &zeros, offset: 0 }],
        )
        .unwrap();
    assert!(matches!(st[0], DedupeStatus::Same { bytes_deduped } if bytes_deduped == 2 * BS), "{st:?}");
    assert!(matches!(st[1], DedupeStatus::Differs), "hole vs zero data must differ: {st:?}");
    assert_eq!(blocks(&fs, &h2), vec![None, None], "holes stay holes");
    assert_eq!(blocks(&fs, &zeros).iter().flatten().count(), 2, "the zero data keeps its blocks");
    // Data against a hole, the other way round.
    let st = fs.dedupe(&zeros, 0, BS, &[DedupeTarget { file: &h1, offset: 0 }]).unwrap();
    assert!(matches!(st[0], DedupeStatus::Differs), "{st:?}");
    assert_clean(&fs);
}

#[test]
fn dedupe_of_length_zero_succeeds_and_does_nothing() {
    let fs = new_fs();
    let data = pattern(1, 0, PARTIAL);
    let qa = file_with(&fs, "/qa", &data);
    let qb = file_with(&fs, "/qb", &data);
    let snap = Snapshot::take(&fs, &[&qa, &qb]);
    // As xfs_io showed: "0 0 0", "10000 0 0" (source offset at EOF), "0 12288 0" (destination
    // offset past EOF), "1 0 0" (unaligned): all deduped 0/0.
    for (src_off, dst_off) in [(0, 0), (PARTIAL as u64, 0), (0, 12288), (1, 0), (0, 1)] {
        let st = fs.dedupe(&qa, src_off, 0, &[DedupeTarget { file: &qb, offset: dst_off }]).unwrap();
        assert!(matches!(st[0], DedupeStatus::Same { bytes_deduped: 0 }), "({src_off}, {dst_off}): {st:?}");
    }
    snap.assert_unchanged(&fs, &[&qa, &qb]);
    // A directory destination is still EISDIR with length 0.
    fs.create_dir("/dir1").unwrap();
    let dir = open(&fs, "/dir1", Mode::ReadOnly);
    let st = fs.dedupe(&qa, 0, 0, &[DedupeTarget { file: &dir, offset: 0 }]).unwrap();
    assert_eq!(status_errno(&st[0]), Some(libc::EISDIR));
}

#[test]
fn dedupe_shares_a_partial_eof_block_only_when_both_ranges_end_at_eof() {
    let fs = new_fs();
    let data = pattern(2, 0, 20000);
    let qa = file_with(&fs, "/qa", &data[..PARTIAL]);
    let qb = file_with(&fs, "/qb", &data[..PARTIAL]);
    let qc = file_with(&fs, "/qc", &data);
    // Both end at EOF: all three blocks shared, the partial one too.
    let st = fs.dedupe(&qa, 0, PARTIAL as u64, &[DedupeTarget { file: &qb, offset: 0 }]).unwrap();
    assert!(matches!(st[0], DedupeStatus::Same { bytes_deduped: 10000 }), "{st:?}");
    assert_eq!(blocks(&fs, &qb), blocks(&fs, &qa));
    assert!(fs.fiemap(&qb).unwrap().iter().all(|e| e.shared));
    // Only the source ends at EOF: reported as 10000 bytes, but only two blocks are shared.
    let st = fs.dedupe(&qa, 0, PARTIAL as u64, &[DedupeTarget { file: &qc, offset: 0 }]).unwrap();
    assert!(matches!(st[0], DedupeStatus::Same { bytes_deduped: 10000 }), "{st:?}");
    let (ma, mc) = (blocks(&fs, &qa), blocks(&fs, &qc));
    assert_eq!(mc[..2], ma[..2]);
    assert_ne!(mc[2], ma[2], "the partial block is not shared");
    assert_eq!(refcount(&fs, mc[2].unwrap()), 1);
    // Only the destination ends at EOF (qc's block 2 into a fresh copy of qa): not shared either.
    let qd = file_with(&fs, "/qd", &data[..PARTIAL]);
    let st = fs.dedupe(&qc, 8192, 1808, &[DedupeTarget { file: &qd, offset: 8192 }]).unwrap();
    assert!(matches!(st[0], DedupeStatus::Same { bytes_deduped: 1808 }), "{st:?}");
    assert_ne!(blocks(&fs, &qd)[2], blocks(&fs, &qc)[2]);
    // Both end at EOF with only the last block requested: shared.
    let st = fs.dedupe(&qa, 8192, 1808, &[DedupeTarget { file: &qd, offset: 8192 }]).unwrap();
    assert!(matches!(st[0], DedupeStatus::Same { bytes_deduped: 1808 }), "{st:?}");
    assert_eq!(blocks(&fs, &qd)[2], blocks(&fs, &qa)[2]);
    for f in [&qa, &qb, &qd] {
        assert_bytes(&read_all(f), &data[..PARTIAL], "read_all(f)");
    }
    assert_bytes(&read_all(&qc), &data, "read_all(&qc)");
    verify_reverse_map(&fs, &[&qa, &qb, &qc, &qd]).unwrap();
    assert_clean(&fs);
}

#[test]
fn dedupe_of_an_unaligned_length_mid_file_rounds_down_but_reports_the_request() {
    let fs = new_fs();
    let data = pattern(2, 0, 20000);
    let qc = file_with(&fs, "/qc", &data);
    let qa = file_with(&fs, "/qa", &data[..PARTIAL]);
    let st = fs.dedupe(&qc, 0, 5000, &[DedupeTarget { file: &qa, offset: 0 }]).unwrap();
    assert!(matches!(st[0], DedupeStatus::Same { bytes_deduped: 5000 }), "{st:?}");
    let (mc, ma) = (blocks(&fs, &qc), blocks(&fs, &qa));
    assert_eq!(ma[0], mc[0]);
    assert_ne!(ma[1], mc[1], "only the whole block is shared");
    let st = fs.dedupe(&qc, 4096, 100, &[DedupeTarget { file: &qa, offset: 4096 }]).unwrap();
    assert!(matches!(st[0], DedupeStatus::Same { bytes_deduped: 100 }), "{st:?}");
    assert_ne!(blocks(&fs, &qa)[1], blocks(&fs, &qc)[1], "100 bytes round down to nothing");
    // Destination range past its EOF (qc 20000 into qa 10000) is that destination's EINVAL.
    let st = fs.dedupe(&qc, 0, 20000, &[DedupeTarget { file: &qa, offset: 0 }]).unwrap();
    assert_eq!(status_errno(&st[0]), Some(libc::EINVAL));
    assert_clean(&fs);
}

#[test]
fn dedupe_of_differing_contents_changes_nothing() {
    let fs = new_fs();
    let a = file_with(&fs, "/e", &pattern(1, 0, 2 * BS as usize));
    let mut other = pattern(1, 0, 2 * BS as usize);
    other[BS as usize + 17] ^= 1; // one byte differs, in the second block
    let b = file_with(&fs, "/f", &other);
    let snap = Snapshot::take(&fs, &[&a, &b]);
    let st = fs.dedupe(&a, 0, 2 * BS, &[DedupeTarget { file: &b, offset: 0 }]).unwrap();
    assert!(matches!(st[0], DedupeStatus::Differs), "{st:?}");
    snap.assert_unchanged(&fs, &[&a, &b]);
    // The first block alone is equal.
    let st = fs.dedupe(&a, 0, BS, &[DedupeTarget { file: &b, offset: 0 }]).unwrap();
    assert!(matches!(st[0], DedupeStatus::Same { bytes_deduped: 4096 }), "{st:?}");
    assert_eq!(blocks(&fs, &a)[0], blocks(&fs, &b)[0]);
    assert_clean(&fs);
}

// ----- SPEC 3: copy-on-write -----

#[test]
fn a_write_into_shared_blocks_unshares_only_the_written_blocks() {
    let fs = new_fs();
    let data = pattern(3, 0, 4 * BS as usize);
    let a = file_with(&fs, "/a", &data);
    let b = create(&fs, "/b");
    fs.reflink(&a, 0, &b, 0, 0).unwrap();
    let shared = blocks(&fs, &a);
    // 10 bytes inside block 1.
    b.write_at(b"0123456789", 4100).unwrap();
    let (ma, mb) = (blocks(&fs, &a), blocks(&fs, &b));
    assert_eq!(ma, shared, "the source keeps its blocks");
    assert_eq!((mb[0], mb[2], mb[3]), (ma[0], ma[2], ma[3]), "unwritten blocks stay shared");
    assert_ne!(mb[1], ma[1], "the written block is a new one");
    assert_eq!(refcount(&fs, ma[1].unwrap()), 1);
    assert_eq!(refcount(&fs, mb[1].unwrap()), 1);
    assert_eq!(refcount(&fs, ma[0].unwrap()), 2);
    let ext = fs.fiemap(&b).unwrap();
    let flags: Vec<(u64, bool)> = ext.iter().map(|e| (e.logical / BS, e.shared)).collect();
    assert_eq!(flags, vec![(0, true), (1, false), (2, true)], "{ext:?}");
    // Head [4096, 4100) and tail [4110, 8192) came from the old block.
    let mut want = data.clone();
    want[4100..4110].copy_from_slice(b"0123456789");
    assert_bytes(&read_all(&b), &want, "read_all(&b)");
    assert_bytes(&read_all(&a), &data, "read_all(&a)");
    verify_reverse_map(&fs, &[&a, &b]).unwrap();
    assert_clean(&fs);
}

#[test]
fn a_write_across_two_shared_blocks_copies_both_edges() {
    let fs = new_fs();
    let data = pattern(5, 0, 3 * BS as usize);
    let a = file_with(&fs, "/a", &data);
    let b = create(&fs, "/b");
    fs.reflink(&a, 0, &b, 0, 0).unwrap();
    let patch = vec![0xeeu8; 200];
    b.write_at(&patch, 4000).unwrap();
    let (ma, mb) = (blocks(&fs, &a), blocks(&fs, &b));
    assert_ne!(mb[0], ma[0]);
    assert_ne!(mb[1], ma[1]);
    assert_eq!(mb[2], ma[2]);
    let mut want = data.clone();
    want[4000..4200].copy_from_slice(&patch);
    assert_bytes(&read_all(&b), &want, "read_all(&b)");
    assert_bytes(&read_all(&a), &data, "read_all(&a)");
    assert_clean(&fs);
}

#[test]
fn a_write_into_a_hole_of_a_shared_file_zeroes_the_edges() {
    let fs = new_fs();
    let a = create(&fs, "/a");
    a.write_at(&pattern(1, 0, BS as usize), 0).unwrap();
    a.write_at(&pattern(1, 2 * BS, BS as usize), 2 * BS).unwrap(); // block 1 is a hole
    let b = create(&fs, "/b");
    fs.reflink(&a, 0, &b, 0, 0).unwrap();
    b.write_at(b"xyz", BS + 1000).unwrap();
    let got = read_all(&b);
    assert!(got[BS as usize..BS as usize + 1000].iter().all(|&x| x == 0), "head zeroed");
    assert_eq!(&got[BS as usize + 1000..BS as usize + 1003], b"xyz");
    assert!(got[BS as usize + 1003..2 * BS as usize].iter().all(|&x| x == 0), "tail zeroed");
    let (ma, mb) = (blocks(&fs, &a), blocks(&fs, &b));
    assert_eq!(ma[1], None, "the source's hole is untouched");
    assert!(mb[1].is_some());
    assert_eq!((mb[0], mb[2]), (ma[0], ma[2]));
    assert_clean(&fs);
}

#[test]
fn a_zero_byte_write_changes_nothing() {
    let fs = new_fs();
    let a = file_with(&fs, "/a", &pattern(1, 0, 2 * BS as usize));
    let b = create(&fs, "/b");
    fs.reflink(&a, 0, &b, 0, 0).unwrap();
    let before = (b.metadata().unwrap(), fs.fiemap(&b).unwrap(), fs.stats().free_blocks);
    std::thread::sleep(std::time::Duration::from_millis(2));
    assert_eq!(b.write_at(b"", 100).unwrap(), 0);
    assert_eq!(b.write_at(b"", 100 * BS).unwrap(), 0, "past EOF: no growth");
    let after = (b.metadata().unwrap(), fs.fiemap(&b).unwrap(), fs.stats().free_blocks);
    assert_eq!(before, after, "size, times, extents and free space unchanged");
    assert_clean(&fs);
}

#[test]
fn unshare_makes_blocks_private_and_leaves_holes_as_holes() {
    let fs = new_fs();
    let a = create(&fs, "/a");
    a.write_at(&pattern(1, 0, BS as usize), 0).unwrap();
    a.write_at(&pattern(1, 2 * BS, 1000), 2 * BS).unwrap(); // data, hole, partial data
    let b = create(&fs, "/b");
    fs.reflink(&a, 0, &b, 0, 0).unwrap();
    let (before_a, before_b) = (read_all(&a), read_all(&b));
    let old = blocks(&fs, &a);
    let size = b.metadata().unwrap().size;
    fs.unshare(&b, 0, size).unwrap();
    let (ma, mb) = (blocks(&fs, &a), blocks(&fs, &b));
    assert_eq!(ma, old, "the other owner keeps its blocks");
    assert_eq!(mb[1], None, "the hole stays a hole");
    assert!(mb[0].is_some() && mb[2].is_some() && mb[0] != ma[0] && mb[2] != ma[2]);
    assert!(fs.fiemap(&b).unwrap().iter().all(|e| !e.shared));
    assert!(fs.fiemap(&a).unwrap().iter().all(|e| !e.shared));
    assert_bytes(&read_all(&a), &before_a, "a after unsharing b");
    assert_bytes(&read_all(&b), &before_b, "b after unsharing it");
    // Unsharing private blocks changes nothing.
    fs.unshare(&b, 0, size).unwrap();
    assert_eq!(blocks(&fs, &b), mb);
    // An unaligned range unshares the whole blocks it touches.
    let c = create(&fs, "/c");
    fs.reflink(&a, 0, &c, 0, 0).unwrap();
    fs.unshare(&c, 100, 10).unwrap();
    let mc = blocks(&fs, &c);
    assert_ne!(mc[0], ma[0]);
    assert_eq!(mc[2], ma[2]);
    verify_reverse_map(&fs, &[&a, &b, &c]).unwrap();
    assert_clean(&fs);
}

#[test]
fn unshare_argument_errors() {
    let fs = new_fs();
    let a = file_with(&fs, "/a", &pattern(1, 0, BS as usize));
    assert_eq!(expect_errno(fs.unshare(&a, 0, 0)), libc::EINVAL);
    assert_eq!(expect_errno(fs.unshare(&a, 1 << 63, BS)), libc::EINVAL);
    let ro = open(&fs, "/a", Mode::ReadOnly);
    assert_eq!(expect_errno(fs.unshare(&ro, 0, BS)), libc::EBADF);
    assert_eq!(expect_errno(fs.unshare(&ro, 0, 0)), libc::EINVAL, "EINVAL comes before EBADF");
    let max = ferrodax::format::MAX_FILE_SIZE;
    assert_eq!(expect_errno(fs.unshare(&a, max, BS)), libc::EFBIG);
    assert_eq!(a.metadata().unwrap().size, BS);
}

#[test]
fn unshare_past_eof_grows_the_file_with_zeros() {
    let fs = new_fs();
    let a = file_with(&fs, "/a", &pattern(1, 0, 100));
    fs.unshare(&a, 0, 3 * BS).unwrap();
    assert_eq!(a.metadata().unwrap().size, 3 * BS);
    let got = read_all(&a);
    assert_bytes(&got[..100], &pattern(1, 0, 100)[..], "got[..100]");
    assert!(got[100..].iter().all(|&b| b == 0));
    assert_clean(&fs);
}

#[test]
fn truncating_down_into_a_shared_block_leaves_the_other_owner_intact() {
    let fs = new_fs();
    let data = pattern(3, 0, 3 * BS as usize);
    let a = file_with(&fs, "/a", &data);
    let b = create(&fs, "/b");
    fs.reflink(&a, 0, &b, 0, 0).unwrap();
    b.set_len(5000).unwrap();
    assert_bytes(&read_all(&a), &data, "the other owner's bytes are intact");
    assert_bytes(&read_all(&b), &data[..5000], "read_all(&b)");
    let (ma, mb) = (blocks(&fs, &a), blocks(&fs, &b));
    assert_eq!(mb[0], ma[0], "block 0 still shared");
    assert_ne!(mb[1], ma[1], "the partial block was copied");
    assert_eq!(refcount(&fs, ma[1].unwrap()), 1);
    assert_eq!(refcount(&fs, ma[2].unwrap()), 1);
    // Growing again shows zeros past the old EOF, in b only.
    b.set_len(3 * BS).unwrap();
    let got = read_all(&b);
    assert!(got[5000..].iter().all(|&x| x == 0));
    assert_bytes(&read_all(&a), &data, "read_all(&a)");
    verify_reverse_map(&fs, &[&a, &b]).unwrap();
    assert_clean(&fs);
}

#[test]
fn writes_into_deduped_blocks_are_copy_on_write_too() {
    let fs = new_fs();
    let data = pattern(2, 0, 2 * BS as usize);
    let a = file_with(&fs, "/a", &data);
    let b = file_with(&fs, "/b", &data);
    fs.dedupe(&a, 0, 2 * BS, &[DedupeTarget { file: &b, offset: 0 }]).unwrap();
    assert_eq!(blocks(&fs, &a), blocks(&fs, &b));
    errno(a.write_at(b"!", 0)).unwrap();
    assert_bytes(&read_all(&b), &data, "read_all(&b)");
    let mut want = data.clone();
    want[0] = b'!';
    assert_bytes(&read_all(&a), &want, "read_all(&a)");
    assert_eq!(blocks(&fs, &a)[1], blocks(&fs, &b)[1]);
    assert_ne!(blocks(&fs, &a)[0], blocks(&fs, &b)[0]);
    assert_clean(&fs);
}

#[test]
fn dedupe_caps_one_request_at_1_gib() {
    // Holes compare equal without reading anything, so 2 GiB sparse files cost nothing.
    let fs = new_fs();
    let a = create(&fs, "/a");
    a.set_len(2 << 30).unwrap();
    let b = create(&fs, "/b");
    b.set_len(2 << 30).unwrap();
    let st = fs.dedupe(&a, 0, 2 << 30, &[DedupeTarget { file: &b, offset: 0 }]).unwrap();
    assert!(matches!(st[0], DedupeStatus::Same { bytes_deduped } if bytes_deduped == 1 << 30), "{st:?}");
}
