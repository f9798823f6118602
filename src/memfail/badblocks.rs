//! Bad-block lists in the pmem driver's sysfs format.
//!
//! `/sys/block/pmemX/badblocks` (and files in the same format) hold one range per line:
//! `first_sector count`, both decimal, in 512-byte sectors. Owns parsing and turning sectors into
//! pool blocks; never touches the file system.

use crate::error::{Error, Result};
use crate::format::BLOCK_SIZE;

/// Bytes per sector in a badblocks list.
pub const SECTOR: u64 = 512;

/// One bad range, in pool bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadRange {
    /// First bad byte.
    pub offset: u64,
    /// Number of bad bytes.
    pub len: u64,
}

impl BadRange {
    /// The pool blocks the range touches, as (first block, count).
    pub fn blocks(&self) -> (u64, u64) {
        let first = self.offset / BLOCK_SIZE;
        let end = (self.offset + self.len).div_ceil(BLOCK_SIZE);
        (first, end - first)
    }
}

/// Parses a badblocks list; `source` names it in errors. Blank lines and `#` comments are skipped.
pub fn parse(text: &str, source: &str) -> Result<Vec<BadRange>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split_whitespace();
        let parse_field = |f: Option<&str>| -> Result<u64> {
            f.and_then(|f| f.parse::<u64>().ok()).ok_or_else(|| {
                Error::Invalid(format!("{source}:{}: expected \"first_sector count\", got {line:?}", n + 1))
            })
        };
        let first = parse_field(fields.next())?;
        let count = parse_field(fields.next())?;
        if fields.next().is_some() || count == 0 {
            return Err(Error::Invalid(format!("{source}:{}: bad range {line:?}", n + 1)));
        }
        let offset = first
            .checked_mul(SECTOR)
            .ok_or_else(|| Error::Invalid(format!("{source}:{}: sector {first} overflows", n + 1)))?;
        let len = count
            .checked_mul(SECTOR)
            .filter(|l| offset.checked_add(*l).is_some())
            .ok_or_else(|| Error::Invalid(format!("{source}:{}: count {count} overflows", n + 1)))?;
        out.push(BadRange { offset, len });
    }
    Ok(out)
}

/// Formats bad block runs (first block, count) as a badblocks list.
pub fn format(runs: &[(u64, u64)]) -> String {
    runs.iter().map(|&(b, n)| format!("{} {}\n", b * BLOCK_SIZE / SECTOR, n * BLOCK_SIZE / SECTOR)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sectors_become_the_blocks_they_touch() {
        let r = parse("# pmem0\n8 1\n\n16 16\n", "list").unwrap();
        assert_eq!(r, vec![BadRange { offset: 4096, len: 512 }, BadRange { offset: 8192, len: 8192 }]);
        assert_eq!(r[0].blocks(), (1, 1));
        assert_eq!(r[1].blocks(), (2, 2));
        assert_eq!(format(&[(2, 2)]), "16 16\n");
        assert!(parse("8", "list").unwrap_err().to_string().contains("list:1"));
        assert!(parse("8 0", "list").is_err());
        assert!(parse("x 1", "list").is_err());
    }
}
