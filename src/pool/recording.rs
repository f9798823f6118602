//! A volatile pool that records every store, flush and fence, for crash tests.
//!
//! Owns two images of the pool: what the CPU sees now (*volatile*), and what has provably reached
//! persistence (*durable*). Persistent memory promises that an aligned 8-byte store is atomic, and
//! nothing larger: power loss may leave any aligned 8-byte *word* that differs between the two
//! images either old or new, independently of every other word. A word is *unpersisted* while the
//! two images differ there. `flush(range)` marks the cache lines of the range that hold
//! unpersisted words; `drain` (a fence) copies the marked lines into the durable image. A store
//! through the backend into a marked line unmarks it (it needs a flush of its own). Stores that do
//! not go through the backend (a DAX view of a pool made by [`RecordingBackend::new_memfd`] maps
//! the same memory) are seen the same way: they leave words unpersisted until a flush of their
//! range and a fence.
//!
//! While recording ([`RecordingBackend::start_recording`]), every fence first keeps a
//! [`CrashFence`]: the durable image and every unpersisted word, from which
//! [`CrashFence::image`] builds the pool that a power loss just before that fence leaves for any
//! subset of those words.
//!
//! Must never: be used for real data, or make a word durable that was not flushed and drained
//! (except inside a crash image built on purpose).

use super::{assert_in_bounds, Backend, BackendKind, MappedBackend, CACHE_LINE};
use std::cell::UnsafeCell;
use std::collections::BTreeSet;
use std::sync::Mutex;

/// The unit that persistent memory stores atomically: a crash keeps each aligned word whole.
pub const ATOMIC_WORD: u64 = 8;

/// Which of a fence's unpersisted words a crash image keeps (the others keep their durable value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WordSubset {
    /// None of them: the durable image alone.
    None,
    /// All of them: the pool as the CPU saw it.
    All,
    /// Bit `i` keeps word `i` (in pool order); for fences with at most 64 unpersisted words.
    Mask(u64),
    /// A pseudo-random subset drawn from this seed. The seed also picks how dense the subset is
    /// (half of the words, or few, or most), so that sparse and nearly complete tears both occur.
    Random(u64),
}

impl std::fmt::Display for WordSubset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WordSubset::None => f.write_str("no unpersisted word"),
            WordSubset::All => f.write_str("every unpersisted word"),
            WordSubset::Mask(m) => write!(f, "word mask {m:#x}"),
            WordSubset::Random(seed) => write!(f, "random subset (seed {seed:#x})"),
        }
    }
}

/// What a power loss just before one fence may leave: the durable image plus any subset of the
/// words not yet durable.
#[derive(Clone)]
pub struct CrashFence {
    /// How many fences had completed when the crash hit (the crash is just before fence `fence`).
    pub fence: u64,
    durable: Vec<u8>,
    /// Pool offsets of the unpersisted words, ascending, and the value each would persist.
    words: Vec<(u64, [u8; ATOMIC_WORD as usize])>,
}

impl CrashFence {
    /// How many words were unpersisted at this fence.
    pub fn unpersisted_words(&self) -> usize {
        self.words.len()
    }

    /// Pool offsets of the unpersisted words, ascending (word `i` of a [`WordSubset::Mask`]).
    pub fn word_offsets(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().map(|w| w.0)
    }

    /// Every subset when there are at most `exhaustive_up_to` unpersisted words (at most 64:
    /// `2^n` masks, none and all among them); otherwise none, all and `random` random subsets
    /// seeded from `seed`.
    pub fn subsets(&self, exhaustive_up_to: usize, random: usize, seed: u64) -> Vec<WordSubset> {
        let n = self.words.len();
        if n <= exhaustive_up_to.min(63) {
            return (0..1u64 << n).map(WordSubset::Mask).collect();
        }
        let mut rng = seed ^ self.fence.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut out = vec![WordSubset::None, WordSubset::All];
        out.extend((0..random).map(|_| WordSubset::Random(splitmix(&mut rng))));
        out
    }

    /// The pool after a crash at this fence that persisted exactly `subset` of the words.
    ///
    /// # Panics
    /// A [`WordSubset::Mask`] on a fence with more than 64 unpersisted words.
    pub fn image(&self, subset: WordSubset) -> Vec<u8> {
        let mut bytes = self.durable.clone();
        let mut keep: Box<dyn FnMut(usize) -> bool> = match subset {
            WordSubset::None => return bytes,
            WordSubset::All => Box::new(|_| true),
            WordSubset::Mask(mask) => {
                assert!(
                    self.words.len() <= 64,
                    "a mask names at most 64 words, this fence has {}",
                    self.words.len()
                );
                Box::new(move |i| mask >> i & 1 == 1)
            }
            WordSubset::Random(seed) => {
                let mut rng = seed;
                // Out of 64: how likely each word is kept.
                let density = [32, 32, 4, 60, 1, 63][(splitmix(&mut rng) % 6) as usize];
                Box::new(move |_| splitmix(&mut rng) % 64 < density)
            }
        };
        for (i, (offset, value)) in self.words.iter().enumerate() {
            if keep(i) {
                let at = *offset as usize;
                bytes[at..at + ATOMIC_WORD as usize].copy_from_slice(value);
            }
        }
        bytes
    }
}

/// A step of the splitmix64 generator.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

struct RecordState {
    durable: Vec<u8>,
    /// Lines flushed since their last store through the backend, waiting for a fence.
    flushed: BTreeSet<u64>,
    fences: u64,
    recording: bool,
    crash_fences: Vec<CrashFence>,
}

/// Where the volatile image lives.
enum Volatile {
    /// Plain memory: no descriptor, so no DAX views.
    Heap(Box<[UnsafeCell<u8>]>),
    /// A memfd mapping: DAX views can map the same memory.
    Memfd(MappedBackend),
}

/// A recording backend; see the module documentation.
pub struct RecordingBackend {
    volatile: Volatile,
    len: u64,
    state: Mutex<RecordState>,
    /// What [`Backend::drain_flushes_device`] answers (see [`RecordingBackend::set_drain_flushes_device`]).
    device_flush: std::sync::atomic::AtomicBool,
}

// SAFETY: the volatile image is plain bytes; stores go through `&self` methods that the layers
// above serialise per block, and bookkeeping is behind a mutex.
unsafe impl Send for RecordingBackend {}
// SAFETY: see `Send`.
unsafe impl Sync for RecordingBackend {}

impl RecordingBackend {
    /// A zeroed pool of `len` bytes, all durable.
    pub fn new(len: u64) -> Self {
        Self::from_image(vec![0; len as usize])
    }

    /// A zeroed pool of `len` bytes, all durable, in a memfd: DAX views of it work (they map the
    /// memfd), and stores through them are recorded as unpersisted until flushed and drained.
    pub fn new_memfd(len: u64) -> std::io::Result<Self> {
        let memory = MappedBackend::create_memfd("ferrodax-recording", len)?;
        let len = memory.len();
        Ok(Self::with_volatile(Volatile::Memfd(memory), vec![0; len as usize]))
    }

    /// A pool whose volatile and durable images both start as `bytes` (for reopening a crash image).
    pub fn from_image(bytes: Vec<u8>) -> Self {
        assert!(bytes.len() as u64 % super::PAGE_SIZE == 0 && !bytes.is_empty());
        let durable = bytes.clone();
        let boxed: Box<[u8]> = bytes.into_boxed_slice();
        // SAFETY: `UnsafeCell<u8>` is `repr(transparent)` over `u8`, so the slice has the same
        // layout; ownership moves from one box to the other.
        let volatile = unsafe { Box::from_raw(Box::into_raw(boxed) as *mut [UnsafeCell<u8>]) };
        Self::with_volatile(Volatile::Heap(volatile), durable)
    }

    fn with_volatile(volatile: Volatile, durable: Vec<u8>) -> Self {
        Self {
            volatile,
            len: durable.len() as u64,
            state: Mutex::new(RecordState {
                durable,
                flushed: BTreeSet::new(),
                fences: 0,
                recording: false,
                crash_fences: Vec::new(),
            }),
            device_flush: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Makes this backend say that a drain costs a device flush, as a pool file on a disk does:
    /// a file system mounted on it then groups commits (crash tests of the group commit).
    pub fn set_drain_flushes_device(&self, device_flush: bool) {
        self.device_flush.store(device_flush, std::sync::atomic::Ordering::Relaxed);
    }

    /// From now on, keep a [`CrashFence`] at every fence.
    pub fn start_recording(&self) {
        let mut st = self.lock();
        st.recording = true;
        st.crash_fences.clear();
    }

    /// Stops recording and returns every fence recorded so far.
    pub fn take_fences(&self) -> Vec<CrashFence> {
        let mut st = self.lock();
        st.recording = false;
        std::mem::take(&mut st.crash_fences)
    }

    /// How many fences have completed.
    pub fn fences(&self) -> u64 {
        self.lock().fences
    }

    /// The image a crash right now would leave if no unpersisted word happened to persist.
    pub fn durable_image(&self) -> Vec<u8> {
        self.lock().durable.clone()
    }

    /// The image as the CPU sees it now.
    pub fn volatile_image(&self) -> Vec<u8> {
        self.volatile_bytes().to_vec()
    }

    /// Number of 8-byte words stored to but not yet durable.
    pub fn unpersisted_words(&self) -> usize {
        let st = self.lock();
        self.unpersisted(&st).count()
    }

    /// Number of cache lines that hold a word stored to but not yet durable.
    pub fn unpersisted_lines(&self) -> usize {
        let st = self.lock();
        let lines: BTreeSet<u64> = self.unpersisted(&st).map(|w| w / CACHE_LINE).collect();
        lines.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RecordState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The volatile image. Stores may be in flight on other threads (through views); callers look
    /// when the pool is quiescent.
    fn volatile_bytes(&self) -> &[u8] {
        // SAFETY: `base` is valid for `len` bytes as long as `self` lives; reading plain bytes.
        unsafe { std::slice::from_raw_parts(self.base() as *const u8, self.len as usize) }
    }

    /// Pool offsets of the unpersisted words, ascending.
    fn unpersisted<'a>(&'a self, st: &'a RecordState) -> impl Iterator<Item = u64> + 'a {
        let word = ATOMIC_WORD as usize;
        self.volatile_bytes()
            .chunks_exact(word)
            .zip(st.durable.chunks_exact(word))
            .enumerate()
            .filter(|(_, (v, d))| v != d)
            .map(move |(i, _)| (i * word) as u64)
    }

    fn line_differs(&self, st: &RecordState, line: u64) -> bool {
        let range = (line * CACHE_LINE) as usize..((line + 1) * CACHE_LINE) as usize;
        self.volatile_bytes()[range.clone()] != st.durable[range]
    }

    /// A store through the backend into `[offset, offset + len)`: flushed lines there need a new
    /// flush.
    fn stored(&self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let mut st = self.lock();
        let lines = offset / CACHE_LINE..=(offset + len - 1) / CACHE_LINE;
        if st.flushed.range(lines.clone()).next().is_some() {
            for line in lines {
                st.flushed.remove(&line);
            }
        }
    }

    fn record_fence(&self, st: &mut RecordState) {
        let words = self
            .unpersisted(st)
            .map(|at| {
                let mut value = [0u8; ATOMIC_WORD as usize];
                value.copy_from_slice(&self.volatile_bytes()[at as usize..(at + ATOMIC_WORD) as usize]);
                (at, value)
            })
            .collect();
        let fence = CrashFence { fence: st.fences, durable: st.durable.clone(), words };
        st.crash_fences.push(fence);
    }
}

impl Backend for RecordingBackend {
    fn len(&self) -> u64 {
        self.len
    }

    fn base(&self) -> *mut u8 {
        match &self.volatile {
            Volatile::Heap(cells) => UnsafeCell::raw_get(cells.as_ptr()),
            Volatile::Memfd(memory) => memory.base(),
        }
    }

    fn write(&self, offset: u64, data: &[u8]) -> crate::error::Result<()> {
        assert_in_bounds(self.len(), offset, data.len() as u64);
        match &self.volatile {
            // SAFETY: in bounds; the source is a distinct Rust slice.
            Volatile::Heap(_) => unsafe {
                std::ptr::copy_nonoverlapping(data.as_ptr(), self.base().add(offset as usize), data.len())
            },
            Volatile::Memfd(memory) => memory.write(offset, data)?,
        }
        self.stored(offset, data.len() as u64);
        Ok(())
    }

    fn fill(&self, offset: u64, len: u64, byte: u8) -> crate::error::Result<()> {
        assert_in_bounds(self.len(), offset, len);
        match &self.volatile {
            // SAFETY: in bounds.
            Volatile::Heap(_) => unsafe {
                std::ptr::write_bytes(self.base().add(offset as usize), byte, len as usize)
            },
            Volatile::Memfd(memory) => memory.fill(offset, len, byte)?,
        }
        self.stored(offset, len);
        Ok(())
    }

    fn copy_within(&self, src: u64, dst: u64, len: u64) -> crate::error::Result<()> {
        assert_in_bounds(self.len(), src, len);
        assert_in_bounds(self.len(), dst, len);
        assert!(src + len <= dst || dst + len <= src, "copy_within ranges overlap");
        match &self.volatile {
            // SAFETY: both in bounds and disjoint.
            Volatile::Heap(_) => unsafe {
                std::ptr::copy_nonoverlapping(
                    self.base().add(src as usize),
                    self.base().add(dst as usize),
                    len as usize,
                )
            },
            Volatile::Memfd(memory) => memory.copy_within(src, dst, len)?,
        }
        self.stored(dst, len);
        Ok(())
    }

    fn flush(&self, offset: u64, len: u64) {
        assert_in_bounds(self.len(), offset, len);
        if len == 0 {
            return;
        }
        let mut st = self.lock();
        for line in offset / CACHE_LINE..=(offset + len - 1) / CACHE_LINE {
            if self.line_differs(&st, line) {
                st.flushed.insert(line);
            }
        }
    }

    fn drain_flushes_device(&self) -> bool {
        self.device_flush.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn drain(&self) {
        let mut st = self.lock();
        if st.recording {
            self.record_fence(&mut st);
        }
        let flushed = std::mem::take(&mut st.flushed);
        for line in flushed {
            let range = (line * CACHE_LINE) as usize..((line + 1) * CACHE_LINE) as usize;
            let bytes = &self.volatile_bytes()[range.clone()];
            st.durable[range].copy_from_slice(bytes);
        }
        st.fences += 1;
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Recording
    }

    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        match &self.volatile {
            Volatile::Heap(_) => None,
            Volatile::Memfd(memory) => memory.raw_fd(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_fence_offers_every_subset_of_the_unpersisted_words_and_nothing_flushed_after_it() {
        let backend = RecordingBackend::new(4096);
        backend.start_recording();
        backend.write(8, &[1; 16]).unwrap(); // words at 8 and 16
        backend.write(100, &[2]).unwrap(); // word at 96
        backend.flush(0, 64);
        backend.drain(); // line 0 durable, word 96 not (never flushed)
        backend.drain();
        let fences = backend.take_fences();
        assert_eq!(fences.len(), 2);
        assert_eq!(fences[0].word_offsets().collect::<Vec<_>>(), vec![8, 16, 96]);
        assert_eq!(fences[1].word_offsets().collect::<Vec<_>>(), vec![96]);
        let subsets = fences[0].subsets(12, 100, 1);
        assert_eq!(subsets.len(), 8, "three words: every one of the 8 subsets");
        let image = fences[0].image(WordSubset::Mask(0b101));
        assert_eq!(&image[8..16], &[1; 8]);
        assert_eq!(&image[16..24], &[0; 8], "word 1 not kept");
        assert_eq!(image[100], 2);
        assert_eq!(fences[0].image(WordSubset::None), vec![0; 4096]);
        assert_eq!(backend.unpersisted_words(), 1);
        assert_eq!(backend.unpersisted_lines(), 1);
        let many = fences[0].subsets(2, 100, 1);
        assert_eq!(many.len(), 102, "none, all and the random ones");
    }

    #[test]
    fn a_store_after_a_flush_needs_a_flush_of_its_own() {
        let backend = RecordingBackend::new(4096);
        backend.write(0, &[1; 8]).unwrap();
        backend.flush(0, 8);
        backend.write(8, &[2; 8]).unwrap();
        backend.drain();
        assert_eq!(backend.unpersisted_words(), 2, "the line was stored to again after its flush");
        backend.flush(0, 64);
        backend.drain();
        assert_eq!(backend.unpersisted_words(), 0);
        assert_eq!(&backend.durable_image()[..16], &[1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2]);
    }

    #[test]
    fn stores_that_bypass_the_backend_are_unpersisted_until_flushed_and_drained() {
        let backend = RecordingBackend::new_memfd(8192).unwrap();
        assert!(backend.raw_fd().is_some());
        // SAFETY: in bounds of the pool's mapping; what a store through a view does.
        unsafe { backend.base().add(4096 + 24).write_volatile(7) };
        assert_eq!(backend.unpersisted_words(), 1);
        backend.drain();
        assert_eq!(backend.unpersisted_words(), 1, "not flushed");
        backend.flush(4096, 4096);
        backend.drain();
        assert_eq!(backend.unpersisted_words(), 0);
        assert_eq!(backend.durable_image()[4096 + 24], 7);
    }
}
