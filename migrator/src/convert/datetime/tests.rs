//! Every accepted date/time form pinned, and the `time`-based calendar checked day for day
//! against the hand-written one it replaced.

use super::*;

/// The hand-written calendar this module used before `time` (Howard Hinnant's
/// days-from-civil), kept as the oracle the `time`-based one must match day for day.
mod oracle {
    pub fn days_from_civil(y: i64, m: i64, d: i64) -> Option<i64> {
        let dim = match m {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
            2 => 28,
            _ => return None,
        };
        if d < 1 || d > dim {
            return None;
        }
        let y = if m <= 2 { y - 1 } else { y };
        let era = if y >= 0 { y } else { y - 399 } / 400;
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Some(era * 146_097 + doe - 719_468)
    }

    pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
        let z = z + 719_468;
        let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let y = yoe + era * 400;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        (if m <= 2 { y + 1 } else { y }, m, d)
    }
}

#[test]
fn dates_in_several_formats() {
    let base = days_from_civil(2025, 7, 1).unwrap() * DAY_US;
    let h10 = base + 10 * 3_600_000_000;
    for (s, us, off) in [
        ("2025-07-01", base, None),
        ("2025-07-01 10:00", h10, None),
        ("2025-07-01T10:00:00", h10, None),
        ("2025-07-01 10:00:00.000000", h10, None),
        ("2025-07-01T10:00:00Z", h10, Some(0)),
        ("2025-07-01T12:00:00+02:00", h10 + 7_200_000_000, Some(7200)),
        ("2025-07-01 12:00:00+0200", h10 + 7_200_000_000, Some(7200)),
        ("2025/07/01 10:00:00", h10, None),
        ("Tue, 01 Jul 2025 10:00:00 +0000", h10, Some(0)),
        ("01 Jul 2025 10:00:00 GMT", h10, Some(0)),
    ] {
        let p = parse_datetime(s).unwrap_or_else(|| panic!("{s}"));
        assert_eq!((p.unix_us, p.offset_s), (us, off), "{s}");
    }
    for bad in [
        "2025-02-30",
        "yesterday",
        "2025-07-01 25:00",
        "2025-07-01 10:00 junk",
    ] {
        assert!(parse_datetime(bad).is_none(), "{bad}");
    }
}
#[test]
fn civil_round_trip() {
    for d in [-800_000, -1, 0, 1, 10_957, 20_000, 2_900_000] {
        let (y, m, dd) = civil_from_days(d);
        assert_eq!(days_from_civil(y, m.into(), dd.into()), Some(d));
    }
}

#[test]
fn calendar_matches_the_hand_written_one_day_for_day() {
    // Every day of years 1600..2400, then every 9973rd day out to PostgreSQL's date range
    // (5874897 AD) and beyond `time`'s years ±9999 both ways.
    let days = (-135_140..157_000i64).chain((-4_000_000..2_200_000_000).step_by(9_973));
    for z in days {
        let (y, m, d) = oracle::civil_from_days(z);
        let got = civil_from_days(z);
        assert_eq!(
            (got.0, i64::from(got.1), i64::from(got.2)),
            (y, m, d),
            "day {z}"
        );
        assert_eq!(days_from_civil(y, m, d), Some(z), "{y}-{m}-{d}");
    }
    // Every (year, month, day) candidate, existing or not, around the leap-year rules.
    let years = (-401..=401).chain(1_599..=2_401);
    for y in years.chain([-100_000, -10_000, 9_999, 10_000, 12_000, 5_874_897]) {
        for m in -1..=14 {
            for d in -1..=33 {
                assert_eq!(
                    days_from_civil(y, m, d),
                    oracle::days_from_civil(y, m, d),
                    "{y}-{m}-{d}"
                );
            }
        }
    }
    assert_eq!(days_from_civil(i64::MAX, 1, 1), None, "no overflow");
}

/// Every text form accepted today, what it means, and its shape.
#[test]
fn every_accepted_text_form() {
    let day = |y, m, d| days_from_civil(y, m, d).unwrap() * DAY_US;
    let at = |y, m, d, h: i64, mi: i64, s: i64, us: i64| {
        day(y, m, d) + ((h * 60 + mi) * 60 + s) * 1_000_000 + us
    };
    use DateFormat::*;
    for (s, us, off, fmt) in [
        ("2025-07-01", day(2025, 7, 1), None, IsoDate),
        (" 2025-07-01 ", day(2025, 7, 1), None, IsoDate),
        ("2025-7-1", day(2025, 7, 1), None, IsoDate),
        ("0000-01-01", day(0, 1, 1), None, IsoDate),
        ("9999-12-31", day(9999, 12, 31), None, IsoDate),
        ("2024-02-29", day(2024, 2, 29), None, IsoDate),
        ("2000-02-29", day(2000, 2, 29), None, IsoDate),
        ("2025/07/01", day(2025, 7, 1), None, SlashDate),
        (
            "2025/7/1 10:00",
            at(2025, 7, 1, 10, 0, 0, 0),
            None,
            SlashDate,
        ),
        (
            "2025-07-01 10:00",
            at(2025, 7, 1, 10, 0, 0, 0),
            None,
            IsoDateTime,
        ),
        (
            "2025-07-01t10:00:05",
            at(2025, 7, 1, 10, 0, 5, 0),
            None,
            IsoDateTime,
        ),
        (
            "2025-07-01 10:00:05.5",
            at(2025, 7, 1, 10, 0, 5, 500_000),
            None,
            IsoDateTime,
        ),
        (
            "2025-07-01 10:00:05,25",
            at(2025, 7, 1, 10, 0, 5, 250_000),
            None,
            IsoDateTime,
        ),
        // Nanoseconds round to the nearest µs; digits past the ninth are read and dropped.
        (
            "2025-07-01 10:00:05.1234565",
            at(2025, 7, 1, 10, 0, 5, 123_457),
            None,
            IsoDateTime,
        ),
        (
            "2025-07-01 10:00:05.123456499999",
            at(2025, 7, 1, 10, 0, 5, 123_456),
            None,
            IsoDateTime,
        ),
        (
            "2025-07-01 10:00:05.9999996",
            at(2025, 7, 1, 10, 0, 6, 0),
            None,
            IsoDateTime,
        ),
        ("2025-07-01 24:00:00", day(2025, 7, 2), None, IsoDateTime),
        ("2016-12-31 23:59:60", day(2017, 1, 1), None, IsoDateTime),
        (
            "2025-07-01T10:00Z",
            at(2025, 7, 1, 10, 0, 0, 0),
            Some(0),
            IsoDateTimeOffset,
        ),
        (
            "2025-07-01T10:00:00z",
            at(2025, 7, 1, 10, 0, 0, 0),
            Some(0),
            IsoDateTimeOffset,
        ),
        (
            "2025-07-01 10:00:00 UTC",
            at(2025, 7, 1, 10, 0, 0, 0),
            Some(0),
            IsoDateTimeOffset,
        ),
        (
            "2025-07-01 10:00:00 gmt",
            at(2025, 7, 1, 10, 0, 0, 0),
            Some(0),
            IsoDateTimeOffset,
        ),
        (
            "2025-07-01 10:00:00UTC",
            at(2025, 7, 1, 10, 0, 0, 0),
            Some(0),
            IsoDateTimeOffset,
        ),
        (
            "2025-07-01 12:00:00+02",
            at(2025, 7, 1, 12, 0, 0, 0),
            Some(7200),
            IsoDateTimeOffset,
        ),
        (
            "2025-07-01 12:00:00 +0230",
            at(2025, 7, 1, 12, 0, 0, 0),
            Some(9000),
            IsoDateTimeOffset,
        ),
        (
            "2025-07-01 12:00:00+023",
            at(2025, 7, 1, 12, 0, 0, 0),
            Some(7380),
            IsoDateTimeOffset,
        ),
        (
            "2025-07-01T05:00:00-05:00",
            at(2025, 7, 1, 5, 0, 0, 0),
            Some(-18000),
            IsoDateTimeOffset,
        ),
        (
            "2025/07/01 12:00:00+02:00",
            at(2025, 7, 1, 12, 0, 0, 0),
            Some(7200),
            SlashDate,
        ),
        (
            "Tue, 01 Jul 2025 10:00:00 +0000",
            at(2025, 7, 1, 10, 0, 0, 0),
            Some(0),
            Rfc2822,
        ),
        (
            "Tue,01 Jul 2025 10:00 -0130",
            at(2025, 7, 1, 10, 0, 0, 0),
            Some(-5400),
            Rfc2822,
        ),
        (
            "01 DEC 12000 10:00:00 GMT",
            at(12000, 12, 1, 10, 0, 0, 0),
            Some(0),
            Rfc2822,
        ),
        ("29 Feb -4 00:00:00", day(-4, 2, 29), None, Rfc2822),
    ] {
        let p = parse_datetime(s).unwrap_or_else(|| panic!("{s:?} not accepted"));
        assert_eq!((p.unix_us, p.offset_s, p.format), (us, off, fmt), "{s:?}");
    }
    for bad in [
        "",
        "2025",
        "2025-07",
        "25-07-01",
        "2025-07-01T",
        "2025-07-01 10",
        "2025-07-01 10:0",
        "2025-07-01 10:00:5",
        "2025-07-01 10:00:05.",
        "2025-07-01 24:00:01",
        "2025-07-01 10:60",
        "2025-07-01 10:00:61",
        "2025-07-01 10:00+16",
        "2025-07-01 10:00+02:60",
        "2025-07-01 10:00 EST",
        "2025-13-01",
        "2025-00-10",
        "2025-02-29",
        "1900-02-29",
        "2025-06-31",
        "2025-07-01/",
        "2025/07-01",
        "Tue, 01 Jux 2025 10:00:00",
        "Tue, 32 Jul 2025 10:00:00",
        "01 Jul 2025",
        "1 Jul 2025 10:00:00",
        "01 Jul 2025 10:00:00 junk",
    ] {
        assert!(parse_datetime(bad).is_none(), "{bad:?} accepted");
    }
}

#[test]
fn values_into_timestamps_dates_and_times() {
    let ts = |v| to_timestamp(v, None).map(|t| t + PG_EPOCH_US);
    let h10 = (days_from_civil(2025, 7, 1).unwrap() * 24 + 10) * 3_600_000_000;
    assert_eq!(ts(ValueRef::Text(b"2025-07-01T12:00:00+02:00")), Ok(h10));
    assert_eq!(ts(ValueRef::Integer(h10 / 1_000_000)), Ok(h10));
    assert_eq!(ts(ValueRef::Integer(h10 / 1_000)), Ok(h10));
    let with_unit = |v, u| to_timestamp(v, Some(u)).map(|t| t + PG_EPOCH_US);
    assert_eq!(
        with_unit(ValueRef::Integer(1_000), EpochUnit::Ms),
        Ok(1_000_000)
    );
    assert_eq!(ts(ValueRef::Integer(1_000)), Ok(1_000_000_000));
    // A small real is a Julian day (julianday('1970-01-01 12:00')), a large one an epoch.
    assert_eq!(ts(ValueRef::Real(2_440_588.0)), Ok(43_200_000_000));
    assert_eq!(ts(ValueRef::Real(h10 as f64 / 1e6)), Ok(h10));
    assert_eq!(
        ts(ValueRef::Text(b"0000-12-31 00:00:00")),
        Err(ConvertError(
            "date/time -62135683200000000 µs since 1970 is outside years 1..9999".into()
        ))
    );
    assert_eq!(
        ts(ValueRef::Text(b"not a date")),
        Err(ConvertError("unrecognised date/time \"not a date\"".into()))
    );
    assert!(ts(ValueRef::Blob(b"x")).is_err());
    let day = days_from_civil(2025, 7, 1).unwrap() - PG_EPOCH_DAYS;
    assert_eq!(to_date(ValueRef::Text(b"2025-07-01"), None), Ok(day as i32));
    assert_eq!(
        to_date(ValueRef::Text(b"2025-07-01 00:00:00"), None),
        Ok(day as i32)
    );
    assert_eq!(
        to_date(ValueRef::Text(b"2025-07-01 00:00:00Z"), None),
        Err(ConvertError(
            "date \"2025-07-01 00:00:00Z\" carries a time zone".into()
        ))
    );
    assert_eq!(
        to_date(ValueRef::Text(b"2025-07-01 10:00"), None),
        Err(ConvertError("date value has a time of day".into()))
    );
    assert_eq!(
        to_date(ValueRef::Integer(h10 / 1_000_000 / 86_400 * 86_400), None),
        Ok(day as i32)
    );
    // A date column takes years `timestamp` does not.
    assert_eq!(
        to_date(ValueRef::Text(b"01 Jan 12000 00:00:00"), None),
        Ok((days_from_civil(12000, 1, 1).unwrap() - PG_EPOCH_DAYS) as i32)
    );
    for (s, us) in [
        ("10:00", 36_000_000_000),
        (" 10:00:05.25 ", 36_005_250_000),
        ("24:00:00", 86_400_000_000),
        ("23:59:60", 86_400_000_000),
    ] {
        assert_eq!(to_time(ValueRef::Text(s.as_bytes())), Ok(us), "{s}");
    }
    for bad in ["10", "10:00Z", "25:00", "10:00 x"] {
        assert!(to_time(ValueRef::Text(bad.as_bytes())).is_err(), "{bad}");
    }
    assert_eq!(
        to_time(ValueRef::Integer(5)),
        Err(ConvertError("integer value is not a time of day".into()))
    );
}

#[test]
fn text_for_people_and_the_legacy() {
    assert_eq!(date_text(0), "1970-01-01");
    assert_eq!(date_text(-719_528), "0000-01-01");
    assert_eq!(date_text(-719_529), "-001-12-31");
    assert_eq!(date_text(2_932_896), "9999-12-31");
    assert_eq!(date_text(2_932_897), "10000-01-01");
    assert_eq!(utc_text(-1), "1969-12-31 23:59:59.999999");
    assert_eq!(
        utc_text(1_735_725_600_000_001),
        "2025-01-01 10:00:00.000001"
    );
    assert_eq!(time_text(86_400_000_000), "24:00:00.000000");
    assert_eq!(split_us(DAY_US + 5), ("1970-01-02".to_string(), 5));
    for z in (-3_000_000..3_000_000i64).step_by(7_919) {
        let (y, m, d) = oracle::civil_from_days(z);
        assert_eq!(date_text(z), format!("{y:04}-{m:02}-{d:02}"));
    }
}
