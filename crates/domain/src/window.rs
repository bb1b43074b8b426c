//! Maintenance windows: a cron schedule of openings in a time zone, each open for a duration. A
//! delivery that respects windows starts a target only while one of its windows is open.
//!
//! Cron is the classic five fields (minute hour day-of-month month day-of-week) with `*`, lists,
//! ranges and steps (`0 2 * * 1-5`, `*/30 22-23 * * *`); day-of-week 0 or 7 is Sunday; when both
//! day fields are restricted a day matching either counts (as cron does). Times are civil times in
//! the window's IANA time zone, so "02:00 in Asia/Shanghai" stays 02:00 across daylight saving.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// Openings are looked for at most this many days ahead.
const HORIZON_DAYS: i32 = 400;
/// A window lasts at most a week.
pub const MAX_DURATION_MINUTES: i64 = 7 * 24 * 60;

/// A parsed window: its schedule, how long each opening lasts, and where its clock hangs.
#[derive(Debug, Clone)]
pub struct Window {
    minutes: Field,
    hours: Field,
    days: Field,
    months: Field,
    weekdays: Field,
    duration_ms: i64,
    zone: TimeZone,
}

/// The values one cron field allows (bit n set = n allowed) and whether it was `*`.
#[derive(Debug, Clone, Copy)]
struct Field {
    allowed: u64,
    any: bool,
}

impl Field {
    fn parse(text: &str, name: &str, low: u32, high: u32) -> Result<Field, String> {
        let mut allowed = 0u64;
        for part in text.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((range, step)) => {
                    let step: u32 =
                        step.parse().ok().filter(|s| *s > 0).ok_or_else(|| format!("{name}: bad step in `{part}`"))?;
                    (range, step)
                }
                None => (part, 1),
            };
            let (from, to) = if range == "*" {
                (low, high)
            } else if let Some((a, b)) = range.split_once('-') {
                (number(a, name, low, high)?, number(b, name, low, high)?)
            } else {
                let at = number(range, name, low, high)?;
                (at, if step > 1 { high } else { at })
            };
            if from > to {
                return Err(format!("{name}: `{range}` runs backwards"));
            }
            for value in (from..=to).step_by(step as usize) {
                allowed |= 1 << value;
            }
        }
        Ok(Field { allowed, any: text == "*" })
    }

    fn has(&self, value: i8) -> bool {
        self.allowed & (1 << value) != 0
    }
}

fn number(text: &str, name: &str, low: u32, high: u32) -> Result<u32, String> {
    text.parse::<u32>()
        .ok()
        .filter(|n| (low..=high).contains(n))
        .ok_or_else(|| format!("{name}: `{text}` is not a number from {low} to {high}"))
}

impl Window {
    /// `cron` (five fields), `duration_minutes` (1 to a week), `timezone` (IANA, e.g. `Asia/Shanghai`).
    pub fn parse(cron: &str, duration_minutes: i64, timezone: &str) -> Result<Window, String> {
        let fields: Vec<&str> = cron.split_whitespace().collect();
        let [minute, hour, day, month, weekday] = fields[..] else {
            return Err(format!(
                "cron: five fields (minute hour day-of-month month day-of-week), like `0 2 * * 6`; got {}",
                fields.len()
            ));
        };
        if !(1..=MAX_DURATION_MINUTES).contains(&duration_minutes) {
            return Err(format!(
                "duration_minutes must be between 1 and {MAX_DURATION_MINUTES}, got {duration_minutes}"
            ));
        }
        let zone = TimeZone::get(timezone).map_err(|_| {
            format!("timezone: `{}` is not an IANA time zone like Asia/Shanghai or UTC", short(timezone))
        })?;
        let mut weekdays = Field::parse(weekday, "cron day-of-week", 0, 7)?;
        // 7 is Sunday too.
        if weekdays.has(7) {
            weekdays.allowed |= 1;
        }
        Ok(Window {
            minutes: Field::parse(minute, "cron minute", 0, 59)?,
            hours: Field::parse(hour, "cron hour", 0, 23)?,
            days: Field::parse(day, "cron day-of-month", 1, 31)?,
            months: Field::parse(month, "cron month", 1, 12)?,
            weekdays,
            duration_ms: duration_minutes * 60_000,
            zone,
        })
    }

    fn day_matches(&self, date: Date) -> bool {
        if !self.months.has(date.month()) {
            return false;
        }
        let by_month_day = self.days.has(date.day());
        let by_weekday = self.weekdays.has(date.weekday().to_sunday_zero_offset());
        match (self.days.any, self.weekdays.any) {
            (true, true) => true,
            (false, true) => by_month_day,
            (true, false) => by_weekday,
            (false, false) => by_month_day || by_weekday,
        }
    }

    /// The first opening at or after `at_ms` (ms since the Unix epoch), within about a year.
    pub fn next_opening(&self, at_ms: i64) -> Option<i64> {
        let at = Timestamp::from_millisecond(at_ms).ok()?;
        let local = at.to_zoned(self.zone.clone()).datetime();
        let mut date = local.date();
        // Days are walked in the zone's calendar; only matching days look at hours and minutes.
        for day in 0..HORIZON_DAYS {
            if self.day_matches(date) {
                for hour in 0..24i8 {
                    if !self.hours.has(hour) {
                        continue;
                    }
                    for minute in 0..60i8 {
                        if !self.minutes.has(minute) {
                            continue;
                        }
                        let civil = DateTime::from_parts(date, jiff::civil::time(hour, minute, 0, 0));
                        if day == 0 && civil < local.with().second(0).subsec_nanosecond(0).build().ok()? {
                            continue;
                        }
                        // A time skipped by daylight saving opens as much later as the clock jumped
                        // (02:30 on a 02:00 → 03:00 night opens at 03:30), as RFC 5545 has it.
                        let opening =
                            self.zone.to_ambiguous_zoned(civil).compatible().ok()?.timestamp().as_millisecond();
                        if opening >= at_ms {
                            return Some(opening);
                        }
                    }
                }
            }
            date = date.checked_add(1.day()).ok()?;
        }
        None
    }

    /// When the opening that holds `at_ms` closes, if one does.
    pub fn open_until(&self, at_ms: i64) -> Option<i64> {
        let opening = self.next_opening(at_ms - self.duration_ms + 1)?;
        (opening <= at_ms).then_some(opening + self.duration_ms)
    }
}

fn short(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        crate::edge::parse_time(text).expect("time")
    }

    #[test]
    fn openings_follow_the_schedule_in_the_windows_time_zone() {
        // Saturdays 02:00 in Shanghai (UTC+8) for two hours.
        let saturday = Window::parse("0 2 * * 6", 120, "Asia/Shanghai").expect("window");
        // 2026-12-04 is a Friday.
        assert_eq!(saturday.next_opening(ms("2026-12-04T12:00:00Z")), Some(ms("2026-12-04T18:00:00Z")));
        assert_eq!(saturday.open_until(ms("2026-12-04T19:30:00Z")), Some(ms("2026-12-04T20:00:00Z")));
        assert_eq!(saturday.open_until(ms("2026-12-04T20:00:00Z")), None, "closed at its end");
        assert_eq!(saturday.open_until(ms("2026-12-04T17:59:59Z")), None);
        let nightly = Window::parse("*/30 22-23 * * 1-5", 30, "UTC").expect("window");
        assert_eq!(nightly.next_opening(ms("2026-12-04T22:10:00Z")), Some(ms("2026-12-04T22:30:00Z")));
        // Friday 23:30 is the last of the week; Monday 22:00 next.
        assert_eq!(nightly.next_opening(ms("2026-12-04T23:31:00Z")), Some(ms("2026-12-07T22:00:00Z")));
        let either = Window::parse("0 0 1 * 0", 60, "UTC").expect("window");
        assert_eq!(either.next_opening(ms("2026-12-02T00:00:00Z")), Some(ms("2026-12-06T00:00:00Z")), "a Sunday");
        assert_eq!(either.next_opening(ms("2026-12-28T00:00:00Z")), Some(ms("2027-01-01T00:00:00Z")), "the 1st");
    }

    #[test]
    fn daylight_saving_keeps_the_civil_time() {
        let berlin = Window::parse("30 2 * * *", 60, "Europe/Berlin").expect("window");
        // 2027-03-28 02:30 does not exist in Berlin: the window opens the gap later, at 03:30 CEST.
        assert_eq!(berlin.next_opening(ms("2027-03-27T12:00:00Z")), Some(ms("2027-03-28T01:30:00Z")));
        // In summer 02:30 CEST is 00:30 UTC.
        assert_eq!(berlin.next_opening(ms("2027-06-01T12:00:00Z")), Some(ms("2027-06-02T00:30:00Z")));
    }

    #[test]
    fn bad_windows_are_named() {
        for (cron, minutes, zone, expected) in [
            ("0 2 * *", 60, "UTC", "five fields"),
            ("60 2 * * *", 60, "UTC", "cron minute: `60` is not a number from 0 to 59"),
            ("0 2 * * 1-9", 60, "UTC", "day-of-week"),
            ("0 5-2 * * *", 60, "UTC", "runs backwards"),
            ("*/0 2 * * *", 60, "UTC", "bad step"),
            ("0 2 * * *", 0, "UTC", "duration_minutes"),
            ("0 2 * * *", 60, "Mars/Olympus", "not an IANA time zone"),
        ] {
            let err = Window::parse(cron, minutes, zone).expect_err("refused");
            assert!(err.contains(expected), "{cron}: {err}");
        }
    }
}
