//! Mounts in every Compose spelling, and the named volumes that are host binds in disguise.
//!
//! Short syntax `SOURCE:TARGET[:MODE]` or a bare `TARGET`; long syntax `{type, source, target, read_only}`.
//! A source starting with `/` is a host path, `~` is the home of the user running Compose (root, on TrueNAS),
//! `.` is relative to a project directory a custom app does not have, anything else names a volume. A top-level
//! volume whose `driver_opts` say `o: bind` (or `type: none`) with a `device` mounts that host path: it is judged as a
//! bind, because it is one.

use serde_yaml::{Mapping, Value};

use super::model::{flag, scalar_text};

/// Where a mount's data comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MountSource {
    /// An absolute host path as written (`~` already expanded to `/root`), not yet normalised.
    Host(String),
    /// A path relative to the project directory (`./data`, `../x`, `.`).
    Relative(String),
    /// A named volume.
    Volume(String),
    /// A volume with no name (`- /data`), a tmpfs, or a source that is not on the host (npipe, image, cluster).
    None,
}

/// One `volumes:` entry of a service, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub source: MountSource,
    pub target: String,
    pub read_only: bool,
    /// Whether `~` was expanded (for the message).
    pub from_home: bool,
}

/// Parse one service `volumes:` entry.
pub fn parse_mount(entry: &Value) -> Result<Mount, String> {
    match entry {
        Value::String(s) => parse_short(s),
        Value::Mapping(m) => parse_long(m),
        _ => Err("a volume must be a string or a mapping".to_string()),
    }
}

fn parse_short(s: &str) -> Result<Mount, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [target] => {
            return Ok(Mount {
                source: MountSource::None,
                target: target.to_string(),
                read_only: false,
                from_home: false,
            })
        }
        [source, target] => (*source, *target, ""),
        [source, target, mode] => (*source, *target, *mode),
        _ => return Err(format!("`{s}` is not SOURCE:TARGET[:MODE]")),
    };
    if source.is_empty() || target.is_empty() {
        return Err(format!("`{s}` has an empty source or target"));
    }
    let read_only = mode.split(',').any(|m| matches!(m.trim(), "ro" | "readonly"));
    let (source, from_home) = classify(source);
    Ok(Mount { source, target: target.to_string(), read_only, from_home })
}

fn parse_long(m: &Mapping) -> Result<Mount, String> {
    let text = |key: &str| m.get(key).and_then(scalar_text);
    let target = text("target").filter(|t| !t.is_empty()).ok_or("the long volume syntax needs `target`")?;
    let read_only = m.get("read_only").is_some_and(flag);
    let source_text = text("source").unwrap_or_default();
    let kind = text("type").map(|t| t.trim().to_ascii_lowercase());
    let (source, from_home) = match kind.as_deref() {
        Some("bind") => {
            if source_text.is_empty() {
                return Err("a bind mount needs `source`".to_string());
            }
            match classify(&source_text) {
                // `type: bind` with a bare word is still a host path relative to the project.
                (MountSource::Volume(name), home) => (MountSource::Relative(name), home),
                other => other,
            }
        }
        Some("volume") if source_text.is_empty() => (MountSource::None, false),
        Some("volume") => (MountSource::Volume(source_text), false),
        Some("tmpfs") | Some("npipe") | Some("cluster") | Some("image") => (MountSource::None, false),
        Some(other) => {
            return Err(format!("unknown volume type `{other}` (bind, volume, tmpfs, npipe, cluster, image)"))
        }
        // Compose requires `type`; judge a missing one by its source, as the short syntax would.
        None if source_text.is_empty() => (MountSource::None, false),
        None => classify(&source_text),
    };
    Ok(Mount { source, target, read_only, from_home })
}

/// Host path, relative path or volume name, by Compose's rules for the short syntax.
fn classify(source: &str) -> (MountSource, bool) {
    if source.starts_with('/') {
        (MountSource::Host(source.to_string()), false)
    } else if source == "~" || source.starts_with("~/") {
        (MountSource::Host(format!("/root{}", &source[1..])), true)
    } else if source.starts_with('.') || source.starts_with('~') {
        (MountSource::Relative(source.to_string()), false)
    } else {
        (MountSource::Volume(source.to_string()), false)
    }
}

/// What a top-level named volume really is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VolumeBacking {
    /// Docker-managed storage (or external, or a remote filesystem): nothing on the host to judge.
    Managed,
    /// A bind of this host path (absolute, not yet normalised) declared at `path`.
    HostBind { device: String, path: String },
    /// A bind of a relative path.
    RelativeBind { device: String, path: String },
}

/// Decide whether the top-level volume definition `def` (at `path`, e.g. `volumes.data`) binds a host path.
pub fn volume_backing(def: &Value, path: &str) -> VolumeBacking {
    let Some(def) = def.as_mapping() else { return VolumeBacking::Managed };
    let Some(opts) = def.get("driver_opts").and_then(Value::as_mapping) else { return VolumeBacking::Managed };
    let opt = |key: &str| opts.get(key).and_then(scalar_text).map(|v| v.trim().to_string());
    let driver = def.get("driver").and_then(scalar_text).unwrap_or_else(|| "local".to_string());
    let fs_type = opt("type").unwrap_or_default().to_ascii_lowercase();
    if matches!(fs_type.as_str(), "nfs" | "nfs4" | "cifs" | "smb" | "smb3" | "ceph" | "glusterfs") {
        return VolumeBacking::Managed;
    }
    let binds = opt("o").is_some_and(|o| o.split(',').any(|o| matches!(o.trim(), "bind" | "rbind")));
    let candidates: Vec<(String, String)> = if driver == "local" {
        match opt("device") {
            Some(device) if binds || fs_type == "none" || fs_type.is_empty() => {
                vec![(device, format!("{path}.driver_opts.device"))]
            }
            _ => Vec::new(),
        }
    } else {
        // Plugin drivers (local-persist and friends) take host paths under their own option names.
        opts.iter()
            .filter_map(|(k, v)| Some((scalar_text(k)?, scalar_text(v)?)))
            .filter(|(_, v)| v.starts_with('/'))
            .map(|(k, v)| (v, format!("{path}.driver_opts.{k}")))
            .collect()
    };
    match candidates.into_iter().next() {
        None => VolumeBacking::Managed,
        Some((device, path)) => match classify(&device) {
            (MountSource::Host(device), _) => VolumeBacking::HostBind { device, path },
            (MountSource::Relative(device), _) | (MountSource::Volume(device), _) => {
                VolumeBacking::RelativeBind { device, path }
            }
            (MountSource::None, _) => VolumeBacking::Managed,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(y: &str) -> Result<Mount, String> {
        parse_mount(&serde_yaml::from_str(y).unwrap())
    }

    fn host(p: &str) -> MountSource {
        MountSource::Host(p.to_string())
    }

    #[test]
    fn short_and_long_forms() {
        let cases: Vec<(&str, MountSource, bool)> = vec![
            ("/src:/dst:ro", host("/src"), true),
            ("/src:/dst", host("/src"), false),
            ("/src:/dst:ro,z", host("/src"), true),
            ("data:/dst", MountSource::Volume("data".into()), false),
            ("~/x:/dst", host("/root/x"), false),
            ("~:/dst", host("/root"), false),
            ("./rel:/dst", MountSource::Relative("./rel".into()), false),
            ("../up:/dst", MountSource::Relative("../up".into()), false),
            ("/anon", MountSource::None, false),
            ("{type: bind, source: /etc, target: /x, read_only: 'yes'}", host("/etc"), true),
            ("{type: bind, source: data, target: /x}", MountSource::Relative("data".into()), false),
            ("{type: volume, source: data, target: /x, read_only: false}", MountSource::Volume("data".into()), false),
            ("{type: tmpfs, target: /x}", MountSource::None, false),
            ("{source: /etc, target: /x}", host("/etc"), false),
        ];
        for (y, source, ro) in cases {
            let m = mount(y).unwrap_or_else(|e| panic!("{y}: {e}"));
            assert_eq!((m.source, m.read_only), (source, ro), "{y}");
        }
        for bad in ["a:b:c:d", "':/x'", "{source: /x}", "{type: weird, target: /x}", "[1]"] {
            assert!(mount(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn named_volumes_that_bind() {
        let backing = |y: &str| volume_backing(&serde_yaml::from_str(y).unwrap(), "volumes.v");
        let bind = VolumeBacking::HostBind { device: "/etc".into(), path: "volumes.v.driver_opts.device".into() };
        assert_eq!(backing("{driver_opts: {type: none, o: bind, device: /etc}}"), bind);
        assert_eq!(backing("{driver: local, driver_opts: {o: 'rbind,ro', device: /etc}}"), bind);
        assert_eq!(
            backing("{driver_opts: {type: nfs, o: 'addr=1.2.3.4', device: ':/export'}}"),
            VolumeBacking::Managed
        );
        assert_eq!(backing("{driver_opts: {type: cifs, device: //server/share}}"), VolumeBacking::Managed);
        assert_eq!(backing("{external: true}"), VolumeBacking::Managed);
        assert_eq!(backing("null"), VolumeBacking::Managed);
        assert_eq!(
            backing("{driver: local-persist, driver_opts: {mountpoint: /etc}}"),
            VolumeBacking::HostBind { device: "/etc".into(), path: "volumes.v.driver_opts.mountpoint".into() }
        );
    }
}
