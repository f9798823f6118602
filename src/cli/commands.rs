//! The small commands: mkfs, ls, mkdir, rm, mv, cat, put, cp, owners, check.

use std::path::Path;

fn todo(name: &str) -> i32 {
    eprintln!("{name}: not implemented yet");
    1
}

/// `ferrodax mkfs`.
pub fn mkfs(_pool: &Path, _size: u64, _force: bool) -> i32 {
    todo("mkfs")
}
/// `ferrodax ls`.
pub fn ls(_pool: &Path, _path: &str) -> i32 {
    todo("ls")
}
/// `ferrodax mkdir`.
pub fn mkdir(_pool: &Path, _path: &str) -> i32 {
    todo("mkdir")
}
/// `ferrodax rm`.
pub fn rm(_pool: &Path, _path: &str) -> i32 {
    todo("rm")
}
/// `ferrodax mv`.
pub fn mv(_pool: &Path, _from: &str, _to: &str) -> i32 {
    todo("mv")
}
/// `ferrodax cat`.
pub fn cat(_pool: &Path, _path: &str) -> i32 {
    todo("cat")
}
/// `ferrodax put`.
pub fn put(_pool: &Path, _host: &Path, _path: &str) -> i32 {
    todo("put")
}
/// `ferrodax cp`.
pub fn cp(_pool: &Path, _src: &str, _dst: &str, _reflink: bool) -> i32 {
    todo("cp")
}
/// `ferrodax owners`.
pub fn owners(_pool: &Path, _offset: u64, _len: u64, _json: bool) -> i32 {
    todo("owners")
}
/// `ferrodax check`.
pub fn check(_pool: &Path, _json: bool) -> i32 {
    todo("check")
}
