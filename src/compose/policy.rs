//! The security policy: every rule of the catalogue judged on the typed view, then the operator's level applied.
//!
//! TrueNAS checks nothing on a custom app, so this is the only guard between a model and root on the NAS. The
//! operator configures it (`TRUENAS_COMPOSE_POLICY`, `TRUENAS_ALLOWED_HOST_PATHS`, `TRUENAS_COMPOSE_ALLOW`,
//! `TRUENAS_RESERVED_PORTS`); tool arguments never reach it.
//!
//! # What each level changes
//!
//! `standard` (default) uses the severities of the catalogue (`rules.rs`). Then:
//!
//! | level | change |
//! |---|---|
//! | `strict` | warnings become **errors** for `no-resource-limits`, `cap-add-network`, `cap-add-host`, `volume-network-mount`, `network-mode-host`, `devices` and `host-namespace` (`uts: host`); infos become **warnings** for `user-root`, `image-unpinned`, `plaintext-secret` |
//! | `standard` | nothing |
//! | `permissive` | warnings become **info** for `no-resource-limits`, `cap-add-network`, `network-mode-host`, `devices`, `host-namespace` (`uts: host`), `port-privileged`, `container-name`, `external-network`; the errors `host-path-outside-roots` and `external-volume` become **warnings** (the operator trusts the model with data outside the roots and other apps' volumes), and so does `unresolved-variable` (the variable becomes empty, as plain Compose would do) |
//!
//! No level changes a security-critical error: `privileged`, `cap-add-dangerous`, `host-namespace` (pid, ipc,
//! userns, cgroup), `security-opt-unconfined`, `seccomp-profile`, `joins-other-container`, `docker-socket`,
//! `sensitive-host-path`, `volume-host-mount` and `devices-dangerous` stay errors at every level, and so do the errors that mean the app cannot work on TrueNAS (`build-unsupported`,
//! `relative-host-path`, `env-file-unsupported`, `port-conflict`, `required-variable`, …). Only the operator's
//! explicit `TRUENAS_COMPOSE_ALLOW=rule-id,…` downgrades a rule, any rule, to `info`, with the message saying so.
//! The structural rules (`yaml-invalid`, `not-a-mapping`, `no-services`, `service-not-a-mapping`,
//! `field-invalid`, `too-large`, `app-name-invalid`) cannot be allowed: a document we could not read completely
//! was not judged completely.
//!
//! # Host paths
//!
//! Every host path (bind source, named volume `device`, `env_file`, `configs`/`secrets` `file`) is normalised
//! (`..`, `.`, `//`, trailing `/`) and `~` read as `/root` before it is judged. A path is sensitive when it is one
//! of the system paths, lies below one, or *contains* one (`/var` holds `/var/run/docker.sock`, `/mnt` holds
//! `/mnt/.ix-apps`). Read-only `/etc/localtime` and `/etc/timezone` are allowed, and so are `/dev/null`,
//! `/dev/zero`, `/dev/random` and `/dev/urandom` (bound over a file to blank it). The system paths are a denylist and
//! never complete (containerd's state, an admin's `~/.ssh`), so the allowed roots are an allowlist: any other path
//! outside them is an error too. `env_file` and `configs`/`secrets` files are read-only by nature.
//!
//! # Other ways to the host
//!
//! A named volume is judged for what its local driver mounts (`volumes.rs`): a bind like a bind; a disk, a ZFS
//! dataset, an overlay or an NFS/CIFS share of the NAS itself as `volume-host-mount`; a share on another machine as
//! `volume-network-mount` (a warning: the NAS mounts it as root, but it reaches nothing a LAN client could not); an
//! `external` volume or one named `ix-…` (TrueNAS's prefix for every app's volumes) as `external-volume`. Joining
//! a service of the same document (`network_mode: service:x`, `volumes_from: [x]`) is fine: it is part of the app and
//! judged itself; joining any other container (`container:<x>`, a `volumes_from` name that is no service here) is
//! `joins-other-container`. `seccomp=<file>` is `seccomp-profile`: a profile we do not read can allow everything.
//! Over our usual ~700 lines on purpose: this is the whole judgement, rule by rule, with the levels table above;
//! the rule catalogue itself is in `rules.rs` and the syntax forms in `model.rs`.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;

use crate::config::{normalize_path, PolicyConfig, PolicyLevel};

use super::model::{flag, scalar_text, Located, Project, Service};
use super::ports::PortBinding;
use super::rules;
use super::volumes::{volume_backing, MountSource, VolumeBacking};
use super::{Finding, PublishedPort, Severity};

/// System paths a container must not bind (nor anything below or above them).
const SENSITIVE_PATHS: &[&str] = &[
    "/etc",
    "/boot",
    "/sys",
    "/proc",
    "/dev",
    "/root",
    "/run",
    "/var/run",
    "/var/lib/docker",
    "/usr",
    "/bin",
    "/sbin",
    "/data",
    "/var/db",
    "/mnt/.ix-apps",
];
/// Read-only binds of these are fine (the container learns the host's time zone).
const READ_ONLY_EXCEPTIONS: &[&str] = &["/etc/localtime", "/etc/timezone"];
/// Sockets that hand out root on the host.
const ENGINE_SOCKETS: &[&str] =
    &["docker.sock", "containerd.sock", "podman.sock", "dockershim.sock", "cri-dockerd.sock"];
const DANGEROUS_CAPS: &[&str] = &[
    "ALL",
    "SYS_ADMIN",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_PTRACE",
    "SYS_BOOT",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "BPF",
];
const NETWORK_CAPS: &[&str] = &["NET_ADMIN", "NET_RAW"];
/// Capabilities whose effect is not confined to the container: they act on the NAS's clock, kernel log, audit
/// rules, power state, memory, scheduler or files. (MKNOD, CHOWN, KILL and the rest of Docker's default set are
/// already granted, so adding them changes nothing; the device cgroup still decides which nodes can be opened.)
const HOST_CAPS: &[&str] = &[
    "SYS_TIME",
    "SYSLOG",
    "SYS_NICE",
    "SYS_RESOURCE",
    "IPC_LOCK",
    "LINUX_IMMUTABLE",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "SYS_PACCT",
    "SYS_TTY_CONFIG",
    "PERFMON",
];
/// Device files that read as empty, zeros or randomness: binding one over a file blanks it and reaches nothing.
const HARMLESS_DEVICE_FILES: &[&str] = &["/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"];
/// Device names (below `/dev`) that give raw access to disks, memory or ZFS.
const DANGEROUS_DEVICE_PREFIXES: &[&str] = &[
    "mem", "kmem", "port", "zfs", "sd", "hd", "vd", "xvd", "nvme", "zd", "dm-", "md", "loop", "nbd", "mmcblk", "sg",
    "disk/", "mapper/", "zvol/", "block/",
];
/// Stop checking pairs of overlapping port ranges after this many comparisons (pathological documents only).
const PORT_COMPARISON_BUDGET: usize = 4_000_000;
/// Most entries `published_ports` lists (ranges expand to one entry per port).
const MAX_PUBLISHED_PORTS: usize = 10_000;

/// What judging needs besides the document.
pub struct Context<'a> {
    pub policy: &'a PolicyConfig,
    /// Host ports other apps use, with the app using each.
    pub used_ports: Option<&'a [(u16, String)]>,
    /// The connected NAS's release (major, minor); `None` when unknown.
    pub nas_version: Option<(u32, u32)>,
}

/// `include:` is refused everywhere, for the reason that holds on the NAS's release: before 26.0 TrueNAS does not
/// accept it at all; 26.0 does, but the included files are paths on the NAS that we cannot read, so nothing in them
/// could be judged (unknown release: both reasons).
fn include_finding(include: &Located<Vec<String>>, nas_version: Option<(u32, u32)>) -> Finding {
    let files = if include.value.is_empty() {
        "files".to_string()
    } else {
        include.value.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
    };
    let unreadable = format!(
        "{files} live on the NAS, where truenas-mcp cannot read them, so the services in them cannot be judged"
    );
    let message = match nas_version {
        Some(v) if v >= (26, 0) => format!("`include:` pulls in {unreadable}"),
        Some((major, minor)) => {
            format!("TrueNAS {major}.{minor:02} does not support `include:`; 26.0 does (this one pulls in {files})")
        }
        None => format!(
            "`include:` needs TrueNAS 26.0 (earlier releases do not support it), and even there the included {unreadable}"
        ),
    };
    rules::INCLUDE_UNSUPPORTED.at(None, &include.path, message, "inline the included services into this file")
}

/// Judge every rule on `project`; findings carry catalogue severities (call [`apply_level`] afterwards).
pub fn judge(project: &Project, cx: &Context<'_>, published: &mut Vec<PublishedPort>) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(name) = &project.name {
        out.push(rules::TOP_LEVEL_NAME.at(
            None,
            &name.path,
            format!("`name: {}` is ignored: TrueNAS always names the project `ix-<app name>`", name.value),
            "remove `name:`; the app name you deploy with is what TrueNAS uses",
        ));
    }
    if let Some(include) = &project.include {
        out.push(include_finding(include, cx.nas_version));
    }
    let backings: BTreeMap<&str, VolumeBacking> =
        project.volumes.iter().map(|(name, def, path)| (name.as_str(), volume_backing(name, def, path))).collect();
    let mut used_volumes = BTreeSet::new();
    for service in &project.services {
        judge_service(project, service, cx, &backings, &mut used_volumes, &mut out);
    }
    for (name, _, path) in &project.volumes {
        if used_volumes.contains(name.as_str()) {
            continue;
        }
        match backings.get(name.as_str()) {
            Some(VolumeBacking::HostBind { device, path: at }) => {
                let what = format!("named volume `{name}` (declared at {at})");
                judge_host_path(device, false, None, path, &what, cx.policy, &mut out);
            }
            Some(VolumeBacking::RelativeBind { device, .. }) => out.push(relative(None, path, device, "named volume")),
            // Unused, it is still mounted if a later update uses it; judge it where it is declared.
            Some(
                backing @ (VolumeBacking::HostMount { path: at, .. } | VolumeBacking::NetworkMount { path: at, .. }),
            ) => out.extend(mount_finding(None, at, name, backing)),
            _ => {}
        }
    }
    for (name, def, path) in &project.networks {
        judge_network(name, def, path, &mut out);
    }
    for file in &project.files {
        if file.value.starts_with('/') {
            judge_host_path(&file.value, true, None, &file.path, "file", cx.policy, &mut out);
        } else {
            out.push(relative(None, &file.path, &file.value, "file"));
        }
    }
    judge_ports(project, cx, &mut out, published);
    out
}

fn judge_service(
    project: &Project,
    s: &Service,
    cx: &Context<'_>,
    backings: &BTreeMap<&str, VolumeBacking>,
    used_volumes: &mut BTreeSet<String>,
    out: &mut Vec<Finding>,
) {
    judge_image(project, s, out);
    judge_isolation(s, out);
    judge_joins(project, s, out);
    judge_storage(s, cx, backings, used_volumes, out);
    judge_process(s, cx, out);
}

/// `image`, `build`, `extends.file`.
fn judge_image(project: &Project, s: &Service, out: &mut Vec<Finding>) {
    let svc = Some(s.name.as_str());
    let name = &s.name;

    match effective_image(project, s, 0) {
        // An image inherited through `extends` is judged on the service that names it.
        Some(image) if s.image.is_some() => {
            if !image_is_pinned(&image.value) {
                out.push(rules::IMAGE_UNPINNED.at(
                    svc,
                    &image.path,
                    format!("image `{}` has no tag or uses `latest`; redeploys may change what runs", image.value),
                    format!("pin a version, e.g. `{}:<version>` or a digest", image_name_without_tag(&image.value)),
                ));
            }
        }
        Some(_) => {}
        None => out.push(rules::IMAGE_MISSING.at(
            svc,
            &s.path,
            format!("service `{name}` has no `image`"),
            "add `image: <registry>/<name>:<tag>`; TrueNAS cannot build images for a custom app",
        )),
    }
    if let Some(path) = &s.build {
        out.push(rules::BUILD_UNSUPPORTED.at(
            svc,
            path,
            format!("service `{name}` uses `build:`, but a custom app has no build context on TrueNAS"),
            "build and push the image to a registry, then reference it with `image:`",
        ));
    }
    if let Some(file) = s.extends.as_ref().and_then(|e| e.file.as_ref()) {
        out.push(rules::INCLUDE_UNSUPPORTED.at(
            svc,
            &file.path,
            format!("`extends.file: {}` refers to another file, which does not travel with a custom app", file.value),
            "copy the base service into this document and extend it by name",
        ));
    }
}

/// What separates the container from the NAS: privileges, capabilities, namespaces, security profiles, network.
fn judge_isolation(s: &Service, out: &mut Vec<Finding>) {
    let svc = Some(s.name.as_str());
    let name = &s.name;
    if let Some(p) = &s.privileged {
        if p.value {
            out.push(rules::PRIVILEGED.at(
                svc,
                &p.path,
                format!(
                    "service `{name}` runs privileged: it gets every capability and every device, i.e. root on the NAS"
                ),
                "remove `privileged`; add only the capabilities (`cap_add`) and devices (`devices`) it needs",
            ));
        }
    }
    for cap in &s.cap_add {
        let upper = cap.value.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        if DANGEROUS_CAPS.contains(&bare) {
            out.push(rules::CAP_ADD_DANGEROUS.at(
                svc,
                &cap.path,
                format!("`cap_add: {}` gives the container root-equivalent power over the NAS", cap.value),
                "remove it; if the image documents a narrower capability, add only that",
            ));
        } else if HOST_CAPS.contains(&bare) {
            out.push(rules::CAP_ADD_HOST.at(
                svc,
                &cap.path,
                format!(
                    "`cap_add: {}` acts on the NAS itself, not only on the container ({})",
                    cap.value,
                    host_cap_effect(bare)
                ),
                "remove it unless the service's documentation requires it",
            ));
        } else if NETWORK_CAPS.contains(&bare) {
            out.push(rules::CAP_ADD_NETWORK.at(
                svc,
                &cap.path,
                format!(
                    "`cap_add: {}` lets the container reconfigure its network (normal for VPN containers)",
                    cap.value
                ),
                "keep it only if the service is a VPN or network tool that needs it",
            ));
        }
    }
    for ns in &s.namespaces {
        let (key, value) = &ns.value;
        if !value.trim().eq_ignore_ascii_case("host") {
            continue;
        }
        let mut f = rules::HOST_NAMESPACE.at(
            svc,
            &ns.path,
            format!("`{key}: host` shares the NAS's {} namespace with the container", namespace_label(key)),
            format!("remove `{key}: host`"),
        );
        if *key == "uts" {
            f.severity = Severity::Warning;
            f.message = "`uts: host` lets the container see and set the NAS's hostname".to_string();
        }
        out.push(f);
    }
    for opt in &s.security_opt {
        if let Some(what) = unconfined_security_opt(&opt.value) {
            out.push(rules::SECURITY_OPT_UNCONFINED.at(
                svc,
                &opt.path,
                format!("`security_opt: {}` turns off {what}", opt.value),
                "remove it; the default profiles work for almost every image",
            ));
        } else if let Some(file) = seccomp_profile_file(&opt.value) {
            out.push(rules::SECCOMP_PROFILE.at(
                svc,
                &opt.path,
                format!(
                    "`security_opt: {}` loads the seccomp profile `{file}`, which can allow every system call \
                     (unconfined under another name) and is not checked here",
                    opt.value
                ),
                "remove it; Docker's default profile works for almost every image",
            ));
        }
    }
    if let Some(mode) = &s.network_mode {
        if mode.value.trim().eq_ignore_ascii_case("host") {
            out.push(rules::NETWORK_MODE_HOST.at(
                svc,
                &mode.path,
                "`network_mode: host` puts the container on the NAS's network stack: it can bind any port and `ports:` is ignored",
                "publish the ports it needs with `ports:` instead",
            ));
        }
    }
}

/// Namespaces and volumes joined from other containers. A service of the same document (`service:<name>`, a bare
/// `volumes_from` name) is part of the app and judged itself; a container outside the app (`container:<x>`, or a
/// `volumes_from` name that is no service here, which Compose reads as a container) belongs to another app or to
/// the NAS, and joining it reaches whatever that container can.
fn judge_joins(project: &Project, s: &Service, out: &mut Vec<Finding>) {
    let svc = Some(s.name.as_str());
    let joined = |key: &str, value: &str| -> Option<String> {
        let target = value.trim().strip_prefix("container:")?;
        Some(format!("`{key}: {value}` joins container `{target}`, which is not part of this app"))
    };
    let mut found: Vec<(String, &str)> = Vec::new();
    if let Some(mode) = &s.network_mode {
        found.extend(joined("network_mode", &mode.value).map(|m| (m, mode.path.as_str())));
    }
    for ns in &s.namespaces {
        let (key, value) = &ns.value;
        if matches!(*key, "pid" | "ipc") {
            found.extend(joined(key, value).map(|m| (m, ns.path.as_str())));
        }
    }
    for entry in &s.volumes_from {
        let value = entry.value.trim();
        let message = match value.strip_prefix("container:") {
            Some(rest) => format!(
                "`volumes_from: {value}` mounts every volume of container `{}`, which is not part of this app",
                rest.split(':').next().unwrap_or_default()
            ),
            None => {
                let service = value.split(':').next().unwrap_or_default();
                if project.services.iter().any(|other| other.name == service) {
                    continue;
                }
                format!(
                    "`volumes_from: {value}` names no service of this app, so it would mount the volumes of a \
                     container `{service}` outside it"
                )
            }
        };
        found.push((message, entry.path.as_str()));
    }
    for (message, path) in found {
        out.push(rules::JOINS_OTHER_CONTAINER.at(
            svc,
            path,
            message,
            "share only with services of this document (`service:<name>`), or give the app its own volumes",
        ));
    }
}

/// What the container can reach on the NAS's disks and devices.
fn judge_storage(
    s: &Service,
    cx: &Context<'_>,
    backings: &BTreeMap<&str, VolumeBacking>,
    used_volumes: &mut BTreeSet<String>,
    out: &mut Vec<Finding>,
) {
    let svc = Some(s.name.as_str());
    for m in &s.mounts {
        let mount = &m.value;
        match &mount.source {
            MountSource::Host(path) => {
                let what = if mount.from_home { "bind (`~` is /root on TrueNAS)" } else { "bind" };
                judge_host_path(path, mount.read_only, svc, &m.path, what, cx.policy, out);
            }
            MountSource::Relative(path) => out.push(relative(svc, &m.path, path, "bind")),
            MountSource::Volume(volume) => {
                used_volumes.insert(volume.clone());
                match backings.get(volume.as_str()) {
                    None => out.push(rules::UNDECLARED_VOLUME.at(
                        svc,
                        &m.path,
                        format!("named volume `{volume}` is not declared under top-level `volumes:`"),
                        format!(
                            "declare it (`volumes: {{{volume}: {{}}}}`), or use an absolute host path such as /mnt/<pool>/{volume}"
                        ),
                    )),
                    Some(VolumeBacking::HostBind { device, path }) => {
                        let what = format!("named volume `{volume}` (a bind declared at {path})");
                        judge_host_path(device, mount.read_only, svc, &m.path, &what, cx.policy, out);
                    }
                    Some(VolumeBacking::RelativeBind { device, .. }) => {
                        out.push(relative(svc, &m.path, device, &format!("named volume `{volume}`")))
                    }
                    Some(VolumeBacking::Managed) => {}
                    Some(backing) => out.extend(mount_finding(svc, &m.path, volume, backing)),
                }
            }
            MountSource::None => {}
        }
    }
    for device in &s.devices {
        judge_device(svc, device, out);
    }
    for rule in &s.device_cgroup_rules {
        let kind = rule.value.trim().chars().next().unwrap_or('c').to_ascii_lowercase();
        if kind == 'a' || kind == 'b' {
            out.push(rules::DEVICES_DANGEROUS.at(
                svc,
                &rule.path,
                format!(
                    "`device_cgroup_rules: {}` lets the container open {} devices",
                    rule.value,
                    if kind == 'a' { "all" } else { "block (disk)" }
                ),
                "remove it, or narrow it to the character device the service needs",
            ));
        } else {
            out.push(rules::DEVICES.at(
                svc,
                &rule.path,
                format!("`device_cgroup_rules: {}` lets the container open host devices", rule.value),
                "keep it only if the service needs those devices",
            ));
        }
    }
}

/// How the process runs: user, environment, limits, naming.
fn judge_process(s: &Service, cx: &Context<'_>, out: &mut Vec<Finding>) {
    let svc = Some(s.name.as_str());
    let name = &s.name;
    if let Some(user) = &s.user {
        let who = user.value.trim().split(':').next().unwrap_or_default().trim().to_string();
        if who == "root" || who == "0" {
            out.push(rules::USER_ROOT.at(
                svc,
                &user.path,
                format!("`user: {}` runs the service as root", user.value),
                "run as an unprivileged user, e.g. `user: \"568:568\"` (the TrueNAS `apps` user)",
            ));
        }
    }
    for env_file in &s.env_files {
        if env_file.value.starts_with('/') {
            judge_host_path(&env_file.value, true, svc, &env_file.path, "env_file", cx.policy, out);
        } else {
            out.push(rules::ENV_FILE_UNSUPPORTED.at(
                svc,
                &env_file.path,
                format!("`env_file: {}` is relative, and no files travel with a custom app", env_file.value),
                "put the variables under `environment:` (and values in the env argument), or use an absolute path on the NAS",
            ));
        }
    }
    for var in &s.environment {
        if super::secrets::is_secret_name(&var.name) && var.value.as_deref().is_some_and(|v| !v.is_empty()) {
            out.push(rules::PLAINTEXT_SECRET.at(
                svc,
                &var.path,
                format!(
                    "`{}` holds a literal value: TrueNAS stores it in clear text and returns it from app.config",
                    var.name
                ),
                format!("if the image supports it, use `{}_FILE` pointing at a file under /mnt instead", var.name),
            ));
        }
    }
    if !s.has_limits {
        out.push(rules::NO_RESOURCE_LIMITS.at(
            svc,
            &s.path,
            format!("service `{name}` has no memory or CPU limit; a runaway container can starve the NAS"),
            "add `deploy: {resources: {limits: {memory: 1G, cpus: \"2\"}}}` (or `mem_limit` / `cpus`)",
        ));
    }
    if let Some(cn) = &s.container_name {
        out.push(rules::CONTAINER_NAME.at(
            svc,
            &cn.path,
            format!("`container_name: {}` is global on the NAS and collides across apps and redeploys", cn.value),
            "remove `container_name`; TrueNAS names containers `ix-<app>-<service>-<n>`",
        ));
    }
}

fn namespace_label(key: &str) -> &'static str {
    match key {
        "pid" => "process",
        "ipc" => "IPC",
        "uts" => "hostname",
        "userns_mode" => "user",
        _ => "cgroup",
    }
}

/// Follow `image` through same-file `extends` (bounded).
fn effective_image(project: &Project, s: &Service, depth: usize) -> Option<Located<String>> {
    if let Some(image) = &s.image {
        return (!image.value.trim().is_empty()).then(|| image.clone());
    }
    let extends = s.extends.as_ref()?;
    if extends.file.is_some() || depth > 8 {
        return None;
    }
    let base_name = extends.service.as_deref()?;
    let base = project.services.iter().find(|b| b.name == base_name)?;
    effective_image(project, base, depth + 1)
}

fn image_name_without_tag(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    let slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[slash..].rfind(':') {
        Some(colon) => &image[..slash + colon],
        None => image,
    }
}

fn image_is_pinned(image: &str) -> bool {
    if image.contains('@') {
        return true;
    }
    let name = image_name_without_tag(image);
    let tag = image.get(name.len() + 1..).unwrap_or("");
    !tag.is_empty() && !tag.eq_ignore_ascii_case("latest")
}

/// What an unconfining `security_opt` turns off, if it is one.
fn unconfined_security_opt(opt: &str) -> Option<&'static str> {
    let compact: String = opt.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
    let split = compact.find([':', '=']).unwrap_or(compact.len());
    let (key, value) = (&compact[..split], compact.get(split + 1..).unwrap_or(""));
    match (key, value) {
        ("seccomp", "unconfined") => Some("seccomp system-call filtering"),
        ("apparmor", "unconfined") => Some("AppArmor confinement"),
        ("label", "disable") => Some("SELinux labelling"),
        ("label", v) if v.contains("spc_t") => Some("SELinux confinement (super-privileged container type)"),
        ("systempaths", "unconfined") => Some("the masking of /proc and /sys"),
        _ => None,
    }
}

fn relative(service: Option<&str>, path: &str, source: &str, what: &str) -> Finding {
    rules::RELATIVE_HOST_PATH.at(
        service,
        path,
        format!(
            "{what} source `{source}` is relative: a custom app has no project directory, so it would land inside \
             TrueNAS's app store (/mnt/.ix-apps) and be deleted with the app"
        ),
        "use an absolute path on a dataset, e.g. /mnt/<pool>/<dataset>/…",
    )
}

/// The finding for a named volume that mounts something of the NAS, another app's volume or a network share.
fn mount_finding(service: Option<&str>, at: &str, volume: &str, backing: &VolumeBacking) -> Option<Finding> {
    Some(match backing {
        VolumeBacking::HostMount { detail, path } => rules::VOLUME_HOST_MOUNT.at(
            service,
            at,
            format!(
                "named volume `{volume}` is {detail} (declared at {path}): the NAS mounts it as root and the \
                 container gets the NAS's own disk or files"
            ),
            "remove the `driver_opts`; bind a dataset under /mnt/<pool>/… instead",
        ),
        VolumeBacking::NetworkMount { detail, path } => rules::VOLUME_NETWORK_MOUNT.at(
            service,
            at,
            format!("named volume `{volume}` is {detail} (declared at {path}), mounted by the NAS as root"),
            "keep it only if the share is on another machine you trust",
        ),
        VolumeBacking::External { name, path } => rules::EXTERNAL_VOLUME.at(
            service,
            at,
            format!(
                "named volume `{volume}` is the existing volume `{name}` ({path}): it belongs to another app or to \
                 the NAS, and the container could read or change its data"
            ),
            "let the app own its volume (drop `external` and `name`), or bind a dataset under /mnt/<pool>/…",
        ),
        _ => return None,
    })
}

/// The file a `security_opt` loads a seccomp profile from, if it does.
fn seccomp_profile_file(opt: &str) -> Option<String> {
    let trimmed = opt.trim();
    let split = trimmed.find([':', '='])?;
    let (key, value) = (trimmed[..split].trim(), trimmed[split + 1..].trim());
    let builtin = value.eq_ignore_ascii_case("unconfined") || value.eq_ignore_ascii_case("builtin");
    (key.eq_ignore_ascii_case("seccomp") && !builtin).then(|| value.to_string())
}

fn host_cap_effect(cap: &str) -> &'static str {
    match cap {
        "SYS_TIME" => "it sets the NAS's clock, which breaks TLS, Kerberos/AD and ZFS snapshot schedules",
        "SYSLOG" => "it reads and clears the NAS's kernel log",
        "SYS_NICE" | "SYS_RESOURCE" | "IPC_LOCK" => "it can take CPU or memory from the NAS beyond normal limits",
        "LINUX_IMMUTABLE" => "it sets immutable flags on files of bound datasets",
        "WAKE_ALARM" | "BLOCK_SUSPEND" => "it controls the NAS's power state",
        "AUDIT_CONTROL" | "AUDIT_READ" => "it changes or reads the NAS's audit system",
        "SYS_PACCT" => "it switches process accounting of the whole NAS",
        "SYS_TTY_CONFIG" => "it reconfigures the NAS's terminals",
        _ => "it observes the NAS's kernel and every process",
    }
}

fn under(path: &str, root: &str) -> bool {
    root == "/" || path == root || path.strip_prefix(root).is_some_and(|rest| rest.starts_with('/'))
}

/// The sensitive path `path` equals, lies below, or contains.
fn sensitive_match(path: &str) -> Option<(String, bool)> {
    if path == "/" {
        return Some(("/".to_string(), false));
    }
    let first = path[1..].split('/').next().unwrap_or_default();
    if first.starts_with("lib") {
        return Some((format!("/{first}"), false));
    }
    for s in SENSITIVE_PATHS {
        if under(path, s) {
            return Some((s.to_string(), false));
        }
    }
    for s in SENSITIVE_PATHS {
        if under(s, path) {
            return Some((s.to_string(), true));
        }
    }
    None
}

/// Judge one host path the container would see: socket, system path, or outside the allowed roots.
fn judge_host_path(
    raw: &str,
    read_only: bool,
    service: Option<&str>,
    at: &str,
    what: &str,
    policy: &PolicyConfig,
    out: &mut Vec<Finding>,
) {
    let path = normalize_path(raw);
    let shown = if path == raw { format!("`{raw}`") } else { format!("`{raw}` (= {path})") };
    let file_name = path.rsplit('/').next().unwrap_or_default();
    if ENGINE_SOCKETS.contains(&file_name) {
        out.push(rules::DOCKER_SOCKET.at(
            service,
            at,
            format!("{what} of {shown} hands the container the container engine, i.e. root on the NAS (read-only does not help)"),
            "remove it; a reverse proxy can use static configuration or labels read by a proxy outside the app",
        ));
        return;
    }
    if read_only && READ_ONLY_EXCEPTIONS.contains(&path.as_str()) {
        return;
    }
    if HARMLESS_DEVICE_FILES.contains(&path.as_str()) {
        return;
    }
    if let Some((system, contains)) = sensitive_match(&path) {
        let relation = if contains {
            format!("contains the system path {system}")
        } else if system == path {
            "is a system path".to_string()
        } else {
            format!("lies inside the system path {system}")
        };
        out.push(rules::SENSITIVE_HOST_PATH.at(
            service,
            at,
            format!("{what} of {shown} {relation}; the container could read or change the NAS itself"),
            "bind a dataset instead, e.g. /mnt/<pool>/<app>/…; for the time zone use `/etc/localtime:/etc/localtime:ro` or `TZ`",
        ));
        return;
    }
    // Roots come normalised from the config; normalise again for policies built in code.
    if !policy.allowed_host_paths.iter().any(|root| under(&path, &normalize_path(root))) {
        out.push(rules::HOST_PATH_OUTSIDE_ROOTS.at(
            service,
            at,
            format!("{what} of {shown} is outside the allowed host paths ({})", policy.allowed_host_paths.join(", ")),
            format!("move the data under {}", policy.allowed_host_paths.first().map(String::as_str).unwrap_or("/mnt")),
        ));
    }
}

fn judge_device(service: Option<&str>, device: &Located<String>, out: &mut Vec<Finding>) {
    let raw = device.value.trim();
    if !raw.starts_with('/') {
        out.push(rules::DEVICES.at(
            service,
            &device.path,
            format!("device `{raw}` is passed to the container"),
            "keep it only if the service needs the device",
        ));
        return;
    }
    let path = normalize_path(raw);
    let below_dev = path.strip_prefix("/dev/");
    let dangerous = match below_dev {
        None => true,
        Some(name) => DANGEROUS_DEVICE_PREFIXES.iter().any(|p| name.starts_with(p)),
    };
    if dangerous {
        out.push(rules::DEVICES_DANGEROUS.at(
            service,
            &device.path,
            format!("device `{raw}` gives the container raw access to disks, memory or ZFS on the NAS"),
            "remove it; give the container a dataset under /mnt instead of a disk",
        ));
    } else {
        out.push(rules::DEVICES.at(
            service,
            &device.path,
            format!("device `{raw}` is passed to the container (fine for e.g. /dev/dri GPU transcoding)"),
            "keep it only if the service needs the device",
        ));
    }
}

fn judge_network(name: &str, def: &Value, path: &str, out: &mut Vec<Finding>) {
    let Some(def) = def.as_mapping() else { return };
    let external = def.get("external");
    let is_external = match external {
        Some(Value::Mapping(_)) => true,
        Some(v) => flag(v),
        None => false,
    };
    if !is_external {
        return;
    }
    let real_name = def
        .get("name")
        .and_then(scalar_text)
        .or_else(|| external.and_then(|e| e.get("name")).and_then(scalar_text))
        .unwrap_or_else(|| name.to_string());
    if real_name == "host" {
        out.push(rules::NETWORK_MODE_HOST.at(
            None,
            path,
            format!("network `{name}` is the NAS's host network: its services can bind any port"),
            "use the default network and publish ports with `ports:`",
        ));
    } else {
        out.push(rules::EXTERNAL_NETWORK.at(
            None,
            path,
            format!("network `{real_name}` is external: it must already exist on the NAS or the deploy fails"),
            format!("create it first (`docker network create {real_name}`) or drop `external` to let the app own it"),
        ));
    }
}

fn judge_ports(project: &Project, cx: &Context<'_>, out: &mut Vec<Finding>, published: &mut Vec<PublishedPort>) {
    let reserved = &cx.policy.reserved_ports;
    let taken = TakenPorts::new(project, cx);
    let mut bound: Vec<(&Service, &Located<PortBinding>)> = Vec::new();
    for s in &project.services {
        let svc = Some(s.name.as_str());
        for binding in &s.ports {
            let b = &binding.value;
            let Some((lo, hi)) = b.host else { continue };
            bound.push((s, binding));
            for port in lo..=hi {
                if published.len() >= MAX_PUBLISHED_PORTS {
                    break;
                }
                published.push(PublishedPort {
                    service: s.name.clone(),
                    host_ip: b.host_ip.clone(),
                    host_port: port,
                    container_port: b.container_port_for(port),
                    protocol: b.protocol.clone(),
                });
            }
            let hits: Vec<u16> = reserved.iter().copied().filter(|p| (lo..=hi).contains(p)).collect();
            if !hits.is_empty() {
                out.push(rules::PORT_RESERVED.at(
                    svc,
                    &binding.path,
                    format!("host port {} is served by the NAS itself ({})", list(&hits), b.describe()),
                    taken.fix(b),
                ));
            } else if lo < 1024 {
                out.push(rules::PORT_PRIVILEGED.at(
                    svc,
                    &binding.path,
                    format!("host port {lo} is below 1024 ({})", b.describe()),
                    "prefer a host port above 1024 unless clients expect the standard port",
                ));
            }
            if let Some(used) = cx.used_ports {
                let owners: Vec<&(u16, String)> = used.iter().filter(|(p, _)| (lo..=hi).contains(p)).collect();
                if !owners.is_empty() {
                    out.push(rules::PORT_CONFLICT.at(svc, &binding.path, used_by(&owners), taken.fix(b)));
                }
            }
        }
    }
    // Sweep bindings sorted by (protocol, first port): only neighbours whose ranges start before this one ends can
    // collide.
    bound.sort_by(|a, b| {
        (a.1.value.protocol.as_str(), a.1.value.host).cmp(&(b.1.value.protocol.as_str(), b.1.value.host))
    });
    let mut budget = PORT_COMPARISON_BUDGET;
    'outer: for i in 0..bound.len() {
        let (first_service, first) = bound[i];
        let Some((_, first_hi)) = first.value.host else { continue };
        for &(second_service, second) in &bound[i + 1..] {
            if budget == 0 {
                break 'outer;
            }
            budget -= 1;
            let Some((second_lo, _)) = second.value.host else { continue };
            if second.value.protocol != first.value.protocol || second_lo > first_hi {
                break;
            }
            if first.value.collides_with(&second.value) {
                out.push(rules::PORT_CONFLICT.at(
                    Some(&second_service.name),
                    &second.path,
                    format!(
                        "host port {} is also published by `{}` at {}",
                        second.value.describe(),
                        first_service.name,
                        first.path
                    ),
                    "publish each service on its own host port",
                ));
            }
        }
    }
}

fn list(ports: &[u16]) -> String {
    ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
}

/// `host port 8080 is already used by app `a`, host ports 9000, 9001 by app `b``: each app once, in port order.
fn used_by(owners: &[&(u16, String)]) -> String {
    let mut by_app: Vec<(&str, Vec<u16>)> = Vec::new();
    let mut sorted = owners.to_vec();
    sorted.sort();
    sorted.dedup();
    for (port, app) in sorted {
        match by_app.iter_mut().find(|(a, _)| a == app) {
            Some((_, ports)) => ports.push(*port),
            None => by_app.push((app, vec![*port])),
        }
    }
    let phrase = |ports: &[u16]| match ports {
        [one] => format!("host port {one}"),
        many => format!("host ports {}", list(many)),
    };
    by_app
        .iter()
        .enumerate()
        .map(|(i, (app, ports))| match (i, ports.len()) {
            (0, 1) => format!("{} is already used by app `{app}`", phrase(ports)),
            (0, _) => format!("{} are already used by app `{app}`", phrase(ports)),
            _ => format!("{} by app `{app}`", phrase(ports)),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Host ports a suggested fix must avoid: reserved by the NAS, used by other apps, or published anywhere in this
/// document (any protocol, any address: a suggestion should not need a second look). Sorted, disjoint ranges.
struct TakenPorts(Vec<(u16, u16)>);

impl TakenPorts {
    fn new(project: &Project, cx: &Context<'_>) -> TakenPorts {
        let mut ranges: Vec<(u16, u16)> = cx.policy.reserved_ports.iter().map(|p| (*p, *p)).collect();
        ranges.extend(cx.used_ports.unwrap_or_default().iter().map(|(p, _)| (*p, *p)));
        ranges.extend(project.services.iter().flat_map(|s| s.ports.iter().filter_map(|b| b.value.host)));
        ranges.sort_unstable();
        let mut merged: Vec<(u16, u16)> = Vec::new();
        for (lo, hi) in ranges {
            match merged.last_mut() {
                Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                _ => merged.push((lo, hi)),
            }
        }
        TakenPorts(merged)
    }

    /// The first free run of `len + 1` ports from `start` up, jumping over taken ranges; `None` past 65535.
    fn free_from(&self, start: u16, len: u16) -> Option<u16> {
        let mut lo = start;
        loop {
            let hi = lo.checked_add(len)?;
            // The first range that ends at or after `lo`; the run is free unless it also starts by `hi`.
            let i = self.0.partition_point(|(_, b)| *b < lo);
            match self.0.get(i) {
                Some((a, b)) if *a <= hi => lo = b.checked_add(1)?,
                _ => return Some(lo),
            }
        }
    }

    /// "publish on a free host port, e.g. `8443:443`": the binding moved to a free host port (above 1024: the
    /// privileged ones plus 8000 keep a recognisable number, 443 → 8443), with its address, container port and
    /// protocol kept.
    fn fix(&self, b: &PortBinding) -> String {
        let Some((lo, hi)) = b.host else { return "publish on a free host port".into() };
        let len = hi - lo;
        let start = if lo < 1024 { lo + 8000 } else { lo.saturating_add(1) };
        let Some(new_lo) = self.free_from(start, len).or_else(|| self.free_from(1024, len)) else {
            return "publish on a free host port".into();
        };
        let host = if len == 0 { new_lo.to_string() } else { format!("{new_lo}-{}", new_lo + len) };
        let container = match b.container {
            (c, d) if c == d => c.to_string(),
            (c, d) => format!("{c}-{d}"),
        };
        let address = match &b.host_ip {
            Some(ip) if ip.contains(':') => format!("[{ip}]:"),
            Some(ip) => format!("{ip}:"),
            None => String::new(),
        };
        let protocol = if b.protocol == "tcp" { String::new() } else { format!("/{}", b.protocol) };
        format!("publish on a free host port, e.g. `{address}{host}:{container}{protocol}`")
    }
}

/// Rules the operator cannot allow: a document we could not read completely was not judged completely.
const NOT_ALLOWABLE: &[&str] = &[
    "yaml-invalid",
    "not-a-mapping",
    "no-services",
    "service-not-a-mapping",
    "field-invalid",
    "too-large",
    "app-name-invalid",
    // Real Compose refuses these documents (the NAS itself since 25.10.1): allowing them only moves the failure.
    "compose-schema",
    "undefined-reference",
    "dependency-cycle",
];
const STRICT_TO_ERROR: &[&str] = &[
    "no-resource-limits",
    "cap-add-host",
    "volume-network-mount",
    "cap-add-network",
    "network-mode-host",
    "devices",
    "host-namespace",
];
const STRICT_TO_WARNING: &[&str] = &["user-root", "image-unpinned", "plaintext-secret"];
const PERMISSIVE_TO_INFO: &[&str] = &[
    "no-resource-limits",
    "cap-add-network",
    "network-mode-host",
    "devices",
    "host-namespace",
    "port-privileged",
    "container-name",
    "external-network",
];
const PERMISSIVE_TO_WARNING: &[&str] = &["unresolved-variable", "host-path-outside-roots", "external-volume"];

/// Apply the operator's level and allow-list to findings that carry catalogue severities.
pub fn apply_level(findings: &mut [Finding], policy: &PolicyConfig) {
    for f in findings.iter_mut() {
        adjust(f, policy);
    }
}

/// Apply the operator's level and allow-list to one finding.
pub fn adjust(f: &mut Finding, policy: &PolicyConfig) {
    if policy.allow_rules.iter().any(|r| r.trim().eq_ignore_ascii_case(f.rule)) && !NOT_ALLOWABLE.contains(&f.rule) {
        if f.severity != Severity::Info {
            f.severity = Severity::Info;
            f.message.push_str(" (allowed by the operator: TRUENAS_COMPOSE_ALLOW)");
        }
        return;
    }
    let id = f.rule;
    f.severity = match (policy.level, f.severity) {
        (PolicyLevel::Strict, Severity::Warning) if STRICT_TO_ERROR.contains(&id) => Severity::Error,
        (PolicyLevel::Strict, Severity::Info) if STRICT_TO_WARNING.contains(&id) => Severity::Warning,
        (PolicyLevel::Permissive, Severity::Warning) if PERMISSIVE_TO_INFO.contains(&id) => Severity::Info,
        (PolicyLevel::Permissive, Severity::Error) if PERMISSIVE_TO_WARNING.contains(&id) => Severity::Warning,
        (_, s) => s,
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images() {
        for pinned in ["nginx:1.25", "ghcr.io/a/b:v1", "localhost:5000/x:2", "x@sha256:abc", "nginx:1.25@sha256:abc"] {
            assert!(image_is_pinned(pinned), "{pinned}");
        }
        for unpinned in ["nginx", "nginx:latest", "localhost:5000/x", "ghcr.io/a/b:LATEST", "x:"] {
            assert!(!image_is_pinned(unpinned), "{unpinned}");
        }
    }

    #[test]
    fn security_opts() {
        for bad in [
            "seccomp:unconfined",
            "seccomp=unconfined",
            "apparmor:unconfined",
            "apparmor = Unconfined",
            "label:disable",
            "label=type:spc_t",
            "systempaths=unconfined",
        ] {
            assert!(unconfined_security_opt(bad).is_some(), "{bad}");
        }
        for fine in ["no-new-privileges:true", "seccomp:/mnt/p.json", "label:user:x", "apparmor:docker-default"] {
            assert!(unconfined_security_opt(fine).is_none(), "{fine}");
        }
    }

    #[test]
    fn sensitive_paths_below_and_above() {
        let cases = [
            ("/", Some("/")),
            ("/etc", Some("/etc")),
            ("/etc/ssl", Some("/etc")),
            ("/lib64", Some("/lib64")),
            ("/var", Some("/var/run")),
            ("/mnt", Some("/mnt/.ix-apps")),
            ("/mnt/.ix-apps/app_configs", Some("/mnt/.ix-apps")),
            ("/mnt/tank", None),
            ("/etcetera", None),
            ("/srv", None),
            ("/var/log", None),
        ];
        for (path, want) in cases {
            assert_eq!(sensitive_match(path).map(|(s, _)| s), want.map(str::to_string), "{path}");
        }
    }
}
