//! `ferrodax ls [-l] POOL [PATH]`: a directory's entries, one a line, and how every command
//! shows a name on a terminal.
//!
//! Owns the two listing formats (the short `kind size name`, and `-l`'s `ls -l
//! --time-style=long-iso` columns in UTC), showing a symlink as `name -> target` without following
//! it (so a dangling one lists fine), and the escaping of control characters in names as `ls -b`
//! does. Must never write to the pool (it mounts read-only) nor reach below the library API.

use super::accounts;
use super::commands::{fail, join, with_fs_lazily};
use super::modes::mode_string;
use ferrodax::format::record::InodeKind;
use ferrodax::{Error, Fs, Stat};
use std::io::Write;
use std::path::Path;

/// `name` with what a terminal would act on made visible, as `ls -b` shows it: `\n`, `\t`, `\r`,
/// `\a`, `\b`, `\f`, `\v` for those control characters, `\ooo` (octal) for the other control
/// bytes and DEL, and a backslash doubled. Everything else (spaces, non-ASCII letters) as is.
pub(super) fn escape_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\x0b' => out.push_str("\\v"),
            c if c.is_ascii_control() => out.push_str(&format!("\\{:03o}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// `'name'`, escaped: how error messages quote a path, as coreutils does.
pub(super) fn quoted(name: &str) -> String {
    format!("'{}'", escape_name(name))
}

/// What one line of a listing shows.
struct Row {
    /// The name as given (escaped when printed).
    name: String,
    stat: Stat,
    /// A symlink's target.
    target: Option<String>,
}

/// The row of `path` itself (a final symlink not followed), shown as `name`.
fn row(fs: &Fs, path: &str, name: &str) -> Result<Row, Error> {
    let stat = fs.symlink_metadata(path)?;
    let target = if stat.kind == InodeKind::Symlink { Some(fs.read_link(path)?) } else { None };
    Ok(Row { name: name.to_string(), stat, target })
}

/// The escaped name, with ` -> target` for a symlink.
fn shown_name(row: &Row) -> String {
    match &row.target {
        Some(target) => format!("{} -> {}", escape_name(&row.name), escape_name(target)),
        None => escape_name(&row.name),
    }
}

/// The short line: kind, size, name.
fn short_line(row: &Row) -> String {
    let kind = match row.stat.kind {
        InodeKind::File => "file",
        InodeKind::Dir => "dir",
        InodeKind::Symlink => "link",
    };
    format!("{kind:<4} {:>12} {}", row.stat.size, shown_name(row))
}

/// `2024-06-01 10:00`, the minute of a time in UTC (ls's long-iso style).
fn minute_utc(ns: i64) -> String {
    let (_, year, month, day, of_day) = super::stat::civil_utc(ns.div_euclid(1_000_000_000));
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}", of_day / 3600, of_day / 60 % 60)
}

/// The `-l` lines: mode, links, owner, group, size, modification minute, name; the number columns
/// right-aligned and the names left-aligned to the widest of the listing, as ls aligns them.
fn long_lines(rows: &[Row]) -> Vec<String> {
    let user = |uid| accounts::user_name(uid).unwrap_or_else(|| uid.to_string());
    let group = |gid| accounts::group_name(gid).unwrap_or_else(|| gid.to_string());
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|r| {
            [
                mode_string(r.stat.kind, r.stat.mode),
                r.stat.nlink.to_string(),
                user(r.stat.uid),
                group(r.stat.gid),
                r.stat.size.to_string(),
                minute_utc(r.stat.mtime_ns),
                shown_name(r),
            ]
        })
        .collect();
    let width = |i: usize| cells.iter().map(|c| c[i].chars().count()).max().unwrap_or(0);
    let (links, users, groups, sizes) = (width(1), width(2), width(3), width(4));
    cells
        .iter()
        .map(|[mode, nlink, user, group, size, time, name]| {
            format!("{mode} {nlink:>links$} {user:<users$} {group:<groups$} {size:>sizes$} {time} {name}")
        })
        .collect()
}

/// The rows of directory `path`'s entries, sorted by name.
fn entries(fs: &Fs, path: &str) -> Result<Vec<Row>, Error> {
    let mut names: Vec<String> = fs.read_dir(path)?.into_iter().map(|e| e.name).collect();
    names.sort();
    names.iter().map(|name| row(fs, &join(path, name), name)).collect()
}

/// `ferrodax ls [-l] POOL [PATH]`: one line per entry of directory PATH (default /), sorted by
/// name; a file or symlink lists itself. A symlink shows as `name -> target` and is never
/// followed, except that a symlink to a directory given as PATH lists that directory (without
/// -l, as ls does). With -l: a `total` line (1 KiB units, as ls) and the long format.
pub fn run(pool: &Path, path: &str, long: bool) -> i32 {
    // Mounted lazily: a listing reads the directory's path, its entries and their inodes only.
    with_fs_lazily(pool, |fs| {
        let context = format!("ls {}", escape_name(path));
        let itself = row(fs, path, path).map_err(|e| fail(&context, &e))?;
        let list_dir = match itself.stat.kind {
            InodeKind::Dir => true,
            InodeKind::Symlink => !long && fs.metadata(path).is_ok_and(|st| st.kind == InodeKind::Dir),
            InodeKind::File => false,
        };
        let rows = if list_dir { entries(fs, path).map_err(|e| fail(&context, &e))? } else { vec![itself] };
        let mut lines = Vec::new();
        if long {
            if list_dir {
                lines.push(format!("total {}", rows.iter().map(|r| r.stat.blocks).sum::<u64>() / 2));
            }
            lines.extend(long_lines(&rows));
        } else {
            lines.extend(rows.iter().map(short_line));
        }
        let mut out = std::io::stdout().lock();
        for line in lines {
            if writeln!(out, "{line}").is_err() {
                break;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_name_shows_control_characters_and_backslashes_as_ls_b_does() {
        assert_eq!(escape_name("a\nb"), "a\\nb");
        assert_eq!(escape_name("back\\slash"), "back\\\\slash");
        assert_eq!(escape_name("t\tx"), "t\\tx");
        assert_eq!(escape_name("e\x1bx del\x7f"), "e\\033x del\\177");
        assert_eq!(escape_name("é plain"), "é plain");
    }

    #[test]
    fn minute_utc_is_the_long_iso_minute() {
        assert_eq!(minute_utc(1_709_251_199_999_999_999), "2024-02-29 23:59");
    }
}
