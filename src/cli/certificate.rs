//! Just enough X.509 DER reading for `check` to show a certificate's subject, issuer and validity.
//!
//! native-tls gives us the peer certificate as DER but no accessors; a full ASN.1 crate is not worth a
//! dependency for three fields.

/// What `check` prints about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    pub subject: String,
    pub issuer: String,
    pub not_before: String,
    pub not_after: String,
    /// `notAfter` as YYYYMMDDhhmmss for comparisons.
    pub not_after_key: String,
    pub self_signed: bool,
}

/// One DER TLV: (tag, content, rest).
fn tlv(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = data.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let mut l = 0usize;
        for &b in &rest[..n] {
            l = (l << 8) | b as usize;
        }
        rest = &rest[n..];
        l
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// A Name as "CN=x, O=y" (only the attributes people recognise).
fn name(content: &[u8]) -> String {
    let mut parts = Vec::new();
    let mut sets = content;
    while let Some((_, set, rest)) = tlv(sets) {
        sets = rest;
        let mut seqs = set;
        while let Some((_, seq, rest)) = tlv(seqs) {
            seqs = rest;
            let Some((0x06, oid, after)) = tlv(seq) else { continue };
            let Some((_, value, _)) = tlv(after) else { continue };
            let label = match oid {
                [0x55, 0x04, 0x03] => "CN",
                [0x55, 0x04, 0x0a] => "O",
                [0x55, 0x04, 0x0b] => "OU",
                [0x55, 0x04, 0x06] => "C",
                _ => continue,
            };
            parts.push(format!("{label}={}", String::from_utf8_lossy(value)));
        }
    }
    if parts.is_empty() {
        "(empty)".into()
    } else {
        parts.join(", ")
    }
}

/// UTCTime (YYMMDDhhmmssZ) or GeneralizedTime (YYYYMMDDhhmmssZ) → ("YYYY-MM-DD hh:mm:ss UTC", "YYYYMMDDhhmmss").
fn time(tag: u8, content: &[u8]) -> Option<(String, String)> {
    let s = std::str::from_utf8(content).ok()?.trim_end_matches('Z');
    let full = match tag {
        0x17 if s.len() >= 12 => {
            let yy: u32 = s[..2].parse().ok()?;
            format!("{}{}", if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..12])
        }
        0x18 if s.len() >= 14 => s[..14].to_string(),
        _ => return None,
    };
    let pretty = format!(
        "{}-{}-{} {}:{}:{} UTC",
        &full[..4],
        &full[4..6],
        &full[6..8],
        &full[8..10],
        &full[10..12],
        &full[12..14]
    );
    Some((pretty, full))
}

/// Read subject, issuer and validity from a DER certificate.
pub fn summarize(der: &[u8]) -> Option<CertSummary> {
    let (_, cert, _) = tlv(der)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    let (tag, _, r) = tlv(rest)?;
    if tag == 0xa0 {
        rest = r; // explicit version
    }
    let (_, _serial, r) = tlv(rest)?;
    let (_, _sigalg, r) = tlv(r)?;
    let (_, issuer, r) = tlv(r)?;
    let (_, validity, r) = tlv(r)?;
    let (_, subject, _) = tlv(r)?;
    let (t1, nb, vr) = tlv(validity)?;
    let (t2, na, _) = tlv(vr)?;
    let (not_before, _) = time(t1, nb)?;
    let (not_after, not_after_key) = time(t2, na)?;
    Some(CertSummary {
        subject: name(subject),
        issuer: name(issuer),
        not_before,
        not_after,
        not_after_key,
        self_signed: subject == issuer,
    })
}

/// The current UTC time as YYYYMMDDhhmmss, comparable with `CertSummary::not_after_key`.
pub fn now_key() -> String {
    let text = crate::clock::rfc3339(std::time::SystemTime::now());
    text.chars().filter(char::is_ascii_digit).take(14).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem_to_der(pem: &str) -> Vec<u8> {
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let table = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0);
        for c in b64.bytes().filter(|&c| c != b'=') {
            let v = table.iter().position(|&t| t == c).unwrap() as u32;
            acc = (acc << 6) | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        out
    }

    #[test]
    fn reads_the_test_certificates() {
        let server = summarize(&pem_to_der(include_str!("../../fixtures/tls/server.pem"))).unwrap();
        assert_eq!(server.subject, "CN=localhost");
        assert_eq!(server.issuer, "CN=truenas-mcp test CA");
        assert!(!server.self_signed);
        assert!(server.not_after_key > now_key(), "{server:?}");
        let ca = summarize(&pem_to_der(include_str!("../../fixtures/tls/ca.pem"))).unwrap();
        assert!(ca.self_signed);
        assert!(summarize(b"\x30\x03\x02\x01").is_none());
    }

    #[test]
    fn civil_time_is_plausible() {
        let k = now_key();
        assert_eq!(k.len(), 14);
        assert!(k.as_str() > "20250101000000" && k.as_str() < "21000101000000", "{k}");
    }
}
