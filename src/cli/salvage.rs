//! `ferrodax salvage POOL DESTDIR`: copies every readable file out of a pool, even one that does not
//! mount normally, into a new or empty host directory.
//!
//! Owns the copy-out walk and its report: which files came out whole, which did not and why (bad
//! memory under some blocks, data or operations lost with damaged metadata), and what the salvage
//! mount could not recover. Never writes the pool (a salvage mount is read-only, under the shared
//! lock) and never writes into a host directory that already holds something.

use super::commands::describe;
use ferrodax::format::record::InodeKind;
use ferrodax::{Fs, OpenOptions, Pool};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

const PROGNAME: &str = "ferrodax";
/// Bytes read from the pool at a time; a read that meets bad memory is retried block by block.
const CHUNK: u64 = 1 << 20;
const BLOCK: u64 = ferrodax::format::BLOCK_SIZE;

/// What the walk did.
#[derive(Default, serde::Serialize)]
struct Salvaged {
    files: u64,
    bytes: u64,
    directories: u64,
    /// Files copied with something missing: path and why.
    not_whole: Vec<NotWhole>,
    /// What the salvage mount could not recover (records, checkpoint blocks, names, places).
    lost: Vec<String>,
    /// Symlinks made.
    symlinks: u64,
    /// Where each file with several names was copied first: its further names become hard
    /// links to that copy.
    #[serde(skip)]
    copied: std::collections::HashMap<u64, std::path::PathBuf>,
}

#[derive(serde::Serialize)]
struct NotWhole {
    path: String,
    reason: String,
}

/// Runs the command; exit 0 when every file came out whole and nothing was lost, 1 when something
/// was, 2 when nothing could be salvaged (no pool, no superblock, a bad destination).
pub fn run(pool: &Path, dest: &Path, json: bool) -> i32 {
    let fail = |what: String| {
        eprintln!("{PROGNAME}: salvage {}: {what}", pool.display());
        2
    };
    match std::fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return fail(format!(
                    "{}: {}: salvage writes only into a new or empty directory",
                    dest.display(),
                    ferrodax::error::strerror(libc::ENOTEMPTY)
                ));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Err(e) = std::fs::create_dir_all(dest) {
                return fail(format!("{}: {e}", dest.display()));
            }
        }
        Err(e) => return fail(format!("{}: {e}", dest.display())),
    }
    let fs = match Pool::open_read_only(pool).and_then(|p| Fs::mount_salvage(&p)) {
        Ok(fs) => fs,
        Err(e) => return fail(format!("cannot read the pool: {}", describe(&e))),
    };
    let mut out = Salvaged { lost: fs.read_lock().mount_notes().lost.clone(), ..Salvaged::default() };
    let mut paths = BTreeMap::new();
    let mut directory_modes = Vec::new();
    if let Err(e) = copy_dir(&fs, "/", dest, &mut out, &mut paths, &mut directory_modes) {
        return fail(format!("copying into {}: {e}", dest.display()));
    }
    // Permissions last, deepest first, so a read-only directory was still writable while filled.
    for (dir, mode) in directory_modes.into_iter().rev() {
        let _ = std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(mode));
    }
    // Files that a lost note names came out, but not as they were.
    for note in &out.lost {
        if let Some(path) = inode_named(note).and_then(|ino| paths.get(&ino)) {
            out.not_whole.push(NotWhole { path: path.clone(), reason: note.clone() });
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out).expect("the salvage report serializes"));
    } else {
        for item in &out.not_whole {
            println!("not whole: {}: {}", item.path, item.reason);
        }
        for note in &out.lost {
            println!("lost: {note}");
        }
        println!(
            "salvaged {} file(s) ({} bytes) and {} director(ies) from {} into {}; {} file(s) not whole",
            out.files,
            out.bytes,
            out.directories,
            pool.display(),
            dest.display(),
            out.not_whole.len()
        );
    }
    i32::from(!out.not_whole.is_empty() || !out.lost.is_empty())
}

/// The inode number a note is about ("inode 12: ..."), if any.
fn inode_named(note: &str) -> Option<u64> {
    let rest = &note[note.find("inode ")? + 6..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn copy_dir(
    fs: &Fs,
    dir: &str,
    host: &Path,
    out: &mut Salvaged,
    paths: &mut BTreeMap<u64, String>,
    modes: &mut Vec<(std::path::PathBuf, u32)>,
) -> std::io::Result<()> {
    let entries = match fs.read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            out.not_whole.push(NotWhole { path: dir.into(), reason: format!("cannot list: {e}") });
            return Ok(());
        }
    };
    for entry in entries {
        let path = if dir == "/" { format!("/{}", entry.name) } else { format!("{dir}/{}", entry.name) };
        let target = host.join(&entry.name);
        paths.insert(entry.ino, path.clone());
        let meta = fs.metadata(&path).ok();
        match entry.kind {
            InodeKind::Dir => {
                std::fs::create_dir(&target)?;
                out.directories += 1;
                if let Some(m) = &meta {
                    modes.push((target.clone(), m.mode & 0o7777));
                }
                copy_dir(fs, &path, &target, out, paths, modes)?;
            }
            InodeKind::Symlink => match fs.read_link(&path) {
                Ok(to) => {
                    std::os::unix::fs::symlink(&to, &target)?;
                    out.symlinks += 1;
                }
                Err(e) => {
                    out.not_whole.push(NotWhole { path, reason: format!("cannot read the symlink: {e}") })
                }
            },
            InodeKind::File
                if meta.as_ref().is_some_and(|m| m.nlink > 1) && out.copied.contains_key(&entry.ino) =>
            {
                std::fs::hard_link(&out.copied[&entry.ino], &target)?;
            }
            InodeKind::File => {
                if meta.as_ref().is_some_and(|m| m.nlink > 1) {
                    out.copied.insert(entry.ino, target.clone());
                }
                copy_file(fs, &path, &target, out)?;
                if let Some(m) = &meta {
                    let _ = std::fs::set_permissions(
                        &target,
                        std::os::unix::fs::PermissionsExt::from_mode(m.mode & 0o7777),
                    );
                    if let Ok(f) = std::fs::File::options().write(true).open(&target) {
                        let when =
                            std::time::UNIX_EPOCH + std::time::Duration::from_nanos(m.mtime_ns.max(0) as u64);
                        let _ = f.set_modified(when);
                    }
                }
            }
        }
    }
    Ok(())
}

/// Copies one file; blocks on bad memory come out as zeros and make the file "not whole".
fn copy_file(fs: &Fs, path: &str, target: &Path, out: &mut Salvaged) -> std::io::Result<()> {
    let mut host = std::fs::File::create(target)?;
    let file = match fs.open(path, OpenOptions::new().read(true)) {
        Ok(f) => f,
        Err(e) => {
            out.not_whole.push(NotWhole { path: path.into(), reason: format!("cannot open: {e}") });
            return Ok(());
        }
    };
    let size = file.metadata().map(|m| m.size).unwrap_or(0);
    let mut unreadable = Vec::new();
    let mut buf = vec![0u8; CHUNK as usize];
    let mut at = 0;
    while at < size {
        let want = CHUNK.min(size - at) as usize;
        match file.read_exact_at(&mut buf[..want], at) {
            Ok(()) => {}
            Err(_) => {
                // Block by block: keep what reads, zeros where the memory is bad.
                for block_at in (at..at + want as u64).step_by(BLOCK as usize) {
                    let from = (block_at - at) as usize;
                    let to = (from + BLOCK as usize).min(want);
                    if file.read_exact_at(&mut buf[from..to], block_at).is_err() {
                        buf[from..to].fill(0);
                        unreadable.push(block_at);
                    }
                }
            }
        }
        host.write_all(&buf[..want])?;
        at += want as u64;
    }
    out.files += 1;
    out.bytes += size;
    if !unreadable.is_empty() {
        let first: Vec<String> = unreadable.iter().take(8).map(|o| o.to_string()).collect();
        out.not_whole.push(NotWhole {
            path: path.into(),
            reason: format!(
                "{} block(s) unreadable (bad memory), written as zeros, at offsets {}{}",
                unreadable.len(),
                first.join(", "),
                if unreadable.len() > 8 { ", ..." } else { "" }
            ),
        });
    }
    Ok(())
}
