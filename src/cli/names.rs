//! The namespace commands: `ln [-s]`, `readlink`, `chmod`, `chown`, `touch`, `xattr`.
//!
//! Owns what their arguments mean (coreutils' conventions: a directory as LINKNAME receives the
//! link under the target's name; chmod's octal and symbolic modes; chown's `USER[:GROUP]`), their
//! output and their messages: coreutils' wording after the program name ("ferrodax: ln: failed to
//! create hard link 'b': File exists"), exit status 0 on success and 1 on failure. Must never
//! decide a file-system rule itself (which errno, who may do what): the library does, for the
//! caller's credentials.

use super::accounts;
use super::commands::{fail, join, with_fs, with_fs_lazily};
use super::ls::{escape_name, quoted};
use ferrodax::format::record::InodeKind;
use ferrodax::fs::namespace::{SetAttributes, TimeSet, XATTR_CREATE, XATTR_REPLACE};
use ferrodax::{Error, OpenOptions};
use std::io::Write;
use std::path::Path;

/// The last name of a path ("b" for "/a/b/"), "/" for the root.
fn base_name(path: &str) -> &str {
    path.rsplit('/').find(|c| !c.is_empty()).unwrap_or("/")
}

/// Prints "ferrodax: <message>" for a usage mistake and returns exit status 1.
fn usage(message: impl std::fmt::Display) -> i32 {
    eprintln!("ferrodax: {message}");
    1
}

/// `ferrodax ln [-s] POOL TARGET LINKNAME`: a hard link (`link(2)`: a final symlink TARGET is
/// linked itself, not followed) or with -s a symlink whose target is TARGET exactly as given
/// (never resolved). A LINKNAME that is a directory receives the link under TARGET's last name.
pub fn ln(pool: &Path, target: &str, link_name: &str, symbolic: bool) -> i32 {
    with_fs(pool, false, |fs| {
        let dest = match fs.metadata(link_name) {
            Ok(st) if st.kind == InodeKind::Dir => join(link_name, base_name(target)),
            _ => link_name.to_string(),
        };
        if symbolic {
            return fs
                .symlink(target, &dest)
                .map_err(|e| fail(format_args!("ln: failed to create symbolic link {}", quoted(&dest)), &e));
        }
        fs.hard_link(target, &dest).map_err(|e| {
            // coreutils names the target too, except where only the new name can be at fault.
            let only_the_new_name =
                [libc::EEXIST, libc::ENOSPC, libc::EROFS, libc::EDQUOT].contains(&e.errno());
            let what = if only_the_new_name {
                quoted(&dest)
            } else {
                format!("{} => {}", quoted(&dest), quoted(target))
            };
            fail(format_args!("ln: failed to create hard link {what}"), &e)
        })
    })
}

/// `ferrodax readlink POOL PATH`: the target of symlink PATH as stored, and a newline. Anything
/// but a symlink is an error (EINVAL), said as `readlink -v` says it.
pub fn readlink(pool: &Path, path: &str) -> i32 {
    with_fs_lazily(pool, |fs| {
        let context = format!("readlink: {}", escape_name(path));
        let target = fs.read_link(path).map_err(|e| match e {
            Error::Invalid(_) => fail(&context, &Error::Invalid(format!("{path} is not a symbolic link"))),
            e => fail(&context, &e),
        })?;
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(target.as_bytes()).and_then(|()| out.write_all(b"\n"));
        Ok(())
    })
}

/// `ferrodax chmod POOL MODE PATH`: MODE octal (`640`) or symbolic (`u+x,go-w`, `a=rX`, `g=u`;
/// a clause naming no class leaves the umask's bits alone), as chmod(1). A symlink PATH changes
/// its target (symlinks have no mode of their own).
pub fn chmod(pool: &Path, mode: &str, path: &str) -> i32 {
    with_fs(pool, false, |fs| {
        let st =
            fs.metadata(path).map_err(|e| fail(format_args!("chmod: cannot access {}", quoted(path)), &e))?;
        let Some(new) = super::modes::apply_mode(mode, st.mode, st.kind == InodeKind::Dir, accounts::umask())
        else {
            return Err(usage(format_args!("chmod: invalid mode: {}", quoted(mode))));
        };
        fs.set_permissions(path, new)
            .map_err(|e| fail(format_args!("chmod: changing permissions of {}", quoted(path)), &e))
    })
}

/// The uid and gid a chown(1) spec `USER[:GROUP]` sets (`None`: unchanged): names from
/// /etc/passwd and /etc/group or numbers; `USER:` is the user's login group; `:GROUP` only the
/// group. The error is the message for a spec that names nobody.
fn owner_spec(spec: &str) -> Result<(Option<u32>, Option<u32>), String> {
    let (user, group) = match spec.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (spec, None),
    };
    let (uid, login_group) = if user.is_empty() {
        (None, None)
    } else {
        let (uid, login) =
            accounts::user_id(user).ok_or_else(|| format!("chown: invalid user: {}", quoted(spec)))?;
        (Some(uid), login)
    };
    let gid = match group {
        None => None,
        Some("") if uid.is_some() => Some(
            login_group.ok_or_else(|| format!("chown: invalid spec: {} (no login group)", quoted(spec)))?,
        ),
        Some("") => None,
        Some(group) => {
            Some(accounts::group_id(group).ok_or_else(|| format!("chown: invalid group: {}", quoted(spec)))?)
        }
    };
    Ok((uid, gid))
}

/// `ferrodax chown POOL USER[:GROUP] PATH`: changes the owner and/or group (see [`owner_spec`]);
/// a symlink PATH changes its target, as chown(1) without -h.
pub fn chown(pool: &Path, spec: &str, path: &str) -> i32 {
    let (uid, gid) = match owner_spec(spec) {
        Ok(ids) => ids,
        Err(message) => return usage(message),
    };
    with_fs(pool, false, |fs| {
        fs.metadata(path).map_err(|e| fail(format_args!("chown: cannot access {}", quoted(path)), &e))?;
        let set = SetAttributes { uid, gid, ..SetAttributes::default() };
        fs.set_attributes(path, &set, true)
            .map_err(|e| fail(format_args!("chown: changing ownership of {}", quoted(path)), &e))
    })
}

/// A `touch -d` time: `@SECONDS[.FRACTION]` since the epoch (the one form of touch(1)'s dates
/// taken here), as ns since the epoch.
pub fn parse_date(text: &str) -> Result<i64, String> {
    let bad = || format!("invalid date {text:?}: give @SECONDS[.FRACTION] since the epoch");
    let number = text.strip_prefix('@').ok_or_else(bad)?;
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if fraction.len() > 9 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let seconds: i64 = whole.parse().map_err(|_| bad())?;
    let nanos: i64 = format!("{fraction:0<9}").parse().map_err(|_| bad())?;
    let nanos = if whole.starts_with('-') { -nanos } else { nanos };
    seconds.checked_mul(1_000_000_000).and_then(|ns| ns.checked_add(nanos)).ok_or_else(bad)
}

/// `ferrodax touch [-c] [-d @SECONDS] POOL PATH`: sets the access and modification times of PATH
/// (a symlink's target) to now, or to the given time, or creates it empty (mode 0666 less the
/// umask) when it does not exist, unless -c. Setting a given time takes ownership (EPERM
/// otherwise); now takes ownership or write permission (EACCES otherwise).
pub fn touch(pool: &Path, path: &str, no_create: bool, date_ns: Option<i64>) -> i32 {
    with_fs(pool, false, |fs| {
        let context = format!("touch: cannot touch {}", quoted(path));
        let time = date_ns.map_or(TimeSet::Now, TimeSet::At);
        let set_times = SetAttributes { atime: Some(time), mtime: Some(time), ..SetAttributes::default() };
        match fs.metadata(path) {
            Err(e) if e.errno() == libc::ENOENT && no_create => Ok(()),
            Err(e) if e.errno() == libc::ENOENT => {
                let mut create = OpenOptions::new();
                create.write(true).create(true).mode(0o666 & !accounts::umask());
                fs.open(path, &create).map(drop).map_err(|e| fail(&context, &e))?;
                if date_ns.is_some() {
                    fs.set_attributes(path, &set_times, true).map_err(|e| fail(&context, &e))?;
                }
                Ok(())
            }
            Err(e) => Err(fail(&context, &e)),
            Ok(_) => fs.set_attributes(path, &set_times, true).map_err(|e| fail(&context, &e)),
        }
    })
}

/// What `ferrodax xattr` does.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum XattrAction {
    /// Write one attribute's value, byte for byte, to standard output.
    Get,
    /// Set one attribute to VALUE.
    Set,
    /// Remove one attribute.
    Rm,
    /// List the attribute names, one a line.
    List,
}

/// `ferrodax xattr POOL get|set|rm|list PATH [NAME [VALUE]]`: the `user.` extended attributes of
/// PATH (a symlink's target): `get` writes NAME's value exactly (no newline added, like
/// `getfattr --only-values`), `set` sets NAME to VALUE (with `create_only`: EEXIST if it exists;
/// `replace_only`: ENODATA if not), `rm` removes NAME, `list` prints the names, one a line.
pub fn xattr(
    pool: &Path,
    action: XattrAction,
    path: &str,
    name: Option<&str>,
    value: Option<&str>,
    flags: (bool, bool),
) -> i32 {
    let wanted = match action {
        XattrAction::List => (false, false),
        XattrAction::Set => (true, true),
        XattrAction::Get | XattrAction::Rm => (true, false),
    };
    let verb = format!("{action:?}").to_lowercase();
    if (name.is_some(), value.is_some()) != wanted {
        let form = match action {
            XattrAction::List => "PATH",
            XattrAction::Set => "PATH NAME VALUE",
            XattrAction::Get | XattrAction::Rm => "PATH NAME",
        };
        return usage(format_args!("xattr {verb}: takes {form}"));
    }
    let name = name.unwrap_or_default();
    let context = format!("xattr {verb} {}", escape_name(path));
    let body = |fs: &ferrodax::Fs| {
        let mut out = std::io::stdout().lock();
        match action {
            XattrAction::Get => {
                let bytes = fs.get_xattr(path, name).map_err(|e| fail(&context, &e))?;
                let _ = out.write_all(&bytes);
            }
            XattrAction::List => {
                for attr in fs.list_xattrs(path).map_err(|e| fail(&context, &e))? {
                    let _ = writeln!(out, "{}", escape_name(&attr));
                }
            }
            XattrAction::Set => {
                let (create_only, replace_only) = flags;
                let flags =
                    if create_only { XATTR_CREATE } else { 0 } | if replace_only { XATTR_REPLACE } else { 0 };
                let value = value.unwrap_or_default().as_bytes();
                fs.set_xattr(path, name, value, flags).map_err(|e| fail(&context, &e))?;
            }
            XattrAction::Rm => fs.remove_xattr(path, name).map_err(|e| fail(&context, &e))?,
        }
        Ok(())
    };
    // Looking reads only the path's inodes (a lazy mount); changing mounts whole.
    match action {
        XattrAction::Get | XattrAction::List => with_fs_lazily(pool, body),
        XattrAction::Set | XattrAction::Rm => with_fs(pool, false, body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_specs_take_numbers_colons_and_the_login_group() {
        assert_eq!(owner_spec("0"), Ok((Some(0), None)));
        assert_eq!(owner_spec("+12:+34"), Ok((Some(12), Some(34))));
        assert_eq!(owner_spec(":+34"), Ok((None, Some(34))));
        assert_eq!(owner_spec("root:"), Ok((Some(0), Some(0))), "root's login group");
        assert_eq!(owner_spec(":"), Ok((None, None)));
        assert_eq!(owner_spec("no-such-user-here"), Err("chown: invalid user: 'no-such-user-here'".into()));
        assert_eq!(owner_spec("0:no-such-group"), Err("chown: invalid group: '0:no-such-group'".into()));
    }

    #[test]
    fn touch_dates_are_seconds_since_the_epoch_with_an_optional_fraction() {
        assert_eq!(parse_date("@1000000000"), Ok(1_000_000_000_000_000_000));
        assert_eq!(parse_date("@1.5"), Ok(1_500_000_000));
        assert_eq!(parse_date("@-1.25"), Ok(-1_250_000_000));
        for bad in ["1", "@", "@x", "@1.1234567891", "@99999999999999999"] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn base_name_is_the_last_component() {
        assert_eq!(base_name("/a/b/"), "b");
        assert_eq!(base_name("b"), "b");
        assert_eq!(base_name("/"), "/");
    }
}
