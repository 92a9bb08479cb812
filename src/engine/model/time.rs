//! Time units and the epoch-aligned grid.
//!
//! Timestamps are `i64` ticks in one unit per store. A metric of frequency
//! `f` ticks has slots at times `k * f` for every integer `k`; a sample at
//! `ts` lands in the nearest slot, and a sample exactly half-way between two
//! slots lands in the later one. Slot arithmetic runs in `i128` so no input
//! can overflow it; a slot whose time does not fit in `i64` is rejected.

use crate::engine::error::EngineError;

/// The largest number of slots one read may return (2^30: 4 GiB of float32),
/// so a typo in a range is an error and not an out-of-memory kill.
pub const MAX_READ_SLOTS: i64 = 1 << 30;

/// The unit of a store's timestamps, fixed when the store is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Seconds,
    Milliseconds,
    Microseconds,
    Nanoseconds,
}

impl TimeUnit {
    pub fn parse(text: &str) -> Result<Self, EngineError> {
        match text {
            "s" => Ok(TimeUnit::Seconds),
            "ms" => Ok(TimeUnit::Milliseconds),
            "us" => Ok(TimeUnit::Microseconds),
            "ns" => Ok(TimeUnit::Nanoseconds),
            other => Err(EngineError::argument(
                "unit",
                format!("unknown time unit {other:?}; use \"s\", \"ms\", \"us\" or \"ns\""),
            )),
        }
    }

    /// The byte that stands for this unit in STORE files and snapshots.
    pub fn code(self) -> u8 {
        match self {
            TimeUnit::Seconds => 0,
            TimeUnit::Milliseconds => 1,
            TimeUnit::Microseconds => 2,
            TimeUnit::Nanoseconds => 3,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => TimeUnit::Seconds,
            1 => TimeUnit::Milliseconds,
            2 => TimeUnit::Microseconds,
            3 => TimeUnit::Nanoseconds,
            _ => return None,
        })
    }

    fn nanos_per_tick(self) -> i64 {
        match self {
            TimeUnit::Seconds => 1_000_000_000,
            TimeUnit::Milliseconds => 1_000_000,
            TimeUnit::Microseconds => 1_000,
            TimeUnit::Nanoseconds => 1,
        }
    }

    /// The wall clock now, in ticks of this unit since the Unix epoch.
    pub fn now(self) -> i64 {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (since.as_nanos() / self.nanos_per_tick() as u128) as i64
    }

    /// `ticks` of this unit as a duration (negative counts as zero).
    pub fn duration(self, ticks: i64) -> std::time::Duration {
        let nanos = i128::from(ticks.max(0)) * i128::from(self.nanos_per_tick());
        std::time::Duration::from_nanos(nanos.min(i128::from(u64::MAX)) as u64)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TimeUnit::Seconds => "s",
            TimeUnit::Milliseconds => "ms",
            TimeUnit::Microseconds => "us",
            TimeUnit::Nanoseconds => "ns",
        }
    }
}

/// The slot nearest to `ts` on the grid of `frequency` (ties go to the later
/// slot). `argument` names the timestamp in the error.
pub fn nearest_slot(ts: i64, frequency: i64, argument: &str) -> Result<i64, EngineError> {
    if ts == i64::MIN {
        return Err(EngineError::argument(
            argument,
            "timestamp is i64::MIN, the NaT marker; missing timestamps cannot be stored",
        ));
    }
    // Fast path: when ts + f/2 fits in i64 the floor division does too, and
    // the slot's time is then at most ts + f/2, so it fits as well unless
    // rounding down went below i64::MIN (checked).
    if let Some(shifted) = ts.checked_add(frequency / 2) {
        let slot = shifted.div_euclid(frequency);
        if slot.checked_mul(frequency).is_some_and(|t| t > i64::MIN) {
            return Ok(slot);
        }
    }
    let f = i128::from(frequency);
    let slot = (i128::from(ts) + f / 2).div_euclid(f);
    checked_slot(slot, frequency, argument, ts)
}

/// The first slot whose time is at or after `ts`.
pub fn first_slot_at_or_after(ts: i64, frequency: i64) -> i128 {
    let f = i128::from(frequency);
    -((-i128::from(ts)).div_euclid(f))
}

/// Converts an `i128` slot to `i64` if its time `slot * frequency` fits.
fn checked_slot(slot: i128, frequency: i64, argument: &str, ts: i64) -> Result<i64, EngineError> {
    let time = slot * i128::from(frequency);
    if time < i128::from(i64::MIN) + 1 || time > i128::from(i64::MAX) {
        return Err(EngineError::argument(
            argument,
            format!("timestamp {ts} is out of range: its slot time does not fit in int64"),
        ));
    }
    // |slot| <= |time| because frequency >= 1, so this cannot fail.
    Ok(slot as i64)
}

/// Checks that a run of `len` consecutive slots from `first` has all its
/// slot times in range.
pub fn check_slot_run(
    first: i64,
    len: usize,
    frequency: i64,
    argument: &str,
) -> Result<(), EngineError> {
    if len == 0 {
        return Ok(());
    }
    let last = i128::from(first) + len as i128 - 1;
    if last * i128::from(frequency) > i128::from(i64::MAX) {
        return Err(EngineError::argument(
            argument,
            format!(
                "{len} samples from slot time {} run past the largest int64 timestamp",
                i128::from(first) * i128::from(frequency)
            ),
        ));
    }
    Ok(())
}

/// The slots of a read of `[start, stop)`: the first slot and the count.
pub fn read_slots(start: i64, stop: i64, frequency: i64) -> Result<(i64, usize), EngineError> {
    if stop < start {
        return Err(EngineError::argument(
            "stop",
            format!("stop ({stop}) is before start ({start})"),
        ));
    }
    let first = first_slot_at_or_after(start, frequency);
    let end = first_slot_at_or_after(stop, frequency);
    if first * i128::from(frequency) > i128::from(i64::MAX) {
        return Err(EngineError::argument(
            "start",
            format!("start {start} is out of range for frequency {frequency}"),
        ));
    }
    let count = end - first;
    if count > i128::from(MAX_READ_SLOTS) {
        return Err(EngineError::argument(
            "stop",
            format!(
                "the range [{start}, {stop}) holds {count} slots of frequency {frequency}; \
                 one read returns at most {MAX_READ_SLOTS}"
            ),
        ));
    }
    // first >= start / f > i64::MIN / 2 and first * f <= i64::MAX: fits in i64.
    Ok((first as i64, count as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_slot_rounds_to_the_closest_grid_point() {
        assert_eq!(nearest_slot(0, 60, "ts"), Ok(0));
        assert_eq!(nearest_slot(29, 60, "ts"), Ok(0));
        assert_eq!(nearest_slot(31, 60, "ts"), Ok(1));
        assert_eq!(nearest_slot(-29, 60, "ts"), Ok(0));
        assert_eq!(nearest_slot(-31, 60, "ts"), Ok(-1));
        assert_eq!(nearest_slot(1_608_923_076, 60, "ts"), Ok(26_815_385));
    }

    #[test]
    fn ties_go_to_the_later_slot_for_even_and_odd_frequencies() {
        assert_eq!(nearest_slot(30, 60, "ts"), Ok(1));
        assert_eq!(nearest_slot(-30, 60, "ts"), Ok(0));
        // Odd frequency: no exact tie; 1 is closer to 0, 2 is closer to 3.
        assert_eq!(nearest_slot(1, 3, "ts"), Ok(0));
        assert_eq!(nearest_slot(2, 3, "ts"), Ok(1));
    }

    #[test]
    fn frequency_one_is_the_identity() {
        for ts in [i64::MIN + 1, -5, 0, 7, i64::MAX] {
            assert_eq!(nearest_slot(ts, 1, "ts"), Ok(ts));
        }
    }

    #[test]
    fn extreme_timestamps_are_rejected_with_the_argument_name() {
        // i64::MAX % 16 == 15 rounds up, to a slot time past i64::MAX.
        let err = nearest_slot(i64::MAX, 16, "timestamps").unwrap_err();
        assert!(
            err.to_string().starts_with("timestamps: timestamp"),
            "{err}"
        );
        let err = nearest_slot(i64::MIN, 60, "start").unwrap_err();
        assert!(err.to_string().contains("NaT"), "{err}");
    }

    #[test]
    fn slot_runs_past_int64_are_rejected() {
        let last_slot = i64::MAX / 60;
        assert!(check_slot_run(last_slot, 1, 60, "values").is_ok());
        assert!(check_slot_run(last_slot, 2, 60, "values").is_err());
    }

    #[test]
    fn read_slots_cover_grid_points_in_the_half_open_range() {
        assert_eq!(read_slots(0, 600, 60), Ok((0, 10)));
        assert_eq!(read_slots(1, 600, 60), Ok((1, 9)));
        assert_eq!(read_slots(1, 601, 60), Ok((1, 10)));
        assert_eq!(read_slots(-61, -59, 60), Ok((-1, 1)));
        assert_eq!(read_slots(5, 5, 60), Ok((1, 0)));
        assert!(read_slots(10, 5, 60).is_err());
        assert!(read_slots(0, i64::MAX, 1).is_err());
    }
}
