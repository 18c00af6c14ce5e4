//! docker's units (github.com/docker/go-units) and display helpers: sizes in decimal
//! and binary units with Go's `%g`, "5 minutes ago", Go's `time.Time.String()`,
//! truncated ids and `…` ellipsis by display width.

use unicode_width::UnicodeWidthChar;

use crate::template::printf::format_g;

const DECIMAL: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
const BINARY: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

fn size_and_unit(mut size: f64, base: f64, units: &[&'static str]) -> (f64, &'static str) {
    let mut i = 0;
    while size >= base && i < units.len() - 1 {
        size /= base;
        i += 1;
    }
    (size, units[i])
}

/// go-units `HumanSizeWithPrecision`: "4.26MB" (`%.*g` of decimal units).
pub fn human_size_prec(size: f64, precision: usize) -> String {
    let (v, unit) = size_and_unit(size, 1000.0, &DECIMAL);
    format!("{}{unit}", format_g(v, Some(precision), false))
}

/// go-units `HumanSize`: four significant digits ("1.995MB").
pub fn human_size(size: f64) -> String {
    human_size_prec(size, 4)
}

/// What `docker images`/`ps` print for a size: three significant digits ("1.99MB").
pub fn size3(size: i64) -> String {
    human_size_prec(size as f64, 3)
}

/// go-units `BytesSize`: binary units, four significant digits ("1.5KiB", "100MiB").
pub fn bytes_size(size: f64) -> String {
    let (v, unit) = size_and_unit(size, 1024.0, &BINARY);
    format!("{}{unit}", format_g(v, Some(4), false))
}

/// go-units `HumanDuration` ("Less than a second", "About an hour", "3 weeks").
pub fn human_duration(secs: f64) -> String {
    let mut out = String::new();
    human_duration_into(secs, &mut out);
    out
}

/// [`human_duration`] appended to `out`.
pub fn human_duration_into(secs: f64, out: &mut String) {
    use std::fmt::Write;
    let seconds = secs as i64;
    let minutes = (secs / 60.0) as i64;
    let hours = (secs / 3600.0 + 0.5) as i64;
    let (n, unit) = if seconds < 1 {
        return out.push_str("Less than a second");
    } else if seconds == 1 {
        return out.push_str("1 second");
    } else if seconds < 60 {
        (seconds, "seconds")
    } else if minutes == 1 {
        return out.push_str("About a minute");
    } else if minutes < 60 {
        (minutes, "minutes")
    } else if hours == 1 {
        return out.push_str("About an hour");
    } else if hours < 48 {
        (hours, "hours")
    } else if hours < 24 * 7 * 2 {
        (hours / 24, "days")
    } else if hours < 24 * 30 * 2 {
        (hours / 24 / 7, "weeks")
    } else if hours < 24 * 365 * 2 {
        (hours / 24 / 30, "months")
    } else {
        ((secs / 3600.0) as i64 / 24 / 365, "years")
    };
    // Writing to a String cannot fail.
    let _ = write!(out, "{n} {unit}");
}

/// "5 minutes ago" for a unix time, as docker's CREATED columns.
pub fn since(unix: i64) -> String {
    let mut out = String::new();
    age_into(unix, chrono::Utc::now(), &mut out);
    out
}

/// [`since`] at `now`, appended to `out`: a table's rows take their ages from one
/// reading of the clock.
pub fn age_into(unix: i64, now: chrono::DateTime<chrono::Utc>, out: &mut String) {
    // Without building a date for `unix`; capped where Go's nanosecond durations
    // saturate (292 years).
    let ms = now
        .timestamp_millis()
        .saturating_sub(unix.saturating_mul(1000))
        .min(i64::MAX / 1_000_000);
    human_duration_into(ms as f64 / 1000.0, out);
    out.push_str(" ago");
}

/// Go's `time.Unix(t, 0).String()` in the local zone: "2024-01-02 15:04:05 +0000 UTC".
pub fn go_time(unix: i64) -> String {
    let (offset, zone) = local_zone(unix);
    let t = chrono::DateTime::from_timestamp(unix + offset, 0).unwrap_or_default();
    let sign = if offset < 0 { '-' } else { '+' };
    let off = offset.abs();
    format!(
        "{} {sign}{:02}{:02} {zone}",
        t.format("%Y-%m-%d %H:%M:%S"),
        off / 3600,
        (off % 3600) / 60
    )
}

/// The local zone's offset in seconds and its abbreviation at `unix` (UTC when the
/// C library cannot say).
fn local_zone(unix: i64) -> (i64, String) {
    let t: libc::time_t = unix;
    // SAFETY: `tm` is a plain C struct for which all-zero bytes are valid; localtime_r
    // only writes into it and reads `t`, both alive for the call.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: as above; localtime_r is the thread-safe variant.
    let r = unsafe { libc::localtime_r(&t, &mut tm) };
    if r.is_null() {
        return (0, "UTC".into());
    }
    let zone = if tm.tm_zone.is_null() {
        String::new()
    } else {
        // SAFETY: tm_zone points at a NUL-terminated abbreviation owned by the C
        // library's zone data, valid while the process runs.
        unsafe { std::ffi::CStr::from_ptr(tm.tm_zone) }
            .to_string_lossy()
            .into_owned()
    };
    let offset = tm.tm_gmtoff;
    // Go names the zero offset zone "UTC" when no zone file says otherwise.
    let zone = if zone.is_empty() || (offset == 0 && zone == "GMT") {
        "UTC".into()
    } else {
        zone
    };
    (offset, zone)
}

/// docker's `TruncateID`: without a `sha256:`-style prefix, at most 12 characters.
pub fn truncate_id(id: &str) -> String {
    truncated_id(id).to_string()
}

/// [`truncate_id`] as a part of `id` (tables print one per row).
pub fn truncated_id(id: &str) -> &str {
    let id = match id.as_bytes().iter().position(|&b| b == b':') {
        Some(at) => &id[at + 1..],
        None => id,
    };
    if id.len() <= 12 {
        return id;
    }
    // Twelve ASCII bytes (any id) are twelve characters.
    if id.as_bytes()[..12].is_ascii() {
        return &id[..12];
    }
    match id.char_indices().nth(12) {
        Some((end, _)) => &id[..end],
        None => id,
    }
}

/// docker's `Ellipsis`: at most `max` display columns, the last one `…`.
pub fn ellipsis(s: &str, max: usize) -> String {
    ellipsized(s, max).into_owned()
}

/// [`ellipsis`], borrowing `s` when it fits.
pub fn ellipsized(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    // ASCII: one column a byte.
    if s.len() <= max && s.is_ascii() && max > 1 {
        return s.into();
    }
    if max == 0 {
        return "".into();
    }
    if max == 1 {
        return s
            .chars()
            .next()
            .map(String::from)
            .unwrap_or_default()
            .into();
    }
    let width = |c: char| c.width().unwrap_or(1).max(1);
    let total: usize = s.chars().map(width).sum();
    if total <= max {
        return s.into();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        if used + width(c) > max - 1 {
            break;
        }
        used += width(c);
        out.push(c);
    }
    out.push('…');
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_go_units() {
        assert_eq!(size3(4_261_482), "4.26MB");
        assert_eq!(size3(999), "999B");
        assert_eq!(size3(1_500), "1.5kB");
        assert_eq!(size3(999_999), "1e+03kB");
        assert_eq!(size3(0), "0B");
        assert_eq!(human_size(1_995_000.0), "1.995MB");
        assert_eq!(bytes_size(104_857_600.0), "100MiB");
        assert_eq!(bytes_size(1536.0), "1.5KiB");
        assert_eq!(bytes_size(0.0), "0B");
        assert_eq!(bytes_size(25_276_772_352.0), "23.54GiB");
    }

    #[test]
    fn durations_like_go_units() {
        assert_eq!(human_duration(0.5), "Less than a second");
        assert_eq!(human_duration(1.0), "1 second");
        assert_eq!(human_duration(59.0), "59 seconds");
        assert_eq!(human_duration(90.0), "About a minute");
        assert_eq!(human_duration(300.0), "5 minutes");
        assert_eq!(human_duration(3600.0), "About an hour");
        assert_eq!(human_duration(5399.0), "About an hour");
        assert_eq!(human_duration(5400.0), "2 hours");
        assert_eq!(human_duration(3.0 * 86400.0), "3 days");
        assert_eq!(human_duration(21.0 * 86400.0), "3 weeks");
        assert_eq!(human_duration(100.0 * 86400.0), "3 months");
        assert_eq!(human_duration(800.0 * 86400.0), "2 years");
    }

    #[test]
    fn ages_from_one_clock_reading() {
        let now = chrono::DateTime::from_timestamp(10_000, 600_000_000).unwrap();
        let age = |unix| {
            let mut out = String::new();
            age_into(unix, now, &mut out);
            out
        };
        assert_eq!(age(10_000), "Less than a second ago");
        assert_eq!(age(9_999), "1 second ago");
        assert_eq!(age(10_000 - 3600), "About an hour ago");
        assert_eq!(age(10_000 - 59), "59 seconds ago");
        // Created later than now (another clock): no negative ages.
        assert_eq!(age(20_000), "Less than a second ago");
        assert_eq!(age(i64::MIN), "292 years ago");
    }

    #[test]
    fn ids_and_ellipsis() {
        assert_eq!(truncate_id("sha256:0123456789abcdef"), "0123456789ab");
        assert_eq!(truncate_id("0123456789abcdef"), "0123456789ab");
        assert_eq!(
            ellipsis("echo hello world with a long", 20),
            "echo hello world wi…"
        );
        assert_eq!(ellipsis("short", 20), "short");
        assert_eq!(ellipsis("日本語テキスト", 6), "日本…");
        // Not hex: cut at characters, never inside one.
        assert_eq!(
            truncate_id("日本語テキスト日本語テキスト"),
            "日本語テキスト日本語テキ"
        );
        assert_eq!(truncate_id("abc日本"), "abc日本");
        assert_eq!(truncate_id("abcdefghijk日本"), "abcdefghijk日");
        assert_eq!(truncate_id("short"), "short");
        assert_eq!(truncate_id("0123456789abc"), "0123456789ab");
        assert_eq!(truncate_id("0123456789ab"), "0123456789ab");
        // Everything up to the first colon goes, wherever it is.
        assert_eq!(truncate_id("a:b:0123456789abcdef"), "b:0123456789");
        assert_eq!(truncate_id("0123456789abcdef:x"), "x");
        assert_eq!(ellipsis("exactly twenty chars", 20), "exactly twenty chars");
        assert_eq!(ellipsis("x", 1), "x");
        assert_eq!(ellipsis("xy", 0), "");
        assert_eq!(human_duration(0.5), "Less than a second");
        assert_eq!(human_duration(59.0), "59 seconds");
        assert_eq!(human_duration(3000.0), "50 minutes");
        assert_eq!(human_duration(86400.0 * 3.0), "3 days");
    }
}
