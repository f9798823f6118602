//! Permission bits as people write and read them: chmod(1)'s modes (octal `755`, symbolic
//! `u+x,go-w`, `a=rX`, `g=u`) and ls(1)'s ten-character strings (`-rwsr-xr-x`, `drwxrwxrwt`,
//! `lrwxrwxrwx`).
//!
//! Owns only the arithmetic of those notations. Must never touch a pool: the commands apply what
//! it computes.

use ferrodax::format::record::InodeKind;

/// Set-user-ID.
const S_ISUID: u32 = 0o4000;
/// Set-group-ID.
const S_ISGID: u32 = 0o2000;
/// Sticky (restricted deletion).
const S_ISVTX: u32 = 0o1000;

/// The ten characters ls -l shows for an inode of `kind` with permission bits `mode`:
/// `d`/`l`/`-`, then rwx three times, with `s`/`S` for set-user-ID and set-group-ID and `t`/`T`
/// for the sticky bit (lower case when the execute bit under it is set).
pub(super) fn mode_string(kind: InodeKind, mode: u32) -> String {
    let mut text = String::from(match kind {
        InodeKind::Dir => 'd',
        InodeKind::Symlink => 'l',
        InodeKind::File => '-',
    });
    for (shift, special, set_char) in [(6, S_ISUID, 's'), (3, S_ISGID, 's'), (0, S_ISVTX, 't')] {
        let bits = (mode >> shift) & 7;
        text.push(if bits & 4 != 0 { 'r' } else { '-' });
        text.push(if bits & 2 != 0 { 'w' } else { '-' });
        text.push(match (bits & 1 != 0, mode & special != 0) {
            (true, true) => set_char,
            (false, true) => set_char.to_ascii_uppercase(),
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    text
}

/// The permission bits chmod(1) gives an inode whose bits are now `old` (a directory when
/// `is_dir`) for MODE `spec`, with the process's `umask` (which masks a symbolic clause that names
/// no user class, as chmod(1) does). An octal mode of at most four digits keeps a directory's
/// set-user-ID and set-group-ID bits (as chmod(1) does; five digits, `00755`, clear them).
/// `None` for a mode that is neither.
pub(super) fn apply_mode(spec: &str, old: u32, is_dir: bool, umask: u32) -> Option<u32> {
    if !spec.is_empty() && spec.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        let value = u32::from_str_radix(spec, 8).ok().filter(|&v| v <= 0o7777)?;
        let kept = if is_dir && spec.len() <= 4 { old & (S_ISUID | S_ISGID) } else { 0 };
        return Some(value | kept);
    }
    let mut mode = old & 0o7777;
    for clause in spec.split(',') {
        mode = apply_clause(clause, mode, is_dir, umask)?;
    }
    Some(mode)
}

/// One symbolic clause, `[ugoa]*([-+=]([rwxXst]*|[ugo]))+`, applied to `mode`.
fn apply_clause(clause: &str, mut mode: u32, is_dir: bool, umask: u32) -> Option<u32> {
    let who_len = clause.find(|c| !"ugoa".contains(c)).unwrap_or(clause.len());
    let (who, mut rest) = clause.split_at(who_len);
    let mut classes = 0;
    for c in who.chars() {
        classes |= match c {
            'u' => S_ISUID | 0o700,
            'g' => S_ISGID | 0o070,
            'o' => S_ISVTX | 0o007,
            _ => 0o7777,
        };
    }
    // No class named: all of them, but the bits the umask holds back stay as they are.
    let affected = if who.is_empty() { 0o7777 & !umask } else { classes };
    if rest.is_empty() {
        return None;
    }
    while let Some(op) = rest.chars().next().filter(|c| "+-=".contains(*c)) {
        rest = &rest[1..];
        let perm_len = rest.find(|c| "+-=".contains(c)).unwrap_or(rest.len());
        let (perms, tail) = rest.split_at(perm_len);
        rest = tail;
        let value = match perms {
            "u" => spread((mode >> 6) & 7),
            "g" => spread((mode >> 3) & 7),
            "o" => spread(mode & 7),
            _ => {
                let mut value = 0;
                for p in perms.chars() {
                    value |= match p {
                        'r' => 0o444,
                        'w' => 0o222,
                        'x' => 0o111,
                        'X' if is_dir || mode & 0o111 != 0 => 0o111,
                        'X' => 0,
                        's' => S_ISUID | S_ISGID,
                        't' => S_ISVTX,
                        _ => return None,
                    };
                }
                value
            }
        };
        mode = match op {
            '+' => mode | (value & affected),
            '-' => mode & !(value & affected),
            _ => (mode & !affected) | (value & affected),
        };
    }
    rest.is_empty().then_some(mode)
}

/// Three permission bits copied to the user, group and other classes.
fn spread(bits: u32) -> u32 {
    bits << 6 | bits << 3 | bits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_string_spells_permission_and_special_bits_like_ls() {
        assert_eq!(mode_string(InodeKind::File, 0o644), "-rw-r--r--");
        assert_eq!(mode_string(InodeKind::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(InodeKind::Symlink, 0o777), "lrwxrwxrwx");
        assert_eq!(mode_string(InodeKind::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(InodeKind::File, 0o2644), "-rw-r-Sr--");
        assert_eq!(mode_string(InodeKind::Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(InodeKind::Dir, 0o1776), "drwxrwxrwT");
    }

    #[test]
    fn octal_modes_replace_the_bits_and_keep_a_directorys_setgid_unless_five_digits() {
        assert_eq!(apply_mode("600", 0o644, false, 0o022), Some(0o600));
        assert_eq!(apply_mode("4755", 0o644, false, 0o022), Some(0o4755));
        assert_eq!(apply_mode("755", 0o2775, true, 0o022), Some(0o2755));
        assert_eq!(apply_mode("00755", 0o2775, true, 0o022), Some(0o755));
        assert_eq!(apply_mode("17777", 0o644, false, 0o022), None);
        assert_eq!(apply_mode("8", 0o644, false, 0o022), None);
    }

    #[test]
    fn symbolic_modes_change_the_named_classes_as_chmod_does() {
        assert_eq!(apply_mode("u+x", 0o644, false, 0o022), Some(0o744));
        assert_eq!(apply_mode("go-r", 0o644, false, 0o022), Some(0o600));
        assert_eq!(apply_mode("a=r", 0o755, false, 0o022), Some(0o444));
        assert_eq!(apply_mode("u=rwx,g=rx,o=", 0o000, false, 0o022), Some(0o750));
        assert_eq!(apply_mode("g=u", 0o740, false, 0o022), Some(0o770));
        assert_eq!(apply_mode("u+r-w", 0o200, false, 0o022), Some(0o400));
        assert_eq!(apply_mode("a+X", 0o644, false, 0o022), Some(0o644));
        assert_eq!(apply_mode("a+X", 0o644, true, 0o022), Some(0o755));
        assert_eq!(apply_mode("u+s,+t", 0o755, false, 0o022), Some(0o5755));
        // No class named: the umask's bits are left alone.
        assert_eq!(apply_mode("+w", 0o444, false, 0o022), Some(0o644));
        assert_eq!(apply_mode("=", 0o666, false, 0o022), Some(0o022));
    }

    #[test]
    fn malformed_modes_are_refused() {
        for bad in ["", "u", "u+q", "x+r", "u+r,", "u+ur"] {
            assert_eq!(apply_mode(bad, 0o644, false, 0o022), None, "{bad:?}");
        }
    }
}
