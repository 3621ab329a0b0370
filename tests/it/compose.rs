//! Integration tests: compose (owned by the compose helper).
//!
//! One table per concern, each row a compose document and the rule ids it must produce (exactly those, sorted).
//! Most rows use `svc(...)`, a single pinned, memory-limited service, so only the rule under test fires.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;
use truenas_mcp::compose::{
    self, create_payload, mask_secrets, update_payload, validate, Report, Severity, ValidateInput, FRAME_LIMIT,
};
use truenas_mcp::config::{PolicyConfig, PolicyLevel};

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn run(yaml: &str, env: &BTreeMap<String, String>, policy: &PolicyConfig, used: Option<&[(u16, String)]>) -> Report {
    validate(&ValidateInput { yaml, env, used_ports: used, policy, derive_portals: false, nas_version: None })
}

fn ids(report: &Report) -> Vec<&'static str> {
    let mut ids: Vec<&str> = report.findings.iter().map(|f| f.rule).collect();
    ids.sort_unstable();
    ids
}

fn check(yaml: &str, expected: &[&str]) {
    check_with(yaml, &[], expected);
}

fn check_with(yaml: &str, vars: &[(&str, &str)], expected: &[&str]) {
    let report = run(yaml, &env(vars), &PolicyConfig::default(), None);
    let mut want = expected.to_vec();
    want.sort_unstable();
    assert_eq!(ids(&report), want, "\n--- document ---\n{yaml}\n--- findings ---\n{:#?}", report.findings);
}

/// One pinned, memory-limited service `web` with `body` (YAML lines at service level) added.
fn svc(body: &str) -> String {
    let mut doc = String::from("services:\n  web:\n    image: nginx:1.25\n    mem_limit: 512m\n");
    for line in body.lines() {
        doc.push_str("    ");
        doc.push_str(line);
        doc.push('\n');
    }
    doc
}

fn table(cases: &[(&str, String, &[&str])]) {
    for (name, yaml, expected) in cases {
        let report = run(yaml, &BTreeMap::new(), &PolicyConfig::default(), None);
        let mut want = expected.to_vec();
        want.sort_unstable();
        assert_eq!(ids(&report), want, "case `{name}`\n{yaml}\n{:#?}", report.findings);
    }
}

#[test]
fn a_clean_service_has_no_findings() {
    check(&svc(""), &[]);
}

#[test]
fn privileged_in_every_spelling() {
    let p = &["privileged"][..];
    table(&[
        ("bool", svc("privileged: true"), p),
        ("True", svc("privileged: True"), p),
        ("yes", svc("privileged: yes"), p),
        ("on", svc("privileged: on"), p),
        ("quoted true", svc("privileged: \"true\""), p),
        ("Y", svc("privileged: Y"), p),
        ("number", svc("privileged: 1"), &["compose-schema", "privileged"]),
        ("unknown spelling counts as true", svc("privileged: maybe"), p),
        (
            "merge key",
            "x-p: &p\n  privileged: true\nservices:\n  web:\n    <<: *p\n    image: nginx:1.25\n    mem_limit: 1g\n"
                .into(),
            p,
        ),
        (
            "merge key two anchors deep",
            "x-a: &a {privileged: on}\nx-b: &b {<<: *a, restart: always}\nservices:\n  web:\n    <<: *b\n    \
             image: nginx:1.25\n    mem_limit: 1g\n"
                .into(),
            p,
        ),
        (
            "merge list",
            "x-a: &a {restart: always}\nx-b: &b {privileged: yes}\nservices:\n  web:\n    <<: [*a, *b]\n    \
             image: nginx:1.25\n    mem_limit: 1g\n"
                .into(),
            p,
        ),
        ("false", svc("privileged: false"), &[]),
        ("no", svc("privileged: no"), &[]),
        ("off", svc("privileged: off"), &[]),
        ("quoted false", svc("privileged: 'false'"), &[]),
        ("commented out", svc("# privileged: true"), &[]),
        ("mentioned in a command", svc("command: [\"echo\", \"privileged: true\"]"), &[]),
    ]);
    check_with(&svc("privileged: ${PRIV}"), &[("PRIV", "true")], &["privileged"]);
    check_with(&svc("privileged: ${PRIV:-false}"), &[], &[]);
}

#[test]
fn capabilities() {
    table(&[
        ("ALL", svc("cap_add: [ALL]"), &["cap-add-dangerous"]),
        ("lower case", svc("cap_add: [sys_admin]"), &["cap-add-dangerous"]),
        ("CAP_ prefix", svc("cap_add: [CAP_SYS_MODULE]"), &["cap-add-dangerous"]),
        ("single string", svc("cap_add: SYS_PTRACE"), &["cap-add-dangerous", "compose-schema"]),
        (
            "block list",
            svc("cap_add:\n  - CHOWN\n  - DAC_READ_SEARCH\n  - bpf"),
            &["cap-add-dangerous", "cap-add-dangerous"],
        ),
        ("network", svc("cap_add: [NET_ADMIN, net_raw]"), &["cap-add-network", "cap-add-network"]),
        ("harmless", svc("cap_add: [CHOWN, SETUID, NET_BIND_SERVICE]"), &[]),
        ("dropping is fine", svc("cap_drop: [ALL]"), &[]),
    ]);
}

#[test]
fn namespaces_and_security_options() {
    table(&[
        ("pid", svc("pid: host"), &["host-namespace"]),
        ("ipc", svc("ipc: host"), &["host-namespace"]),
        ("userns", svc("userns_mode: host"), &["host-namespace"]),
        ("cgroup", svc("cgroup: host"), &["host-namespace"]),
        ("uts", svc("uts: host"), &["host-namespace"]),
        ("pid of a service", svc("pid: \"service:db\""), &[]),
        ("seccomp colon", svc("security_opt: [\"seccomp:unconfined\"]"), &["security-opt-unconfined"]),
        ("seccomp equals", svc("security_opt: [seccomp=unconfined]"), &["security-opt-unconfined"]),
        ("apparmor", svc("security_opt:\n  - apparmor:unconfined"), &["security-opt-unconfined"]),
        ("label", svc("security_opt: [\"label:disable\"]"), &["security-opt-unconfined"]),
        ("systempaths", svc("security_opt: [systempaths=unconfined]"), &["security-opt-unconfined"]),
        ("no-new-privileges", svc("security_opt: [\"no-new-privileges:true\"]"), &[]),
        ("network host", svc("network_mode: host"), &["network-mode-host"]),
        ("network of a service", svc("network_mode: \"service:vpn\""), &["undefined-reference"]),
    ]);
    let uts = run(&svc("uts: host"), &BTreeMap::new(), &PolicyConfig::default(), None);
    assert_eq!(uts.findings[0].severity, Severity::Warning);
    let pid = run(&svc("pid: host"), &BTreeMap::new(), &PolicyConfig::default(), None);
    assert_eq!(pid.findings[0].severity, Severity::Error);
}

#[test]
fn binds_in_every_volume_form() {
    let sensitive = &["sensitive-host-path"][..];
    let socket = &["docker-socket"][..];
    table(&[
        ("short", svc("volumes: [\"/etc:/host-etc\"]"), sensitive),
        ("short ro", svc("volumes: [\"/etc:/host-etc:ro\"]"), sensitive),
        ("long", svc("volumes:\n  - type: bind\n    source: /boot\n    target: /b"), sensitive),
        ("long read_only yes", svc("volumes:\n  - {type: bind, source: /proc, target: /p, read_only: yes}"), sensitive),
        (
            "long without type",
            svc("volumes:\n  - {source: /sys, target: /s}"),
            &["compose-schema", "sensitive-host-path"],
        ),
        ("root", svc("volumes: [\"/:/host\"]"), sensitive),
        ("below", svc("volumes: [\"/etc/ssl/private:/k:ro\"]"), sensitive),
        ("lib64", svc("volumes: [\"/lib64:/l:ro\"]"), sensitive),
        ("app store", svc("volumes: [\"/mnt/.ix-apps:/x\"]"), sensitive),
        ("all of /mnt contains the app store", svc("volumes: [\"/mnt:/mnt\"]"), sensitive),
        ("all of /var contains /var/run", svc("volumes: [\"/var:/v\"]"), sensitive),
        ("dot-dot", svc("volumes: [\"/mnt/tank/../../etc:/x\"]"), sensitive),
        ("double slash and trailing slash", svc("volumes: [\"//etc//:/x\"]"), sensitive),
        ("home", svc("volumes: [\"~/.ssh:/ssh\"]"), sensitive),
        ("localtime rw", svc("volumes: [\"/etc/localtime:/etc/localtime\"]"), sensitive),
        ("localtime ro", svc("volumes: [\"/etc/localtime:/etc/localtime:ro\"]"), &[]),
        (
            "timezone ro long",
            svc("volumes:\n  - {type: bind, source: /etc/timezone, target: /etc/timezone, read_only: true}"),
            &[],
        ),
        ("socket", svc("volumes: [\"/var/run/docker.sock:/var/run/docker.sock\"]"), socket),
        ("socket /run ro", svc("volumes: [\"/run/docker.sock:/var/run/docker.sock:ro\"]"), socket),
        (
            "socket long",
            svc("volumes:\n  - {type: bind, source: /var/run/docker.sock, target: /s, read_only: true}"),
            socket,
        ),
        ("socket dot-dot", svc("volumes: [\"/mnt/tank/../../var/run/docker.sock:/s\"]"), socket),
        ("socket elsewhere", svc("volumes: [\"/srv/docker.sock:/s\"]"), socket),
        ("outside roots", svc("volumes: [\"/srv/data:/data\"]"), &["host-path-outside-roots"]),
        ("inside roots", svc("volumes: [\"/mnt/tank/data:/data\"]"), &[]),
        ("inside roots, trailing slash", svc("volumes: [\"/mnt/tank/data/:/data:rw\"]"), &[]),
        ("escapes roots", svc("volumes: [\"/mnt/tank/../../srv:/x\"]"), &["host-path-outside-roots"]),
        ("relative", svc("volumes: [\"./data:/data\"]"), &["relative-host-path"]),
        ("relative up", svc("volumes: [\"../data:/data\"]"), &["relative-host-path"]),
        ("dot", svc("volumes: [\".:/app\"]"), &["relative-host-path"]),
        ("relative long", svc("volumes:\n  - {type: bind, source: ./x, target: /x}"), &["relative-host-path"]),
        ("anonymous", svc("volumes: [\"/data\"]"), &[]),
        ("tmpfs", svc("volumes:\n  - {type: tmpfs, target: /tmp}"), &[]),
        ("undeclared named", svc("volumes: [\"data:/data\"]"), &["undeclared-volume"]),
        ("unparseable", svc("volumes: [\"a:b:c:d\", 5]"), &["compose-schema", "field-invalid", "field-invalid"]),
    ]);
}

#[test]
fn named_volumes_that_are_binds() {
    let with_volume = |def: &str, mount: &str| {
        format!(
            "services:\n  web:\n    image: nginx:1.25\n    mem_limit: 1g\n    volumes: [\"{mount}\"]\nvolumes:\n  data:\n{def}"
        )
    };
    table(&[
        ("managed", with_volume("    {}\n", "data:/data"), &[]),
        ("null definition", with_volume("", "data:/data"), &[]),
        (
            "bind of /etc",
            with_volume("    driver_opts: {type: none, o: bind, device: /etc}\n", "data:/data"),
            &["sensitive-host-path"],
        ),
        (
            "bind of /etc, read-only use still judged",
            with_volume(
                "    driver: local\n    driver_opts:\n      type: none\n      o: bind\n      device: /etc\n",
                "data:/data:ro",
            ),
            &["sensitive-host-path"],
        ),
        (
            "bind of the socket",
            with_volume("    driver_opts: {type: none, o: bind, device: /var/run/docker.sock}\n", "data:/s"),
            &["docker-socket"],
        ),
        (
            "bind inside the roots",
            with_volume("    driver_opts: {type: none, o: bind, device: /mnt/tank/data}\n", "data:/data"),
            &[],
        ),
        (
            "relative bind",
            with_volume("    driver_opts: {type: none, o: bind, device: ./data}\n", "data:/data"),
            &["relative-host-path"],
        ),
        (
            "nfs is a network mount",
            with_volume("    driver_opts: {type: nfs, o: \"addr=10.0.0.2,rw\", device: \":/export\"}\n", "data:/data"),
            &["volume-network-mount"],
        ),
        (
            "unused bind of / is still judged",
            with_volume("    driver_opts: {type: none, o: bind, device: /}\n", "/mnt/tank/x:/x"),
            &["sensitive-host-path"],
        ),
    ]);
}

#[test]
fn devices() {
    table(&[
        ("gpu", svc("devices: [\"/dev/dri:/dev/dri\"]"), &["devices"]),
        ("gpu long", svc("devices:\n  - {source: /dev/dri, target: /dev/dri, permissions: rwm}"), &["devices"]),
        ("cdi", svc("devices: [\"nvidia.com/gpu=all\"]"), &["devices"]),
        ("disk", svc("devices: [\"/dev/sda:/dev/sda\"]"), &["devices-dangerous"]),
        ("nvme", svc("devices: [/dev/nvme0n1]"), &["devices-dangerous"]),
        ("zvol", svc("devices: [\"/dev/zvol/tank/vm:/dev/vda\"]"), &["devices-dangerous"]),
        ("memory", svc("devices: [\"/dev/mem:/dev/mem\"]"), &["devices-dangerous"]),
        ("all of /dev", svc("devices: [\"/dev:/dev\"]"), &["devices-dangerous"]),
        ("cgroup all", svc("device_cgroup_rules: [\"a *:* rwm\"]"), &["devices-dangerous"]),
        ("cgroup char", svc("device_cgroup_rules: [\"c 189:* rmw\"]"), &["devices"]),
    ]);
}

#[test]
fn ports_in_every_form() {
    table(&[
        ("short", svc("ports: [\"8080:80\"]"), &[]),
        ("number", svc("ports: [8080]"), &[]),
        ("reserved web ui", svc("ports: [\"80:80\"]"), &["port-reserved"]),
        ("reserved https", svc("ports: [\"443:8443\"]"), &["port-reserved"]),
        ("reserved ssh on loopback", svc("ports: [\"127.0.0.1:22:22\"]"), &["port-reserved"]),
        ("reserved ipv6", svc("ports: [\"[::1]:445:445\"]"), &["port-reserved"]),
        ("reserved in a range", svc("ports: [\"100-120:100-120\"]"), &["port-reserved"]),
        ("reserved long", svc("ports:\n  - {target: 80, published: 80}"), &["port-reserved"]),
        (
            "reserved long string",
            svc("ports:\n  - {target: 80, published: \"443\", host_ip: 0.0.0.0}"),
            &["port-reserved"],
        ),
        ("privileged", svc("ports: [\"999:80\"]"), &["port-privileged"]),
        ("privileged udp", svc("ports: [\"127.0.0.1:53:53/udp\"]"), &["port-privileged"]),
        ("random host port", svc("ports: [\"80\"]"), &[]),
        ("random host port on loopback", svc("ports: [\"127.0.0.1::80\"]"), &[]),
        ("same port twice", svc("ports: [\"8080:80\", \"8080:81\"]"), &["port-conflict"]),
        ("wildcard and loopback", svc("ports: [\"8080:80\", \"127.0.0.1:8080:81\"]"), &["port-conflict"]),
        ("two loopbacks", svc("ports: [\"127.0.0.1:8080:80\", \"127.0.0.2:8080:80\"]"), &[]),
        ("tcp and udp", svc("ports: [\"5353:5353/udp\", \"5353:5353\"]"), &[]),
        ("range overlap", svc("ports: [\"8000-8010:8000-8010\", \"8005:80\"]"), &["port-conflict"]),
        ("long and short", svc("ports:\n  - 9000:9000\n  - {target: 80, published: \"9000\"}"), &["port-conflict"]),
        ("ipv6 and wildcard", svc("ports: [\"[::1]:8080:80\", \"8080:81\"]"), &["port-conflict"]),
        ("unparseable", svc("ports: [\"x:80\", \"70000:80\"]"), &["field-invalid", "field-invalid"]),
    ]);
    let two =
        "services:\n  a:\n    image: x:1\n    mem_limit: 1g\n    ports: [\"8080:80\"]\n  b:\n    image: y:1\n    \
               mem_limit: 1g\n    ports:\n      - target: 81\n        published: 8080\n";
    check(two, &["port-conflict"]);
    let report = run(two, &BTreeMap::new(), &PolicyConfig::default(), None);
    assert_eq!(report.findings[0].service.as_deref(), Some("b"));
    assert_eq!(report.findings[0].path, "services.b.ports[0]");
    assert!(report.findings[0].message.contains("services.a.ports[0]"), "{}", report.findings[0].message);
}

#[test]
fn ports_used_by_other_apps() {
    let used = [(8080u16, "jellyfin".to_string()), (9000, "minio".to_string())];
    let report = run(
        &svc("ports: [\"8080:80\", \"8999-9001:8999-9001\", \"8081:80\"]"),
        &BTreeMap::new(),
        &PolicyConfig::default(),
        Some(&used),
    );
    assert_eq!(ids(&report), vec!["port-conflict", "port-conflict"]);
    assert_eq!(report.findings[0].message, "host port 8080 is already used by app `jellyfin`");
    assert_eq!(report.findings[1].message, "host port 9000 is already used by app `minio`");
    let published: Vec<u16> = report.published_ports.iter().map(|p| p.host_port).collect();
    assert_eq!(published, vec![8080, 8999, 9000, 9001, 8081]);
    assert_eq!(report.published_ports[2].container_port, 9000);
}

/// A range over ports of two apps names both.
#[test]
fn a_range_over_two_apps_names_both() {
    let used = [(8000u16, "a".to_string()), (8001, "b".to_string()), (8002, "b".to_string())];
    let report = run(&svc("ports: [\"8000-8005:8000-8005\"]"), &BTreeMap::new(), &PolicyConfig::default(), Some(&used));
    assert_eq!(
        report.findings[0].message,
        "host port 8000 is already used by app `a`, host ports 8001, 8002 by app `b`"
    );
}

/// The fix of a reserved or taken port suggests a host port that is free (not another app's, not reserved, not
/// elsewhere in the document) and keeps the container port, the address and the protocol.
#[test]
fn port_fixes_suggest_a_free_host_port_and_keep_the_container_port() {
    let fix = |ports: &str, used: &[(u16, &str)]| -> Vec<String> {
        let used: Vec<(u16, String)> = used.iter().map(|(p, a)| (*p, a.to_string())).collect();
        let report = run(&svc(ports), &BTreeMap::new(), &PolicyConfig::default(), Some(&used));
        report.findings.iter().filter(|f| f.rule != "port-privileged").map(|f| f.fix.clone()).collect()
    };
    assert_eq!(fix("ports: [\"443:443\"]", &[]), ["publish on a free host port, e.g. `8443:443`"]);
    assert_eq!(
        fix("ports: [\"443:443\", \"8443:80\"]", &[(8444, "x")]),
        ["publish on a free host port, e.g. `8445:443`"],
        "8443 is in this compose, 8444 another app's"
    );
    assert_eq!(
        fix("ports: [\"127.0.0.1:80:80/udp\"]", &[]),
        ["publish on a free host port, e.g. `127.0.0.1:8080:80/udp`"]
    );
    assert_eq!(
        fix("ports: [\"8080:80\"]", &[(8080, "web"), (8081, "other")]),
        ["publish on a free host port, e.g. `8082:80`"]
    );
    assert_eq!(fix("ports: [\"440-445:440-445\"]", &[]), ["publish on a free host port, e.g. `8440-8445:440-445`"]);
    let policy = PolicyConfig { reserved_ports: vec![8080, 8081], ..PolicyConfig::default() };
    let report = run(&svc("ports: [\"8080:80\"]"), &BTreeMap::new(), &policy, None);
    assert_eq!(report.findings[0].fix, "publish on a free host port, e.g. `8082:80`");
}

#[test]
fn reserved_ports_come_from_the_operator() {
    let policy = PolicyConfig { reserved_ports: vec![8080], ..PolicyConfig::default() };
    let report = run(&svc("ports: [\"8080:80\", \"80:80\"]"), &BTreeMap::new(), &policy, None);
    assert_eq!(ids(&report), vec!["port-privileged", "port-reserved"]);
}

#[test]
fn environment_user_images_and_the_rest() {
    table(&[
        ("secret map", svc("environment:\n  DB_PASSWORD: hunter2"), &["plaintext-secret"]),
        ("secret list", svc("environment:\n  - API_TOKEN=abc"), &["plaintext-secret"]),
        (
            "secret _KEY",
            svc("environment: {SECRET_KEY_BASE: x, STRIPE_KEY: y}"),
            &["plaintext-secret", "plaintext-secret"],
        ),
        ("secret file path", svc("environment: {DB_PASSWORD_FILE: /run/secrets/db}"), &[]),
        ("secret passed through", svc("environment: [DB_PASSWORD]"), &["environment-unset"]),
        ("empty secret", svc("environment: {DB_PASSWORD: ''}"), &[]),
        (
            "env value mentioning /etc",
            svc("environment: {CONFIG_DIR: /etc/app, DOCKER_HOST: unix:///var/run/docker.sock}"),
            &[],
        ),
        ("env list mentioning /etc", svc("environment: [\"CONF=/etc:/etc\"]"), &[]),
        ("root", svc("user: root"), &["user-root"]),
        ("uid 0", svc("user: 0"), &["compose-schema", "user-root"]),
        ("0:0", svc("user: \"0:0\""), &["user-root"]),
        ("apps user", svc("user: \"568:568\""), &[]),
        ("env_file relative", svc("env_file: .env"), &["env-file-unsupported"]),
        ("env_file list", svc("env_file: [./a.env]"), &["env-file-unsupported"]),
        ("env_file long", svc("env_file:\n  - path: ./b.env\n    required: false"), &["env-file-unsupported"]),
        ("env_file absolute", svc("env_file: /mnt/tank/app.env"), &[]),
        ("env_file system", svc("env_file: /etc/shadow"), &["sensitive-host-path"]),
        ("container name", svc("container_name: web"), &["container-name"]),
        ("build", svc("build: ."), &["build-unsupported"]),
        ("extends a file", svc("extends: {file: ./base.yml, service: base}"), &["include-unsupported"]),
    ]);
    table(&[
        ("no image", "services:\n  web:\n    mem_limit: 1g\n".into(), &["image-missing"]),
        ("empty image", "services:\n  web:\n    image: ''\n    mem_limit: 1g\n".into(), &["image-missing"]),
        (
            "build only",
            "services:\n  web:\n    build: .\n    mem_limit: 1g\n".into(),
            &["build-unsupported", "image-missing"],
        ),
        (
            "image from extends",
            "services:\n  base:\n    image: x:1\n    mem_limit: 1g\n  web:\n    extends: base\n    mem_limit: 1g\n"
                .into(),
            &[],
        ),
        ("unpinned", "services:\n  web:\n    image: nginx\n    mem_limit: 1g\n".into(), &["image-unpinned"]),
        (
            "unpinned base, reported once",
            "services:\n  base: {image: x, mem_limit: 1g}\n  web: {extends: base, mem_limit: 1g}\n".into(),
            &["image-unpinned"],
        ),
        ("latest", "services:\n  web:\n    image: nginx:latest\n    mem_limit: 1g\n".into(), &["image-unpinned"]),
        (
            "registry port, no tag",
            "services:\n  web:\n    image: reg:5000/nginx\n    mem_limit: 1g\n".into(),
            &["image-unpinned"],
        ),
        ("digest", "services:\n  web:\n    image: nginx@sha256:0123\n    mem_limit: 1g\n".into(), &[]),
        ("no limits", "services:\n  web:\n    image: nginx:1\n".into(), &["no-resource-limits"]),
        (
            "deploy limits",
            "services:\n  web:\n    image: nginx:1\n    deploy: {resources: {limits: {memory: 1G}}}\n".into(),
            &[],
        ),
        ("cpus", "services:\n  web:\n    image: nginx:1\n    cpus: 0.5\n".into(), &[]),
        (
            "reservations are not limits",
            "services:\n  web:\n    image: nginx:1\n    deploy: {resources: {reservations: {memory: 1G}}}\n".into(),
            &["no-resource-limits"],
        ),
        ("top-level name", format!("name: myapp\n{}", svc("")), &["top-level-name"]),
        ("include", format!("include: [other.yml]\n{}", svc("")), &["include-unsupported"]),
        (
            "external network",
            format!("{}networks:\n  proxy:\n    external: true\n", svc("networks: [proxy]")),
            &["external-network"],
        ),
        (
            "external host network",
            format!("{}networks:\n  default:\n    name: host\n    external: true\n", svc("")),
            &["network-mode-host"],
        ),
        ("own network", format!("{}networks:\n  backend: {{}}\n", svc("networks: [backend]")), &[]),
        (
            "secret file relative",
            format!("{}secrets:\n  db:\n    file: ./db.txt\n", svc("secrets: [db]")),
            &["relative-host-path"],
        ),
        (
            "secret file system",
            format!("{}configs:\n  c:\n    file: /etc/shadow\n", svc("configs: [c]")),
            &["sensitive-host-path"],
        ),
        ("secret file fine", format!("{}secrets:\n  db:\n    file: /mnt/tank/secrets/db\n", svc("secrets: [db]")), &[]),
    ]);
}

#[test]
fn structure() {
    table(&[
        ("list", "[1, 2]".into(), &["not-a-mapping"]),
        ("text", "just some text".into(), &["not-a-mapping"]),
        ("empty", "".into(), &["not-a-mapping"]),
        ("comment only", "# nothing\n".into(), &["not-a-mapping"]),
        ("no services", "version: '3'\n".into(), &["no-services"]),
        ("empty services", "services: {}\n".into(), &["no-services"]),
        ("null services", "services:\n".into(), &["compose-schema", "no-services"]),
        ("list services", "services: [web]\n".into(), &["compose-schema", "no-services"]),
        ("service is text", "services:\n  web: nginx\n".into(), &["compose-schema", "service-not-a-mapping"]),
        ("service is null", "services:\n  web:\n".into(), &["compose-schema", "service-not-a-mapping"]),
        ("bad yaml", "services:\n  web: [\n".into(), &["yaml-invalid"]),
        ("tab indentation", "services:\n\tweb: {}\n".into(), &["yaml-invalid"]),
        ("duplicate key", "services:\n  web: {image: a:1}\n  web: {image: b:1}\n".into(), &["yaml-invalid"]),
        ("two documents", format!("{}---\n{}", svc(""), svc("")), &["yaml-invalid"]),
        ("unknown alias", "services:\n  web: *nope\n".into(), &["yaml-invalid"]),
        ("bad merge", "services:\n  web:\n    <<: 5\n".into(), &["yaml-invalid"]),
    ]);
    let report = run("services:\n  web:\n    image: [\n", &BTreeMap::new(), &PolicyConfig::default(), None);
    assert!(report.findings[0].message.contains("line"), "{}", report.findings[0].message);
    assert!(report.rendered.is_none());
}

#[test]
fn interpolation() {
    check_with(&svc("environment: {A: $A, B: '${B}', C: '${C:-c}', D: '${D-d}'}"), &[("A", "a"), ("B", "b")], &[]);
    check_with(&svc("environment: {A: '${MISSING}'}"), &[], &["unresolved-variable"]);
    check_with(&svc("environment: {A: $MISSING}"), &[], &["unresolved-variable"]);
    check_with(&svc("environment: {A: '${NEED:?set NEED}'}"), &[], &["required-variable"]);
    check_with(&svc("environment: {A: '${NEED?}'}"), &[("NEED", "")], &[]);
    check_with(&svc("environment: {A: '${NEED:?}'}"), &[("NEED", "")], &["required-variable"]);
    check_with(&svc("environment: {A: '${}'}"), &[], &["interpolation-invalid"]);
    check_with(&svc("environment: {A: '$$literal'}"), &[], &[]);
    check_with(&svc("volumes: [\"${DATA:-/etc}:/data\"]"), &[], &["sensitive-host-path"]);
    check_with(&svc("volumes: [\"${DATA:-/etc}:/data\"]"), &[("DATA", "/mnt/tank/data")], &[]);
    check_with(&svc("ports: [\"${PORT}:80\"]"), &[("PORT", "80")], &["port-reserved"]);
    check_with(
        "services:\n  web:\n    image: ${IMAGE}\n    mem_limit: 1g\n",
        &[],
        &["image-missing", "unresolved-variable"],
    );

    let report = run(
        &svc("environment:\n  A: ${A}\n  B: ${B:-bee}\n  C: $C\n  D: ${D:?D please}"),
        &env(&[("A", "a")]),
        &PolicyConfig::default(),
        None,
    );
    let subs: Vec<(&str, &str, &str)> =
        report.substitutions.iter().map(|s| (s.variable.as_str(), s.source, s.path.as_str())).collect();
    assert_eq!(subs, vec![("A", "env", "services.web.environment.A"), ("B", "default", "services.web.environment.B")]);
    assert_eq!(report.unresolved, vec!["C", "D"]);
    let d = report.findings.iter().find(|f| f.rule == "required-variable").unwrap();
    assert!(d.message.contains("D please"), "{}", d.message);
    assert_eq!(d.path, "services.web.environment.D");
}

/// TrueNAS runs `docker compose` on the stored text, which interpolates again from the middleware's environment:
/// every literal `$` we send must be `$$`, and keys must be left alone.
#[test]
fn rendered_text_survives_a_second_interpolation() {
    let yaml = svc("environment:\n  PRICE: \"5$\"\n  LITERAL: \"$$HOME\"\n  FROM_ENV: ${PASS}\n  $KEEP_KEY: x\n\
         command: [\"sh\", \"-c\", \"echo $${PATH}\"]");
    let report = run(&yaml, &env(&[("PASS", "pa$word")]), &PolicyConfig::default(), None);
    let rendered = report.rendered.clone().unwrap();
    assert!(rendered.contains("PRICE: \"5$$\""), "{rendered}");
    assert!(rendered.contains("LITERAL: \"$$HOME\""), "{rendered}");
    assert!(rendered.contains("FROM_ENV: \"pa$$word\""), "{rendered}");
    assert!(rendered.contains("\"$KEEP_KEY\": x"), "{rendered}");
    assert!(rendered.contains("echo $${PATH}"), "{rendered}");
    // Interpolating the rendered text with an empty environment (what TrueNAS's compose does) changes nothing
    // we meant and reports nothing unresolved; re-rendering gives the same text.
    let again = run(&rendered, &BTreeMap::new(), &PolicyConfig::default(), None);
    assert!(again.unresolved.is_empty() && again.substitutions.is_empty(), "{:?}", again.unresolved);
    assert_eq!(again.rendered.as_deref(), Some(rendered.as_str()));
}

#[test]
fn rendered_text_is_safe_for_yaml_1_1_readers() {
    let report = run(
        &svc("ports: [\"2222:22\"]\nenvironment: {DEBUG: \"yes\", MODE: \"on\", OCTAL: \"0755\", SEXA: \"22:22\"}"),
        &BTreeMap::new(),
        &PolicyConfig::default(),
        None,
    );
    let rendered = report.rendered.unwrap();
    for quoted in ["\"2222:22\"", "DEBUG: \"yes\"", "MODE: \"on\"", "OCTAL: \"0755\"", "SEXA: \"22:22\""] {
        assert!(rendered.contains(quoted), "{quoted} in\n{rendered}");
    }
    assert!(!rendered.contains('&') && !rendered.contains("<<"), "{rendered}");
}

#[test]
fn portals() {
    let derive = |yaml: &str| {
        validate(&ValidateInput {
            yaml,
            env: &BTreeMap::new(),
            used_ports: None,
            policy: &PolicyConfig::default(),
            derive_portals: true,
            nas_version: None,
        })
        .rendered
        .unwrap()
    };
    let rendered = derive(&svc("ports: [\"8080:80\", \"127.0.0.1:9090:9090\", \"5353:5353/udp\", \"6379:6379\"]"));
    let doc: serde_yaml::Value = serde_yaml::from_str(&rendered).unwrap();
    let portals = doc["x-portals"].as_sequence().unwrap();
    assert_eq!(portals.len(), 1, "{rendered}");
    let want: serde_yaml::Value =
        serde_yaml::from_str("{name: Web UI, scheme: http, host: 0.0.0.0, port: 8080, path: /}").unwrap();
    assert_eq!(portals[0], want);

    let two = derive(
        "services:\n  a:\n    image: x:1\n    mem_limit: 1g\n    ports: [\"8443:443\"]\n  b:\n    image: y:1\n    \
         mem_limit: 1g\n    ports:\n      - {target: 7000, published: 7000, app_protocol: http}\n",
    );
    let doc: serde_yaml::Value = serde_yaml::from_str(&two).unwrap();
    let names: Vec<(&str, &str)> = doc["x-portals"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["scheme"].as_str().unwrap()))
        .collect();
    assert_eq!(names, vec![("a", "https"), ("b", "http")]);

    let existing = derive(&format!(
        "x-portals: [{{name: Mine, scheme: http, host: 0.0.0.0, port: 1234, path: /}}]\nx-notes: hello\n{}",
        svc("ports: [\"8080:80\"]")
    ));
    let doc: serde_yaml::Value = serde_yaml::from_str(&existing).unwrap();
    assert_eq!(doc["x-portals"][0]["name"], serde_yaml::Value::from("Mine"));
    assert_eq!(doc["x-portals"].as_sequence().unwrap().len(), 1);
    assert_eq!(doc["x-notes"], serde_yaml::Value::from("hello"));

    let none = run(&svc("ports: [\"8080:80\"]"), &BTreeMap::new(), &PolicyConfig::default(), None);
    assert!(!none.rendered.unwrap().contains("x-portals"));
}

#[test]
fn levels_and_operator_overrides() {
    let doc =
        svc("volumes: [\"/srv/x:/x\"]\nuser: root\nprivileged: true\nenvironment: {A: $NOPE}\ndevices: [/dev/dri]");
    let severities = |policy: &PolicyConfig| -> Vec<(&'static str, Severity)> {
        let mut v: Vec<_> =
            run(&doc, &BTreeMap::new(), policy, None).findings.iter().map(|f| (f.rule, f.severity)).collect();
        v.sort();
        v
    };
    use Severity::*;
    let standard = severities(&PolicyConfig::default());
    assert_eq!(
        standard,
        vec![
            ("devices", Warning),
            ("host-path-outside-roots", Error),
            ("privileged", Error),
            ("unresolved-variable", Error),
            ("user-root", Info)
        ]
    );
    let strict = severities(&PolicyConfig { level: PolicyLevel::Strict, ..PolicyConfig::default() });
    assert_eq!(
        strict,
        vec![
            ("devices", Error),
            ("host-path-outside-roots", Error),
            ("privileged", Error),
            ("unresolved-variable", Error),
            ("user-root", Warning)
        ]
    );
    let permissive = severities(&PolicyConfig { level: PolicyLevel::Permissive, ..PolicyConfig::default() });
    assert_eq!(
        permissive,
        vec![
            ("devices", Info),
            ("host-path-outside-roots", Warning),
            ("privileged", Error),
            ("unresolved-variable", Warning),
            ("user-root", Info)
        ]
    );
    let allowed = PolicyConfig {
        level: PolicyLevel::Permissive,
        allow_rules: vec![" Privileged".into(), "yaml-invalid".into()],
        ..PolicyConfig::default()
    };
    let report = run(&doc, &BTreeMap::new(), &allowed, None);
    let privileged = report.findings.iter().find(|f| f.rule == "privileged").unwrap();
    assert_eq!(privileged.severity, Info);
    assert!(privileged.message.contains("TRUENAS_COMPOSE_ALLOW"));
    assert!(!report.has_errors());
    // Structural rules cannot be allowed.
    let broken = run("services: [", &BTreeMap::new(), &allowed, None);
    assert!(broken.has_errors());

    let strict_limits = run(
        "services:\n  web:\n    image: x:1\n",
        &BTreeMap::new(),
        &PolicyConfig { level: PolicyLevel::Strict, ..PolicyConfig::default() },
        None,
    );
    assert!(strict_limits.has_errors(), "{:?}", strict_limits.findings);

    let roots = PolicyConfig { allowed_host_paths: vec!["/srv".into()], ..PolicyConfig::default() };
    let report = run(&svc("volumes: [\"/srv/x:/x\", \"/mnt/tank/y:/y\"]"), &BTreeMap::new(), &roots, None);
    assert_eq!(ids(&report), vec!["host-path-outside-roots"]);
    assert_eq!(report.findings[0].path, "services.web.volumes[1]");
}

#[test]
fn findings_carry_service_path_message_and_fix() {
    let report = run(
        &svc("volumes:\n  - /mnt/tank/ok:/ok\n  - /mnt/tank/ok2:/ok2\n  - /etc:/host-etc"),
        &BTreeMap::new(),
        &PolicyConfig::default(),
        None,
    );
    let f = &report.findings[0];
    assert_eq!((f.rule, f.severity), ("sensitive-host-path", Severity::Error));
    assert_eq!(f.service.as_deref(), Some("web"));
    assert_eq!(f.path, "services.web.volumes[2]");
    assert!(f.message.contains("/etc") && !f.fix.is_empty());
    let json = serde_json::to_value(f).unwrap();
    assert_eq!(json["severity"], "error");
    assert_eq!(report.services, vec!["web"]);
}

/// The real-world documents in `fixtures/compose/`, each with a sibling `.expect` listing `severity rule path`.
#[test]
fn real_world_fixtures() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/compose");
    let vars = env(&[("WG_KEY", "wg-private-key"), ("POSTGRES_PASSWORD", "s3cret")]);
    let mut seen = 0;
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries.iter().filter(|p| p.extension().is_some_and(|e| e == "yaml")) {
        let yaml = std::fs::read_to_string(path).unwrap();
        let expect = std::fs::read_to_string(path.with_extension("expect"))
            .unwrap_or_else(|_| panic!("{} has no .expect file", path.display()));
        let report = run(&yaml, &vars, &PolicyConfig::default(), None);
        let mut got: Vec<String> = report
            .findings
            .iter()
            .map(|f| format!("{} {} {}", serde_json::to_value(f.severity).unwrap().as_str().unwrap(), f.rule, f.path))
            .collect();
        got.sort();
        let mut want: Vec<String> = expect.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect();
        want.sort();
        assert_eq!(got, want, "{}\n{:#?}", path.display(), report.findings);
        assert!(report.rendered.is_some());
        seen += 1;
    }
    assert_eq!(seen, 5);
}

#[test]
fn app_names() {
    for ok in ["a", "plex", "my-app-2", &"a".repeat(40)] {
        assert_eq!(compose::app_name_error(ok), None, "{ok}");
    }
    for bad in ["", "My-app", "1app", "app-", "-app", "app_1", "app.1", &"a".repeat(41)] {
        assert!(compose::app_name_error(bad).is_some(), "{bad}");
    }
    assert_eq!(create_payload("Bad", "services: {}").unwrap_err().rule, "app-name-invalid");
}

/// Raise the exported 1024-character limit of `custom_compose_config_string` to the middleware's real
/// `LongString` limit (the JSON Schema export loses it).
fn widen_long_strings(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                if let (true, Some(field)) = (k == "custom_compose_config_string", child.as_object_mut()) {
                    field.insert("maxLength".into(), json!(2_048_000));
                }
                widen_long_strings(child);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(widen_long_strings),
        _ => {}
    }
}

/// The payloads validate against the real TrueNAS API models (strict: no unknown keys, exact types).
#[test]
fn payloads_match_the_truenas_schemas() {
    let compose_text =
        run(&svc("ports: [\"8080:80\"]"), &BTreeMap::new(), &PolicyConfig::default(), None).rendered.unwrap();
    let create = create_payload("web", &compose_text).unwrap();
    assert_eq!(create, json!({"app_name": "web", "custom_app": true, "custom_compose_config_string": compose_text}));
    let update = update_payload("web", &compose_text).unwrap();
    assert_eq!(update, json!({"custom_compose_config_string": compose_text}));
    for version in ["api-v25.04.2.json", "api-v25.10.5.json"] {
        let path = format!("{}/fixtures/truenas-schemas/{version}", env!("CARGO_MANIFEST_DIR"));
        let mut api: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        widen_long_strings(&mut api);
        let create_args = &api["methods"]["app.create"]["args"];
        assert_eq!(create_args["x-positional-order"], json!(["app_create"]), "{version}");
        truenas_mcp::jsonschema::validate(create_args, &json!({"app_create": create}))
            .unwrap_or_else(|e| panic!("{version}: app.create payload rejected: {e:?}"));
        let update_args = &api["methods"]["app.update"]["args"];
        assert_eq!(update_args["x-positional-order"], json!(["app_name", "update"]), "{version}");
        truenas_mcp::jsonschema::validate(update_args, &json!({"app_name": "web", "update": update}))
            .unwrap_or_else(|e| panic!("{version}: app.update payload rejected: {e:?}"));
        // The schema's app-name rule is the one we implement.
        let name = &create_args["$defs"]["AppCreateArgs"]["properties"]["app_name"];
        assert_eq!(name["pattern"], "^[a-z]([-a-z0-9]*[a-z0-9])?$");
        assert_eq!((name["minLength"].as_u64(), name["maxLength"].as_u64()), (Some(1), Some(40)));
        for candidate in ["a", "web-1", "1web", "web-", "Web", "a--b", &"a".repeat(40), &"a".repeat(41)] {
            let schema_ok =
                truenas_mcp::jsonschema::validate(create_args, &json!({"app_create": {"app_name": candidate}})).is_ok();
            assert_eq!(compose::app_name_error(candidate).is_none(), schema_ok, "{version}: {candidate}");
        }
    }
}

#[test]
fn oversized_documents_are_refused() {
    // A compose whose request frame is just over the limit: validate says too-large, and so does the payload.
    let filler = "x".repeat(FRAME_LIMIT);
    let yaml = svc(&format!("environment: {{BLOB: {filler}}}"));
    let report = run(&yaml, &BTreeMap::new(), &PolicyConfig::default(), None);
    assert_eq!(ids(&report), vec!["too-large"]);
    let rendered = report.rendered.unwrap();
    assert_eq!(create_payload("web", &rendered).unwrap_err().rule, "too-large");
    assert_eq!(update_payload("web", &rendered).unwrap_err().rule, "too-large");
    // A normal document fits.
    let small = run(&svc(""), &BTreeMap::new(), &PolicyConfig::default(), None).rendered.unwrap();
    assert!(create_payload("web", &small).is_ok());
    // Input far beyond any frame is refused before parsing.
    let huge = "#".repeat(compose::MAX_INPUT_BYTES + 1);
    let report = run(&huge, &BTreeMap::new(), &PolicyConfig::default(), None);
    assert_eq!(ids(&report), vec!["too-large"]);
    assert!(report.rendered.is_none());
}

#[test]
fn secrets_are_masked_for_output() {
    let config = json!({"services": {"db": {"environment": {"POSTGRES_PASSWORD": "s3cret", "TZ": "UTC"}},
                                      "app": {"environment": ["API_TOKEN=abc", "MODE=prod"]}}});
    let masked = mask_secrets(&config);
    assert_eq!(masked["services"]["db"]["environment"]["POSTGRES_PASSWORD"], "***");
    assert_eq!(masked["services"]["app"]["environment"], json!(["API_TOKEN=***", "MODE=prod"]));
    assert!(!masked.to_string().contains("s3cret"));

    let report = run(
        &svc("environment: {DB_PASSWORD: $PW, TZ: UTC}"),
        &env(&[("PW", "s3cret")]),
        &PolicyConfig::default(),
        None,
    );
    let rendered = report.rendered.unwrap();
    assert!(rendered.contains("s3cret"), "the rendered text is what TrueNAS needs");
    let shown = compose::mask_rendered(&rendered).unwrap();
    assert!(
        !shown.contains("s3cret") && shown.contains("DB_PASSWORD: \"***\"") && shown.contains("TZ: UTC"),
        "{shown}"
    );
}

fn alias_bomb(levels: usize, width: usize) -> String {
    let mut bomb = format!("a0: &a0 [{}]\n", vec!["\"lol\""; width].join(","));
    for level in 1..levels {
        bomb.push_str(&format!("a{level}: &a{level} [{}]\n", vec![format!("*a{}", level - 1); width].join(",")));
    }
    bomb
}

#[test]
fn hostile_inputs_are_bounded() {
    let cases = [
        alias_bomb(9, 9),
        alias_bomb(6, 20),
        format!("big: &big [{}]\nrefs: [{}]\n", vec!["1"; 3000].join(","), vec!["*big"; 3000].join(",")),
        format!("services:\n  web:\n    x: {}{}\n", "[".repeat(50_000), "]".repeat(50_000)),
        // Decoy closers inside strings hide the depth from the pre-scan; serde_yaml's own limit still stops it.
        format!("services:\n  web:\n    x: {}{}\n", "[\"]\", ".repeat(3_000), "]".repeat(3_000)),
        format!("services:\n  web:\n    x: {}1{}\n", "{a: ".repeat(5_000), "}".repeat(5_000)),
        format!("services:\n  web:\n    image: \"{}\"\n", "${A:-".repeat(20_000)),
    ];
    // On a thread, with a generous limit that only catches a hang, not a slow machine.
    let (tx, done) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        for yaml in &cases {
            let report = run(yaml, &BTreeMap::new(), &PolicyConfig::default(), None);
            assert!(report.has_errors(), "{:?}", &yaml[..60]);
        }
        let _ = tx.send(());
    });
    done.recv_timeout(Duration::from_secs(30)).expect("a hostile input hung the checker (or failed: see above)");
}

/// Crashers and oddities found while writing the property tests, kept as regressions.
#[test]
fn regressions() {
    for yaml in [
        "? [a]\n: 1\n",
        "services:\n  ? [web]\n  : {image: x}\n",
        "services:\n  web: !!binary aGVsbG8=\n",
        "services:\n  web:\n    image: !custom x\n    ports: [!p \"80:80\"]\n",
        "services:\n  1: {image: x:1, mem_limit: 1g}\n",
        "services:\n  web: {image: x:1, ports: [{target: 80, published: \"\"}], volumes: [{type: bind, target: /x}]}\n",
        "services:\n  web: {image: x:1, environment: {? [a] : b}}\n",
        "services:\n  web: {image: x:1, ports: [\"0:80\", \"65535:65535\", \"-1:80\"]}\n",
        "services:\n  web: {image: x:1, volumes: [\"~\", \":\", \"::\", \"/x:\"]}\n",
        "\u{feff}services:\n  web: {image: x:1}\n",
        "services:\n  web: {image: \"\\u2028\\x85$$\"}\n",
    ] {
        let report = run(yaml, &BTreeMap::new(), &PolicyConfig::default(), None);
        if let Some(text) = &report.rendered {
            let _: serde_yaml::Value = serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{yaml:?}: {e}\n{text}"));
        }
    }
}

/// Pieces of YAML syntax the mutation fuzzer splices into the real-world fixtures.
const MUTATION_TEXT: &[&str] = &[
    "\n",
    " ",
    "  ",
    ":",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "'",
    "\"",
    "#",
    "&a ",
    "*a",
    "<<: *a\n",
    "!t ",
    "|\n",
    "$",
    "${",
    "}",
    "$$",
    "..",
    "/",
    "~",
    "\t",
    "yes",
    "host",
    "/etc",
    "/var/run/docker.sock",
    "80:80",
    "é",
];

fn fixture_texts() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/compose");
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect()
}

fn yamlish() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        Just("true".to_string()),
        Just("yes".to_string()),
        Just("host".to_string()),
        Just("/etc:/x".to_string()),
        Just("\"8080:80\"".to_string()),
        Just("${X:-/mnt}".to_string()),
        Just("$$".to_string()),
        Just("*a".to_string()),
        Just("&a x".to_string()),
        "[a-z0-9:/.${}-]{0,12}",
    ];
    let key = prop_oneof![
        Just("services".to_string()),
        Just("web".to_string()),
        Just("image".to_string()),
        Just("privileged".to_string()),
        Just("ports".to_string()),
        Just("volumes".to_string()),
        Just("environment".to_string()),
        Just("<<".to_string()),
        Just("driver_opts".to_string()),
        "[a-z_]{1,8}",
    ];
    let leaf = scalar.prop_map(|s| s);
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|items| format!("[{}]", items.join(", "))),
            prop::collection::vec((key.clone(), inner), 0..5).prop_map(|pairs| {
                let body: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}: {v}")).collect();
                format!("{{{}}}", body.join(", "))
            }),
        ]
    })
}

proptest! {
    // 256 cases by default; `PROPTEST_CASES=20000` for a longer hunt.
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        let _ = run(&text, &env(&[("X", "$x")]), &PolicyConfig::default(), Some(&[(8080, "web".to_string())]));
    }

    #[test]
    fn yamlish_structures_never_panic_and_render_back(doc in yamlish()) {
        let yaml = format!("services:\n  web: {doc}\n");
        let report = run(&yaml, &env(&[("X", "/mnt/$x")]), &PolicyConfig::default(), Some(&[(8080, "web".to_string())]));
        if let Some(text) = report.rendered {
            // What we send parses, and sending it again is a fixed point (nothing left to interpolate).
            let again = run(&text, &BTreeMap::new(), &PolicyConfig::default(), Some(&[(8080, "web".to_string())]));
            prop_assert!(again.unresolved.is_empty(), "{:?}\n{}", again.unresolved, text);
            prop_assert_eq!(again.rendered.as_deref(), Some(text.as_str()));
        }
    }

    #[test]
    fn mutated_fixtures_never_panic_and_render_back(
        which in 0usize..5,
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(MUTATION_TEXT)), 1..8),
    ) {
        let mut text = fixture_texts()[which].clone();
        for (at, kind, piece) in edits {
            let mut at = at.index(text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            match kind {
                0 => text.insert_str(at, piece),
                1 => {
                    let end = (at + piece.len()).min(text.len());
                    if text.is_char_boundary(end) {
                        text.replace_range(at..end, "");
                    }
                }
                _ => {
                    let end = (at + piece.len()).min(text.len());
                    if text.is_char_boundary(end) {
                        text.replace_range(at..end, piece);
                    }
                }
            }
        }
        let report = run(&text, &env(&[("WG_KEY", "k$"), ("TZ", "UTC")]), &PolicyConfig::default(), Some(&[(8096, "jellyfin".to_string())]));
        if let Some(rendered) = report.rendered {
            let again = run(&rendered, &BTreeMap::new(), &PolicyConfig::default(), Some(&[(8096, "jellyfin".to_string())]));
            prop_assert!(again.unresolved.is_empty(), "{:?}\n{}", again.unresolved, rendered);
            prop_assert_eq!(again.rendered.as_deref(), Some(rendered.as_str()));
        }
    }

    #[test]
    fn top_level_yamlish_never_panics(doc in yamlish()) {
        let _ = run(&doc, &BTreeMap::new(), &PolicyConfig::default(), None);
    }
}

fn severity_of(yaml: &str, policy: &PolicyConfig, rule: &str) -> Option<Severity> {
    run(yaml, &BTreeMap::new(), policy, None).findings.iter().find(|f| f.rule == rule).map(|f| f.severity)
}

fn at_level(level: PolicyLevel) -> PolicyConfig {
    PolicyConfig { level, ..PolicyConfig::default() }
}

/// The denylist of system paths is never complete, so the allowed roots are an allowlist: outside them is an error
/// unless the operator chose `permissive` (a warning) or widened the roots.
#[test]
fn binds_outside_the_allowed_roots_are_errors() {
    let doc = svc("volumes: [\"/srv/data:/data\"]");
    let rule = "host-path-outside-roots";
    assert_eq!(severity_of(&doc, &PolicyConfig::default(), rule), Some(Severity::Error));
    assert_eq!(severity_of(&doc, &at_level(PolicyLevel::Strict), rule), Some(Severity::Error));
    assert_eq!(severity_of(&doc, &at_level(PolicyLevel::Permissive), rule), Some(Severity::Warning));
    let widened = PolicyConfig { allowed_host_paths: vec!["/mnt".into(), "/srv".into()], ..PolicyConfig::default() };
    assert!(run(&doc, &BTreeMap::new(), &widened, None).findings.is_empty());
    // Named-volume binds and files outside the roots are judged the same way.
    let named = "services:\n  web:\n    image: nginx:1.25\n    mem_limit: 1g\n    volumes: [\"d:/d\"]\nvolumes:\n  d:\n    driver_opts: {type: none, o: bind, device: /home/admin/.ssh}\n";
    assert_eq!(severity_of(named, &PolicyConfig::default(), rule), Some(Severity::Error));
    // The system-path denylist still names what it found.
    check(&svc("volumes: [\"/var/lib/containerd:/c\"]"), &[rule]);
    check(&svc("volumes: [\"/var/lib/docker:/c\"]"), &["sensitive-host-path"]);
}

#[test]
fn harmless_device_files_are_not_system_paths() {
    table(&[
        ("null", svc("volumes: [\"/dev/null:/app/config.js:ro\"]"), &[]),
        ("zero", svc("volumes: [\"/dev/zero:/z\"]"), &[]),
        ("urandom", svc("volumes:\n  - {type: bind, source: /dev/urandom, target: /dev/random}"), &[]),
        ("random", svc("volumes: [\"/dev/random:/r:ro\"]"), &[]),
        ("null via dot-dot", svc("volumes: [\"/dev/shm/../null:/x\"]"), &[]),
        ("other device", svc("volumes: [\"/dev/sda:/x\"]"), &["sensitive-host-path"]),
        ("shared memory", svc("volumes: [\"/dev/shm:/x\"]"), &["sensitive-host-path"]),
        ("below null", svc("volumes: [\"/dev/null/x:/x\"]"), &["sensitive-host-path"]),
        ("all of /dev", svc("volumes: [\"/dev:/dev\"]"), &["sensitive-host-path"]),
    ]);
}

#[test]
fn named_volumes_that_mount_host_filesystems() {
    let with_volume = |def: &str| {
        format!(
            "services:\n  web:\n    image: nginx:1.25\n    mem_limit: 1g\n    volumes: [\"data:/data\"]\nvolumes:\n  data:\n    {def}\n"
        )
    };
    let host = &["volume-host-mount"][..];
    table(&[
        ("disk partition", with_volume("driver_opts: {type: ext4, device: /dev/sda1}"), host),
        ("disk by id", with_volume("driver_opts: {type: btrfs, device: /dev/disk/by-id/ata-x}"), host),
        ("zfs dataset", with_volume("driver_opts: {type: zfs, device: boot-pool/ROOT}"), host),
        (
            "overlay of /etc",
            with_volume("driver_opts: {type: overlay, o: 'lowerdir=/etc,upperdir=/u,workdir=/w'}"),
            host,
        ),
        (
            "nfs of the NAS itself",
            with_volume("driver_opts: {type: nfs, o: 'addr=127.0.0.1,rw', device: ':/mnt'}"),
            host,
        ),
        ("tmpfs is memory", with_volume("driver_opts: {type: tmpfs, device: tmpfs, o: 'size=64m'}"), &[]),
        (
            "bind outside the roots",
            with_volume("driver_opts: {type: none, o: bind, device: /srv/x}"),
            &["host-path-outside-roots"],
        ),
        (
            "bind of a system path",
            with_volume("driver_opts: {type: none, o: bind, device: /etc}"),
            &["sensitive-host-path"],
        ),
        (
            "nfs share",
            with_volume("driver_opts: {type: nfs, o: 'addr=10.0.0.2,rw', device: ':/export'}"),
            &["volume-network-mount"],
        ),
        (
            "cifs share",
            with_volume("driver_opts: {type: cifs, device: //server/share, o: 'username=u'}"),
            &["volume-network-mount"],
        ),
        ("plain managed", with_volume("{}"), &[]),
    ]);
    // An unused volume still mounts when the app starts.
    let unused = "services:\n  web:\n    image: nginx:1.25\n    mem_limit: 1g\nvolumes:\n  disk:\n    driver_opts: {type: xfs, device: /dev/nvme0n1p2}\n";
    check(unused, &["volume-host-mount"]);
    let report = run(unused, &BTreeMap::new(), &PolicyConfig::default(), None);
    assert_eq!(report.findings[0].path, "volumes.disk.driver_opts");
    assert_eq!(severity_of(unused, &at_level(PolicyLevel::Permissive), "volume-host-mount"), Some(Severity::Error));
}

#[test]
fn seccomp_profiles_from_files() {
    let profile = &["seccomp-profile"][..];
    table(&[
        ("equals", svc("security_opt: [\"seccomp=/mnt/tank/profile.json\"]"), profile),
        ("colon", svc("security_opt: [\"seccomp:/mnt/tank/profile.json\"]"), profile),
        ("relative", svc("security_opt: [\"seccomp=profile.json\"]"), profile),
        ("unconfined stays its own rule", svc("security_opt: [\"seccomp=unconfined\"]"), &["security-opt-unconfined"]),
        ("apparmor unconfined", svc("security_opt: [\"apparmor=unconfined\"]"), &["security-opt-unconfined"]),
        ("a loaded apparmor profile", svc("security_opt: [\"apparmor=docker-default\"]"), &[]),
    ]);
}

#[test]
fn joining_other_containers() {
    let join = &["joins-other-container"][..];
    let two = |body: &str| {
        format!(
            "services:\n  vpn:\n    image: vpn:1\n    mem_limit: 1g\n  web:\n    image: nginx:1.25\n    mem_limit: 1g\n    {body}\n"
        )
    };
    table(&[
        ("network of a container", two("network_mode: \"container:ix-other-db-1\""), join),
        ("pid of a container", two("pid: \"container:ix-other-db-1\""), join),
        ("ipc of a container", two("ipc: container:abc123"), join),
        ("volumes of a container", two("volumes_from: [\"container:ix-other-db-1:ro\"]"), join),
        ("volumes of an unknown name", two("volumes_from: [nextcloud]"), join),
        ("network of a service", two("network_mode: \"service:vpn\""), &[]),
        ("pid of a service", two("pid: \"service:vpn\""), &[]),
        ("volumes of a service", two("volumes_from: [vpn, \"vpn:ro\"]"), &[]),
        ("ipc shareable", two("ipc: shareable"), &[]),
    ]);
}

#[test]
fn external_volumes_belong_to_someone_else() {
    let mount = |def: &str| {
        format!(
            "services:\n  web:\n    image: nginx:1.25\n    mem_limit: 1g\n    volumes: [\"data:/data\"]\nvolumes:\n  data:\n    {def}\n"
        )
    };
    let ext = &["external-volume"][..];
    table(&[
        ("external", mount("external: true"), ext),
        ("external yes", mount("external: yes"), ext),
        ("external with a name", mount("{external: true, name: ix-nextcloud_db}"), ext),
        ("legacy external name", mount("external: {name: ix-nextcloud_db}"), ext),
        ("another app's volume by name", mount("name: ix-nextcloud_db"), ext),
        ("own volume with a name", mount("name: my-data"), &[]),
        ("not external", mount("external: false"), &[]),
    ]);
    let doc = mount("external: true");
    assert_eq!(severity_of(&doc, &PolicyConfig::default(), "external-volume"), Some(Severity::Error));
    assert_eq!(severity_of(&doc, &at_level(PolicyLevel::Permissive), "external-volume"), Some(Severity::Warning));
}

#[test]
fn capabilities_that_reach_the_nas() {
    let host = &["cap-add-host"][..];
    table(&[
        ("clock", svc("cap_add: [SYS_TIME]"), host),
        ("clock prefixed", svc("cap_add: [cap_sys_time]"), host),
        ("kernel log", svc("cap_add: [SYSLOG]"), host),
        ("immutable files", svc("cap_add: [LINUX_IMMUTABLE]"), host),
        ("audit rules", svc("cap_add: [AUDIT_CONTROL]"), host),
        ("wake alarms", svc("cap_add: [WAKE_ALARM, BLOCK_SUSPEND]"), &["cap-add-host", "cap-add-host"]),
        (
            "scheduling",
            svc("cap_add: [SYS_NICE, SYS_RESOURCE, IPC_LOCK]"),
            &["cap-add-host", "cap-add-host", "cap-add-host"],
        ),
        (
            "perf",
            svc("cap_add: [PERFMON, SYS_PACCT, SYS_TTY_CONFIG]"),
            &["cap-add-host", "cap-add-host", "cap-add-host"],
        ),
        ("already dangerous", svc("cap_add: [SYS_MODULE, SYS_BOOT, SYS_RAWIO, SYS_PTRACE]"), &["cap-add-dangerous"; 4]),
        ("in docker's default set", svc("cap_add: [MKNOD, CHOWN, KILL]"), &[]),
    ]);
    let doc = svc("cap_add: [SYS_TIME]");
    assert_eq!(severity_of(&doc, &PolicyConfig::default(), "cap-add-host"), Some(Severity::Warning));
    assert_eq!(severity_of(&doc, &at_level(PolicyLevel::Strict), "cap-add-host"), Some(Severity::Error));
    assert_eq!(severity_of(&doc, &at_level(PolicyLevel::Permissive), "cap-add-host"), Some(Severity::Warning));
}

/// `!reset` and `!override` are resolved while parsing: judged on the effective document, sent without tags. As in
/// real Compose v2.40 (checked with `docker compose config`), a key reset beside a merge key `<<` keeps the merged
/// value, so a `privileged: true` from an anchor is not hidden by `privileged: !reset null`.
#[test]
fn reset_and_override_tags() {
    let yaml = "x-base: &base\n  image: nginx:1.25\n  mem_limit: 1g\n  ports: [\"80:80\"]\n  privileged: true\n  \
                environment:\n    DB_PASSWORD: hunter2\nservices:\n  web:\n    <<: *base\n    ports: !override [\"9090:80\"]\n    \
                environment: !reset {}\n    privileged: !reset null\n    cap_add: !reset []\n";
    let report = run(yaml, &BTreeMap::new(), &PolicyConfig::default(), None);
    assert_eq!(ids(&report), vec!["plaintext-secret", "privileged"], "{:#?}", report.findings);
    assert_eq!(report.published_ports.iter().map(|p| p.host_port).collect::<Vec<_>>(), vec![9090]);
    let text = report.rendered.unwrap();
    assert!(!text.contains('!'), "tags reached the rendered text:\n{text}");
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let web = &doc["services"]["web"];
    assert_eq!(web["ports"], serde_yaml::from_str::<serde_yaml::Value>("[\"9090:80\"]").unwrap(), "{text}");
    assert_eq!(web["privileged"], serde_yaml::Value::Bool(true), "{text}");
    assert!(web.get("environment").is_some(), "{text}");
    assert!(web.get("cap_add").is_none(), "a reset with nothing merged removes the key:\n{text}");
    // A tag does not hide what it carries: an override of a dangerous value is judged.
    check(&svc("privileged: !override true"), &["privileged"]);
    check(&svc("volumes: !override [\"/etc:/e\"]"), &["sensitive-host-path"]);
    let nested =
        "x-a: &a {image: nginx:1.25, mem_limit: 1g, cap_add: [SYS_ADMIN]}\nx-b: &b {<<: *a, cap_add: !reset null}\n\
                  services:\n  web: {<<: *b}\n";
    check(nested, &["cap-add-dangerous"]);
}

/// The rule catalogue and the README's table (in its security section) say the same thing: every rule, in
/// catalogue order, with its `standard` severity first and its summary.
#[test]
fn the_readme_rule_table_matches_the_catalogue() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme.split("\n## Security model\n").nth(1).unwrap().split("\n## ").next().unwrap();
    let rows: Vec<(String, String, String)> = section
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split(" | ").map(|c| c.trim_matches(|c| c == '|' || c == ' ')).collect();
            let severity = cells[1].split(' ').next().unwrap().to_string();
            (cells[0].trim_matches('`').to_string(), severity, cells[2].to_string())
        })
        .collect();
    let want: Vec<(String, String, String)> = compose::rules::ALL
        .iter()
        .map(|r| {
            let severity = serde_json::to_value(r.severity).unwrap().as_str().unwrap().to_string();
            (r.id.to_string(), severity, r.summary.to_string())
        })
        .collect();
    assert_eq!(rows, want);
}

/// The new errors reach a client through the real binary: `truenas-mcp call validate_compose`.
#[test]
fn validate_compose_reports_the_new_errors_end_to_end() {
    let yaml = "services:\n  web:\n    image: nginx:1.25\n    mem_limit: 1g\n    network_mode: \"container:ix-other-db-1\"\n    \
                security_opt: [\"seccomp=/mnt/tank/p.json\"]\n    cap_add: [SYS_TIME]\n    volumes: [\"/srv/x:/x\", \"d:/d\", \"e:/e\"]\n    \
                ports: !override [\"9090:80\"]\nvolumes:\n  d:\n    driver_opts: {type: ext4, device: /dev/sda1}\n  e:\n    external: true\n";
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_truenas-mcp"));
    for s in truenas_mcp::config::SETTINGS {
        cmd.env_remove(s.env);
    }
    let args = json!({"compose_yaml": yaml}).to_string();
    let out = cmd
        .env_remove("RUST_LOG")
        .env("TRUENAS_AUDIT_LOG", "off")
        .args(["call", "validate_compose", "--json", "--args", &args])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}\nstdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["valid"], false, "{v}");
    let mut got: Vec<(String, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["rule"].as_str().unwrap().to_string(), f["severity"].as_str().unwrap().to_string()))
        .collect();
    got.sort();
    let want: Vec<(String, String)> = [
        ("cap-add-host", "warning"),
        ("external-volume", "error"),
        ("host-path-outside-roots", "error"),
        ("joins-other-container", "error"),
        ("seccomp-profile", "error"),
        ("volume-host-mount", "error"),
    ]
    .iter()
    .map(|(r, s)| (r.to_string(), s.to_string()))
    .collect();
    assert_eq!(got, want, "{v}");
}

/// Thousands of services with findings give a bounded report: the errors first, at most `MAX_FINDINGS`, then one
/// counted summary per rule that fired again, so the verdict and every rule id survive the cap.
#[test]
fn a_document_with_thousands_of_findings_gives_a_bounded_report() {
    let mut yaml = String::from("services:\n");
    for i in 0..2000 {
        yaml.push_str(&format!("  s{i}:\n    image: alpine\n    privileged: true\n"));
    }
    let report = run(&yaml, &env(&[]), &PolicyConfig::default(), None);
    let limit = truenas_mcp::compose::MAX_FINDINGS;
    assert!(report.findings.len() <= limit + 10, "{} findings", report.findings.len());
    assert!(report.has_errors());
    assert!(report.findings[..limit].iter().all(|f| f.severity == truenas_mcp::compose::Severity::Error));
    let summary = report.findings.iter().find(|f| f.rule == "privileged" && f.message.contains("more like this"));
    assert!(summary.is_some_and(|f| f.message.starts_with("1950 more")), "{:?}", report.findings.last());
    for rule in ["image-unpinned", "no-resource-limits"] {
        assert!(report.findings.iter().any(|f| f.rule == rule), "{rule} lost to the cap");
    }
}

#[path = "../interop/nas_job.rs"]
mod nas_job;

/// A stand-in for `docker-compose`: refuses a document that mentions `foo:` the way Compose v2 words it (naming the
/// file it was given), accepts anything else.
fn fake_compose() -> std::path::PathBuf {
    let dir = crate::support::tempdir("fake-compose");
    let path = dir.join("docker-compose");
    std::fs::write(
        &path,
        "#!/bin/sh\n[ \"$1 $3\" = \"-f config\" ] || exit 3\n\
         if grep -q 'foo:' \"$2\"; then echo \"validating $2: services.web additional properties 'foo' not allowed\" >&2; \
         exit 1; fi\nexit 0\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

const COMPOSE_FOO: &str = "services:\n  web:\n    image: nginx:1.27\n    foo: 1\n";
const COMPOSE_OK: &str = "services:\n  web:\n    image: nginx:1.27\n";

/// The one validation error of a failed job as (attribute, message, errno), after checking the job's shape.
fn validation_error(job: &serde_json::Value) -> (String, String, i64) {
    assert_eq!(job["state"], "FAILED", "{job}");
    assert_eq!(job["exc_info"]["type"], "VALIDATION", "{job}");
    let extra = job["exc_info"]["extra"].as_array().expect("extra");
    assert_eq!(extra.len(), 1, "{job}");
    let e = &extra[0];
    (e[0].as_str().unwrap().into(), e[1].as_str().unwrap().into(), e[2].as_i64().unwrap())
}

#[test]
fn simulator_25_10_refuses_what_compose_refuses_with_the_nas_error_shape() {
    use truenas_mcp::sim::{SimOptions, SimVersion};
    let compose = fake_compose();
    let opts = SimOptions { version: SimVersion::V25_10, compose: Some(compose), ..Default::default() };
    let mut nas = nas_job::NasJobs::start(opts);
    let (attr, msg, errno) = validation_error(&nas.create("web", COMPOSE_FOO));
    assert_eq!((attr.as_str(), errno), ("app_create.custom_compose_config_string", 22));
    let rest = msg.strip_prefix("Invalid compose configuration: validating /").expect(&msg);
    assert!(rest.ends_with(".yaml: services.web additional properties 'foo' not allowed"), "{msg}");
    assert!(nas.call("app.query", json!([[["name", "=", "web"]]]))["result"].as_array().unwrap().is_empty());
    // A dict payload names the dict field; app.update names its own schema.
    let dict = json!({"services": {"web": {"image": "nginx:1.27", "foo": 1}}});
    let failed = nas.job("app.create", json!([{"app_name": "web", "custom_app": true, "custom_compose_config": dict}]));
    assert_eq!(validation_error(&failed).0, "app_create.custom_compose_config");
    assert_eq!(nas.create("web", COMPOSE_OK)["state"], "SUCCESS");
    let failed = nas.job("app.update", json!(["web", {"custom_compose_config_string": COMPOSE_FOO}]));
    assert_eq!(validation_error(&failed).0, "app_update.custom_compose_config_string");
}

#[test]
fn simulator_25_04_fails_a_compose_invalid_app_at_up_and_without_compose_skips() {
    use truenas_mcp::sim::{SimOptions, SimVersion};
    let opts = SimOptions { version: SimVersion::V25_04, compose: Some(fake_compose()), ..Default::default() };
    let mut nas = nas_job::NasJobs::start(opts);
    let failed = nas.create("web", COMPOSE_FOO);
    assert_eq!(failed["state"], "FAILED", "{failed}");
    assert_eq!(failed["exc_info"]["type"], "CallError", "{failed}");
    assert_eq!(failed["exc_info"]["errno"], 14, "{failed}");
    assert_eq!(
        failed["error"],
        "[EFAULT] Failed 'up' action for 'web' app. Please check /var/log/app_lifecycle.log for more details"
    );
    assert!(nas.call("app.query", json!([[["name", "=", "web"]]]))["result"].as_array().unwrap().is_empty());
    // No Compose installed: the NAS check is skipped, the app installs.
    let opts = SimOptions { version: SimVersion::V25_10, compose: None, ..Default::default() };
    assert_eq!(nas_job::NasJobs::start(opts).create("web", COMPOSE_FOO)["state"], "SUCCESS");
}

#[test]
fn the_dry_run_shows_exactly_the_bytes_sent() {
    // `$$` is Compose's escape of `$`: sent as `$$` once (never `$$$$`), keys in document order.
    let yaml = "services:\n  zeta:\n    image: alpine:3.20\n    command: sh -c 'echo $$(cat /run/x) $${HOME}'\n    \
                environment:\n      B: \"1\"\n      A: 'a$$b'\n    mem_limit: 64m\n";
    let report = run(yaml, &env(&[]), &PolicyConfig::default(), None);
    let sent = report.rendered.clone().unwrap();
    assert!(sent.contains("$$(cat /run/x) $${HOME}") && !sent.contains("$$$$"), "{sent}");
    assert_eq!(compose::mask_rendered(&sent).as_deref(), Some(sent.as_str()));
    // With a secret, only the secret's value differs.
    let yaml = "services:\n  zeta:\n    image: alpine:3.20\n    command: echo $$HOME\n    environment:\n      \
                DB_PASSWORD: hunter2\n      Z: \"$$x\"\n    mem_limit: 64m\n";
    let sent = run(yaml, &env(&[]), &PolicyConfig::default(), None).rendered.unwrap();
    let shown = compose::mask_rendered(&sent).unwrap();
    assert_eq!(shown, sent.replace("hunter2", truenas_mcp::compose::secrets::MASK).replace("***\n", "\"***\"\n"));
}

/// Documents real Compose (v2.40) refuses are errors here too; each row's refusal was checked with
/// `docker-compose config` (the interop target re-checks the fixtures and the corpus against the real binary).
#[test]
fn what_real_compose_refuses_is_an_error() {
    table(&[
        ("unknown key", svc("foo: 1"), &["compose-schema"]),
        (
            "unknown top-level key",
            "services:\n  web:\n    image: nginx:1.25\n    mem_limit: 512m\nfoo: 1\n".into(),
            &["compose-schema"],
        ),
        ("x- keys are extensions", svc("x-note: hello"), &[]),
        ("wrong type", svc("restart: [always]"), &["compose-schema"]),
        ("undefined network", svc("networks: [backend]"), &["undefined-reference"]),
        ("undefined network (mapping)", svc("networks:\n  backend: {}"), &["undefined-reference"]),
        ("default network", svc("networks: [default]"), &[]),
        ("undefined secret", svc("secrets: [db_password]"), &["undefined-reference"]),
        ("undefined config", svc("configs:\n  - source: app_conf\n    target: /c"), &["undefined-reference"]),
        ("depends_on undefined", svc("depends_on: [db]"), &["undefined-reference"]),
        (
            "depends_on not required",
            svc("depends_on:\n  db: {condition: service_started, required: false}"),
            &["undefined-reference"],
        ),
        ("links undefined", svc("links: [\"db:database\"]"), &["undefined-reference"]),
        ("depends on itself", svc("depends_on: [web]"), &["dependency-cycle"]),
        (
            "cycle of two",
            format!("{}  db:\n    image: postgres:16\n    mem_limit: 1g\n    links: [web]\n", svc("depends_on: [db]")),
            &["dependency-cycle"],
        ),
    ]);
    let report = run(&svc("depends_on: [web]"), &BTreeMap::new(), &PolicyConfig::default(), None);
    assert_eq!(
        report.findings[0].message,
        "dependency cycle detected: web -> web: Compose cannot order these services"
    );
    let report = run(&svc("foo: 1"), &BTreeMap::new(), &PolicyConfig::default(), None);
    assert_eq!(report.findings[0].path, "services.web.foo", "{:?}", report.findings);
    // The operator cannot allow these: the NAS refuses the document anyway.
    let policy = PolicyConfig { allow_rules: vec!["compose-schema".into()], ..PolicyConfig::default() };
    assert!(run(&svc("foo: 1"), &BTreeMap::new(), &policy, None).has_errors());
}

#[test]
fn compose_project_name_is_ix_app_on_truenas() {
    let yaml = svc("environment:\n  PROJECT: ${COMPOSE_PROJECT_NAME}\n  DATA: /mnt/tank/${COMPOSE_PROJECT_NAME:-x}");
    let env = env(&[("COMPOSE_PROJECT_NAME", "ignored: -p wins")]);
    let policy = PolicyConfig::default();
    let named = compose::validate_app(
        &ValidateInput {
            yaml: &yaml,
            env: &env,
            used_ports: None,
            policy: &policy,
            derive_portals: false,
            nas_version: None,
        },
        Some("immich"),
    );
    assert_eq!(ids(&named), Vec::<&str>::new(), "{:?}", named.findings);
    let sent = named.rendered.unwrap();
    assert!(sent.contains("PROJECT: ix-immich\n") && sent.contains("DATA: /mnt/tank/ix-immich\n"), "{sent}");
    // Without the app name the value is assumed, and the report says which.
    let unnamed = run(&yaml, &BTreeMap::new(), &policy, None);
    assert_eq!(ids(&unnamed), vec!["project-name-assumed"]);
    assert!(unnamed.findings[0].message.contains("`ix-app` was assumed"), "{}", unnamed.findings[0].message);
    assert!(unnamed.unresolved.is_empty());
}

#[test]
fn bare_environment_entries_are_filled_from_env_or_reported() {
    let yaml = svc("environment:\n  - TZ\n  - LANG=C\n  - DB_PASSWORD");
    let report = run(&yaml, &env(&[("TZ", "Europe/Paris"), ("DB_PASSWORD", "s3cr$t")]), &PolicyConfig::default(), None);
    assert_eq!(ids(&report), vec!["plaintext-secret"], "{:?}", report.findings);
    let sent = report.rendered.unwrap();
    assert!(sent.contains("- TZ=Europe/Paris\n") && sent.contains("- \"DB_PASSWORD=s3cr$$t\"\n"), "{sent}");
    assert!(report
        .substitutions
        .iter()
        .any(|s| s.variable == "DB_PASSWORD" && s.path == "services.web.environment[2]"));
    let yaml = svc("environment:\n  TZ:\n  LANG: C");
    let report = run(&yaml, &env(&[("TZ", "UTC")]), &PolicyConfig::default(), None);
    assert!(report.rendered.unwrap().contains("TZ: UTC\n"));
    let report = run(&yaml, &BTreeMap::new(), &PolicyConfig::default(), None);
    assert_eq!(ids(&report), vec!["environment-unset"]);
    assert_eq!(report.findings[0].path, "services.web.environment.TZ");
}

/// Real Compose v2.40 keeps what a merge key brings for a key reset beside it (`docker compose config`; the interop
/// target compares the two on this document).
#[test]
fn a_reset_key_beside_a_merge_keeps_the_merged_value_like_compose() {
    let yaml = "x-base: &base\n  image: nginx:1.27\n  ports: [\"8080:80\"]\n  environment: {A: \"1\"}\nservices:\n  web:\n    \
                <<: *base\n    ports: !reset []\n    environment: !override {C: \"3\"}\n    user: !reset \"0\"\n    mem_limit: 64m\n";
    let report = run(yaml, &BTreeMap::new(), &PolicyConfig::default(), None);
    let sent = report.rendered.unwrap();
    assert!(
        sent.contains("    ports:\n      - \"8080:80\"\n") && !sent.contains("user") && !sent.contains('!'),
        "{sent}"
    );
    assert_eq!(report.published_ports.len(), 1);
}

/// A deploy sets `COMPOSE_PROJECT_NAME` to `ix-<app>`, as TrueNAS does, for the name it deploys under.
#[test]
fn a_deploy_resolves_compose_project_name_to_its_own_app() {
    let compose =
        "services:\n  web:\n    image: nginx:1.27\n    environment:\n      PROJECT: ${COMPOSE_PROJECT_NAME}\n";
    let out = std::process::Command::new(crate::support::binary())
        .args(["--mock", "call", "deploy_custom_app", "--json", "app_name=blog", "dry_run=true"])
        .arg(format!("compose_yaml={compose}"))
        .env("TRUENAS_AUDIT_LOG", "off")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("PROJECT: ix-blog"), "{stdout}");
    assert!(!stdout.contains("project-name-assumed"), "{stdout}");
}

#[test]
fn include_is_refused_for_the_reason_that_holds_on_the_nas_release() {
    let yaml = format!("include:\n  - ./db.yaml\n  - path: [./cache.yaml, ./override.yaml]\n{}", svc(""));
    let judge = |nas_version| {
        let policy = PolicyConfig::default();
        let input = ValidateInput {
            yaml: &yaml,
            env: &BTreeMap::new(),
            used_ports: None,
            policy: &policy,
            derive_portals: false,
            nas_version,
        };
        let report = validate(&input);
        assert_eq!(ids(&report), ["include-unsupported"], "{:#?}", report.findings);
        let f = &report.findings[0];
        assert_eq!((f.path.as_str(), f.fix.as_str()), ("include", "inline the included services into this file"));
        f.message.clone()
    };
    let older = judge(Some((25, 10)));
    assert!(older.starts_with("TrueNAS 25.10 does not support `include:`; 26.0 does"), "{older}");
    assert!(!older.contains("cannot read"), "{older}");
    let on_26 = judge(Some((26, 0)));
    assert!(!on_26.contains("does not support"), "{on_26}");
    assert!(
        on_26.contains("`./db.yaml`, `./cache.yaml`, `./override.yaml`") && on_26.contains("cannot read them"),
        "{on_26}"
    );
    let unknown = judge(None);
    assert!(unknown.contains("needs TrueNAS 26.0") && unknown.contains("cannot read them"), "{unknown}");
    assert!(unknown.contains("`./db.yaml`"), "{unknown}");
}
