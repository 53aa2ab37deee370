//! Text forms of the values that have no JSON number or string of their own: DECIMAL as its
//! exact decimal digits, DATE, TIME and TIMESTAMP in ISO 8601 (proleptic Gregorian calendar,
//! as Java's `LocalDate`), BINARY and BYTES in standard base64 with padding. What
//! `kvtablet scan` prints.

use std::fmt::Write as _;

use super::compacted_row::Timestamp;

/// `unscaled × 10^-scale` with exactly `scale` fraction digits: `-0.05` for (-5, 2).
pub fn decimal_string(unscaled: i128, scale: u8) -> String {
    let digits = unscaled.unsigned_abs().to_string();
    let scale = usize::from(scale);
    let sign = if unscaled < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{sign}{whole}.{fraction}")
}

/// The civil date of a day number (days since 1970-01-01): Howard Hinnant's
/// `civil_from_days`, exact for every `i32`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn push_date(days: i64, out: &mut String) {
    let (year, month, day) = civil_from_days(days);
    // Writing to a String cannot fail.
    if (0..=9999).contains(&year) {
        let _ = write!(out, "{year:04}-{month:02}-{day:02}");
    } else {
        let _ = write!(out, "{year:+05}-{month:02}-{day:02}");
    }
}

/// `HH:MM:SS` then, for a precision above 0, a dot and `precision` fraction digits.
fn push_time_of_day(nanos_of_day: i64, precision: u8, out: &mut String) {
    let seconds = nanos_of_day / 1_000_000_000;
    let fraction = nanos_of_day % 1_000_000_000;
    let _ = write!(out, "{:02}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60);
    if precision > 0 {
        let digits = format!("{fraction:09}");
        out.push('.');
        out.push_str(digits.get(..usize::from(precision.min(9))).unwrap_or(&digits));
    }
}

/// `1970-01-01` for 0.
pub fn date_string(days: i32) -> String {
    let mut out = String::new();
    push_date(i64::from(days), &mut out);
    out
}

/// `HH:MM:SS[.fff…]` for milliseconds of the day.
pub fn time_string(millis_of_day: i32, precision: u8) -> String {
    let mut out = String::new();
    push_time_of_day(i64::from(millis_of_day) * 1_000_000, precision, &mut out);
    out
}

/// `YYYY-MM-DDTHH:MM:SS[.fff…]`, with `Z` appended for a TIMESTAMP_LTZ (`utc`).
pub fn timestamp_string(ts: Timestamp, precision: u8, utc: bool) -> String {
    let mut out = String::new();
    let days = ts.millis.div_euclid(86_400_000);
    let millis_of_day = ts.millis.rem_euclid(86_400_000);
    push_date(days, &mut out);
    out.push('T');
    push_time_of_day(millis_of_day * 1_000_000 + i64::from(ts.nanos_of_milli), precision, &mut out);
    if utc {
        out.push('Z');
    }
    out
}

/// Standard base64 (RFC 4648 §4) with padding.
pub fn base64_string(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_print_with_exactly_their_scale() {
        assert_eq!(decimal_string(1234, 2), "12.34");
        assert_eq!(decimal_string(-5, 2), "-0.05");
        assert_eq!(decimal_string(0, 3), "0.000");
        assert_eq!(decimal_string(42, 0), "42");
        let max38 = 10i128.pow(38) - 1;
        assert_eq!(decimal_string(-max38, 10), format!("-{}.{}", "9".repeat(28), "9".repeat(10)));
    }

    #[test]
    fn dates_print_in_the_proleptic_gregorian_calendar() {
        assert_eq!(date_string(0), "1970-01-01");
        assert_eq!(date_string(-1), "1969-12-31");
        assert_eq!(date_string(19_782), "2024-02-29");
        assert_eq!(date_string(-719_162), "0001-01-01");
        assert_eq!(date_string(2_932_896), "9999-12-31");
        assert_eq!(date_string(i32::MAX), "+5881580-07-11");
        assert_eq!(date_string(i32::MIN), "-5877641-06-23");
    }

    #[test]
    fn times_print_with_their_precision() {
        assert_eq!(time_string(0, 0), "00:00:00");
        assert_eq!(time_string(86_399_999, 3), "23:59:59.999");
        assert_eq!(time_string(45_296_789, 6), "12:34:56.789000");
    }

    #[test]
    fn timestamps_print_nanoseconds_and_a_zone_for_ltz() {
        let ts = Timestamp { millis: -1, nanos_of_milli: 999_999 };
        assert_eq!(timestamp_string(ts, 9, false), "1969-12-31T23:59:59.999999999");
        assert_eq!(
            timestamp_string(Timestamp::from_millis(0), 3, true),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn bytes_print_as_padded_base64() {
        assert_eq!(base64_string(b""), "");
        assert_eq!(base64_string(b"f"), "Zg==");
        assert_eq!(base64_string(b"fo"), "Zm8=");
        assert_eq!(base64_string(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_string(&[0xff, 0x00]), "/wA=");
    }
}
