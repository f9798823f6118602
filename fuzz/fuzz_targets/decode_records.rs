//! Fuzz target: the on-media decoders (superblock, checkpoint payload and chain, log records) and
//! log replay must never panic on hostile bytes, and what decodes must encode back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferrodax::fuzzing::decode_records(data));
