//! Guards the shape of `ferrodax-bench --json` (docs/BENCH.md), which scripts such as the speed
//! acceptance check read: one tiny run (`--smoke`, no XFS, pool server or FUSE), then every
//! field of the document and of every row, and the rows those scripts look for by name; the same
//! for the `--cow-only`, `--threads-only` and `--scale-only` parts. Never
//! a timing threshold: the numbers of a smoke run mean nothing, only their shape and their
//! consistency (best, median and worst in order; the ratio is best / baseline) are checked.

use serde_json::Value;
use std::process::Command;

/// The fields of a row, in the order the document lists them.
const ROW_FIELDS: [&str; 16] = [
    "benchmark",
    "unit",
    "better",
    "result",
    "best",
    "median",
    "worst",
    "runs",
    "pool",
    "comparison",
    "baseline",
    "ratio",
    "target",
    "verdict",
    "xfs",
    "error",
];

/// `ferrodax-bench --smoke --json` with `extra` arguments, parsed.
fn smoke_run(extra: &[&str]) -> Value {
    let disk = tempfile_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_ferrodax-bench"))
        .args(["--smoke", "--json", "--disk-dir"])
        .arg(&disk)
        .args(extra)
        .output()
        .expect("run ferrodax-bench");
    let _ = std::fs::remove_dir_all(&disk);
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\n{stderr}"))
}

/// A fresh directory for the disk-backed pool (under the target directory, a disk file system).
fn tempfile_dir() -> std::path::PathBuf {
    let dir =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-disk-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("make the disk directory");
    dir
}

fn number_or_null(row: &Value, field: &str) -> Option<f64> {
    let v = &row[field];
    assert!(v.is_null() || v.is_f64() || v.is_u64(), "{field} of {} is {v}", row["benchmark"]);
    v.as_f64()
}

/// The document fields every part has, and every row's fields and the consistency of its numbers;
/// returns the rows.
fn checked_rows<'a>(doc: &'a Value, part: &str) -> &'a [Value] {
    assert_eq!(doc["schema"], "ferrodax-bench/2");
    assert_eq!(doc["mode"], "smoke");
    assert_eq!(doc["part"], part);
    assert!(doc["flush_instruction"].is_string());
    assert!(doc["notes"].as_array().is_some_and(|n| n.iter().all(Value::is_string)));
    let rows = doc["rows"].as_array().expect("rows");
    let expected: std::collections::BTreeSet<&str> = ROW_FIELDS.iter().copied().collect();
    for row in rows {
        let name = row["benchmark"].as_str().expect("benchmark is a string");
        let fields: std::collections::BTreeSet<&str> =
            row.as_object().expect("a row is an object").keys().map(String::as_str).collect();
        assert_eq!(fields, expected, "fields of {name}");
        assert!(row["unit"].is_string() && row["comparison"].is_string() && row["target"].is_string());
        assert!(row["xfs"].is_string(), "{name}");
        let verdict = row["verdict"].as_str().expect("verdict");
        assert!(["pass", "miss", "info", "error"].contains(&verdict), "{name}: {verdict}");
        assert_eq!(verdict == "error", !row["error"].is_null(), "{name}: error field and verdict agree");
        assert!(row["pool"].is_null() || row["pool"].is_string(), "{name}");
        let better = row["better"].as_str().expect("better");
        assert!(better == "lower" || better == "higher", "{name}: {better}");
        let (result, best, median, worst) = (
            number_or_null(row, "result"),
            number_or_null(row, "best"),
            number_or_null(row, "median"),
            number_or_null(row, "worst"),
        );
        let runs = row["runs"].as_u64().expect("runs");
        if verdict == "error" {
            continue;
        }
        let (best, median, worst) = (best.expect("best"), median.expect("median"), worst.expect("worst"));
        assert_eq!(result, Some(best), "{name}: result is the best run");
        assert!(runs >= 1, "{name}");
        if better == "lower" {
            assert!(best <= median && median <= worst, "{name}: {best} {median} {worst}");
        } else {
            assert!(best >= median && median >= worst, "{name}: {best} {median} {worst}");
        }
        match (number_or_null(row, "baseline"), number_or_null(row, "ratio")) {
            (Some(baseline), Some(ratio)) => {
                assert!((ratio - best / baseline).abs() <= 1e-9 * ratio.abs().max(1.0), "{name}: ratio")
            }
            (None, None) => {}
            (baseline, ratio) => panic!("{name}: baseline {baseline:?} and ratio {ratio:?} come together"),
        }
    }
    rows
}

/// How many of `rows` have a name that passes `test`.
fn named(rows: &[Value], test: &dyn Fn(&str) -> bool) -> usize {
    rows.iter().filter(|r| test(r["benchmark"].as_str().unwrap())).count()
}

#[test]
fn smoke_json_has_the_documented_fields_consistent_numbers_and_the_rows_scripts_read() {
    let doc = smoke_run(&[]);
    let rows = checked_rows(&doc, "all");
    for baseline in ["memcpy_gb_per_s", "memcpy_reused_buffer_gb_per_s", "memcmp_gb_per_s"] {
        assert!(doc["baselines"][baseline].as_f64().is_some_and(|v| v > 0.0), "baselines.{baseline}");
    }
    assert!(rows.len() > 20, "{} rows", rows.len());
    let named = |test: &dyn Fn(&str) -> bool| named(rows, test);
    // What the speed acceptance check matches (in full mode the names also say 10,000).
    assert_eq!(named(&|n| n.contains("CoW store fault") && n.contains("one plain store")), 1);
    assert_eq!(named(&|n| n.starts_with("owner lookup alone")), 1);
    assert_eq!(named(&|n| n.contains("owners + unmap/notify 10 views")), 1);
    assert_eq!(named(&|n| n.starts_with("dedupe")), 1);
    let first_random_cow = rows
        .iter()
        .find(|r| {
            let n = r["benchmark"].as_str().unwrap();
            n.contains("CoW pwrite") && n.contains("random")
        })
        .expect("a random-order CoW pwrite row");
    assert_eq!(first_random_cow["pool"], "memfd", "the first random CoW pwrite row is the memfd one");
    let dedupe = rows.iter().find(|r| r["benchmark"].as_str().unwrap().starts_with("dedupe")).unwrap();
    assert!(dedupe["ratio"].is_f64(), "the dedupe row has its ratio to memcmp");
    assert_thread_rows(rows);
    assert_rounds_keep_every_run(rows);
    // Every pool kind for the rows where the pool kind matters.
    for kind in ["memfd", "file on /dev/shm", "file on disk ("] {
        let of_kind = |what: &str| {
            rows.iter().any(|r| {
                r["pool"].as_str().is_some_and(|p| p.starts_with(kind))
                    && r["benchmark"].as_str().unwrap().contains(what)
            })
        };
        for what in ["1 MiB sequential pwrite", "4 KiB CoW pwrite", "durable on return"] {
            assert!(of_kind(what), "no {what} row on a pool: {kind}");
        }
    }
}

/// The rows measured in rounds (2 in smoke mode) have all their runs, measured: one per round for
/// the paired rows, and the 50 owner lookups and 5 memory failures, which do not all fit one a
/// round, spread over the rounds without a run lost.
fn assert_rounds_keep_every_run(rows: &[Value]) {
    let runs_of = |test: &dyn Fn(&str) -> bool| {
        let row = rows.iter().find(|r| test(r["benchmark"].as_str().unwrap())).expect("the row exists");
        assert_ne!(row["verdict"], "error", "{}: {}", row["benchmark"], row["error"]);
        row["runs"].as_u64().unwrap()
    };
    assert_eq!(runs_of(&|n| n.starts_with("owner lookup alone")), 50);
    assert_eq!(runs_of(&|n| n.contains("owners + unmap/notify 10 views")), 5);
    assert_eq!(runs_of(&|n| n.contains("owners + unmap/notify 100 views")), 5);
    for paired in ["bare store fault", "DAX CoW store fault", "dedupe"] {
        assert_eq!(runs_of(&|n| n.starts_with(paired)), 2, "{paired}");
    }
    assert_eq!(runs_of(&|n| n.starts_with("4 KiB CoW pwrite") && n.ends_with("random order")), 2);
    assert_eq!(runs_of(&|n| n.starts_with("4 KiB CoW pwrite") && n.ends_with("sequential order")), 2);
}

/// The two pwrite thread rows (in place, with the target; copy-on-write), each with its ratio to one
/// thread.
fn assert_thread_rows(rows: &[Value]) {
    let thread_rows: Vec<&Value> = rows
        .iter()
        .filter(|r| {
            r["benchmark"].as_str().unwrap().starts_with("4 KiB pwrite to private files, 2 threads vs 1")
        })
        .collect();
    assert_eq!(thread_rows.len(), 2);
    for row in &thread_rows {
        assert!(row["ratio"].is_f64(), "{}: {}", row["benchmark"], row["error"]);
        assert_eq!(row["unit"], "MiB/s");
    }
    assert!(thread_rows[0]["benchmark"].as_str().unwrap().contains("in place"));
    assert_ne!(thread_rows[0]["target"], "-");
}

#[test]
fn threads_only_smoke_json_has_both_thread_rows() {
    let doc = smoke_run(&["--threads-only"]);
    let rows = checked_rows(&doc, "threads");
    assert!(doc["baselines"].is_null());
    assert_eq!(rows.len(), 3);
    assert_thread_rows(rows);
    assert!(rows[2]["benchmark"].as_str().unwrap().contains("no file system"));
    assert!(rows[2]["ratio"].is_f64());
}

#[test]
fn cow_only_smoke_json_has_the_fault_and_pwrite_rows_under_the_full_runs_names() {
    let doc = smoke_run(&["--cow-only"]);
    let rows = checked_rows(&doc, "cow");
    assert!(doc["baselines"].is_null());
    let names: Vec<&str> = rows.iter().map(|r| r["benchmark"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert!(names[0].starts_with("bare store fault"), "{names:?}");
    assert_eq!(named(rows, &|n| n.contains("CoW store fault") && n.contains("one plain store")), 1);
    assert_eq!(named(rows, &|n| n.contains("CoW pwrite") && n.contains("random")), 1);
    assert_eq!(named(rows, &|n| n.contains("CoW pwrite") && n.contains("sequential")), 1);
    for row in rows {
        assert_eq!(row["runs"], 7, "{}", row["benchmark"]);
        assert_ne!(row["verdict"], "error", "{}: {}", row["benchmark"], row["error"]);
    }
    let fault = rows.iter().find(|r| r["benchmark"].as_str().unwrap().contains("CoW store fault")).unwrap();
    assert!(fault["ratio"].is_f64(), "the fault row has its ratio to the bare fault");
}

#[test]
fn scale_only_smoke_json_has_the_seven_scale_rows_each_measured_three_times() {
    let doc = smoke_run(&["--scale-only"]);
    let rows = checked_rows(&doc, "scale");
    let names: Vec<&str> = rows.iter().map(|r| r["benchmark"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 7, "{names:?}");
    let starts = [
        "scale: mount",
        "scale: memory the mount",
        "scale: first owner",
        "scale: memory once",
        "scale: the process's first 4 KiB",
        "scale: its next 4 KiB",
        "scale: process start",
    ];
    for (row, start) in rows.iter().zip(starts) {
        assert!(row["benchmark"].as_str().unwrap().starts_with(start), "{names:?}");
        assert_ne!(row["verdict"], "error", "{}: {}", row["benchmark"], row["error"]);
        assert_eq!(row["runs"], 3, "{}", row["benchmark"]);
    }
    // Memory per extent comes from a real mount: more than the 24 bytes an extent's triple takes.
    assert!(rows[1]["best"].as_f64().unwrap() > 24.0, "{}", rows[1]);
    // Building the ownership map takes memory of its own.
    assert!(rows[3]["best"].as_f64().unwrap() > rows[1]["best"].as_f64().unwrap(), "{}", rows[3]);
    assert!(rows[4]["ratio"].is_f64(), "the first checkpoint row has its ratio to the small pool");
    assert_eq!(rows[4]["verdict"], "info", "no target for the first: {}", rows[4]);
    assert!(rows[5]["ratio"].is_f64(), "the next checkpoint row has its ratio to the small pool");
    assert!(
        rows[5]["verdict"] == "pass" || rows[5]["verdict"] == "miss",
        "the target is judged on the next: {}",
        rows[5]
    );
    assert!(rows[6]["ratio"].is_f64(), "the process start row has its ratio to the small pool");
}
