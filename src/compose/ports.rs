//! Published ports in every Compose spelling, and which of them collide.
//!
//! Short syntax `[HOST_IP:][HOST_PORT[-END]:]CONTAINER_PORT[-END][/PROTOCOL]` (IPv6 host addresses in brackets,
//! or bare when there are more than three colons), a bare number, and the long syntax
//! `{target, published, host_ip, protocol, app_protocol, name, mode}` with `published` as a number or a string
//! (possibly a range). A binding without a host port gets a random one and can never collide.

use serde_yaml::Value;

/// One `ports:` entry, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortBinding {
    /// `None` for every address (`0.0.0.0`, `::`, or none given).
    pub host_ip: Option<String>,
    /// Inclusive host port range; `None` when Docker picks a random port.
    pub host: Option<(u16, u16)>,
    /// Inclusive container port range.
    pub container: (u16, u16),
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// `app_protocol` of the long syntax (`http`, `https`), lower case.
    pub app_protocol: Option<String>,
}

impl PortBinding {
    /// Whether two bindings would ask Docker for the same host socket.
    pub fn collides_with(&self, other: &PortBinding) -> bool {
        let (Some((a_lo, a_hi)), Some((b_lo, b_hi))) = (self.host, other.host) else { return false };
        self.protocol == other.protocol
            && a_lo <= b_hi
            && b_lo <= a_hi
            && match (&self.host_ip, &other.host_ip) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }

    /// The container port that host port `port` (inside `host`) forwards to.
    pub fn container_port_for(&self, port: u16) -> u16 {
        match self.host {
            Some((lo, hi)) if self.container.1 - self.container.0 == hi - lo => self.container.0 + (port - lo),
            _ => self.container.0,
        }
    }

    /// `127.0.0.1:8080` or `8080-8090` or `random → 80`, for messages.
    pub fn describe(&self) -> String {
        let host = match self.host {
            Some((lo, hi)) if lo == hi => lo.to_string(),
            Some((lo, hi)) => format!("{lo}-{hi}"),
            None => "random".to_string(),
        };
        match &self.host_ip {
            Some(ip) if ip.contains(':') => format!("[{ip}]:{host}/{}", self.protocol),
            Some(ip) => format!("{ip}:{host}/{}", self.protocol),
            None => format!("{host}/{}", self.protocol),
        }
    }
}

/// Parse one `ports:` entry.
pub fn parse_port(entry: &Value) -> Result<PortBinding, String> {
    match entry {
        Value::Number(n) => {
            let port = n.as_u64().and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0);
            match port {
                Some(p) => Ok(binding(None, None, (p, p), "tcp".into(), None)),
                None => Err(format!("`{n}` is not a port number (1-65535)")),
            }
        }
        Value::String(s) => parse_short(s),
        Value::Mapping(m) => {
            let text = |key: &str| -> Result<Option<String>, String> {
                match m.get(key) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
                    Some(Value::Number(n)) => Ok(Some(n.to_string())),
                    Some(_) => Err(format!("`{key}` must be a number or a string")),
                }
            };
            let target = text("target")?.ok_or("the long port syntax needs `target`")?;
            let container = range(&target)?;
            let host = match text("published")? {
                Some(p) if !p.is_empty() => Some(range(&p)?),
                _ => None,
            };
            let protocol = protocol(text("protocol")?.as_deref().unwrap_or("tcp"))?;
            let host_ip = normalise_ip(text("host_ip")?.as_deref().unwrap_or(""));
            let app_protocol = text("app_protocol")?.map(|p| p.to_ascii_lowercase());
            check_lengths(host, container)?;
            Ok(binding(host_ip, host, container, protocol, app_protocol))
        }
        _ => Err("a port must be a number, a string or a mapping".to_string()),
    }
}

fn binding(
    host_ip: Option<String>,
    host: Option<(u16, u16)>,
    container: (u16, u16),
    protocol: String,
    app_protocol: Option<String>,
) -> PortBinding {
    PortBinding { host_ip, host, container, protocol, app_protocol }
}

fn parse_short(s: &str) -> Result<PortBinding, String> {
    let s = s.trim();
    let (address, proto) = match s.rsplit_once('/') {
        Some((a, p)) => (a, protocol(p)?),
        None => (s, "tcp".to_string()),
    };
    let (ip, rest): (Option<&str>, Vec<&str>) = if let Some(bracketed) = address.strip_prefix('[') {
        let (ip, after) = bracketed.split_once(']').ok_or_else(|| format!("`{s}`: unclosed `[` in the address"))?;
        let after = after.strip_prefix(':').ok_or_else(|| format!("`{s}`: expected `:` after `]`"))?;
        (Some(ip), after.split(':').collect())
    } else {
        let parts: Vec<&str> = address.split(':').collect();
        match parts.len() {
            1 | 2 => (None, parts),
            3 => (Some(parts[0]), parts[1..].to_vec()),
            // A bare IPv6 address: everything but the last two fields.
            n => {
                (Some(&address[..address.len() - parts[n - 2].len() - parts[n - 1].len() - 2]), parts[n - 2..].to_vec())
            }
        }
    };
    let (host, container) = match rest.as_slice() {
        [c] => (None, range(c)?),
        ["", c] => (None, range(c)?),
        [h, c] => (Some(range(h)?), range(c)?),
        _ => return Err(format!("`{s}` is not a port mapping (expected [IP:][HOST:]CONTAINER[/PROTOCOL])")),
    };
    check_lengths(host, container)?;
    Ok(binding(ip.and_then(normalise_ip), host, container, proto, None))
}

fn check_lengths(host: Option<(u16, u16)>, container: (u16, u16)) -> Result<(), String> {
    if let Some((lo, hi)) = host {
        let host_len = hi - lo;
        let container_len = container.1 - container.0;
        if container_len != 0 && container_len != host_len {
            return Err(format!(
                "host range {lo}-{hi} and container range {}-{} differ in length",
                container.0, container.1
            ));
        }
    }
    Ok(())
}

fn protocol(p: &str) -> Result<String, String> {
    let p = p.trim().to_ascii_lowercase();
    match p.as_str() {
        "tcp" | "udp" | "sctp" => Ok(p),
        _ => Err(format!("unknown protocol `{p}` (tcp, udp or sctp)")),
    }
}

fn port_number(text: &str) -> Result<u16, String> {
    match text.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("`{text}` is not a port number (1-65535)")),
    }
}

fn range(text: &str) -> Result<(u16, u16), String> {
    match text.split_once('-') {
        Some((a, b)) => {
            let (lo, hi) = (port_number(a)?, port_number(b)?);
            if lo > hi {
                return Err(format!("port range `{text}` runs backwards"));
            }
            Ok((lo, hi))
        }
        None => {
            let p = port_number(text)?;
            Ok((p, p))
        }
    }
}

/// `None` for a wildcard address; otherwise the address in lower case without brackets.
fn normalise_ip(ip: &str) -> Option<String> {
    let ip = ip.trim().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    match ip.as_str() {
        "" | "0.0.0.0" | "::" | "[::]" => None,
        _ => Some(ip),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parts = (Option<String>, Option<(u16, u16)>, (u16, u16), String);

    fn short(s: &str) -> Result<Parts, String> {
        parse_port(&Value::String(s.into())).map(|b| (b.host_ip, b.host, b.container, b.protocol))
    }

    #[test]
    fn short_syntax() {
        let ip = |s: &str| Some(s.to_string());
        let tcp = || "tcp".to_string();
        let cases: Vec<(&str, Parts)> = vec![
            ("80", (None, None, (80, 80), tcp())),
            ("8080:80", (None, Some((8080, 8080)), (80, 80), tcp())),
            ("127.0.0.1:8080:80/udp", (ip("127.0.0.1"), Some((8080, 8080)), (80, 80), "udp".into())),
            ("[::1]:8080:80", (ip("::1"), Some((8080, 8080)), (80, 80), tcp())),
            ("::1:8080:80", (ip("::1"), Some((8080, 8080)), (80, 80), tcp())),
            ("0.0.0.0:53:53/UDP", (None, Some((53, 53)), (53, 53), "udp".into())),
            ("8000-8010:8000-8010", (None, Some((8000, 8010)), (8000, 8010), tcp())),
            ("9000-9010:80", (None, Some((9000, 9010)), (80, 80), tcp())),
            ("127.0.0.1::80", (ip("127.0.0.1"), None, (80, 80), tcp())),
            ("3000-3005", (None, None, (3000, 3005), tcp())),
        ];
        for (text, want) in cases {
            assert_eq!(short(text), Ok(want), "{text}");
        }
        for bad in ["", "x:80", "70000:80", "80:0", "8010-8000:80", "1-3:1-2", "80/http", "[::1:80", "1:2:3:4/tcp:"] {
            assert!(short(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_syntax_with_numbers_or_strings() {
        let long = |y: &str| parse_port(&serde_yaml::from_str(y).unwrap());
        let b = long("{target: 80, published: '8080', host_ip: 127.0.0.1, protocol: udp, app_protocol: HTTP}").unwrap();
        assert_eq!(b.host, Some((8080, 8080)));
        assert_eq!(b.host_ip.as_deref(), Some("127.0.0.1"));
        assert_eq!(b.protocol, "udp");
        assert_eq!(b.app_protocol.as_deref(), Some("http"));
        assert_eq!(long("{target: 80, published: 8080}").unwrap().host, Some((8080, 8080)));
        assert_eq!(long("{target: '80', published: 8000-8001}").unwrap().host, Some((8000, 8001)));
        assert_eq!(long("{target: 80}").unwrap().host, None);
        assert!(long("{published: 80}").is_err());
        assert!(long("{target: [80]}").is_err());
    }

    #[test]
    fn collisions() {
        let b = |s: &str| parse_port(&Value::String(s.into())).unwrap();
        assert!(b("8080:80").collides_with(&b("8080:81")));
        assert!(b("8080:80").collides_with(&b("127.0.0.1:8080:81")));
        assert!(!b("127.0.0.2:8080:80").collides_with(&b("127.0.0.1:8080:81")));
        assert!(!b("8080:80/udp").collides_with(&b("8080:80")));
        assert!(b("8000-8010:8000-8010").collides_with(&b("8005:80")));
        assert!(!b("80").collides_with(&b("80")));
        assert_eq!(b("8000-8010:9000-9010").container_port_for(8003), 9003);
    }
}
