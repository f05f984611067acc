//! Rate limits of a task type: at most `count` starts per second, minute or hour across
//! all nodes, in all or per value of the type's key field (`<managedtask
//! ratelimit="20/s" ratelimitkey="tenant" ratelimitburst="5">`). The claim holds them
//! with one bucket per (type, key) in the database (`store/rate_limit.rs`); the
//! arithmetic is here.
//!
//! A bucket is a token bucket of `burst` tokens refilled at one per emission interval
//! `T = period / count`, kept as one instant (the generic cell rate algorithm's
//! "theoretical arrival time", TAT): each start moves TAT on by `T` (from now, when TAT
//! is in the past), and a start is allowed while TAT stays within `burst × T` of now.
//! So a bucket is one number written when tasks start, never a refill job, and a bucket
//! untouched for `burst × T` is full again. Instants are in nanoseconds since the epoch
//! (they fit an `i64` until 2262), so that the interval, a whole number of them, holds
//! every rate a rule can name to within a thousandth (1,000,000/s: exactly 1,000 ns;
//! 7/s: 142,857,142 ns, within a billionth).

use std::fmt;
use std::str::FromStr;

/// Most starts a rate may allow per period.
pub const MAX_RATE_COUNT: u32 = 1_000_000;

/// Largest burst a rate limit may allow.
pub const MAX_BURST: u32 = 1_000_000;

/// Nanoseconds per millisecond: bucket instants are in nanoseconds, the store's clock
/// in milliseconds.
pub const NS_PER_MS: i64 = 1_000_000;

/// A store instant (ms) as a bucket instant (ns).
pub fn ms_to_ns(ms: i64) -> i64 {
    ms.saturating_mul(NS_PER_MS)
}

/// The period of a rate limit (`/s`, `/m`, `/h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RatePeriod {
    /// Per second.
    Second,
    /// Per minute.
    Minute,
    /// Per hour.
    Hour,
}

impl RatePeriod {
    /// The period's length in milliseconds.
    pub fn ms(self) -> i64 {
        match self {
            RatePeriod::Second => 1_000,
            RatePeriod::Minute => 60_000,
            RatePeriod::Hour => 3_600_000,
        }
    }

    /// The period of a length in milliseconds, as the registry stores it.
    pub fn from_ms(ms: i64) -> Option<RatePeriod> {
        [RatePeriod::Second, RatePeriod::Minute, RatePeriod::Hour]
            .into_iter()
            .find(|p| p.ms() == ms)
    }

    /// The unit as a rate is written (`s`, `m`, `h`).
    pub fn unit(self) -> &'static str {
        match self {
            RatePeriod::Second => "s",
            RatePeriod::Minute => "m",
            RatePeriod::Hour => "h",
        }
    }

    fn word(self) -> &'static str {
        match self {
            RatePeriod::Second => "second",
            RatePeriod::Minute => "minute",
            RatePeriod::Hour => "hour",
        }
    }
}

/// A rate as written in a module definition: `20/s`, `100/m`, `5/h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Starts per period (1 to [`MAX_RATE_COUNT`]).
    pub count: u32,
    /// The period.
    pub period: RatePeriod,
}

impl FromStr for Rate {
    type Err = String;

    /// Reads `N/s`, `N/m` or `N/h`; the error says what is expected.
    fn from_str(text: &str) -> Result<Rate, String> {
        let expected = || {
            format!(
                "expected starts per period as N/s, N/m or N/h with N from 1 to {MAX_RATE_COUNT} (for example 20/s)"
            )
        };
        let (count, unit) = text.trim().split_once('/').ok_or_else(expected)?;
        let count: u32 = count.trim().parse().map_err(|_| expected())?;
        if count == 0 || count > MAX_RATE_COUNT {
            return Err(expected());
        }
        let period = match unit.trim() {
            "s" => RatePeriod::Second,
            "m" => RatePeriod::Minute,
            "h" => RatePeriod::Hour,
            _ => return Err(expected()),
        };
        Ok(Rate { count, period })
    }
}

/// At most `count` starts per `period` across all nodes, with bursts of up to `burst`
/// at once: per distinct value of the data field `key` when there is one, else in all.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct RateLimit {
    /// Starts per period.
    pub count: u32,
    /// The period.
    pub period: RatePeriod,
    /// Most starts at once after a quiet spell (1 to [`MAX_BURST`]).
    pub burst: u32,
    /// The top-level data field whose value is the key; `None`: one bucket for the type.
    pub key: Option<String>,
}

impl RateLimit {
    /// A limit of `rate` with the default burst ([`default_burst`]).
    pub fn new(rate: Rate, key: Option<String>) -> RateLimit {
        RateLimit {
            count: rate.count,
            period: rate.period,
            burst: default_burst(rate),
            key,
        }
    }

    /// The emission interval `T` in nanoseconds: one token comes back every `T`.
    pub fn interval_ns(&self) -> i64 {
        (self.period.ms() * NS_PER_MS / i64::from(self.count.max(1))).max(1)
    }

    /// How many tasks may start at `now_ns` from a bucket whose TAT is `tat_ns` (`None`:
    /// no bucket yet, so a full one).
    pub fn available(&self, tat_ns: Option<i64>, now_ns: i64) -> u32 {
        let interval = self.interval_ns();
        let burst = i64::from(self.burst);
        let tat = tat_ns.unwrap_or(now_ns).max(now_ns);
        ((now_ns + burst * interval - tat) / interval).clamp(0, burst) as u32
    }

    /// The bucket's TAT after `taken` tasks started at `now_ns`.
    pub fn tat_after(&self, tat_ns: Option<i64>, now_ns: i64, taken: u32) -> i64 {
        tat_ns.unwrap_or(now_ns).max(now_ns) + i64::from(taken) * self.interval_ns()
    }

    /// The first instant (ns) at which a bucket whose TAT is `tat_ns` lets a task start.
    pub fn next_start_ns(&self, tat_ns: i64) -> i64 {
        tat_ns - (i64::from(self.burst) - 1) * self.interval_ns()
    }

    /// [`RateLimit::next_start_ns`] in whole milliseconds, rounded up: not before the
    /// token is there.
    pub fn next_start_ms(&self, tat_ns: i64) -> i64 {
        let start = self.next_start_ns(tat_ns);
        start.div_euclid(NS_PER_MS) + i64::from(start.rem_euclid(NS_PER_MS) > 0)
    }
}

/// A second's worth of starts, at least one: the burst when `ratelimitburst` is absent.
pub fn default_burst(rate: Rate) -> u32 {
    let per_second = i64::from(rate.count) * 1_000 / rate.period.ms();
    per_second.clamp(1, i64::from(MAX_BURST)) as u32
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at most {} starts per {}",
            self.count,
            self.period.word()
        )?;
        if let Some(key) = &self.key {
            write!(f, " per value of data.{key}")?;
        } else {
            write!(f, " across all nodes")?;
        }
        write!(f, ", in bursts of up to {}", self.burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(text: &str, burst: u32) -> RateLimit {
        RateLimit {
            burst,
            ..RateLimit::new(text.parse().unwrap(), None)
        }
    }

    #[test]
    fn rates_are_read_with_their_period() {
        assert_eq!(
            "20/s".parse(),
            Ok(Rate {
                count: 20,
                period: RatePeriod::Second
            })
        );
        assert_eq!("100/m".parse::<Rate>().unwrap().period, RatePeriod::Minute);
        assert_eq!(" 5 / h ".parse::<Rate>().unwrap().count, 5);
        for bad in [
            "20",
            "0/s",
            "20/d",
            "x/s",
            "-1/s",
            "1000001/s",
            "20/sec",
            "",
        ] {
            let e = bad.parse::<Rate>().unwrap_err();
            assert!(e.contains("N/s, N/m or N/h"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_default_burst_is_a_second_s_worth_and_at_least_one() {
        assert_eq!(default_burst("20/s".parse().unwrap()), 20);
        assert_eq!(default_burst("120/m".parse().unwrap()), 2);
        assert_eq!(default_burst("30/m".parse().unwrap()), 1);
        assert_eq!(default_burst("5/h".parse().unwrap()), 1);
    }

    #[test]
    fn the_interval_is_the_period_over_the_count() {
        assert_eq!(limit("20/s", 1).interval_ns(), 50_000_000);
        assert_eq!(limit("7/s", 1).interval_ns(), 142_857_142);
        assert_eq!(limit("1/h", 1).interval_ns(), 3_600_000_000_000);
        assert_eq!(limit("1000000/s", 1).interval_ns(), 1_000);
        // Whole nanoseconds hold every rate a rule can name within a thousandth.
        for count in [999_999, 150_000, 400_000, 333_333] {
            let l = limit(&format!("{count}/s"), 1);
            let actual = 1e9 / l.interval_ns() as f64;
            assert!((actual / f64::from(count) - 1.0).abs() < 1e-3, "{count}/s");
        }
    }

    #[test]
    fn a_full_bucket_allows_the_burst_then_one_per_interval() {
        let l = limit("20/s", 3);
        let ms = NS_PER_MS;
        let now = ms_to_ns(1_767_571_200_000);
        assert_eq!(l.available(None, now), 3, "no bucket yet: a full one");
        let tat = l.tat_after(None, now, 3);
        assert_eq!(tat, now + 150 * ms);
        assert_eq!(l.available(Some(tat), now), 0, "the burst is spent");
        assert_eq!(l.available(Some(tat), now + 50 * ms - 1), 0);
        assert_eq!(l.available(Some(tat), now + 50 * ms), 1, "one interval on");
        assert_eq!(l.next_start_ns(tat), now + 50 * ms);
        assert_eq!(l.next_start_ms(tat), 1_767_571_200_050);
        assert_eq!(l.next_start_ms(tat + 1), 1_767_571_200_051);
        assert_eq!(l.available(Some(tat), now + 150 * ms), 3);
        assert_eq!(
            l.available(Some(tat), now + 10_000 * ms),
            3,
            "a quiet spell fills the bucket up to the burst, not beyond"
        );
        // Taking from a bucket that refilled counts from now, not from the old TAT.
        assert_eq!(
            l.tat_after(Some(tat), now + 10_000 * ms, 1),
            now + 10_050 * ms
        );
    }

    #[test]
    fn over_a_long_run_the_starts_follow_the_rate() {
        // Claim whatever is available every 7 ms for 10 s: 20/s with bursts of 2 allows
        // 2 at once, then one per 50 ms.
        let l = limit("20/s", 2);
        let (mut tat, mut started) = (None, 0u32);
        for step in 0..=(10_000 / 7) {
            let now = ms_to_ns(5_000 + step * 7);
            let n = l.available(tat, now);
            if n > 0 {
                tat = Some(l.tat_after(tat, now, n));
                started += n;
            }
        }
        assert!((200..=202).contains(&started), "{started}");
    }

    #[test]
    fn a_bucket_ahead_of_a_lowered_burst_allows_nothing() {
        let l = limit("20/s", 1);
        assert_eq!(l.available(Some(10 * NS_PER_MS), 0), 0);
    }

    #[test]
    fn a_limit_reads_as_what_it_does() {
        let mut l = limit("20/s", 5);
        assert_eq!(
            l.to_string(),
            "at most 20 starts per second across all nodes, in bursts of up to 5"
        );
        l.key = Some("tenant".into());
        l.period = RatePeriod::Minute;
        assert_eq!(
            l.to_string(),
            "at most 20 starts per minute per value of data.tenant, in bursts of up to 5"
        );
    }
}
