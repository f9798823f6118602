//! Group commit (docs/ARCHITECTURE.md, "Group commit"): on a backend whose drain is a device
//! flush (a pool file on a disk), operations are applied at once and become durable together at
//! the next sync point. What the crash tests (tests/crash.rs, the `grouped` scenarios) do not
//! show: the sync points an operation brings forward itself (space that only the group's frees
//! give back, a group as large as the log allows), the periodic sync of a long-running front end,
//! syncfs, and a whole process on a pool file on a disk.

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
