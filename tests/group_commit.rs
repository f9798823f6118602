//! Group commit (docs/ARCHITECTURE.md, "Group commit"): on a backend whose drain is a device
//! flush (a pool file on a disk), operations are applied at once and become durable together at
//! the next sync point. What the crash tests (tests/crash.rs, the `grouped` scenarios) do not
//! show: the sync points an operation brings forward itself (space that only the group's frees
//! give back, a group as large as the log allows, a log copy moved off bad memory), the periodic
//! sync of a long-running front end, syncfs, a checkpoint, a read-only mount, memory failure of a
//! block a group freed or of a bad block a group's removal dropped, and a view page made writable.

use ferrodax::pool::RecordingBackend;
use ferrodax::{Fs, OpenOptions, Pool};
use std::sync::Arc;

const BLOCK: u64 = 4096;

fn rw() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true);
    o
}

/// A freshly formatted pool of `bytes` on a recording backend that groups commits.
fn grouped_pool(bytes: u64) -> (Arc<RecordingBackend>, Fs) {
    let backend = Arc::new(RecordingBackend::new(bytes));
    backend.set_drain_flushes_device(true);
    let fs = Fs::format(&Pool::from_backend(backend.clone())).expect("format");
    assert!(fs.read_lock().journal().groups_commits());
    (backend, fs)
}

/// The tree of the pool's durable image, as (path, size, first bytes) of every file in "/".
fn durable_files(backend: &RecordingBackend) -> Vec<(String, u64)> {
    let fs = Fs::mount_read_only(&Pool::from_backend(Arc::new(RecordingBackend::from_image(
        backend.durable_image(),
    ))))
    .expect("the durable image mounts");
    let mut out: Vec<(String, u64)> = fs
        .read_dir("/")
        .unwrap()
        .into_iter()
        .map(|e| (e.name.clone(), fs.metadata(&format!("/{}", e.name)).unwrap().size))
        .collect();
    out.sort();
    out
}

#[test]
fn a_write_that_needs_blocks_a_group_freed_syncs_the_group_first() {
    let (_backend, fs) = grouped_pool(4 << 20);
    let usable = fs.stats().usable_blocks;
    let big = (usable - 8) * BLOCK;
    fs.open("/big", &rw()).unwrap().write_at(&vec![0x5a; big as usize], 0).unwrap();
    fs.open("/big", &rw()).unwrap().sync_all().unwrap();
    fs.remove_file("/big").unwrap();
    {
        let g = fs.read_lock();
        assert!(g.state().held_blocks() >= usable - 8, "the removal's blocks are held until it is durable");
        assert!(g.has_unsynced());
    }
    // As much again: only the held blocks can take it, so the write syncs the removal first.
    let again = fs.open("/again", &rw()).unwrap();
    again.write_at(&vec![0xa5; big as usize], 0).unwrap();
    let g = fs.read_lock();
    assert!(g.state().held.is_empty(), "the sync released the held blocks");
    assert!(g.journal().stats.records >= 1, "the removal was written as a record");
    drop(g);
    let mut buf = vec![0; big as usize];
    assert_eq!(again.read_at(&mut buf, 0).unwrap(), big as usize);
    assert!(buf.iter().all(|&b| b == 0xa5));
    assert!(fs.check().is_clean(), "{}", fs.check());
}

#[test]
fn thousands_of_grouped_operations_survive_unmount_through_full_groups_and_checkpoints() {
    // A 4 MiB pool has a 16-block log: groups fill up (half the log), the log fills up, and
    // checkpoints start it over, all while the operations stay grouped in between.
    let (backend, fs) = grouped_pool(4 << 20);
    for i in 0..1500u32 {
        let name = format!("/file-{i:05}");
        fs.open(&name, &rw()).unwrap().write_at(&i.to_le_bytes(), 0).unwrap();
        if i % 3 != 0 {
            fs.remove_file(&name).unwrap();
        }
    }
    let (records, checkpoints, grouped) = {
        let g = fs.read_lock();
        let s = g.journal().stats;
        (s.records, s.checkpoints, s.grouped)
    };
    assert!(grouped >= 4000, "creates, writes and removals were grouped: {grouped}");
    assert!(records > 1 && records < grouped / 10, "{records} records for {grouped} operations");
    assert!(checkpoints >= 1, "the log filled up");
    drop(fs);
    assert_eq!(backend.unpersisted_words(), 0);
    let files = durable_files(&backend);
    let expected: Vec<(String, u64)> =
        (0..1500u32).filter(|i| i % 3 == 0).map(|i| (format!("file-{i:05}"), 4)).collect();
    assert_eq!(files, expected);
    let fs = Fs::mount(&Pool::from_backend(Arc::new(RecordingBackend::from_image(backend.durable_image()))))
        .unwrap();
    assert!(fs.check().is_clean(), "{}", fs.check());
}

#[test]
fn syncfs_makes_every_grouped_operation_durable() {
    let (backend, fs) = grouped_pool(1 << 20);
    fs.create_dir("/d").unwrap();
    fs.open("/f", &rw()).unwrap().write_at(b"grouped", 0).unwrap();
    assert_eq!(durable_files(&backend), Vec::<(String, u64)>::new(), "nothing durable before the sync point");
    fs.sync().unwrap();
    assert_eq!(durable_files(&backend), vec![("d".to_string(), 0), ("f".to_string(), 7)]);
    assert!(!fs.read_lock().has_unsynced());
}

#[test]
fn the_periodic_sync_makes_grouped_operations_durable_without_a_sync_point() {
    let (backend, fs) = grouped_pool(1 << 20);
    let periodic = fs.sync_periodically();
    fs.open("/f", &rw()).unwrap().write_at(b"later", 0).unwrap();
    // Within about GROUP_COMMIT_INTERVAL; waited for up to 30 s (a loaded machine), never timed.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while fs.read_lock().has_unsynced() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(durable_files(&backend), vec![("f".to_string(), 5)], "the periodic sync made /f durable");
    drop(periodic);
}

#[test]
fn a_killed_process_keeps_what_it_fsynced_and_loses_only_its_group() {
    // A pool file under the target directory (on a disk on any usual machine: msync persistence,
    // so commits are grouped); a `ferrodax io` process writes, fsyncs, writes again, and is
    // killed while it sleeps.
    use std::io::BufRead;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let pool = dir.path().join("p.pool");
    let bin = env!("CARGO_BIN_EXE_ferrodax");
    let made =
        std::process::Command::new(bin).args(["mkfs"]).arg(&pool).args(["--size", "16m"]).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let mut child = std::process::Command::new(bin)
        .args(["io", "-f", "-c", "pwrite -S 0x61 0 4096", "-c", "fsync", "-c", "pwrite -S 0x62 4096 4096"])
        .args(["-c", "sleep 60000"])
        .arg(&pool)
        .arg("/x")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut wrote = 0;
    while wrote < 2 {
        let line = lines.next().expect("the process prints both writes").unwrap();
        wrote += usize::from(line.starts_with("wrote "));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let fs = Fs::mount(&Pool::open(&pool).unwrap()).unwrap();
    let grouped = fs.read_lock().journal().groups_commits();
    let x = fs.open("/x", OpenOptions::new().read(true)).expect("the fsynced create survived");
    let size = x.metadata().unwrap().size;
    let mut first = vec![0; 4096];
    x.read_exact_at(&mut first, 0).unwrap();
    assert!(first.iter().all(|&b| b == 0x61), "the fsynced write survived");
    if grouped {
        assert_eq!(size, 4096, "the write after the fsync was grouped and died with the process");
    } else {
        // A memory file system under the target directory: every operation was durable on return.
        assert_eq!(size, 8192);
    }
    assert!(fs.check().is_clean(), "{}", fs.check());
}

/// Pool block behind byte `offset` of `path`.
fn block_of(fs: &Fs, path: &str, offset: u64) -> u64 {
    let ino = fs.metadata(path).unwrap().ino;
    fs.read_lock().block_of(ino, offset / BLOCK).expect("mapped")
}

#[test]
fn a_memory_failure_of_a_block_a_group_freed_quarantines_it_after_the_group_is_durable() {
    let (backend, fs) = grouped_pool(1 << 20);
    fs.open("/gone", &rw()).unwrap().write_at(&vec![0x11; 4 * BLOCK as usize], 0).unwrap();
    fs.sync().unwrap();
    let blocks: Vec<u64> = (0..4).map(|i| block_of(&fs, "/gone", i * BLOCK)).collect();
    fs.remove_file("/gone").unwrap();
    assert!(fs.read_lock().state().held.iter().any(|&(s, l)| (s..s + l).contains(&blocks[2])));
    let report = fs.memory_failure(blocks[2] * BLOCK, BLOCK, Default::default()).unwrap();
    assert_eq!((report.files.len(), report.recorded.newly_bad), (0, 1), "{report}");
    {
        let g = fs.read_lock();
        assert!(!g.has_unsynced(), "a quarantine is never grouped: the removal became durable first");
        assert!(g.state().held.is_empty());
        assert!(!g.state().free.any_free(blocks[2], 1), "the bad block is not free");
        assert!(g.state().free.is_free(blocks[3], 1), "the other freed blocks are");
    }
    assert!(fs.check().is_clean(), "{}", fs.check());
    let durable =
        Fs::mount(&Pool::from_backend(Arc::new(RecordingBackend::from_image(backend.durable_image()))))
            .unwrap();
    assert_eq!(durable.bad_blocks(), vec![(blocks[2], 1)]);
    assert!(durable.metadata("/gone").is_err());
    assert!(durable.check().is_clean(), "{}", durable.check());
}

#[test]
fn a_bad_block_of_a_file_removed_in_a_group_never_counts_as_free() {
    let (_backend, fs) = grouped_pool(1 << 20);
    fs.open("/poisoned", &rw()).unwrap().write_at(&vec![0x22; 4 * BLOCK as usize], 0).unwrap();
    fs.sync().unwrap();
    let bad = block_of(&fs, "/poisoned", BLOCK);
    let report = fs.memory_failure(bad * BLOCK, BLOCK, Default::default()).unwrap();
    assert_eq!((report.files.len(), report.recorded.newly_bad), (1, 1), "{report}");
    let free_before = fs.stats().free_blocks;
    fs.remove_file("/poisoned").unwrap();
    assert!(fs.read_lock().has_unsynced());
    let grouped = fs.stats();
    fs.sync().unwrap();
    let synced = fs.stats();
    assert_eq!(synced.free_blocks, free_before + 3, "three good blocks came back, the bad one did not");
    assert_eq!(grouped.free_blocks, synced.free_blocks, "the bad block counted as free while grouped");
    assert_eq!(grouped.usable_blocks, synced.usable_blocks);
    assert!(fs.check().is_clean(), "{}", fs.check());
}

#[test]
fn a_checkpoint_makes_a_pending_group_durable_and_frees_what_it_held() {
    let (backend, fs) = grouped_pool(1 << 20);
    fs.open("/kept", &rw()).unwrap().write_at(b"kept", 0).unwrap();
    fs.open("/gone", &rw()).unwrap().write_at(&vec![3; 2 * BLOCK as usize], 0).unwrap();
    fs.sync().unwrap();
    fs.remove_file("/gone").unwrap();
    fs.rename("/kept", "/renamed").unwrap();
    assert!(!fs.read_lock().state().held.is_empty());
    fs.checkpoint().unwrap();
    let g = fs.read_lock();
    assert!(!g.has_unsynced() && g.state().held.is_empty());
    drop(g);
    assert_eq!(durable_files(&backend), vec![("renamed".to_string(), 4)]);
    assert!(fs.check().is_clean(), "{}", fs.check());
}

#[test]
fn a_read_only_mount_of_a_grouping_pool_groups_nothing_and_syncs_as_a_no_op() {
    let (backend, fs) = grouped_pool(1 << 20);
    fs.open("/f", &rw()).unwrap().write_at(b"data", 0).unwrap();
    drop(fs);
    let image = Arc::new(RecordingBackend::from_image(backend.durable_image()));
    image.set_drain_flushes_device(true);
    let ro = Fs::mount_read_only(&Pool::from_backend(image.clone())).unwrap();
    assert_eq!(ro.open("/g", &rw()).unwrap_err().errno(), libc::EROFS);
    ro.sync().unwrap();
    assert!(!ro.read_lock().has_unsynced());
    assert_eq!(ro.metadata("/f").unwrap().size, 4);
    drop(ro);
    assert_eq!(image.unpersisted_words(), 0);
}

/// Writes files `<prefix>-NNNN` of `blocks` blocks each until the pool has no room for another
/// (ENOSPC); returns their names.
fn fill_with_files(fs: &Fs, prefix: &str, blocks: usize) -> Vec<String> {
    let mut names = Vec::new();
    for i in 0.. {
        let name = format!("{prefix}-{i:04}");
        match fs.open(&name, &rw()).unwrap().write_at(&vec![7; blocks * BLOCK as usize], 0) {
            Ok(_) => names.push(name),
            Err(e) => {
                assert_eq!(e.errno(), libc::ENOSPC, "{e}");
                fs.remove_file(&name).unwrap();
                return names;
            }
        }
    }
    unreachable!()
}

/// Fills a pool so that no 16 free blocks are contiguous (the free space is 2-block holes), with
/// `/run-*`, 3-block files that sit side by side; returns their names in pool order.
fn fragment_free_space(fs: &Fs) -> Vec<String> {
    let pairs = fill_with_files(fs, "/pair", 2);
    for name in pairs.iter().step_by(2) {
        fs.remove_file(name).unwrap();
    }
    fs.sync().unwrap();
    // Holes of 2 blocks everywhere; 3-block files take the larger runs (best fit).
    let mut runs = fill_with_files(fs, "/run", 3);
    fs.sync().unwrap();
    let longest = fs.read_lock().state().free.runs().map(|(_, l)| l).max().unwrap();
    assert!(longest < 16, "a free run of {longest} blocks is left");
    runs.sort_by_key(|name| block_of(fs, name, 0));
    runs
}

#[test]
fn a_memory_failure_of_the_log_finds_room_for_it_in_blocks_a_group_freed() {
    let (_backend, fs) = grouped_pool(1 << 20);
    let runs = fragment_free_space(&fs);
    let log_blocks = fs.read_lock().journal().superblock().log_blocks;
    // Six 3-block files side by side: 18 contiguous blocks once their removal is durable.
    let start = runs.windows(6).position(|w| {
        let first = block_of(&fs, &w[0], 0);
        w.iter().enumerate().all(|(i, n)| block_of(&fs, n, 0) == first + 3 * i as u64)
    });
    let start = start.expect("six adjacent 3-block files");
    for name in &runs[start..start + 6] {
        fs.remove_file(name).unwrap();
    }
    assert!(fs.read_lock().has_unsynced());
    assert!(fs.read_lock().state().held_blocks() >= log_blocks);
    let log = fs.read_lock().metadata_layout().iter().find(|m| m.0.to_string() == "log").unwrap().1;
    let report = fs.memory_failure((log + 1) * BLOCK, BLOCK, Default::default()).unwrap();
    assert_eq!(report.recorded.relocated, vec!["log".to_string()], "{report}");
    assert!(fs.check().is_clean(), "{}", fs.check());
}

#[test]
fn make_writable_leaves_a_copied_page_writable_while_commits_are_grouped() {
    use ferrodax::dax::vm::PageProtection;
    use ferrodax::dax::{MapAccess, PageState};
    let backend = Arc::new(RecordingBackend::new_memfd(1 << 20).expect("memfd"));
    backend.set_drain_flushes_device(true);
    let fs = Fs::format(&Pool::from_backend(backend.clone())).expect("format");
    let a = fs.open("/a", &rw()).unwrap();
    a.write_at(&vec![1; 3 * BLOCK as usize], 0).unwrap();
    let b = fs.open("/b", &rw()).unwrap();
    fs.reflink(&a, 0, &b, 0, 3 * BLOCK).unwrap();
    fs.sync().unwrap();
    let view = b.map(0, 3 * BLOCK, MapAccess::ReadWrite).unwrap();
    let _a_view = a.map(0, 3 * BLOCK, MapAccess::Read).unwrap();
    view.make_writable(2 * BLOCK as usize, 8).unwrap();
    assert!(
        matches!(view.page_state(2), PageState::Block { prot: PageProtection::ReadWrite, .. }),
        "make_writable promises a writable page: {:?}",
        view.page_state(2)
    );
    view.write_at(2 * BLOCK as usize, b"stored!!").unwrap();
    drop(view);
    let mut buf = [0; 8];
    b.read_at(&mut buf, 2 * BLOCK).unwrap();
    assert_eq!(&buf, b"stored!!");
    assert!(fs.check().is_clean(), "{}", fs.check());
}
