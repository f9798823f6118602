//! Guards the namespace commands of the `ferrodax` program (ln, ln -s, readlink, chmod, chown,
//! touch, xattr, mv -n/--exchange, rm of a symlink, ls and stat of symlinks and odd names): each
//! one's success, visible through the other commands, and its main errors with the exact errno
//! text; paths resolved from the pool root (relative ones too), a trailing slash on a file is
//! ENOTDIR, a symlink loop is ELOOP; `ls` escapes a newline in a name; `check` stays clean after.
//! Run as another user against a pool server, the commands are refused where Linux refuses.

mod cli_sandbox;

use cli_sandbox::{PoolServer, Sandbox};

/// Runs a command that must fail with exit status 1; returns its standard error.
fn fails(s: &Sandbox, args: &[&str]) -> String {
    let run = s.run(args);
    assert_eq!(run.status, 1, "{args:?} should fail: {}{}", run.stdout, run.stderr);
    run.stderr
}

/// `check` of the pool passes.
fn assert_clean(s: &Sandbox) {
    let check = s.run(&["check", "test.pool"]);
    assert_eq!(check.status, 0, "{}{}", check.stdout, check.stderr);
    assert!(check.stdout.starts_with("clean: "), "{}", check.stdout);
}

/// One `stat --json` field.
fn stat_field(s: &Sandbox, path: &str, field: &str) -> serde_json::Value {
    s.json(&["stat", "test.pool", path, "--json"])[field].clone()
}

#[test]
fn ln_gives_a_file_a_second_name_sharing_its_bytes_and_refuses_with_the_kernels_errnos() {
    let s = Sandbox::with_pool("16m");
    s.put("/f", b"one file");
    s.ok(&["ln", "test.pool", "/f", "/g"]);
    s.ok(&["mkdir", "test.pool", "/d"]);
    s.ok(&["ln", "test.pool", "/f", "/d"]);
    assert_eq!(s.cat("/d/f"), b"one file", "a directory LINKNAME receives the link under the target's name");
    assert_eq!(stat_field(&s, "/g", "nlink"), 3);
    assert_eq!(stat_field(&s, "/g", "ino"), stat_field(&s, "/f", "ino"));
    s.io("/g", &["pwrite -q -S 0x78 0 3"]);
    assert_eq!(s.cat("/f"), b"xxx file", "a write through one name shows through the other");

    assert_eq!(
        fails(&s, &["ln", "test.pool", "/f", "/g"]),
        "ferrodax: ln: failed to create hard link '/g': File exists\n"
    );
    assert_eq!(
        fails(&s, &["ln", "test.pool", "/nope", "/x"]),
        "ferrodax: ln: failed to create hard link '/x' => '/nope': No such file or directory\n"
    );
    let dir = fails(&s, &["ln", "test.pool", "/d", "/d2"]);
    assert!(
        dir.starts_with("ferrodax: ln: failed to create hard link '/d2' => '/d': Operation not permitted"),
        "{dir}"
    );
    assert_eq!(
        fails(&s, &["ln", "test.pool", "/f/", "/z"]),
        "ferrodax: ln: failed to create hard link '/z' => '/f/': Not a directory\n"
    );

    s.ok(&["rm", "test.pool", "/f"]);
    s.ok(&["rm", "test.pool", "/d/f"]);
    assert_eq!(s.cat("/g"), b"xxx file", "the last name keeps the file");
    assert_eq!(stat_field(&s, "/g", "nlink"), 1);
    assert_eq!(s.ok(&["ls", "test.pool"]), "dir             0 d\nfile            8 g\n");
    assert_clean(&s);
}

#[test]
fn ln_s_stores_the_target_as_given_and_symlinks_list_read_stat_and_remove_without_being_followed() {
    let s = Sandbox::with_pool("16m");
    s.put("/f", b"target bytes");
    s.ok(&["mkdir", "test.pool", "/d"]);
    s.ok(&["ln", "-s", "test.pool", "../f", "/d/up"]);
    s.ok(&["ln", "-s", "test.pool", "no/such/place", "/dangling"]);
    s.ok(&["ln", "-s", "test.pool", "/d", "/dirlink"]);
    assert_eq!(s.ok(&["readlink", "test.pool", "/d/up"]), "../f\n", "stored as given, not resolved");
    assert_eq!(s.cat("/d/up"), b"target bytes", "a relative target resolves from the link's directory");
    assert_eq!(
        s.ok(&["ls", "test.pool"]),
        "dir             0 d\nlink           13 dangling -> no/such/place\nlink            2 dirlink -> /d\n\
         file           12 f\n"
    );
    assert_eq!(
        s.ok(&["ls", "test.pool", "/dirlink"]),
        "link            4 up -> ../f\n",
        "ls DIRLINK lists it"
    );
    let long = s.ok(&["ls", "-l", "test.pool", "/dirlink"]);
    assert!(long.starts_with("lrwxrwxrwx 1 ") && long.ends_with(" /dirlink -> /d\n"), "{long}");

    let stat = s.ok(&["stat", "test.pool", "/dangling"]);
    let lines: Vec<&str> = stat.lines().collect();
    assert_eq!(lines[0], "  File: /dangling -> no/such/place");
    assert!(lines[1].ends_with("symbolic link"), "{stat}");
    assert!(lines[3].starts_with("Access: (0777/lrwxrwxrwx)  Uid: ("), "{stat}");
    assert_eq!(stat_field(&s, "/dangling", "link_target"), "no/such/place");
    assert_eq!(
        fails(&s, &["cat", "test.pool", "/dangling"]),
        "ferrodax: cat /dangling: No such file or directory\n"
    );
    assert_eq!(
        fails(&s, &["readlink", "test.pool", "/f"]),
        "ferrodax: readlink: /f: Invalid argument: /f is not a symbolic link\n"
    );
    assert_eq!(
        fails(&s, &["ln", "-s", "test.pool", "x", "/f"]),
        "ferrodax: ln: failed to create symbolic link '/f': File exists\n"
    );

    s.ok(&["rm", "test.pool", "/dangling"]);
    s.ok(&["rm", "test.pool", "/dirlink"]);
    s.ok(&["rm", "test.pool", "/d/up"]);
    assert_eq!(s.cat("/f"), b"target bytes", "removing a symlink leaves its target");
    assert_eq!(s.ok(&["ls", "test.pool", "/d"]), "", "the directory behind the removed link is kept");
    assert_eq!(s.ok(&["ls", "test.pool"]), "dir             0 d\nfile           12 f\n");
    assert_clean(&s);
}

#[test]
fn a_symlink_loop_is_eloop_and_a_trailing_slash_on_a_file_is_enotdir() {
    let s = Sandbox::with_pool("16m");
    s.put("/f", b"x");
    s.ok(&["ln", "-s", "test.pool", "a", "/b"]);
    s.ok(&["ln", "-s", "test.pool", "b", "/a"]);
    assert_eq!(fails(&s, &["cat", "test.pool", "a"]), "ferrodax: cat a: Too many levels of symbolic links\n");
    assert_eq!(
        fails(&s, &["touch", "test.pool", "/a"]),
        "ferrodax: touch: cannot touch '/a': Too many levels of symbolic links\n"
    );
    assert_eq!(fails(&s, &["cat", "test.pool", "/f/"]), "ferrodax: cat /f/: Not a directory\n");
    assert_eq!(
        fails(&s, &["touch", "test.pool", "/f/"]),
        "ferrodax: touch: cannot touch '/f/': Not a directory\n"
    );
    assert_eq!(fails(&s, &["rm", "test.pool", "/f/"]), "ferrodax: rm /f/: Not a directory\n");
    assert_eq!(s.cat("/f"), b"x");
    assert_clean(&s);
}

#[test]
fn relative_paths_are_resolved_from_the_pool_root() {
    let s = Sandbox::with_pool("16m");
    s.put("/f", b"rooted");
    s.ok(&["mkdir", "test.pool", "d"]);
    s.ok(&["ln", "test.pool", "f", "d/g"]);
    s.ok(&["touch", "test.pool", "d/new"]);
    assert_eq!(s.cat("d/g"), b"rooted");
    assert_eq!(s.ok(&["ls", "test.pool", "d"]), "file            6 g\nfile            0 new\n");
    assert_eq!(s.ok(&["ls", "test.pool", "/d"]), s.ok(&["ls", "test.pool", "d"]));
    assert_clean(&s);
}

/// The process's umask (as the program started by this test inherits it).
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:")).expect("a Umask line");
    u32::from_str_radix(line.trim(), 8).unwrap()
}

#[test]
fn touch_creates_with_the_umask_and_sets_both_times_to_now_or_to_a_given_second() {
    let s = Sandbox::with_pool("16m");
    s.ok(&["touch", "test.pool", "/new"]);
    assert_eq!(stat_field(&s, "/new", "mode"), 0o666 & !umask());
    assert_eq!(stat_field(&s, "/new", "size"), 0);
    s.ok(&["touch", "-d", "@1000000000.5", "test.pool", "/new"]);
    assert_eq!(stat_field(&s, "/new", "mtime_ns"), 1_000_000_000_500_000_000i64);
    assert_eq!(stat_field(&s, "/new", "atime_ns"), 1_000_000_000_500_000_000i64);
    let text = s.ok(&["stat", "test.pool", "/new"]);
    assert!(text.contains("\nModify: 2001-09-09 01:46:40.500000000 +0000\n"), "{text}");
    s.ok(&["touch", "test.pool", "/new"]);
    let now_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let mtime = stat_field(&s, "/new", "mtime_ns").as_i64().unwrap() as u128;
    assert!(mtime > 1_000_000_000_500_000_000 && mtime <= now_ns, "touch set the time to now: {mtime}");
    s.ok(&["touch", "-c", "test.pool", "/absent"]);
    assert_eq!(
        fails(&s, &["stat", "test.pool", "/absent"]),
        "ferrodax: stat /absent: No such file or directory\n",
        "touch -c creates nothing"
    );
    assert_eq!(
        fails(&s, &["touch", "test.pool", "/no/dir"]),
        "ferrodax: touch: cannot touch '/no/dir': No such file or directory\n"
    );
    assert_clean(&s);
}

#[test]
fn chmod_takes_octal_and_symbolic_modes_and_chown_takes_names_and_numbers() {
    let s = Sandbox::with_pool("16m");
    s.put("/f", b"x");
    s.ok(&["mkdir", "test.pool", "/d"]);
    let mode = |path: &str| stat_field(&s, path, "mode").as_u64().unwrap();
    s.ok(&["chmod", "test.pool", "640", "/f"]);
    assert_eq!(mode("/f"), 0o640);
    s.ok(&["chmod", "test.pool", "u+x,g-r,o=r", "/f"]);
    assert_eq!(mode("/f"), 0o704);
    s.ok(&["chmod", "test.pool", "a=rX", "/d"]);
    assert_eq!(mode("/d"), 0o555);
    s.ok(&["chmod", "test.pool", "4755", "/f"]);
    let access = s.ok(&["stat", "test.pool", "/f"]).lines().nth(3).unwrap().to_string();
    assert!(access.starts_with("Access: (4755/-rwsr-xr-x)  Uid: ("), "{access}");
    assert_eq!(fails(&s, &["chmod", "test.pool", "u+q", "/f"]), "ferrodax: chmod: invalid mode: 'u+q'\n");
    assert_eq!(
        fails(&s, &["chmod", "test.pool", "600", "/nope"]),
        "ferrodax: chmod: cannot access '/nope': No such file or directory\n"
    );

    s.ok(&["chown", "test.pool", "1234:+4321", "/f"]);
    assert_eq!((stat_field(&s, "/f", "uid"), stat_field(&s, "/f", "gid")), (1234.into(), 4321.into()));
    assert_eq!(mode("/f"), 0o755, "a change of owner clears set-user-ID");
    s.ok(&["chown", "test.pool", ":0", "/f"]);
    assert_eq!((stat_field(&s, "/f", "uid"), stat_field(&s, "/f", "gid")), (1234.into(), 0.into()));
    s.ok(&["chown", "test.pool", "root:", "/f"]);
    let access = s.ok(&["stat", "test.pool", "/f"]).lines().nth(3).unwrap().to_string();
    assert_eq!(access, "Access: (0755/-rwxr-xr-x)  Uid: (    0/    root)   Gid: (    0/    root)");
    let text = s.ok(&["ls", "-l", "test.pool", "/f"]);
    assert!(text.starts_with("-rwxr-xr-x 1 root root 1 "), "{text}");
    assert_eq!(
        fails(&s, &["chown", "test.pool", "no-such-user-here", "/f"]),
        "ferrodax: chown: invalid user: 'no-such-user-here'\n"
    );
    assert_eq!(
        fails(&s, &["chown", "test.pool", "0:no-such-group-here", "/f"]),
        "ferrodax: chown: invalid group: '0:no-such-group-here'\n"
    );
    assert_clean(&s);
}

#[test]
fn xattr_sets_gets_lists_and_removes_user_attributes_with_the_kernels_errnos() {
    let s = Sandbox::with_pool("16m");
    s.put("/f", b"x");
    s.ok(&["xattr", "test.pool", "set", "/f", "user.colour", "dark blue"]);
    s.ok(&["xattr", "test.pool", "set", "/f", "user.empty", ""]);
    s.ok(&["xattr", "test.pool", "set", "/f", "user.negative", "-1"]);
    assert_eq!(s.ok(&["xattr", "test.pool", "get", "/f", "user.colour"]), "dark blue");
    assert_eq!(s.ok(&["xattr", "test.pool", "get", "/f", "user.negative"]), "-1");
    assert_eq!(s.ok(&["xattr", "test.pool", "list", "/f"]), "user.colour\nuser.empty\nuser.negative\n");
    assert_eq!(
        fails(&s, &["xattr", "--create", "test.pool", "set", "/f", "user.colour", "red"]),
        "ferrodax: xattr set /f: File exists\n"
    );
    assert_eq!(
        fails(&s, &["xattr", "--replace", "test.pool", "set", "/f", "user.none", "red"]),
        "ferrodax: xattr set /f: No data available: user.none\n"
    );
    s.ok(&["xattr", "--replace", "test.pool", "set", "/f", "user.colour", "red"]);
    assert_eq!(s.ok(&["xattr", "test.pool", "get", "/f", "user.colour"]), "red");
    let other = fails(&s, &["xattr", "test.pool", "set", "/f", "trusted.x", "1"]);
    assert!(other.starts_with("ferrodax: xattr set /f: Operation not supported"), "{other}");
    s.ok(&["xattr", "test.pool", "rm", "/f", "user.colour"]);
    assert_eq!(
        fails(&s, &["xattr", "test.pool", "get", "/f", "user.colour"]),
        "ferrodax: xattr get /f: No data available: user.colour\n"
    );
    assert_eq!(
        fails(&s, &["xattr", "test.pool", "rm", "/f", "user.colour"]),
        "ferrodax: xattr rm /f: No data available: user.colour\n"
    );
    assert_eq!(s.ok(&["xattr", "test.pool", "list", "/f"]), "user.empty\nuser.negative\n");
    assert_eq!(fails(&s, &["xattr", "test.pool", "get", "/f"]), "ferrodax: xattr get: takes PATH NAME\n");
    assert_clean(&s);
}

#[test]
fn mv_no_clobber_refuses_an_existing_target_and_exchange_swaps_two_names() {
    let s = Sandbox::with_pool("16m");
    s.put("/a", b"alpha");
    s.put("/b", b"beta");
    s.ok(&["mkdir", "test.pool", "/d"]);
    assert_eq!(fails(&s, &["mv", "-n", "test.pool", "/a", "/b"]), "ferrodax: mv /a /b: File exists\n");
    assert_eq!((s.cat("/a"), s.cat("/b")), (b"alpha".to_vec(), b"beta".to_vec()), "nothing moved");
    s.ok(&["mv", "--exchange", "test.pool", "/a", "/b"]);
    assert_eq!((s.cat("/a"), s.cat("/b")), (b"beta".to_vec(), b"alpha".to_vec()));
    s.ok(&["mv", "--exchange", "test.pool", "/a", "/d"]);
    assert_eq!(s.cat("/d"), b"beta", "exchange swaps a file and a directory too");
    assert_eq!(s.ok(&["ls", "test.pool", "/a"]), "", "/a is the (empty) directory now");
    assert_eq!(
        fails(&s, &["mv", "--exchange", "test.pool", "/b", "/nope"]),
        "ferrodax: mv /b /nope: No such file or directory\n"
    );
    s.ok(&["mv", "-n", "test.pool", "/b", "/a"]);
    assert_eq!(s.cat("/a/b"), b"alpha", "mv into a directory, as mv(1)");
    s.ok(&["mv", "-T", "test.pool", "/d", "/c"]);
    assert_eq!(s.ok(&["ls", "test.pool"]), "dir             0 a\nfile            4 c\n");
    assert_clean(&s);
}

#[test]
fn ls_escapes_a_newline_a_backslash_and_other_control_characters_in_names() {
    let s = Sandbox::with_pool("16m");
    s.ok(&["touch", "test.pool", "/two\nlines"]);
    s.ok(&["touch", "test.pool", "/back\\slash"]);
    s.ok(&["touch", "test.pool", "/esc\x1b[31m"]);
    s.ok(&["ln", "-s", "test.pool", "a\tb", "/tab link"]);
    assert_eq!(
        s.ok(&["ls", "test.pool"]),
        "file            0 back\\\\slash\nfile            0 esc\\033[31m\nlink            3 tab link -> a\\tb\n\
         file            0 two\\nlines\n"
    );
    let long = s.ok(&["ls", "-l", "test.pool"]);
    assert_eq!(long.lines().count(), 5, "a total line and one line per name: {long}");
    assert!(long.lines().last().unwrap().ends_with(" two\\nlines"), "{long}");
    let stat = s.ok(&["stat", "test.pool", "/two\nlines"]);
    assert_eq!(stat.lines().next().unwrap(), "  File: /two\\nlines");
    assert_eq!(s.ok(&["ls", "test.pool", "/two\nlines"]), "file            0 /two\\nlines\n");
    assert_clean(&s);
}

/// The user the permission test runs the program as.
const NOBODY: u32 = 65534;

#[test]
fn another_user_running_the_commands_through_the_pool_server_is_refused_where_linux_refuses() {
    use std::os::unix::fs::PermissionsExt;
    let s = Sandbox::with_pool("16m");
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(s.dir.path()).unwrap()),
        0,
        "this test runs the program as another user: it needs root (CI is)"
    );
    // Root's files: /f 0644, /private 0700, /open 0777.
    s.put("/f", b"root's");
    s.ok(&["chmod", "test.pool", "644", "/f"]);
    s.ok(&["mkdir", "test.pool", "/private"]);
    s.ok(&["chmod", "test.pool", "700", "/private"]);
    s.ok(&["mkdir", "test.pool", "/open"]);
    s.ok(&["chmod", "test.pool", "777", "/open"]);
    // The other user reaches the sandbox and the pool server's socket (its group), nothing else.
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&s.pool, None, Some(NOBODY)).unwrap();
    std::fs::set_permissions(&s.pool, std::fs::Permissions::from_mode(0o640)).unwrap();
    let _server = PoolServer::start(&s, &["--group", &NOBODY.to_string()]);
    let nobody = |args: &[&str]| s.run_as(NOBODY, NOBODY, args);
    let refused = |args: &[&str], message: &str| {
        let run = nobody(args);
        assert_eq!(run.status, 1, "{args:?} as nobody should fail: {}", run.stdout);
        assert!(run.stderr.starts_with(message), "{args:?}: {}", run.stderr);
    };
    refused(&["touch", "test.pool", "/new"], "ferrodax: touch: cannot touch '/new': Permission denied");
    refused(
        &["chmod", "test.pool", "777", "/f"],
        "ferrodax: chmod: changing permissions of '/f': Operation not permitted",
    );
    refused(
        &["chown", "test.pool", "65534", "/f"],
        "ferrodax: chown: changing ownership of '/f': Operation not permitted",
    );
    refused(
        &["touch", "-d", "@5", "test.pool", "/f"],
        "ferrodax: touch: cannot touch '/f': Operation not permitted",
    );
    refused(&["touch", "test.pool", "/f"], "ferrodax: touch: cannot touch '/f': Permission denied");
    refused(
        &["ln", "test.pool", "/f", "/open/f2"],
        "ferrodax: ln: failed to create hard link '/open/f2' => '/f': Operation not permitted",
    );
    refused(
        &["ln", "-s", "test.pool", "/f", "/l"],
        "ferrodax: ln: failed to create symbolic link '/l': Permission denied",
    );
    refused(&["xattr", "test.pool", "set", "/f", "user.x", "1"], "ferrodax: xattr set /f: Permission denied");
    refused(&["ls", "test.pool", "/private"], "ferrodax: ls /private: Permission denied");
    refused(&["rm", "test.pool", "/f"], "ferrodax: rm /f: Permission denied");
    refused(&["mv", "test.pool", "/f", "/open/f"], "ferrodax: mv /f /open/f: Permission denied");

    // What it may do, it does, and what it makes is its own.
    for args in [
        &["touch", "test.pool", "/open/mine"][..],
        &["chmod", "test.pool", "600", "/open/mine"],
        &["ln", "-s", "test.pool", "mine", "/open/link"],
        &["xattr", "test.pool", "set", "/open/mine", "user.k", "v"],
    ] {
        let run = nobody(args);
        assert_eq!((run.status, run.stderr.as_str()), (0, ""), "{args:?} as nobody");
    }
    let mine = s.ok(&["ls", "-l", "test.pool", "/open/mine"]);
    assert!(mine.starts_with("-rw------- 1 nobody "), "{mine}");
    assert_eq!(stat_field(&s, "/open/mine", "gid"), NOBODY);
    refused(
        &["chown", "test.pool", "0", "/open/mine"],
        "ferrodax: chown: changing ownership of '/open/mine': Operation not permitted",
    );
    assert_eq!(s.cat("/f"), b"root's");
    assert_eq!(stat_field(&s, "/f", "mode"), 0o644);
    assert_clean(&s);
}
