//! Machine-check-safe reads of pool memory, and the chaining of the process's SIGBUS handler.
//!
//! Owns the copy (plain, and streaming: non-temporal stores) and compare routines that ferrodax
//! itself uses to read and store pool memory, written in assembly with a known region of faulting
//! instructions and a landing pad each — the way the kernel's `copy_mc` uses exception tables. On real persistent memory a load from a bad line
//! raises SIGBUS (BUS_MCEERR_AR); when the faulting instruction lies in one of these regions, the
//! SIGBUS handler moves the interrupted context's instruction pointer to the region's landing pad
//! and returns: nothing unwinds through the signal frame, the routine returns how far it got, and
//! the caller reports a [`MemoryError`] (the file system then records the bad block through memory
//! failure and fails the operation with EIO). Any SIGBUS there counts (a truncated pool file gives
//! BUS_ADRERR): the bytes could not be read either way.
//!
//! Also owns the process's first SIGBUS handler and [`forward`], the one way every ferrodax handler
//! passes a signal it does not resolve to the handler installed before it.
//!
//! Signal context: [`on_sigbus`] runs in a signal handler. It reads the siginfo and the interrupted
//! context, writes two thread-local cells and, only when the fault is not its own, calls
//! [`forward`]. It takes no lock and allocates nothing.
//!
//! Must never: land a fault that did not happen inside its own routines, or lose a signal it does
//! not handle (see [`forward`]).

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Once, OnceLock};

/// Pool mappings of this process, as (base, length) slots (0 = free), so that the handler can tell
/// a machine check at a pool address without a lock.
static POOL_MAPPINGS: [(AtomicUsize, AtomicUsize); 64] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; 64];

/// The write end of the pipe that action-optional machine checks at pool addresses are reported
/// into (-1: nobody listens, so they are forwarded like any other signal).
static AO_REPORTS: AtomicI32 = AtomicI32::new(-1);

/// Set by the SIGBUS handler after it reported an action-optional machine check into
/// [`AO_REPORTS`], taken by whoever drains the pipe ([`take_action_optional_pending`]).
static AO_PENDING: AtomicBool = AtomicBool::new(false);

/// Records a pool mapping of this process (the backend does, when it maps a pool).
pub fn register_pool_mapping(base: usize, len: usize) {
    for (b, l) in &POOL_MAPPINGS {
        if b.compare_exchange(0, base, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            l.store(len, Ordering::Release);
            return;
        }
    }
}

/// Forgets a pool mapping (when it is unmapped).
pub fn unregister_pool_mapping(base: usize) {
    for (b, l) in &POOL_MAPPINGS {
        if b.load(Ordering::Acquire) == base {
            l.store(0, Ordering::Release);
            b.store(0, Ordering::Release);
            return;
        }
    }
}

/// The registered pool mapping that contains `addr`, as (base, length). Async-signal-safe.
pub fn pool_mapping_at(addr: usize) -> Option<(usize, usize)> {
    POOL_MAPPINGS.iter().find_map(|(b, l)| {
        let (base, len) = (b.load(Ordering::Acquire), l.load(Ordering::Acquire));
        (base != 0 && addr >= base && addr < base + len).then_some((base, len))
    })
}

/// Makes `fd` (a pipe's write end) the place where the SIGBUS handler reports action-optional
/// machine checks at pool addresses: each report is 16 bytes, the address and `si_addr_lsb` (the
/// log2 of the granule the kernel names: 12 for a page, 21 for a 2 MiB device-dax entry), native
/// endian. The reader records them as memory failures (the front end does; the handler cannot
/// take the file system's lock).
pub fn report_action_optional_to(fd: i32) {
    AO_REPORTS.store(fd, Ordering::Release);
}

/// Whether an action-optional machine check was reported into the pipe since the last call
/// (clears the mark): the caller then drains the pipe. One relaxed-cost load when nothing came.
pub fn take_action_optional_pending() -> bool {
    AO_PENDING.load(Ordering::Relaxed) && AO_PENDING.swap(false, Ordering::AcqRel)
}

/// A read of pool memory met bad memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryError {
    /// The address of the first byte that could not be read (from the SIGBUS), or of the start of
    /// the access when the kernel did not say.
    pub addr: usize,
}

#[cfg(target_arch = "x86_64")]
std::arch::global_asm!(
    ".pushsection .text.ferrodax_mc,\"ax\",@progbits",
    // ferrodax_mc_copy(dst rdi, src rsi, len rdx) -> rax: bytes NOT copied (0 = all).
    ".globl ferrodax_mc_copy",
    ".type ferrodax_mc_copy,@function",
    "ferrodax_mc_copy:",
    "    mov rcx, rdx",
    ".globl ferrodax_mc_copy_insn",
    "ferrodax_mc_copy_insn:",
    "    rep movsb",
    ".globl ferrodax_mc_copy_insn_end",
    "ferrodax_mc_copy_insn_end:",
    "    xor eax, eax",
    "    ret",
    ".globl ferrodax_mc_copy_fixup",
    "ferrodax_mc_copy_fixup:",
    "    mov rax, rcx",
    "    ret",
    ".size ferrodax_mc_copy, . - ferrodax_mc_copy",
    // ferrodax_mc_copy_streaming(dst rdi, src rsi, len rdx) -> rax: bytes NOT copied (0 = all).
    // len a nonzero multiple of 64, dst 16-byte aligned: 64 bytes a round, non-temporal stores.
    ".globl ferrodax_mc_copy_streaming",
    ".type ferrodax_mc_copy_streaming,@function",
    "ferrodax_mc_copy_streaming:",
    "    mov rcx, rdx",
    "    shr rcx, 6",
    ".globl ferrodax_mc_copy_streaming_moves",
    "ferrodax_mc_copy_streaming_moves:",
    "2:",
    "    movdqu xmm0, [rsi]",
    "    movdqu xmm1, [rsi + 16]",
    "    movdqu xmm2, [rsi + 32]",
    "    movdqu xmm3, [rsi + 48]",
    "    movntdq [rdi], xmm0",
    "    movntdq [rdi + 16], xmm1",
    "    movntdq [rdi + 32], xmm2",
    "    movntdq [rdi + 48], xmm3",
    "    add rsi, 64",
    "    add rdi, 64",
    "    dec rcx",
    "    jnz 2b",
    ".globl ferrodax_mc_copy_streaming_moves_end",
    "ferrodax_mc_copy_streaming_moves_end:",
    "    xor eax, eax",
    "    ret",
    ".globl ferrodax_mc_copy_streaming_fixup",
    "ferrodax_mc_copy_streaming_fixup:",
    "    mov rax, rcx",
    "    shl rax, 6",
    "    ret",
    ".size ferrodax_mc_copy_streaming, . - ferrodax_mc_copy_streaming",
    // ferrodax_mc_cmp(a rdi, b rsi, len rdx) -> rax: 0 equal, 1 different, 2 memory error.
    ".globl ferrodax_mc_cmp",
    ".type ferrodax_mc_cmp,@function",
    "ferrodax_mc_cmp:",
    "    mov rcx, rdx",
    "    shr rcx, 6",
    ".globl ferrodax_mc_cmp_loads",
    "ferrodax_mc_cmp_loads:",
    "    jz 3f",
    "2:",
    "    movdqu xmm0, [rdi]",
    "    movdqu xmm1, [rdi + 16]",
    "    movdqu xmm2, [rdi + 32]",
    "    movdqu xmm3, [rdi + 48]",
    "    movdqu xmm4, [rsi]",
    "    movdqu xmm5, [rsi + 16]",
    "    movdqu xmm6, [rsi + 32]",
    "    movdqu xmm7, [rsi + 48]",
    "    pcmpeqb xmm0, xmm4",
    "    pcmpeqb xmm1, xmm5",
    "    pcmpeqb xmm2, xmm6",
    "    pcmpeqb xmm3, xmm7",
    "    pand xmm0, xmm1",
    "    pand xmm2, xmm3",
    "    pand xmm0, xmm2",
    "    pmovmskb eax, xmm0",
    "    cmp eax, 0xffff",
    "    jne 5f",
    "    add rdi, 64",
    "    add rsi, 64",
    "    dec rcx",
    "    jnz 2b",
    "3:",
    "    mov rcx, rdx",
    "    and rcx, 63",
    "    jz 6f",
    "4:",
    "    movzx eax, byte ptr [rdi]",
    "    cmp al, byte ptr [rsi]",
    "    jne 5f",
    "    inc rdi",
    "    inc rsi",
    "    dec rcx",
    "    jnz 4b",
    "6:",
    "    xor eax, eax",
    "    ret",
    "5:",
    "    mov eax, 1",
    "    ret",
    ".globl ferrodax_mc_cmp_loads_end",
    "ferrodax_mc_cmp_loads_end:",
    ".globl ferrodax_mc_cmp_fixup",
    "ferrodax_mc_cmp_fixup:",
    "    mov eax, 2",
    "    ret",
    ".size ferrodax_mc_cmp, . - ferrodax_mc_cmp",
    // ferrodax_mc_cmp_avx2(a rdi, b rsi, len rdx) -> rax: as ferrodax_mc_cmp, 128 bytes a round
    // with 32-byte loads (the width glibc's memcmp uses here); only called where the CPU has AVX2.
    ".globl ferrodax_mc_cmp_avx2",
    ".type ferrodax_mc_cmp_avx2,@function",
    "ferrodax_mc_cmp_avx2:",
    "    mov rcx, rdx",
    "    shr rcx, 7",
    ".globl ferrodax_mc_cmp_avx2_loads",
    "ferrodax_mc_cmp_avx2_loads:",
    "    jz 3f",
    "2:",
    "    vmovdqu ymm0, [rdi]",
    "    vmovdqu ymm1, [rdi + 32]",
    "    vmovdqu ymm2, [rdi + 64]",
    "    vmovdqu ymm3, [rdi + 96]",
    "    vpcmpeqb ymm0, ymm0, [rsi]",
    "    vpcmpeqb ymm1, ymm1, [rsi + 32]",
    "    vpcmpeqb ymm2, ymm2, [rsi + 64]",
    "    vpcmpeqb ymm3, ymm3, [rsi + 96]",
    "    vpand ymm0, ymm0, ymm1",
    "    vpand ymm2, ymm2, ymm3",
    "    vpand ymm0, ymm0, ymm2",
    "    vpmovmskb eax, ymm0",
    "    cmp eax, -1",
    "    jne 5f",
    "    sub rdi, -128",
    "    sub rsi, -128",
    "    dec rcx",
    "    jnz 2b",
    "3:",
    "    vzeroupper",
    "    mov rcx, rdx",
    "    and rcx, 127",
    "    jz 6f",
    "4:",
    "    movzx eax, byte ptr [rdi]",
    "    cmp al, byte ptr [rsi]",
    "    jne 7f",
    "    inc rdi",
    "    inc rsi",
    "    dec rcx",
    "    jnz 4b",
    "6:",
    "    xor eax, eax",
    "    ret",
    "5:",
    "    vzeroupper",
    "7:",
    "    mov eax, 1",
    "    ret",
    ".globl ferrodax_mc_cmp_avx2_loads_end",
    "ferrodax_mc_cmp_avx2_loads_end:",
    ".globl ferrodax_mc_cmp_avx2_fixup",
    "ferrodax_mc_cmp_avx2_fixup:",
    "    vzeroupper",
    "    mov eax, 2",
    "    ret",
    ".size ferrodax_mc_cmp_avx2, . - ferrodax_mc_cmp_avx2",
    ".popsection",
);

#[cfg(target_arch = "x86_64")]
extern "C" {
    fn ferrodax_mc_copy(dst: *mut u8, src: *const u8, len: usize) -> usize;
    fn ferrodax_mc_copy_insn();
    fn ferrodax_mc_copy_insn_end();
    fn ferrodax_mc_copy_fixup();
    fn ferrodax_mc_copy_streaming(dst: *mut u8, src: *const u8, len: usize) -> usize;
    fn ferrodax_mc_copy_streaming_moves();
    fn ferrodax_mc_copy_streaming_moves_end();
    fn ferrodax_mc_copy_streaming_fixup();
    fn ferrodax_mc_cmp(a: *const u8, b: *const u8, len: usize) -> usize;
    fn ferrodax_mc_cmp_loads();
    fn ferrodax_mc_cmp_loads_end();
    fn ferrodax_mc_cmp_fixup();
    fn ferrodax_mc_cmp_avx2(a: *const u8, b: *const u8, len: usize) -> usize;
    fn ferrodax_mc_cmp_avx2_loads();
    fn ferrodax_mc_cmp_avx2_loads_end();
    fn ferrodax_mc_cmp_avx2_fixup();
}

thread_local! {
    /// The address of the last SIGBUS landed on this thread (0 = none since it was read).
    static LANDED_AT: Cell<usize> = const { Cell::new(0) };
}

fn take_landed(fallback: usize) -> MemoryError {
    let addr = LANDED_AT.with(|c| c.replace(0));
    MemoryError { addr: if addr == 0 { fallback } else { addr } }
}

/// Copies `len` bytes from `src` to `dst` (which must not overlap); a SIGBUS while reading `src`
/// stops the copy there and becomes a [`MemoryError`].
///
/// # Safety
/// `src` must be valid for reads and `dst` for writes of `len` bytes (a read may still fault on
/// bad memory: that is what this function survives), and they must not overlap.
pub unsafe fn copy(dst: *mut u8, src: *const u8, len: usize) -> Result<(), MemoryError> {
    if len == 0 {
        return Ok(());
    }
    install();
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the caller's contract; the routine only reads src and writes dst within len, and
        // a fault in its one load/store instruction lands on its fixup (see on_sigbus).
        let left = unsafe { ferrodax_mc_copy(dst, src, len) };
        if left == 0 {
            Ok(())
        } else {
            Err(take_landed(src as usize + (len - left)))
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        // SAFETY: the caller's contract. No landing pad on this architecture: a machine check is fatal.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, len) };
        Ok(())
    }
}

/// Bytes from which [`copy_streaming`] bypasses the cache (smaller copies are cheaper through it).
pub const STREAMING_MIN_LEN: usize = 1024;

/// True when [`copy_streaming`] of `len` bytes to a destination at `dst_offset` (from a 64-byte
/// aligned base) bypasses the cache: `len` a multiple of 64 of at least [`STREAMING_MIN_LEN`],
/// the destination 64-byte aligned, on x86-64.
pub fn streams(dst_offset: u64, len: usize) -> bool {
    cfg!(target_arch = "x86_64") && len >= STREAMING_MIN_LEN && len % 64 == 0 && dst_offset % 64 == 0
}

/// [`copy`] for stores into the pool that would be flushed right after: where [`streams`] says so
/// the bytes go to memory with non-temporal stores, so the destination is neither read first nor
/// left in the cache, and needs no flush (it is durable after the next store fence, like a
/// flushed store); elsewhere it is [`copy`], whose stores still need their flush. A SIGBUS
/// reading `src` or writing `dst` stops the copy as [`copy`]'s does.
///
/// # Safety
/// As [`copy`].
pub unsafe fn copy_streaming(dst: *mut u8, src: *const u8, len: usize) -> Result<(), MemoryError> {
    #[cfg(target_arch = "x86_64")]
    if streams(dst as u64, len) {
        install();
        // SAFETY: the caller's contract; the routine reads src and writes dst within len (a
        // nonzero multiple of 64, dst aligned for movntdq), and a fault in its moves lands on its
        // fixup (see on_sigbus).
        let left = unsafe { ferrodax_mc_copy_streaming(dst, src, len) };
        return if left == 0 { Ok(()) } else { Err(take_landed(src as usize + (len - left))) };
    }
    // SAFETY: the caller's contract.
    unsafe { copy(dst, src, len) }
}

/// Compares `len` bytes at `a` and `b`: `Ok(true)` when equal; a SIGBUS while reading either
/// becomes a [`MemoryError`]. Reads both ranges in place, 128 bytes a round with 32-byte loads
/// where the CPU has AVX2 (16-byte loads, 64 bytes a round, otherwise): as fast as memcmp.
///
/// # Safety
/// Both ranges must be valid for reads of `len` bytes (bad memory excepted).
pub unsafe fn equal(a: *const u8, b: *const u8, len: usize) -> Result<bool, MemoryError> {
    #[cfg(target_arch = "x86_64")]
    {
        let routine = if std::arch::is_x86_feature_detected!("avx2") {
            CompareRoutine::Avx2
        } else {
            CompareRoutine::Sse2
        };
        // SAFETY: the caller's contract; the routine needs only what the CPU has (checked above).
        unsafe { equal_by(routine, a, b, len) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        if len == 0 {
            return Ok(true);
        }
        // SAFETY: the caller's contract. No landing pad on this architecture.
        let (x, y) = unsafe { (std::slice::from_raw_parts(a, len), std::slice::from_raw_parts(b, len)) };
        Ok(x == y)
    }
}

/// The compare routines: both land a SIGBUS on their fixup.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CompareRoutine {
    /// 16-byte loads, 64 bytes a round: every x86-64 CPU.
    Sse2,
    /// 32-byte loads, 128 bytes a round: CPUs with AVX2 only.
    Avx2,
}

/// [`equal`] with a chosen routine.
///
/// # Safety
/// As [`equal`]; [`CompareRoutine::Avx2`] only on a CPU with AVX2.
#[cfg(target_arch = "x86_64")]
unsafe fn equal_by(
    routine: CompareRoutine,
    a: *const u8,
    b: *const u8,
    len: usize,
) -> Result<bool, MemoryError> {
    if len == 0 {
        return Ok(true);
    }
    install();
    // SAFETY: the caller's contract; the routine only reads both ranges within len, and a fault
    // in its loads lands on its fixup (see on_sigbus).
    let outcome = unsafe {
        match routine {
            CompareRoutine::Sse2 => ferrodax_mc_cmp(a, b, len),
            CompareRoutine::Avx2 => ferrodax_mc_cmp_avx2(a, b, len),
        }
    };
    match outcome {
        0 => Ok(true),
        1 => Ok(false),
        _ => Err(take_landed(a as usize)),
    }
}

/// The landing pad for an instruction pointer inside one of the routines' faulting regions.
#[cfg(target_arch = "x86_64")]
fn landing_pad(ip: usize) -> Option<usize> {
    let copy = (ferrodax_mc_copy_insn as *const () as usize, ferrodax_mc_copy_insn_end as *const () as usize);
    let cmp = (ferrodax_mc_cmp_loads as *const () as usize, ferrodax_mc_cmp_loads_end as *const () as usize);
    let cmp_avx2 = (
        ferrodax_mc_cmp_avx2_loads as *const () as usize,
        ferrodax_mc_cmp_avx2_loads_end as *const () as usize,
    );
    let streaming = (
        ferrodax_mc_copy_streaming_moves as *const () as usize,
        ferrodax_mc_copy_streaming_moves_end as *const () as usize,
    );
    if ip >= copy.0 && ip < copy.1 {
        Some(ferrodax_mc_copy_fixup as *const () as usize)
    } else if ip >= streaming.0 && ip < streaming.1 {
        Some(ferrodax_mc_copy_streaming_fixup as *const () as usize)
    } else if ip >= cmp.0 && ip < cmp.1 {
        Some(ferrodax_mc_cmp_fixup as *const () as usize)
    } else if ip >= cmp_avx2.0 && ip < cmp_avx2.1 {
        Some(ferrodax_mc_cmp_avx2_fixup as *const () as usize)
    } else {
        None
    }
}

/// A signal disposition saved when ferrodax installed its own handler over it.
pub struct Previous(libc::sigaction);
// SAFETY: a sigaction is plain data (a function address, flags and a mask).
unsafe impl Send for Previous {}
// SAFETY: see Send; written once, then only read.
unsafe impl Sync for Previous {}

static PREVIOUS_BUS: OnceLock<Previous> = OnceLock::new();

/// A signal handler with siginfo.
pub type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// Installs `handler` for `signal` (SA_SIGINFO, without SA_ONSTACK), keeping the disposition it
/// replaces in `previous_slot` for [`forward`].
///
/// The handlers run on the faulting thread's own stack, not on its alternate signal stack: a
/// copy-on-write fault or a memory failure runs file-system code that needs 6-7 KiB and more
/// (the kernel's signal frame included), and Rust gives every thread an alternate stack of 8 KiB
/// (SIGSTKSZ), which the kernel lab showed overflowing (the process died of SIGSEGV). The cost,
/// once a SIGSEGV handler is installed this way (the first view does): a thread that overflows its
/// own stack can no longer be told so by a handler (the kernel cannot push a frame on the
/// exhausted stack), so it dies of SIGSEGV without Rust's "has overflowed its stack" message.
pub fn install_over(signal: libc::c_int, handler: Handler, previous_slot: &OnceLock<Previous>) {
    // SAFETY: building a sigaction for our handler and installing it; the previous one is kept so
    // signals that are not ours keep their old meaning.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        let mut previous: libc::sigaction = std::mem::zeroed();
        let rc = libc::sigaction(signal, &action, &mut previous);
        assert_eq!(rc, 0, "installing a ferrodax signal handler");
        let _ = previous_slot.set(Previous(previous));
    }
}

/// Installs the landing-pad SIGBUS handler once per process (the first pool mapping does it).
pub fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| install_over(libc::SIGBUS, on_sigbus, &PREVIOUS_BUS));
}

/// SIGBUS, first stop. Runs in signal context: no lock, no allocation. A fault inside one of this
/// module's routines lands on the routine's landing pad; every other SIGBUS is forwarded.
extern "C" fn on_sigbus(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    #[cfg(target_arch = "x86_64")]
    if !context.is_null() {
        // SAFETY: for an SA_SIGINFO handler the kernel passes a valid ucontext_t and siginfo;
        // we read the interrupted instruction pointer and, for our own routines only, move it.
        unsafe {
            let uc = context.cast::<libc::ucontext_t>();
            let ip = (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] as usize;
            if let Some(pad) = landing_pad(ip) {
                LANDED_AT.with(|c| c.set((*info).si_addr() as usize));
                (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] = pad as i64;
                return;
            }
        }
    }
    // An action-optional machine check (early kill) at a pool address: nothing consumed the bad
    // memory yet; report it to whoever records memory failures, and carry on.
    // SAFETY: the kernel passes a valid siginfo to an SA_SIGINFO handler.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    let reports = AO_REPORTS.load(Ordering::Acquire);
    if code == 5 && reports >= 0 && pool_mapping_at(addr).is_some() {
        // SAFETY: si_addr_lsb sits at byte 24 of a SIGBUS siginfo (see dax::mce::addr_lsb).
        let lsb = unsafe { *((info as *const u8).add(24) as *const i16) };
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&(addr as u64).to_ne_bytes());
        bytes[8..].copy_from_slice(&(lsb as u64).to_ne_bytes());
        // SAFETY: write(2) of 16 bytes from the stack to a pipe: async-signal-safe; a pipe write
        // of at most PIPE_BUF bytes is atomic.
        let written = unsafe { libc::write(reports, bytes.as_ptr().cast(), bytes.len()) };
        if written == bytes.len() as isize {
            // An atomic store: async-signal-safe.
            AO_PENDING.store(true, Ordering::Release);
            return;
        }
    }
    // SAFETY: the kernel's own arguments to this handler.
    unsafe { forward(signal, info, context, &PREVIOUS_BUS) };
}

/// Hands a signal that ferrodax does not resolve to the disposition that was in place before
/// ferrodax's handler, so the process behaves as if ferrodax were not there:
/// - a handler: it is called with the same arguments (three for SA_SIGINFO, one otherwise);
/// - SIG_DFL: the default action happens — the disposition is set to default and the same signal,
///   with the same siginfo, is queued to this thread; it arrives as the handler returns (the
///   signal is blocked until then) and ends the process. ferrodax's handler is gone only because
///   the process is;
/// - SIG_IGN: an asynchronous signal (sent by a process, si_code ≤ 0, or an action-optional
///   machine check, which the kernel sends like any signal) is ignored; a fault the kernel raised
///   (si_code > 0) cannot be ignored and takes the default action, as the kernel does.
///
/// Runs in signal context: calls only sigaction and rt_tgsigqueueinfo.
///
/// # Safety
/// `info` and `context` must be the pointers the kernel passed to the calling signal handler.
pub unsafe fn forward(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
    previous_slot: &OnceLock<Previous>,
) {
    let previous = previous_slot.get().map(|p| p.0);
    // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    // SAFETY: calling the previously installed handler with the arguments the kernel gave us, or
    // restoring the default disposition and re-queueing the same siginfo to this very thread.
    unsafe {
        match previous {
            Some(p) if p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN => {
                if p.sa_flags & libc::SA_SIGINFO != 0 {
                    let f: Handler = std::mem::transmute(p.sa_sigaction);
                    f(signal, info, context);
                } else {
                    let f: extern "C" fn(libc::c_int) = std::mem::transmute(p.sa_sigaction);
                    f(signal);
                }
                // A handler that resets the disposition to SIG_DFL and returns (Rust's own
                // stack-overflow handler does, for every fault that is not a stack overflow)
                // asks for the default action, counting on the fault to happen again. A signal
                // that was sent, not raised by an access, would then be lost: send it again.
                let mut now: libc::sigaction = std::mem::zeroed();
                libc::sigaction(signal, std::ptr::null(), &mut now);
                let asynchronous = code <= 0 || (signal == libc::SIGBUS && code == 5);
                if now.sa_sigaction == libc::SIG_DFL && asynchronous {
                    libc::syscall(libc::SYS_rt_tgsigqueueinfo, libc::getpid(), libc::gettid(), signal, info);
                }
            }
            Some(p)
                if p.sa_sigaction == libc::SIG_IGN
                    && (code <= 0 || (signal == libc::SIGBUS && code == 5)) => {}
            _ => {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(signal, &action, std::ptr::null_mut());
                libc::syscall(libc::SYS_rt_tgsigqueueinfo, libc::getpid(), libc::gettid(), signal, info);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::persist::store_fence;

    #[test]
    fn a_copy_of_good_memory_copies_everything() {
        let src: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut dst = vec![0u8; src.len()];
        // SAFETY: two live buffers of the same length.
        unsafe { copy(dst.as_mut_ptr(), src.as_ptr(), src.len()) }.unwrap();
        assert_eq!(dst, src);
    }

    #[test]
    fn a_copy_that_meets_a_real_sigbus_stops_there_and_says_where() {
        // A memfd mapped for two pages and then cut to one: the second page raises SIGBUS
        // (BUS_ADRERR) on access, a real fault on this host.
        // SAFETY: memfd_create with a static name; mmap of our own descriptor; the mapping is
        // unmapped at the end and only read through `copy`.
        unsafe {
            let fd = libc::memfd_create(c"mcsafe-test".as_ptr(), libc::MFD_CLOEXEC);
            assert!(fd >= 0);
            assert_eq!(libc::ftruncate(fd, 8192), 0);
            let map = libc::mmap(std::ptr::null_mut(), 8192, libc::PROT_READ, libc::MAP_SHARED, fd, 0);
            assert_ne!(map, libc::MAP_FAILED);
            assert_eq!(libc::ftruncate(fd, 4096), 0);
            let mut dst = vec![1u8; 8192];
            let err = copy(dst.as_mut_ptr(), map as *const u8, 8192).unwrap_err();
            assert_eq!(err.addr, map as usize + 4096, "the fault address is the first byte of the cut page");
            assert!(dst[..4096].iter().all(|&b| b == 0), "the good page was copied");
            let other = vec![0u8; 8192];
            let err = equal(map as *const u8, other.as_ptr(), 8192).unwrap_err();
            assert_eq!(err.addr, map as usize + 4096);
            libc::munmap(map, 8192);
            libc::close(fd);
        }
    }

    #[test]
    fn a_streaming_copy_copies_every_byte_at_every_size_and_alignment() {
        let src: Vec<u8> = (0..20_000u32).map(|i| (i * 13 + i / 256) as u8).collect();
        let mut dst = vec![0u8; 20_480];
        let aligned = dst.as_ptr().align_offset(64);
        for (start, len) in [(0, 4096), (0, 1024), (0, 1088), (64, 8192), (1, 4096), (0, 1000), (0, 100)] {
            dst.fill(0);
            let at = aligned + start;
            // SAFETY: both buffers hold `at + len` bytes (20,480 > 64 + 64 + 8,192), no overlap.
            unsafe { copy_streaming(dst.as_mut_ptr().add(at), src.as_ptr().add(7), len) }.unwrap();
            store_fence();
            assert_eq!(&dst[at..at + len], &src[7..7 + len], "start {start}, len {len}");
            assert!(dst[..at].iter().chain(&dst[at + len..]).all(|&b| b == 0), "start {start}, len {len}");
        }
    }

    #[test]
    fn a_streaming_copy_that_meets_a_real_sigbus_stops_there_and_says_where() {
        // As above: a memfd mapped for two pages and cut to one; the second page faults, once as
        // the source and once as the destination.
        // SAFETY: memfd_create with a static name; mmap of our own descriptor; the mapping is
        // unmapped at the end and only touched through `copy_streaming`.
        unsafe {
            let fd = libc::memfd_create(c"mcsafe-streaming-test".as_ptr(), libc::MFD_CLOEXEC);
            assert!(fd >= 0);
            assert_eq!(libc::ftruncate(fd, 8192), 0);
            let map = libc::mmap(
                std::ptr::null_mut(),
                8192,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            );
            assert_ne!(map, libc::MAP_FAILED);
            std::ptr::write_bytes(map.cast::<u8>(), 5, 4096);
            assert_eq!(libc::ftruncate(fd, 4096), 0);
            let mut buffer = vec![1u8; 8192 + 64];
            let dst = buffer.as_mut_ptr().add(buffer.as_ptr().align_offset(64));
            let err = copy_streaming(dst, map as *const u8, 8192).unwrap_err();
            assert_eq!(err.addr, map as usize + 4096, "the fault address is the first byte of the cut page");
            store_fence();
            assert!(
                std::slice::from_raw_parts(dst, 4096).iter().all(|&b| b == 5),
                "the good page was copied"
            );
            let err = copy_streaming(map.cast::<u8>(), dst, 8192).unwrap_err();
            assert_eq!(err.addr, map as usize + 4096, "a store into the cut page stops there too");
            libc::munmap(map, 8192);
            libc::close(fd);
        }
    }

    /// Every compare routine this CPU can run.
    #[cfg(target_arch = "x86_64")]
    fn routines() -> Vec<CompareRoutine> {
        let mut all = vec![CompareRoutine::Sse2];
        if std::arch::is_x86_feature_detected!("avx2") {
            all.push(CompareRoutine::Avx2);
        }
        all
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_compare_routine_lands_a_real_sigbus_and_says_where() {
        // As above: a memfd mapped for two pages and cut to one; the second page faults.
        // SAFETY: memfd_create with a static name; mmap of our own descriptor; the mapping is
        // unmapped at the end and only read through the compare routines.
        unsafe {
            let fd = libc::memfd_create(c"mcsafe-cmp-test".as_ptr(), libc::MFD_CLOEXEC);
            assert!(fd >= 0);
            assert_eq!(libc::ftruncate(fd, 8192), 0);
            let map = libc::mmap(std::ptr::null_mut(), 8192, libc::PROT_READ, libc::MAP_SHARED, fd, 0);
            assert_ne!(map, libc::MAP_FAILED);
            assert_eq!(libc::ftruncate(fd, 4096), 0);
            let zeros = vec![0u8; 8192];
            for routine in routines() {
                assert_eq!(
                    equal_by(routine, map as *const u8, zeros.as_ptr(), 4096),
                    Ok(true),
                    "{routine:?}"
                );
                let err = equal_by(routine, zeros.as_ptr(), map as *const u8, 8192).unwrap_err();
                assert_eq!(err.addr, map as usize + 4096, "{routine:?}: the first byte of the cut page");
            }
            libc::munmap(map, 8192);
            libc::close(fd);
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn every_compare_routine_finds_a_difference_at_any_byte_and_any_alignment() {
        let a: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        for routine in routines() {
            for start in [0usize, 1, 13] {
                for at in [start, start + 31, start + 127, start + 128, 600, 998, 999] {
                    let mut b = a.clone();
                    b[at] ^= 0x40;
                    let len = 1000 - start;
                    // SAFETY: two live buffers of 1000 bytes, read from `start` to their end.
                    let (whole, before) = unsafe {
                        (
                            equal_by(routine, a.as_ptr().add(start), b.as_ptr().add(start), len),
                            equal_by(routine, a.as_ptr().add(start), b.as_ptr().add(start), at - start),
                        )
                    };
                    assert_eq!(whole, Ok(false), "{routine:?}: a difference at byte {at} from {start}");
                    assert_eq!(before, Ok(true), "{routine:?}: the bytes before {at} from {start} are equal");
                }
            }
        }
    }

    #[test]
    fn compare_finds_the_difference_in_the_tail_and_in_a_chunk() {
        let a = vec![7u8; 1000];
        let mut b = a.clone();
        // SAFETY: two live buffers of the same length.
        assert!(unsafe { equal(a.as_ptr(), b.as_ptr(), 1000) }.unwrap());
        b[999] = 8;
        // SAFETY: as above.
        assert!(!unsafe { equal(a.as_ptr(), b.as_ptr(), 1000) }.unwrap());
        b[999] = 7;
        b[70] = 0;
        // SAFETY: as above.
        assert!(!unsafe { equal(a.as_ptr(), b.as_ptr(), 1000) }.unwrap());
    }
}
