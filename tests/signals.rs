//! Guards the signal handling that copy-on-write faults and memory failure rely on (issue "Real
//! hardware", item 3): ferrodax's SIGSEGV/SIGBUS handlers pass every signal that is not theirs to
//! the disposition that was there before — an application's handler (SA_SIGINFO or not), SIG_IGN
//! (ignored when asynchronous), SIG_DFL (the default action really happens) — and never lose
//! their own place, so a later copy-on-write fault still works; an application handler installed
//! after ferrodax that chains to the previous one keeps faults working; a copy-on-write fault
//! that cannot get a block prints one line naming the file and offset and raises SIGBUS with
//! BUS_ADRERR, as the kernel does.
//!
//! Every scenario runs in a child process (this test binary, re-executed with
//! FERRODAX_SIGNALS_CHILD naming the scenario), because it changes process-wide signal state
//! and some end the process on purpose.

use ferrodax::dax::MapAccess;
use ferrodax::{Fs, OpenOptions, Pool};
use std::process::Command;
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

const CHILD: &str = "FERRODAX_SIGNALS_CHILD";

static SEGV_SEEN: AtomicUsize = AtomicUsize::new(0);
static BUS_SEEN: AtomicUsize = AtomicUsize::new(0);
static BUS_CODE: AtomicI32 = AtomicI32::new(0);
static BUS_ADDR: AtomicUsize = AtomicUsize::new(0);

/// The application's own SIGSEGV handler: counts.
extern "C" fn app_segv(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    SEGV_SEEN.fetch_add(1, Ordering::SeqCst);
}

/// The application's own SIGBUS handler: counts and keeps the code and address.
extern "C" fn app_bus(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    BUS_CODE.store(code, Ordering::SeqCst);
    BUS_ADDR.store(addr, Ordering::SeqCst);
    BUS_SEEN.fetch_add(1, Ordering::SeqCst);
}

/// An application SIGBUS handler that reports the signal on stdout and ends the process.
extern "C" fn app_bus_report_and_exit(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: as above; formatting into a stack buffer and write(2) + _exit are what we need here.
    unsafe {
        let line = format!("SIGBUS code={} addr={:#x}\n", (*info).si_code, (*info).si_addr() as usize);
        libc::write(1, line.as_ptr().cast(), line.len());
        libc::_exit(42);
    }
}

type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// Installs an SA_SIGINFO handler (or SIG_IGN/SIG_DFL with `raw`), returning the previous action.
fn set_action(signal: libc::c_int, handler: Option<Handler>, raw: usize) -> libc::sigaction {
    // SAFETY: plain sigaction calls with zeroed, then filled, structures.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        match handler {
            Some(h) => {
                action.sa_sigaction = h as *const () as usize;
                action.sa_flags = libc::SA_SIGINFO;
            }
            None => action.sa_sigaction = raw,
        }
        libc::sigemptyset(&mut action.sa_mask);
        let mut old: libc::sigaction = std::mem::zeroed();
        assert_eq!(libc::sigaction(signal, &action, &mut old), 0);
        old
    }
}

/// Queues `signal` with `code` at `addr` to this thread, as the kernel would send it.
fn queue_signal(signal: i32, code: i32, addr: usize) {
    ferrodax::dax::mce::queue_to_self_signal(signal, code, addr).expect("rt_tgsigqueueinfo");
}

fn rw() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true);
    o
}

/// A pool with /src (64 KiB of 0x61) and /clone, its reflink, mapped read-write: stores into the
/// view of /clone fault and copy. Returns the fs, the clone and its view.
fn shared_view(pool_size: u64) -> (Fs, ferrodax::File, ferrodax::api::Mapping) {
    shared_view_with(pool_size, MapAccess::ReadWrite)
}

/// [`shared_view`] with the view of /clone made with `access`.
fn shared_view_with(pool_size: u64, access: MapAccess) -> (Fs, ferrodax::File, ferrodax::api::Mapping) {
    let fs = Fs::format(&Pool::memfd(pool_size).unwrap()).unwrap();
    let src = fs.open("/src", &rw()).unwrap();
    src.write_at(&[0x61; 65536], 0).unwrap();
    let clone = fs.open("/clone", &rw()).unwrap();
    fs.reflink(&src, 0, &clone, 0, 0).unwrap();
    let view = clone.map(0, 65536, access).unwrap();
    (fs, clone, view)
}

/// A store fault into a shared page copies it: the clone changes, the source does not.
fn cow_store_works(fs: &Fs, clone: &ferrodax::File, view: &ferrodax::api::Mapping, page: usize) {
    view.store_plain(page * 4096 + 10, b"stored").unwrap();
    let mut buf = [0u8; 6];
    clone.read_at(&mut buf, (page * 4096 + 10) as u64).unwrap();
    assert_eq!(&buf, b"stored");
    let src = fs.open("/src", &rw()).unwrap();
    src.read_at(&mut buf, (page * 4096 + 10) as u64).unwrap();
    assert_eq!(buf, [0x61; 6], "the source file changed");
    assert!(fs.check().is_clean());
}

/// Gives this thread an alternate signal stack of one page (or the least the kernel allows, if
/// more), with an inaccessible page below it: smaller than the 8 KiB Rust gives every thread, and
/// smaller than what a copy-on-write fault or a memory failure needs (6-7 KiB measured), so a
/// handler that ran on it would die of SIGSEGV instead of silently writing past it.
fn small_alternate_signal_stack() {
    const GUARD: usize = 4096;
    // SAFETY: getauxval reads the auxiliary vector; 0 when the kernel does not give the entry.
    let least = unsafe { libc::getauxval(libc::AT_MINSIGSTKSZ) } as usize;
    let size = least.max(libc::MINSIGSTKSZ).next_multiple_of(4096);
    // SAFETY: a fresh anonymous mapping, its lowest page made inaccessible, the rest handed to
    // sigaltstack for this thread; it is never unmapped (the process ends first).
    unsafe {
        let base = libc::mmap(
            std::ptr::null_mut(),
            GUARD + size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        assert_ne!(base, libc::MAP_FAILED);
        assert_eq!(libc::mprotect(base, GUARD, libc::PROT_NONE), 0);
        let stack = libc::stack_t { ss_sp: base.cast::<u8>().add(GUARD).cast(), ss_flags: 0, ss_size: size };
        assert_eq!(libc::sigaltstack(&stack, std::ptr::null_mut()), 0);
    }
}

/// Runs `scenario` in a child process; returns its exit status, stdout and stderr.
fn run_child(scenario: &str) -> (std::process::ExitStatus, String, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD, scenario)
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The child side: runs the scenario named in the environment (does nothing in a normal run).
#[test]
fn child_entry() {
    let Ok(scenario) = std::env::var(CHILD) else { return };
    match scenario.as_str() {
        "foreign-signals-reach-app-handlers" => {
            set_action(libc::SIGSEGV, Some(app_segv), 0);
            set_action(libc::SIGBUS, Some(app_bus), 0);
            let (fs, clone, view) = shared_view(64 << 20);
            // A SIGSEGV another thread or process sent (not a fault), and an action-optional
            // machine check at an address that is not ferrodax's.
            // SAFETY: raise(3) of a signal whose handler (the application's) returns.
            unsafe { libc::raise(libc::SIGSEGV) };
            let elsewhere = Box::into_raw(Box::new(0u64)) as usize;
            queue_signal(libc::SIGBUS, 5, elsewhere);
            assert_eq!(SEGV_SEEN.load(Ordering::SeqCst), 1, "the application's SIGSEGV handler ran");
            assert_eq!(BUS_SEEN.load(Ordering::SeqCst), 1, "the application's SIGBUS handler ran");
            assert_eq!(BUS_CODE.load(Ordering::SeqCst), 5);
            assert_eq!(BUS_ADDR.load(Ordering::SeqCst), elsewhere);
            cow_store_works(&fs, &clone, &view, 1);
            // And again: nothing was uninstalled on the way.
            // SAFETY: as above.
            unsafe { libc::raise(libc::SIGSEGV) };
            assert_eq!(SEGV_SEEN.load(Ordering::SeqCst), 2);
            cow_store_works(&fs, &clone, &view, 2);
            println!("CHILD OK");
        }
        "cow-fault-on-a-small-signal-stack" => {
            let (fs, clone, view) = shared_view(64 << 20);
            small_alternate_signal_stack();
            cow_store_works(&fs, &clone, &view, 4);
            println!("CHILD OK");
        }
        "machine-check-on-a-small-signal-stack" => {
            set_action(libc::SIGBUS, Some(app_bus_report_and_exit), 0);
            let (_fs, _clone, view) = shared_view_with(64 << 20, MapAccess::Read);
            small_alternate_signal_stack();
            let at = view.as_ptr() as usize + 5 * 4096 + 7;
            println!("view byte at {at:#x}");
            // What the kernel sends a thread whose load consumed poison at `at`.
            queue_signal(libc::SIGBUS, ferrodax::dax::mce::BUS_MCEERR_AR, at);
            println!("CHILD SURVIVED");
        }
        "app-handler-installed-after-chains" => {
            let (fs, clone, view) = shared_view(64 << 20);
            // The application installs its handler after ferrodax and chains to the previous one
            // for faults that are not its own, as a library-friendly handler does.
            let previous = set_action(libc::SIGSEGV, Some(chaining_segv), 0);
            PREVIOUS_SEGV.store(previous.sa_sigaction, Ordering::SeqCst);
            cow_store_works(&fs, &clone, &view, 3);
            assert!(CHAINED.load(Ordering::SeqCst) >= 1, "the application's handler saw the fault first");
            println!("CHILD OK");
        }
        "foreign-sigsegv-with-default-disposition" => {
            let (_fs, _clone, _view) = shared_view(64 << 20);
            // SAFETY: raise(3); the default action must end the process.
            unsafe { libc::raise(libc::SIGSEGV) };
            println!("CHILD SURVIVED");
        }
        "ignored-action-optional-sigbus" => {
            set_action(libc::SIGBUS, None, libc::SIG_IGN);
            let (fs, clone, view) = shared_view(64 << 20);
            let elsewhere = Box::into_raw(Box::new(0u64)) as usize;
            queue_signal(libc::SIGBUS, 5, elsewhere);
            cow_store_works(&fs, &clone, &view, 4);
            println!("CHILD OK");
        }
        "cow-fault-without-space" => {
            set_action(libc::SIGBUS, Some(app_bus_report_and_exit), 0);
            let (fs, _clone, view) = shared_view(8 << 20);
            // Fill the pool: a copy of a shared page can no longer get a block.
            let filler = fs.open("/filler", &rw()).unwrap();
            let mut at = 0u64;
            while filler.write_at(&[1u8; 4096], at).is_ok() {
                at += 4096;
            }
            println!("view at {:#x}", view.as_ptr() as usize + 5 * 4096);
            view.store_plain(5 * 4096, b"x").unwrap();
            println!("CHILD SURVIVED");
        }
        other => panic!("unknown scenario {other}"),
    }
}

static PREVIOUS_SEGV: AtomicUsize = AtomicUsize::new(0);
static CHAINED: AtomicUsize = AtomicUsize::new(0);

/// An application handler installed after ferrodax: not its fault, so it calls the previous one.
extern "C" fn chaining_segv(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    CHAINED.fetch_add(1, Ordering::SeqCst);
    let previous = PREVIOUS_SEGV.load(Ordering::SeqCst);
    // SAFETY: the previous disposition was ferrodax's SA_SIGINFO handler (installed first).
    let f: Handler = unsafe { std::mem::transmute(previous) };
    f(signal, info, context);
}

#[test]
fn a_foreign_sigsegv_and_an_action_optional_sigbus_reach_the_applications_handlers_and_cow_faults_still_work()
{
    let (status, out, err) = run_child("foreign-signals-reach-app-handlers");
    assert!(status.success() && out.contains("CHILD OK"), "{status}\n{out}\n{err}");
}

#[test]
fn an_application_handler_installed_after_ferrodax_that_chains_keeps_cow_faults_working() {
    let (status, out, err) = run_child("app-handler-installed-after-chains");
    assert!(status.success() && out.contains("CHILD OK"), "{status}\n{out}\n{err}");
}

#[test]
fn with_the_default_disposition_a_foreign_sigsegv_ends_the_process_instead_of_being_lost() {
    use std::os::unix::process::ExitStatusExt;
    let (status, out, err) = run_child("foreign-sigsegv-with-default-disposition");
    assert_eq!(status.signal(), Some(libc::SIGSEGV), "{status}\n{out}\n{err}");
    assert!(!out.contains("CHILD SURVIVED"));
}

#[test]
fn an_ignored_action_optional_sigbus_is_ignored_and_cow_faults_keep_working() {
    let (status, out, err) = run_child("ignored-action-optional-sigbus");
    assert!(status.success() && out.contains("CHILD OK"), "{status}\n{out}\n{err}");
}

#[test]
fn a_cow_fault_that_cannot_get_a_block_prints_the_file_and_offset_and_raises_sigbus_adrerr() {
    let (status, out, err) = run_child("cow-fault-without-space");
    assert_eq!(status.code(), Some(42), "the application's SIGBUS handler ended it\n{out}\n{err}");
    // The harness prints "test child_entry ... " before the child's first line.
    let addr = out
        .lines()
        .find_map(|l| l.split_once("view at ").map(|(_, a)| a.trim()))
        .expect("the child printed the address");
    assert!(out.contains(&format!("SIGBUS code=2 addr={addr}")), "BUS_ADRERR at the store's page\n{out}");
    assert!(
        err.contains("copy-on-write fault in /clone at file offset 20480") && err.contains("No space left"),
        "one line naming the file, the offset and the reason: {err}"
    );
}

/// A copy-on-write store fault copies the page on a thread whose alternate signal stack is too
/// small for it (Rust gives every thread one of 8 KiB, which the kernel lab showed too small for a
/// memory failure): ferrodax's handlers run on the thread's own stack.
#[test]
fn a_cow_fault_on_a_thread_with_a_small_alternate_signal_stack_copies_the_page() {
    let (status, out, err) = run_child("cow-fault-on-a-small-signal-stack");
    assert!(status.success() && out.contains("CHILD OK"), "{status}\n{out}\n{err}");
}

/// The same for a kernel machine check (BUS_MCEERR_AR at a view page): it passes through
/// ferrodax's SIGBUS handler (which handles it as a memory failure) and reaches the application's
/// handler as BUS_MCEERR_AR at the address, instead of the process dying of SIGSEGV on the
/// overflowed alternate stack (what the kernel lab showed with 8 KiB).
#[test]
fn a_machine_check_on_a_thread_with_a_small_alternate_signal_stack_reaches_the_application() {
    let (status, out, err) = run_child("machine-check-on-a-small-signal-stack");
    assert_eq!(status.code(), Some(42), "the application's SIGBUS handler ended it\n{status}\n{out}\n{err}");
    let at = out
        .lines()
        .find_map(|l| l.split_once("view byte at ").map(|(_, a)| a.trim()))
        .expect("the child printed the address");
    assert!(out.contains(&format!("SIGBUS code=4 addr={at}")), "BUS_MCEERR_AR at the byte\n{out}");
}
