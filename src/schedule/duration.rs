//! Durations as manifests spell them: "30s", "5m", "1h30m", "2d". Whole
//! seconds only; units in descending order, each at most once.

/// The longest duration a manifest may name: a year and a day. Anything rarer
/// is a job for `cron` or `at`.
pub const MAX_DURATION_SECS: i64 = 366 * 86_400;

const UNITS: [(char, i64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// Parses a duration into whole seconds. `None` when the text is not a
/// duration; the caller words the error, since it knows the field.
pub(crate) fn parse_secs(text: &str) -> Option<i64> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    // Index into UNITS of the next unit allowed: enforces descending order.
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 || digits > 12 {
            return None;
        }
        let number: i64 = rest[..digits].parse().ok()?;
        let unit = rest[digits..].chars().next()?;
        let position = UNITS[next_unit..].iter().position(|(u, _)| *u == unit)? + next_unit;
        total = total.checked_add(number.checked_mul(UNITS[position].1)?)?;
        next_unit = position + 1;
        rest = &rest[digits + unit.len_utf8()..];
    }
    Some(total)
}

/// Writes seconds the way a manifest would: 5400 → "1h30m", 0 → "0s".
pub(crate) fn format_secs(secs: i64) -> String {
    if secs == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, size) in UNITS {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_each_unit_and_combined() {
        assert_eq!(parse_secs("30s"), Some(30));
        assert_eq!(parse_secs("5m"), Some(300));
        assert_eq!(parse_secs("1h"), Some(3_600));
        assert_eq!(parse_secs("1h30m"), Some(5_400));
        assert_eq!(parse_secs("2d"), Some(172_800));
        assert_eq!(parse_secs("1d2h3m4s"), Some(93_784));
        assert_eq!(parse_secs("0s"), Some(0));
    }

    #[test]
    fn malformed_durations_are_refused() {
        for bad in [
            "", "30", "s", "5x", "1m1h", "1h1h", "1.5h", "-5m", "5 m", "5M", "1h30",
        ] {
            assert_eq!(parse_secs(bad), None, "{bad:?}");
        }
        assert_eq!(parse_secs("9999999999999d"), None);
    }

    #[test]
    fn durations_format_canonically() {
        assert_eq!(format_secs(30), "30s");
        assert_eq!(format_secs(5_400), "1h30m");
        assert_eq!(format_secs(172_800), "2d");
        assert_eq!(format_secs(93_784), "1d2h3m4s");
    }
}
