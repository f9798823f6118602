//! Threads of one process writing at the same time: writers of different files (in-place
//! overwrites under the shared lock, copy-on-write writes under the exclusive one, and both
//! mixed), writers of one file, readers beside in-place writers, and metadata changes (reflink,
//! truncate, create) in between. Contents are compared by checksum with what each thread wrote,
//! in memory and after a remount, and fsck must be clean. Nothing here measures time.

mod server_common;

use ferrodax::fs::check::CheckReport;
use ferrodax::memfail::FailureFlags;
use ferrodax::{File, Fs, OpenOptions, Pool};
use server_common::{fnv, noise, Rng, Server, TestPool};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;

const BLOCK: u64 = 4096;
/// Blocks of each thread's file.
const FILE_BLOCKS: u64 = 64;

fn options(in_place: bool) -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true).in_place(in_place);
    o
}

fn assert_clean(report: &CheckReport) {
    assert!(report.is_clean(), "fsck: {report:?}");
}

fn read_all(file: &File, len: u64) -> Vec<u8> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, 0).unwrap();
    buf
}

/// A file of `FILE_BLOCKS` blocks of noise, every block allocated and private.
fn allocated_file(fs: &Fs, path: &str, seed: u64, in_place: bool) -> (File, Vec<u8>) {
    let file = fs.open(path, &options(in_place)).unwrap();
    let bytes = noise(seed, (FILE_BLOCKS * BLOCK) as usize);
    file.write_at(&bytes, 0).unwrap();
    (file, bytes)
}

/// `writes` overwrites of `file` at offsets `rng` picks among `[first, first + blocks)` blocks:
/// whole blocks and unaligned pieces, each applied to `model` too.
fn overwrite(file: &File, model: &mut [u8], rng: &mut Rng, first: u64, blocks: u64, writes: usize) {
    for i in 0..writes {
        let block = first + rng.below(blocks);
        let (offset, len) = if i % 3 == 0 {
            // An unaligned piece inside the range, possibly across a block boundary.
            let start = block * BLOCK + rng.below(BLOCK);
            let end = (start + 1 + rng.below(2 * BLOCK)).min((first + blocks) * BLOCK);
            (start, end - start)
        } else {
            (block * BLOCK, BLOCK)
        };
        let data = noise(rng.next(), len as usize);
        assert_eq!(file.write_at(&data, offset).unwrap(), data.len());
        model[offset as usize..(offset + len) as usize].copy_from_slice(&data);
    }
}

/// Each of `threads` threads overwrites a file of its own (`in_place(t)` says how it opens it);
/// afterwards every file holds exactly what its thread wrote, in memory and after a remount.
fn writers_of_different_files(threads: usize, in_place: impl Fn(usize) -> bool + Sync) {
    let pool = Pool::memfd(64 << 20).unwrap();
    let fs = Fs::format(&pool).unwrap();
    let files: Vec<(File, Vec<u8>)> =
        (0..threads).map(|t| allocated_file(&fs, &format!("/f{t}"), t as u64, in_place(t))).collect();
    let barrier = Barrier::new(threads);
    let models: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .iter()
            .enumerate()
            .map(|(t, (file, bytes))| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut model = bytes.clone();
                    let mut rng = Rng(100 + t as u64);
                    barrier.wait();
                    overwrite(file, &mut model, &mut rng, 0, FILE_BLOCKS, 1500);
                    model
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((file, _), model) in files.iter().zip(&models) {
        assert_eq!(fnv(&read_all(file, FILE_BLOCKS * BLOCK)), fnv(model), "file {}", file.ino());
    }
    assert_clean(&fs.check());
    drop(files);
    drop(fs);
    let fs = Fs::mount(&pool).unwrap();
    for (t, model) in models.iter().enumerate() {
        let file = fs.open(&format!("/f{t}"), &options(false)).unwrap();
        assert_eq!(fnv(&read_all(&file, FILE_BLOCKS * BLOCK)), fnv(model), "/f{t} after a remount");
    }
    assert_clean(&fs.check());
}

#[test]
fn in_place_writers_of_different_files_leave_each_file_exactly_its_writes() {
    writers_of_different_files(4, |_| true);
}

#[test]
fn copy_on_write_writers_of_different_files_leave_each_file_exactly_its_writes() {
    writers_of_different_files(3, |_| false);
}

#[test]
fn in_place_and_copy_on_write_writers_side_by_side_leave_each_file_exactly_its_writes() {
    writers_of_different_files(4, |t| t % 2 == 0);
}

#[test]
fn writers_of_disjoint_ranges_of_one_file_leave_each_range_its_writes() {
    let pool = Pool::memfd(64 << 20).unwrap();
    let fs = Fs::format(&pool).unwrap();
    let (_, initial) = allocated_file(&fs, "/one", 7, false);
    let threads = 4u64;
    let per = FILE_BLOCKS / threads;
    let barrier = Barrier::new(threads as usize);
    let models: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (fs, barrier, initial) = (&fs, &barrier, &initial);
                s.spawn(move || {
                    // Half the threads in place, half copy-on-write, all through handles of their own.
                    let file = fs.open("/one", &options(t % 2 == 0)).unwrap();
                    let mut model = initial.clone();
                    let mut rng = Rng(200 + t);
                    barrier.wait();
                    overwrite(&file, &mut model, &mut rng, t * per, per, 1000);
                    model
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let file = fs.open("/one", &options(false)).unwrap();
    let bytes = read_all(&file, FILE_BLOCKS * BLOCK);
    for (t, model) in models.iter().enumerate() {
        let range = (t as u64 * per * BLOCK) as usize..((t as u64 + 1) * per * BLOCK) as usize;
        assert_eq!(fnv(&bytes[range.clone()]), fnv(&model[range]), "range of thread {t}");
    }
    assert_clean(&fs.check());
}

/// `len` bytes, all `byte`.
fn uniform_of(byte: u8, len: u64) -> Vec<u8> {
    vec![byte; len as usize]
}

/// A block whose 4096 bytes are all `byte`.
fn uniform(byte: u8) -> Vec<u8> {
    uniform_of(byte, BLOCK)
}

#[test]
fn readers_and_writers_of_one_range_see_every_write_whole() {
    // Writers store pieces of 64 KiB of one byte value over the same two pieces (two in place,
    // one copy-on-write); readers must never see two values in one piece, nor anything
    // unwritten.
    const PIECE: u64 = 16 * BLOCK;
    let pool = Pool::memfd(64 << 20).unwrap();
    let fs = Fs::format(&pool).unwrap();
    let file = fs.open("/same", &options(false)).unwrap();
    file.write_at(&uniform_of(1, 2 * PIECE), 0).unwrap();
    let stop = AtomicBool::new(false);
    let torn = std::thread::scope(|s| {
        let writers: Vec<_> = [(2u8, true), (3u8, true), (4u8, false)]
            .into_iter()
            .map(|(byte, in_place)| {
                let (fs, stop) = (&fs, &stop);
                s.spawn(move || {
                    let file = fs.open("/same", &options(in_place)).unwrap();
                    let piece = uniform_of(byte, PIECE);
                    for i in 0..4000u64 {
                        file.write_at(&piece, (i % 2) * PIECE).unwrap();
                    }
                    stop.store(true, Ordering::Relaxed);
                })
            })
            .collect();
        let reader = s.spawn(|| {
            let file = fs.open("/same", &options(false)).unwrap();
            let mut torn = Vec::new();
            let mut buf = uniform_of(0, PIECE);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                file.read_exact_at(&mut buf, (i % 2) * PIECE).unwrap();
                if !(1..=4).contains(&buf[0]) || buf.iter().any(|&b| b != buf[0]) {
                    torn.push(i % 2);
                }
                i += 1;
            }
            torn
        });
        writers.into_iter().for_each(|w| w.join().unwrap());
        reader.join().unwrap()
    });
    assert_eq!(torn, Vec::<u64>::new(), "pieces read with more than one writer's bytes");
    for piece in 0..2 {
        let mut buf = uniform_of(0, PIECE);
        file.read_exact_at(&mut buf, piece * PIECE).unwrap();
        assert!((2..=4).contains(&buf[0]) && buf.iter().all(|&b| b == buf[0]), "piece {piece}");
    }
    assert_clean(&fs.check());
}

#[test]
fn reflinks_and_truncates_beside_in_place_writers_capture_whole_writes() {
    // One thread overwrites /src in place, block by block with one byte value per pass, until
    // another has reflinked /src into 40 fresh files, creating and truncating a file between
    // clones. Every clone must show each block whole (one pass's value), /src must hold the
    // last pass, the clones never change afterwards, and fsck is clean.
    let pool = Pool::memfd(64 << 20).unwrap();
    let fs = Fs::format(&pool).unwrap();
    let src = fs.open("/src", &options(true)).unwrap();
    let blocks = 16u64;
    for block in 0..blocks {
        src.write_at(&uniform(1), block * BLOCK).unwrap();
    }
    let stop = AtomicBool::new(false);
    let (last, clones) = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut pass = 1u8;
            while !stop.load(Ordering::Relaxed) {
                pass = pass % 250 + 2;
                for block in 0..blocks {
                    src.write_at(&uniform(pass), block * BLOCK).unwrap();
                }
            }
            pass
        });
        let mut clones = Vec::new();
        for n in 0..40 {
            let path = format!("/clone{n}");
            let dst = fs.open(&path, &options(false)).unwrap();
            fs.reflink(&src, 0, &dst, 0, blocks * BLOCK).unwrap();
            clones.push((path, read_all(&dst, blocks * BLOCK)));
            let scratch = fs.open("/scratch", &options(false)).unwrap();
            scratch.write_at(&uniform(9), 3 * BLOCK).unwrap();
            scratch.set_len(BLOCK / 2).unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        (writer.join().unwrap(), clones)
    });
    for (path, seen) in &clones {
        for (block, bytes) in seen.chunks(BLOCK as usize).enumerate() {
            assert!(bytes.iter().all(|&b| b == bytes[0]), "{path} block {block} mixes two writes");
        }
        let now = read_all(&fs.open(path, &options(false)).unwrap(), blocks * BLOCK);
        assert_eq!(fnv(&now), fnv(seen), "{path} changed after the reflink");
    }
    assert_eq!(read_all(&src, blocks * BLOCK), vec![last; (blocks * BLOCK) as usize]);
    assert_clean(&fs.check());
}

#[test]
fn an_in_place_handle_overwrites_private_blocks_where_they_are_and_copies_shared_ones() {
    let pool = Pool::memfd(64 << 20).unwrap();
    let fs = Fs::format(&pool).unwrap();
    let (file, mut model) = allocated_file(&fs, "/p", 1, true);
    let before = fs.fiemap(&file).unwrap();
    let mut rng = Rng(5);
    overwrite(&file, &mut model, &mut rng, 0, FILE_BLOCKS, 200);
    assert_eq!(fs.fiemap(&file).unwrap(), before, "private blocks are overwritten where they are");
    // Share the first half with a clone: writes there are copy-on-write, the clone keeps its bytes.
    let clone = fs.open("/clone", &options(false)).unwrap();
    fs.reflink(&file, 0, &clone, 0, FILE_BLOCKS / 2 * BLOCK).unwrap();
    let cloned = model[..(FILE_BLOCKS / 2 * BLOCK) as usize].to_vec();
    overwrite(&file, &mut model, &mut rng, 0, FILE_BLOCKS, 200);
    assert_eq!(read_all(&clone, FILE_BLOCKS / 2 * BLOCK), cloned);
    assert_eq!(read_all(&file, FILE_BLOCKS * BLOCK), model);
    // Growth through an in-place handle: the file grows, the new bytes read back.
    let tail = noise(77, 3 * BLOCK as usize + 5);
    file.write_at(&tail, FILE_BLOCKS * BLOCK + 100).unwrap();
    model.resize((FILE_BLOCKS * BLOCK + 100) as usize, 0);
    model.extend_from_slice(&tail);
    assert_eq!(file.metadata().unwrap().size, model.len() as u64);
    assert_eq!(read_all(&file, model.len() as u64), model);
    assert_clean(&fs.check());
    drop((file, clone));
    drop(fs);
    let fs = Fs::mount(&pool).unwrap();
    assert_eq!(read_all(&fs.open("/p", &options(false)).unwrap(), model.len() as u64), model);
    assert_clean(&fs.check());
}

#[test]
fn an_in_place_overwrite_of_a_poisoned_block_is_a_recovery_write_and_reads_of_others_stay_eio() {
    let pool = Pool::memfd(64 << 20).unwrap();
    let fs = Fs::format(&pool).unwrap();
    let (file, _) = allocated_file(&fs, "/p", 3, true);
    let physical = fs.fiemap(&file).unwrap()[0].physical;
    fs.memory_failure(physical + 2 * BLOCK, 2 * BLOCK, FailureFlags::default()).unwrap();
    let mut buf = uniform(0);
    let eio = file.read_exact_at(&mut buf, 3 * BLOCK).unwrap_err();
    assert_eq!(eio.errno(), libc::EIO);
    file.write_at(&uniform(0xab), 2 * BLOCK).unwrap();
    file.read_exact_at(&mut buf, 2 * BLOCK).unwrap();
    assert_eq!(buf, uniform(0xab), "the whole bad block was rewritten into a new block");
    assert_eq!(file.read_exact_at(&mut buf, 3 * BLOCK).unwrap_err().errno(), libc::EIO);
    // An unaligned in-place write into the other bad block must read it: EIO, nothing changes.
    assert_eq!(file.write_at(&[7u8; 10], 3 * BLOCK + 1).unwrap_err().errno(), libc::EIO);
    assert_clean(&fs.check());
}

#[test]
fn clients_of_a_pool_server_overwrite_their_own_files_in_place_at_once() {
    // Two connections (two server workers) overwriting their own files through in-place handles.
    let pool = TestPool::new(64 << 20);
    let server = Server::start(&pool);
    let clients: Vec<Fs> = (0..2).map(|_| server.connect()).collect();
    let files: Vec<(File, Vec<u8>)> = clients
        .iter()
        .enumerate()
        .map(|(t, fs)| allocated_file(fs, &format!("/c{t}"), 30 + t as u64, true))
        .collect();
    let extents: Vec<_> = files.iter().zip(&clients).map(|((f, _), fs)| fs.fiemap(f).unwrap()).collect();
    let models: Vec<Vec<u8>> = std::thread::scope(|s| {
        let handles: Vec<_> = files
            .iter()
            .enumerate()
            .map(|(t, (file, bytes))| {
                s.spawn(move || {
                    let mut model = bytes.clone();
                    overwrite(file, &mut model, &mut Rng(300 + t as u64), 0, FILE_BLOCKS, 300);
                    model
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (((file, _), fs), (model, before)) in files.iter().zip(&clients).zip(models.iter().zip(&extents)) {
        assert_eq!(&fs.fiemap(file).unwrap(), before, "overwritten in place through the server");
        assert_eq!(fnv(&read_all(file, FILE_BLOCKS * BLOCK)), fnv(model));
    }
    assert_clean(&clients[0].check());
    drop(files);
    drop(clients);
    server.stop();
    let fs = pool.mount();
    for (t, model) in models.iter().enumerate() {
        let file = fs.open(&format!("/c{t}"), &options(false)).unwrap();
        assert_eq!(fnv(&read_all(&file, FILE_BLOCKS * BLOCK)), fnv(model), "/c{t} after the server stopped");
    }
    assert_clean(&fs.check());
}
