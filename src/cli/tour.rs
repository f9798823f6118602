//! `ferrodax tour`: the README's main-job command, a guided demonstration in about thirty lines.
//!
//! Owns the tour's script: make a pool, write a file, reflink it, dedupe two equal copies, CoW
//! write one clone (the source stays the same, by checksum), map the clone as a DAX view and store
//! into a shared page of it with plain stores (the fault handler copies the page; the source stays
//! the same, by checksum and through its own view), ask the reverse map who owns a shared block,
//! check, remount and check again, then map three clones from threads of their own, inject a memory
//! failure into their shared block and print the report. Every claim it prints is verified first; the exit
//! status is 0 only if all of them held. Must never reach below the library API, and must never
//! touch any file but its own pool: an existing file at `--pool` is replaced only if it is the pool
//! of an earlier tour and `--force` was given; anything else there (a file of the user's, another
//! ferrodax pool, a symlink) is refused, `--force` or not.

use ferrodax::api::Mapping;
use ferrodax::dax::vm::PageProtection;
use ferrodax::dax::{Holder, MapAccess, PageShare, PageState};
use ferrodax::{DedupeStatus, DedupeTarget, Error, File, Fs, OpenOptions, OwnerKind, Pool};
use std::collections::BTreeSet;
use std::fmt::Display;
use std::path::Path;

/// Where the tour puts its pool unless told otherwise (in the current directory).
pub const DEFAULT_POOL: &str = "ferrodax-tour.pool";
/// The tour's pool size: plenty for its 2.5 MiB of files.
const POOL_SIZE: u64 = 64 << 20;
/// The first file's size.
const FILE_SIZE: usize = 1 << 20;
/// The size of each of the two equal copies that get deduped.
const COPY_SIZE: usize = 256 << 10;
/// Where the CoW write into the clone lands.
const PATCH_OFFSET: u64 = 64 << 10;
/// The file system block size.
const BLOCK: u64 = 4096;
/// The page of /clone that the DAX step stores into (still shared: the CoW write hit page 16).
const DAX_PAGE: u64 = 32;
/// Where in that page the DAX store lands.
const DAX_STORE_AT: u64 = DAX_PAGE * BLOCK + 100;
/// What the DAX step stores.
const DAX_STAMP: &[u8] = b"stored through a DAX view";

/// Every name the tour makes in its pool's root directory.
const TOUR_NAMES: [&str; 7] =
    ["original", "clone", "copy-a", "copy-b", "mf-source", "mf-clone-1", "mf-clone-2"];

/// Runs the tour; returns 0 if every verified claim held, else 1. An existing file at `pool` is
/// only replaced when it is an earlier tour's pool and `force` is set; otherwise the tour says why
/// not and returns 1 without touching it.
pub fn run(pool: &Path, force: bool) -> i32 {
    if let Err(message) = make_room_for_the_pool(pool, force) {
        eprintln!("ferrodax: tour: {message}");
        return 1;
    }
    let mut tour = Tour { checks: 0, failures: 0 };
    if let Err(message) = tour.script(pool) {
        println!("   FAILED: {message}");
        tour.failures += 1;
    }
    if tour.failures == 0 {
        println!("tour: all {} checks passed; look around: ferrodax ls {}", tour.checks, pool.display());
        0
    } else {
        println!("tour: {} of {} checks FAILED", tour.failures, tour.checks);
        1
    }
}

/// What is at `path` now, as far as the tour is concerned.
enum Existing {
    Nothing,
    /// The pool of an earlier tour (possibly of one that was interrupted).
    EarlierTour,
    /// Anything else, with what it is.
    NotOurs(String),
}

/// Looks at `path` without changing it. A pool counts as an earlier tour's when it has the tour's
/// size and its root holds nothing but names the tour makes (none, after an interrupted tour).
fn what_is_at(path: &Path) -> Existing {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Existing::Nothing,
        Err(e) => return Existing::NotOurs(format!("it cannot be examined ({e})")),
    };
    if !meta.is_file() {
        return Existing::NotOurs("it is not a regular file".into());
    }
    let names = Pool::open_read_only(path).and_then(|pool| {
        let fs = Fs::mount_read_only(&pool)?;
        fs.read_dir("/")
    });
    match names {
        Err(e) if e.errno() == libc::EBUSY => Existing::NotOurs(format!("it is a pool in use ({e})")),
        Err(_) => Existing::NotOurs("it is not a ferrodax pool".into()),
        Ok(_) if meta.len() != POOL_SIZE => Existing::NotOurs(format!(
            "it is a ferrodax pool of {} bytes, which the tour did not make",
            meta.len()
        )),
        Ok(entries) if entries.iter().all(|e| TOUR_NAMES.contains(&e.name.as_str())) => Existing::EarlierTour,
        Ok(_) => Existing::NotOurs("it is a ferrodax pool with files the tour did not make".into()),
    }
}

/// Makes sure the tour may create its pool at `path`: nothing is there, or an earlier tour's pool
/// is there and `force` says to replace it (it is removed here). Otherwise says why not.
fn make_room_for_the_pool(path: &Path, force: bool) -> Result<(), String> {
    let shown = path.display();
    match what_is_at(path) {
        Existing::Nothing => Ok(()),
        Existing::NotOurs(what) => Err(format!(
            "{shown}: File exists, and the tour will not overwrite it: {what}. Give the tour a new file \
             with --pool FILE."
        )),
        Existing::EarlierTour if !force => Err(format!(
            "{shown}: File exists: it is the pool of an earlier tour (look around with `ferrodax ls {shown}`). \
             Replace it with `ferrodax tour --force{}`, or give the tour a new file with --pool FILE.",
            if path == Path::new(DEFAULT_POOL) { String::new() } else { format!(" --pool {shown}") }
        )),
        Existing::EarlierTour => {
            std::fs::remove_file(path).map_err(|e| format!("{shown}: removing the earlier tour's pool: {e}"))
        }
    }
}

/// Counts verified claims.
struct Tour {
    checks: u32,
    failures: u32,
}

/// Says what failed, with the error's text.
fn context<T>(what: &str, result: Result<T, Error>) -> Result<T, String> {
    result.map_err(|e| format!("{what}: {e}"))
}

/// A deterministic, non-repeating-per-block byte pattern.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8).collect()
}

fn read_all(file: &File) -> Result<Vec<u8>, String> {
    let size = context("stat", file.metadata())?.size as usize;
    let mut buffer = vec![0u8; size];
    context("read", file.read_exact_at(&mut buffer, 0))?;
    Ok(buffer)
}

fn create(fs: &Fs, path: &str) -> Result<File, String> {
    context(&format!("create {path}"), fs.open(path, OpenOptions::new().read(true).write(true).create(true)))
}

/// Opens a file for reading (a read-only mount refuses write access with EROFS, as Linux does).
fn open(fs: &Fs, path: &str) -> Result<File, String> {
    context(&format!("open {path}"), fs.open(path, OpenOptions::new().read(true)))
}

impl Tour {
    /// Records a claim; prints FAILED if it does not hold.
    fn verify(&mut self, holds: bool, claim: impl Display) {
        self.checks += 1;
        if !holds {
            self.failures += 1;
            println!("   FAILED: {claim}");
        }
    }

    fn script(&mut self, path: &Path) -> Result<(), String> {
        // Pool::create never replaces a file (EEXIST): make_room_for_the_pool decided first.
        let pool = context("creating the pool", Pool::create(path, POOL_SIZE))?;
        let fs = context("mkfs", Fs::format(&pool))?;
        let stats = fs.stats();
        println!(
            "ferrodax tour: pool {} ({} MiB: {} blocks of {BLOCK} bytes, {} free)",
            path.display(),
            POOL_SIZE >> 20,
            stats.total_blocks,
            stats.free_blocks
        );

        // 1. A file.
        let data = pattern(FILE_SIZE, 1);
        let crc = crc32c::crc32c(&data);
        let original = create(&fs, "/original")?;
        context("write /original", original.write_at(&data, 0))?;
        self.verify(read_all(&original)? == data, "/original reads back what was written");
        let original_map = context("fiemap /original", fs.fiemap(&original))?;
        println!(
            "1. wrote /original: 1 MiB, crc32c {crc:08x}, {} extent(s) from pool offset {:#x}",
            original_map.len(),
            original_map[0].physical
        );

        // 2. A reflink: the clone shares every block.
        let free_before = fs.stats().free_blocks;
        let clone = create(&fs, "/clone")?;
        let linked = context("reflink", fs.reflink(&original, 0, &clone, 0, 0))?;
        let used = free_before.saturating_sub(fs.stats().free_blocks);
        let clone_map = context("fiemap /clone", fs.fiemap(&clone))?;
        let same_blocks = |a: &[ferrodax::FiemapExtent], b: &[ferrodax::FiemapExtent]| {
            a.iter().map(|e| (e.physical, e.length)).eq(b.iter().map(|e| (e.physical, e.length)))
        };
        let original_map = context("fiemap /original", fs.fiemap(&original))?;
        self.verify(linked == FILE_SIZE as u64, format!("reflink linked {linked} bytes"));
        self.verify(used < 16, format!("reflink used {used} blocks (it must not copy data)"));
        self.verify(
            original_map.iter().chain(&clone_map).all(|e| e.shared) && same_blocks(&original_map, &clone_map),
            "both files map the same blocks, all flagged shared",
        );
        self.verify(read_all(&clone)? == data, "/clone reads the same bytes");
        println!(
            "2. reflinked /original -> /clone: {linked} bytes, no data copied; both map the same {} blocks, \
             flagged FIEMAP_EXTENT_SHARED (0x2000)",
            FILE_SIZE as u64 / BLOCK
        );

        // 3. Two equal copies in different blocks.
        let copy_data = pattern(COPY_SIZE, 2);
        let copy_a = create(&fs, "/copy-a")?;
        let copy_b = create(&fs, "/copy-b")?;
        context("write /copy-a", copy_a.write_at(&copy_data, 0))?;
        context("write /copy-b", copy_b.write_at(&copy_data, 0))?;
        let map_a = context("fiemap /copy-a", fs.fiemap(&copy_a))?;
        let map_b = context("fiemap /copy-b", fs.fiemap(&copy_b))?;
        self.verify(map_a[0].physical != map_b[0].physical, "the copies start in different blocks");
        println!(
            "3. wrote /copy-a and /copy-b: {} KiB each, the same bytes, in separate blocks (pool {:#x} and {:#x})",
            COPY_SIZE >> 10,
            map_a[0].physical,
            map_b[0].physical
        );

        // 4. Dedupe them; and a dedupe of different contents changes nothing.
        let free_before = fs.stats().free_blocks;
        let statuses = context(
            "dedupe",
            fs.dedupe(&copy_a, 0, COPY_SIZE as u64, &[DedupeTarget { file: &copy_b, offset: 0 }]),
        )?;
        let freed = fs.stats().free_blocks.saturating_sub(free_before);
        let deduped =
            matches!(statuses[0], DedupeStatus::Same { bytes_deduped } if bytes_deduped == COPY_SIZE as u64);
        self.verify(deduped, format!("dedupe of equal copies says SAME: {:?}", statuses[0]));
        let map_b = context("fiemap /copy-b", fs.fiemap(&copy_b))?;
        self.verify(
            same_blocks(&map_a, &map_b) && map_b.iter().all(|e| e.shared),
            "after dedupe /copy-b maps /copy-a's blocks, flagged shared",
        );
        self.verify(freed == COPY_SIZE as u64 / BLOCK, format!("dedupe freed {freed} blocks"));
        self.verify(read_all(&copy_b)? == copy_data, "/copy-b still reads the same bytes");
        let map_a = context("fiemap /copy-a", fs.fiemap(&copy_a))?;
        let differing = context(
            "dedupe",
            fs.dedupe(&original, 0, COPY_SIZE as u64, &[DedupeTarget { file: &copy_a, offset: 0 }]),
        )?;
        self.verify(matches!(differing[0], DedupeStatus::Differs), "dedupe of different bytes says DIFFERS");
        self.verify(
            context("fiemap /copy-a", fs.fiemap(&copy_a))? == map_a,
            "a DIFFERS dedupe changes nothing",
        );
        println!(
            "4. deduped /copy-b against /copy-a: SAME, {freed} blocks freed, both now map pool {:#x}; \
             against /original instead: DIFFERS, nothing changed",
            map_a[0].physical
        );

        // 5. A copy-on-write write into the clone leaves the original alone.
        let patch = vec![0xee; BLOCK as usize];
        context("write /clone", clone.write_at(&patch, PATCH_OFFSET))?;
        let mut expected = data.clone();
        expected[PATCH_OFFSET as usize..(PATCH_OFFSET + BLOCK) as usize].copy_from_slice(&patch);
        let clone_bytes = read_all(&clone)?;
        let clone_crc = crc32c::crc32c(&clone_bytes);
        let original_crc = crc32c::crc32c(&read_all(&original)?);
        self.verify(clone_bytes == expected, "/clone reads the patched bytes");
        self.verify(
            original_crc == crc,
            format!("/original's crc32c is still {crc:08x}, not {original_crc:08x}"),
        );
        let clone_map = context("fiemap /clone", fs.fiemap(&clone))?;
        let patched =
            clone_map.iter().find(|e| e.logical <= PATCH_OFFSET && PATCH_OFFSET < e.logical + e.length);
        let patched_at = patched.map(|e| e.physical + (PATCH_OFFSET - e.logical));
        let private_bytes: u64 = clone_map.iter().filter(|e| !e.shared).map(|e| e.length).sum();
        self.verify(
            patched.is_some_and(|e| !e.shared) && private_bytes == BLOCK,
            "only the written block of /clone became private",
        );
        println!(
            "5. CoW write of 4 KiB into /clone at {} KiB: /clone crc32c {clone_crc:08x}, /original still \
             {original_crc:08x}",
            PATCH_OFFSET >> 10
        );
        println!(
            "   the written block moved to pool {:#x}, private; the other {} blocks are still shared",
            patched_at.unwrap_or(0),
            FILE_SIZE as u64 / BLOCK - 1
        );

        // 6. A DAX view of the clone: a plain store into a shared page faults, and the handler
        // copies the page before the store resumes; a view of /original still shows the old bytes.
        let (clone_crc, dax_copy) = self.dax_store(&fs, &original, &clone, &expected, crc)?;
        println!(
            "6. mapped /clone read-write and /original read-only as DAX views (their pages are pool pages); \
             a plain store of {} bytes into /clone's shared page {DAX_PAGE} faulted:",
            DAX_STAMP.len()
        );
        println!(
            "   the handler copied the page to pool {dax_copy:#x}; /clone crc32c {clone_crc:08x}, /original \
             still {crc:08x}, and its view still shows the old bytes"
        );

        // 7. Who owns a shared block: the reverse map answers.
        let shared_at = original_map[0].physical;
        let owners = fs.owners(shared_at, BLOCK);
        println!("7. owners of pool block {shared_at:#x} (block 0 of /original, from fiemap), from the reverse map:");
        let mut paths = BTreeSet::new();
        for owner in &owners {
            if let OwnerKind::File { ino, path, file_offset, refcount } = &owner.owner {
                let path = path.clone().unwrap_or_default();
                println!("     {path} (ino {ino}) at file offset {file_offset}, refcount {refcount}");
                paths.insert(path);
            } else {
                println!("     {:?}", owner.owner);
            }
        }
        let expected_paths: BTreeSet<String> = ["/clone", "/original"].map(String::from).into();
        self.verify(paths == expected_paths && owners.len() == 2, "the shared block has exactly two owners");
        if let Some(at) = patched_at {
            let owners = fs.owners(at, BLOCK);
            let only_clone = matches!(&owners[..], [o] if matches!(&o.owner,
                OwnerKind::File { path: Some(p), file_offset, refcount: 1, .. }
                    if p == "/clone" && *file_offset == PATCH_OFFSET));
            self.verify(only_clone, format!("the CoW block's only owner is /clone: {owners:?}"));
            println!(
                "   and pool block {at:#x} (the CoW copy) has one owner: /clone at offset {PATCH_OFFSET}"
            );
        }

        // 8. fsck, then remount from the media and check again.
        let report = fs.check();
        self.verify(report.is_clean(), format!("check is clean:\n{report}"));
        println!("8. check: {}", report.to_string().lines().last().unwrap_or_default());
        drop((original, clone, copy_a, copy_b, fs, pool));
        let pool = context("reopening the pool", Pool::open(path))?;
        let fs = context("remount", Fs::mount(&pool))?;
        let sums: Vec<u32> = ["/original", "/clone", "/copy-a", "/copy-b"]
            .iter()
            .map(|p| open(&fs, p).and_then(|f| read_all(&f)).map(|b| crc32c::crc32c(&b)))
            .collect::<Result<_, _>>()?;
        let copy_crc = crc32c::crc32c(&copy_data);
        self.verify(
            sums == [crc, clone_crc, copy_crc, copy_crc],
            "every file reads back the same after remount",
        );
        let shared_after = fs.owners(shared_at, BLOCK).len();
        self.verify(shared_after == 2, format!("after remount the shared block has {shared_after} owners"));
        let report = fs.check();
        self.verify(report.is_clean(), format!("check after remount is clean:\n{report}"));
        println!(
            "   remounted: all 4 files read back with the same checksums, sharing intact; check: {}",
            if report.is_clean() { "clean" } else { "NOT CLEAN" }
        );

        // 9. Memory failure: clones mapped from threads, poison in a shared block, the report.
        self.memory_failure(&fs)?;
        drop((fs, pool));

        // 10. Damage to metadata: every record and checkpoint block has a second copy.
        self.damaged_log_record(path)
    }

    /// Step 10: scribbles over the first record of the log in the pool file (as a stray write or a
    /// bad DIMM would), then shows that a read-only mount takes the record from the log mirror and
    /// says so, every file still reads back, and a read-write mount makes both copies whole.
    fn damaged_log_record(&mut self, path: &Path) -> Result<(), String> {
        use std::os::unix::fs::FileExt;
        let files = ["/original", "/clone", "/copy-a", "/copy-b"];
        let sums = |fs: &Fs| -> Result<Vec<u32>, String> {
            files.iter().map(|p| open(fs, p).and_then(|f| read_all(&f)).map(|b| crc32c::crc32c(&b))).collect()
        };
        let (log_start, before) = {
            let pool = context("reopening the pool", Pool::open(path))?;
            let fs = context("remount", Fs::mount(&pool))?;
            let sb = fs.read_lock().journal().superblock().clone();
            (sb.log_start, sums(&fs)?)
        };
        let at = log_start * BLOCK + 40;
        let scribbled =
            std::fs::OpenOptions::new().write(true).open(path).and_then(|f| f.write_all_at(&[0x5a; 16], at));
        context(
            "scribbling on the log",
            scribbled.map_err(|e| Error::Os { context: path.display().to_string(), source: e }),
        )?;
        let pool = context("opening the damaged pool", Pool::open_read_only(path))?;
        let fs = context("read-only mount of the damaged pool", Fs::mount_read_only(&pool))?;
        let notes = fs.read_lock().mount_notes().repaired.clone();
        let mirrored = notes.iter().find(|n| n.contains("read from the log mirror")).cloned();
        self.verify(mirrored.is_some(), format!("mount says it read the record from the mirror: {notes:?}"));
        self.verify(sums(&fs)? == before, "every file reads back the same from the damaged pool");
        println!(
            "10. scribbled 16 bytes over the log's first record (pool offset {at:#x}); mount: {}",
            mirrored.unwrap_or_default()
        );
        drop((fs, pool));
        let pool = context("reopening the pool", Pool::open(path))?;
        drop(context("read-write mount (repairs)", Fs::mount(&pool))?);
        drop(pool);
        let pool = context("reopening the pool", Pool::open_read_only(path))?;
        let fs = context("remount", Fs::mount_read_only(&pool))?;
        let whole = fs.read_lock().mount_notes().repaired.is_empty();
        self.verify(whole, "after a read-write mount both copies are whole again");
        let report = fs.check();
        self.verify(report.is_clean(), format!("check after the repair is clean:\n{report}"));
        println!(
            "   every file reads back; a read-write mount rewrote it (a new checkpoint), and check is {}",
            if report.is_clean() && whole { "clean" } else { "NOT CLEAN" }
        );
        Ok(())
    }

    /// Step 9: writes /mf-source, reflinks it into two clones, maps all three from threads of their
    /// own, injects a memory failure into a shared block and prints the report; verifies that every
    /// owner and every view was found, the views now show the page as poisoned, reads of the bad
    /// block are EIO in every owner (the good blocks still read back), and check is clean.
    fn memory_failure(&mut self, fs: &Fs) -> Result<(), String> {
        const PAGES: u64 = 8;
        const BAD_PAGE: u64 = 5;
        let data = pattern((PAGES * BLOCK) as usize, 99);
        let source = create(fs, "/mf-source")?;
        context("write /mf-source", source.write_at(&data, 0))?;
        let mut files = vec![source];
        for name in ["/mf-clone-1", "/mf-clone-2"] {
            let clone = create(fs, name)?;
            context("reflink", fs.reflink(&files[0], 0, &clone, 0, 0))?;
            files.push(clone);
        }
        let files = std::sync::Arc::new(files);
        let views: Vec<Mapping> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..files.len())
                .map(|i| {
                    let files = files.clone();
                    std::thread::Builder::new()
                        .name(format!("mapper-{i}"))
                        .spawn_scoped(scope, move || {
                            files[i].map_with_holder(
                                0,
                                PAGES * BLOCK,
                                MapAccess::Read,
                                Holder::current("tour"),
                            )
                        })
                        .expect("spawn")
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("mapper thread")).collect::<Result<_, _>>()
        })
        .map_err(|e| format!("map: {e}"))?;
        let bad = match views[0].page_state(BAD_PAGE) {
            PageState::Block { phys, .. } => phys,
            other => return Err(format!("page {BAD_PAGE} of /mf-source's view is {other:?}")),
        };
        println!(
            "9. memory failure: /mf-source reflinked into /mf-clone-1 and /mf-clone-2, each mapped by its own \
             thread; poison injected into their shared pool block {bad} (fs.memory_failure):"
        );
        let report = context(
            "memory_failure",
            fs.memory_failure(bad * BLOCK, BLOCK, ferrodax::memfail::FailureFlags::default()),
        )?;
        for line in report.to_string().lines() {
            println!("   {line}");
        }
        let owners: BTreeSet<(String, u64, bool)> = report
            .files
            .iter()
            .map(|o| (o.path.clone().unwrap_or_default(), o.file_offset, o.shared))
            .collect();
        let expected: BTreeSet<(String, u64, bool)> = ["/mf-source", "/mf-clone-1", "/mf-clone-2"]
            .iter()
            .map(|p| (p.to_string(), BAD_PAGE * BLOCK, true))
            .collect();
        self.verify(owners == expected, "the report names all three owners of the shared block");
        self.verify(report.views.len() == views.len(), "the report names every view of every owner");
        self.verify(
            views.iter().all(|v| v.page_state(BAD_PAGE) == PageState::Poisoned { phys: bad }),
            "every view now shows the page as poisoned (an access raises SIGBUS BUS_MCEERR_AR)",
        );
        let mut eio = 0;
        let mut good = 0;
        for file in files.iter() {
            let mut buf = vec![0u8; BLOCK as usize];
            if file.read_at(&mut buf, BAD_PAGE * BLOCK).is_err_and(|e| e.errno() == libc::EIO) {
                eio += 1;
            }
            let at = ((BAD_PAGE + 1) * BLOCK) as usize;
            if file.read_at(&mut buf, at as u64).is_ok() && buf[..] == data[at..at + BLOCK as usize] {
                good += 1;
            }
        }
        self.verify(eio == files.len(), "reads of the bad block are EIO in every owner");
        self.verify(good == files.len(), "the good blocks around it still read back");
        let check = fs.check();
        self.verify(
            check.is_clean() && check.quarantined_blocks >= 1,
            format!("check is clean with the bad block quarantined:\n{check}"),
        );
        println!(
            "   pread of block {BAD_PAGE} is EIO in all three files, the other blocks read back; check: {}",
            check.to_string().lines().last().unwrap_or_default()
        );
        Ok(())
    }

    /// Step 6: maps /clone read-write and /original read-only, stores [`DAX_STAMP`] into a shared
    /// page of /clone with plain stores, and verifies that only /clone changed. `clone_before` is
    /// /clone's contents before the store. Returns /clone's new checksum and the pool offset of
    /// the page's copy.
    fn dax_store(
        &mut self,
        fs: &Fs,
        original: &File,
        clone: &File,
        clone_before: &[u8],
        original_crc: u32,
    ) -> Result<(u32, u64), String> {
        let len = FILE_SIZE as u64;
        let clone_view = context("map /clone", clone.map(0, len, MapAccess::ReadWrite))?;
        let original_view = context("map /original", original.map(0, len, MapAccess::Read))?;
        let shared = match clone_view.page_state(DAX_PAGE) {
            PageState::Block { phys, prot: PageProtection::ReadOnly } => phys,
            other => {
                return Err(format!("page {DAX_PAGE} of /clone's view is {other:?}, not shared read-only"))
            }
        };
        self.verify(
            fs.page_share(shared) == Some(PageShare::Shared { entries: 2 }),
            format!("both views map pool block {shared}: {:?}", fs.page_share(shared)),
        );
        let mut old_bytes = vec![0u8; DAX_STAMP.len()];
        context("load", original_view.read_at(DAX_STORE_AT as usize, &mut old_bytes))?;

        context("store into /clone's view", clone_view.store_plain(DAX_STORE_AT as usize, DAX_STAMP))?;

        let copy = match clone_view.page_state(DAX_PAGE) {
            PageState::Block { phys, prot: PageProtection::ReadWrite } if phys != shared => phys,
            other => return Err(format!("after the store, page {DAX_PAGE} of /clone's view is {other:?}")),
        };
        self.verify(
            fs.page_share(shared) == Some(PageShare::Single { ino: original.ino(), page: DAX_PAGE }),
            format!("the old block is mapped by /original's view alone: {:?}", fs.page_share(shared)),
        );
        let mut expected = clone_before.to_vec();
        expected[DAX_STORE_AT as usize..DAX_STORE_AT as usize + DAX_STAMP.len()].copy_from_slice(DAX_STAMP);
        let clone_bytes = read_all(clone)?;
        self.verify(clone_bytes == expected, "/clone reads the stored bytes (pread sees the view's store)");
        let original_now = crc32c::crc32c(&read_all(original)?);
        self.verify(
            original_now == original_crc,
            format!("/original's crc32c is still {original_crc:08x}, not {original_now:08x}"),
        );
        let mut through_view = vec![0u8; DAX_STAMP.len()];
        context("load", original_view.read_at(DAX_STORE_AT as usize, &mut through_view))?;
        self.verify(through_view == old_bytes, "/original's view still shows the old bytes");
        Ok((crc32c::crc32c(&clone_bytes), copy * BLOCK))
    }
}
