//! Minimal DER walk to read a certificate's notAfter (validity end) as Unix milliseconds.

/// Reads one DER TLV at `pos`: returns (tag, content range end, content start).
fn tlv(der: &[u8], pos: usize) -> Option<(u8, usize, usize)> {
    let tag = *der.get(pos)?;
    let first = *der.get(pos + 1)? as usize;
    let (len, start) = if first < 0x80 {
        (first, pos + 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *der.get(pos + 2 + i)? as usize;
        }
        (len, pos + 2 + n)
    };
    let end = start.checked_add(len)?;
    (end <= der.len()).then_some((tag, end, start))
}

/// The certificate's notAfter in Unix milliseconds, if the DER is well formed.
pub fn not_after_ms(der: &[u8]) -> Option<i64> {
    let (_, _, cert) = tlv(der, 0)?; // Certificate SEQUENCE
    let (_, _, mut p) = tlv(der, cert)?; // tbsCertificate SEQUENCE
    let (tag, end, _) = tlv(der, p)?;
    if tag == 0xa0 {
        p = end; // explicit version
    }
    for _ in 0..3 {
        p = tlv(der, p)?.1; // serial, signature, issuer
    }
    let (_, _, validity) = tlv(der, p)?;
    let (_, nb_end, _) = tlv(der, validity)?;
    let (tag, end, start) = tlv(der, nb_end)?;
    parse_time(tag, std::str::from_utf8(&der[start..end]).ok()?)
}

fn parse_time(tag: u8, s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = s.get(0..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, s.get(2..)?)
        }
        0x18 => (s.get(0..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    let n = |r: std::ops::Range<usize>| -> Option<i64> { rest.get(r)?.parse().ok() };
    let (mo, d, h, mi, se) = (n(0..2)?, n(2..4)?, n(4..6)?, n(6..8)?, n(8..10)?);
    Some((days_from_civil(year, mo, d) * 86_400 + h * 3600 + mi * 60 + se) * 1000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    #[test]
    fn time_formats() {
        assert_eq!(super::parse_time(0x17, "700101000000Z"), Some(0));
        assert_eq!(
            super::parse_time(0x18, "20240229120000Z"),
            Some(1_709_208_000_000)
        );
        assert_eq!(super::parse_time(0x17, "garbage"), None);
    }
}
