//! Duration flags (`--wait`, `--timeout`, `--lease`, `--grace`), checked while the
//! command line is read: a value too large to wait for is refused with an error naming
//! the flag (exit status 2) before anything is done, instead of overflowing later.

/// The longest duration a flag accepts: one year.
pub const MAX_SECONDS: u64 = 365 * 24 * 60 * 60;

/// The longest duration in milliseconds a flag accepts: one year.
pub const MAX_MILLIS: i64 = MAX_SECONDS as i64 * 1000;

/// A number of seconds, 0 to [`MAX_SECONDS`] (a clap value parser).
pub fn seconds(text: &str) -> Result<u64, String> {
    let n = whole_number(text, "seconds")?;
    if n > u128::from(MAX_SECONDS) {
        return Err(format!(
            "{text} seconds is too long: at most {MAX_SECONDS} (one year)"
        ));
    }
    Ok(n as u64)
}

/// A number of seconds, 1 to [`MAX_SECONDS`]: a lease of 0 s expires at once.
pub fn positive_seconds(text: &str) -> Result<u64, String> {
    match seconds(text)? {
        0 => Err("must be at least 1 second".into()),
        n => Ok(n),
    }
}

/// A number of milliseconds, 0 to [`MAX_MILLIS`].
pub fn millis(text: &str) -> Result<i64, String> {
    let n = whole_number(text, "milliseconds")?;
    if n > MAX_MILLIS as u128 {
        return Err(format!(
            "{text} ms is too long: at most {MAX_MILLIS} (one year)"
        ));
    }
    Ok(n as i64)
}

/// A non-negative whole number of any size (so "too large" is said as such).
fn whole_number(text: &str, unit: &str) -> Result<u128, String> {
    let digits = text.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{text}' is not a whole number of {unit}"));
    }
    // More digits than a u128 holds is too long all the same.
    Ok(digits.parse::<u128>().unwrap_or(u128::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_bounded() {
        assert_eq!(seconds("0"), Ok(0));
        assert_eq!(seconds(" 30 "), Ok(30));
        assert_eq!(seconds("31536000"), Ok(MAX_SECONDS));
        assert!(seconds("31536001").unwrap_err().contains("too long"));
        assert!(seconds("18446744073709551615")
            .unwrap_err()
            .contains("too long"));
        assert!(seconds("99999999999999999999999999999999999999999999")
            .unwrap_err()
            .contains("too long"));
        assert!(seconds("-1").unwrap_err().contains("not a whole number"));
        assert!(seconds("1.5").is_err());
        assert!(seconds("").is_err());
        assert_eq!(positive_seconds("1"), Ok(1));
        assert!(positive_seconds("0").is_err());
        assert_eq!(millis("2500"), Ok(2500));
        assert_eq!(millis("31536000000"), Ok(MAX_MILLIS));
        assert!(millis("31536000001").unwrap_err().contains("too long"));
        assert!(millis("-5").is_err());
    }
}
