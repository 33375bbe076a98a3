//! The value syntax of impairments, as in `tc netem`: durations (`20ms`, `1.5s`),
//! percentages (`1%`, `0.01%`), rates in bits or bytes per second (`10Mbit`, `1gbit`,
//! `500kbps`: k/m/g are powers of 1000, `bit` counts bits, `bps` bytes) and sizes in
//! bytes (`1514`, `64k`, `1MiB`: k/m are powers of 1024).

use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum UnitError {
    #[error("`{0}` is not a duration (e.g. 20ms, 1.5s, 500us)")]
    Duration(String),
    #[error("`{0}` is not a percentage from 0% to 100% (e.g. 1%, 0.01%)")]
    Percent(String),
    #[error("`{0}` is not a rate (e.g. 10Mbit, 1gbit, 500kbps)")]
    Rate(String),
    #[error("`{0}` is not a size in bytes (e.g. 1514, 64k, 1MiB)")]
    Size(String),
}

/// Splits `12.5ms` into (12.5, "ms").
fn split_number(s: &str) -> Option<(f64, String)> {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let n: f64 = s[..end].parse().ok()?;
    n.is_finite()
        .then(|| (n, s[end..].trim().to_ascii_lowercase()))
}

pub fn duration(s: &str) -> Result<Duration, UnitError> {
    let err = || UnitError::Duration(s.into());
    let (n, unit) = split_number(s).ok_or_else(err)?;
    let scale = match unit.as_str() {
        "ns" => 1e-9,
        "us" | "µs" | "usec" => 1e-6,
        "ms" | "msec" => 1e-3,
        "s" | "sec" | "" if n == 0.0 || !unit.is_empty() => 1.0,
        "m" | "min" => 60.0,
        _ => return Err(err()),
    };
    Duration::try_from_secs_f64(n * scale).map_err(|_| err())
}

/// A percentage as a probability in 0..=1.
pub fn percent(s: &str) -> Result<f64, UnitError> {
    let err = || UnitError::Percent(s.into());
    let (n, unit) = split_number(s).ok_or_else(err)?;
    if unit != "%" || n > 100.0 {
        return Err(err());
    }
    Ok(n / 100.0)
}

/// A rate in bits per second.
pub fn rate(s: &str) -> Result<u64, UnitError> {
    let err = || UnitError::Rate(s.into());
    let (n, unit) = split_number(s).ok_or_else(err)?;
    let (prefix, kind) = if let Some(p) = unit.strip_suffix("bit") {
        (p, 1.0)
    } else if let Some(p) = unit.strip_suffix("bps") {
        (p, 8.0)
    } else {
        return Err(err());
    };
    let mult = match prefix {
        "" => 1.0,
        "k" => 1e3,
        "m" => 1e6,
        "g" => 1e9,
        "t" => 1e12,
        _ => return Err(err()),
    };
    let bits = n * mult * kind;
    if !(1.0..=1e15).contains(&bits) {
        return Err(err());
    }
    Ok(bits as u64)
}

/// A size in bytes.
pub fn size(s: &str) -> Result<u64, UnitError> {
    let err = || UnitError::Size(s.into());
    let (n, unit) = split_number(s).ok_or_else(err)?;
    let mult = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        _ => return Err(err()),
    };
    let b = n * mult;
    if !(0.0..=(1u64 << 40) as f64).contains(&b) {
        return Err(err());
    }
    Ok(b as u64)
}

/// `d` as the shortest exact text [`duration`] reads back.
pub fn duration_text(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns.is_multiple_of(1_000_000_000) {
        format!("{}s", ns / 1_000_000_000)
    } else if ns.is_multiple_of(1_000_000) {
        format!("{}ms", ns / 1_000_000)
    } else if ns.is_multiple_of(1000) {
        format!("{}us", ns / 1000)
    } else {
        format!("{ns}ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_netem_style_values() {
        assert_eq!(duration("20ms"), Ok(Duration::from_millis(20)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
        assert!(duration("20").is_err() && duration("-1ms").is_err() && duration("x").is_err());
        assert_eq!(percent("1%"), Ok(0.01));
        assert_eq!(percent("0.01%"), Ok(0.0001));
        assert!(percent("1").is_err() && percent("101%").is_err());
        assert_eq!(rate("10Mbit"), Ok(10_000_000));
        assert_eq!(rate("1gbit"), Ok(1_000_000_000));
        assert_eq!(rate("500kbps"), Ok(4_000_000));
        assert!(rate("10M").is_err() && rate("0bit").is_err());
        assert_eq!(size("1514"), Ok(1514));
        assert_eq!(size("64k"), Ok(65536));
        assert_eq!(size("1MiB"), Ok(1 << 20));
        assert!(size("1x").is_err());
        for d in ["20ms", "1s", "250us", "7ns"] {
            assert_eq!(duration_text(duration(d).unwrap()), d);
        }
    }
}
