//! Crontab masks: parsing and next-fire-time computation.
//!
//! A mask has five whitespace-separated fields: minute (0-59), hour (0-23),
//! day-of-month (1-31), month (1-12 or `jan`-`dec`) and day-of-week (0-7 or
//! `sun`-`sat`, Monday = 1, both 0 and 7 are Sunday). Each field is a comma list of
//! `*`, `N`, `A-B`, `*/S`, `A-B/S` or `A/S` (A through the field's maximum, step S).
//! The macros `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight` and
//! `@hourly` stand for a whole mask; `@reboot` is rejected.
//!
//! **Day matching** (Vixie cron): when the day-of-month field or the day-of-week field
//! starts with `*` (including `*/2`), a day must match both fields; when both are
//! restricted, a day matches if it matches either one. A mask that can never match
//! (such as `4 5 30 2 *`) is rejected by [`CronMask::parse`].
//!
//! **Time zones and DST** (Vixie cron's rule): a mask is evaluated on the wall clock of
//! its zone ([`CronZone`]). A mask whose minute or hour field starts with `*` is a
//! *wildcard* mask: it fires at every real instant whose wall-clock time matches, so a
//! wall-clock time skipped when clocks spring forward is not run, and one that occurs
//! twice when clocks fall back runs twice. Any other mask is a *fixed* mask: a matching
//! wall-clock time that does not exist runs once, at the first instant after the gap
//! (the instant the clock jumps), and a matching wall-clock time that occurs twice runs
//! only at its first occurrence.
//!
//! Transitions are found by probing the zone's UTC offset every two days and bisecting,
//! which is exact as long as a zone never changes offset twice within two days (true for
//! every tz database zone since 1900; transitions are at least six days apart).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

/// One of the five fields of a crontab mask; used to name the field in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CronField {
    /// Minute of the hour, 0-59.
    Minute,
    /// Hour of the day, 0-23.
    Hour,
    /// Day of the month, 1-31.
    DayOfMonth,
    /// Month, 1-12 or `jan`-`dec`.
    Month,
    /// Day of the week, 0-7 (0 and 7 are Sunday, Monday is 1) or `sun`-`sat`.
    DayOfWeek,
}

impl fmt::Display for CronField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CronField::Minute => "minute",
            CronField::Hour => "hour",
            CronField::DayOfMonth => "day-of-month",
            CronField::Month => "month",
            CronField::DayOfWeek => "day-of-week",
        })
    }
}

/// Why a crontab mask or a time zone name was rejected. Messages name the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// The mask does not have exactly five fields (and is not a macro).
    #[error("expected 5 fields (minute hour day-of-month month day-of-week), found {found}")]
    FieldCount {
        /// The mask as written (trimmed).
        mask: String,
        /// How many whitespace-separated fields were found.
        found: usize,
    },
    /// One field could not be parsed (bad number, out of range, reversed range, ...).
    #[error("invalid cron mask '{mask}': {field} field: {message}")]
    Field {
        /// The mask as written (trimmed).
        mask: String,
        /// The field at fault.
        field: CronField,
        /// What is wrong with it.
        message: String,
    },
    /// The fields parse but no date can ever match (e.g. February 30th).
    #[error("invalid cron mask '{mask}': no date matches ({reason})")]
    NoMatch {
        /// The mask as written (trimmed).
        mask: String,
        /// Which combination of fields is impossible.
        reason: String,
    },
    /// An `@` macro that is unknown or unsupported (`@reboot`).
    #[error("invalid cron mask '{mask}': {message}")]
    Macro {
        /// The mask as written (trimmed).
        mask: String,
        /// What is wrong with the macro.
        message: String,
    },
    /// A time zone name that is neither `UTC`, `maintenance` nor an IANA zone.
    #[error("unknown time zone '{name}'")]
    UnknownZone {
        /// The name as written.
        name: String,
    },
}

/// Static description of a field: its bounds and optional names.
struct FieldSpec {
    field: CronField,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// Value of `names[0]`.
    names_base: u32,
    hint: &'static str,
}

const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const MONTH_FULL_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

const SPECS: [FieldSpec; 5] = [
    FieldSpec {
        field: CronField::Minute,
        min: 0,
        max: 59,
        names: &[],
        names_base: 0,
        hint: "a number 0-59",
    },
    FieldSpec {
        field: CronField::Hour,
        min: 0,
        max: 23,
        names: &[],
        names_base: 0,
        hint: "a number 0-23",
    },
    FieldSpec {
        field: CronField::DayOfMonth,
        min: 1,
        max: 31,
        names: &[],
        names_base: 0,
        hint: "a number 1-31",
    },
    FieldSpec {
        field: CronField::Month,
        min: 1,
        max: 12,
        names: &MONTH_NAMES,
        names_base: 1,
        hint: "a number 1-12 or a month name jan-dec",
    },
    FieldSpec {
        field: CronField::DayOfWeek,
        min: 0,
        max: 7,
        names: &DAY_NAMES,
        names_base: 0,
        hint: "a number 0-7 or a weekday name sun-sat",
    },
];

/// Days in each month in the longest case (February has 29 in leap years).
const MAX_MONTH_DAYS: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/// How far ahead `next_after` searches: just over one 400-year Gregorian cycle, after
/// which dates and weekdays repeat exactly, so a mask that has not matched by then
/// never will.
const HORIZON_DAYS: u64 = 146_097 + 366;

/// Step used when probing a zone's offset for transitions (two days).
const PROBE_STEP_SECS: i64 = 2 * 86_400;

/// A parsed 5-field crontab mask.
///
/// Construct it with [`CronMask::parse`] (or `str::parse`); query it with
/// [`CronMask::next_after`] and [`CronMask::upcoming`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronMask {
    text: String,
    /// Bit n set: minute n matches.
    minutes: u64,
    /// Bit n set: hour n matches.
    hours: u32,
    /// Bit n set: day-of-month n matches (bit 0 unused).
    days_of_month: u32,
    /// Bit n set: month n matches (bit 0 unused).
    months: u16,
    /// Bit n set: weekday n matches, 0 = Sunday .. 6 = Saturday (7 is folded into 0).
    days_of_week: u8,
    minute_star: bool,
    hour_star: bool,
    dom_star: bool,
    dow_star: bool,
}

impl CronMask {
    /// Parses a crontab mask (five fields or an `@` macro), rejecting masks that can
    /// never match so that a bad schedule is reported when it is defined, not later.
    pub fn parse(mask: &str) -> Result<CronMask, CronError> {
        let text = mask.trim();
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let expanded: Vec<&str>;
        let fields: &[&str] = if tokens.first().is_some_and(|t| t.starts_with('@')) {
            let macro_name = tokens[0];
            let macro_error = |message: String| CronError::Macro {
                mask: text.to_string(),
                message,
            };
            if tokens.len() > 1 {
                return Err(macro_error(format!(
                    "{macro_name} must stand alone, found extra text after it"
                )));
            }
            let replacement = match macro_name.to_ascii_lowercase().as_str() {
                "@yearly" | "@annually" => "0 0 1 1 *",
                "@monthly" => "0 0 1 * *",
                "@weekly" => "0 0 * * 0",
                "@daily" | "@midnight" => "0 0 * * *",
                "@hourly" => "0 * * * *",
                "@reboot" => {
                    return Err(macro_error(
                        "@reboot is not supported (a schedule needs a time; \
                         use runatstartup to run a task at startup)"
                            .to_string(),
                    ))
                }
                _ => {
                    return Err(macro_error(format!(
                        "unknown macro '{macro_name}' (expected @yearly, @annually, \
                         @monthly, @weekly, @daily, @midnight or @hourly)"
                    )))
                }
            };
            expanded = replacement.split(' ').collect();
            &expanded
        } else {
            &tokens
        };
        if fields.len() != 5 {
            return Err(CronError::FieldCount {
                mask: text.to_string(),
                found: fields.len(),
            });
        }

        let mut bits = [0u64; 5];
        for (i, spec) in SPECS.iter().enumerate() {
            bits[i] = parse_field(fields[i], spec).map_err(|message| CronError::Field {
                mask: text.to_string(),
                field: spec.field,
                message,
            })?;
        }
        // Fold day-of-week 7 into 0 (both are Sunday).
        let mut dow = bits[4];
        if dow & (1 << 7) != 0 {
            dow = (dow | 1) & !(1 << 7);
        }

        let parsed = CronMask {
            text: text.to_string(),
            minutes: bits[0],
            hours: bits[1] as u32,
            days_of_month: bits[2] as u32,
            months: bits[3] as u16,
            days_of_week: dow as u8,
            minute_star: fields[0].starts_with('*'),
            hour_star: fields[1].starts_with('*'),
            dom_star: fields[2].starts_with('*'),
            dow_star: fields[4].starts_with('*'),
        };
        parsed.check_satisfiable(fields[2])?;
        Ok(parsed)
    }

    /// Rejects masks whose day-of-month and month fields can never coincide.
    ///
    /// Only the AND rule with a restricted day-of-month can be impossible: a `*`-led
    /// day-of-month always includes day 1, a restricted day-of-week under the OR rule
    /// matches some day in every month, and every existing (month, day) pair falls on
    /// every weekday over the years.
    fn check_satisfiable(&self, dom_text: &str) -> Result<(), CronError> {
        if self.dom_star || !self.dow_star {
            return Ok(());
        }
        let possible = (1..=12u32).any(|month| {
            self.months & (1 << month) != 0
                && (1..=MAX_MONTH_DAYS[month as usize - 1])
                    .any(|day| self.days_of_month & (1 << day) != 0)
        });
        if possible {
            return Ok(());
        }
        let names: Vec<&str> = (1..=12usize)
            .filter(|&m| self.months & (1 << m) != 0)
            .map(|m| MONTH_FULL_NAMES[m - 1])
            .collect();
        let months = match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.join(""),
        };
        Err(CronError::NoMatch {
            mask: self.text.clone(),
            reason: format!("day-of-month {dom_text} never occurs in {months}"),
        })
    }

    /// The mask text as the user wrote it (trimmed), e.g. `@daily` or `*/5 * * * *`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True for a *wildcard* mask (minute or hour field starts with `*`), which keeps
    /// firing in real time through DST changes; false for a *fixed* mask.
    pub fn is_wildcard(&self) -> bool {
        self.minute_star || self.hour_star
    }

    /// The first fire instant strictly after `after`, evaluated on the wall clock of
    /// `zone` (see the module docs for the DST rule).
    ///
    /// Returns `None` only if nothing matches within about 400 years, which cannot
    /// happen for a mask accepted by [`CronMask::parse`] unless the date range of
    /// `chrono` is exceeded.
    pub fn next_after(&self, after: DateTime<Utc>, zone: &CronZone) -> Option<DateTime<Utc>> {
        // Fire instants are whole seconds, so "strictly after" means ">= floor + 1s".
        let after_secs = after.timestamp();
        let limit = naive_from_secs(after_secs)?
            .date()
            .checked_add_days(Days::new(HORIZON_DAYS))
            .unwrap_or(NaiveDate::MAX);
        let fire = match zone {
            CronZone::Utc => self.next_fixed_offset(after_secs, 0, limit),
            CronZone::Offset(minutes) => {
                // The maintenance rule: the cron time at (instant - offset), plus offset.
                let shift = -(i64::from(*minutes) * 60);
                self.next_fixed_offset(after_secs, shift, limit)
            }
            CronZone::Named(tz) => self.next_in_zone(after_secs, tz, limit),
        }?;
        DateTime::from_timestamp(fire, 0)
    }

    /// The next `count` fire instants after `after`, in increasing order (fewer only if
    /// the search horizon runs out).
    pub fn upcoming(
        &self,
        after: DateTime<Utc>,
        zone: &CronZone,
        count: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(count.min(1024));
        let mut cursor = after;
        while out.len() < count {
            match self.next_after(cursor, zone) {
                Some(next) => {
                    out.push(next);
                    cursor = next;
                }
                None => break,
            }
        }
        out
    }

    /// Next fire in a zone whose wall clock is UTC plus a constant `shift` seconds.
    fn next_fixed_offset(&self, after_secs: i64, shift: i64, limit: NaiveDate) -> Option<i64> {
        let local_after = after_secs.checked_add(shift)?;
        let local = self.next_local_match(first_minute_after(local_after)?, limit)?;
        local.checked_sub(shift)
    }

    /// Next fire in a named zone, applying the wildcard/fixed DST rule.
    ///
    /// Walks the real timeline one constant-offset segment at a time: within a segment
    /// wall-clock time is UTC plus a constant, so the next matching wall-clock time gives
    /// a candidate instant; if a transition lies before that candidate, the walk restarts
    /// at the transition with the new offset (after handling a fixed mask's gap match).
    fn next_in_zone(&self, after_secs: i64, tz: &Tz, limit: NaiveDate) -> Option<i64> {
        let fixed = !self.is_wildcard();
        // Fire instants must be > `excl`; the offset is `offset` on (.., scanned] up to
        // the last transition seen, and transitions after `scanned` are still unknown.
        let mut excl = after_secs;
        let mut scanned = after_secs;
        let mut offset = offset_at(tz, scanned)?;
        // Each round passes a transition (about two a year) or a repeated wall-clock time.
        for _ in 0..100_000 {
            let local =
                self.next_local_match(first_minute_after(excl.checked_add(offset)?)?, limit)?;
            let candidate = local.checked_sub(offset)?;
            if let Some((at, new_offset)) = first_transition(tz, scanned, candidate, offset) {
                if fixed && new_offset > offset {
                    // Spring forward: wall-clock times [at+offset, at+new_offset) are skipped;
                    // a fixed mask matching any of them fires once, when the clock jumps.
                    let gap_start = at.checked_add(offset)?;
                    let gap_end = at.checked_add(new_offset)?;
                    let gap_last_day = naive_from_secs(gap_end)?.date().min(limit);
                    let first = self.next_local_match(ceil_to_minute(gap_start)?, gap_last_day);
                    if first.is_some_and(|l| l < gap_end) {
                        return Some(at);
                    }
                }
                excl = if fixed && new_offset < offset {
                    // Fall back: wall-clock times before at+offset were already run once.
                    at - 1 + (offset - new_offset)
                } else {
                    at - 1
                };
                scanned = at;
                offset = new_offset;
                continue;
            }
            if fixed && earliest_instant(tz, local).is_some_and(|first| first < candidate) {
                // Second occurrence of a repeated wall-clock time: a fixed mask skips it.
                excl = candidate;
                scanned = candidate;
                continue;
            }
            return Some(candidate);
        }
        None
    }

    /// Whether a calendar day matches, using Vixie's AND/OR rule for the two day fields.
    fn day_matches(&self, date: NaiveDate) -> bool {
        let dom = self.days_of_month & (1 << date.day()) != 0;
        let dow = self.days_of_week & (1 << date.weekday().num_days_from_sunday()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first matching wall-clock time at or after `start` (local seconds, a whole
    /// minute), skipping whole months, days and hours that cannot match. `None` if it
    /// would fall after `limit`.
    fn next_local_match(&self, start: i64, limit: NaiveDate) -> Option<i64> {
        let start = naive_from_secs(start)?;
        let mut date = start.date();
        let mut hour = start.hour();
        let mut minute = start.minute();
        while date <= limit {
            if self.months & (1 << date.month()) == 0 {
                let next_month = next_bit(u64::from(self.months), date.month() + 1);
                date = match next_month {
                    Some(month) => NaiveDate::from_ymd_opt(date.year(), month, 1)?,
                    None => {
                        let first = next_bit(u64::from(self.months), 1)?;
                        NaiveDate::from_ymd_opt(date.year().checked_add(1)?, first, 1)?
                    }
                };
                hour = 0;
                minute = 0;
                continue;
            }
            if self.day_matches(date) {
                while let Some(h) = next_bit(u64::from(self.hours), hour) {
                    let from_minute = if h == hour { minute } else { 0 };
                    if let Some(m) = next_bit(self.minutes, from_minute) {
                        return Some(date.and_hms_opt(h, m, 0)?.and_utc().timestamp());
                    }
                    hour = h + 1;
                    minute = 0;
                }
            }
            date = date.succ_opt()?;
            hour = 0;
            minute = 0;
        }
        None
    }
}

impl FromStr for CronMask {
    type Err = CronError;

    /// Same as [`CronMask::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CronMask::parse(s)
    }
}

impl fmt::Display for CronMask {
    /// Prints the mask as written ([`CronMask::as_str`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for CronMask {
    /// Serializes as the mask text.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for CronMask {
    /// Deserializes from mask text, validating it.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        CronMask::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Parses one field into a bitset (bit n = value n matches), or an error message.
fn parse_field(text: &str, spec: &FieldSpec) -> Result<u64, String> {
    let mut bits = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!("empty list item in '{text}'"));
        }
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => (base, Some(parse_step(step)?)),
            None => (item, None),
        };
        let (low, high) = if base == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = base.split_once('-') {
            let low = parse_value(a, item, spec)?;
            let high = parse_value(b, item, spec)?;
            if low > high {
                return Err(format!("range {base} is reversed (start is after end)"));
            }
            (low, high)
        } else {
            let value = parse_value(base, item, spec)?;
            (value, if step.is_some() { spec.max } else { value })
        };
        let step = step.unwrap_or(1) as usize;
        for value in (low..=high).step_by(step) {
            bits |= 1 << value;
        }
    }
    Ok(bits)
}

/// Parses a step (the part after `/`): a number of at least 1.
fn parse_step(text: &str) -> Result<u32, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid step '{text}' (expected a number of at least 1)"
        ));
    }
    match text.parse::<u32>() {
        Ok(0) => Err("step 0 is not allowed (steps start at 1)".to_string()),
        Ok(step) => Ok(step),
        // Absurdly large but numeric: behaves like any step beyond the field's range.
        Err(_) => Ok(u32::MAX),
    }
}

/// Parses a single value (number or, for month and day-of-week, a 3-letter name).
fn parse_value(text: &str, item: &str, spec: &FieldSpec) -> Result<u32, String> {
    if text.is_empty() {
        return Err(format!(
            "missing value in '{item}' (expected {})",
            spec.hint
        ));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(value) if (spec.min..=spec.max).contains(&value) => Ok(value),
            _ => Err(format!(
                "value {text} is out of range {}-{}",
                spec.min, spec.max
            )),
        };
    }
    spec.names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
        .map(|index| spec.names_base + index as u32)
        .ok_or_else(|| format!("invalid value '{text}' (expected {})", spec.hint))
}

/// The lowest set bit of `bits` at position `from` or above.
fn next_bit(bits: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = bits >> from;
    (rest != 0).then(|| from + rest.trailing_zeros())
}

/// Seconds since the epoch (UTC or local wall-clock) as a naive date-time.
fn naive_from_secs(secs: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp(secs, 0).map(|dt| dt.naive_utc())
}

/// The first whole minute strictly after `secs`.
fn first_minute_after(secs: i64) -> Option<i64> {
    secs.div_euclid(60).checked_add(1)?.checked_mul(60)
}

/// The first whole minute at or after `secs`.
fn ceil_to_minute(secs: i64) -> Option<i64> {
    first_minute_after(secs.checked_sub(1)?)
}

/// The zone's UTC offset (seconds) at instant `secs`.
fn offset_at(tz: &Tz, secs: i64) -> Option<i64> {
    let utc = naive_from_secs(secs)?;
    Some(i64::from(
        tz.offset_from_utc_datetime(&utc).fix().local_minus_utc(),
    ))
}

/// The earliest real instant (seconds) at which the zone's wall clock reads `local`.
fn earliest_instant(tz: &Tz, local: i64) -> Option<i64> {
    let naive = naive_from_secs(local)?;
    tz.from_local_datetime(&naive)
        .earliest()
        .map(|dt| dt.timestamp())
}

/// The first offset change in `(from, to]`, given the offset at `from` is `offset`:
/// returns the instant it takes effect and the new offset.
fn first_transition(tz: &Tz, from: i64, to: i64, offset: i64) -> Option<(i64, i64)> {
    let mut low = from;
    while low < to {
        let high = low.saturating_add(PROBE_STEP_SECS).min(to);
        let high_offset = offset_at(tz, high)?;
        if high_offset != offset {
            // Bisect: offset(low) == offset, offset(high) != offset.
            let (mut a, mut b, mut b_offset) = (low, high, high_offset);
            while b - a > 1 {
                let mid = a + (b - a) / 2;
                let mid_offset = offset_at(tz, mid)?;
                if mid_offset == offset {
                    a = mid;
                } else {
                    b = mid;
                    b_offset = mid_offset;
                }
            }
            return Some((b, b_offset));
        }
        low = high;
    }
    None
}

/// The zone a mask is evaluated in, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CronZone {
    /// Coordinated Universal Time (the default when no zone is given).
    Utc,
    /// An IANA zone: the mask is matched against local wall-clock time, with the DST
    /// rule from the module docs.
    Named(Tz),
    /// UTC shifted by this many minutes (0..1440): the `maintenance` zone. The next run
    /// is the UTC cron time computed at (now − offset), plus the offset.
    Offset(u32),
}

/// A zone as written in a module definition (`runtz`), before the maintenance offset
/// is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneSpec {
    /// No zone or `UTC`.
    Utc,
    /// An IANA zone name.
    Named(Tz),
    /// `maintenance`: UTC shifted by the installation's maintenance offset.
    Maintenance,
}

impl ZoneSpec {
    /// Parses `""` or `UTC` (case-insensitive) as [`ZoneSpec::Utc`], `maintenance`
    /// (case-insensitive) as [`ZoneSpec::Maintenance`], and anything else as an IANA
    /// zone name (exact spelling, e.g. `Europe/Amsterdam`). Surrounding whitespace is
    /// ignored.
    pub fn parse(name: &str) -> Result<ZoneSpec, CronError> {
        let trimmed = name.trim();
        if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("utc") {
            Ok(ZoneSpec::Utc)
        } else if trimmed.eq_ignore_ascii_case("maintenance") {
            Ok(ZoneSpec::Maintenance)
        } else {
            trimmed
                .parse::<Tz>()
                .map(ZoneSpec::Named)
                .map_err(|_| CronError::UnknownZone {
                    name: trimmed.to_string(),
                })
        }
    }

    /// Resolves to a [`CronZone`], using `maintenance_offset_minutes` for
    /// [`ZoneSpec::Maintenance`] (callers keep it in 0..1440; see
    /// [`parse_maintenance_offset`]).
    pub fn resolve(self, maintenance_offset_minutes: u32) -> CronZone {
        match self {
            ZoneSpec::Utc => CronZone::Utc,
            ZoneSpec::Named(tz) => CronZone::Named(tz),
            ZoneSpec::Maintenance => CronZone::Offset(maintenance_offset_minutes),
        }
    }
}

impl FromStr for ZoneSpec {
    type Err = CronError;

    /// Same as [`ZoneSpec::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ZoneSpec::parse(s)
    }
}

impl fmt::Display for ZoneSpec {
    /// Prints `UTC`, the IANA name, or `maintenance` (all accepted by
    /// [`ZoneSpec::parse`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZoneSpec::Utc => f.write_str("UTC"),
            ZoneSpec::Named(tz) => f.write_str(tz.name()),
            ZoneSpec::Maintenance => f.write_str("maintenance"),
        }
    }
}

/// Parses the value of `WARREN_MAINTENANCE_OFFSET`: `Some(minutes)` when it is an
/// integer in 0..1440 (surrounding whitespace allowed), `None` when unset or invalid,
/// in which case the caller uses a randomly chosen, stored offset.
pub fn parse_maintenance_offset(value: Option<&str>) -> Option<u32> {
    let minutes = value?.trim().parse::<u32>().ok()?;
    (minutes < 1440).then_some(minutes)
}
