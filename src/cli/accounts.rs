//! User and group names for the commands that show or take owners (`chown`, `stat`, `ls -l`,
//! `serve --group`), read from `/etc/passwd` and `/etc/group`, and the process's umask.
//!
//! Owns the parsing of those files (the `name:x:id:...` lines; no NSS, so users that only a
//! directory service knows are not found by name: give their number). Must never write to them, and
//! never call into the C library (the CLI has no unsafe code).

use std::path::Path;

/// The user database.
const PASSWD: &str = "/etc/passwd";
/// The group database.
const GROUP: &str = "/etc/group";

/// One `name:password:id:...` line of a database: the name, the number and, for `/etc/passwd`, the
/// primary group's number.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    id: u32,
    primary_gid: Option<u32>,
}

/// Every well-formed line of a database file (none if it cannot be read).
fn entries(file: &Path) -> Vec<Entry> {
    std::fs::read_to_string(file).map(|text| parse(&text)).unwrap_or_default()
}

/// The well-formed `name:password:id[:gid...]` lines of `text`; comments and broken lines are
/// skipped.
fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let id = fields.get(2)?.parse().ok()?;
            let primary_gid = fields.get(3).and_then(|g| g.parse().ok());
            (!fields[0].is_empty()).then(|| Entry { name: fields[0].to_string(), id, primary_gid })
        })
        .collect()
}

/// The name of user `uid`, if `/etc/passwd` has one.
pub(super) fn user_name(uid: u32) -> Option<String> {
    entries(Path::new(PASSWD)).into_iter().find(|e| e.id == uid).map(|e| e.name)
}

/// The name of group `gid`, if `/etc/group` has one.
pub(super) fn group_name(gid: u32) -> Option<String> {
    entries(Path::new(GROUP)).into_iter().find(|e| e.id == gid).map(|e| e.name)
}

/// A user given by name or number, as chown(1) takes it: a name in `/etc/passwd` first, then a
/// decimal number (`+N` is always a number). Returns the uid and, for a known user, their primary
/// group.
pub(super) fn user_id(spec: &str) -> Option<(u32, Option<u32>)> {
    if let Some(number) = spec.strip_prefix('+') {
        return number.parse().ok().map(|uid| (uid, None));
    }
    let known = entries(Path::new(PASSWD)).into_iter().find(|e| e.name == spec);
    match known {
        Some(e) => Some((e.id, e.primary_gid)),
        None => spec.parse().ok().map(|uid| (uid, None)),
    }
}

/// A group given by name or number: a name in `/etc/group` first, then a decimal number (`+N` is
/// always a number).
pub(super) fn group_id(spec: &str) -> Option<u32> {
    if let Some(number) = spec.strip_prefix('+') {
        return number.parse().ok();
    }
    let known = entries(Path::new(GROUP)).into_iter().find(|e| e.name == spec);
    known.map(|e| e.id).or_else(|| spec.parse().ok())
}

/// The process's file-creation mask, from the `Umask:` line of `/proc/self/status` (022 if it
/// cannot be read).
pub(super) fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("Umask:"))
        .and_then(|value| u32::from_str_radix(value.trim(), 8).ok())
        .unwrap_or(0o022)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_names_ids_and_primary_groups_and_skips_broken_lines() {
        let text =
            "root:x:0:0:root:/root:/bin/bash\n# comment\nbroken\nnobody:x:65534:65534::/:\nodd:x:q:1\n";
        assert_eq!(
            parse(text),
            [
                Entry { name: "root".into(), id: 0, primary_gid: Some(0) },
                Entry { name: "nobody".into(), id: 65534, primary_gid: Some(65534) },
            ]
        );
        assert_eq!(
            parse("wheel:x:10:alice,bob")[0],
            Entry { name: "wheel".into(), id: 10, primary_gid: None }
        );
    }

    #[test]
    fn a_plus_sign_makes_a_number_and_an_unknown_name_is_none() {
        assert_eq!(user_id("+0"), Some((0, None)));
        assert_eq!(group_id("+12"), Some(12));
        assert_eq!(user_id("no-such-user-here"), None);
        assert_eq!(group_id("no-such-group-here"), None);
    }
}
