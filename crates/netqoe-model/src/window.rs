//! Window assignment: epoch-aligned one-minute windows by event time.

/// Length of an aggregation window in milliseconds.
pub const WINDOW_MS: i64 = 60_000;

/// Start (ms since epoch) of the one-minute window that holds `ts_ms`.
///
/// Windows are aligned to the epoch, so every process assigns an event to the same window;
/// timestamps before 1970 round down too (euclidean division).
pub fn window_start_ms(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(WINDOW_MS) * WINDOW_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_epoch_aligned_minutes() {
        let cases = [
            (0, 0),
            (59_999, 0),
            (60_000, 60_000),
            (1_700_000_012_345, 1_699_999_980_000),
            (-1, -60_000),
        ];
        for (ts, start) in cases {
            assert_eq!(window_start_ms(ts), start, "ts {ts}");
        }
    }
}
