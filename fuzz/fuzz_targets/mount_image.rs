//! Fuzz target: mounting a hostile pool image must never panic (SPEC section 6).
//!
//! An input starting with 0xff is the raw image itself (after that byte). Any other input edits
//! the built-in populated image's metadata blocks (see `ferrodax::fuzzing::mount_edited_image`),
//! optionally resealing every checksum so the damage reaches the decoders and log replay.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((0xff, image)) => {
            ferrodax::fuzzing::mount_arbitrary_image(image);
        }
        _ => {
            ferrodax::fuzzing::mount_edited_image(data);
        }
    }
});
