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
    /// Docker-managed storage (or memory): nothing on the host to judge.
    Managed,
    /// A volume the app does not own: `external`, or named like another app's volume (`ix-<app>_<volume>`).
    /// `name` is the volume's real name; `path` where that was decided.
    External { name: String, path: String },
    /// A bind of this host path (absolute, not yet normalised) declared at `path`.
    HostBind { device: String, path: String },
    /// A bind of a relative path.
    RelativeBind { device: String, path: String },
    /// The NAS mounts one of its own disks, datasets or filesystems (`type: ext4`, `zfs`, `overlay`, an NFS mount
    /// of the NAS itself); `detail` says what, `path` is the `driver_opts`.
    HostMount { detail: String, path: String },
    /// The NAS mounts a share from another machine (NFS, CIFS).
    NetworkMount { detail: String, path: String },
}

/// Filesystem types that fetch their data over the network.
const NETWORK_FILESYSTEMS: &[&str] = &["nfs", "nfs4", "cifs", "smb", "smb3", "smbfs", "ceph", "glusterfs"];
/// Filesystem types that live in memory only.
const MEMORY_FILESYSTEMS: &[&str] = &["tmpfs", "ramfs"];

/// Decide what the top-level volume definition `def` (at `path`, e.g. `volumes.data`) is backed by, for a volume
/// declared as `name`.
pub fn volume_backing(name: &str, def: &Value, path: &str) -> VolumeBacking {
    let Some(def) = def.as_mapping() else { return VolumeBacking::Managed };
    let real_name = def.get("name").and_then(scalar_text);
    match def.get("external") {
        // Compose ignores every other attribute of an external volume.
        Some(external) if external.is_mapping() || flag(external) => {
            let legacy = external.get("name").and_then(scalar_text);
            let name = real_name.or(legacy).unwrap_or_else(|| name.to_string());
            return VolumeBacking::External { name, path: format!("{path}.external") };
        }
        // Compose reuses an existing volume of a fixed name, and TrueNAS names every app's volumes `ix-<app>_…`.
        _ => {
            if let Some(name) = real_name.filter(|n| n.starts_with("ix-")) {
                return VolumeBacking::External { name, path: format!("{path}.name") };
            }
        }
    }
    let Some(opts) = def.get("driver_opts").and_then(Value::as_mapping) else { return VolumeBacking::Managed };
    let opt = |key: &str| opts.get(key).and_then(scalar_text).map(|v| v.trim().to_string());
    // Docker matches driver names exactly, but a spelling we misread must not skip the local driver's checks.
    let driver = def.get("driver").and_then(scalar_text).map(|d| d.trim().to_ascii_lowercase());
    let driver = driver.filter(|d| !d.is_empty()).unwrap_or_else(|| "local".to_string());
    let opts_path = format!("{path}.driver_opts");
    if driver != "local" {
        // Plugin drivers (local-persist and friends) take host paths under their own option names.
        let found = opts
            .iter()
            .filter_map(|(k, v)| Some((scalar_text(k)?, scalar_text(v)?)))
            .find(|(_, v)| v.starts_with('/'))
            .map(|(k, v)| (v, format!("{opts_path}.{k}")));
        return match found {
            Some((device, path)) => bind_of(device, path),
            None => VolumeBacking::Managed,
        };
    }
    // The local driver runs mount(8) on the NAS as root: `mount -t <type> -o <o> <device> <volume dir>`.
    let fs_type = opt("type").unwrap_or_default().to_ascii_lowercase();
    let o = opt("o").unwrap_or_default();
    let device = opt("device");
    let binds = o.split(',').any(|o| matches!(o.trim(), "bind" | "rbind"));
    if binds || fs_type == "none" || (fs_type.is_empty() && device.is_some()) {
        return match device {
            Some(device) => bind_of(device, format!("{opts_path}.device")),
            None => VolumeBacking::Managed,
        };
    }
    if fs_type.is_empty() || MEMORY_FILESYSTEMS.contains(&fs_type.as_str()) {
        return VolumeBacking::Managed;
    }
    let device = device.unwrap_or_default();
    if NETWORK_FILESYSTEMS.contains(&fs_type.as_str()) {
        let server = o
            .split(',')
            .find_map(|o| o.trim().strip_prefix("addr="))
            .map(str::to_string)
            .or_else(|| device.strip_prefix("//").map(|d| d.split('/').next().unwrap_or_default().to_string()))
            .or_else(|| device.split_once(':').map(|(host, _)| host.to_string()))
            .unwrap_or_default();
        return if is_loopback(&server) {
            VolumeBacking::HostMount {
                detail: format!("a `{fs_type}` mount of the NAS itself (server `{server}`)"),
                path: opts_path,
            }
        } else {
            VolumeBacking::NetworkMount { detail: format!("a `{fs_type}` mount of `{device}`"), path: opts_path }
        };
    }
    let what = if device.is_empty() { String::new() } else { format!(" of `{device}`") };
    VolumeBacking::HostMount { detail: format!("a `{fs_type}` filesystem mount{what}"), path: opts_path }
}

fn bind_of(device: String, path: String) -> VolumeBacking {
    match classify(&device) {
        (MountSource::Host(device), _) => VolumeBacking::HostBind { device, path },
        (MountSource::Relative(device), _) | (MountSource::Volume(device), _) => {
            VolumeBacking::RelativeBind { device, path }
        }
        (MountSource::None, _) => VolumeBacking::Managed,
    }
}

/// Whether a share's server is the NAS itself. Its own LAN address cannot be recognised here, but a share the NAS
/// exports to the LAN is no more than any LAN client can mount.
fn is_loopback(server: &str) -> bool {
    let s = server.trim().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    s.is_empty() || s.starts_with("127.") || s == "localhost" || s == "::1" || s == "0.0.0.0" || s == "::"
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
        let backing = |y: &str| volume_backing("v", &serde_yaml::from_str(y).unwrap(), "volumes.v");
        let bind = VolumeBacking::HostBind { device: "/etc".into(), path: "volumes.v.driver_opts.device".into() };
        assert_eq!(backing("{driver_opts: {type: none, o: bind, device: /etc}}"), bind);
        assert_eq!(backing("{driver: local, driver_opts: {o: 'rbind,ro', device: /etc}}"), bind);
        assert!(matches!(
            backing("{driver_opts: {type: nfs, o: 'addr=1.2.3.4', device: ':/export'}}"),
            VolumeBacking::NetworkMount { .. }
        ));
        assert!(matches!(
            backing("{driver_opts: {type: cifs, device: //server/share}}"),
            VolumeBacking::NetworkMount { .. }
        ));
        for itself in [
            "{driver_opts: {type: nfs, o: 'addr=127.0.0.1', device: ':/mnt'}}",
            "{driver_opts: {type: nfs4, device: 'localhost:/mnt'}}",
            "{driver_opts: {type: cifs, device: '//[::1]/share'}}",
            "{driver_opts: {type: nfs, device: ':/mnt'}}",
        ] {
            assert!(matches!(backing(itself), VolumeBacking::HostMount { .. }), "{itself}");
        }
        assert_eq!(
            backing("{driver_opts: {type: ext4, device: /dev/sda1}}"),
            VolumeBacking::HostMount {
                detail: "a `ext4` filesystem mount of `/dev/sda1`".into(),
                path: "volumes.v.driver_opts".into()
            }
        );
        assert_eq!(backing("{driver_opts: {type: tmpfs, device: tmpfs, o: size=1m}}"), VolumeBacking::Managed);
        assert_eq!(backing("{driver_opts: {o: size=1m}}"), VolumeBacking::Managed);
        assert!(matches!(
            backing("{driver: ' Local', driver_opts: {type: zfs, device: boot-pool/ROOT}}"),
            VolumeBacking::HostMount { .. }
        ));
        let external = |name: &str, at: &str| VolumeBacking::External { name: name.into(), path: at.into() };
        assert_eq!(backing("{external: true}"), external("v", "volumes.v.external"));
        assert_eq!(backing("{external: {name: x}}"), external("x", "volumes.v.external"));
        assert_eq!(
            backing("{external: true, name: y, driver_opts: {type: ext4}}"),
            external("y", "volumes.v.external")
        );
        assert_eq!(backing("{name: ix-other_data}"), external("ix-other_data", "volumes.v.name"));
        assert_eq!(backing("{name: mine}"), VolumeBacking::Managed);
        assert_eq!(backing("{external: false}"), VolumeBacking::Managed);
        assert_eq!(backing("null"), VolumeBacking::Managed);
        assert_eq!(
            backing("{driver: local-persist, driver_opts: {mountpoint: /etc}}"),
            VolumeBacking::HostBind { device: "/etc".into(), path: "volumes.v.driver_opts.mountpoint".into() }
        );
    }
}
