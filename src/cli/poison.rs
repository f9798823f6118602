//! `ferrodax poison POOL OFFSET [LEN]` (inject a memory failure and report it as text, JSON, a
//! saved JSON file and an HTML picture) and `ferrodax report FILE --html OUT` (draw a saved
//! report).
//!
//! Owns where a failure's report goes: standard output (text or `--json`), `--save FILE` (the
//! same JSON, kept for later: the pool's on-media format has no place for reports, and a failure
//! is rare enough that a file per failure beside the pool is the honest store), and `--html FILE`
//! (the picture, see `report_html`). Must never reach below the library API, and must never
//! leave a half-written report file behind (each file is written whole, then renamed into place).

use super::commands::{fail, with_fs};
use super::report_html::{render, SavedReport};
use ferrodax::Error;
use std::path::{Path, PathBuf};

/// Writes `contents` to `path` through a temporary file in the same directory and a rename.
fn write_whole(path: &Path, contents: &str) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&temporary, contents)?;
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

/// Where `poison` sends its report besides standard output.
pub struct PoisonOutputs {
    /// Print JSON instead of text.
    pub json: bool,
    /// Write the HTML picture here.
    pub html: Option<PathBuf>,
    /// Write the JSON report here, for `ferrodax report`.
    pub save: Option<PathBuf>,
}

/// `ferrodax poison POOL OFFSET [LEN] [--json] [--html FILE] [--save FILE]`: injects a memory
/// failure (SPEC section 5) and reports owners, views told, metadata repaired, blocks
/// quarantined. The failure is recorded before any report file is written; a report file that
/// cannot be written makes the exit status 1.
pub fn poison(pool: &Path, offset: u64, len: u64, outputs: &PoisonOutputs) -> i32 {
    with_fs(pool, false, |fs| {
        let report = fs
            .memory_failure(offset, len, ferrodax::memfail::FailureFlags::default())
            .map_err(|e| fail(format_args!("poison {offset}"), &e))?;
        let json = serde_json::to_string_pretty(&report).expect("report serializes");
        if outputs.json {
            println!("{json}");
        } else {
            print!("{report}");
        }
        if let Some(save) = &outputs.save {
            write_whole(save, &format!("{json}\n")).map_err(|e| {
                fail(format_args!("poison --save {}", save.display()), &Error::os(save.display(), e))
            })?;
        }
        if let Some(html) = &outputs.html {
            let saved = SavedReport::from_json(&json).expect("a fresh report reads back");
            write_whole(html, &render(&saved)).map_err(|e| {
                fail(format_args!("poison --html {}", html.display()), &Error::os(html.display(), e))
            })?;
        }
        Ok(())
    })
}

/// `ferrodax report FILE --html OUT`: draws a report saved by `poison --save` (or printed by
/// `poison --json`) as the same HTML page `poison --html` writes.
pub fn report(saved: &Path, html: &Path) -> i32 {
    let context = format!("report {}", saved.display());
    let text = match std::fs::read_to_string(saved) {
        Ok(text) => text,
        Err(e) => return fail(&context, &Error::os(saved.display(), e)),
    };
    let report = match SavedReport::from_json(&text) {
        Ok(report) => report,
        Err(detail) => return fail(&context, &Error::Invalid(detail)),
    };
    match write_whole(html, &render(&report)) {
        Ok(()) => 0,
        Err(e) => fail(format_args!("report --html {}", html.display()), &Error::os(html.display(), e)),
    }
}
