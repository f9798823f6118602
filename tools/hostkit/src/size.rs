//! xfs_io's size syntax, shared by the `ferrodax` command line and the tools: a decimal or `0x`
//! hexadecimal number with an optional k/m/g/t/p suffix (powers of 1024; `b` = bytes). Must never
//! accept a number it cannot represent: too large is an error that says so ([`SizeError::OutOfRange`]),
//! never "non-numeric".

use std::fmt;

/// Why a size did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeError {
    /// No number at all (or no digits after `0x`).
    NotANumber(String),
    /// A number followed by something that is not a suffix.
    BadSuffix(String),
    /// A number that does not fit in 64 bits (after its suffix).
    OutOfRange(String),
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeError::NotANumber(text) => write!(f, "non-numeric size {text:?}"),
            SizeError::BadSuffix(text) => write!(f, "bad size suffix in {text:?}"),
            SizeError::OutOfRange(text) => write!(f, "size {text:?} is out of range"),
        }
    }
}

impl std::error::Error for SizeError {}

/// Parses a size with an optional k/m/g/t/p suffix (powers of 1024; `b` = bytes), like xfs_io.
/// The number is decimal or `0x` hexadecimal; hex digits are taken greedily, as strtoll does, so
/// `0xcd` is 205 and `0x10k` is 16 KiB.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    let (digits, radix, rest) = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => {
            let end = hex.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(hex.len());
            (&hex[..end], 16, &hex[end..])
        }
        None => {
            let end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            (&t[..end], 10, &t[end..])
        }
    };
    let shift = match rest.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        _ => return Err(SizeError::BadSuffix(text.into())),
    };
    let value = u64::from_str_radix(digits, radix).map_err(|e| match e.kind() {
        std::num::IntErrorKind::PosOverflow => SizeError::OutOfRange(text.into()),
        _ => SizeError::NotANumber(text.into()),
    })?;
    value.checked_mul(1u64 << shift).ok_or_else(|| SizeError::OutOfRange(text.into()))
}

#[cfg(test)]
mod tests {
    use super::{parse_size, SizeError};

    #[test]
    fn suffixes_are_powers_of_1024_and_hex_digits_are_taken_greedily() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert_eq!(parse_size("0xcd"), Ok(205));
        assert_eq!(parse_size("0x10k"), Ok(16 << 10));
    }

    #[test]
    fn a_number_too_large_for_64_bits_is_out_of_range_not_non_numeric() {
        let too_big = parse_size("99999999999999999999").unwrap_err();
        assert_eq!(too_big, SizeError::OutOfRange("99999999999999999999".into()));
        assert_eq!(too_big.to_string(), "size \"99999999999999999999\" is out of range");
        assert!(matches!(parse_size("16777216t"), Err(SizeError::OutOfRange(_))));
        assert!(matches!(parse_size("k"), Err(SizeError::NotANumber(_))));
        assert!(matches!(parse_size("1q"), Err(SizeError::BadSuffix(_))));
    }
}
