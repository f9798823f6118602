//! `ferrodax mount` through FUSE, with real processes: ordinary programs (cp, cat, mv, rm, ls,
//! stat, dd, python3's os and mmap modules) on the mount, the same files read through the pool
//! server by `ferrodax cat` while it is mounted, then unmounted, checked and read directly;
//! coreutils' ln, ln -s, chmod, chown, touch, mv -T, find, setfattr/getfattr and python3's os
//! module making links, symlinks, owners, modes, times and xattrs that stat and the CLI read back;
//! tar and cp -a round trips of a tree with all of those; a user other than root refused with
//! the errnos tmpfs gives for the same steps (run as uid 65534 on both); the errnos of what the
//! mount does not support, and of xattr calls on a symlink itself (which never reach its target);
//! the ways a mount ends (umount, SIGINT, SIGTERM with a file still open, --background); a mount
//! that goes through a pool server already running. Where FUSE cannot mount, each test prints
//! SKIPPED and passes, unless FERRODAX_REQUIRE_FUSE=1.

mod fuse_common;

use fuse_common::*;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::{Command, Stdio};

const POOL_SIZE: u64 = 256 << 20;

fn check_clean(pool: &Path) {
    let (status, stdout, stderr) = run_cli(&["check", pool.to_str().unwrap()]);
    assert!(status.success(), "ferrodax check: {stdout}{stderr}");
    assert!(stdout.starts_with("clean"), "ferrodax check: {stdout}");
}

/// The python3 part: create, write, pread, ftruncate, fsync, mmap stores and loads, rename,
/// truncate by path, stat. Leaves `py2` whose bytes the test knows.
const PYTHON_OS: &str = r#"
import mmap, os, sys
d = sys.argv[1]
p = os.path.join(d, "py")
fd = os.open(p, os.O_CREAT | os.O_RDWR | os.O_EXCL, 0o640)
assert os.write(fd, b"a" * 10000) == 10000
assert os.pread(fd, 5, 9995) == b"aaaaa"
os.ftruncate(fd, 20000)
assert os.pread(fd, 10, 9995) == b"aaaaa" + b"\0" * 5
os.fsync(fd)
m = mmap.mmap(fd, 20000)
m[100:105] = b"hello"
m[15000:15003] = b"xyz"
assert m[0:3] == b"aaa" and m[19999] == 0
m.flush()
m.close()
assert os.pread(fd, 5, 100) == b"hello"
assert os.pread(fd, 3, 15000) == b"xyz"
os.close(fd)
os.rename(p, os.path.join(d, "py2"))
assert not os.path.exists(p)
os.truncate(os.path.join(d, "py2"), 15002)
st = os.stat(os.path.join(d, "py2"))
assert st.st_size == 15002, st
assert st.st_mode & 0o777 == 0o640, oct(st.st_mode)
with open(os.path.join(d, "py2"), "rb") as f:
    data = f.read()
assert data[15000:] == b"xy", data[15000:]
print("python ok")
"#;

fn python_expected() -> Vec<u8> {
    let mut v = vec![b'a'; 10000];
    v.resize(15002, 0);
    v[100..105].copy_from_slice(b"hello");
    v[15000..15002].copy_from_slice(b"xy");
    v
}

#[test]
fn programs_on_the_mount_write_what_the_pool_server_and_a_later_direct_mount_read() {
    let pool = TestPool::new(POOL_SIZE);
    let Some(mount) = Mount::start("programs_on_the_mount", &pool, "mnt") else { return };
    let host = pool.dir.path().join("host");
    std::fs::create_dir(&host).unwrap();
    let big = noise(1, 300_000);
    std::fs::write(host.join("big"), &big).unwrap();
    std::fs::write(host.join("small"), b"small file\n").unwrap();
    let mnt = mount.dir.to_str().unwrap().to_string();

    // cp and cat.
    run_ok("cp", &[host.join("big").to_str().unwrap(), &format!("{mnt}/big")]);
    run_ok("cp", &["-r", host.to_str().unwrap(), &format!("{mnt}/tree")]);
    let cat = Command::new("cat").arg(mount.path("big")).output().unwrap();
    assert!(cat.stdout == big, "cat of the copied file differs");
    assert_eq!(std::fs::read(mount.path("tree/small")).unwrap(), b"small file\n");

    // mkdir, mv (into a directory, over an existing file), rm.
    std::fs::create_dir(mount.path("dir")).unwrap();
    run_ok("mv", &[&format!("{mnt}/tree/small"), &format!("{mnt}/dir/moved")]);
    std::fs::write(mount.path("victim"), b"to be replaced").unwrap();
    run_ok("mv", &[&format!("{mnt}/dir/moved"), &format!("{mnt}/victim")]);
    assert_eq!(std::fs::read(mount.path("victim")).unwrap(), b"small file\n");
    run_ok("rm", &[&format!("{mnt}/tree/big")]);
    run_ok("rmdir", &[&format!("{mnt}/tree")]);
    assert!(!mount.path("tree").exists());

    // dd: 5 blocks of the host file into the middle of /big, without truncating.
    run_ok(
        "dd",
        &[
            &format!("if={}", host.join("big").display()),
            &format!("of={mnt}/big"),
            "bs=4096",
            "skip=10",
            "seek=3",
            "count=5",
            "conv=notrunc",
            "status=none",
        ],
    );
    let mut big_expected = big.clone();
    big_expected[3 * 4096..8 * 4096].copy_from_slice(&big[10 * 4096..15 * 4096]);

    // ls -l and stat see sizes, kinds and link counts.
    let ls = run_ok("ls", &["-l", &mnt]);
    let line =
        |name: &str| ls.lines().find(|l| l.ends_with(&format!(" {name}"))).unwrap_or_else(|| panic!("{ls}"));
    assert!(line("big").starts_with("-rw-r--r-- 1 ") && line("big").contains(" 300000 "), "{ls}");
    assert!(line("dir").starts_with("drwxr-xr-x 2 "), "{ls}");
    assert_eq!(run_ok("stat", &["-c", "%s %h %F %a", &format!("{mnt}/victim")]), "11 1 regular file 644\n");
    assert_eq!(run_ok("stat", &["-c", "%F %h", &format!("{mnt}/dir")]), "directory 2\n");

    // statfs (df) says what `ferrodax df` says.
    let statvfs = run_ok("python3", &["-c", "import os,sys\ns=os.statvfs(sys.argv[1])\nprint(s.f_frsize*s.f_blocks, s.f_frsize*s.f_bfree, s.f_frsize*s.f_bavail, s.f_namemax)", &mnt]);
    let (_, df, _) = run_cli(&["df", "-b", "--json", pool.path.to_str().unwrap()]);
    let df: serde_json::Value = serde_json::from_str(&df).unwrap();
    assert_eq!(
        statvfs,
        format!("{} {} {} 255\n", df["size_bytes"], df["free_bytes"], df["available_bytes"]),
        "{df}"
    );

    // python3's os module: create, write, truncate, rename, fsync, mmap.
    assert_eq!(run_ok("python3", &["-c", PYTHON_OS, &mnt]), "python ok\n");

    // Read through the pool server while mounted: ferrodax commands share the pool.
    assert!(cli_cat(&pool.path, "/big") == big_expected, "ferrodax cat /big through the server differs");
    assert_eq!(cli_cat(&pool.path, "/victim"), b"small file\n");
    assert!(cli_cat(&pool.path, "/py2") == python_expected(), "ferrodax cat /py2 differs");
    let (status, _, stderr) = run_cli(&["-v", "ls", pool.path.to_str().unwrap(), "/"]);
    assert!(status.success() && stderr.contains("through the pool server"), "{stderr}");
    // And the other way: a file written through the server shows up in the mount.
    let (status, out, err) =
        run_cli(&["put", pool.path.to_str().unwrap(), host.join("small").to_str().unwrap(), "/put"]);
    assert!(status.success(), "{out}{err}");
    assert_eq!(std::fs::read(mount.path("put")).unwrap(), b"small file\n");

    mount.unmount();
    check_clean(&pool.path);
    assert!(cli_cat(&pool.path, "/big") == big_expected, "after unmount: /big differs");
    assert!(cli_cat(&pool.path, "/py2") == python_expected(), "after unmount: /py2 differs");
    let (_, listing, _) = run_cli(&["ls", pool.path.to_str().unwrap(), "/"]);
    let names: Vec<&str> = listing.lines().filter_map(|l| l.split_whitespace().last()).collect();
    assert_eq!(names, ["big", "dir", "put", "py2", "victim"], "{listing}");
}

#[test]
fn links_symlinks_modes_times_xattrs_and_renameat2_work_on_the_mount_and_special_files_are_eperm_and_fallocate_seek_and_copy_range_work(
) {
    let pool = TestPool::new(POOL_SIZE);
    let Some(mount) = Mount::start("posix_breadth", &pool, "mnt") else { return };
    std::fs::write(mount.path("f"), b"0123456789").unwrap();
    std::fs::write(mount.path("g"), b"g").unwrap();
    use std::os::unix::fs::MetadataExt;

    // A hard link: one inode, two names, link count 2; removing one name keeps the other.
    std::fs::hard_link(mount.path("f"), mount.path("link")).unwrap();
    let (f_meta, link_meta) =
        (std::fs::metadata(mount.path("f")).unwrap(), std::fs::metadata(mount.path("link")).unwrap());
    assert_eq!((f_meta.ino(), f_meta.nlink()), (link_meta.ino(), 2));
    std::fs::write(mount.path("link"), b"0123456789").unwrap();
    // A symlink: readlink gives the target, opening follows it, lstat shows the link.
    std::os::unix::fs::symlink("f", mount.path("sym")).unwrap();
    assert_eq!(std::fs::read_link(mount.path("sym")).unwrap(), Path::new("f"));
    assert_eq!(std::fs::read(mount.path("sym")).unwrap(), b"0123456789");
    assert!(std::fs::symlink_metadata(mount.path("sym")).unwrap().file_type().is_symlink());
    std::fs::remove_file(mount.path("link")).unwrap();
    assert_eq!(std::fs::metadata(mount.path("f")).unwrap().nlink(), 1);

    let c = |p: &Path| CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: plain system calls on NUL-terminated paths and buffers that live across the calls.
    let (mknod, setxattr, getxattr, trusted, noreplace, exchange) = unsafe {
        let fifo = libc::mknod(c(&mount.path("fifo")).as_ptr(), libc::S_IFIFO | 0o644, 0);
        let fifo = (fifo, *libc::__errno_location());
        let name = CString::new("user.k").unwrap();
        let x = libc::setxattr(c(&mount.path("f")).as_ptr(), name.as_ptr(), b"v".as_ptr().cast(), 1, 0);
        let mut value = [0u8; 8];
        let got = libc::getxattr(c(&mount.path("f")).as_ptr(), name.as_ptr(), value.as_mut_ptr().cast(), 8);
        let trusted_name = CString::new("trusted.k").unwrap();
        let t =
            libc::setxattr(c(&mount.path("f")).as_ptr(), trusted_name.as_ptr(), b"v".as_ptr().cast(), 1, 0);
        let t = (t, *libc::__errno_location());
        let (f, g) = (c(&mount.path("f")), c(&mount.path("g")));
        let r1 =
            libc::renameat2(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, g.as_ptr(), libc::RENAME_NOREPLACE);
        let r1 = (r1, *libc::__errno_location());
        let r2 =
            libc::renameat2(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, g.as_ptr(), libc::RENAME_EXCHANGE);
        (fifo, x, (got, value[0]), t, r1, r2)
    };
    assert_eq!(mknod, (-1, libc::EPERM), "mknod of a FIFO");
    assert_eq!(setxattr, 0, "setxattr user.k");
    assert_eq!(getxattr, (1, b'v'), "getxattr user.k");
    assert_eq!(trusted, (-1, libc::EOPNOTSUPP), "setxattr trusted.k");
    assert_eq!(noreplace, (-1, libc::EEXIST), "renameat2 RENAME_NOREPLACE onto an existing name");
    assert_eq!(exchange, 0, "renameat2 RENAME_EXCHANGE");
    assert_eq!(std::fs::read(mount.path("g")).unwrap(), b"0123456789", "exchanged");
    assert_eq!(std::fs::read(mount.path("f")).unwrap(), b"g", "exchanged");
    std::fs::rename(mount.path("g"), mount.path("f")).unwrap();

    // Mode and times change as asked.
    use std::os::unix::fs::PermissionsExt;
    let f = mount.path("f");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o7777, 0o600);
    let file = std::fs::OpenOptions::new().write(true).open(&f).unwrap();
    file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000)).unwrap();
    drop(file);
    assert_eq!(std::fs::metadata(&f).unwrap().mtime(), 1_000_000);
    // fallocate, SEEK_DATA/SEEK_HOLE and copy_file_range reach the library.
    let g = mount.path("preallocated");
    run_ok("fallocate", &["-l", "1M", g.to_str().unwrap()]);
    assert_eq!(std::fs::metadata(&g).unwrap().len(), 1 << 20, "fallocate extends the file");
    assert!(std::fs::read(&g).unwrap().iter().all(|&b| b == 0), "preallocated bytes read as zeros");
    let script = "import os,sys\nfd=os.open(sys.argv[1],os.O_RDWR)\n\
                  print(os.lseek(fd,0,os.SEEK_DATA), os.lseek(fd,0,os.SEEK_HOLE))\n\
                  out=os.open(sys.argv[2],os.O_CREAT|os.O_RDWR)\n\
                  print(os.copy_file_range(fd,out,10,0,0))\nprint(os.pread(out,10,0))";
    let copy = mount.path("copy");
    assert_eq!(
        run_ok("python3", &["-c", script, f.to_str().unwrap(), copy.to_str().unwrap()]),
        "0 10\n10\nb'0123456789'\n"
    );
    assert_eq!(std::fs::metadata(&f).unwrap().len(), 10, "nothing changed f");

    mount.unmount();
    check_clean(&pool.path);
    assert_eq!(cli_cat(&pool.path, "/copy"), b"0123456789");
    assert_eq!(cli_cat(&pool.path, "/sym"), b"0123456789", "the CLI follows the symlink too");
}

#[test]
fn sigint_unmounts_and_stops_cleanly_with_the_final_checkpoint() {
    let pool = TestPool::new(POOL_SIZE);
    let Some(mount) = Mount::start("sigint", &pool, "mnt") else { return };
    std::fs::write(mount.path("f"), b"before ctrl-c").unwrap();
    let dir = mount.dir.clone();
    mount.stop_with(libc::SIGINT);
    assert!(!is_mounted(&dir));
    check_clean(&pool.path);
    assert_eq!(cli_cat(&pool.path, "/f"), b"before ctrl-c");
}

#[test]
fn sigterm_with_a_file_open_detaches_and_stops_when_it_is_closed_and_an_unlinked_open_file_is_freed() {
    let pool = TestPool::new(POOL_SIZE);
    let Some(mount) = Mount::start("sigterm_busy", &pool, "mnt") else { return };
    std::fs::write(mount.path("keep"), b"kept").unwrap();
    // An unlinked file still open keeps working, and its blocks go at its last close.
    let mut open =
        std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(mount.path("gone")).unwrap();
    use std::io::{Read, Seek, Write};
    open.write_all(&noise(7, 100_000)).unwrap();
    std::fs::remove_file(mount.path("gone")).unwrap();
    assert!(!mount.path("gone").exists());
    open.write_all(b"tail").unwrap();
    assert_eq!(open.metadata().unwrap().len(), 100_004);
    open.seek(std::io::SeekFrom::Start(100_000)).unwrap();
    let mut tail = String::new();
    open.read_to_string(&mut tail).unwrap();
    assert_eq!(tail, "tail");

    let pid = mount.child.as_ref().unwrap().id() as i32;
    // SAFETY: kill(2) of the mount process, our child, not yet awaited.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + HANG;
    while !mount.log_text().contains("detached") {
        assert!(std::time::Instant::now() < deadline, "{}", mount.log_text());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(!is_mounted(&mount.dir), "a busy mount is detached at once");
    // The open file still works through the detached mount.
    open.write_all(b"!").unwrap();
    drop(open);
    let mut mount = mount;
    let mut child = mount.child.take().unwrap();
    let status = wait_deadline(&mut child, "ferrodax mount after its last file closed");
    assert!(status.success() && mount.log_text().contains("stopped cleanly"), "{}", mount.log_text());
    check_clean(&pool.path);
    let (_, listing, _) = run_cli(&["ls", pool.path.to_str().unwrap(), "/"]);
    assert_eq!(listing.lines().count(), 1, "only /keep is left: {listing}");
    let (_, df, _) = run_cli(&["df", "-b", "--json", pool.path.to_str().unwrap()]);
    let df: serde_json::Value = serde_json::from_str(&df).unwrap();
    assert_eq!(df["data_bytes"], 4096, "only /keep's block is used: {df}");
}

#[test]
fn background_mount_prints_its_pid_serves_the_pool_and_umount_ends_that_process() {
    if let Some(why) = cannot_mount() {
        skip("background_mount", &why);
        return;
    }
    let pool = TestPool::new(POOL_SIZE);
    let dir = pool.dir.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    let log = pool.dir.path().join("bg.log");
    let out = Command::new(ferrodax())
        .args(["mount", pool.path.to_str().unwrap(), dir.to_str().unwrap(), "--background", "--log"])
        .arg(&log)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pid: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(is_mounted(&dir), "mounted when --background returns");
    std::fs::write(dir.join("f"), b"in the background").unwrap();
    assert_eq!(cli_cat(&pool.path, "/f"), b"in the background");
    run_ok("umount", &[dir.to_str().unwrap()]);
    // The process that served it ends on its own (it is not our child: poll for it).
    let deadline = std::time::Instant::now() + HANG;
    while Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
    {
        assert!(std::time::Instant::now() < deadline, "process {pid} is still running");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("was unmounted") && text.contains("stopped cleanly"), "{text}");
    check_clean(&pool.path);
}

#[test]
fn a_mount_goes_through_a_pool_server_that_already_runs() {
    if let Some(why) = cannot_mount() {
        skip("through_a_server", &why);
        return;
    }
    let pool = TestPool::new(POOL_SIZE);
    let server = Server::start(&pool);
    let Some(mount) = Mount::start("through_a_server", &pool, "mnt") else { return };
    assert!(mount.log_text().contains("through the pool server"), "{}", mount.log_text());
    // 3 MiB: 1 MiB write requests, which a connected mount stores straight into blocks the
    // server reserved (placed writes).
    std::fs::write(mount.path("f"), noise(3, 3 << 20)).unwrap();
    let fs = server.connect();
    assert!(read_all(&fs, "/f") == noise(3, 3 << 20), "the server reads what the mount wrote");
    drop(fs);
    mount.unmount();
    server.stop();
    check_clean(&pool.path);
}

#[test]
fn a_mount_through_a_pool_server_unmounts_itself_when_the_server_stops() {
    if let Some(why) = cannot_mount() {
        skip("server_stops_under_the_mount", &why);
        return;
    }
    let pool = TestPool::new(POOL_SIZE);
    let server = Server::start(&pool);
    let Some(mut mount) = Mount::start("server_stops_under_the_mount", &pool, "mnt") else { return };
    std::fs::write(mount.path("f"), b"written before the server stopped").unwrap();
    server.stop();
    let mut child = mount.child.take().unwrap();
    let status = wait_deadline(&mut child, "ferrodax mount after its server stopped");
    let log = mount.log_text();
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(
        log.contains("the pool server stopped: unmounting")
            && log.contains("Transport endpoint is not connected"),
        "{log}"
    );
    assert!(!is_mounted(&mount.dir), "{log}");
    check_clean(&pool.path);
    assert_eq!(cli_cat(&pool.path, "/f"), b"written before the server stopped");
}

#[test]
fn a_write_crossing_the_largest_file_size_through_the_mount_is_short_and_keeps_the_bytes_before_it() {
    use std::os::unix::fs::FileExt;
    let pool = TestPool::new(POOL_SIZE);
    let Some(mount) = Mount::start("short_write_at_the_size_limit", &pool, "mnt") else { return };
    let limit = ferrodax::format::MAX_FILE_SIZE;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(mount.path("edge"))
        .unwrap();
    // As the library's (and the kernel's) own writes: up to the limit, and the count says so.
    assert_eq!(file.write_at(&[0x61; 200], limit - 100).unwrap(), 100);
    // With the page before the limit in the kernel's cache (read back), the kernel sends the
    // whole 200 bytes in one request, and the bytes before the limit still count.
    let mut tail = [0u8; 100];
    file.read_exact_at(&mut tail, limit - 100).unwrap();
    assert_eq!(tail, [0x61; 100]);
    assert_eq!(file.write_at(&[0x62; 200], limit - 100).unwrap(), 100);
    assert_eq!(file.metadata().unwrap().len(), limit);
    file.read_exact_at(&mut tail, limit - 100).unwrap();
    assert_eq!(tail, [0x62; 100]);
    assert_eq!(file.write_at(&[1], limit).unwrap_err().raw_os_error(), Some(libc::EFBIG));
    drop(file);
    mount.unmount();
    check_clean(&pool.path);
}

#[test]
fn xattr_calls_on_a_symlink_itself_are_refused_as_linux_refuses_them_and_never_reach_its_target() {
    let pool = TestPool::new(POOL_SIZE);
    let Some(mount) = Mount::start("symlink_xattrs", &pool, "mnt") else { return };
    std::fs::write(mount.path("f"), b"target").unwrap();
    std::os::unix::fs::symlink("f", mount.path("sym")).unwrap();
    // setxattr through the link sets the target's; then lsetxattr, lgetxattr, llistxattr and
    // lremovexattr on the link itself.
    let script = "import os,sys\nf,sym=sys.argv[1],sys.argv[2]\n\
                  def errno_of(call):\n  try:\n    call(); return 'ok'\n  except OSError as e:\n    return e.errno\n\
                  os.setxattr(sym,'user.k',b'v')\nprint(os.getxattr(f,'user.k'))\n\
                  print(errno_of(lambda: os.setxattr(sym,'user.j',b'w',follow_symlinks=False)))\n\
                  print(errno_of(lambda: os.getxattr(sym,'user.k',follow_symlinks=False)))\n\
                  print(os.listxattr(sym,follow_symlinks=False))\n\
                  print(errno_of(lambda: os.removexattr(sym,'user.k',follow_symlinks=False)))\n\
                  print(os.listxattr(f))";
    let (f, sym) = (mount.path("f"), mount.path("sym"));
    assert_eq!(
        run_ok("python3", &["-c", script, f.to_str().unwrap(), sym.to_str().unwrap()]),
        format!("b'v'\n{}\n{}\n[]\n{}\n['user.k']\n", libc::EPERM, libc::ENODATA, libc::EPERM),
        "setxattr through the link sets the target's; lsetxattr EPERM, lgetxattr ENODATA, llistxattr \
         empty, lremovexattr EPERM, and the target keeps its attribute"
    );
    mount.unmount();
    check_clean(&pool.path);
}

/// The `user.` extended attributes of `path` itself (a symlink not followed), sorted.
fn user_xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 4096];
    // SAFETY: llistxattr/lgetxattr on a NUL-terminated path into buffers of the lengths given.
    let len = unsafe { libc::llistxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(len >= 0, "llistxattr {}: {}", path.display(), std::io::Error::last_os_error());
    let mut out = Vec::new();
    for name in names[..len as usize].split(|&b| b == 0).filter(|n| n.starts_with(b"user.")) {
        let cname = CString::new(name).unwrap();
        let mut value = vec![0u8; 4096];
        // SAFETY: as above.
        let n =
            unsafe { libc::lgetxattr(c.as_ptr(), cname.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
        assert!(n >= 0, "lgetxattr {}: {}", path.display(), std::io::Error::last_os_error());
        value.truncate(n as usize);
        out.push((String::from_utf8(name.to_vec()).unwrap(), value));
    }
    out.sort();
    out
}

/// One line per entry of the tree at `root` (itself as "."), sorted by path: kind, mode,
/// owner, group, mtime, then for a file its size, a hash of its bytes and which earlier path
/// it is a hard link of, for a symlink its target, and the `user.` extended attributes. Two
/// trees with the same summary hold the same things the same way.
fn tree_summary(root: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut paths = vec![root.to_path_buf()];
    let mut i = 0;
    while i < paths.len() {
        if std::fs::symlink_metadata(&paths[i]).unwrap().is_dir() {
            let mut children: Vec<_> =
                std::fs::read_dir(&paths[i]).unwrap().map(|e| e.unwrap().path()).collect();
            children.sort();
            paths.extend(children);
        }
        i += 1;
    }
    paths.sort();
    let mut first_name_of_inode = std::collections::HashMap::new();
    let mut lines = Vec::new();
    for path in paths {
        let name = path.strip_prefix(root).unwrap().to_str().unwrap();
        let name = if name.is_empty() { ".".to_string() } else { name.to_string() };
        let m = std::fs::symlink_metadata(&path).unwrap();
        let ft = m.file_type();
        let what = if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_symlink() {
            format!("symlink -> {}", std::fs::read_link(&path).unwrap().display())
        } else {
            let first = first_name_of_inode.entry(m.ino()).or_insert_with(|| name.clone());
            let link = if *first == name { String::new() } else { format!(" hard link of {first}") };
            format!(
                "file {} bytes fnv {:x} links {}{link}",
                m.len(),
                fnv(&std::fs::read(&path).unwrap()),
                m.nlink()
            )
        };
        lines.push(format!(
            "{name}: {what} mode {:o} owner {}:{} mtime {} xattrs {:?}",
            m.mode() & 0o7777,
            m.uid(),
            m.gid(),
            m.mtime(),
            user_xattrs(&path)
        ));
    }
    lines
}

/// `stat -c FORMAT PATH...`'s output.
fn stat_c(format: &str, paths: &[&Path]) -> String {
    let mut args = vec!["-c", format];
    args.extend(paths.iter().map(|p| p.to_str().unwrap()));
    run_ok("stat", &args)
}

/// The python3 part of the coreutils test: os.link, os.symlink, os.chmod, os.utime (also of a
/// symlink itself), os.setxattr/getxattr/listxattr/removexattr with their flags and errnos,
/// punching a hole with fallocate(2) and finding it with SEEK_HOLE/SEEK_DATA, posix_fallocate,
/// copy_file_range (looped: one call may copy less). Leaves pyfile (= pylink), pysym -> pyfile and
/// pycopy, whose bytes the test knows.
const PYTHON_LINKS: &str = r#"
import ctypes, errno, os, sys
j = lambda n: os.path.join(sys.argv[1], n)
def fails(e, f):
    try:
        f()
    except OSError as x:
        assert x.errno == e, (errno.errorcode[x.errno], errno.errorcode[e])
        return
    raise AssertionError("no error, expected " + errno.errorcode[e])
fd = os.open(j("pyfile"), os.O_CREAT | os.O_RDWR | os.O_EXCL, 0o644)
os.pwrite(fd, b"p" * 8192, 0)
os.pwrite(fd, b"q" * 4096, 65536)
assert os.lseek(fd, 0, os.SEEK_HOLE) == 8192
assert os.lseek(fd, 8192, os.SEEK_DATA) == 65536
libc = ctypes.CDLL(None, use_errno=True)
FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2
assert libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, ctypes.c_long(0), ctypes.c_long(4096)) == 0
assert os.lseek(fd, 0, os.SEEK_DATA) == 4096
assert os.pread(fd, 8192, 0) == b"\0" * 4096 + b"p" * 4096
assert os.fstat(fd).st_size == 69632
os.posix_fallocate(fd, 0, 100000)
assert os.fstat(fd).st_size == 100000
out = os.open(j("pycopy"), os.O_CREAT | os.O_RDWR, 0o600)
done = 0
while done < 100000:
    n = os.copy_file_range(fd, out, 100000 - done, done, done)
    assert n > 0, done
    done += n
assert os.pread(out, 100000, 0) == os.pread(fd, 100000, 0)
os.close(out)
os.close(fd)

os.link(j("pyfile"), j("pylink"))
a, b = os.stat(j("pyfile")), os.stat(j("pylink"))
assert a.st_ino == b.st_ino and a.st_nlink == 2, (a, b)
fails(errno.EEXIST, lambda: os.link(j("pyfile"), j("pylink")))
os.symlink("pyfile", j("pysym"))
assert os.readlink(j("pysym")) == "pyfile" and os.path.islink(j("pysym"))
os.chmod(j("pylink"), 0o600)
assert os.stat(j("pyfile")).st_mode & 0o7777 == 0o600
os.utime(j("pyfile"), ns=(1_000_000_000_123_456_789, 1_100_000_000_987_654_321))
st = os.stat(j("pylink"))
assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_000_123_456_789, 1_100_000_000_987_654_321), st
os.utime(j("pysym"), ns=(5_000_000_000, 6_000_000_000), follow_symlinks=False)
assert os.lstat(j("pysym")).st_mtime_ns == 6_000_000_000
assert os.stat(j("pysym")).st_mtime_ns == 1_100_000_000_987_654_321

os.setxattr(j("pyfile"), "user.py", b"value")
assert os.getxattr(j("pylink"), "user.py") == b"value"
assert os.listxattr(j("pyfile")) == ["user.py"]
assert os.listxattr(j("pysym")) == ["user.py"]
assert os.listxattr(j("pysym"), follow_symlinks=False) == []
fails(errno.EPERM, lambda: os.setxattr(j("pysym"), "user.x", b"1", follow_symlinks=False))
fails(errno.ENODATA, lambda: os.getxattr(j("pysym"), "user.py", follow_symlinks=False))
fails(errno.EEXIST, lambda: os.setxattr(j("pyfile"), "user.py", b"x", os.XATTR_CREATE))
fails(errno.ENODATA, lambda: os.setxattr(j("pyfile"), "user.none", b"x", os.XATTR_REPLACE))
os.setxattr(j("pyfile"), "user.py", b"value 2", os.XATTR_REPLACE)
os.setxattr(j("pyfile"), "user.empty", b"", os.XATTR_CREATE)
assert sorted(os.listxattr(j("pylink"))) == ["user.empty", "user.py"]
os.removexattr(j("pyfile"), "user.empty")
fails(errno.ENODATA, lambda: os.getxattr(j("pyfile"), "user.empty"))
fails(errno.ENODATA, lambda: os.removexattr(j("pyfile"), "user.empty"))
fails(errno.EOPNOTSUPP, lambda: os.setxattr(j("pyfile"), "trusted.x", b"1"))
print("python ok")
"#;

/// pyfile's bytes after PYTHON_LINKS.
fn python_links_expected() -> Vec<u8> {
    let mut v = vec![0u8; 100_000];
    v[4096..8192].fill(b'p');
    v[65536..69632].fill(b'q');
    v
}

#[test]
fn ln_chmod_chown_touch_mv_setfattr_find_and_python_os_on_the_mount_show_in_stat_and_in_the_cli_after_unmount(
) {
    let test = "coreutils_links_owners_times";
    let pool = TestPool::new(POOL_SIZE);
    let Some(mount) = Mount::start(test, &pool, "mnt") else { return };
    let p = |name: &str| mount.path(name);
    let s = |name: &str| mount.path(name).to_str().unwrap().to_string();
    std::fs::write(p("f"), b"file f\n").unwrap();

    // ln, ln -s, chmod, chown (root), stat.
    run_ok("ln", &[&s("f"), &s("hard")]);
    run_ok("ln", &["-s", "f", &s("sym")]);
    run_ok("ln", &["-s", "nowhere", &s("dangling")]);
    std::fs::create_dir(p("dir")).unwrap();
    run_ok("ln", &["-s", "dir", &s("dirsym")]);
    let (status, _, stderr) = run("ln", &[&s("f"), &s("hard")]);
    assert!(!status.success() && stderr.contains("File exists"), "ln onto an existing name: {stderr}");
    run_ok("chmod", &["640", &s("f")]);
    run_ok("chown", &["nobody:nogroup", &s("f")]);
    assert_eq!(
        stat_c("%h %a %U %G %F", &[&p("f"), &p("hard")]),
        "2 640 nobody nogroup regular file\n2 640 nobody nogroup regular file\n"
    );
    assert_eq!(
        stat_c("%h %a %F", &[&p("sym"), &p("dangling")]),
        "1 777 symbolic link\n1 777 symbolic link\n"
    );
    assert_eq!(run_ok("readlink", &[&s("sym"), &s("dangling")]), "f\nnowhere\n");
    assert_eq!(std::fs::read(p("sym")).unwrap(), b"file f\n", "opening a symlink opens its target");
    assert_eq!(std::fs::read_dir(p("dirsym")).unwrap().count(), 0, "a symlink to a directory lists it");
    // chown -h changes the symlink, not its target.
    run_ok("chown", &["-h", "1:2", &s("sym")]);
    assert_eq!(stat_c("%u %g", &[&p("sym"), &p("f")]), "1 2\n65534 65534\n");
    // A set-user-ID bit goes when root gives the file away (chown clears it on Linux).
    run_ok("chmod", &["4755", &s("f")]);
    assert_eq!(stat_c("%a", &[&p("hard")]), "4755\n");
    run_ok("chown", &["0:0", &s("hard")]);
    assert_eq!(stat_c("%a %u %g", &[&p("f")]), "755 0 0\n");
    run_ok("chmod", &["u=rw,g=r,o=", &s("f")]);
    run_ok("chown", &["65534:65534", &s("f")]);

    // touch -d sets both times, touch -m only mtime, touch -h the symlink's own.
    run_ok("touch", &["-d", "2001-02-03 04:05:06 UTC", &s("f")]);
    assert_eq!(stat_c("%Y %X", &[&p("hard")]), "981173106 981173106\n");
    run_ok("touch", &["-m", "-d", "@1234567890", &s("hard")]);
    assert_eq!(stat_c("%Y %X", &[&p("f")]), "1234567890 981173106\n");
    run_ok("touch", &["-h", "-d", "2003-01-01 00:00:00 UTC", &s("sym")]);
    assert_eq!(stat_c("%Y", &[&p("sym"), &p("f")]), "1041379200\n1234567890\n");

    // mv -T replaces an empty directory, and is refused onto a non-empty one.
    for dir in ["a", "b", "c"] {
        std::fs::create_dir(p(dir)).unwrap();
    }
    std::fs::write(p("a/x"), b"x").unwrap();
    std::fs::write(p("c/y"), b"y").unwrap();
    run_ok("mv", &["-T", &s("a"), &s("b")]);
    assert!(!p("a").exists() && std::fs::read(p("b/x")).unwrap() == b"x");
    let (status, _, stderr) = run("mv", &["-T", &s("b"), &s("c")]);
    assert!(
        !status.success() && stderr.contains("Directory not empty"),
        "mv -T onto a full directory: {stderr}"
    );
    // mv --exchange (coreutils 9.5 and later): renameat2(RENAME_EXCHANGE).
    if run_ok("mv", &["--help"]).contains("--exchange") {
        run_ok("mv", &["--exchange", &s("b"), &s("c")]);
        assert!(std::fs::read(p("b/y")).unwrap() == b"y" && std::fs::read(p("c/x")).unwrap() == b"x");
        run_ok("mv", &["--exchange", &s("b"), &s("c")]);
    } else {
        eprintln!("{test}: this coreutils' mv has no --exchange (9.5+); RENAME_EXCHANGE is tested by renameat2 in links_symlinks_modes_...");
    }

    // setfattr and getfattr: user. attributes are the inode's (seen through the other name),
    // a symlink has none of its own, other namespaces cannot be set.
    if need(test, "setfattr", "attr") {
        run_ok("setfattr", &["-n", "user.color", "-v", "blue", &s("f")]);
        run_ok("setfattr", &["-n", "user.shape", "-v", "round", &s("f")]);
        assert_eq!(run_ok("getfattr", &["--only-values", "-n", "user.color", &s("hard")]), "blue");
        let dump = run_ok("getfattr", &["-d", &s("hard")]);
        assert!(dump.contains("user.color=\"blue\"") && dump.contains("user.shape=\"round\""), "{dump}");
        assert_eq!(run_ok("getfattr", &["-h", "-d", &s("sym")]), "", "a symlink's own attributes");
        run_ok("setfattr", &["-x", "user.shape", &s("hard")]);
        let (status, _, stderr) = run("getfattr", &["-n", "user.shape", &s("f")]);
        assert!(!status.success() && stderr.contains("No such attribute"), "{stderr}");
        let (status, _, stderr) = run("setfattr", &["-n", "trusted.k", "-v", "1", &s("f")]);
        assert!(!status.success() && stderr.contains("Operation not supported"), "{stderr}");
        let (status, _, stderr) = run("setfattr", &["-h", "-n", "user.k", "-v", "1", &s("sym")]);
        assert!(!status.success() && stderr.contains("Operation not permitted"), "{stderr}");
    }

    // python3's os module: links, modes, times, xattrs, fallocate, SEEK_DATA, copy_file_range.
    assert_eq!(run_ok("python3", &["-c", PYTHON_LINKS, &s("")]), "python ok\n");

    // find -type l lists the symlinks, and -samefile the hard links.
    let mnt = mount.dir.to_str().unwrap().to_string();
    let symlinks = run_ok("find", &[&mnt, "-type", "l"]);
    let mut symlinks: Vec<&str> = symlinks.lines().map(|l| l.trim_start_matches(mnt.as_str())).collect();
    symlinks.sort();
    assert_eq!(symlinks, ["/dangling", "/dirsym", "/pysym", "/sym"]);
    let same = run_ok("find", &[&mnt, "-samefile", &s("f")]);
    let mut same: Vec<&str> = same.lines().map(|l| l.trim_start_matches(mnt.as_str())).collect();
    same.sort();
    assert_eq!(same, ["/f", "/hard"]);

    // While mounted, the CLI (through the pool server) sees the owner the mount set.
    let (_, text, _) = run_cli(&["stat", pool.path.to_str().unwrap(), "/hard"]);
    assert!(
        text.contains("Links: 2") && text.contains("Uid: (65534/  nobody)   Gid: (65534/ nogroup)"),
        "{text}"
    );

    mount.unmount();
    check_clean(&pool.path);
    let pool_path = pool.path.to_str().unwrap();
    assert_eq!(cli_cat(&pool.path, "/hard"), b"file f\n");
    assert_eq!(cli_cat(&pool.path, "/sym"), b"file f\n", "the CLI follows a symlink");
    assert_eq!(cli_cat(&pool.path, "/b/x"), b"x");
    assert!(cli_cat(&pool.path, "/pylink") == python_links_expected(), "/pylink differs");
    assert!(cli_cat(&pool.path, "/pycopy") == python_links_expected(), "/pycopy differs");
    let (_, listing, _) = run_cli(&["ls", pool_path, "/"]);
    let lines: Vec<&str> = listing.lines().collect();
    for line in [
        "link            7 dangling -> nowhere",
        "file            7 f",
        "file            7 hard",
        "link            1 sym -> f",
    ] {
        assert!(lines.contains(&line), "ferrodax ls: no `{line}` in\n{listing}");
    }
    let (_, text, _) = run_cli(&["stat", pool_path, "/sym"]);
    assert!(
        text.contains("symbolic link")
            && text.contains("Access: (0777/lrwxrwxrwx)  Uid: (    1/  daemon)   Gid: (    2/     bin)"),
        "{text}"
    );
    let (_, json, _) = run_cli(&["stat", pool_path, "/f", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        (&json["nlink"], &json["mode"], &json["uid"], &json["gid"], &json["mtime_ns"]),
        (&2.into(), &0o640.into(), &65534.into(), &65534.into(), &1_234_567_890_000_000_000i64.into()),
        "{json}"
    );
}

#[test]
fn tar_and_cp_a_of_a_tree_with_hard_links_symlinks_owners_modes_times_and_xattrs_round_trip_through_the_mount(
) {
    let pool = TestPool::new(POOL_SIZE);
    let Some(mount) = Mount::start("tar_cp_a_round_trip", &pool, "mnt") else { return };
    // The tree, on the host (tmpfs): a file with a hard link, an xattr and an old mtime; a
    // symlink to it and a dangling one; a private file of another owner in a 0750 directory.
    let host = pool.dir.path().join("tree");
    std::fs::create_dir_all(host.join("sub")).unwrap();
    std::fs::write(host.join("data"), noise(5, 50_000)).unwrap();
    std::fs::write(host.join("sub/private"), b"private\n").unwrap();
    let h = |name: &str| host.join(name).to_str().unwrap().to_string();
    bash_ok(
        r#"cd "$1"
        ln data data.hard
        ln -s data data.sym
        ln -s sub/none dangling
        chmod 600 sub/private
        chown 65534:65534 sub/private
        chmod 4755 data
        touch -d '2005-06-07 08:09:10 UTC' data sub/private
        touch -h -d '2003-01-01 00:00:00 UTC' data.sym
        chmod 750 sub
        touch -d '2006-01-01 00:00:00 UTC' sub ."#,
        &[&h("")],
    );
    let name = CString::new("user.tag").unwrap();
    let data = CString::new(h("data")).unwrap();
    // SAFETY: setxattr on a NUL-terminated path with a 2-byte value.
    let set = unsafe { libc::setxattr(data.as_ptr(), name.as_ptr(), b"t1".as_ptr().cast(), 2, 0) };
    assert_eq!(set, 0, "setxattr on the host's tmpfs: {}", std::io::Error::last_os_error());
    let expected = tree_summary(&host);
    assert!(expected.iter().any(|l| l.contains("hard link of data")), "{expected:#?}");

    // tar c | tar x onto the mount (as root: -p keeps modes, owners; --xattrs the user. ones).
    let tar = "tar --xattrs --xattrs-include='user.*'";
    std::fs::create_dir(mount.path("untar")).unwrap();
    bash_ok(
        &format!(r#"{tar} -C "$1" -cf - . | {tar} -C "$2" -xpf -"#),
        &[&h(""), mount.path("untar").to_str().unwrap()],
    );
    assert_eq!(tree_summary(&mount.path("untar")), expected, "tar onto the mount");
    // cp -a inside the mount: modes, owners, times, symlinks, hard links, xattrs.
    run_ok("cp", &["-a", mount.path("untar").to_str().unwrap(), mount.path("copy").to_str().unwrap()]);
    assert_eq!(tree_summary(&mount.path("copy")), expected, "cp -a on the mount");
    // And back out: tar of the copy onto the host again.
    let back = pool.dir.path().join("back");
    std::fs::create_dir(&back).unwrap();
    bash_ok(
        &format!(r#"{tar} -C "$1" -cf - . | {tar} -C "$2" -xpf -"#),
        &[mount.path("copy").to_str().unwrap(), back.to_str().unwrap()],
    );
    assert_eq!(tree_summary(&back), expected, "tar from the mount back to the host");

    mount.unmount();
    check_clean(&pool.path);
    for dir in ["/untar", "/copy"] {
        assert!(cli_cat(&pool.path, &format!("{dir}/data.hard")) == noise(5, 50_000), "{dir}/data.hard");
        assert_eq!(cli_cat(&pool.path, &format!("{dir}/sub/private")), b"private\n");
        let (_, listing, _) = run_cli(&["ls", pool.path.to_str().unwrap(), dir]);
        assert_eq!(
            listing,
            "link            8 dangling -> sub/none\nfile        50000 data\nfile        50000 data.hard\nlink            4 data.sym -> data\ndir             0 sub\n",
            "ferrodax ls {dir}"
        );
        let (_, json, _) = run_cli(&["stat", pool.path.to_str().unwrap(), &format!("{dir}/data"), "--json"]);
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!((&json["nlink"], &json["mode"]), (&2.into(), &0o4755.into()), "{json}");
    }
}

/// Made by root in a directory (bash, $1): files and directories of root's with the modes each
/// refusal needs, a sticky world-writable directory with root's file in it, a set-group-ID
/// directory of group 1234, and set-user-ID/set-group-ID files others may write.
const PERMISSION_SETUP: &str = r#"cd "$1"
echo root > rootfile; chmod 644 rootfile
echo secret > secret; chmod 600 secret
echo world > world; chmod 666 world
mkdir rootdir private open sticky sgid
chmod 755 rootdir; chmod 700 private; chmod 777 open; chmod 1777 sticky
echo in > rootdir/inside
echo x > private/inner
echo s > sticky/roots; chmod 666 sticky/roots
chgrp 1234 sgid; chmod 2777 sgid
for f in suid trunc_suid; do echo s > $f; chmod 4777 $f; done
echo g > sgid_x; chmod 2777 sgid_x
echo g > sgid_nox; chmod 2767 sgid_nox
echo t > truncate_setid; chmod 6777 truncate_setid
"#;

/// Run as uid/gid 65534 without supplementary groups (python3 -I, $1 the directory): each step
/// prints its name and OK (or what it found), or the errno's name.
const PERMISSION_STEPS: &str = r#"
import errno, os, sys
os.chdir(sys.argv[1]); os.umask(0o022)
def step(name, f):
    try:
        r = f(); print(name, "OK" if r is None else r)
    except OSError as e:
        print(name, errno.errorcode[e.errno])
def owner_mode(p):
    s = os.lstat(p); return "%d:%d %o" % (s.st_uid, s.st_gid, s.st_mode & 0o7777)
def write_one(p):
    fd = os.open(p, os.O_WRONLY); os.write(fd, b"x"); os.close(fd)
step("write root's 0644 file", lambda: os.close(os.open("rootfile", os.O_WRONLY)))
step("truncate root's 0644 file", lambda: os.truncate("rootfile", 0))
step("create in root's 0755 dir", lambda: os.close(os.open("rootdir/new", os.O_CREAT | os.O_WRONLY, 0o666)))
step("mkdir in root's 0755 dir", lambda: os.mkdir("rootdir/newdir"))
step("unlink in root's 0755 dir", lambda: os.unlink("rootdir/inside"))
step("rename into root's 0755 dir", lambda: os.rename("world", "rootdir/world"))
step("chmod root's file", lambda: os.chmod("rootfile", 0o666))
step("chown root's file", lambda: os.chown("rootfile", 65534, 65534))
step("read root's 0600 file", lambda: os.close(os.open("secret", os.O_RDONLY)))
step("list root's 0700 dir", lambda: os.listdir("private"))
step("stat inside root's 0700 dir", lambda: owner_mode("private/inner"))
step("rmdir root's 0700 dir", lambda: os.rmdir("private"))
step("unlink root's file in a sticky dir", lambda: os.unlink("sticky/roots"))
step("rename root's file in a sticky dir", lambda: os.rename("sticky/roots", "sticky/mine"))
step("utime now on a 0666 file", lambda: os.utime("world"))
step("utime to a given time on a 0666 file", lambda: os.utime("world", (1, 1)))
step("utime now on root's 0644 file", lambda: os.utime("rootfile"))
step("setxattr on root's 0644 file", lambda: os.setxattr("rootfile", "user.k", b"v"))
step("setxattr on a 0666 file", lambda: os.setxattr("world", "user.k", b"v"))
step("link root's file", lambda: os.link("rootfile", "open/hard"))
step("create in a 0777 dir", lambda: os.close(os.open("open/mine", os.O_CREAT | os.O_WRONLY, 0o666)))
step("owner and mode of it", lambda: owner_mode("open/mine"))
step("mkdir in a 0777 dir", lambda: os.mkdir("open/mydir", 0o777))
step("owner and mode of that", lambda: owner_mode("open/mydir"))
step("symlink in a 0777 dir", lambda: os.symlink("mine", "open/sym"))
step("owner of the symlink", lambda: owner_mode("open/sym"))
step("chmod my file", lambda: os.chmod("open/mine", 0o600))
step("give my file to root", lambda: os.chown("open/mine", 0, 0))
step("give my file to a group not mine", lambda: os.chown("open/mine", -1, 1234))
step("create in a setgid dir of group 1234", lambda: os.close(os.open("sgid/mine", os.O_CREAT | os.O_WRONLY, 0o666)))
step("owner and mode of it", lambda: owner_mode("sgid/mine"))
step("mkdir in the setgid dir", lambda: os.mkdir("sgid/mydir", 0o777))
step("owner and mode of that", lambda: owner_mode("sgid/mydir"))
step("create in a sticky dir", lambda: os.close(os.open("sticky/mine", os.O_CREAT | os.O_WRONLY, 0o666)))
step("unlink my file in a sticky dir", lambda: os.unlink("sticky/mine"))
step("write a 4777 file", lambda: write_one("suid"))
step("its mode after", lambda: owner_mode("suid"))
step("open a 4777 file O_TRUNC", lambda: os.close(os.open("trunc_suid", os.O_WRONLY | os.O_TRUNC)))
step("its mode after", lambda: owner_mode("trunc_suid"))
step("truncate a 6777 file", lambda: os.truncate("truncate_setid", 1))
step("its mode after", lambda: owner_mode("truncate_setid"))
step("write a 2777 file", lambda: write_one("sgid_x"))
step("its mode after", lambda: owner_mode("sgid_x"))
step("write a 2767 file", lambda: write_one("sgid_nox"))
step("its mode after", lambda: owner_mode("sgid_nox"))
"#;

/// What Linux answers uid 65534 for each of PERMISSION_STEPS.
const PERMISSION_ANSWERS: &str = "\
write root's 0644 file EACCES
truncate root's 0644 file EACCES
create in root's 0755 dir EACCES
mkdir in root's 0755 dir EACCES
unlink in root's 0755 dir EACCES
rename into root's 0755 dir EACCES
chmod root's file EPERM
chown root's file EPERM
read root's 0600 file EACCES
list root's 0700 dir EACCES
stat inside root's 0700 dir EACCES
rmdir root's 0700 dir EACCES
unlink root's file in a sticky dir EPERM
rename root's file in a sticky dir EPERM
utime now on a 0666 file OK
utime to a given time on a 0666 file EPERM
utime now on root's 0644 file EACCES
setxattr on root's 0644 file EACCES
setxattr on a 0666 file OK
link root's file EPERM
create in a 0777 dir OK
owner and mode of it 65534:65534 644
mkdir in a 0777 dir OK
owner and mode of that 65534:65534 755
symlink in a 0777 dir OK
owner of the symlink 65534:65534 777
chmod my file OK
give my file to root EPERM
give my file to a group not mine EPERM
create in a setgid dir of group 1234 OK
owner and mode of it 65534:1234 644
mkdir in the setgid dir OK
owner and mode of that 65534:1234 2755
create in a sticky dir OK
unlink my file in a sticky dir OK
write a 4777 file OK
its mode after 0:0 777
open a 4777 file O_TRUNC OK
its mode after 0:0 777
truncate a 6777 file OK
its mode after 0:0 777
write a 2777 file OK
its mode after 0:0 777
write a 2767 file OK
its mode after 0:0 767
";

/// Where the mount answers differently from the kernel's own file systems, and why: the
/// kernel's FUSE client clears set-group-ID after a write only when group execute is set
/// (fuse_setattr), where tmpfs and XFS also clear it for a writer outside the file's group.
const PERMISSION_FUSE_DIFFERS: [(&str, &str); 1] = [("write a 2767 file", "its mode after 0:0 2767")];

#[test]
fn a_non_root_user_on_a_root_mount_is_refused_where_tmpfs_refuses_it_with_the_same_errnos_and_owns_what_it_makes(
) {
    let test = "permissions_as_nobody";
    let nobody = [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "/usr/bin/python3",
        "-I",
        "-c",
        PERMISSION_STEPS,
    ];
    // python3 from /usr/bin: a user's own (pyenv under /root) is out of nobody's reach.
    if !Path::new("/usr/bin/python3").exists() || !need(test, "setpriv", "util-linux") {
        skip(test, "no /usr/bin/python3 or no setpriv to run steps as uid 65534");
        return;
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        skip(test, "not root: only root mounts with allow_other and can act as uid 65534");
        return;
    }
    let pool = TestPool::new(POOL_SIZE);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(pool.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let Some(mount) = Mount::start(test, &pool, "mnt") else { return };
    let on_mount = mount.path("perm");
    // The same steps in a directory of the kernel's own file system beside the pool (tmpfs on
    // /dev/shm), so the expected answers are the kernel's, not ours.
    let on_kernel = pool.dir.path().join("kernel");
    let kernel_fs = run_ok("stat", &["-f", "-c", "%T", pool.dir.path().to_str().unwrap()]);
    let mut answers = Vec::new();
    for dir in [&on_mount, &on_kernel] {
        std::fs::create_dir(dir).unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        bash_ok(PERMISSION_SETUP, &[dir.to_str().unwrap()]);
        let mut args = nobody.to_vec();
        args.push(dir.to_str().unwrap());
        answers.push(run_ok("setpriv", &args));
    }
    let (mount_answers, kernel_answers) = (&answers[0], &answers[1]);
    eprintln!("{test}: compared with the kernel's {}", kernel_fs.trim());
    assert_eq!(kernel_answers, PERMISSION_ANSWERS, "the kernel's {} answers", kernel_fs.trim());
    // The mount answers as the kernel does, but where PERMISSION_FUSE_DIFFERS says.
    let mut expected: Vec<String> = PERMISSION_ANSWERS.lines().map(str::to_string).collect();
    for (after, answer) in PERMISSION_FUSE_DIFFERS {
        let at = expected.iter().position(|l| l.starts_with(after)).unwrap();
        expected[at + 1] = answer.to_string();
    }
    assert_eq!(mount_answers.lines().collect::<Vec<_>>(), expected, "the mount's answers:\n{mount_answers}");

    // What uid 65534 made is its own, as root sees it through the mount and as the pool keeps it.
    assert_eq!(
        stat_c("%u %g %U %a", &[&on_mount.join("open/mine"), &on_mount.join("open/mydir")]),
        "65534 65534 nobody 600\n65534 65534 nobody 755\n"
    );
    let pool_path = pool.path.to_str().unwrap();
    let (_, text, _) = run_cli(&["stat", pool_path, "/perm/open/mine"]);
    assert!(
        text.contains("Access: (0600/-rw-------)  Uid: (65534/  nobody)   Gid: (65534/ nogroup)"),
        "{text}"
    );
    mount.unmount();
    check_clean(&pool.path);
    for (path, uid, gid, mode) in [
        ("/perm/open/mine", 65534, 65534, 0o600),
        ("/perm/open/mydir", 65534, 65534, 0o755),
        ("/perm/open/sym", 65534, 65534, 0o777),
        ("/perm/sgid/mine", 65534, 1234, 0o644),
        ("/perm/sgid/mydir", 65534, 1234, 0o2755),
        ("/perm/suid", 0, 0, 0o777),
        ("/perm/rootfile", 0, 0, 0o644),
    ] {
        let (_, json, _) = run_cli(&["stat", pool_path, path, "--json"]);
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            (&json["uid"], &json["gid"], &json["mode"]),
            (&uid.into(), &gid.into(), &mode.into()),
            "{path}: {json}"
        );
    }
    assert_eq!(cli_cat(&pool.path, "/perm/rootfile"), b"root\n", "nobody's truncate was refused");
    assert_eq!(cli_cat(&pool.path, "/perm/suid"), b"x\n", "nobody's write went through");
}

#[test]
#[ignore = "library gap: extended attributes are reachable by path only (Fs::get_xattr, set_xattr, \
            list_xattrs, remove_xattr), so the mount answers ENOENT for a file that is unlinked but \
            still open; Linux answers through the descriptor. Needs File-level xattr calls (and their \
            pool server ops) for FuseFs to use through an open handle, as setattr does"]
fn xattrs_of_an_unlinked_open_file_work_through_its_descriptor() {
    let pool = TestPool::new(POOL_SIZE);
    let Some(mount) = Mount::start("xattrs_unlinked_open", &pool, "mnt") else { return };
    let file = std::fs::OpenOptions::new().write(true).create_new(true).open(mount.path("f")).unwrap();
    std::fs::remove_file(mount.path("f")).unwrap();
    use std::os::fd::AsRawFd;
    let name = CString::new("user.k").unwrap();
    let mut value = [0u8; 8];
    // SAFETY: fsetxattr/fgetxattr on an open descriptor with buffers of the lengths given.
    let (set, got) = unsafe {
        let set = libc::fsetxattr(file.as_raw_fd(), name.as_ptr(), b"v".as_ptr().cast(), 1, 0);
        let set = (set, if set < 0 { *libc::__errno_location() } else { 0 });
        (set, libc::fgetxattr(file.as_raw_fd(), name.as_ptr(), value.as_mut_ptr().cast(), value.len()))
    };
    assert_eq!(set, (0, 0), "fsetxattr on an unlinked open file");
    assert_eq!((got, value[0]), (1, b'v'), "fgetxattr on an unlinked open file");
    drop(file);
    mount.unmount();
}
