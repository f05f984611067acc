//! Tests for `warren::cron`: parser tables, fire-time tables in several zones (both DST
//! transitions, both hemispheres, wildcard and fixed masks), and a property test against
//! a minute-by-minute brute-force reference.

use std::sync::OnceLock;

use chrono::{
    DateTime, Datelike, NaiveDate, NaiveDateTime, Offset, SecondsFormat, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use proptest::prelude::*;
use warren::cron::*;

const AMS: CronZone = CronZone::Named(chrono_tz::Europe::Amsterdam);
const NYC: CronZone = CronZone::Named(chrono_tz::America::New_York);
const SYD: CronZone = CronZone::Named(chrono_tz::Australia::Sydney);
const LHI: CronZone = CronZone::Named(chrono_tz::Australia::Lord_Howe);
const SCL: CronZone = CronZone::Named(chrono_tz::America::Santiago);
const KOL: CronZone = CronZone::Named(chrono_tz::Asia::Kolkata);
const UTC: CronZone = CronZone::Utc;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("bad instant {text}: {e}"))
        .with_timezone(&Utc)
}

fn show(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn mask(text: &str) -> CronMask {
    CronMask::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Checks `upcoming` (and thereby `next_after`) against a table of expected instants.
fn check_table(cases: &[(CronZone, &str, &str, &[&str])]) {
    for (zone, text, after, expected) in cases {
        let got: Vec<String> = mask(text)
            .upcoming(at(after), zone, expected.len())
            .into_iter()
            .map(show)
            .collect();
        assert_eq!(got, *expected, "mask '{text}' in {zone:?} after {after}");
    }
}

// ---------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------

#[test]
fn valid_masks_parse_and_keep_their_text() {
    for text in [
        "* * * * *",
        "*/15 * * * *",
        "0 0 1 1 *",
        "59 23 31 12 7",
        "0-59/7 0-23/5 1-31/10 1-12/4 0-7/3",
        "5/20 3/6 2/9 2/3 1/2",
        "1,2,3-5,*/20 * * * *",
        "0 12 * JAN,feb,Mar-jun *",
        "0 12 * * Mon-FRI",
        "0 12 * * sun,sat",
        "0 12 * * 7",
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
        "@DAILY",
        "0 0 29 2 *",
        "0 0 31 * *",
        "*/100 * * * *",
    ] {
        let parsed = mask(text);
        assert_eq!(parsed.as_str(), text);
        assert_eq!(parsed.to_string(), text);
        assert_eq!(text.parse::<CronMask>().unwrap(), parsed);
    }
    let padded = mask("  0\t0   *  * *\n");
    assert_eq!(padded.as_str(), "0\t0   *  * *");
}

#[test]
fn equivalent_spellings_fire_identically() {
    let pairs = [
        ("*/15 * * * *", "0,15,30,45 * * * *"),
        ("5/20 * * * *", "5,25,45 * * * *"),
        ("10-50/20 * * * *", "10,30,50 * * * *"),
        ("0-59 * * * *", "* * * * *"),
        ("0 */6 * * *", "0 0,6,12,18 * * *"),
        ("0 0 * jan-mar *", "0 0 * 1-3 *"),
        ("0 0 * JAN,Feb,mar *", "0 0 * 1,2,3 *"),
        ("0 0 * */5 *", "0 0 * 1,6,11 *"),
        ("0 0 * * mon-fri", "0 0 * * 1-5"),
        ("0 0 * * 7", "0 0 * * 0"),
        ("0 0 * * sun", "0 0 * * 0"),
        ("0 0 * * SAT", "0 0 * * 6"),
        ("0 0 * * 5-7", "0 0 * * 0,5,6"),
        ("0 0 * * */2", "0 0 * * 0,2,4,6"),
        ("0 0 * * */7", "0 0 * * 0"),
        ("0 0 * * 1/2", "0 0 * * 0,1,3,5"),
        ("0 0 * * *", "0 0 * * 0-7"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("*/100 * * * *", "0 * * * *"),
        ("0 0 1-31/100 * *", "0 0 1 * *"),
    ];
    for (left, right) in pairs {
        for start in ["2026-01-01T00:00:00Z", "2027-02-27T13:14:15Z"] {
            for zone in [UTC, AMS] {
                assert_eq!(
                    mask(left).upcoming(at(start), &zone, 40),
                    mask(right).upcoming(at(start), &zone, 40),
                    "'{left}' vs '{right}' from {start} in {zone:?}"
                );
            }
        }
    }
}

#[test]
fn invalid_masks_are_rejected_with_messages_naming_the_field() {
    let cases = [
        (
            "61 * * * *",
            "invalid cron mask '61 * * * *': minute field: value 61 is out of range 0-59",
        ),
        (
            "0 24 * * *",
            "invalid cron mask '0 24 * * *': hour field: value 24 is out of range 0-23",
        ),
        (
            "0 0 0 * *",
            "invalid cron mask '0 0 0 * *': day-of-month field: value 0 is out of range 1-31",
        ),
        (
            "0 0 32 * *",
            "invalid cron mask '0 0 32 * *': day-of-month field: value 32 is out of range 1-31",
        ),
        (
            "0 0 * 13 *",
            "invalid cron mask '0 0 * 13 *': month field: value 13 is out of range 1-12",
        ),
        (
            "0 0 * 0 *",
            "invalid cron mask '0 0 * 0 *': month field: value 0 is out of range 1-12",
        ),
        (
            "0 0 * * 8",
            "invalid cron mask '0 0 * * 8': day-of-week field: value 8 is out of range 0-7",
        ),
        (
            "99999999999 * * * *",
            "invalid cron mask '99999999999 * * * *': minute field: value 99999999999 is out of range 0-59",
        ),
        (
            "4 5 30 2 *",
            "invalid cron mask '4 5 30 2 *': no date matches (day-of-month 30 never occurs in February)",
        ),
        (
            "0 0 31 4,6,9,11 *",
            "invalid cron mask '0 0 31 4,6,9,11 *': no date matches \
             (day-of-month 31 never occurs in April, June, September or November)",
        ),
        (
            "0 0 30-31 feb */2",
            "invalid cron mask '0 0 30-31 feb */2': no date matches \
             (day-of-month 30-31 never occurs in February)",
        ),
        ("* * *", "expected 5 fields (minute hour day-of-month month day-of-week), found 3"),
        ("", "expected 5 fields (minute hour day-of-month month day-of-week), found 0"),
        ("   ", "expected 5 fields (minute hour day-of-month month day-of-week), found 0"),
        (
            "* * * * * *",
            "expected 5 fields (minute hour day-of-month month day-of-week), found 6",
        ),
        (
            "@reboot",
            "invalid cron mask '@reboot': @reboot is not supported \
             (a schedule needs a time; use runatstartup to run a task at startup)",
        ),
        (
            "@fortnightly",
            "invalid cron mask '@fortnightly': unknown macro '@fortnightly' (expected @yearly, \
             @annually, @monthly, @weekly, @daily, @midnight or @hourly)",
        ),
        (
            "@daily 5",
            "invalid cron mask '@daily 5': @daily must stand alone, found extra text after it",
        ),
        (
            "1,,2 * * * *",
            "invalid cron mask '1,,2 * * * *': minute field: empty list item in '1,,2'",
        ),
        (
            "0 1, * * *",
            "invalid cron mask '0 1, * * *': hour field: empty list item in '1,'",
        ),
        (
            "0 0 ,5 * *",
            "invalid cron mask '0 0 ,5 * *': day-of-month field: empty list item in ',5'",
        ),
        (
            "5-2 * * * *",
            "invalid cron mask '5-2 * * * *': minute field: range 5-2 is reversed (start is after end)",
        ),
        (
            "0 0 * * fri-mon",
            "invalid cron mask '0 0 * * fri-mon': day-of-week field: range fri-mon is reversed \
             (start is after end)",
        ),
        (
            "*/0 * * * *",
            "invalid cron mask '*/0 * * * *': minute field: step 0 is not allowed (steps start at 1)",
        ),
        (
            "0 1-5/0 * * *",
            "invalid cron mask '0 1-5/0 * * *': hour field: step 0 is not allowed (steps start at 1)",
        ),
        (
            "*/x * * * *",
            "invalid cron mask '*/x * * * *': minute field: invalid step 'x' (expected a number of at least 1)",
        ),
        (
            "*/ * * * *",
            "invalid cron mask '*/ * * * *': minute field: invalid step '' (expected a number of at least 1)",
        ),
        (
            "*/5/2 * * * *",
            "invalid cron mask '*/5/2 * * * *': minute field: invalid step '5/2' (expected a number of at least 1)",
        ),
        (
            "abc * * * *",
            "invalid cron mask 'abc * * * *': minute field: invalid value 'abc' (expected a number 0-59)",
        ),
        (
            "1.5 * * * *",
            "invalid cron mask '1.5 * * * *': minute field: invalid value '1.5' (expected a number 0-59)",
        ),
        (
            "-5 * * * *",
            "invalid cron mask '-5 * * * *': minute field: missing value in '-5' (expected a number 0-59)",
        ),
        (
            "/5 * * * *",
            "invalid cron mask '/5 * * * *': minute field: missing value in '/5' (expected a number 0-59)",
        ),
        (
            "1-2-3 * * * *",
            "invalid cron mask '1-2-3 * * * *': minute field: invalid value '2-3' (expected a number 0-59)",
        ),
        (
            "0 0 jan * *",
            "invalid cron mask '0 0 jan * *': day-of-month field: invalid value 'jan' (expected a number 1-31)",
        ),
        (
            "0 0 * foo *",
            "invalid cron mask '0 0 * foo *': month field: invalid value 'foo' \
             (expected a number 1-12 or a month name jan-dec)",
        ),
        (
            "0 0 * january *",
            "invalid cron mask '0 0 * january *': month field: invalid value 'january' \
             (expected a number 1-12 or a month name jan-dec)",
        ),
        (
            "0 0 * * funday",
            "invalid cron mask '0 0 * * funday': day-of-week field: invalid value 'funday' \
             (expected a number 0-7 or a weekday name sun-sat)",
        ),
        (
            "0 0 * * mon/x",
            "invalid cron mask '0 0 * * mon/x': day-of-week field: invalid step 'x' \
             (expected a number of at least 1)",
        ),
    ];
    for (text, message) in cases {
        let err = CronMask::parse(text).expect_err(text);
        assert_eq!(err.to_string(), message, "mask '{text}'");
        assert_eq!(text.parse::<CronMask>().unwrap_err(), err);
    }
}

#[test]
fn error_variants_carry_the_field() {
    let field_of = |text: &str| match CronMask::parse(text) {
        Err(CronError::Field { field, .. }) => field,
        other => panic!("{text}: unexpected {other:?}"),
    };
    assert_eq!(field_of("60 * * * *"), CronField::Minute);
    assert_eq!(field_of("* 1-x * * *"), CronField::Hour);
    assert_eq!(field_of("* * 3-1 * *"), CronField::DayOfMonth);
    assert_eq!(field_of("* * * dec-jan *"), CronField::Month);
    assert_eq!(field_of("* * * * */0"), CronField::DayOfWeek);
    assert!(matches!(
        CronMask::parse("0 0 30 2 *"),
        Err(CronError::NoMatch { .. })
    ));
    assert!(matches!(
        CronMask::parse("a b"),
        Err(CronError::FieldCount { found: 2, .. })
    ));
    assert!(matches!(
        CronMask::parse("@reboot"),
        Err(CronError::Macro { .. })
    ));
}

#[test]
fn impossible_day_of_month_is_fine_when_the_or_rule_applies() {
    // Both day fields restricted: OR, so any Monday matches.
    mask("0 0 30 2 1");
    mask("0 0 31 4,6,9,11 mon-fri");
    // Feb 29 exists in leap years.
    mask("0 0 29 2 *");
    // A `*`-led day-of-month always includes day 1.
    mask("0 0 */30 2 *");
    // Some of the listed days exist.
    mask("0 0 28-31 2 *");
    mask("0 0 31 1-4 *");
}

#[test]
fn wildcard_classification() {
    for (text, wildcard) in [
        ("* * * * *", true),
        ("*/5 3 * * *", true),
        ("30 * * * *", true),
        ("30 */2 * * *", true),
        ("*,5 3 * * *", true),
        ("30 2 * * *", false),
        ("0-59 0-23 * * *", false),
        ("5,*/10 1 * * *", false),
        ("@hourly", true),
        ("@daily", false),
        ("@weekly", false),
    ] {
        assert_eq!(mask(text).is_wildcard(), wildcard, "{text}");
    }
}

#[test]
fn zone_specs() {
    for (text, expected) in [
        ("", ZoneSpec::Utc),
        ("UTC", ZoneSpec::Utc),
        ("utc", ZoneSpec::Utc),
        (" Utc ", ZoneSpec::Utc),
        ("maintenance", ZoneSpec::Maintenance),
        ("Maintenance", ZoneSpec::Maintenance),
        (
            "Europe/Amsterdam",
            ZoneSpec::Named(chrono_tz::Europe::Amsterdam),
        ),
        (
            "Australia/Lord_Howe",
            ZoneSpec::Named(chrono_tz::Australia::Lord_Howe),
        ),
        ("Etc/UTC", ZoneSpec::Named(chrono_tz::Etc::UTC)),
    ] {
        assert_eq!(ZoneSpec::parse(text), Ok(expected), "{text:?}");
        assert_eq!(text.parse::<ZoneSpec>(), Ok(expected), "{text:?}");
    }
    let err = ZoneSpec::parse("Mars/Base").unwrap_err();
    assert_eq!(err.to_string(), "unknown time zone 'Mars/Base'");
    assert_eq!(
        err,
        CronError::UnknownZone {
            name: "Mars/Base".to_string()
        }
    );

    assert_eq!(ZoneSpec::Utc.to_string(), "UTC");
    assert_eq!(ZoneSpec::Maintenance.to_string(), "maintenance");
    assert_eq!(
        ZoneSpec::Named(chrono_tz::America::Sao_Paulo).to_string(),
        "America/Sao_Paulo"
    );
    for spec in [
        ZoneSpec::Utc,
        ZoneSpec::Maintenance,
        ZoneSpec::Named(chrono_tz::Pacific::Auckland),
    ] {
        assert_eq!(ZoneSpec::parse(&spec.to_string()), Ok(spec));
    }

    assert_eq!(ZoneSpec::Utc.resolve(90), CronZone::Utc);
    assert_eq!(ZoneSpec::Maintenance.resolve(90), CronZone::Offset(90));
    assert_eq!(
        ZoneSpec::Named(chrono_tz::Asia::Kolkata).resolve(90),
        CronZone::Named(chrono_tz::Asia::Kolkata)
    );
}

#[test]
fn maintenance_offset_values() {
    for (value, expected) in [
        (None, None),
        (Some(""), None),
        (Some("0"), Some(0)),
        (Some("90"), Some(90)),
        (Some(" 90 "), Some(90)),
        (Some("1439"), Some(1439)),
        (Some("1440"), None),
        (Some("-5"), None),
        (Some("abc"), None),
        (Some("1.5"), None),
        (Some("99999999999"), None),
    ] {
        assert_eq!(parse_maintenance_offset(value), expected, "{value:?}");
    }
}

#[test]
fn serde_round_trip_as_text() {
    use serde::de::value::{Error, StrDeserializer};
    use serde::Deserialize;
    let parsed = CronMask::deserialize(StrDeserializer::<Error>::new("@daily")).unwrap();
    assert_eq!(parsed, mask("@daily"));
    assert!(CronMask::deserialize(StrDeserializer::<Error>::new("61 * * * *")).is_err());
}

// ---------------------------------------------------------------------------------------
// Fire times
// ---------------------------------------------------------------------------------------

#[test]
fn strictly_after_and_sub_minute_instants() {
    check_table(&[
        (
            UTC,
            "0 * * * *",
            "2026-01-01T10:00:00Z",
            &["2026-01-01T11:00:00Z"],
        ),
        (
            UTC,
            "0 * * * *",
            "2026-01-01T09:59:59.999Z",
            &["2026-01-01T10:00:00Z"],
        ),
        (
            UTC,
            "* * * * *",
            "2026-01-01T10:00:30Z",
            &["2026-01-01T10:01:00Z"],
        ),
        (
            UTC,
            "* * * * *",
            "2026-01-01T10:00:00Z",
            &["2026-01-01T10:01:00Z"],
        ),
        (
            UTC,
            "* * * * *",
            "2026-01-01T10:00:00.000001Z",
            &["2026-01-01T10:01:00Z"],
        ),
        (
            UTC,
            "*/15 * * * *",
            "2026-01-01T10:14:59.5Z",
            &["2026-01-01T10:15:00Z"],
        ),
        (
            AMS,
            "0 15 * * *",
            "2026-01-05T14:00:00Z",
            &["2026-01-06T14:00:00Z"],
        ),
        (
            AMS,
            "0 15 * * *",
            "2026-01-05T13:59:59Z",
            &["2026-01-05T14:00:00Z"],
        ),
        (
            KOL,
            "0 * * * *",
            "2026-01-01T10:00:00Z",
            &["2026-01-01T10:30:00Z", "2026-01-01T11:30:00Z"],
        ),
        (
            UTC,
            "0 0 1 1 *",
            "2026-06-01T00:00:00Z",
            &["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"],
        ),
        (
            UTC,
            "59 23 31 12 *",
            "2026-12-31T23:59:00Z",
            &["2027-12-31T23:59:00Z"],
        ),
        (
            UTC,
            "0 0 31 * *",
            "2026-01-31T00:00:00Z",
            &["2026-03-31T00:00:00Z", "2026-05-31T00:00:00Z"],
        ),
    ]);
}

#[test]
fn macros_fire_as_documented() {
    let after = "2026-01-01T00:00:00Z";
    check_table(&[
        (UTC, "@yearly", after, &["2027-01-01T00:00:00Z"]),
        (UTC, "@monthly", after, &["2026-02-01T00:00:00Z"]),
        (UTC, "@weekly", after, &["2026-01-04T00:00:00Z"]), // Sunday
        (UTC, "@daily", after, &["2026-01-02T00:00:00Z"]),
        (UTC, "@hourly", after, &["2026-01-01T01:00:00Z"]),
    ]);
}

#[test]
fn weekday_numbering() {
    // 2026-01-01 is a Thursday.
    let after = "2026-01-01T00:00:00Z";
    check_table(&[
        (UTC, "0 12 * * 0", after, &["2026-01-04T12:00:00Z"]),
        (UTC, "0 12 * * 7", after, &["2026-01-04T12:00:00Z"]),
        (UTC, "0 12 * * sun", after, &["2026-01-04T12:00:00Z"]),
        (UTC, "0 12 * * 1", after, &["2026-01-05T12:00:00Z"]),
        (UTC, "0 12 * * mon", after, &["2026-01-05T12:00:00Z"]),
        (UTC, "0 12 * * 6", after, &["2026-01-03T12:00:00Z"]),
        (
            UTC,
            "0 12 * * 5-7",
            after,
            &[
                "2026-01-02T12:00:00Z",
                "2026-01-03T12:00:00Z",
                "2026-01-04T12:00:00Z",
                "2026-01-09T12:00:00Z",
            ],
        ),
        (
            UTC,
            "0 12 * * 1/2", // 1,3,5,7: Mon, Wed, Fri, Sun
            after,
            &[
                "2026-01-02T12:00:00Z",
                "2026-01-04T12:00:00Z",
                "2026-01-05T12:00:00Z",
                "2026-01-07T12:00:00Z",
            ],
        ),
        // Mondays 15:00 in Amsterdam: 14:00Z in winter, 13:00Z in summer.
        (
            AMS,
            "0 15 * * 1",
            after,
            &["2026-01-05T14:00:00Z", "2026-01-12T14:00:00Z"],
        ),
        (
            AMS,
            "0 15 * * 1",
            "2026-03-27T00:00:00Z",
            &["2026-03-30T13:00:00Z", "2026-04-06T13:00:00Z"],
        ),
        (
            AMS,
            "0 15 * * 1",
            "2026-07-01T00:00:00Z",
            &["2026-07-06T13:00:00Z"],
        ),
        (
            AMS,
            "0 15 * * 1",
            "2026-10-20T00:00:00Z",
            &["2026-10-26T14:00:00Z"],
        ),
    ]);
}

#[test]
fn day_of_month_and_day_of_week_combine_like_vixie() {
    let after = "2026-01-01T00:00:00Z";
    check_table(&[
        // Both restricted: the 13th OR any Friday.
        (
            UTC,
            "0 0 13 * 5",
            after,
            &[
                "2026-01-02T00:00:00Z",
                "2026-01-09T00:00:00Z",
                "2026-01-13T00:00:00Z",
                "2026-01-16T00:00:00Z",
            ],
        ),
        // Day-of-month starts with `*`: odd days AND Fridays.
        (
            UTC,
            "0 0 */2 * 5",
            after,
            &[
                "2026-01-09T00:00:00Z",
                "2026-01-23T00:00:00Z",
                "2026-02-13T00:00:00Z",
            ],
        ),
        // Day-of-week starts with `*` (`*/7` = Sunday): the 13th AND a Sunday.
        (UTC, "0 0 13 * */7", after, &["2026-09-13T00:00:00Z"]),
        (
            UTC,
            "0 0 13 * *",
            after,
            &["2026-01-13T00:00:00Z", "2026-02-13T00:00:00Z"],
        ),
        (
            UTC,
            "0 0 * * 5",
            after,
            &["2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z"],
        ),
        // OR rule: Feb 29 or any Monday, in February (the month still has to match).
        (
            UTC,
            "0 0 29 2 1",
            after,
            &["2026-02-02T00:00:00Z", "2026-02-09T00:00:00Z"],
        ),
        (
            UTC,
            "0 0 29 2 1",
            "2028-02-27T00:00:00Z",
            &[
                "2028-02-28T00:00:00Z",
                "2028-02-29T00:00:00Z",
                "2029-02-05T00:00:00Z",
            ],
        ),
        // OR rule without a month: the 29th or any Monday.
        (
            UTC,
            "0 0 29 * 1",
            "2026-01-25T00:00:00Z",
            &[
                "2026-01-26T00:00:00Z",
                "2026-01-29T00:00:00Z",
                "2026-02-02T00:00:00Z",
            ],
        ),
    ]);
}

#[test]
fn leap_days() {
    check_table(&[
        (
            UTC,
            "0 0 29 2 *",
            "2025-01-01T00:00:00Z",
            &["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"],
        ),
        // 2100 is not a leap year.
        (
            UTC,
            "0 0 29 2 *",
            "2096-03-01T00:00:00Z",
            &["2104-02-29T00:00:00Z", "2108-02-29T00:00:00Z"],
        ),
        (
            UTC,
            "0 0 29 2 *",
            "2097-01-01T00:00:00Z",
            &["2104-02-29T00:00:00Z"],
        ),
        // Feb 29 that is also a Sunday: 28 years apart.
        (
            UTC,
            "0 0 29 2 */7",
            "2025-01-01T00:00:00Z",
            &["2032-02-29T00:00:00Z", "2060-02-29T00:00:00Z"],
        ),
        // Local midnight of Feb 29 in Sydney (summer time, +11).
        (
            SYD,
            "0 0 29 2 *",
            "2025-01-01T00:00:00Z",
            &["2028-02-28T13:00:00Z"],
        ),
        (
            CronZone::Offset(90),
            "0 0 29 2 *",
            "2025-01-01T00:00:00Z",
            &["2028-02-29T01:30:00Z"],
        ),
    ]);
    // Many leap days in a row stay on Feb 29 and are increasing.
    let fires = mask("0 0 29 2 *").upcoming(at("2000-01-01T00:00:00Z"), &UTC, 60);
    assert_eq!(fires.len(), 60);
    for pair in fires.windows(2) {
        assert!(pair[0] < pair[1]);
    }
    for fire in fires {
        assert_eq!((fire.month(), fire.day()), (2, 29));
    }
}

#[test]
fn maintenance_offset_zone() {
    check_table(&[
        // The cron time at (now - offset), plus offset: 03:00 + 1:30.
        (
            CronZone::Offset(90),
            "0 3 * * *",
            "2026-01-01T00:00:00Z",
            &["2026-01-01T04:30:00Z", "2026-01-02T04:30:00Z"],
        ),
        (
            CronZone::Offset(90),
            "0 3 * * *",
            "2026-01-01T04:30:00Z",
            &["2026-01-02T04:30:00Z"],
        ),
        (
            CronZone::Offset(1430),
            "0 0 * * *",
            "2026-01-01T00:00:00Z",
            &["2026-01-01T23:50:00Z", "2026-01-02T23:50:00Z"],
        ),
        // Monday 00:00 on the shifted clock is Monday 10:00Z.
        (
            CronZone::Offset(600),
            "0 0 * * 1",
            "2026-01-01T00:00:00Z",
            &["2026-01-05T10:00:00Z"],
        ),
        (
            CronZone::Offset(0),
            "*/20 * * * *",
            "2026-01-01T00:00:00Z",
            &["2026-01-01T00:20:00Z", "2026-01-01T00:40:00Z"],
        ),
        (
            ZoneSpec::Maintenance.resolve(45),
            "0 * * * *",
            "2026-01-01T00:00:00Z",
            &["2026-01-01T00:45:00Z", "2026-01-01T01:45:00Z"],
        ),
    ]);
}

#[test]
fn amsterdam_spring_forward() {
    // 2026-03-29: 02:00 CET -> 03:00 CEST at 01:00Z; 02:00-02:59 local does not exist.
    let before = "2026-03-28T12:00:00Z";
    check_table(&[
        // Fixed: the missing 02:30 runs once when the clock jumps (03:00 CEST = 01:00Z).
        (
            AMS,
            "30 2 * * *",
            before,
            &["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"],
        ),
        (
            AMS,
            "0,30 2 * * *",
            before,
            &[
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:00:00Z",
                "2026-03-30T00:30:00Z",
            ],
        ),
        (
            AMS,
            "15 2,3 * * *",
            before,
            &[
                "2026-03-29T01:00:00Z",
                "2026-03-29T01:15:00Z",
                "2026-03-30T00:15:00Z",
                "2026-03-30T01:15:00Z",
            ],
        ),
        // 02:00 (gap) and 03:00 both map to 01:00Z: once.
        (
            AMS,
            "0 2,3 * * *",
            before,
            &[
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:00:00Z",
                "2026-03-30T01:00:00Z",
            ],
        ),
        (
            AMS,
            "30 2 * * *",
            "2026-03-29T00:59:59Z",
            &["2026-03-29T01:00:00Z"],
        ),
        (
            AMS,
            "30 2 * * *",
            "2026-03-29T01:00:00Z",
            &["2026-03-30T00:30:00Z"],
        ),
        // Fixed masks outside the gap are unaffected.
        (
            AMS,
            "30 1,3 * * *",
            before,
            &[
                "2026-03-29T00:30:00Z",
                "2026-03-29T01:30:00Z",
                "2026-03-29T23:30:00Z",
            ],
        ),
        // Wildcard: skipped wall-clock times are not run.
        (
            AMS,
            "30 * * * *",
            "2026-03-28T23:50:00Z",
            &[
                "2026-03-29T00:30:00Z",
                "2026-03-29T01:30:00Z",
                "2026-03-29T02:30:00Z",
            ],
        ),
        (
            AMS,
            "*/30 2 * * *",
            before,
            &["2026-03-30T00:00:00Z", "2026-03-30T00:30:00Z"],
        ),
        (
            AMS,
            "* * * * *",
            "2026-03-29T00:58:00Z",
            &[
                "2026-03-29T00:59:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-29T01:01:00Z",
            ],
        ),
    ]);
}

#[test]
fn amsterdam_fall_back() {
    // 2026-10-25: 03:00 CEST -> 02:00 CET at 01:00Z; 02:00-02:59 local happens twice
    // (00:xxZ and 01:xxZ).
    check_table(&[
        // Fixed: only the first occurrence.
        (
            AMS,
            "30 2 * * *",
            "2026-10-24T12:00:00Z",
            &["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
        ),
        (
            AMS,
            "30 2 * * *",
            "2026-10-25T00:30:00Z",
            &["2026-10-26T01:30:00Z"],
        ),
        // Starting inside the second occurrence: 02:30 already ran.
        (
            AMS,
            "30 2 * * *",
            "2026-10-25T01:10:00Z",
            &["2026-10-26T01:30:00Z"],
        ),
        (
            AMS,
            "0,30 2,3 * * *",
            "2026-10-24T23:45:00Z",
            &[
                "2026-10-25T00:00:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-25T02:00:00Z",
                "2026-10-25T02:30:00Z",
            ],
        ),
        // Wildcard: repeated wall-clock times run again.
        (
            AMS,
            "30 * * * *",
            "2026-10-24T23:00:00Z",
            &[
                "2026-10-24T23:30:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-25T01:30:00Z",
                "2026-10-25T02:30:00Z",
            ],
        ),
        (
            AMS,
            "*/20 2 * * *",
            "2026-10-24T12:00:00Z",
            &[
                "2026-10-25T00:00:00Z",
                "2026-10-25T00:20:00Z",
                "2026-10-25T00:40:00Z",
                "2026-10-25T01:00:00Z",
                "2026-10-25T01:20:00Z",
                "2026-10-25T01:40:00Z",
                "2026-10-26T01:00:00Z",
            ],
        ),
        (
            AMS,
            "*/20 2 * * *",
            "2026-10-25T00:50:00Z",
            &["2026-10-25T01:00:00Z", "2026-10-25T01:20:00Z"],
        ),
    ]);
}

#[test]
fn new_york_transitions() {
    check_table(&[
        // 2026-03-08: 02:00 EST -> 03:00 EDT at 07:00Z.
        (
            NYC,
            "30 2 * * *",
            "2026-03-07T12:00:00Z",
            &["2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z"],
        ),
        (
            NYC,
            "*/30 * * * *",
            "2026-03-08T06:40:00Z",
            &["2026-03-08T07:00:00Z", "2026-03-08T07:30:00Z"],
        ),
        // 2026-11-01: 02:00 EDT -> 01:00 EST at 06:00Z; 01:xx happens at 05:xxZ and 06:xxZ.
        (
            NYC,
            "30 1 * * *",
            "2026-10-31T12:00:00Z",
            &["2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"],
        ),
        (
            NYC,
            "0,30 * * * *",
            "2026-11-01T04:50:00Z",
            &[
                "2026-11-01T05:00:00Z",
                "2026-11-01T05:30:00Z",
                "2026-11-01T06:00:00Z",
                "2026-11-01T06:30:00Z",
                "2026-11-01T07:00:00Z",
            ],
        ),
        (
            NYC,
            "0 9 * * 1-5",
            "2026-03-06T00:00:00Z",
            &["2026-03-06T14:00:00Z", "2026-03-09T13:00:00Z"],
        ),
    ]);
}

#[test]
fn sydney_transitions() {
    check_table(&[
        // 2026-10-04: 02:00 AEST -> 03:00 AEDT at 2026-10-03T16:00Z.
        (
            SYD,
            "15 2 * * *",
            "2026-10-03T00:00:00Z",
            &["2026-10-03T16:00:00Z", "2026-10-04T15:15:00Z"],
        ),
        (
            SYD,
            "15 * * * *",
            "2026-10-03T14:00:00Z",
            &[
                "2026-10-03T14:15:00Z",
                "2026-10-03T15:15:00Z",
                "2026-10-03T16:15:00Z",
            ],
        ),
        // 2026-04-05: 03:00 AEDT -> 02:00 AEST at 2026-04-04T16:00Z.
        (
            SYD,
            "15 2 * * *",
            "2026-04-04T12:00:00Z",
            &["2026-04-04T15:15:00Z", "2026-04-05T16:15:00Z"],
        ),
        (
            SYD,
            "15 * * * *",
            "2026-04-04T14:00:00Z",
            &[
                "2026-04-04T14:15:00Z",
                "2026-04-04T15:15:00Z",
                "2026-04-04T16:15:00Z",
                "2026-04-04T17:15:00Z",
            ],
        ),
    ]);
}

#[test]
fn lord_howe_half_hour_shift() {
    check_table(&[
        // 2026-10-04: 02:00 (+10:30) -> 02:30 (+11) at 2026-10-03T15:30Z.
        (
            LHI,
            "15 2 * * *",
            "2026-10-03T12:00:00Z",
            &["2026-10-03T15:30:00Z", "2026-10-04T15:15:00Z"],
        ),
        (
            LHI,
            "*/15 2 * * *",
            "2026-10-03T12:00:00Z",
            &[
                "2026-10-03T15:30:00Z",
                "2026-10-03T15:45:00Z",
                "2026-10-04T15:00:00Z",
            ],
        ),
        // 2026-04-05: 02:00 (+11) -> 01:30 (+10:30) at 2026-04-04T15:00Z.
        (
            LHI,
            "45 1 * * *",
            "2026-04-04T12:00:00Z",
            &["2026-04-04T14:45:00Z", "2026-04-05T15:15:00Z"],
        ),
        (
            LHI,
            "45 * * * *",
            "2026-04-04T14:00:00Z",
            &[
                "2026-04-04T14:45:00Z",
                "2026-04-04T15:15:00Z",
                "2026-04-04T16:15:00Z",
            ],
        ),
    ]);
}

#[test]
fn santiago_midnight_transitions() {
    check_table(&[
        // 2026-09-06: 00:00 (-04) -> 01:00 (-03) at 04:00Z; local midnight does not exist.
        (
            SCL,
            "0 0 * * *",
            "2026-09-05T12:00:00Z",
            &["2026-09-06T04:00:00Z", "2026-09-07T03:00:00Z"],
        ),
        // The skipped midnight belongs to Sunday.
        (
            SCL,
            "0 0 * * 0",
            "2026-09-01T00:00:00Z",
            &["2026-09-06T04:00:00Z", "2026-09-13T03:00:00Z"],
        ),
        // 2026-04-05: 00:00 (-03) -> Apr 4 23:00 (-04) at 03:00Z; 23:xx on Apr 4 repeats.
        (
            SCL,
            "30 23 * * *",
            "2026-04-04T12:00:00Z",
            &["2026-04-05T02:30:00Z", "2026-04-06T03:30:00Z"],
        ),
        (
            SCL,
            "30 * * * *",
            "2026-04-05T02:00:00Z",
            &[
                "2026-04-05T02:30:00Z",
                "2026-04-05T03:30:00Z",
                "2026-04-05T04:30:00Z",
            ],
        ),
    ]);
}

#[test]
fn a_year_of_fires_counts_each_day_once() {
    let year = |zone: &CronZone, text: &str| {
        let fires = mask(text).upcoming(at("2025-12-31T23:00:00Z"), zone, 20_000);
        let end = at("2026-12-31T23:00:00Z");
        let fires: Vec<_> = fires.into_iter().take_while(|f| *f <= end).collect();
        for pair in fires.windows(2) {
            assert!(pair[0] < pair[1], "{text}: not increasing");
        }
        fires.len()
    };
    // Fixed: every local day exactly once, including both transition days.
    assert_eq!(year(&AMS, "30 2 * * *"), 365);
    // On the gap day 02:00 and 02:30 both run at the jump, as one fire.
    assert_eq!(year(&AMS, "0,30 2 * * *"), 729);
    // Wildcard: the gap day loses two, the overlap day gains two.
    assert_eq!(year(&AMS, "*/30 2 * * *"), 730);
    // Every real hour of 2026 (8760), window is Amsterdam's local year.
    assert_eq!(year(&AMS, "0 * * * *"), 8760);
    let fires = mask("*/30 2 * * *").upcoming(at("2026-03-28T00:00:00Z"), &AMS, 4);
    assert_eq!(show(fires[2]), "2026-03-30T00:00:00Z");
}

#[test]
fn rare_masks_and_distant_dates() {
    check_table(&[
        (
            SYD,
            "0 0 29 2 */7",
            "2025-01-01T00:00:00Z",
            &["2032-02-28T13:00:00Z", "2060-02-28T13:00:00Z"],
        ),
        (
            UTC,
            "0 0 1 1 1",
            "2026-01-01T00:00:00Z",
            &["2026-01-05T00:00:00Z"],
        ),
        // Beyond chrono-tz's DST tables (2100+) the zone keeps its last offset.
        (
            AMS,
            "0 12 1 7 *",
            "2150-01-01T00:00:00Z",
            &["2150-07-01T11:00:00Z"],
        ),
    ]);
    // The last representable instants do not panic.
    let last = DateTime::<Utc>::MAX_UTC;
    assert_eq!(mask("* * * * *").next_after(last, &UTC), None);
    assert_eq!(mask("* * * * *").next_after(last, &AMS), None);
    assert_eq!(
        mask("* * * * *").next_after(last, &CronZone::Offset(1439)),
        None
    );
}

// ---------------------------------------------------------------------------------------
// Property test against a brute-force reference
// ---------------------------------------------------------------------------------------

/// One list item of a generated field.
#[derive(Debug, Clone)]
enum Item {
    /// `*` (step 1) or `*/s`.
    Star(u32),
    /// `v`
    Single(u32),
    /// `a-b` or `a-b/s`.
    Range(u32, u32, u32),
    /// `a/s`: a through the field's maximum.
    From(u32, u32),
}

#[derive(Debug, Clone)]
struct GenField {
    items: Vec<Item>,
    use_names: bool,
}

/// Field bounds, in mask order.
const BOUNDS: [(u32, u32); 5] = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)];
const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn render_value(field: usize, value: u32, use_names: bool) -> String {
    match field {
        3 if use_names => MONTHS[value as usize - 1].to_uppercase(),
        4 if use_names && value < 7 => WEEKDAYS[value as usize].to_string(),
        _ => value.to_string(),
    }
}

fn render_field(field: usize, gen: &GenField) -> String {
    let names = gen.use_names;
    gen.items
        .iter()
        .map(|item| match *item {
            Item::Star(1) => "*".to_string(),
            Item::Star(s) => format!("*/{s}"),
            Item::Single(v) => render_value(field, v, names),
            Item::Range(a, b, 1) => {
                format!(
                    "{}-{}",
                    render_value(field, a, names),
                    render_value(field, b, names)
                )
            }
            Item::Range(a, b, s) => format!(
                "{}-{}/{s}",
                render_value(field, a, names),
                render_value(field, b, names)
            ),
            Item::From(a, s) => format!("{}/{s}", render_value(field, a, false)),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The set of values a generated field matches, computed independently of the parser.
fn field_set(field: usize, gen: &GenField) -> Vec<bool> {
    let (min, max) = BOUNDS[field];
    let mut set = vec![false; max as usize + 1];
    for item in &gen.items {
        let (low, high, step) = match *item {
            Item::Star(s) => (min, max, s),
            Item::Single(v) => (v, v, 1),
            Item::Range(a, b, s) => (a, b, s),
            Item::From(a, s) => (a, max, s),
        };
        let mut v = low;
        while v <= high {
            set[v as usize] = true;
            v += step;
        }
    }
    if field == 4 && set[7] {
        set[0] = true; // 7 is Sunday too
    }
    set
}

/// An independently built model of a mask for the brute-force reference.
#[derive(Debug)]
struct Reference {
    sets: Vec<Vec<bool>>,
    dom_star: bool,
    dow_star: bool,
    wildcard: bool,
}

impl Reference {
    fn new(fields: &[GenField]) -> Reference {
        let star = |i: usize| matches!(fields[i].items[0], Item::Star(_));
        Reference {
            sets: (0..5).map(|i| field_set(i, &fields[i])).collect(),
            dom_star: star(2),
            dow_star: star(4),
            wildcard: star(0) || star(1),
        }
    }

    fn day_matches(&self, date: NaiveDate) -> bool {
        let dom = self.sets[2][date.day() as usize];
        let dow = self.sets[4][date.weekday().num_days_from_sunday() as usize];
        let day = if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        };
        day && self.sets[3][date.month() as usize]
    }

    fn matches(&self, local: NaiveDateTime) -> bool {
        self.sets[0][local.minute() as usize]
            && self.sets[1][local.hour() as usize]
            && self.day_matches(local.date())
    }

    /// Whether any date matches: a 28-year span covers every (date, weekday) pair.
    fn any_date_matches(&self) -> bool {
        let mut date = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
        while date.year() < 2028 {
            if self.day_matches(date) {
                return true;
            }
            date = date.succ_opt().unwrap();
        }
        false
    }
}

/// Wall-clock time of real instant `secs` in `zone`.
fn wall_clock(zone: &CronZone, secs: i64) -> NaiveDateTime {
    let utc = DateTime::from_timestamp(secs, 0).unwrap().naive_utc();
    match zone {
        CronZone::Utc => utc,
        CronZone::Offset(minutes) => utc - chrono::Duration::minutes(i64::from(*minutes)),
        CronZone::Named(tz) => {
            let offset = tz.offset_from_utc_datetime(&utc).fix().local_minus_utc();
            utc + chrono::Duration::seconds(i64::from(offset))
        }
    }
}

/// Brute force: walks real minutes after `after` (up to `limit_minutes` of them) and
/// returns the first that fires under the documented rules.
fn reference_next(
    r: &Reference,
    zone: &CronZone,
    after: DateTime<Utc>,
    limit_minutes: i64,
) -> Option<i64> {
    let start = after.timestamp().div_euclid(60) * 60 + 60;
    let fixed_named = matches!(zone, CronZone::Named(_)) && !r.wildcard;
    for k in 0..limit_minutes {
        let u = start + 60 * k;
        let local = wall_clock(zone, u);
        if !fixed_named {
            if r.matches(local) {
                return Some(u);
            }
            continue;
        }
        // Fixed mask in a named zone: a matching wall-clock time at its first occurrence
        // (no earlier real minute within 3 hours showed the same time) ...
        if r.matches(local) && (1..=180).all(|back| wall_clock(zone, u - 60 * back) != local) {
            return Some(u);
        }
        // ... or the first minute after a gap that skipped a matching wall-clock time.
        let previous = wall_clock(zone, u - 60);
        let mut skipped = previous + chrono::Duration::minutes(1);
        while skipped < local {
            if r.matches(skipped) {
                return Some(u);
            }
            skipped += chrono::Duration::minutes(1);
        }
    }
    None
}

const PROP_ZONES: [Tz; 7] = [
    chrono_tz::Europe::Amsterdam,
    chrono_tz::America::New_York,
    chrono_tz::Australia::Sydney,
    chrono_tz::Australia::Adelaide,
    chrono_tz::Australia::Lord_Howe,
    chrono_tz::America::Santiago,
    chrono_tz::Asia::Kolkata,
];

/// Offset changes (approximate, hourly resolution) of each `PROP_ZONES` zone in 2021-2029.
fn transitions() -> &'static Vec<Vec<i64>> {
    static CACHE: OnceLock<Vec<Vec<i64>>> = OnceLock::new();
    CACHE.get_or_init(|| {
        let from = at("2021-01-01T00:00:00Z").timestamp();
        let to = at("2030-01-01T00:00:00Z").timestamp();
        PROP_ZONES
            .iter()
            .map(|tz| {
                let offset = |secs: i64| {
                    let utc = DateTime::from_timestamp(secs, 0).unwrap().naive_utc();
                    tz.offset_from_utc_datetime(&utc).fix().local_minus_utc()
                };
                let mut found = Vec::new();
                let mut t = from;
                let mut last = offset(t);
                while t < to {
                    t += 3600;
                    let now = offset(t);
                    if now != last {
                        found.push(t);
                        last = now;
                    }
                }
                found
            })
            .collect()
    })
}

fn item_strategy(min: u32, max: u32) -> BoxedStrategy<Item> {
    let half = (max - min).div_ceil(2); // half the number of values
    prop_oneof![
        3 => (min..=max).prop_map(Item::Single),
        2 => (min..=max, min..=max, 1..=half).prop_map(|(a, b, s)| Item::Range(a.min(b), a.max(b), s)),
        1 => (min..=max, 1..=half).prop_map(|(a, s)| Item::From(a, s)),
        1 => (1..=half).prop_map(Item::Star),
    ]
    .boxed()
}

/// A field: `*` with weight `star`, otherwise a list of 1-3 random items. Hours favour
/// the ones where the test zones change their clocks (0-3 and 23).
fn field_strategy(field: usize, star: u32, list: u32) -> BoxedStrategy<GenField> {
    let (min, max) = BOUNDS[field];
    let item = if field == 1 {
        prop_oneof![
            1 => item_strategy(min, max),
            1 => proptest::sample::select(vec![0u32, 1, 2, 3, 23]).prop_map(Item::Single),
        ]
        .boxed()
    } else {
        item_strategy(min, max)
    };
    let items = prop_oneof![
        star => Just(vec![Item::Star(1)]),
        list => proptest::collection::vec(item, 1..=3),
    ];
    (items, any::<bool>())
        .prop_map(|(items, use_names)| GenField { items, use_names })
        .boxed()
}

fn mask_strategy() -> impl Strategy<Value = Vec<GenField>> {
    (
        field_strategy(0, 1, 3),
        field_strategy(1, 1, 3),
        field_strategy(2, 3, 2),
        field_strategy(3, 4, 1),
        field_strategy(4, 3, 2),
    )
        .prop_map(|(a, b, c, d, e)| vec![a, b, c, d, e])
}

fn zone_strategy() -> impl Strategy<Value = CronZone> {
    prop_oneof![
        1 => Just(CronZone::Utc),
        1 => (0u32..1440).prop_map(CronZone::Offset),
        7 => (0..PROP_ZONES.len()).prop_map(|i| CronZone::Named(PROP_ZONES[i])),
    ]
}

/// A starting instant: uniform in 2021-2029, or (for named zones) from 30 hours before
/// to 3 hours after one of the zone's offset changes, often within two hours of it; with
/// a random sub-minute part.
fn after_strategy(zone: CronZone) -> BoxedStrategy<DateTime<Utc>> {
    let from = at("2021-01-01T00:00:00Z").timestamp();
    let to = at("2029-12-01T00:00:00Z").timestamp();
    let near: Option<Vec<i64>> = match zone {
        CronZone::Named(tz) => PROP_ZONES
            .iter()
            .position(|z| *z == tz)
            .map(|i| transitions()[i].clone())
            .filter(|list| !list.is_empty()),
        _ => None,
    };
    let uniform = (from..to, 0u32..1_000_000_000)
        .prop_map(|(secs, nanos)| DateTime::from_timestamp(secs, nanos).unwrap());
    match near {
        Some(list) => prop_oneof![
            1 => uniform,
            3 => (proptest::sample::select(list.clone()), -3 * 3600i64..30 * 3600, 0u32..1_000_000_000).prop_map(
                |(t, back, nanos)| DateTime::from_timestamp(t - back, nanos).unwrap()
            ),
            2 => (proptest::sample::select(list), -2 * 3600i64..2 * 3600, 0u32..1_000_000_000).prop_map(
                |(t, back, nanos)| DateTime::from_timestamp(t - back, nanos).unwrap()
            ),
        ]
        .boxed(),
        None => uniform.boxed(),
    }
}

fn case_strategy() -> impl Strategy<Value = (Vec<GenField>, CronZone, DateTime<Utc>)> {
    (mask_strategy(), zone_strategy())
        .prop_flat_map(|(fields, zone)| (Just(fields), Just(zone), after_strategy(zone)))
}

/// How far the brute force walks for each fire (40 days).
const BRUTE_LIMIT_MINUTES: i64 = 40 * 24 * 60;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn next_after_matches_brute_force((fields, zone, after) in case_strategy()) {
        let text = (0..5).map(|i| render_field(i, &fields[i])).collect::<Vec<_>>().join(" ");
        let reference = Reference::new(&fields);
        let parsed = match CronMask::parse(&text) {
            Ok(parsed) => parsed,
            Err(CronError::NoMatch { .. }) => {
                prop_assert!(!reference.any_date_matches(), "'{}' rejected but matchable", text);
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(format!("'{text}' rejected: {e}"))),
        };
        prop_assert!(reference.any_date_matches(), "'{}' accepted but never matches", text);
        prop_assert_eq!(parsed.is_wildcard(), reference.wildcard);

        let got = parsed.upcoming(after, &zone, 3);
        prop_assert_eq!(got.len(), 3, "'{}' ran out of fire times", text);
        let mut cursor = after;
        for fire in got {
            prop_assert!(fire > cursor);
            match reference_next(&reference, &zone, cursor, BRUTE_LIMIT_MINUTES) {
                Some(expected) => prop_assert_eq!(
                    show(fire),
                    show(DateTime::from_timestamp(expected, 0).unwrap()),
                    "mask '{}' in {:?} after {}", text, zone, show(cursor)
                ),
                None => {
                    // Nothing within the brute-force window: the answer must lie beyond it.
                    let window_end = cursor.timestamp() + 60 * BRUTE_LIMIT_MINUTES;
                    prop_assert!(fire.timestamp() > window_end, "mask '{}' in {:?} after {}: got {}", text, zone, show(cursor), show(fire));
                    break;
                }
            }
            cursor = fire;
        }
    }
}
