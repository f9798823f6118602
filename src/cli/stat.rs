//! `ferrodax stat POOL PATH`: what stat(1) prints for a file, directory or symlink of a pool (a
//! final symlink is not followed, as stat(1) does), plus its extent count and how many of its
//! bytes share blocks with other files.
//!
//! Owns the layout of that output (stat(1)'s, times in UTC) and its JSON. Must never reach below
//! the library API and never write to the pool (it mounts read-only).

use super::commands::{fail, with_fs};
use ferrodax::format::record::InodeKind;
use ferrodax::{Fs, OpenOptions, Stat};
use std::path::Path;

/// The file system block size ("IO Block").
const BLOCK_SIZE: u64 = 4096;

/// Everything `stat` prints.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
struct StatFigures {
    path: String,
    kind: &'static str,
    size: u64,
    /// 512-byte units, as st_blocks.
    blocks: u64,
    io_block: u64,
    ino: u64,
    /// Permission bits.
    mode: u32,
    /// Owner.
    uid: u32,
    /// Group.
    gid: u32,
    nlink: u32,
    atime_ns: i64,
    mtime_ns: i64,
    ctime_ns: i64,
    extents: u64,
    /// Bytes of the file on blocks that other files own too (FIEMAP_EXTENT_SHARED).
    shared_bytes: u64,
}

/// `-rw-r--r--` for a file with mode 0644 (`d` first for a directory, `l` for a symlink).
fn mode_string(kind: InodeKind, mode: u32) -> String {
    let mut text = String::from(match kind {
        InodeKind::Dir => "d",
        InodeKind::File => "-",
        InodeKind::Symlink => "l",
    });
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        text.push(if bits & 4 != 0 { 'r' } else { '-' });
        text.push(if bits & 2 != 0 { 'w' } else { '-' });
        text.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    text
}

/// A count of seconds since the epoch as (days since the epoch, year, month, day, second of the
/// day), in UTC: Howard Hinnant's civil_from_days.
pub(super) fn civil_utc(secs: i64) -> (i64, i64, i64, i64, i64) {
    let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (days, year, month, day, of_day)
}

/// `2024-06-01 10:00:00.123456789 +0000`, as stat(1) prints a time in UTC.
pub(super) fn utc_timestamp(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let (_, year, month, day, of_day) = civil_utc(secs);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{nanos:09} +0000",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// The figures of `path`: its stat and, for a file, the shared bytes from fiemap.
fn figures(fs: &Fs, path: &str, st: &Stat) -> Result<StatFigures, ferrodax::Error> {
    let shared_bytes = if st.kind == InodeKind::File {
        let mut read = OpenOptions::new();
        read.read(true);
        let file = fs.open(path, &read)?;
        fs.fiemap(&file)?.iter().filter(|e| e.shared).map(|e| e.length).sum()
    } else {
        0
    };
    Ok(StatFigures {
        path: path.to_string(),
        kind: match st.kind {
            InodeKind::Dir => "directory",
            InodeKind::File => "regular file",
            InodeKind::Symlink => "symbolic link",
        },
        size: st.size,
        blocks: st.blocks,
        io_block: BLOCK_SIZE,
        ino: st.ino,
        mode: st.mode & 0o7777,
        uid: st.uid,
        gid: st.gid,
        nlink: st.nlink,
        atime_ns: st.atime_ns,
        mtime_ns: st.mtime_ns,
        ctime_ns: st.ctime_ns,
        extents: st.extents,
        shared_bytes,
    })
}

/// stat(1)'s text for `f`.
fn text(f: &StatFigures, kind: InodeKind) -> String {
    format!(
        "  File: {}\n  Size: {:<15} Blocks: {:<10} IO Block: {:<6} {}\n Inode: {:<15} Links: {}\n\
         Access: ({:04o}/{})  Uid: ({:>5})   Gid: ({:>5})\n\
         Access: {}\nModify: {}\nChange: {}\n\
         Extents: {:<12} Shared: {} bytes\n",
        f.path,
        f.size,
        f.blocks,
        f.io_block,
        f.kind,
        f.ino,
        f.nlink,
        f.mode,
        mode_string(kind, f.mode),
        f.uid,
        f.gid,
        utc_timestamp(f.atime_ns),
        utc_timestamp(f.mtime_ns),
        utc_timestamp(f.ctime_ns),
        f.extents,
        f.shared_bytes
    )
}

/// `ferrodax stat POOL PATH [--json]`: size, 512-byte blocks, kind, mode, owner, group, links,
/// inode, the three times, extents and shared bytes of one file, directory or symlink (not
/// followed).
pub fn run(pool: &Path, path: &str, json: bool) -> i32 {
    with_fs(pool, true, |fs| {
        let context = format!("stat {path}");
        let st = fs.symlink_metadata(path).map_err(|e| fail(&context, &e))?;
        let f = figures(fs, path, &st).map_err(|e| fail(&context, &e))?;
        if json {
            println!("{}", serde_json::to_string_pretty(&f).expect("stat figures serialize"));
        } else {
            print!("{}", text(&f, st.kind));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_timestamp_matches_known_instants() {
        assert_eq!(utc_timestamp(0), "1970-01-01 00:00:00.000000000 +0000");
        assert_eq!(utc_timestamp(1_709_251_199_999_999_999), "2024-02-29 23:59:59.999999999 +0000");
        assert_eq!(utc_timestamp(-1), "1969-12-31 23:59:59.999999999 +0000");
    }

    #[test]
    fn mode_string_spells_permission_bits_like_ls() {
        assert_eq!(mode_string(InodeKind::File, 0o644), "-rw-r--r--");
        assert_eq!(mode_string(InodeKind::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(InodeKind::Symlink, 0o777), "lrwxrwxrwx");
    }
}
