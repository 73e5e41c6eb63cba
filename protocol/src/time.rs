//! Times of the wire (whole seconds since the Unix epoch) as people read them in
//! messages: UTC dates, never raw epochs; and the rule for the optional milliseconds a
//! message may carry beside its seconds.

/// The time a message says, in milliseconds since the Unix epoch, from its seconds `secs`
/// and the optional milliseconds `ms` beside them: `ms` counts only when it lies inside
/// the second `secs` names (`secs * 1000 <= ms < secs * 1000 + 1000`), so milliseconds
/// can refine the seconds but never contradict them; otherwise (omitted by an older node,
/// or outside the second) the start of that second. Never overflows: a second past
/// `u64::MAX / 1000` saturates.
pub fn millis(secs: u64, ms: Option<u64>) -> u64 {
    match ms {
        Some(ms) if within(secs, Some(ms)) => ms,
        _ => secs.saturating_mul(1000),
    }
}

/// Whether `ms` is there and lies inside the second `secs` (see [`millis`]).
pub fn within(secs: u64, ms: Option<u64>) -> bool {
    ms.is_some_and(|ms| ms / 1000 == secs)
}

/// The seconds and milliseconds a message carries for a time of `ms` milliseconds since
/// the Unix epoch: `(ms / 1000, Some(ms))`.
pub fn split(ms: u64) -> (u64, Option<u64>) {
    (ms / 1000, Some(ms))
}

/// Seconds since the Unix epoch as UTC `YYYY-MM-DD HH:MM:SS`.
pub fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Seconds since the Unix epoch as a date in a message: `2026-12-07 16:00:00 UTC`.
pub fn utc_text(secs: u64) -> String {
    format!("{} UTC", utc(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_count_only_inside_their_second() {
        assert_eq!(
            millis(1_700_000_000, Some(1_700_000_000_123)),
            1_700_000_000_123
        );
        assert_eq!(
            millis(1_700_000_000, Some(1_700_000_000_999)),
            1_700_000_000_999
        );
        assert_eq!(
            millis(1_700_000_000, Some(1_700_000_000_000)),
            1_700_000_000_000
        );
        // An older node sends none: the start of the second.
        assert_eq!(millis(1_700_000_000, None), 1_700_000_000_000);
        // Milliseconds that contradict the signed second do not count.
        assert_eq!(
            millis(1_700_000_000, Some(1_700_000_001_000)),
            1_700_000_000_000
        );
        assert_eq!(
            millis(1_700_000_000, Some(1_699_999_999_999)),
            1_700_000_000_000
        );
        assert_eq!(millis(1_700_000_000, Some(0)), 1_700_000_000_000);
        assert_eq!(millis(0, Some(u64::MAX)), 0);
        // The largest seconds do not overflow.
        assert_eq!(millis(u64::MAX, None), u64::MAX);
        assert_eq!(millis(u64::MAX, Some(u64::MAX)), u64::MAX);
        assert_eq!(millis(u64::MAX / 1000, Some(u64::MAX)), u64::MAX);
        assert!(!within(u64::MAX, Some(u64::MAX)));
        assert_eq!(
            split(1_700_000_000_123),
            (1_700_000_000, Some(1_700_000_000_123))
        );
        let (secs, ms) = split(u64::MAX);
        assert_eq!(millis(secs, ms), u64::MAX);
    }

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc_text(1_796_662_709), "2026-12-07 16:58:29 UTC");
        // The largest time does not panic.
        assert!(!utc(u64::MAX).is_empty());
    }
}
