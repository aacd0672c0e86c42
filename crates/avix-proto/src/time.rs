//! Timestamps (RFC 3339, UTC, second precision) and human durations (`90s`, `15m`, `8h`, `1h30m`).
//!
//! Kept dependency-free: Avix only ever formats "now" and parses what it formatted or what a
//! human wrote in a config file.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time, stored as seconds since the Unix epoch and written as
/// `2026-11-25T15:50:32Z`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current time.
    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// Seconds since the Unix epoch.
    pub fn unix(self) -> i64 {
        self.0
    }

    /// From seconds since the Unix epoch.
    pub fn from_unix(secs: i64) -> Self {
        Self(secs)
    }

    /// Parses an HTTP-date in its preferred form (`Sun, 06 Nov 1994 08:49:37 GMT`), as in
    /// a `Retry-After` header.
    #[allow(clippy::cast_possible_truncation)] // a month index below 12
    pub fn from_http_date(v: &str) -> Option<Self> {
        let parts: Vec<&str> = v.split_whitespace().collect();
        let [_, day, mon, year, time, "GMT"] = parts.as_slice() else {
            return None;
        };
        let mon = MONTHS.iter().position(|m| m == mon)? as u32 + 1;
        let hms: Vec<i64> = time.split(':').filter_map(|x| x.parse().ok()).collect();
        let [h, m, s] = hms.as_slice() else {
            return None;
        };
        let days = days_from_civil(year.parse().ok()?, mon, day.parse().ok()?);
        Some(Self(days * 86_400 + h * 3600 + m * 60 + s))
    }

    /// Formats as an HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`).
    #[allow(clippy::cast_possible_truncation)] // a weekday index below 7
    pub fn to_http_date(self) -> String {
        let days = self.0.div_euclid(86_400);
        let rem = self.0.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let wd = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
        format!(
            "{wd}, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
            MONTHS[(m - 1) as usize],
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Self(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            Err(e) => Self(-i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX)),
        }
    }
}

// Howard Hinnant's days-from-civil algorithms.
#[allow(clippy::cast_possible_truncation)] // a day below 32 and a month below 13
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            secs / 3600,
            (secs / 60) % 60,
            secs % 60
        )
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A timestamp or duration that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TimeParseError(String);

impl FromStr for Timestamp {
    type Err = TimeParseError;

    /// Parses `YYYY-MM-DDTHH:MM:SS` followed by `Z` or `±HH:MM` (fractions are ignored).
    #[allow(clippy::cast_possible_truncation)] // month and day were checked to be 1..=12 and 1..=31
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            TimeParseError(format!(
                "invalid timestamp {s:?}: expected e.g. 2026-03-15T07:38:00Z"
            ))
        };
        let b = s.as_bytes();
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || (b[10] != b'T' && b[10] != b' ') {
            return Err(bad());
        }
        let num = |r: std::ops::Range<usize>| -> Result<i64, TimeParseError> {
            s.get(r).and_then(|x| x.parse::<i64>().ok()).ok_or_else(bad)
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
            return Err(bad());
        }
        let mut rest = &s[19..];
        if let Some(frac) = rest.strip_prefix('.') {
            let n = frac.bytes().take_while(u8::is_ascii_digit).count();
            rest = &frac[n..];
        }
        let offset = match rest {
            "Z" | "z" => 0,
            _ if rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')) => {
                let oh: i64 = rest[1..3].parse().map_err(|_| bad())?;
                let om: i64 = rest[4..6].parse().map_err(|_| bad())?;
                let o = oh * 3600 + om * 60;
                if rest.starts_with('-') { -o } else { o }
            }
            _ => return Err(bad()),
        };
        let days = days_from_civil(y, mo as u32, d as u32);
        Ok(Self(days * 86_400 + h * 3600 + mi * 60 + se - offset))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A duration written for humans: `30s`, `15m`, `8h`, `2d`, `1h30m`; a bare number is seconds.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// From whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// The wrapped duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl FromStr for HumanDuration {
    type Err = TimeParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            TimeParseError(format!(
                "invalid duration {s:?}: expected e.g. 30s, 15m, 8h, 2d or 1h30m"
            ))
        };
        let s = s.trim();
        if s.is_empty() {
            return Err(bad());
        }
        if let Ok(n) = s.parse::<u64>() {
            return Ok(Self::from_secs(n));
        }
        let mut total: u64 = 0;
        let mut digits = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let n: u64 = digits.parse().map_err(|_| bad())?;
            digits.clear();
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return Err(bad()),
            };
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(bad)?;
        }
        if !digits.is_empty() {
            return Err(bad());
        }
        Ok(Self::from_secs(total))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        if s == 0 {
            return f.write_str("0s");
        }
        let (d, h, m, sec) = (s / 86_400, (s / 3600) % 24, (s / 60) % 60, s % 60);
        for (v, u) in [(d, 'd'), (h, 'h'), (m, 'm'), (sec, 's')] {
            if v > 0 {
                write!(f, "{v}{u}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(n) => Ok(Self::from_secs(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// `d` in whole milliseconds, for documents and logs (saturating: a `u64` of milliseconds
/// lasts 584 million years).
pub fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `d` in whole microseconds, saturating like [`ms`].
pub fn us(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_round_trip() {
        for secs in [0, 1, 951_782_400, 1_764_085_832, 4_102_444_800, -86_400] {
            let t = Timestamp::from_unix(secs);
            let s = t.to_string();
            assert_eq!(s.parse::<Timestamp>().unwrap(), t, "{s}");
        }
        assert_eq!(Timestamp::from_unix(0).to_string(), "1970-01-01T00:00:00Z");
        assert_eq!(
            Timestamp::from_unix(951_782_400).to_string(),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn parses_offsets_and_fractions() {
        let a: Timestamp = "2026-03-15T07:38:00-05:00".parse().unwrap();
        let b: Timestamp = "2026-03-15T12:38:00.123Z".parse().unwrap();
        assert_eq!(a, b);
        assert!("2026-13-01T00:00:00Z".parse::<Timestamp>().is_err());
        assert!("yesterday".parse::<Timestamp>().is_err());
    }

    #[test]
    fn http_dates() {
        let t = Timestamp::from_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(t.unix(), 784_111_777);
        assert_eq!(t.to_http_date(), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert!(Timestamp::from_http_date("yesterday").is_none());
    }

    #[test]
    fn durations() {
        assert_eq!(
            "8h".parse::<HumanDuration>().unwrap().get().as_secs(),
            8 * 3600
        );
        assert_eq!(
            "1h30m".parse::<HumanDuration>().unwrap().get().as_secs(),
            5400
        );
        assert_eq!("45".parse::<HumanDuration>().unwrap().get().as_secs(), 45);
        assert_eq!(HumanDuration::from_secs(5400).to_string(), "1h30m");
        for bad in ["", "h", "5x", "5m3", "-1s"] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad}");
        }
    }
}
