//! The lazy read-only mount (`Fs::mount_read_only_lazy`, src/fs/lazy.rs): it reads only the
//! inodes of the paths it opens, answers every open exactly as a whole mount does, reads the
//! whole state for any other call, takes a damaged block from the other chain, and mounts whole
//! what it cannot serve lazily.

use ferrodax::format::superblock::{self, Superblock};
use ferrodax::format::BLOCK_SIZE;
use ferrodax::pool::RecordingBackend;
use ferrodax::{Error, Fs, OpenOptions, Pool};
use std::sync::Arc;

const BLOCK: usize = BLOCK_SIZE as usize;

/// A pool whose files and names exercise path resolution: nested directories, files of a few
/// sizes, hard links, symlinks (relative, absolute, to a directory, dangling, a loop), and 300
/// files in one directory (its entries span several checkpoint blocks). Checkpointed, so nothing
/// is left in the log.
fn populated() -> Vec<u8> {
    let backend = Arc::new(RecordingBackend::new(16 << 20));
    let fs = Fs::format(&Pool::from_backend(backend.clone())).unwrap();
    let mut rw = OpenOptions::new();
    rw.read(true).write(true).create(true);
    fs.create_dir("/a").unwrap();
    fs.create_dir("/a/b").unwrap();
    fs.create_dir("/many").unwrap();
    for (i, path) in ["/top", "/a/f", "/a/b/deep", "/a/b/empty"].iter().enumerate() {
        let f = fs.open(path, &rw).unwrap();
        f.write_at(&vec![b'a' + i as u8; i * 5000], 0).unwrap();
    }
    for i in 0..300 {
        let f = fs.open(&format!("/many/file-{i:03}"), &rw).unwrap();
        f.write_at(format!("contents of {i}").as_bytes(), 0).unwrap();
    }
    fs.hard_link("/a/f", "/a/b/f-again").unwrap();
    fs.symlink("../f", "/a/b/rel").unwrap();
    fs.symlink("/a/b", "/to-b").unwrap();
    fs.symlink("/nowhere", "/dangling").unwrap();
    fs.symlink("loop2", "/loop1").unwrap();
    fs.symlink("loop1", "/loop2").unwrap();
    fs.set_xattr("/a/f", "user.k", b"v", 0).unwrap();
    fs.checkpoint().unwrap();
    drop(fs);
    backend.durable_image()
}

fn pool_of(image: Vec<u8>) -> Pool {
    Pool::from_backend(Arc::new(RecordingBackend::from_image(image)))
}

/// What opening `path` read-only gives: the inode and the contents, or the errno.
fn open_and_read(fs: &Fs, path: &str) -> Result<(u64, Vec<u8>), i32> {
    let f = fs.open(path, OpenOptions::new().read(true)).map_err(|e| e.errno())?;
    let size = f.metadata().map_err(|e| e.errno())?.size;
    let mut buf = vec![0; size as usize];
    let n = f.read_at(&mut buf, 0).map_err(|e| e.errno())?;
    buf.truncate(n);
    Ok((f.ino(), buf))
}

#[test]
fn a_lazy_mount_reads_only_the_inodes_of_the_path_it_opens() {
    let pool = pool_of(populated());
    let fs = Fs::mount_read_only_lazy(&pool).unwrap();
    assert_eq!(fs.lazy_inodes_read(), Some(1), "the root alone at mount");
    let f = fs.open("/a/b/deep", OpenOptions::new().read(true)).unwrap();
    let mut buf = vec![0; 10000];
    assert_eq!(f.read_at(&mut buf, 0).unwrap(), 10000);
    assert_eq!(buf, vec![b'c'; 10000]);
    assert_eq!(f.metadata().unwrap().size, 10000);
    assert_eq!(f.find(0, ferrodax::fs::falloc::SeekTarget::Hole).unwrap(), 10000);
    drop(f);
    assert_eq!(fs.lazy_inodes_read(), Some(4), "the root, /a, /a/b and the file");
    // One file among 300 in a directory whose entries fill several blocks.
    assert_eq!(open_and_read(&fs, "/many/file-123").unwrap().1, b"contents of 123");
    assert_eq!(fs.lazy_inodes_read(), Some(6));
}

#[test]
fn every_path_opens_on_a_lazy_mount_as_on_a_whole_one() {
    let image = populated();
    let whole = Fs::mount_read_only(&pool_of(image.clone())).unwrap();
    let paths = [
        "/",
        "/top",
        "/a",
        "/a/",
        "/a/f",
        "/a/f/",
        "/a/b/deep",
        "/a/./b/../f",
        "/a/b/f-again",
        "/a/b/rel",
        "/to-b/deep",
        "/to-b/rel",
        "/to-b/../top",
        "/dangling",
        "/loop1",
        "/missing",
        "/a/missing/x",
        "/top/x",
        "/many/file-299",
        "/many/file-300",
        "//a//b//empty",
        "/..",
        "/a/b/../../top",
        "/to-b/.",
    ];
    for path in paths {
        // A fresh lazy mount for each path: nothing an earlier path read helps it.
        let lazy = Fs::mount_read_only_lazy(&pool_of(image.clone())).unwrap();
        let got = open_and_read(&lazy, path);
        assert_eq!(got, open_and_read(&whole, path), "{path}");
        assert!(lazy.lazy_inodes_read().is_some(), "{path}: opening reads no whole state");
    }
}

#[test]
fn calls_on_one_path_answer_as_on_a_whole_mount_and_read_at_most_six_inodes() {
    let image = populated();
    let whole = Fs::mount_read_only(&pool_of(image.clone())).unwrap();
    let paths =
        ["/a/f", "/a/b/rel", "/to-b", "/to-b/deep", "/dangling", "/loop1", "/missing", "/a/b/../f", "/top/x"];
    for path in paths {
        let lazy = Fs::mount_read_only_lazy(&pool_of(image.clone())).unwrap();
        let errno = |e: Error| e.errno();
        assert_eq!(lazy.metadata(path).map_err(errno), whole.metadata(path).map_err(errno), "{path}");
        assert_eq!(
            lazy.symlink_metadata(path).map_err(errno),
            whole.symlink_metadata(path).map_err(errno),
            "{path}"
        );
        assert_eq!(lazy.read_link(path).map_err(errno), whole.read_link(path).map_err(errno), "{path}");
        assert_eq!(lazy.access(path, 4).map_err(errno), whole.access(path, 4).map_err(errno), "{path}");
        assert_eq!(
            lazy.get_xattr(path, "user.k").map_err(errno),
            whole.get_xattr(path, "user.k").map_err(errno),
            "{path}"
        );
        assert_eq!(lazy.list_xattrs(path).map_err(errno), whole.list_xattrs(path).map_err(errno), "{path}");
        let read = lazy.lazy_inodes_read();
        assert!(read.is_some_and(|n| n <= 6), "{path}: {read:?} inodes read");
    }
}

#[test]
fn a_listing_reads_the_directory_and_its_entries_inodes_only_and_lists_as_a_whole_mount() {
    let image = populated();
    let whole = Fs::mount_read_only(&pool_of(image.clone())).unwrap();
    let listing = |fs: &Fs, path: &str| {
        fs.read_dir(path).map(|mut e| {
            e.sort_by(|a, b| a.name.cmp(&b.name));
            e.into_iter().map(|e| (e.name, e.ino, e.kind)).collect::<Vec<_>>()
        })
    };
    for (path, most) in [
        ("/", 12),
        ("/a", 8),
        ("/a/b", 8),
        ("/many", 302),
        ("/to-b", 8),
        ("/top", 2),
        ("/missing", 1),
        ("/loop1", 3),
    ] {
        let lazy = Fs::mount_read_only_lazy(&pool_of(image.clone())).unwrap();
        let errno = |e: Error| e.errno();
        assert_eq!(listing(&lazy, path).map_err(errno), listing(&whole, path).map_err(errno), "{path}");
        let read = lazy.lazy_inodes_read();
        assert!(read.is_some_and(|n| n <= most), "{path}: {read:?} inodes read");
        // Then a file of the listed directory opens as on the whole mount.
        if let Ok(entries) = listing(&whole, path) {
            if let Some((name, _, _)) =
                entries.iter().find(|e| e.2 == ferrodax::format::record::InodeKind::File)
            {
                let file = format!("{}/{name}", path.trim_end_matches('/'));
                assert_eq!(open_and_read(&lazy, &file), open_and_read(&whole, &file), "{file}");
            }
        }
    }
}

#[test]
fn any_other_call_on_a_lazy_mount_reads_the_whole_state_first() {
    let image = populated();
    let whole = Fs::mount_read_only(&pool_of(image.clone())).unwrap();
    let lazy = Fs::mount_read_only_lazy(&pool_of(image)).unwrap();
    let f = lazy.open("/a/f", OpenOptions::new().read(true)).unwrap();
    assert_eq!(lazy.stats(), whole.stats());
    assert_eq!(lazy.lazy_inodes_read(), None, "stats read the whole state");
    assert_eq!(lazy.get_xattr("/a/f", "user.k").unwrap(), b"v");
    // The file opened before still reads, its open count carried over.
    let mut buf = vec![0; 5000];
    assert_eq!(f.read_at(&mut buf, 0).unwrap(), 5000);
    assert!(lazy.check().problems.is_empty());
    let e = lazy.remove_file("/top").unwrap_err();
    assert_eq!(e.errno(), libc::EROFS, "{e}");
}

#[test]
fn a_lazy_mount_reads_the_newest_version_a_delta_holds() {
    let backend = Arc::new(RecordingBackend::new(16 << 20));
    let fs = Fs::format(&Pool::from_backend(backend.clone())).unwrap();
    let mut rw = OpenOptions::new();
    rw.read(true).write(true).create(true);
    for i in 0..40 {
        fs.open(&format!("/f{i}"), &rw).unwrap().write_at(b"base", 0).unwrap();
    }
    fs.checkpoint().unwrap();
    fs.exclusive().prefer_delta_checkpoints(true);
    fs.open("/f1", &rw).unwrap().write_at(b"DELTA", 0).unwrap();
    fs.remove_file("/f2").unwrap();
    fs.open("/new", &rw).unwrap().write_at(b"added", 0).unwrap();
    fs.checkpoint().unwrap();
    assert!(fs.read_lock().journal().superblock().delta.is_some(), "the last checkpoint is a delta");
    drop(fs);
    let lazy = Fs::mount_read_only_lazy(&pool_of(backend.durable_image())).unwrap();
    assert_eq!(open_and_read(&lazy, "/f1").unwrap().1, b"DELTA");
    assert_eq!(open_and_read(&lazy, "/f3").unwrap().1, b"base");
    assert_eq!(open_and_read(&lazy, "/new").unwrap().1, b"added");
    assert_eq!(open_and_read(&lazy, "/f2"), Err(libc::ENOENT));
    assert!(lazy.lazy_inodes_read().is_some());
}

#[test]
fn a_bad_block_reads_as_on_a_whole_mount() {
    let backend = Arc::new(RecordingBackend::new(16 << 20));
    let fs = Fs::format(&Pool::from_backend(backend.clone())).unwrap();
    let f = fs.open("/f", OpenOptions::new().write(true).create(true)).unwrap();
    f.write_at(&[7; 3 * 4096], 0).unwrap();
    let second = fs.fiemap(&f).unwrap()[0].physical + 4096;
    fs.memory_failure(second, 4096, ferrodax::memfail::FailureFlags::default()).unwrap();
    drop(f);
    fs.checkpoint().unwrap();
    drop(fs);
    let image = backend.durable_image();
    let whole = Fs::mount_read_only(&pool_of(image.clone())).unwrap();
    let lazy = Fs::mount_read_only_lazy(&pool_of(image)).unwrap();
    let read = |fs: &Fs, at: u64| {
        let f = fs.open("/f", OpenOptions::new().read(true)).unwrap();
        let mut buf = vec![0; 3 * 4096];
        f.read_at(&mut buf, at).map_err(|e| e.errno())
    };
    assert_eq!(read(&lazy, 0), Ok(4096), "a short read up to the bad block");
    assert_eq!(read(&lazy, 4096), Err(libc::EIO));
    assert_eq!((read(&lazy, 0), read(&lazy, 4096)), (read(&whole, 0), read(&whole, 4096)));
    assert!(lazy.lazy_inodes_read().is_some());
}

#[test]
fn a_pool_with_records_in_its_log_mounts_whole() {
    let backend = Arc::new(RecordingBackend::new(16 << 20));
    let fs = Fs::format(&Pool::from_backend(backend.clone())).unwrap();
    fs.checkpoint().unwrap();
    let f = fs.open("/after", OpenOptions::new().write(true).create(true)).unwrap();
    f.write_at(b"in the log", 0).unwrap();
    fs.sync().unwrap();
    // The image as a crash leaves it: the record is durable, no checkpoint holds it.
    let image = backend.durable_image();
    let lazy = Fs::mount_read_only_lazy(&pool_of(image)).unwrap();
    assert_eq!(lazy.lazy_inodes_read(), None, "replaying the log needs the whole state");
    assert_eq!(open_and_read(&lazy, "/after").unwrap().1, b"in the log");
}

#[test]
fn a_format_version_5_pool_mounts_whole() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-v5.pool");
    let lazy = Fs::mount_read_only_lazy(&pool_of(std::fs::read(path).unwrap())).unwrap();
    assert_eq!(lazy.lazy_inodes_read(), None);
    assert_eq!(open_and_read(&lazy, "/d/b2").unwrap().1, vec![b'B'; 5000]);
}

/// The newest superblock of `image`.
fn superblock_of(image: &[u8]) -> Superblock {
    superblock::SLOT_OFFSETS
        .iter()
        .filter_map(|&at| Superblock::decode(&image[at..at + superblock::ENCODED_LEN], 0).ok())
        .max_by_key(|s| s.generation)
        .unwrap()
}

/// The blocks of chain 0 and chain 1 of `image`'s checkpoint that hold the encoding of the inode
/// `path` names (found through a whole mount and the index, as the lazy mount finds it).
fn blocks_holding(image: &[u8], path: &str) -> (u64, u64) {
    let ino = {
        let fs = Fs::mount_read_only(&pool_of(image.to_vec())).unwrap();
        let f = fs.open(path, OpenOptions::new().read(true)).unwrap();
        f.ino()
    };
    let sb = superblock_of(image);
    let head = |b: u64| &image[b as usize * BLOCK + 48..(b as usize + 1) * BLOCK];
    let map = ferrodax::format::indexed::decode_run_map(
        head(sb.checkpoint_head),
        sb.checkpoint_len,
        sb.total_blocks,
    )
    .unwrap();
    let payload: Vec<u8> = (0..ferrodax::format::checkpoint::blocks_for(sb.checkpoint_len as usize) as u64)
        .flat_map(|i| {
            let b = map.block(0, i).unwrap() as usize;
            let len = u32::from_le_bytes(image[b * BLOCK + 36..b * BLOCK + 40].try_into().unwrap()) as usize;
            image[b * BLOCK + 48..b * BLOCK + 48 + len].to_vec()
        })
        .collect();
    let index = &payload[map.index_at as usize..];
    let k =
        (0..index.len() / 16).find(|&k| ferrodax::format::indexed::index_entry(index, k).0 == ino).unwrap();
    let at = ferrodax::format::indexed::index_entry(index, k).1;
    let i = at / ferrodax::format::checkpoint::PAYLOAD_PER_BLOCK as u64;
    (map.block(0, i).unwrap(), map.block(1, i).unwrap())
}

#[test]
fn a_damaged_block_read_lazily_comes_from_the_other_chain_and_is_noted() {
    let mut image = populated();
    let (b0, _) = blocks_holding(&image, "/a/b/deep");
    image[b0 as usize * BLOCK + 100] ^= 0xff;
    let lazy = Fs::mount_read_only_lazy(&pool_of(image)).unwrap();
    assert_eq!(open_and_read(&lazy, "/a/b/deep").unwrap().1, vec![b'c'; 10000]);
    assert!(lazy.lazy_inodes_read().is_some());
    let notes = lazy.read_lock().mount_notes().repaired.clone();
    assert!(
        notes.iter().any(|n| n.contains(&format!("checkpoint chain 0 block {b0}")) && n.contains("checksum")),
        "{notes:?}"
    );
}

#[test]
fn a_block_damaged_in_both_chains_fails_the_open_that_needs_it_with_euclean() {
    let mut image = populated();
    let (b0, b1) = blocks_holding(&image, "/a/b/deep");
    for b in [b0, b1] {
        image[b as usize * BLOCK + 100] ^= 0xff;
    }
    let whole = Fs::mount_read_only(&pool_of(image.clone())).map(drop).unwrap_err();
    assert_eq!(whole.errno(), libc::EUCLEAN, "{whole}");
    let lazy = Fs::mount_read_only_lazy(&pool_of(image)).unwrap();
    let e = lazy.open("/a/b/deep", OpenOptions::new().read(true)).map(drop).unwrap_err();
    assert!(matches!(e, Error::Corrupt(_)), "{e}");
    assert!(e.to_string().contains("both copies of block #"), "{e}");
    // A call that needs the whole state fails as the whole mount did.
    let e = lazy.try_stats().map(drop).unwrap_err();
    assert_eq!(e.errno(), libc::EUCLEAN, "{e}");
    let e = lazy.try_owners(0, 4096).map(drop).unwrap_err();
    assert_eq!(e.errno(), libc::EUCLEAN, "{e}");
}

/// Runs the `ferrodax` command; (status, stdout, stderr).
fn ferrodax(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferrodax")).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cat_ls_readlink_xattr_and_reading_io_commands_mount_lazily_and_show_the_pools_contents() {
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().join("p.pool");
    std::fs::write(&pool, populated()).unwrap();
    let pool = pool.to_str().unwrap();
    let (status, out, err) =
        ferrodax(&["-v", "io", "-r", "-c", "pread -v 0 8", "-c", "stat", pool, "/a/b/rel"]);
    assert_eq!(status, 0, "{err}");
    assert!(err.contains("inodes read as needed"), "{err}");
    assert!(out.contains("00000000:  62 62 62 62 62 62 62 62  bbbbbbbb"), "{out}");
    assert!(out.contains("stat.size = 5000"), "{out}");
    // A command that needs more than the file (fiemap's shared flags need every owner) mounts whole.
    let (status, out, err) = ferrodax(&["-v", "io", "-r", "-c", "fiemap", pool, "/a/f"]);
    assert_eq!(status, 0, "{err}");
    assert!(!err.contains("inodes read as needed") && err.contains("read-write"), "{err}");
    assert!(out.contains("/a/f:"), "{out}");
    let (status, out, err) = ferrodax(&["-v", "cat", pool, "/many/file-042"]);
    assert_eq!((status, out.as_str()), (0, "contents of 42"), "{err}");
    assert!(err.contains("inodes read as needed"), "{err}");
    for args in [
        ["-v", "readlink", pool, "/to-b"].as_slice(),
        &["-v", "xattr", pool, "get", "/a/b/f-again", "user.k"],
    ] {
        let (status, out, err) = ferrodax(args);
        assert_eq!(status, 0, "{args:?}: {err}");
        assert!(out == "/a/b\n" || out == "v", "{args:?}: {out}");
        assert!(err.contains("inodes read as needed"), "{args:?}: {err}");
    }
    let (status, out, err) = ferrodax(&["-v", "ls", "-l", pool, "/a/b"]);
    assert_eq!(status, 0, "{err}");
    assert!(err.contains("inodes read as needed"), "{err}");
    assert!(out.contains("deep") && out.contains("rel -> ../f"), "{out}");
    let (status, _, err) = ferrodax(&["cat", pool, "/many/file-999"]);
    assert_eq!(status, 1);
    assert!(err.contains("No such file or directory"), "{err}");
}
