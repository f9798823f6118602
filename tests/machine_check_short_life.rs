//! A short-lived process (`ferrodax::api::expect_short_life`, as every one-shot CLI command): its
//! mounts start no thread to record action-optional machine checks while early kill is off, and
//! one that arrives anyway is recorded at the process's next file-system call. A test binary of its
//! own: the setting and the listener are per process.

use ferrodax::{Fs, OpenOptions, Pool};

/// Threads of this process named `ferrodax-mce` (the listener).
fn listeners() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.unwrap().path().join("comm")).ok())
        .filter(|name| name.trim() == "ferrodax-mce")
        .count()
}

#[test]
fn a_short_lived_process_starts_no_listener_and_records_an_action_optional_check_at_its_next_call() {
    // Late kill for this process, whatever the machine's setting: the kernel would send it no
    // action-optional machine check, so the mount starts no listener.
    // SAFETY: prctl PR_MCE_KILL_SET with a policy and zero unused arguments.
    let rc = unsafe { libc::prctl(libc::PR_MCE_KILL, libc::PR_MCE_KILL_SET, libc::PR_MCE_KILL_LATE, 0, 0) };
    assert_eq!(rc, 0, "prctl: {}", std::io::Error::last_os_error());
    ferrodax::api::expect_short_life();
    let fs = Fs::format(&Pool::memfd(16 << 20).unwrap()).unwrap();
    let mut rw = OpenOptions::new();
    rw.read(true).write(true).create(true);
    let a = fs.open("/a", &rw).unwrap();
    a.write_at(&vec![0x61; 8192], 0).unwrap();
    assert_eq!(listeners(), 0, "a short-lived process with late kill started a listener");
    // What the kernel would send if early kill were turned on now: BUS_MCEERR_AO at the second block.
    let phys = fs.fiemap(&a).unwrap()[0].physical;
    let addr = fs.backend().base() as usize + phys as usize + 4096 + 100;
    ferrodax::dax::mce::queue_to_self_signal(libc::SIGBUS, ferrodax::dax::mce::BUS_MCEERR_AO, addr).unwrap();
    // The process lives on (the report waits in the pipe); the next call records it first.
    let block = phys / 4096 + 1;
    assert!(fs.bad_blocks().iter().any(|&(s, l)| s <= block && block < s + l), "{:?}", fs.bad_blocks());
    assert_eq!(listeners(), 0);
    let mut buf = vec![0u8; 8192];
    assert_eq!(a.read_at(&mut buf, 0).unwrap(), 4096, "reads stop before the bad block");
    assert!(fs.check().is_clean());
}
