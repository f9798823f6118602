//! A random-operation exerciser on a FUSE mount of a pool (`ferrodax mount`): thousands of
//! operations from several seeds — pwrite, O_APPEND writes, pread, stores and loads through
//! shared mmaps (msync'd or not), ftruncate and truncate by path, rename over existing files,
//! unlink, fsync — each checked against an in-memory model: after every step every file is read
//! whole through the mount and the directory listings are compared; every 100 steps and at the
//! end of a seed the files are read through the pool server (`Fs::connect`) as well. Three threads
//! of the mount answer requests. Then the
//! pool is unmounted, checked (fsck clean) and read directly. Skips loudly where FUSE cannot
//! mount, unless FERRODAX_REQUIRE_FUSE=1.

mod fuse_common;

use fuse_common::*;
use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

const SEEDS: [u64; 4] = [1, 2, 3, 0xfe55];
const STEPS: usize = 500;
/// Files grow to at most this size, so reading all of them after every step stays cheap.
const MAX_SIZE: u64 = 96 << 10;
const NAMES: [&str; 5] = ["a", "b", "c", "d/e", "d/f"];

struct Exerciser<'a> {
    mount: &'a Mount,
    socket: &'a Path,
    /// Where this seed's files live, inside the pool ("/s1").
    root: String,
    rng: Rng,
    model: BTreeMap<&'static str, Vec<u8>>,
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
        let names: Vec<&'static str> = self.model.keys().copied().collect();
        (!names.is_empty()).then(|| names[self.rng.below(names.len() as u64) as usize])
    }

    fn range(&mut self, size: u64, max_len: u64) -> (u64, u64) {
        let offset = self.rng.below(size);
        let len = 1 + self.rng.below(max_len.min(size - offset));
        (offset, len)
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
        match self.rng.below(10) {
            0 | 1 => {
                let name = self.pick();
                let len = 1 + self.rng.below(16 << 10);
                let offset = self.rng.below(MAX_SIZE - len);
                let data = noise(self.rng.next(), len as usize);
                self.open(name, true).write_all_at(&data, offset).unwrap();
                let file = self.model.entry(name).or_default();
                if file.len() < (offset + len) as usize {
                    file.resize((offset + len) as usize, 0);
                }
                file[offset as usize..(offset + len) as usize].copy_from_slice(&data);
                format!("pwrite {name} {offset}+{len}")
            }
            2 => {
                let name = self.pick();
                let size = self.model.get(name).map_or(0, |f| f.len() as u64);
                let len = 1 + self.rng.below((MAX_SIZE - size).min(8 << 10));
                let data = noise(self.rng.next(), len as usize);
                let mut file = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o644)
                    .open(self.host(name))
                    .unwrap();
                std::io::Write::write_all(&mut file, &data).unwrap();
                self.model.entry(name).or_default().extend_from_slice(&data);
                format!("append {name} +{len}")
            }
            3 => {
                let Some(name) = self.existing() else { return "nothing to read".into() };
                let size = self.model[name].len() as u64;
                if size == 0 {
                    return format!("pread {name}: empty");
                }
                let (offset, len) = self.range(size, 20 << 10);
                let mut buf = vec![0u8; len as usize];
                self.open(name, false).read_exact_at(&mut buf, offset).unwrap();
                assert!(
                    buf[..] == self.model[name][offset as usize..(offset + len) as usize],
                    "step {}: pread {name} {offset}+{len} differs",
                    self.step
                );
                format!("pread {name} {offset}+{len}")
            }
            4 | 5 => self.through_mmap(),
            6 => {
                let Some(name) = self.existing() else { return "nothing to truncate".into() };
                let size = self.rng.below(MAX_SIZE);
                if self.rng.below(2) == 0 {
                    self.open(name, false).set_len(size).unwrap();
                } else {
                    run_ok("truncate", &["-s", &size.to_string(), self.host(name).to_str().unwrap()]);
                }
                self.model.get_mut(name).unwrap().resize(size as usize, 0);
                format!("truncate {name} {size}")
            }
            7 => {
                let Some(from) = self.existing() else { return "nothing to rename".into() };
                let to = self.pick();
                std::fs::rename(self.host(from), self.host(to)).unwrap();
                if from != to {
                    let data = self.model.remove(from).unwrap();
                    self.model.insert(to, data);
                }
                format!("rename {from} {to}")
            }
            8 => {
                let Some(name) = self.existing() else { return "nothing to unlink".into() };
                std::fs::remove_file(self.host(name)).unwrap();
                self.model.remove(name);
                format!("unlink {name}")
            }
            _ => {
                let Some(name) = self.existing() else { return "nothing to fsync".into() };
                self.open(name, false).sync_all().unwrap();
                format!("fsync {name}")
            }
        }
    }

    /// Stores into or loads from a shared mapping of a whole file (MAP_SHARED: the stores reach
    /// the file through the page cache's write-back, at msync or munmap).
    fn through_mmap(&mut self) -> String {
        let Some(name) = self.existing() else { return "nothing to map".into() };
        let size = self.model[name].len() as u64;
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
                    bytes[..] == self.model[name][offset as usize..(offset + len) as usize],
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
            self.model.get_mut(name).unwrap()[offset as usize..(offset + len) as usize]
                .copy_from_slice(&data);
        }
        format!(
            "mmap {} {name} {offset}+{len}{}",
            if store { "store" } else { "load" },
            if sync { " msync" } else { "" }
        )
    }

    /// Every file, read whole through the mount, equals the model; so do the listings.
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
        let expected: Vec<String> = self.model.keys().map(|k| k.to_string()).collect();
        assert_eq!(seen, expected, "step {} ({what}): the listing differs", self.step);
        for (name, data) in &self.model {
            let got = std::fs::read(self.host(name)).unwrap();
            assert!(
                got == *data,
                "step {} ({what}): {name} differs through the mount ({} bytes, model {})",
                self.step,
                got.len(),
                data.len()
            );
        }
    }

    /// Every file, read through the pool server, equals the model.
    fn verify_server(&self, what: &str) {
        let fs = ferrodax::Fs::connect(self.socket).unwrap();
        for (name, data) in &self.model {
            let got = read_all(&fs, &format!("{}/{name}", self.root));
            assert!(got == *data, "step {} ({what}): {name} differs through the pool server", self.step);
        }
    }
}

#[test]
fn random_operations_on_the_mount_agree_with_the_model_byte_for_byte_after_every_step() {
    let pool = TestPool::new(512 << 20);
    // Three threads answer requests, so readahead, write-back and the calls here overlap.
    let Some(mount) = Mount::start_with("fuse_exerciser", &pool, "mnt", &["--threads", "3"]) else { return };
    let socket = pool.socket();
    let mut finals = Vec::new();
    for seed in SEEDS {
        let root = format!("/s{seed}");
        std::fs::create_dir_all(mount.path(&format!("{root}/d"))).unwrap();
        let mut ex = Exerciser {
            mount: &mount,
            socket: &socket,
            root,
            rng: Rng(seed),
            model: BTreeMap::new(),
            step: 0,
        };
        for step in 1..=STEPS {
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
        for (name, data) in model {
            assert!(read_all(&fs, &format!("{root}/{name}")) == data, "after unmount: {root}/{name} differs");
        }
    }
}
