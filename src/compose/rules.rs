//! The rule catalogue: every finding the compose engine can produce, with its stable id and default severity.
//!
//! Ids are part of the interface (operators list them in `TRUENAS_COMPOSE_ALLOW`, clients match on them); never
//! rename one. How the policy level changes a severity is decided in `policy.rs`.

use super::{Finding, Severity};

/// One rule of the catalogue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub id: &'static str,
    /// Severity at the `standard` level.
    pub severity: Severity,
    /// What the rule is about, one line (for docs and `--help`-style listings).
    pub summary: &'static str,
}

impl Rule {
    /// A finding of this rule at its default severity.
    pub fn at(
        &self,
        service: Option<&str>,
        path: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            rule: self.id,
            severity: self.severity,
            service: service.map(str::to_string),
            path: path.into(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

const fn rule(id: &'static str, severity: Severity, summary: &'static str) -> Rule {
    Rule { id, severity, summary }
}

use Severity::{Error, Info, Warning};

pub const YAML_INVALID: Rule = rule("yaml-invalid", Error, "the text is not one parseable YAML document");
pub const NOT_A_MAPPING: Rule = rule("not-a-mapping", Error, "the document is not a mapping");
pub const NO_SERVICES: Rule = rule("no-services", Error, "no `services:` mapping with at least one service");
pub const SERVICE_NOT_A_MAPPING: Rule = rule("service-not-a-mapping", Error, "a service is not a mapping");
pub const FIELD_INVALID: Rule = rule("field-invalid", Error, "a field has a shape Compose rejects");
pub const IMAGE_MISSING: Rule = rule("image-missing", Error, "a service with no `image`");
pub const BUILD_UNSUPPORTED: Rule = rule("build-unsupported", Error, "`build:` (TrueNAS has no build context)");
pub const INCLUDE_UNSUPPORTED: Rule =
    rule("include-unsupported", Error, "`include:` or `extends.file` (no other files travel with a custom app)");
pub const PRIVILEGED: Rule = rule("privileged", Error, "`privileged: true` in any spelling");
pub const CAP_ADD_DANGEROUS: Rule =
    rule("cap-add-dangerous", Error, "`cap_add` of ALL, SYS_ADMIN, SYS_MODULE and other root-equivalent capabilities");
pub const CAP_ADD_NETWORK: Rule = rule("cap-add-network", Warning, "`cap_add` of NET_ADMIN or NET_RAW");
pub const CAP_ADD_HOST: Rule =
    rule("cap-add-host", Warning, "`cap_add` of SYS_TIME and other capabilities that act on the NAS itself");
pub const HOST_NAMESPACE: Rule =
    rule("host-namespace", Error, "`pid`/`ipc`/`userns_mode`/`cgroup: host` (error), `uts: host` (warning)");
pub const SECURITY_OPT_UNCONFINED: Rule = rule(
    "security-opt-unconfined",
    Error,
    "`security_opt` seccomp/apparmor unconfined, label disable, systempaths unconfined",
);
pub const SECCOMP_PROFILE: Rule = rule(
    "seccomp-profile",
    Error,
    "`security_opt: seccomp=<file>` (a profile from a file can allow every system call)",
);
pub const JOINS_OTHER_CONTAINER: Rule = rule(
    "joins-other-container",
    Error,
    "`network_mode`/`pid`/`ipc: container:<x>` or `volumes_from` of a container outside the app",
);
pub const DOCKER_SOCKET: Rule = rule("docker-socket", Error, "a bind of `docker.sock` (root on the host)");
pub const SENSITIVE_HOST_PATH: Rule =
    rule("sensitive-host-path", Error, "a bind of a system path (`/`, `/etc`, `/dev`, `/mnt/.ix-apps`, …)");
pub const HOST_PATH_OUTSIDE_ROOTS: Rule =
    rule("host-path-outside-roots", Error, "a bind outside the allowed host-path roots (default `/mnt`)");
pub const RELATIVE_HOST_PATH: Rule =
    rule("relative-host-path", Error, "a relative bind source (`./data`): a custom app has no project directory");
pub const UNDECLARED_VOLUME: Rule =
    rule("undeclared-volume", Error, "a named volume not declared under top-level `volumes:`");
pub const VOLUME_HOST_MOUNT: Rule = rule(
    "volume-host-mount",
    Error,
    "a named volume whose `driver_opts` mount a disk, a ZFS dataset or another filesystem of the NAS",
);
pub const VOLUME_NETWORK_MOUNT: Rule =
    rule("volume-network-mount", Warning, "a named volume whose `driver_opts` mount a network share (NFS, CIFS)");
pub const EXTERNAL_VOLUME: Rule =
    rule("external-volume", Error, "an `external` volume, or one named `ix-…`: it belongs to another app or the host");
pub const DEVICES: Rule = rule("devices", Warning, "`devices:` mappings or `device_cgroup_rules`");
pub const DEVICES_DANGEROUS: Rule =
    rule("devices-dangerous", Error, "raw disks, memory or all devices (`/dev/sda`, `/dev/mem`, `/dev`, `a *:* rwm`)");
pub const NETWORK_MODE_HOST: Rule = rule("network-mode-host", Warning, "host networking (bypasses port isolation)");
pub const PORT_CONFLICT: Rule =
    rule("port-conflict", Error, "a host port published twice, or already used by another app on the NAS");
pub const PORT_RESERVED: Rule = rule("port-reserved", Error, "a host port the NAS itself serves");
pub const PORT_PRIVILEGED: Rule = rule("port-privileged", Warning, "another host port below 1024");
pub const NO_RESOURCE_LIMITS: Rule = rule("no-resource-limits", Warning, "no memory or CPU limit");
pub const USER_ROOT: Rule = rule("user-root", Info, "`user: root` / `0` / `0:0`");
pub const UNRESOLVED_VARIABLE: Rule =
    rule("unresolved-variable", Error, "`${VAR}` with no value and no default (TrueNAS has no `.env`)");
pub const REQUIRED_VARIABLE: Rule =
    rule("required-variable", Error, "`${VAR:?message}` / `${VAR?message}` with no value");
pub const INTERPOLATION_INVALID: Rule =
    rule("interpolation-invalid", Error, "a `${…}` Compose cannot interpolate (`${}`, `${1X}`, unclosed)");
pub const ENV_FILE_UNSUPPORTED: Rule =
    rule("env-file-unsupported", Error, "`env_file:` with a relative path (no files travel with a custom app)");
pub const EXTERNAL_NETWORK: Rule = rule("external-network", Warning, "an external network must already exist");
pub const CONTAINER_NAME: Rule = rule("container-name", Warning, "a fixed `container_name`");
pub const IMAGE_UNPINNED: Rule = rule("image-unpinned", Info, "an image with no tag or `:latest`");
pub const PLAINTEXT_SECRET: Rule =
    rule("plaintext-secret", Info, "a secret-looking environment variable with a literal value");
pub const TOP_LEVEL_NAME: Rule = rule("top-level-name", Info, "`name:` is ignored (TrueNAS names the project)");
pub const TOO_LARGE: Rule = rule("too-large", Error, "the document does not fit in one TrueNAS request (64 KiB)");
pub const APP_NAME_INVALID: Rule = rule("app-name-invalid", Error, "the app name is not a valid TrueNAS app name");
pub const COMPOSE_SCHEMA: Rule =
    rule("compose-schema", Error, "a field the Compose specification does not allow (unknown key, wrong type)");
pub const UNDEFINED_REFERENCE: Rule =
    rule("undefined-reference", Error, "a reference to a network, secret, config or service the file does not define");
pub const DEPENDENCY_CYCLE: Rule =
    rule("dependency-cycle", Error, "services that depend on each other in a cycle (`depends_on`, `links`, …)");
pub const PROJECT_NAME_ASSUMED: Rule =
    rule("project-name-assumed", Warning, "`COMPOSE_PROJECT_NAME` used while the app name is unknown");
pub const ENVIRONMENT_UNSET: Rule =
    rule("environment-unset", Warning, "a bare `environment:` entry (`KEY`) with no value in `env`");

/// Every rule, in the order documented.
pub const ALL: &[Rule] = &[
    YAML_INVALID,
    NOT_A_MAPPING,
    NO_SERVICES,
    SERVICE_NOT_A_MAPPING,
    FIELD_INVALID,
    IMAGE_MISSING,
    BUILD_UNSUPPORTED,
    INCLUDE_UNSUPPORTED,
    PRIVILEGED,
    CAP_ADD_DANGEROUS,
    CAP_ADD_NETWORK,
    CAP_ADD_HOST,
    HOST_NAMESPACE,
    SECURITY_OPT_UNCONFINED,
    SECCOMP_PROFILE,
    JOINS_OTHER_CONTAINER,
    DOCKER_SOCKET,
    SENSITIVE_HOST_PATH,
    HOST_PATH_OUTSIDE_ROOTS,
    RELATIVE_HOST_PATH,
    UNDECLARED_VOLUME,
    VOLUME_HOST_MOUNT,
    VOLUME_NETWORK_MOUNT,
    EXTERNAL_VOLUME,
    DEVICES,
    DEVICES_DANGEROUS,
    NETWORK_MODE_HOST,
    PORT_CONFLICT,
    PORT_RESERVED,
    PORT_PRIVILEGED,
    NO_RESOURCE_LIMITS,
    USER_ROOT,
    UNRESOLVED_VARIABLE,
    REQUIRED_VARIABLE,
    INTERPOLATION_INVALID,
    ENV_FILE_UNSUPPORTED,
    EXTERNAL_NETWORK,
    CONTAINER_NAME,
    IMAGE_UNPINNED,
    PLAINTEXT_SECRET,
    TOP_LEVEL_NAME,
    TOO_LARGE,
    APP_NAME_INVALID,
    COMPOSE_SCHEMA,
    UNDEFINED_REFERENCE,
    DEPENDENCY_CYCLE,
    PROJECT_NAME_ASSUMED,
    ENVIRONMENT_UNSET,
];

/// The catalogue entry for `id`.
pub fn find(id: &str) -> Option<&'static Rule> {
    ALL.iter().find(|r| r.id == id)
}

/// Check the rule ids an operator allows (`TRUENAS_COMPOSE_ALLOW`) against the catalogue: a typo must not silently
/// allow nothing. The CLI calls this at start-up; configuration sits below compose and keeps the ids as given.
pub fn check_allowed(ids: &[String]) -> Result<(), String> {
    match ids.iter().find(|id| find(&id.to_ascii_lowercase()).is_none()) {
        None => Ok(()),
        Some(id) => {
            let known: Vec<&str> = ALL.iter().map(|r| r.id).collect();
            Err(format!("TRUENAS_COMPOSE_ALLOW has an unknown rule id '{id}' (known: {})", known.join(", ")))
        }
    }
}
