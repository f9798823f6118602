//! Fuzz target: records appended to a valid pool's log are either refused at mount (`Corrupt`) or
//! replay to a state that passes `check()`; problems already known (`KNOWN_REPLAY_GAPS`) pass
//! unless `FERRODAX_FUZZ_STRICT_REPLAY=1`. See `ferrodax::fuzzing::replay_log`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferrodax::fuzzing::replay_log(data).assert_no_new_finding());
