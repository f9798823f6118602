//! Fuzz target: checkpoint payloads through the decoder, the state builder and the chain framing
//! must never panic, and must keep the identities `ferrodax::fuzzing::decode_checkpoint` lists.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferrodax::fuzzing::decode_checkpoint(data));
