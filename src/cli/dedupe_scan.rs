//! `ferrodax dedupe-scan POOL [PATH...]`: the job duperemove does for XFS. Every 4 KiB block of
//! every regular file under the paths (default: the whole tree) is hashed with xxh3; blocks with
//! equal hashes are paired with the first block seen with that hash, runs of consecutive pairs
//! are coalesced into ranges, and each range goes to the library's dedupe (FIDEDUPERANGE
//! semantics), which compares the bytes itself, so a hash collision costs a "differs", never data.
//!
//! Owns the walk, the hashing, the range planning and the report (text or JSON, `--dry-run`).
//! Must never change a byte of any file (only which pool blocks hold them), never dedupe a pair of
//! blocks that already share one pool block (so a second run does nothing), never reach below the
//! library API, and never draw progress when standard error is not a terminal.
//!
//! Planning, in scan order (paths in the order given, directories walked by name): for each
//! mapped full block, first try to extend the current range (the next source block has the same
//! hash and is not already this block's pool block; within one file the source must stay wholly
//! before the destination, as the kernel demands of non-overlapping ranges); otherwise start a new
//! range at the first block seen with this hash in an earlier file (with `--same-file`, also
//! earlier in the same file). Holes, a partial last block and blocks that cannot be read (bad
//! memory) are left alone. So a copy of a file dedupes against it block for block, in one range,
//! and the copy keeps its layout; with `--same-file`, a file of one repeated block also dedupes
//! against itself in ranges of 1, 2, 4, ... blocks (the most space saved, the most fragmented).

use super::commands::{fail, with_fs};
use super::df::human_size;
use super::progress::bytes_bar;
use clap::Args;
use ferrodax::format::record::InodeKind;
use ferrodax::{DedupeStatus, DedupeTarget, Error, File, Fs, OpenOptions};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

/// The file system block size: the unit that is hashed and deduped.
const BLOCK_SIZE: u64 = 4096;
/// Bytes read per call while hashing.
const READ_CHUNK_BLOCKS: u64 = 256;
/// The largest dedupe request the library (like the kernel) accepts in one call: 1 GiB.
const MAX_RANGE_BLOCKS: u64 = (1 << 30) / BLOCK_SIZE;

/// Find identical 4 KiB blocks (xxh3 hashes) and share them with dedupe (like duperemove).
#[derive(Args, Debug)]
pub struct DedupeScanArgs {
    /// The pool.
    pool: PathBuf,
    /// Files or directories to scan (default: the whole tree, /).
    paths: Vec<String>,
    /// Report what would be deduped; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Also dedupe blocks against earlier blocks of the same file (duperemove's
    /// --dedupe-options=same): saves the most space, fragments such files into one extent a block.
    #[arg(long)]
    same_file: bool,
}

/// One hashed block: its xxh3 hash and the pool block that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HashedBlock {
    hash: u64,
    pool_block: u64,
}

/// A regular file that was scanned: per full block, its hash, or `None` (hole, unreadable).
struct ScannedFile {
    path: String,
    blocks: Vec<Option<HashedBlock>>,
}

/// A planned dedupe: `blocks` blocks of `destination` from `destination_block` equal the same
/// number of blocks of `source` from `source_block` (indices into the scanned files).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PlannedRange {
    source: usize,
    source_block: u64,
    destination: usize,
    destination_block: u64,
    blocks: u64,
}

/// One range in the report.
#[derive(Debug, Clone, serde::Serialize)]
struct RangeReport {
    source: String,
    source_offset: u64,
    destination: String,
    destination_offset: u64,
    length: u64,
    /// "deduped", "would dedupe", "differs" (the bytes changed since the scan, or a hash
    /// collision) or "failed: <error>".
    outcome: String,
}

/// What a scan found and did.
#[derive(Debug, Clone, serde::Serialize)]
struct ScanReport {
    dry_run: bool,
    files_scanned: usize,
    /// Bytes read and hashed (full mapped blocks).
    bytes_scanned: u64,
    /// Blocks that could not be read (bad memory) and were left alone.
    unreadable_blocks: u64,
    ranges: Vec<RangeReport>,
    /// Bytes now sharing blocks (with --dry-run: that would).
    bytes_deduped: u64,
    /// Pool bytes freed by the run (`None` with --dry-run).
    bytes_saved: Option<u64>,
    /// Destination files with at least one range deduped (or, with --dry-run, to dedupe).
    files_deduped: usize,
}

use super::commands::{join, read_options as read_only};

fn read_write() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    options
}

/// Every regular file at or under `paths`, directories walked by name, each file once. A symlink
/// named on the command line is followed; one met inside a directory is skipped (as duperemove
/// does), so a dangling link or a link to an ancestor neither fails nor repeats the walk.
fn regular_files(fs: &Fs, paths: &[String]) -> Result<Vec<String>, i32> {
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<(String, bool)> = paths.iter().rev().map(|p| (p.clone(), true)).collect();
    while let Some((path, named)) = stack.pop() {
        let st = if named { fs.metadata(&path) } else { fs.symlink_metadata(&path) };
        let st = st.map_err(|e| fail(format_args!("dedupe-scan {path}"), &e))?;
        match st.kind {
            InodeKind::File => {
                if seen.insert(st.ino) {
                    found.push(path);
                }
            }
            InodeKind::Symlink => {}
            InodeKind::Dir => {
                let mut entries =
                    fs.read_dir(&path).map_err(|e| fail(format_args!("dedupe-scan {path}"), &e))?;
                entries.sort_by(|a, b| a.name.cmp(&b.name));
                stack.extend(entries.iter().rev().map(|entry| (join(&path, &entry.name), false)));
            }
        }
    }
    Ok(found)
}

/// Hashes `count` blocks of `file` from `first` into `out`, one read per block; blocks that
/// cannot be read whole stay `None`. Returns how many could not be read.
fn hash_block_by_block(
    file: &File,
    first: u64,
    count: u64,
    out: &mut [Option<HashedBlock>],
    pool_block: u64,
) -> u64 {
    let mut buffer = vec![0u8; BLOCK_SIZE as usize];
    let mut unreadable = 0;
    for i in 0..count {
        match file.read_at(&mut buffer, (first + i) * BLOCK_SIZE) {
            Ok(n) if n == buffer.len() => {
                out[(first + i) as usize] = Some(HashedBlock {
                    hash: xxhash_rust::xxh3::xxh3_64(&buffer),
                    pool_block: pool_block + i,
                })
            }
            _ => unreadable += 1,
        }
    }
    unreadable
}

/// Reads and hashes every mapped full block of `path`. Returns the file and the blocks that
/// could not be read.
fn scan_file(fs: &Fs, path: &str, bar: &indicatif::ProgressBar) -> Result<(ScannedFile, u64), Error> {
    let file = fs.open(path, &read_only())?;
    let full_blocks = file.metadata()?.size / BLOCK_SIZE;
    let mut blocks = vec![None; full_blocks as usize];
    let mut unreadable = 0;
    let mut buffer = vec![0u8; (READ_CHUNK_BLOCKS * BLOCK_SIZE) as usize];
    for extent in fs.fiemap(&file)? {
        let first = extent.logical / BLOCK_SIZE;
        let end = ((extent.logical + extent.length) / BLOCK_SIZE).min(full_blocks);
        let mut block = first;
        while block < end {
            let count = (end - block).min(READ_CHUNK_BLOCKS);
            let pool_block = extent.physical / BLOCK_SIZE + (block - first);
            let want = (count * BLOCK_SIZE) as usize;
            match file.read_at(&mut buffer[..want], block * BLOCK_SIZE) {
                Ok(n) if n == want => {
                    for (i, data) in buffer[..want].chunks_exact(BLOCK_SIZE as usize).enumerate() {
                        blocks[(block + i as u64) as usize] = Some(HashedBlock {
                            hash: xxhash_rust::xxh3::xxh3_64(data),
                            pool_block: pool_block + i as u64,
                        });
                    }
                }
                // A short read or EIO: bad memory somewhere in the chunk; go block by block.
                _ => unreadable += hash_block_by_block(&file, block, count, &mut blocks, pool_block),
            }
            bar.inc(count * BLOCK_SIZE);
            block += count;
        }
    }
    Ok((ScannedFile { path: path.to_string(), blocks }, unreadable))
}

/// The ranges to dedupe (see the module documentation for the rule).
fn plan(files: &[ScannedFile], same_file: bool) -> Vec<PlannedRange> {
    let block_at = |file: usize, block: u64| files[file].blocks.get(block as usize).copied().flatten();
    // Per hash: the first block seen with it, and the first seen in a file after that one's.
    let mut first_seen: HashMap<u64, (usize, u64)> = HashMap::new();
    let mut planned = Vec::new();
    for (f, scanned) in files.iter().enumerate() {
        let mut current: Option<PlannedRange> = None;
        for (b, this) in scanned.blocks.iter().enumerate() {
            let b = b as u64;
            let Some(this) = *this else {
                planned.extend(current.take());
                continue;
            };
            let extended = current.as_mut().is_some_and(|range| {
                let next_source = range.source_block + range.blocks;
                let source_stays_before = range.source != f || next_source < range.destination_block;
                let continues = block_at(range.source, next_source)
                    .is_some_and(|s| s.hash == this.hash && s.pool_block != this.pool_block);
                if range.blocks < MAX_RANGE_BLOCKS && source_stays_before && continues {
                    range.blocks += 1;
                    true
                } else {
                    false
                }
            });
            if !extended {
                planned.extend(current.take());
                let candidate =
                    first_seen.get(&this.hash).copied().filter(|&(source, _)| same_file || source != f);
                if let Some((source, source_block)) = candidate {
                    let not_yet_shared =
                        block_at(source, source_block).is_some_and(|s| s.pool_block != this.pool_block);
                    if not_yet_shared {
                        current = Some(PlannedRange {
                            source,
                            source_block,
                            destination: f,
                            destination_block: b,
                            blocks: 1,
                        });
                    }
                }
            }
            first_seen.entry(this.hash).or_insert((f, b));
        }
        planned.extend(current.take());
    }
    planned
}

/// Runs one planned range through the library's dedupe; returns the outcome and bytes deduped.
fn dedupe_range(fs: &Fs, open: &HashMap<usize, File>, range: &PlannedRange) -> (String, u64) {
    let (source, destination) = (&open[&range.source], &open[&range.destination]);
    let target = DedupeTarget { file: destination, offset: range.destination_block * BLOCK_SIZE };
    let length = range.blocks * BLOCK_SIZE;
    match fs.dedupe(source, range.source_block * BLOCK_SIZE, length, &[target]) {
        Ok(statuses) => match statuses.into_iter().next() {
            Some(DedupeStatus::Same { bytes_deduped }) => ("deduped".to_string(), bytes_deduped),
            Some(DedupeStatus::Differs) => ("differs".to_string(), 0),
            Some(DedupeStatus::Failed(e)) => (format!("failed: {}", super::commands::describe(&e)), 0),
            None => ("failed: no status".to_string(), 0),
        },
        Err(e) => (format!("failed: {}", super::commands::describe(&e)), 0),
    }
}

/// The report as text: one line per range, then a summary.
fn text(report: &ScanReport) -> String {
    let mut out = String::new();
    for r in &report.ranges {
        out.push_str(&format!(
            "{} [{}, +{}) = {} [{}, +{}): {}\n",
            r.destination, r.destination_offset, r.length, r.source, r.source_offset, r.length, r.outcome
        ));
    }
    let verb = if report.dry_run { "would dedupe" } else { "deduped" };
    out.push_str(&format!(
        "{verb} {} ({} bytes) in {} range(s) over {} file(s)",
        human_size(report.bytes_deduped),
        report.bytes_deduped,
        report.ranges.len(),
        report.files_deduped
    ));
    match report.bytes_saved {
        Some(saved) => out.push_str(&format!("; saved {} ({saved} bytes)", human_size(saved))),
        None => out.push_str("; dry run, nothing changed"),
    }
    out.push_str(&format!(
        "; scanned {} file(s), {} ({} bytes)",
        report.files_scanned,
        human_size(report.bytes_scanned),
        report.bytes_scanned
    ));
    if report.unreadable_blocks > 0 {
        out.push_str(&format!("; {} unreadable block(s) left alone", report.unreadable_blocks));
    }
    out.push('\n');
    out
}

/// `ferrodax dedupe-scan POOL [PATH...] [--dry-run] [--json]`. Exit 0 when every range was
/// deduped (or, with --dry-run, planned), 1 when a path could not be scanned or a range failed;
/// a range whose bytes differ after all (changed since the scan) is reported, not a failure.
pub fn run(args: DedupeScanArgs) -> i32 {
    let paths = if args.paths.is_empty() { vec!["/".to_string()] } else { args.paths.clone() };
    with_fs(&args.pool, args.dry_run, |fs| {
        let names = regular_files(fs, &paths)?;
        let total: u64 =
            names.iter().map(|p| fs.metadata(p).map_or(0, |st| st.size / BLOCK_SIZE * BLOCK_SIZE)).sum();
        let bar = bytes_bar(total, "hashing");
        let mut files = Vec::with_capacity(names.len());
        let mut unreadable_blocks = 0;
        let mut bytes_scanned = 0;
        for name in &names {
            let (scanned, unreadable) =
                scan_file(fs, name, &bar).map_err(|e| fail(format_args!("dedupe-scan {name}"), &e))?;
            bytes_scanned += scanned.blocks.iter().flatten().count() as u64 * BLOCK_SIZE;
            unreadable_blocks += unreadable;
            files.push(scanned);
        }
        bar.finish_and_clear();
        let planned = plan(&files, args.same_file);

        let data_blocks = || {
            fs.space_usage()
                .map(|u| u.data_blocks)
                .map_err(|e| fail(format_args!("dedupe-scan {}", args.pool.display()), &e))
        };
        let used_before = data_blocks()?;
        let mut open: HashMap<usize, File> = HashMap::new();
        if !args.dry_run {
            for index in planned.iter().flat_map(|r| [r.source, r.destination]) {
                if let std::collections::hash_map::Entry::Vacant(slot) = open.entry(index) {
                    let path = &files[index].path;
                    let file = fs
                        .open(path, &read_write())
                        .map_err(|e| fail(format_args!("dedupe-scan {path}"), &e))?;
                    slot.insert(file);
                }
            }
        }
        let bar = bytes_bar(planned.iter().map(|r| r.blocks * BLOCK_SIZE).sum(), "deduping");
        let mut ranges = Vec::with_capacity(planned.len());
        let mut bytes_deduped = 0;
        let mut destinations = HashSet::new();
        let mut failed = false;
        for range in &planned {
            let (outcome, bytes) = if args.dry_run {
                ("would dedupe".to_string(), range.blocks * BLOCK_SIZE)
            } else {
                dedupe_range(fs, &open, range)
            };
            failed |= outcome.starts_with("failed");
            if bytes > 0 {
                destinations.insert(range.destination);
            }
            bytes_deduped += bytes;
            bar.inc(range.blocks * BLOCK_SIZE);
            ranges.push(RangeReport {
                source: files[range.source].path.clone(),
                source_offset: range.source_block * BLOCK_SIZE,
                destination: files[range.destination].path.clone(),
                destination_offset: range.destination_block * BLOCK_SIZE,
                length: range.blocks * BLOCK_SIZE,
                outcome,
            });
        }
        bar.finish_and_clear();
        drop(open);
        let bytes_saved =
            if args.dry_run { None } else { Some(used_before.saturating_sub(data_blocks()?) * BLOCK_SIZE) };
        let report = ScanReport {
            dry_run: args.dry_run,
            files_scanned: files.len(),
            bytes_scanned,
            unreadable_blocks,
            ranges,
            bytes_deduped,
            bytes_saved,
            files_deduped: destinations.len(),
        };
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report).expect("the scan report serializes"));
        } else {
            print!("{}", text(&report));
        }
        if failed {
            Err(1)
        } else {
            Ok(())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, blocks: &[(u64, u64)]) -> ScannedFile {
        ScannedFile {
            path: path.to_string(),
            blocks: blocks.iter().map(|&(hash, pool_block)| Some(HashedBlock { hash, pool_block })).collect(),
        }
    }

    #[test]
    fn plan_coalesces_a_copied_file_into_one_range() {
        let files = [file("/x", &[(1, 10), (2, 11), (3, 12)]), file("/y", &[(1, 20), (2, 21), (3, 22)])];
        assert_eq!(
            plan(&files, false),
            vec![PlannedRange {
                source: 0,
                source_block: 0,
                destination: 1,
                destination_block: 0,
                blocks: 3
            }]
        );
    }

    #[test]
    fn plan_skips_blocks_that_already_share_a_pool_block() {
        let files = [file("/x", &[(1, 10), (2, 11), (3, 12)]), file("/y", &[(1, 10), (2, 21), (3, 12)])];
        assert_eq!(
            plan(&files, false),
            vec![PlannedRange {
                source: 0,
                source_block: 1,
                destination: 1,
                destination_block: 1,
                blocks: 1
            }]
        );
    }

    #[test]
    fn plan_dedupes_a_repeated_block_inside_one_file_in_doubling_non_overlapping_ranges() {
        let files = [file("/a", &(0..8).map(|i| (7, 100 + i)).collect::<Vec<_>>())];
        let lengths: Vec<(u64, u64, u64)> =
            plan(&files, true).iter().map(|r| (r.source_block, r.destination_block, r.blocks)).collect();
        assert_eq!(lengths, vec![(0, 1, 1), (0, 2, 2), (0, 4, 4)]);
    }

    #[test]
    fn plan_without_same_file_pairs_a_copy_block_for_block_and_leaves_a_repeated_block_file_alone() {
        let one_value =
            |path: &str, base: u64| file(path, &(0..4).map(|i| (7, base + i)).collect::<Vec<_>>());
        let files = [one_value("/x", 100), one_value("/y", 200)];
        let ranges: Vec<(usize, u64, usize, u64, u64)> = plan(&files, false)
            .iter()
            .map(|r| (r.source, r.source_block, r.destination, r.destination_block, r.blocks))
            .collect();
        assert_eq!(ranges, vec![(0, 0, 1, 0, 4)], "/y's blocks pair with /x's at the same offsets only");
    }
}
