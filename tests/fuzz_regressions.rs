//! Inputs the fuzz targets found (or that pin down what they found), replayed through the same
//! `ferrodax::fuzzing` entry points the targets call, plus every committed seed of `fuzz/corpus/`
//! and the (ignored) test that regenerates those seeds.
//!
//! Guards: each finding stays fixed; the committed corpus still runs through its targets.

use ferrodax::fuzzing;
use std::path::Path;

/// Regenerates `fuzz/corpus/<target>/seed-*` from `ferrodax::fuzzing::seed_corpus()`:
/// `cargo test --release --test fuzz_regressions -- --ignored write_seed_corpus`.
#[test]
#[ignore = "writes fuzz/corpus/; run by hand after a format change"]
fn write_seed_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for target in fuzzing::TARGETS {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().unwrap().to_string_lossy().starts_with("seed-") {
                std::fs::remove_file(path).unwrap();
            }
        }
    }
    let seeds = fuzzing::seed_corpus();
    for (target, name, bytes) in &seeds {
        std::fs::write(root.join(target).join(name), bytes).unwrap();
    }
    eprintln!("wrote {} seeds, {} bytes", seeds.len(), seeds.iter().map(|s| s.2.len()).sum::<usize>());
}

#[test]
fn every_committed_seed_runs_through_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for target in fuzzing::TARGETS {
        let mut seeds: Vec<_> = std::fs::read_dir(root.join(target))
            .unwrap_or_else(|e| panic!("fuzz/corpus/{target}: {e}"))
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("seed-"))
            .collect();
        seeds.sort();
        assert!(seeds.len() >= 20, "{target}: only {} seeds", seeds.len());
        for path in seeds {
            let bytes = std::fs::read(&path).unwrap();
            match target {
                "mount_image" => match bytes.split_first() {
                    Some((0xff, image)) => drop(fuzzing::mount_arbitrary_image(image)),
                    _ => drop(fuzzing::mount_edited_image(&bytes)),
                },
                "decode_records" => fuzzing::decode_records(&bytes),
                "decode_checkpoint" => fuzzing::decode_checkpoint(&bytes),
                "replay_log" => fuzzing::replay_log(&bytes).assert_no_new_finding(),
                "op_sequence" => drop(fuzzing::op_sequence(&bytes)),
                other => panic!("no entry point for target {other}"),
            }
        }
    }
}

#[test]
fn committed_seeds_are_what_the_generator_makes() {
    // The corpus is generated: after a format change, `write_seed_corpus` makes it again.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let seeds = fuzzing::seed_corpus();
    let total: usize = seeds.iter().map(|s| s.2.len()).sum();
    assert!(total < 2 << 20, "the seed corpus is {total} bytes");
    let stale: Vec<String> = seeds
        .iter()
        .filter(|(target, name, bytes)| {
            // Pools carry a random uuid and timestamps: compare lengths for those, bytes for the rest.
            let on_disk = std::fs::read(root.join(target).join(name)).ok();
            on_disk.is_none_or(|d| d.len() != bytes.len())
        })
        .map(|(target, name, _)| format!("{target}/{name}"))
        .collect();
    assert!(
        stale.is_empty(),
        "seeds missing or of another length (run `cargo test --release --test fuzz_regressions -- --ignored \
         write_seed_corpus`): {stale:?}"
    );
}

// ----- replay_log findings: states replay accepts although check() reports them -----
//
// Each test appends one record (correct sequence number and checksum) to the log of the populated
// pool of `ferrodax::fuzzing::populated_image` and asserts what a sound replay must do: refuse to
// mount, with Corrupt naming the record. The fuzz target replay_log found each of these accepted
// by replay with the mounted state failing check(); the validation of replayed records
// (src/fs/validate.rs) now refuses them all.

use ferrodax::format::record::Mutation;
use ferrodax::fuzzing::replay::{base_attrs, base_free_block, replay_records};
use ferrodax::fuzzing::ReplayVerdict;

/// Both mounts must refuse, naming the log record.
fn assert_refused(records: &[Vec<Mutation>]) {
    let outcome = replay_records(records);
    for (how, verdict) in [("read-only", &outcome.read_only), ("read-write", &outcome.read_write)] {
        match verdict {
            ReplayVerdict::Refused(message) => assert!(message.contains("record"), "{how}: {message}"),
            other => panic!("{how} mount: {other:?}"),
        }
    }
}

#[test]
fn replay_refuses_a_size_below_the_mapped_blocks() {
    let mut a = base_attrs("/a");
    a.size = 0;
    assert_refused(&[vec![Mutation::PutInode(a)]]);
}

#[test]
fn replay_refuses_a_map_past_end_of_file() {
    let a = base_attrs("/a");
    let past_eof = a.size.div_ceil(4096) + 3;
    assert_refused(&[vec![Mutation::Map {
        ino: a.ino,
        file_block: past_eof,
        len: 1,
        phys: Some(base_free_block()),
    }]]);
}

#[test]
fn replay_refuses_a_directory_link_count_that_does_not_count_its_subdirectories() {
    let mut dir = base_attrs("/dir");
    dir.nlink = 7;
    assert_refused(&[vec![Mutation::PutInode(dir)]]);
}

#[test]
fn replay_refuses_a_file_link_count_above_its_names() {
    let mut a = base_attrs("/a");
    a.nlink = 2;
    assert_refused(&[vec![Mutation::PutInode(a)]]);
}

#[test]
fn replay_refuses_a_directory_moved_below_itself() {
    let sub = base_attrs("/dir/sub");
    let dir = base_attrs("/dir");
    assert_refused(&[vec![
        Mutation::Unlink { dir: 1, name: b"dir".to_vec(), ino: dir.ino },
        Mutation::Link { dir: sub.ino, name: b"loop".to_vec(), ino: dir.ino },
    ]]);
}

#[test]
fn replay_refuses_a_directory_without_a_name() {
    let sub = base_attrs("/dir/sub");
    let dir = base_attrs("/dir");
    assert_refused(&[vec![Mutation::Unlink { dir: dir.ino, name: b"sub".to_vec(), ino: sub.ino }]]);
}
