//! Sizes with explicit binary units ("512MiB", "4GiB").

const UNITS: &[(&str, u32)] = &[("B", 0), ("KiB", 10), ("MiB", 20), ("GiB", 30), ("TiB", 40)];

/// Parses "512MiB", "4 GiB", "65536B". A bare number, a decimal unit ("MB") or a
/// fraction is an error whose text says what to write instead.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = (&t[..split], t[split..].trim_start());
    if num.is_empty() {
        return Err(format!(
            "`{s}` is not a size: write a whole number and a unit, like \"512MiB\""
        ));
    }
    if unit.is_empty() {
        return Err(format!(
            "`{s}` has no unit: write \"{num}MiB\" or \"{num}GiB\" (units: B, KiB, MiB, GiB, TiB)"
        ));
    }
    let Some(&(_, shift)) = UNITS.iter().find(|(u, _)| *u == unit) else {
        let hint = match unit.to_ascii_lowercase().as_str() {
            "k" | "kb" | "kib" => "KiB",
            "m" | "mb" | "mib" => "MiB",
            "g" | "gb" | "gib" => "GiB",
            "t" | "tb" | "tib" => "TiB",
            _ => {
                return Err(format!(
                    "unknown unit `{unit}` in `{s}` (units: B, KiB, MiB, GiB, TiB)"
                ));
            }
        };
        return Err(format!("unit `{unit}` is ambiguous: write \"{num}{hint}\" (binary units: B, KiB, MiB, GiB, TiB)"));
    };
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is too large"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// The shortest exact spelling of a size: 536870912 → "512MiB".
pub fn format_size(bytes: u64) -> String {
    for &(unit, shift) in UNITS.iter().rev() {
        if shift > 0 && bytes != 0 && bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("4 GiB"), Ok(4 << 30));
        assert_eq!(parse_size("1B"), Ok(1));
        assert!(parse_size("512").unwrap_err().contains("no unit"));
        assert!(parse_size("512MB").unwrap_err().contains("512MiB"));
        assert!(parse_size("1.5GiB").is_err());
        assert!(parse_size("99999999999TiB")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("5 parsecs")
            .unwrap_err()
            .contains("unknown unit"));
    }

    #[test]
    fn format_roundtrips() {
        for b in [
            0u64,
            1,
            4096,
            512 << 20,
            5 << 30,
            (1 << 30) + (1 << 20),
            3 << 40,
        ] {
            assert_eq!(parse_size(&format_size(b)), Ok(b), "{b}");
        }
        assert_eq!(format_size(512 << 20), "512MiB");
        assert_eq!(format_size(1536 << 20), "1536MiB");
    }
}
