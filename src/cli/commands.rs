//! The small commands: mkfs, mkdir, rm, mv, cat, put, cp, owners, check.
//!
//! `put` and `cp` write under a temporary name in the target's directory and rename it over the
//! target once complete, so a failed copy changes nothing.
//!
//! Owns what their arguments mean, their output and their exit statuses: 0 on success, 1 on
//! failure; `check` exits 1 when it finds problems and 2 when the pool cannot be mounted at all.
//! Errors print as "ferrodax: <context>: <strerror text>", followed by the library's detail when
//! it has one (the damaged structure, the rule that was broken). Must never reach below the
//! library API, and must never write to a pool in a command that only looks (cat, owners, check
//! mount read-only).

use ferrodax::format::record::InodeKind;
use ferrodax::{BlockOwner, CheckReport, Error, File, Fs, OpenOptions, OwnerKind, Pool, ShareState};
use std::fmt::Display;
use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

/// The program name that starts every error message.
const PROGNAME: &str = "ferrodax";
/// Bytes moved per read or write by cat, put and cp (each write is one atomic commit).
const COPY_CHUNK: usize = 1 << 20;
/// The file system block size.
const BLOCK_SIZE: u64 = 4096;

/// The strerror text of `e`, followed by the library's detail when the message has one
/// ("Structure needs cleaning: no valid superblock: ..."); just the strerror text when the
/// message only repeats a path.
pub(super) fn describe(e: &Error) -> String {
    if let Some(text) = describe_unusable_pool_file(e) {
        return text;
    }
    let strerror = e.strerror();
    let text = e.to_string();
    if text.starts_with(&strerror) {
        text
    } else {
        strerror
    }
}

/// A pool file that cannot be a pool, said plainly with the next command, or `None` for any other
/// error. Opening a pool reports its own findings about the file (empty, not a whole number of
/// blocks, not a regular file or device) as an error without an OS errno, whose errno would read
/// "Input/output error"; this looks at the file it names and says what is wrong instead, as
/// "Invalid argument" (what mount(2) says of a file system it cannot recognise).
fn describe_unusable_pool_file(e: &Error) -> Option<String> {
    let Error::Os { context: pool, source } = e else { return None };
    let about_the_file =
        matches!(source.kind(), std::io::ErrorKind::InvalidData | std::io::ErrorKind::InvalidInput);
    if source.raw_os_error().is_some() || !about_the_file {
        return None;
    }
    let meta = std::fs::metadata(pool).ok()?;
    let invalid = ferrodax::error::strerror(libc::EINVAL);
    let make = format!("`ferrodax mkfs {pool} --size 1g --force`");
    let text = match meta {
        meta if meta.is_file() && meta.len() == 0 => {
            format!("{invalid}: pool file is empty: not a ferrodax pool (make one there with {make})")
        }
        meta if meta.is_file() && meta.len() % BLOCK_SIZE != 0 => format!(
            "{invalid}: pool file is {} bytes, {} short of a whole number of {BLOCK_SIZE}-byte blocks: not a \
             ferrodax pool, or one cut short (restore it from a copy, or make a new one there with {make})",
            meta.len(),
            BLOCK_SIZE - meta.len() % BLOCK_SIZE
        ),
        _ => format!("{invalid}: {source}"),
    };
    Some(text)
}

/// Prints "ferrodax: <context>: <error>" and returns exit status 1.
pub(super) fn fail(context: impl Display, e: &Error) -> i32 {
    eprintln!("{PROGNAME}: {context}: {}", describe(e));
    1
}

/// Opens and mounts a pool, printing why not on failure. A command that only looks opens the pool
/// read-only under a shared lock (the pool file need only be readable).
/// When a pool server runs for the pool, the command goes through it instead.
fn mount(pool: &Path, read_only: bool) -> Result<Fs, i32> {
    super::open_pool(pool, read_only).map_err(|e| fail(format_args!("mount {}", pool.display()), &e))
}

/// Runs `body` on a pool mounted lazily ([`super::open_pool_lazily`]): for a command that opens
/// and reads a file and calls nothing else.
pub(super) fn with_fs_lazily(pool: &Path, body: impl FnOnce(&Fs) -> Result<(), i32>) -> i32 {
    let mounted =
        super::open_pool_lazily(pool).map_err(|e| fail(format_args!("mount {}", pool.display()), &e));
    match mounted.and_then(|fs| body(&fs)) {
        Ok(()) => 0,
        Err(status) => status,
    }
}

/// Runs `body` on a mounted pool; its error becomes the exit status.
pub(super) fn with_fs(pool: &Path, read_only: bool, body: impl FnOnce(&Fs) -> Result<(), i32>) -> i32 {
    match mount(pool, read_only).and_then(|fs| body(&fs)) {
        Ok(()) => 0,
        Err(status) => status,
    }
}

/// `dir` + "/" + `name`.
pub(super) fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// Open for reading.
pub(super) fn read_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true);
    options
}

fn replace_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    options
}

/// `ferrodax mkfs POOL --size N [--force] [--sparse]`: a new pool file, every byte allocated on
/// the host file system (ENOSPC now rather than SIGBUS later) unless --sparse, formatted. An
/// existing file is only replaced with --force; an existing /dev/dax device is formatted in place
/// with --force, its first N bytes only (the superblock's total blocks say so; N larger than the
/// device is refused).
pub fn mkfs(pool: &Path, size: u64, force: bool, sparse: bool) -> i32 {
    if size == 0 {
        let e = Error::Invalid("--size 0: a pool cannot be empty (for example --size 1g)".into());
        return fail(format_args!("mkfs {}", pool.display()), &e);
    }
    let create =
        |path: &Path| if sparse { Pool::create(path, size) } else { Pool::create_allocated(path, size) };
    let existing = std::fs::metadata(pool).ok();
    if existing.is_some() && !force {
        eprintln!("{PROGNAME}: mkfs {}: File exists (use --force to overwrite it)", pool.display());
        return 1;
    }
    if existing.as_ref().is_some_and(|m| m.is_file()) {
        // Never pull a pool out from under its owner (a server, a running command).
        if let Err(e @ Error::Busy(_)) = Pool::open(pool) {
            return fail(format_args!("mkfs {}", pool.display()), &e);
        }
    }
    let created = match &existing {
        Some(meta) if meta.file_type().is_char_device() => Pool::open_sized(pool, size),
        Some(_) => match std::fs::remove_file(pool) {
            Ok(()) => create(pool),
            Err(e) => return fail(format_args!("mkfs {}", pool.display()), &Error::os("remove", e)),
        },
        None => create(pool),
    };
    let made_file = !existing.as_ref().is_some_and(|m| m.file_type().is_char_device());
    let formatted = created.and_then(|p| Fs::format(&p).map(|fs| (p, fs)));
    if formatted.is_err() && made_file {
        // Leave no half-made pool behind (the file did not exist, or --force replaced it).
        let _ = std::fs::remove_file(pool);
    }
    match formatted {
        Ok((p, fs)) => {
            let stats = fs.stats();
            println!(
                "{}: {} bytes, {} blocks of {BLOCK_SIZE} bytes, {} free",
                pool.display(),
                p.len(),
                stats.total_blocks,
                stats.free_blocks
            );
            0
        }
        Err(e) => fail(format_args!("mkfs {}", pool.display()), &e),
    }
}

/// `ferrodax mkdir POOL PATH`.
pub fn mkdir(pool: &Path, path: &str) -> i32 {
    with_fs(pool, false, |fs| fs.create_dir(path).map_err(|e| fail(format_args!("mkdir {path}"), &e)))
}

/// `ferrodax rm POOL PATH`: removes a file, a symlink (never what it points at) or an empty
/// directory.
pub fn rm(pool: &Path, path: &str) -> i32 {
    with_fs(pool, false, |fs| {
        let removed = match fs.symlink_metadata(path) {
            Ok(st) if st.kind == InodeKind::Dir => fs.remove_dir(path),
            Ok(_) => fs.remove_file(path),
            Err(e) => Err(e),
        };
        removed.map_err(|e| fail(format_args!("rm {path}"), &e))
    })
}

/// How `mv` treats an existing destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MvMode {
    /// rename(2): replace it, or move into it when it is a directory (as mv(1)).
    Replace,
    /// Never replace it: `renameat2(RENAME_NOREPLACE)`, EEXIST when it exists (moving into a
    /// directory as mv(1) does, where the name inside must be free).
    NoClobber,
    /// Swap the two names: `renameat2(RENAME_EXCHANGE)`; both must exist.
    Exchange,
}

/// `ferrodax mv [-n|--exchange] [-T] POOL FROM TO`: renames FROM to TO; an existing directory TO
/// receives FROM under its last name (as mv(1); not with -T or --exchange, which name TO itself).
pub fn mv(pool: &Path, from: &str, to: &str, mode: MvMode, no_target_directory: bool) -> i32 {
    use ferrodax::fs::namespace::{RENAME_EXCHANGE, RENAME_NOREPLACE};
    with_fs(pool, false, |fs| {
        let into_dir = mode != MvMode::Exchange
            && !no_target_directory
            && fs.metadata(to).is_ok_and(|st| st.kind == InodeKind::Dir);
        let target = if into_dir {
            join(to, from.rsplit('/').find(|c| !c.is_empty()).unwrap_or(from))
        } else {
            to.to_string()
        };
        let flags = match mode {
            MvMode::Replace => 0,
            MvMode::NoClobber => RENAME_NOREPLACE,
            MvMode::Exchange => RENAME_EXCHANGE,
        };
        fs.rename_with_flags(from, &target, flags).map_err(|e| fail(format_args!("mv {from} {to}"), &e))
    })
}

/// Copies `src` (from offset 0 to EOF) into `dst` in chunks; returns the bytes copied.
fn copy_bytes(src: &File, dst: &File) -> Result<u64, Error> {
    let mut buffer = vec![0u8; COPY_CHUNK];
    let mut offset = 0u64;
    let bar = super::progress::bytes_bar(src.metadata()?.size, "copying");
    loop {
        let n = src.read_at(&mut buffer, offset)?;
        if n == 0 {
            bar.finish_and_clear();
            return Ok(offset);
        }
        dst.write_at(&buffer[..n], offset)?;
        offset += n as u64;
        bar.inc(n as u64);
    }
}

/// `ferrodax cat POOL PATH`: the file's bytes on standard output.
pub fn cat(pool: &Path, path: &str) -> i32 {
    with_fs_lazily(pool, |fs| {
        let context = format!("cat {path}");
        let file = fs.open(path, &read_options()).map_err(|e| fail(&context, &e))?;
        let mut buffer = vec![0u8; COPY_CHUNK];
        let mut out = std::io::stdout().lock();
        let mut offset = 0u64;
        loop {
            let n = file.read_at(&mut buffer, offset).map_err(|e| fail(&context, &e))?;
            if n == 0 {
                break;
            }
            if let Err(e) = out.write_all(&buffer[..n]) {
                // A closed pipe (`| head`) ends the output quietly.
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Err(1);
                }
                return Err(fail(&context, &Error::os("stdout", e)));
            }
            offset += n as u64;
        }
        out.flush().map_err(|e| fail(&context, &Error::os("stdout", e)))
    })
}

/// The longest name part a temporary name keeps, so that ".NAME.ferrodax-tmp-PID" stays within
/// the 255-byte name limit.
const TEMP_NAME_KEEPS: usize = 200;

/// A file that `put` or `cp` writes under a temporary name in its target's directory
/// (".NAME.ferrodax-tmp-PID") and renames over the target only once it is complete, so a failed
/// copy leaves nothing behind and never damages an existing target. Dropped without
/// [`PendingFile::commit`], it removes the temporary file.
struct PendingFile<'a> {
    fs: &'a Fs,
    temp: String,
    target: String,
    file: Option<File>,
}

impl<'a> PendingFile<'a> {
    /// Creates the temporary file for `target` (an empty one replaces a leftover of the same name).
    fn create(fs: &'a Fs, target: &str) -> Result<PendingFile<'a>, Error> {
        if fs.metadata(target).is_ok_and(|st| st.kind == InodeKind::Dir) {
            return Err(Error::IsDir(target.into()));
        }
        let (dir, name) = match target.rfind('/') {
            Some(i) => (&target[..=i], &target[i + 1..]),
            None => ("", target),
        };
        let mut keep = name.len().min(TEMP_NAME_KEEPS);
        while !name.is_char_boundary(keep) {
            keep -= 1;
        }
        let temp = format!("{dir}.{}.ferrodax-tmp-{}", &name[..keep], std::process::id());
        let file = fs.open(&temp, &replace_options())?;
        Ok(PendingFile { fs, temp, target: target.into(), file: Some(file) })
    }

    /// The temporary file, open for writing.
    fn file(&self) -> &File {
        self.file.as_ref().expect("open until commit or drop")
    }

    /// Renames the complete temporary file over the target.
    fn commit(mut self) -> Result<(), Error> {
        drop(self.file.take());
        self.fs.rename(&self.temp, &self.target)?;
        self.temp.clear();
        Ok(())
    }
}

impl Drop for PendingFile<'_> {
    fn drop(&mut self) {
        drop(self.file.take());
        if !self.temp.is_empty() {
            let _ = self.fs.remove_file(&self.temp);
        }
    }
}

/// The message for a copy of `bytes` bytes that ran out of space, written after the partial copy
/// was removed: how much the pool can take, not counting the blocks it keeps back for checkpoints.
fn no_space(fs: &Fs, bytes: u64) -> Error {
    let stats = fs.stats();
    Error::NoSpace(format!(
        "the copy needs {bytes} bytes ({} blocks); the pool can take {} bytes ({} blocks: {} free, less {} \
         kept back for checkpoints and new extents)",
        bytes.div_ceil(BLOCK_SIZE),
        stats.usable_blocks * BLOCK_SIZE,
        stats.usable_blocks,
        stats.free_blocks,
        stats.free_blocks - stats.usable_blocks
    ))
}

/// Copies everything `source` reads into `file` in full chunks (host reads may be short; each
/// write is one commit).
fn copy_from_host(source: &mut std::fs::File, file: &File) -> Result<(), CopyError> {
    let mut buffer = vec![0u8; COPY_CHUNK];
    let mut offset = 0u64;
    let bar = super::progress::bytes_bar(source.metadata().map_or(0, |m| m.len()), "put");
    loop {
        let mut filled = 0;
        while filled < buffer.len() {
            match source.read(&mut buffer[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CopyError::Host(Error::os("read", e))),
            }
        }
        if filled == 0 {
            bar.finish_and_clear();
            return Ok(());
        }
        file.write_at(&buffer[..filled], offset).map_err(CopyError::Pool)?;
        offset += filled as u64;
        bar.inc(filled as u64);
    }
}

/// Which side of a host-to-pool copy failed.
enum CopyError {
    /// Reading the host file.
    Host(Error),
    /// Writing into the pool.
    Pool(Error),
}

/// `ferrodax put POOL HOSTFILE PATH`: copies a host file into the pool, replacing PATH only once
/// the copy is complete; a failed put leaves PATH as it was and nothing else behind.
pub fn put(pool: &Path, host: &Path, path: &str) -> i32 {
    let host_context = format!("put {}", host.display());
    let mut source = match std::fs::File::open(host) {
        Ok(f) => f,
        Err(e) => return fail(&host_context, &Error::os(host.display(), e)),
    };
    let host_size = match source.metadata() {
        Ok(meta) if meta.is_dir() => return fail(&host_context, &Error::IsDir(host.display().to_string())),
        Ok(meta) => meta.len(),
        Err(e) => return fail(&host_context, &Error::os(host.display(), e)),
    };
    with_fs(pool, false, |fs| {
        let context = format!("put {path}");
        let pending = PendingFile::create(fs, path).map_err(|e| fail(&context, &e))?;
        match copy_from_host(&mut source, pending.file()) {
            Ok(()) => pending.commit().map_err(|e| fail(&context, &e)),
            Err(CopyError::Host(e)) => {
                drop(pending);
                Err(fail(&host_context, &e))
            }
            Err(CopyError::Pool(e)) => {
                drop(pending);
                let e = if e.errno() == libc::ENOSPC { no_space(fs, host_size) } else { e };
                Err(fail(&context, &e))
            }
        }
    })
}

/// `ferrodax cp [--reflink] POOL SRC DST`: copies the bytes of SRC to DST (replacing it; into it
/// when DST is a directory), or with --reflink shares SRC's blocks instead (a whole-file clone).
/// The copy is made under a temporary name and renamed over DST once complete: a failed cp
/// leaves DST as it was and nothing else behind.
pub fn cp(pool: &Path, src: &str, dst: &str, reflink: bool) -> i32 {
    with_fs(pool, false, |fs| {
        let context = format!("cp {src} {dst}");
        let source = fs.open(src, &read_options()).map_err(|e| fail(&context, &e))?;
        let source_stat = source.metadata().map_err(|e| fail(&context, &e))?;
        if source_stat.kind == InodeKind::Dir {
            return Err(fail(&context, &Error::IsDir(src.into())));
        }
        let mut target = dst.to_string();
        if let Ok(st) = fs.metadata(dst) {
            if st.kind == InodeKind::Dir {
                let name = src.rsplit('/').find(|c| !c.is_empty()).unwrap_or(src);
                target = join(dst, name);
            }
        }
        if fs.metadata(&target).is_ok_and(|st| st.ino == source_stat.ino) {
            return Err(fail(&context, &Error::Invalid(format!("{src} and {target} are the same file"))));
        }
        let pending = PendingFile::create(fs, &target).map_err(|e| fail(&context, &e))?;
        let copied = if reflink {
            fs.reflink(&source, 0, pending.file(), 0, 0).map(|_| ())
        } else {
            copy_bytes(&source, pending.file()).map(|_| ())
        };
        match copied {
            Ok(()) => pending.commit().map_err(|e| fail(&context, &e)),
            Err(e) => {
                drop(pending);
                let e =
                    if e.errno() == libc::ENOSPC && !reflink { no_space(fs, source_stat.size) } else { e };
                Err(fail(&context, &e))
            }
        }
    })
}

/// One `owners` text line.
fn owner_line(owner: &BlockOwner) -> String {
    let range = format!("pool [{}..{})", owner.pool_offset, owner.pool_offset + owner.length);
    match &owner.owner {
        OwnerKind::File { ino, path, file_offset, refcount } => {
            let path = path.as_deref().unwrap_or("(unlinked, still open)");
            let sharing = if *refcount > 1 { format!("shared by {refcount}") } else { "private".to_string() };
            format!("{range}: file {path} (ino {ino}) offset {file_offset} len {} {sharing}", owner.length)
        }
        OwnerKind::Metadata { structure } => format!("{range}: metadata: {structure}"),
    }
}

/// `ferrodax owners POOL OFFSET [LEN] [--json]`: every owner of any byte of the pool range, from
/// the reverse map. Text: one line per owner; JSON: the list of owners.
pub fn owners(pool: &Path, offset: u64, len: u64, json: bool) -> i32 {
    with_fs(pool, true, |fs| {
        let pool_len = fs.stats().total_blocks * BLOCK_SIZE;
        if offset >= pool_len {
            let e = Error::Invalid(format!("offset {offset} is past the end of the pool ({pool_len} bytes)"));
            return Err(fail(format_args!("owners {offset}"), &e));
        }
        let found = fs.owners(offset, len);
        if json {
            let text = serde_json::to_string_pretty(&found).expect("owners serialize");
            println!("{text}");
            return Ok(());
        }
        if found.is_empty() {
            let first = offset / BLOCK_SIZE * BLOCK_SIZE;
            let end = (offset + len.max(1)).div_ceil(BLOCK_SIZE) * BLOCK_SIZE;
            let what = match fs.share_state(offset / BLOCK_SIZE) {
                ShareState::Quarantined => "quarantined (bad memory, never used again)",
                _ => "free",
            };
            println!("pool [{first}..{end}): {what}");
        }
        for owner in &found {
            println!("{}", owner_line(owner));
        }
        Ok(())
    })
}

/// The check report as text. A read-only mount repairs nothing, so what the core lists as
/// "repaired" (for example a damaged superblock copy) is still damaged on the media: it is shown as
/// needing repair, with the command that repairs it (`check --repair`, whose read-write mount
/// does). After `check --repair` those items were repaired, and are shown so.
fn check_text(pool: &Path, report: &CheckReport, repaired_now: bool) -> String {
    let mut text = String::new();
    for item in &report.repaired {
        if repaired_now {
            text.push_str(&format!("repaired: {item}\n"));
        } else {
            text.push_str(&format!(
                "needs repair (`ferrodax check --repair {}` fixes it): {item}\n",
                pool.display()
            ));
        }
    }
    for problem in &report.problems {
        text.push_str(&format!("problem: {}: {}\n", problem.structure, problem.detail));
    }
    let verdict = if !report.problems.is_empty() {
        "NOT CLEAN"
    } else if !report.repaired.is_empty() && !repaired_now {
        "NEEDS REPAIR"
    } else if !report.repaired.is_empty() {
        "clean after repair"
    } else {
        "clean"
    };
    text.push_str(&format!(
        "{verdict}: {} inodes, {} extents, {} data blocks ({} shared), {} metadata, {} free, {} quarantined",
        report.inodes,
        report.extents,
        report.data_blocks,
        report.shared_blocks,
        report.metadata_blocks,
        report.free_blocks,
        report.quarantined_blocks
    ));
    text
}

/// `ferrodax check POOL [--json] [--repair]`: mounts read-only (so nothing is repaired behind the
/// check's back) and runs fsck. With --repair it mounts read-write instead, which repairs what a
/// mount repairs (a damaged copy of a superblock, checkpoint block or log record is rewritten from
/// the other), and a pool that does not mount at all is rebuilt from what is readable
/// ([`Fs::repair`](ferrodax::Fs::repair)), listing what was lost; then it checks. Exit 0 clean (or
/// clean after a repair that lost nothing), 1 problems found, repairs pending or something lost,
/// 2 the pool cannot be mounted.
pub fn check(pool: &Path, json: bool, repair: bool) -> i32 {
    let mut lost = Vec::new();
    let mut mounted = super::open_pool(pool, !repair);
    if repair {
        if let Err(Error::Corrupt(why)) = &mounted {
            eprintln!(
                "{PROGNAME}: check {}: does not mount ({why}); rebuilding it from what is readable",
                pool.display()
            );
            match Pool::open(pool).and_then(|p| Fs::repair(&p)) {
                Ok(notes) => {
                    lost = notes.lost;
                    mounted = super::open_pool(pool, false);
                }
                Err(e) => mounted = Err(e),
            }
        }
    }
    let fs = match mounted {
        Ok(fs) => fs,
        Err(e) => {
            let message = format!("{PROGNAME}: check {}: cannot mount: {}", pool.display(), describe(&e));
            if json {
                let value = serde_json::json!({ "mounted": false, "clean": false, "error": message });
                println!("{value}");
            }
            eprintln!("{message}");
            return 2;
        }
    };
    let checking = super::progress::spinner("checking the pool");
    let report = fs.check();
    checking.finish_and_clear();
    if json {
        let mut value = serde_json::to_value(&report).expect("check report serializes");
        value["lost_in_repair"] = serde_json::json!(lost);
        println!("{}", serde_json::to_string_pretty(&value).expect("check report serializes"));
    } else {
        for item in &lost {
            println!("lost in repair: {item}");
        }
        println!("{}", check_text(pool, &report, repair));
    }
    i32::from(!report.is_clean() || (!report.repaired.is_empty() && !repair) || !lost.is_empty())
}

/// `ferrodax poison --hardware POOL OFFSET [LEN]`: a real media error (see
/// `ferrodax::memfail::hardware::inject`); refused, saying why, off persistent memory or without
/// root. Does not mount the pool: the kernel's signals and the device's list tell ferrodax.
pub fn poison_hardware(pool: &Path, offset: u64, len: u64, json: bool) -> i32 {
    match ferrodax::memfail::hardware::inject(pool, offset, len) {
        Ok(done) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&done).expect("injection serializes"));
            } else {
                print!("{done}");
            }
            0
        }
        Err(e) => fail(format_args!("poison --hardware {}", pool.display()), &e),
    }
}

/// The pool ranges of a bad-block list in the sectors of the device the pool sits on.
fn device_list_ranges(
    pool: &Path,
    list: &Path,
    pool_len: u64,
) -> Result<Vec<ferrodax::memfail::badblocks::BadRange>, Error> {
    use ferrodax::memfail::hardware;
    let file = std::fs::File::open(pool).map_err(|e| Error::os(pool.display(), e))?;
    let medium = hardware::medium_of_fd(std::os::fd::AsRawFd::as_raw_fd(&file), Path::new(hardware::SYSFS))
        .map_err(|e| Error::os("finding the pool's device", e))?
        .ok_or_else(|| {
            Error::Invalid(format!(
                "{} is a device's list, but {} is not on a device with a bad-block list",
                list.display(),
                pool.display()
            ))
        })?;
    hardware::ranges_from_list(&medium, list, pool_len)
}

/// `ferrodax badblocks POOL [--import FILE [--device]]`: lists the recorded bad blocks in the pmem
/// sysfs badblocks format ("first_sector count", 512-byte sectors of the pool); with --import,
/// first records every range of a list in that format. A list of the device itself (under /sys,
/// or --device) is in the device's sectors: they are translated to pool offsets (the pool file's
/// physical start from FIEMAP and its partition's start, or a /dev/dax instance's offset in its
/// region), and sectors outside the pool are left out.
pub fn badblocks(pool: &Path, import: Option<&Path>, device: bool) -> i32 {
    with_fs(pool, import.is_none(), |fs| {
        if let Some(list) = import {
            let under_sys = std::fs::canonicalize(list).is_ok_and(|p| p.starts_with("/sys"));
            let ranges = if device || under_sys {
                let pool_len = fs.stats().total_blocks * BLOCK_SIZE;
                device_list_ranges(pool, list, pool_len).map_err(|e| fail(list.display(), &e))?
            } else {
                let text = std::fs::read_to_string(list)
                    .map_err(|e| fail(list.display(), &Error::os("reading the badblocks list", e)))?;
                ferrodax::memfail::badblocks::parse(&text, &list.display().to_string())
                    .map_err(|e| fail(list.display(), &e))?
            };
            for r in ranges {
                let report = fs
                    .memory_failure(r.offset, r.len, ferrodax::memfail::FailureFlags::default())
                    .map_err(|e| fail(format_args!("badblocks {}", r.offset), &e))?;
                eprint!("{report}");
            }
        }
        print!("{}", ferrodax::memfail::badblocks::format(&fs.bad_blocks()));
        Ok(())
    })
}
