//! Namespace rules a reviewer found broken once, each pinned by its own test on a memfd pool:
//! O_CREAT through a dangling symlink, an extended attribute name with NUL, set-id bits dropped by
//! another user's write, and "." after a file.

use ferrodax::fs::access::{as_caller, Credentials};
use ferrodax::{Fs, OpenOptions, Pool};

fn fresh() -> (Pool, Fs) {
    let pool = Pool::memfd(16 << 20).unwrap();
    let fs = Fs::format(&pool).unwrap();
    (pool, fs)
}

fn rw() -> OpenOptions {
    OpenOptions::new().read(true).write(true).create(true).clone()
}

#[test]
fn open_with_create_through_a_dangling_symlink_creates_what_it_points_at() {
    let (_pool, fs) = fresh();
    fs.create_dir("/d").unwrap();
    fs.symlink("target", "/d/link").unwrap();
    fs.open("/d/link", &rw()).unwrap().write_at(b"via the link", 0).unwrap();
    let mut buf = [0u8; 12];
    fs.open("/d/target", OpenOptions::new().read(true)).unwrap().read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"via the link");
    assert!(fs.check().is_clean());
}

#[test]
fn an_extended_attribute_name_with_nul_is_einval_and_the_pool_still_mounts() {
    let (pool, fs) = fresh();
    drop(fs.open("/f", &rw()).unwrap());
    let err = fs.set_xattr("/f", "user.a\0b", b"v", 0).unwrap_err();
    assert_eq!(err.errno(), libc::EINVAL, "{err}");
    drop(fs);
    let again = Fs::mount(&pool).unwrap();
    assert!(again.list_xattrs("/f").unwrap().is_empty());
    assert!(again.check().is_clean());
}

#[test]
fn a_write_by_another_user_drops_set_user_id_and_group_executable_set_group_id() {
    let (_pool, fs) = fresh();
    drop(fs.open("/f", &rw()).unwrap());
    fs.set_permissions("/f", 0o6777).unwrap();
    let alice = Credentials { uid: 1000, gid: 1000, groups: vec![] };
    as_caller(alice, || fs.open("/f", OpenOptions::new().write(true)).unwrap().write_at(b"x", 0)).unwrap();
    assert_eq!(fs.metadata("/f").unwrap().mode, 0o0777);
    // Root's write keeps them.
    fs.set_permissions("/f", 0o6777).unwrap();
    fs.open("/f", OpenOptions::new().write(true)).unwrap().write_at(b"y", 0).unwrap();
    assert_eq!(fs.metadata("/f").unwrap().mode, 0o6777);
}

#[test]
fn a_dot_after_a_file_is_enotdir_and_after_a_symlink_to_a_directory_is_that_directory() {
    let (_pool, fs) = fresh();
    drop(fs.open("/f", &rw()).unwrap());
    fs.create_dir("/d").unwrap();
    fs.symlink("d", "/l").unwrap();
    assert_eq!(fs.metadata("/f/.").unwrap_err().errno(), libc::ENOTDIR);
    let d = fs.metadata("/d").unwrap().ino;
    assert_eq!(fs.symlink_metadata("/l/.").unwrap().ino, d);
}
