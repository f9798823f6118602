//! `ferrodax mount` through FUSE, with real processes: ordinary programs (cp, cat, mv, rm, ls,
//! stat, dd, python3's os and mmap modules) on the mount, the same files read through the pool
//! server by `ferrodax cat` while it is mounted, then unmounted, checked and read directly; the
//! errnos of what the mount does not support, and of xattr calls on a symlink itself (which never
//! reach its target); the ways a mount ends (umount, SIGINT, SIGTERM
//! with a file still open, --background); a mount that goes through a pool server already
//! running. Where FUSE cannot mount, each test prints SKIPPED and passes, unless
//! FERRODAX_REQUIRE_FUSE=1.

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
