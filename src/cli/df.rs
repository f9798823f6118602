//! `ferrodax df POOL`: where the pool's space is, in the spirit of `df -h` and of
//! `xfs_spaceman -c freesp` (a histogram of free runs by size).
//!
//! Owns the meaning of each column and its output (text in human sizes or bytes, or JSON). "Avail"
//! is what a file can actually get now: the free blocks less the reserve that keeps the next
//! checkpoint writable, which is shown on its own ("Reserved"). Must never reach below the library
//! API and never write to the pool (it mounts read-only).

use super::commands::{fail, with_fs};
use ferrodax::SpaceUsage;
use std::fmt::Write as _;
use std::path::Path;

/// The file system block size.
const BLOCK_SIZE: u64 = 4096;

/// The figures `df` prints, in bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
struct DfFigures {
    /// The pool as named on the command line.
    pool: String,
    /// The block size.
    block_size: u64,
    /// The whole pool.
    size_bytes: u64,
    /// Owned by files or metadata (shared blocks counted once).
    used_bytes: u64,
    /// Owned by files (shared blocks counted once).
    data_bytes: u64,
    /// Owned by metadata structures (superblocks, log, checkpoint).
    metadata_bytes: u64,
    /// Owned by more than one file (reflink, dedupe).
    shared_bytes: u64,
    /// What a file can get now.
    available_bytes: u64,
    /// Free, but kept back so the next checkpoint always fits.
    reserved_bytes: u64,
    /// Free in all (available + reserved).
    free_bytes: u64,
    /// Bad memory, never used again.
    quarantined_bytes: u64,
    /// used / (used + available), rounded up, as df computes it.
    use_percent: u64,
    /// Free runs by size, ascending.
    free_runs: Vec<FreeRunBucket>,
}

/// One line of the free-run histogram: runs of `from_blocks..=to_blocks` blocks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
struct FreeRunBucket {
    /// Smallest run length of the bucket, in blocks.
    from_blocks: u64,
    /// Largest run length of the bucket, in blocks.
    to_blocks: u64,
    /// Runs in the bucket.
    runs: u64,
    /// Blocks in those runs.
    blocks: u64,
}

impl DfFigures {
    fn new(pool: &Path, usage: &SpaceUsage) -> DfFigures {
        let used_blocks = usage.data_blocks + usage.metadata_blocks;
        let avail = usage.available_blocks;
        let use_percent =
            if used_blocks + avail == 0 { 0 } else { (used_blocks * 100).div_ceil(used_blocks + avail) };
        DfFigures {
            pool: pool.display().to_string(),
            block_size: BLOCK_SIZE,
            size_bytes: usage.total_blocks * BLOCK_SIZE,
            used_bytes: used_blocks * BLOCK_SIZE,
            data_bytes: usage.data_blocks * BLOCK_SIZE,
            metadata_bytes: usage.metadata_blocks * BLOCK_SIZE,
            shared_bytes: usage.shared_blocks * BLOCK_SIZE,
            available_bytes: avail * BLOCK_SIZE,
            reserved_bytes: (usage.free_blocks - avail) * BLOCK_SIZE,
            free_bytes: usage.free_blocks * BLOCK_SIZE,
            quarantined_bytes: usage.quarantined_blocks * BLOCK_SIZE,
            use_percent,
            free_runs: usage
                .free_runs_by_size
                .iter()
                .map(|&(from, runs, blocks)| FreeRunBucket {
                    from_blocks: from,
                    to_blocks: from * 2 - 1,
                    runs,
                    blocks,
                })
                .collect(),
        }
    }
}

/// A size as `df -h` prints it: powers of 1024 with K/M/G/T/P/E, one decimal below 10, rounded
/// up; bytes below 1 KiB as a plain number.
pub(super) fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if bytes < 1024 {
        return bytes.to_string();
    }
    let mut unit = 0;
    let mut scale = 1024u64;
    while unit + 1 < UNITS.len() && bytes / scale >= 1024 {
        unit += 1;
        scale *= 1024;
    }
    // Tenths, rounded up (df rounds sizes up so a full disk never shows room).
    let tenths = (u128::from(bytes) * 10).div_ceil(u128::from(scale));
    if tenths < 100 {
        format!("{}.{}{}", tenths / 10, tenths % 10, UNITS[unit])
    } else {
        format!("{}{}", u128::from(bytes).div_ceil(u128::from(scale)), UNITS[unit])
    }
}

/// The df table: a header and one line, every column as wide as its widest cell; sizes
/// human-readable unless `bytes`.
fn table(f: &DfFigures, bytes: bool) -> String {
    let show = |n: u64| if bytes { n.to_string() } else { human_size(n) };
    let cells: [(&str, String); 8] = [
        ("Pool", f.pool.clone()),
        ("Size", show(f.size_bytes)),
        ("Used", show(f.used_bytes)),
        ("Avail", show(f.available_bytes)),
        ("Use%", format!("{}%", f.use_percent)),
        ("Shared", show(f.shared_bytes)),
        ("Reserved", show(f.reserved_bytes)),
        ("Quarantined", show(f.quarantined_bytes)),
    ];
    let mut header = String::new();
    let mut line = String::new();
    for (i, (name, value)) in cells.iter().enumerate() {
        let width = name.len().max(value.len());
        if i == 0 {
            let _ = write!(header, "{name:<width$}");
            let _ = write!(line, "{value:<width$}");
        } else {
            let _ = write!(header, " {name:>width$}");
            let _ = write!(line, " {value:>width$}");
        }
    }
    format!("{header}\n{line}\n")
}

/// The free-run histogram, as `xfs_spaceman -c freesp` prints it (blocks of 4 KiB).
fn freesp(f: &DfFigures) -> String {
    let total: u64 = f.free_runs.iter().map(|b| b.blocks).sum();
    let mut text = format!("{:>10} {:>10} {:>10} {:>10} {:>6}\n", "from", "to", "extents", "blocks", "pct");
    for b in &f.free_runs {
        let pct = if total == 0 { 0.0 } else { b.blocks as f64 * 100.0 / total as f64 };
        let _ = writeln!(
            text,
            "{:>10} {:>10} {:>10} {:>10} {:>6.2}",
            b.from_blocks, b.to_blocks, b.runs, b.blocks, pct
        );
    }
    text
}

/// `ferrodax df POOL [-b] [--freesp] [--json]`: size, used, available, use%, shared, reserved and
/// quarantined space; `--freesp` adds the histogram of free runs; `--json` prints every figure
/// in bytes and the histogram.
pub fn run(pool: &Path, bytes: bool, free_histogram: bool, json: bool) -> i32 {
    with_fs(pool, true, |fs| {
        let usage = fs.space_usage().map_err(|e| fail(format_args!("df {}", pool.display()), &e))?;
        let figures = DfFigures::new(pool, &usage);
        if json {
            println!("{}", serde_json::to_string_pretty(&figures).expect("df figures serialize"));
            return Ok(());
        }
        print!("{}", table(&figures, bytes));
        if free_histogram {
            println!();
            print!("{}", freesp(&figures));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::human_size;

    #[test]
    fn human_size_rounds_up_like_df_h() {
        assert_eq!(human_size(0), "0");
        assert_eq!(human_size(1023), "1023");
        assert_eq!(human_size(1024), "1.0K");
        assert_eq!(human_size(1025), "1.1K");
        assert_eq!(human_size(16 << 20), "16M");
        assert_eq!(human_size((16 << 20) + 1), "17M");
        assert_eq!(human_size(1_258_291), "1.2M");
        assert_eq!(human_size(1_258_292), "1.3M");
        assert_eq!(human_size(1 << 30), "1.0G");
        assert_eq!(human_size(10 << 10), "10K");
    }
}
