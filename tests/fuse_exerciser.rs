//! A random-operation exerciser on a FUSE mount of a pool (`ferrodax mount`): thousands of
//! operations from several seeds — pwrite, O_APPEND writes, pread, stores and loads through
//! shared mmaps (msync'd or not), ftruncate and truncate by path, every fallocate mode,
//! copy_file_range (block-aligned, so shared, and not), SEEK_DATA/SEEK_HOLE, hard links (a write
//! through one name is read back through the others), renames (over other files, and of one name
//! of an inode onto another of its names, which changes nothing), unlinks of one name, fsync —
//! each checked against an in-memory model of names and inodes: after every step every name is
//! read whole through the mount and compared with its inode's bytes, the listings are compared,
//! and names of one inode must share its inode number and link count; every 100 steps and at the
//! end of a seed the files are read through the pool server (`Fs::connect`) as well. Three threads
//! of the mount answer requests. Then the pool is unmounted, checked (fsck clean) and read
//! directly.
//!
//! The kernel's FUSE client passes fallocate's KEEP_SIZE, PUNCH_HOLE and ZERO_RANGE on and
//! refuses COLLAPSE_RANGE, INSERT_RANGE and UNSHARE_RANGE itself (EOPNOTSUPP, before the mount
//! sees them): those steps check that errno and that nothing changed.
//!
//! Longer runs: `FERRODAX_FUSE_EXERCISER_STEPS=N` steps per seed (default 1000) and
//! `FERRODAX_FUSE_EXERCISER_SEEDS=N` seeds (default 4). Skips loudly where FUSE cannot mount,
//! unless FERRODAX_REQUIRE_FUSE=1.

mod fuse_common;

use fuse_common::*;
use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Seeds of a default run; `FERRODAX_FUSE_EXERCISER_SEEDS=N` runs N seeds (these first).
const SEEDS: [u64; 4] = [1, 2, 3, 0xfe55];
/// Steps per seed of a default run.
const STEPS: usize = 1000;
/// Files grow to at most this size, so reading all of them after every step stays cheap.
const MAX_SIZE: u64 = 96 << 10;
const NAMES: [&str; 6] = ["a", "b", "c", "d/e", "d/f", "d/g"];
const BLOCK: u64 = 4096;

/// What an inode of the model is: an id (not the pool's inode number) per file.
type InodeId = u32;

fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("{name}={v}: not a count")),
        Err(_) => default,
    }
}

/// The errno of a failed system call's `io::Error`.
fn errno_of(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or_else(|| panic!("not an OS error: {e}"))
}

/// A system call's result: its return value, or the errno.
fn syscall(ret: i64) -> Result<i64, i32> {
    if ret < 0 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap())
    } else {
        Ok(ret)
    }
}

/// The model: which inode each name names, and each inode's bytes.
#[derive(Clone, Default)]
struct Model {
    names: BTreeMap<&'static str, InodeId>,
    data: BTreeMap<InodeId, Vec<u8>>,
    next_id: InodeId,
}

impl Model {
    fn bytes(&self, name: &str) -> &Vec<u8> {
        &self.data[&self.names[name]]
    }

    fn bytes_mut(&mut self, name: &str) -> &mut Vec<u8> {
        let id = self.names[name];
        self.data.get_mut(&id).unwrap()
    }

    /// The inode `name` names, made empty first when it names none.
    fn create(&mut self, name: &'static str) -> &mut Vec<u8> {
        if !self.names.contains_key(name) {
            self.next_id += 1;
            self.names.insert(name, self.next_id);
            self.data.insert(self.next_id, Vec::new());
        }
        self.bytes_mut(name)
    }

    /// Removes one name; its inode goes with its last name.
    fn unlink(&mut self, name: &str) {
        let id = self.names.remove(name).unwrap();
        if !self.names.values().any(|&i| i == id) {
            self.data.remove(&id);
        }
    }

    fn links(&self, id: InodeId) -> u64 {
        self.names.values().filter(|&&i| i == id).count() as u64
    }
}

struct Exerciser<'a> {
    mount: &'a Mount,
    socket: &'a Path,
    /// Where this seed's files live, inside the pool ("/s1").
    root: String,
    rng: Rng,
    model: Model,
    step: usize,
}

impl Exerciser<'_> {
    fn host(&self, name: &str) -> std::path::PathBuf {
        self.mount.path(&format!("{}/{name}", self.root))
    }

    fn pick(&mut self) -> &'static str {
        NAMES[self.rng.below(NAMES.len() as u64) as usize]
    }

    fn existing(&mut self) -> Option<&'static str> {
        let names: Vec<&'static str> = self.model.names.keys().copied().collect();
        (!names.is_empty()).then(|| names[self.rng.below(names.len() as u64) as usize])
    }

    fn range(&mut self, size: u64, max_len: u64) -> (u64, u64) {
        let offset = self.rng.below(size);
        let len = 1 + self.rng.below(max_len.min(size - offset));
        (offset, len)
    }

    /// An offset or length below `limit`: block-aligned half the time (so ranges share whole
    /// blocks or cover them), else any byte.
    fn position(&mut self, limit: u64) -> u64 {
        if self.rng.below(2) == 0 {
            self.rng.below(limit / BLOCK + 1) * BLOCK
        } else {
            self.rng.below(limit + 1)
        }
    }

    fn open(&self, name: &str, create: bool) -> std::fs::File {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(self.host(name))
            .unwrap_or_else(|e| panic!("step {}: open {name}: {e}", self.step))
    }

    fn one_step(&mut self) -> String {
        match self.rng.below(20) {
            0..=2 => {
                let name = self.pick();
                let len = 1 + self.rng.below(16 << 10);
                let offset = self.rng.below(MAX_SIZE - len);
                let data = noise(self.rng.next(), len as usize);
                self.open(name, true).write_all_at(&data, offset).unwrap();
                let file = self.model.create(name);
                if file.len() < (offset + len) as usize {
                    file.resize((offset + len) as usize, 0);
                }
                file[offset as usize..(offset + len) as usize].copy_from_slice(&data);
                format!("pwrite {name} {offset}+{len}")
            }
            3 => {
                let name = self.pick();
                let size = self.model.names.get(name).map_or(0, |_| self.model.bytes(name).len() as u64);
                if size >= MAX_SIZE {
                    return format!("append {name}: full");
                }
                let len = 1 + self.rng.below((MAX_SIZE - size).min(8 << 10));
                let data = noise(self.rng.next(), len as usize);
                let mut file = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o644)
                    .open(self.host(name))
                    .unwrap();
                std::io::Write::write_all(&mut file, &data).unwrap();
                self.model.create(name).extend_from_slice(&data);
                format!("append {name} +{len}")
            }
            4 => {
                let Some(name) = self.existing() else { return "nothing to read".into() };
                let size = self.model.bytes(name).len() as u64;
                if size == 0 {
                    return format!("pread {name}: empty");
                }
                let (offset, len) = self.range(size, 20 << 10);
                let mut buf = vec![0u8; len as usize];
                self.open(name, false).read_exact_at(&mut buf, offset).unwrap();
                assert!(
                    buf[..] == self.model.bytes(name)[offset as usize..(offset + len) as usize],
                    "step {}: pread {name} {offset}+{len} differs",
                    self.step
                );
                format!("pread {name} {offset}+{len}")
            }
            5..=7 => self.through_mmap(),
            8 => {
                let Some(name) = self.existing() else { return "nothing to truncate".into() };
                let size = self.rng.below(MAX_SIZE);
                if self.rng.below(2) == 0 {
                    self.open(name, false).set_len(size).unwrap();
                } else {
                    run_ok("truncate", &["-s", &size.to_string(), self.host(name).to_str().unwrap()]);
                }
                self.model.bytes_mut(name).resize(size as usize, 0);
                format!("truncate {name} {size}")
            }
            9 => self.rename(),
            10 => {
                let Some(name) = self.existing() else { return "nothing to unlink".into() };
                std::fs::remove_file(self.host(name)).unwrap();
                self.model.unlink(name);
                format!("unlink {name}")
            }
            11 | 12 => self.hard_link(),
            13..=15 => self.fallocate(),
            16 | 17 => self.copy_range(),
            18 => self.seek(),
            _ => {
                let Some(name) = self.existing() else { return "nothing to fsync".into() };
                self.open(name, false).sync_all().unwrap();
                format!("fsync {name}")
            }
        }
    }

    /// rename(2) of one name onto another: the target's inode loses that name; when both name
    /// the same inode nothing changes (POSIX), both names stay.
    fn rename(&mut self) -> String {
        let Some(from) = self.existing() else { return "nothing to rename".into() };
        let to = self.pick();
        std::fs::rename(self.host(from), self.host(to))
            .unwrap_or_else(|e| panic!("step {}: rename {from} {to}: {e}", self.step));
        let id = self.model.names[from];
        if self.model.names.get(to) == Some(&id) {
            return format!("rename {from} {to} (one inode: nothing changes)");
        }
        if self.model.names.contains_key(to) {
            self.model.unlink(to);
        }
        self.model.names.remove(from);
        self.model.names.insert(to, id);
        format!("rename {from} {to}")
    }

    /// link(2): a new name for an existing inode (EEXIST onto a name in use).
    fn hard_link(&mut self) -> String {
        let Some(existing) = self.existing() else { return "nothing to link".into() };
        let new = self.pick();
        let linked = std::fs::hard_link(self.host(existing), self.host(new));
        if self.model.names.contains_key(new) {
            let e = linked.expect_err("link onto a name in use");
            assert_eq!(errno_of(&e), libc::EEXIST, "step {}: link {existing} {new}: {e}", self.step);
            return format!("link {existing} {new}: EEXIST");
        }
        linked.unwrap_or_else(|e| panic!("step {}: link {existing} {new}: {e}", self.step));
        let id = self.model.names[existing];
        self.model.names.insert(new, id);
        format!("link {existing} {new} ({} names)", self.model.links(id))
    }

    /// fallocate(2) in one of its modes, on a range that is block-aligned half the time.
    fn fallocate(&mut self) -> String {
        const MODES: [(i32, &str); 9] = [
            (0, "allocate"),
            (libc::FALLOC_FL_KEEP_SIZE, "allocate keep-size"),
            (libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, "punch"),
            (libc::FALLOC_FL_PUNCH_HOLE, "punch without keep-size"),
            (libc::FALLOC_FL_ZERO_RANGE, "zero"),
            (libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE, "zero keep-size"),
            (libc::FALLOC_FL_COLLAPSE_RANGE, "collapse"),
            (libc::FALLOC_FL_INSERT_RANGE, "insert"),
            (libc::FALLOC_FL_UNSHARE_RANGE, "unshare"),
        ];
        let Some(name) = self.existing() else { return "nothing to fallocate".into() };
        let (mode, what) = MODES[self.rng.below(MODES.len() as u64) as usize];
        let offset = self.position(MAX_SIZE - BLOCK);
        let len = self.position((MAX_SIZE - offset).min(32 << 10)).max(1);
        let file = self.open(name, false);
        // SAFETY: fallocate(2) on an open descriptor; no memory is passed.
        let got =
            syscall(unsafe { libc::fallocate(file.as_raw_fd(), mode, offset as i64, len as i64) } as i64);
        let step = self.step;
        let data = self.model.bytes_mut(name);
        let size = data.len() as u64;
        let end = offset + len;
        let zero = |data: &mut Vec<u8>, to: u64| {
            let to = to.min(data.len() as u64);
            if offset < to {
                data[offset as usize..to as usize].fill(0);
            }
        };
        let expected = match mode {
            0 | libc::FALLOC_FL_KEEP_SIZE => {
                if mode == 0 && end > size {
                    data.resize(end as usize, 0);
                }
                Ok(0)
            }
            m if m == libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE => {
                zero(data, end);
                Ok(0)
            }
            libc::FALLOC_FL_ZERO_RANGE => {
                if end > size {
                    data.resize(end as usize, 0);
                }
                zero(data, end);
                Ok(0)
            }
            m if m == libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE => {
                zero(data, end);
                Ok(0)
            }
            // PUNCH_HOLE needs KEEP_SIZE (vfs_fallocate); the kernel's FUSE client passes only
            // KEEP_SIZE, PUNCH_HOLE and ZERO_RANGE.
            _ => Err(libc::EOPNOTSUPP),
        };
        assert_eq!(got, expected, "step {step}: fallocate {what} {name} {offset}+{len} (size {size})");
        format!("fallocate {what} {name} {offset}+{len}: {got:?}")
    }

    /// copy_file_range(2) between two names (maybe of one inode), at offsets block-aligned half
    /// the time (then the pool shares whole blocks instead of copying them).
    fn copy_range(&mut self) -> String {
        let Some(src) = self.existing() else { return "nothing to copy".into() };
        let dst = self.pick();
        let src_size = self.model.bytes(src).len() as u64;
        let src_offset = self.position(src_size);
        let len = self.position(24 << 10).max(1);
        let dst_offset = self.position(MAX_SIZE - len);
        let (from, to) = (self.open(src, false), self.open(dst, true));
        let dst_id = *self.model.names.get(dst).unwrap_or(&0);
        let step = self.step;
        let one_inode = dst_id == self.model.names[src];
        // The kernel cuts the length at the source's end first; then ranges of one inode must
        // not overlap (EINVAL).
        let n = src_size.saturating_sub(src_offset).min(len);
        let overlap = one_inode && src_offset < dst_offset + n && dst_offset < src_offset + n;
        let (mut off_in, mut off_out) = (src_offset as i64, dst_offset as i64);
        // A call may copy less than asked: where both offsets are block-aligned the pool shares
        // whole blocks and stops at the last one it can share (as XFS does). Callers loop, as cp
        // does, asking for what is left of the source's bytes, until a call copies nothing. The
        // first call asks for `len`, past the source's end when it is.
        let mut calls = Vec::new();
        let got = loop {
            let copied: i64 = calls.iter().sum();
            let ask = if calls.is_empty() { len as i64 } else { n as i64 - copied };
            if ask == 0 {
                break Ok(copied);
            }
            // SAFETY: copy_file_range(2) between two open descriptors with offsets that live
            // across the call.
            let got = syscall(unsafe {
                libc::copy_file_range(
                    from.as_raw_fd(),
                    &mut off_in,
                    to.as_raw_fd(),
                    &mut off_out,
                    ask as usize,
                    0,
                )
            } as i64);
            match got {
                Ok(0) => break Ok(copied),
                Ok(k) => calls.push(k),
                Err(e) if calls.is_empty() => break Err(e),
                Err(e) => panic!("step {step}: copy_range after {calls:?}: errno {e}"),
            }
        };
        if overlap {
            assert_eq!(got, Err(libc::EINVAL), "step {step}: copy_range within one inode, overlapping");
            return format!("copy_range {src} {src_offset} -> {dst} {dst_offset} +{len}: EINVAL (overlap)");
        }
        assert_eq!(
            got,
            Ok(n as i64),
            "step {step}: copy_range {src} {src_offset} -> {dst} {dst_offset} +{len} in calls {calls:?}"
        );
        let bytes = self.model.bytes(src)[src_offset as usize..(src_offset + n) as usize].to_vec();
        let data = self.model.create(dst);
        if n > 0 {
            if data.len() < (dst_offset + n) as usize {
                data.resize((dst_offset + n) as usize, 0);
            }
            data[dst_offset as usize..(dst_offset + n) as usize].copy_from_slice(&bytes);
        }
        format!("copy_range {src} {src_offset} -> {dst} {dst_offset} +{len}: {n} in calls {calls:?}")
    }

    /// lseek(2) SEEK_DATA and SEEK_HOLE from an offset: what they call a hole reads as zeros
    /// in the model, and both stay inside the file (ENXIO at or past its end).
    fn seek(&mut self) -> String {
        let Some(name) = self.existing() else { return "nothing to seek in".into() };
        let data = self.model.bytes(name).clone();
        let size = data.len() as u64;
        let offset = self.position(size + BLOCK);
        let file = self.open(name, false);
        let fd = file.as_raw_fd();
        // SAFETY: lseek(2) on an open descriptor.
        let seek = |at: u64, whence| syscall(unsafe { libc::lseek(fd, at as i64, whence) });
        let step = self.step;
        let zeros = |from: u64, to: u64| data[from as usize..to as usize].iter().all(|&b| b == 0);
        if offset >= size {
            assert_eq!(
                seek(offset, libc::SEEK_DATA),
                Err(libc::ENXIO),
                "step {step}: SEEK_DATA {offset} of {size}"
            );
            assert_eq!(
                seek(offset, libc::SEEK_HOLE),
                Err(libc::ENXIO),
                "step {step}: SEEK_HOLE {offset} of {size}"
            );
            return format!("seek {name} {offset}: past the end");
        }
        let hole =
            seek(offset, libc::SEEK_HOLE).unwrap_or_else(|e| panic!("step {step}: SEEK_HOLE: {e}")) as u64;
        assert!((offset..=size).contains(&hole), "step {step}: SEEK_HOLE {offset} of {size} = {hole}");
        let data_at = match seek(offset, libc::SEEK_DATA) {
            Ok(d) => d as u64,
            Err(libc::ENXIO) => size,
            Err(e) => panic!("step {step}: SEEK_DATA {offset}: errno {e}"),
        };
        assert!((offset..=size).contains(&data_at), "step {step}: SEEK_DATA {offset} of {size} = {data_at}");
        assert!(zeros(offset, data_at), "step {step}: {name}: SEEK_DATA {offset} skipped nonzero bytes");
        if hole < size {
            let next = match seek(hole, libc::SEEK_DATA) {
                Ok(d) => d as u64,
                Err(libc::ENXIO) => size,
                Err(e) => panic!("step {step}: SEEK_DATA {hole}: errno {e}"),
            };
            assert!(next > hole, "step {step}: {name}: SEEK_DATA at the hole {hole} = {next}");
            assert!(zeros(hole, next), "step {step}: {name}: the hole {hole}..{next} has nonzero bytes");
        }
        format!("seek {name} {offset}: hole {hole}, data {data_at}")
    }

    /// Stores into or loads from a shared mapping of a whole file (MAP_SHARED: the stores reach
    /// the file through the page cache's write-back, at msync or munmap).
    fn through_mmap(&mut self) -> String {
        let Some(name) = self.existing() else { return "nothing to map".into() };
        let size = self.model.bytes(name).len() as u64;
        if size == 0 {
            return format!("mmap {name}: empty");
        }
        let (offset, len) = self.range(size, 12 << 10);
        let store = self.rng.below(2) == 0;
        let sync = self.rng.below(2) == 0;
        let data = noise(self.rng.next(), len as usize);
        let file = self.open(name, false);
        // SAFETY: a fresh shared mapping of `size` bytes of an open file, touched only inside
        // [offset, offset + len) ⊂ [0, size) while no one else changes the file's size, and
        // unmapped before the file is closed.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                size as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            );
            assert_ne!(base, libc::MAP_FAILED, "step {}: mmap {name}", self.step);
            let bytes = std::slice::from_raw_parts_mut(base.cast::<u8>().add(offset as usize), len as usize);
            if store {
                bytes.copy_from_slice(&data);
            } else {
                assert!(
                    bytes[..] == self.model.bytes(name)[offset as usize..(offset + len) as usize],
                    "step {}: mmap load {name} {offset}+{len} differs",
                    self.step
                );
            }
            if sync {
                assert_eq!(libc::msync(base, size as usize, libc::MS_SYNC), 0);
            }
            assert_eq!(libc::munmap(base, size as usize), 0);
        }
        if store {
            self.model.bytes_mut(name)[offset as usize..(offset + len) as usize].copy_from_slice(&data);
        }
        format!(
            "mmap {} {name} {offset}+{len}{}",
            if store { "store" } else { "load" },
            if sync { " msync" } else { "" }
        )
    }

    /// Every name, read whole through the mount, equals its inode's bytes in the model; the
    /// listings hold exactly the model's names; names of one inode show one inode number and its
    /// link count, names of different inodes different numbers.
    fn verify_mount(&self, what: &str) {
        let mut seen = Vec::new();
        for dir in ["", "d"] {
            let host = self.host(dir);
            for entry in std::fs::read_dir(&host).unwrap() {
                let entry = entry.unwrap();
                let name = entry.file_name().into_string().unwrap();
                if dir.is_empty() && name == "d" {
                    continue;
                }
                seen.push(if dir.is_empty() { name } else { format!("{dir}/{name}") });
            }
        }
        seen.sort();
        let expected: Vec<String> = self.model.names.keys().map(|k| k.to_string()).collect();
        assert_eq!(seen, expected, "step {} ({what}): the listing differs", self.step);
        let mut numbers: BTreeMap<InodeId, u64> = BTreeMap::new();
        for (name, &id) in &self.model.names {
            let data = &self.model.data[&id];
            let got = std::fs::read(self.host(name)).unwrap();
            assert!(
                got == *data,
                "step {} ({what}): {name} differs through the mount ({} bytes, model {})",
                self.step,
                got.len(),
                data.len()
            );
            let meta = std::fs::metadata(self.host(name)).unwrap();
            assert_eq!(
                meta.nlink(),
                self.model.links(id),
                "step {} ({what}): link count of {name}",
                self.step
            );
            let ino = *numbers.entry(id).or_insert(meta.ino());
            assert_eq!(
                meta.ino(),
                ino,
                "step {} ({what}): {name} is not its inode's other names' inode",
                self.step
            );
        }
        let distinct: std::collections::BTreeSet<u64> = numbers.values().copied().collect();
        assert_eq!(distinct.len(), numbers.len(), "step {} ({what}): two inodes share a number", self.step);
    }

    /// Every name, read through the pool server, equals the model.
    fn verify_server(&self, what: &str) {
        let fs = ferrodax::Fs::connect(self.socket).unwrap();
        for name in self.model.names.keys() {
            let got = read_all(&fs, &format!("{}/{name}", self.root));
            assert!(
                got == *self.model.bytes(name),
                "step {} ({what}): {name} differs through the pool server",
                self.step
            );
        }
    }
}

#[test]
fn random_operations_with_hard_links_fallocate_and_copy_range_on_the_mount_agree_with_the_model_after_every_step(
) {
    let steps = env_count("FERRODAX_FUSE_EXERCISER_STEPS", STEPS);
    let seed_count = env_count("FERRODAX_FUSE_EXERCISER_SEEDS", SEEDS.len());
    let seeds: Vec<u64> = SEEDS.iter().copied().chain(100..).take(seed_count).collect();
    let pool = TestPool::new(512 << 20);
    // Three threads answer requests, so readahead, write-back and the calls here overlap.
    let Some(mount) = Mount::start_with("fuse_exerciser", &pool, "mnt", &["--threads", "3"]) else { return };
    let socket = pool.socket();
    let mut finals = Vec::new();
    for seed in seeds {
        let root = format!("/s{seed}");
        std::fs::create_dir_all(mount.path(&format!("{root}/d"))).unwrap();
        let mut ex = Exerciser {
            mount: &mount,
            socket: &socket,
            root,
            rng: Rng(seed),
            model: Model::default(),
            step: 0,
        };
        for step in 1..=steps {
            ex.step = step;
            let what = ex.one_step();
            ex.verify_mount(&what);
            if step % 100 == 0 {
                ex.verify_server(&what);
            }
        }
        ex.verify_server("end of the seed");
        finals.push((ex.root.clone(), ex.model.clone()));
    }
    mount.unmount();
    let (status, stdout, stderr) = run_cli(&["check", pool.path.to_str().unwrap()]);
    assert!(status.success() && stdout.starts_with("clean"), "ferrodax check: {stdout}{stderr}");
    let fs = pool.mount();
    for (root, model) in finals {
        for name in model.names.keys() {
            assert!(
                read_all(&fs, &format!("{root}/{name}")) == *model.bytes(name),
                "after unmount: {root}/{name} differs"
            );
            assert_eq!(
                fs.symlink_metadata(&format!("{root}/{name}")).unwrap().nlink as u64,
                model.links(model.names[name]),
                "after unmount: link count of {root}/{name}"
            );
        }
    }
}
