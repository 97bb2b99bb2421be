//! Durations on the command line: `250ms`, `2s`, `5m`, `1h`.

use std::time::Duration;

/// Parses numbers each followed by `ms`, `s`, `m` or `h`: `250ms`, `5m`, `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("an empty duration: use e.g. 30s, 5m or 1h30m".into());
    }
    let mut rest = text;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("{text:?} needs a unit: ms, s, m or h"))?;
        let (number, tail) = rest.split_at(split);
        let value: u64 = number
            .parse()
            .map_err(|_| format!("{text:?}: a unit must follow a whole number"))?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        let ms = match unit {
            "ms" => value,
            "s" => value.saturating_mul(1_000),
            "m" => value.saturating_mul(60_000),
            "h" => value.saturating_mul(3_600_000),
            other => {
                return Err(format!(
                    "unknown unit {other:?} in {text:?}: use ms, s, m or h"
                ));
            }
        };
        total = total.saturating_add(Duration::from_millis(ms));
        rest = next;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_rejects_garbage() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("3 weeks").is_err());
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5m3").is_err());
    }
}
