//! xfs_io's size syntax, shared by the `ferrodax` command line and the tools: a decimal or `0x`
//! hexadecimal number with an optional k/m/g/t/p suffix (powers of 1024; `b` = bytes). Must never
//! accept a number it cannot represent: too large is an error that says so.

/// Parses a size with an optional k/m/g/t/p suffix (powers of 1024; `b` = bytes), like xfs_io.
/// The number is decimal or `0x` hexadecimal; hex digits are taken greedily, as strtoll does, so
/// `0xcd` is 205 and `0x10k` is 16 KiB.
pub fn parse_size(text: &str) -> Result<u64, String> {
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
        _ => return Err(format!("bad size suffix in {text:?}")),
    };
    let value = u64::from_str_radix(digits, radix).map_err(|e| match e.kind() {
        std::num::IntErrorKind::PosOverflow => format!("size {text:?} is out of range"),
        _ => format!("non-numeric size {text:?}"),
    })?;
    value.checked_mul(1u64 << shift).ok_or_else(|| format!("size {text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

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
        assert!(parse_size("99999999999999999999").unwrap_err().contains("out of range"));
        assert!(parse_size("16777216t").unwrap_err().contains("out of range"));
        assert!(parse_size("k").unwrap_err().contains("non-numeric"));
        assert!(parse_size("1q").unwrap_err().contains("suffix"));
    }
}
