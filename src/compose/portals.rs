//! `x-portals` derived from published web ports, so the TrueNAS UI shows a "Web UI" button for the app.
//!
//! TrueNAS reads a top-level `x-portals: [{name, scheme, host, port, path}]` at create time (apps API §3.6) and
//! replaces host `0.0.0.0` with the address the user browses from. We only add one when the document has none,
//! and only for TCP ports published on every address (or a non-loopback one) that look like web UIs: a long-syntax
//! `app_protocol: http|https`, or a container port that web applications commonly listen on.

use serde_yaml::{Mapping, Value};

use super::model::Project;

/// Container ports that usually serve a web UI.
const WEB_PORTS: &[u16] = &[
    80, 443, 3000, 3001, 5000, 5001, 5055, 6767, 7878, 8000, 8008, 8080, 8081, 8082, 8088, 8090, 8096, 8123, 8200,
    8265, 8384, 8443, 8686, 8888, 8920, 8989, 9000, 9090, 9117, 9443, 9696, 2283, 32400,
];
const TLS_PORTS: &[u16] = &[443, 8443, 9443, 8920];
/// More buttons than this is noise.
const MAX_PORTALS: usize = 10;

/// Portals for the web ports `project` publishes, in document order.
pub fn derive_portals(project: &Project) -> Vec<Value> {
    let mut found: Vec<(&str, u16, &'static str)> = Vec::new();
    for service in &project.services {
        for binding in &service.ports {
            let b = &binding.value;
            let Some((lo, hi)) = b.host else { continue };
            let loopback = b.host_ip.as_deref().is_some_and(|ip| ip.starts_with("127.") || ip == "::1");
            if lo != hi || b.protocol != "tcp" || loopback {
                continue;
            }
            let web = match b.app_protocol.as_deref() {
                Some("http") | Some("https") => true,
                Some(_) => false,
                None => WEB_PORTS.contains(&b.container.0),
            };
            if !web {
                continue;
            }
            let tls = b.app_protocol.as_deref() == Some("https") || TLS_PORTS.contains(&b.container.0);
            if !found.iter().any(|(_, port, _)| *port == lo) {
                found.push((&service.name, lo, if tls { "https" } else { "http" }));
            }
        }
    }
    found.truncate(MAX_PORTALS);
    let single = found.len() == 1;
    found
        .iter()
        .map(|(service, port, scheme)| {
            let name = if single {
                "Web UI".to_string()
            } else if found.iter().filter(|(s, _, _)| s == service).count() == 1 {
                service.to_string()
            } else {
                format!("{service} {port}")
            };
            let mut portal = Mapping::new();
            portal.insert("name".into(), name.into());
            portal.insert("scheme".into(), (*scheme).into());
            portal.insert("host".into(), "0.0.0.0".into());
            portal.insert("port".into(), Value::Number((*port).into()));
            portal.insert("path".into(), "/".into());
            Value::Mapping(portal)
        })
        .collect()
}
