//! Turning store values into text: times, sizes, payloads.

/// Nanoseconds since the Unix epoch as an RFC 3339 UTC time with
/// millisecond precision (`2026-11-25T08:00:00.123Z`).
pub fn time(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let millis = (ns % 1_000_000_000) / 1_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
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

/// (year, month, day) to days since 1970-01-01 (`days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `--since`: an RFC 3339 UTC time (`2026-11-25T08:00:00Z`,
/// fractional seconds allowed) or a duration ago (`90s`, `15m`, `2h`,
/// `7d`), relative to `now_ns`. Returns ns since the Unix epoch.
pub fn parse_since(text: &str, now_ns: u64) -> Result<u64, String> {
    let text = text.trim();
    let bad = || {
        format!("cannot read the time {text:?}: give an RFC 3339 UTC time (2026-11-25T08:00:00Z) or a duration ago (90s, 15m, 2h, 7d)")
    };
    if let Some(unit) = text.chars().last().filter(|c| matches!(c, 's' | 'm' | 'h' | 'd')) {
        let n: u64 = text[..text.len() - 1].parse().map_err(|_| bad())?;
        let secs = match unit {
            's' => n,
            'm' => n.saturating_mul(60),
            'h' => n.saturating_mul(3600),
            'd' => n.saturating_mul(86_400),
            _ => return Err(bad()),
        };
        return Ok(now_ns.saturating_sub(secs.saturating_mul(1_000_000_000)));
    }
    let rest = text.strip_suffix('Z').ok_or_else(bad)?;
    let (date, clock) = rest.split_once('T').ok_or_else(bad)?;
    let mut date_parts = date.split('-');
    let next_num = |it: &mut std::str::Split<'_, char>| -> Result<i64, String> {
        it.next().and_then(|p| p.parse().ok()).ok_or_else(bad)
    };
    let (y, mo, d) = (
        next_num(&mut date_parts)?,
        next_num(&mut date_parts)?,
        next_num(&mut date_parts)?,
    );
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut clock_parts = hms.split(':');
    let (h, mi, s) = (
        next_num(&mut clock_parts)?,
        next_num(&mut clock_parts)?,
        next_num(&mut clock_parts)?,
    );
    let valid = (1..=12).contains(&mo) && (1..=31).contains(&d) && h < 24 && mi < 60 && s < 61 && y >= 1970;
    if !valid || !frac.chars().all(|c| c.is_ascii_digit()) || frac.len() > 9 {
        return Err(bad());
    }
    let nanos: u64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| bad())?
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + s;
    let secs = u64::try_from(secs).map_err(|_| bad())?;
    Ok(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

/// A byte count for people: `512 B`, `64.0 KiB`, `1.5 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration in ns for people: `500ms`, `90s`, `15m`, `2h`, `7d`.
pub fn duration_ns(ns: u64) -> String {
    let ms = ns / 1_000_000;
    let s = ms / 1000;
    match () {
        _ if s == 0 => format!("{ms}ms"),
        _ if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// The payload as text when it is printable UTF-8 (tabs allowed, no other
/// control characters), else `None`.
pub fn printable(payload: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(payload).ok()?;
    text.chars().all(|c| c == '\t' || !c.is_control()).then_some(text)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Standard base64 (RFC 4648, with padding).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A hex dump: 16 bytes per line, offset, hex, printable ASCII.
pub fn hex_dump(bytes: &[u8]) -> String {
    let mut out = String::new();
    for (i, line) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = line
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    char::from(b)
                } else {
                    '.'
                }
            })
            .collect();
        out.push_str(&format!("  {:08x}  {:<47}  {ascii}\n", i * 16, hex.join(" ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        assert_eq!(time(0), "1970-01-01T00:00:00.000Z");
        let ns = parse_since("2026-11-25T08:09:10.5Z", 0).expect("parses");
        assert_eq!(time(ns), "2026-11-25T08:09:10.500Z");
        assert_eq!(
            parse_since("2000-02-29T00:00:00Z", 0).map(time).as_deref(),
            Ok("2000-02-29T00:00:00.000Z")
        );
        assert_eq!(parse_since("15m", 3_600_000_000_000), Ok(2_700_000_000_000));
        assert!(parse_since("yesterday", 0).is_err());
        assert!(parse_since("2999-01-01T00:00:00Z", 0).is_ok());
        assert!(parse_since("2026-13-01T00:00:00Z", 0).is_err());
    }

    #[test]
    fn encodings() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(hex(&[0, 255, 16]), "00ff10");
        assert_eq!(printable(b"hi\tthere"), Some("hi\tthere"));
        assert_eq!(printable(b"a\nb"), None);
        assert_eq!(printable(&[0xff]), None);
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(duration_ns(7 * 86_400_000_000_000), "7d");
    }
}
