//! Machine-check style SIGBUS delivery for emulated poison.
//!
//! Owns building a `siginfo_t` with `si_code = BUS_MCEERR_AR` (or `_AO`), `si_addr` and
//! `si_addr_lsb = 12`, and queueing it to the calling thread with `rt_tgsigqueueinfo`, which is
//! what the kernel's memory-failure code delivers on real hardware. Must never send a signal to
//! another process or thread than the caller.

use std::io;

/// `si_code` for an action-required machine check (the access consumed poison).
pub const BUS_MCEERR_AR: i32 = 4;
/// `si_code` for an action-optional machine check (poison found, not yet consumed).
pub const BUS_MCEERR_AO: i32 = 5;
/// `si_addr_lsb` for a 4096-byte page.
pub const PAGE_ADDR_LSB: i16 = 12;

/// A `siginfo_t` for SIGBUS as the kernel lays it out on 64-bit Linux: signo, errno, code, then
/// the fault union at byte 16 (`si_addr`, then `si_addr_lsb` at byte 24).
#[repr(C, align(8))]
struct SigBusInfo {
    signo: i32,
    errno: i32,
    code: i32,
    _pad: i32,
    addr: usize,
    addr_lsb: i16,
    _rest: [u8; 128 - 26],
}

/// Builds the machine-check `siginfo_t` bytes (for tests and for calling a handler directly).
pub fn mce_siginfo(code: i32, addr: usize) -> libc::siginfo_t {
    let info = SigBusInfo {
        signo: libc::SIGBUS,
        errno: 0,
        code,
        _pad: 0,
        addr,
        addr_lsb: PAGE_ADDR_LSB,
        _rest: [0; 102],
    };
    const _: () = assert!(std::mem::size_of::<SigBusInfo>() == std::mem::size_of::<libc::siginfo_t>());
    // SAFETY: both are 128-byte plain-data structures and SigBusInfo is laid out like the kernel's
    // SIGBUS siginfo, which libc::siginfo_t represents.
    unsafe { std::mem::transmute::<SigBusInfo, libc::siginfo_t>(info) }
}

/// Reads `si_addr_lsb` from a SIGBUS siginfo (libc does not expose it).
pub fn addr_lsb(info: &libc::siginfo_t) -> i16 {
    // SAFETY: reading two bytes at offset 24 of a 128-byte siginfo_t.
    unsafe { *((info as *const libc::siginfo_t as *const u8).add(24) as *const i16) }
}

/// Queues SIGBUS with `code` and `addr` to the calling thread.
pub fn queue_to_self(code: i32, addr: usize) -> io::Result<()> {
    queue_to_self_signal(libc::SIGBUS, code, addr)
}

/// Queues `signal` with `code` and `addr` to the calling thread; `si_addr_lsb` is 12 for the
/// machine-check codes and 0 otherwise. Async-signal-safe (one system call).
pub fn queue_to_self_signal(signal: i32, code: i32, addr: usize) -> io::Result<()> {
    let mut info = mce_siginfo(code, addr);
    if code != BUS_MCEERR_AR && code != BUS_MCEERR_AO {
        // SAFETY: the same 128-byte layout mce_siginfo built; rewrite signo and the lsb.
        unsafe {
            let raw = &mut info as *mut libc::siginfo_t as *mut u8;
            *(raw as *mut i32) = signal;
            *(raw.add(24) as *mut i16) = 0;
        }
    } else {
        info.si_signo = signal;
    }
    // SAFETY: rt_tgsigqueueinfo to our own process and thread with a fully initialised siginfo;
    // sending a positive si_code to oneself is allowed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            libc::getpid(),
            libc::gettid(),
            libc::SIGBUS,
            &mut info as *mut libc::siginfo_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_siginfo_carries_code_address_and_lsb() {
        let info = mce_siginfo(BUS_MCEERR_AR, 0x7000_1234_5000);
        assert_eq!(info.si_signo, libc::SIGBUS);
        assert_eq!(info.si_code, BUS_MCEERR_AR);
        // SAFETY: reading the fault address of a SIGBUS siginfo.
        assert_eq!(unsafe { info.si_addr() } as usize, 0x7000_1234_5000);
        assert_eq!(addr_lsb(&info), 12);
    }
}
