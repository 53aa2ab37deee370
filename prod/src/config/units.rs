//! Fluss-style durations ("10 min", "30s", "500 ms", "1h"; a bare integer is milliseconds) and
//! memory sizes ("10mb", "4 MiB", "512k"; a bare integer is bytes), as Fluss (after Flink's
//! `TimeUtils` and `MemorySize`) writes them. Units are case-insensitive; kilo, mega, giga and
//! tera are binary (1 kb = 1024 bytes), as in Fluss.

/// The number and the unit of `text`: digits, optional blanks, then letters.
fn split(text: &str) -> Result<(u64, String), String> {
    let text = text.trim();
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err("expected a number, optionally followed by a unit".to_string());
    }
    let number = digits.parse::<u64>().map_err(|_| format!("{digits} is too large"))?;
    Ok((number, unit.trim_start().to_ascii_lowercase()))
}

/// Parses a duration to milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    let (number, unit) = split(text)?;
    let unit_ms: u64 = match unit.as_str() {
        "" | "ms" | "milli" | "millis" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        other => {
            return Err(format!("unknown time unit {other:?}; use ms, s, min, h or d"));
        }
    };
    number.checked_mul(unit_ms).ok_or_else(|| "the duration is too large".to_string())
}

/// Parses a memory size to bytes.
pub fn parse_size_bytes(text: &str) -> Result<u64, String> {
    let (number, unit) = split(text)?;
    let unit_bytes: u64 = match unit.as_str() {
        "" | "b" | "byte" | "bytes" => 1,
        "k" | "kb" | "kib" | "kibibytes" => 1 << 10,
        "m" | "mb" | "mib" | "mebibytes" => 1 << 20,
        "g" | "gb" | "gib" | "gibibytes" => 1 << 30,
        "t" | "tb" | "tib" | "tebibytes" => 1 << 40,
        other => {
            return Err(format!("unknown size unit {other:?}; use b, kb, mb, gb or tb"));
        }
    };
    number.checked_mul(unit_bytes).ok_or_else(|| "the size is too large".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_documented_spelling() {
        assert_eq!(parse_duration_ms("10 min"), Ok(600_000));
        assert_eq!(parse_duration_ms("30s"), Ok(30_000));
        assert_eq!(parse_duration_ms("500 ms"), Ok(500));
        assert_eq!(parse_duration_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("2 DAYS"), Ok(172_800_000));
        assert_eq!(parse_duration_ms("  250 "), Ok(250));
        assert_eq!(parse_duration_ms("0"), Ok(0));
    }

    #[test]
    fn malformed_durations_are_refused() {
        for bad in ["", "min", "-5s", "1.5s", "10 fortnights", "5 s s", "99999999999999999999"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_duration_ms(&format!("{} d", u64::MAX / 1000)).is_err());
    }

    #[test]
    fn sizes_in_every_documented_spelling() {
        assert_eq!(parse_size_bytes("10mb"), Ok(10 << 20));
        assert_eq!(parse_size_bytes("4 MiB"), Ok(4 << 20));
        assert_eq!(parse_size_bytes("512k"), Ok(512 << 10));
        assert_eq!(parse_size_bytes("1 gb"), Ok(1 << 30));
        assert_eq!(parse_size_bytes("1000"), Ok(1000));
        assert_eq!(parse_size_bytes("7 bytes"), Ok(7));
    }

    #[test]
    fn malformed_sizes_are_refused() {
        for bad in ["", "mb", "-1", "1.5mb", "3 parsecs", "20000000 tb"] {
            assert!(parse_size_bytes(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
