//! Fuzz target: a sequence of operations (8 bytes each) on ferrodax and on an in-memory model must
//! agree step by step: results, bytes, block sharing, bad blocks, and a clean `check()`. See
//! `ferrodax::fuzzing::op_sequence`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ferrodax::fuzzing::op_sequence(data);
});
