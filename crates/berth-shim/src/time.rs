//! RFC 3339 timestamps in UTC (`2006-01-02T15:04:05.999999999Z`), as Docker writes
//! them in logs and exit records. Written out here rather than with chrono: the
//! shim needs nothing else of a calendar library, and its code is resident in
//! every shim.

use std::time::{SystemTime, UNIX_EPOCH};

/// `t` in UTC with `digits` (0 to 9) digits of fractional seconds.
pub fn rfc3339(t: SystemTime, digits: u32) -> String {
    // Times before 1970 do not happen here (they come from the clock); show them
    // as the epoch rather than fail.
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    let digits = digits.min(9);
    if digits > 0 {
        let frac = d.subsec_nanos() / 10u32.pow(9 - digits);
        s.push_str(&format!(".{frac:0width$}", width = digits as usize));
    }
    s.push('Z');
    s
}

/// Now, with nanoseconds.
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now(), 9)
}

/// (year, month, day) of a count of days since 1970-01-01 (Howard Hinnant's
/// algorithm, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn formats_like_docker() {
        assert_eq!(rfc3339(at(0, 0), 9), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(at(951_782_400, 0), 0), "2000-02-29T00:00:00Z");
        assert_eq!(
            rfc3339(at(1_700_000_000, 123_456_789), 9),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            rfc3339(at(1_700_000_000, 123_456_789), 6),
            "2023-11-14T22:13:20.123456Z"
        );
        assert_eq!(
            rfc3339(at(4_102_444_799, 5), 9),
            "2099-12-31T23:59:59.000000005Z"
        );
        assert_eq!(rfc3339(at(1_709_208_000, 0), 0), "2024-02-29T12:00:00Z");
    }
}
