//! Real Docker Compose (v2.40.3, pinned by `.ci/interop-setup`) as the judge of our compose engine: what we would
//! send is accepted by `docker compose config` and means what the original meant, our `${VAR}` interpolation gives
//! Compose's values, and the simulator refuses a compose exactly as TrueNAS 25.10.1+ does with the real binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use serde_json::Value;
use truenas_mcp::compose::{validate_app, Report, ValidateInput};
use truenas_mcp::config::{PolicyConfig, PolicyLevel};
use truenas_mcp::sim::{SimOptions, SimVersion};

use crate::external::docker_compose;
use crate::nas_job::NasJobs;
use crate::support::{repo_root, tempdir};

/// `docker-compose -p ix-<app> -f <file> config --format json` of `text` with exactly `env` as its environment:
/// Ok(the resolved project) or Err(stderr).
fn compose_config(compose: &Path, text: &str, env: &BTreeMap<String, String>) -> Result<Value, String> {
    // One directory for every call, so that relative paths resolve alike for an original and its rendering; it
    // holds the env files the corpus names (a user's `.env` and friends), empty: Compose refuses a missing one.
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = DIR.get_or_init(|| {
        let dir = tempdir("real-compose");
        for name in [".env", "db.env", "docker-compose.env"] {
            std::fs::write(dir.join(name), "").unwrap();
        }
        dir
    });
    let file = dir.join(format!("compose-{}.yaml", SEQ.fetch_add(1, Ordering::Relaxed)));
    std::fs::write(&file, text).unwrap();
    let out = Command::new(compose)
        .args(["-p", "ix-app", "-f"])
        .arg(&file)
        .args(["config", "--format", "json"])
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .output()
        .expect("run docker-compose");
    if out.status.success() {
        Ok(serde_json::from_slice(&out.stdout).expect("compose config JSON"))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn ours(yaml: &str, env: &BTreeMap<String, String>, policy: &PolicyConfig) -> Report {
    let input = ValidateInput { yaml, env, used_ports: None, policy, derive_portals: false, nas_version: None };
    validate_app(&input, Some("app"))
}

/// The compose files of the project's fixtures and the gathered corpus.
fn documents() -> Vec<(String, String)> {
    let mut docs = Vec::new();
    for dir in ["fixtures/compose", "fixtures/compose/corpus"] {
        let mut paths: Vec<_> = std::fs::read_dir(repo_root().join(dir))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        paths.sort();
        for p in paths {
            docs.push((p.display().to_string(), std::fs::read_to_string(&p).unwrap()));
        }
    }
    docs
}

#[test]
fn what_we_send_real_compose_accepts_and_reads_the_same() {
    let Some(compose) = docker_compose() else { return };
    let policy = PolicyConfig { level: PolicyLevel::Permissive, ..PolicyConfig::default() };
    let (mut sent_checked, mut compared) = (0, 0);
    let mut disagreements = Vec::new();
    for (name, yaml) in documents() {
        // A value for every variable the document needs (the caller's `.env`), shaped like a NAS path.
        let first = ours(&yaml, &BTreeMap::new(), &policy);
        let env: BTreeMap<String, String> =
            first.unresolved.iter().map(|v| (v.clone(), format!("/mnt/tank/{}", v.to_lowercase()))).collect();
        let report = ours(&yaml, &env, &policy);
        let Some(rendered) = report.rendered.as_deref() else { continue };
        let from_rendered = compose_config(&compose, rendered, &BTreeMap::new());
        // (a) What a deploy would send (no error finding) is accepted.
        if !report.has_errors() {
            sent_checked += 1;
            if let Err(e) = &from_rendered {
                disagreements.push(format!("{name}: we would send it, real Compose refuses: {e}"));
            }
        }
        // (b) Where Compose reads the original, our rendering (interpolated, tags resolved) reads the same.
        if let (Ok(original), Ok(rendered)) = (compose_config(&compose, &yaml, &env), &from_rendered) {
            compared += 1;
            if original["services"] != rendered["services"] {
                disagreements.push(format!(
                    "{name}: our rendering reads differently\n original: {}\n rendered: {}",
                    original["services"], rendered["services"]
                ));
            }
        }
    }
    assert!(sent_checked >= 5 && compared >= 12, "only {sent_checked} sendable, {compared} compared documents");
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[test]
fn documents_real_compose_refuses_are_errors_for_us() {
    let Some(compose) = docker_compose() else { return };
    let policy = PolicyConfig { level: PolicyLevel::Permissive, ..PolicyConfig::default() };
    let svc = |body: &str| format!("services:\n  web:\n    image: nginx:1.27\n    mem_limit: 64m\n{body}");
    let cases = [
        svc("    foo: 1\n"),
        svc("    networks: [backend]\n"),
        svc("    secrets: [db_password]\n"),
        svc("    depends_on: [db]\n"),
        svc("    depends_on: [web]\n"),
        svc("    restart: [always]\n"),
        svc("    user: 0\n"),
        format!("{}bar: 1\n", svc("")),
    ];
    for yaml in cases {
        let refusal = compose_config(&compose, &yaml, &BTreeMap::new()).expect_err(&yaml);
        let report = ours(&yaml, &BTreeMap::new(), &policy);
        assert!(report.has_errors(), "real Compose refuses ({refusal}), we do not:\n{yaml}\n{:?}", report.findings);
    }
}

#[test]
fn interpolation_gives_compose_values() {
    let Some(compose) = docker_compose() else { return };
    let forms = [
        ("PLAIN", "${A}"),
        ("BARE", "$A"),
        ("DEFAULT_SET", "${A:-d}"),
        ("DEFAULT_EMPTY", "${E:-d}"),
        ("DEFAULT_UNSET", "${U:-d}"),
        ("DASH_EMPTY", "${E-d}"),
        ("DASH_UNSET", "${U-d}"),
        ("REQUIRED", "${A:?must be set}"),
        ("ALT_SET", "${A:+x}"),
        ("ALT_EMPTY", "${E:+x}"),
        ("PLUS_EMPTY", "${E+x}"),
        ("ESCAPED", "$$A and $${A}"),
        ("NESTED", "${U:-${V:-${A}}}"),
        ("NESTED_ALT", "${A:+pre-${B}}"),
        ("MIXED", "a${A}b$B-c"),
        ("SPECIAL", "${B}"),
        ("PROJECT", "${COMPOSE_PROJECT_NAME}"),
        ("LONE", "cost: 5$ $"),
    ];
    let mut yaml = String::from("services:\n  web:\n    image: nginx:1.27\n    environment:\n");
    for (k, v) in forms {
        yaml.push_str(&format!("      {k}: '{v}'\n"));
    }
    let env: BTreeMap<String, String> = [("A", "alpha"), ("B", "b$e'ta \"q\""), ("E", "")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let theirs = compose_config(&compose, &yaml, &env).expect("compose config");
    let report = ours(&yaml, &env, &PolicyConfig::default());
    let sent = report.rendered.expect("rendered");
    // What we send, read by Compose with no environment (as on the NAS), must carry Compose's own values.
    let ours = compose_config(&compose, &sent, &BTreeMap::new()).expect("compose config of what we send");
    for (k, _) in forms {
        assert_eq!(
            ours["services"]["web"]["environment"][k], theirs["services"]["web"]["environment"][k],
            "{k}\n{sent}"
        );
    }
}

#[test]
fn reset_and_override_tags_resolve_like_compose() {
    let Some(compose) = docker_compose() else { return };
    let yaml = "x-base: &base\n  image: nginx:1.27\n  ports: [\"8080:80\"]\n  environment: {A: \"1\", B: \"2\"}\n\
                services:\n  web:\n    <<: *base\n    ports: !reset []\n    environment: !override {C: \"3\"}\n    mem_limit: 64m\n";
    let theirs = compose_config(&compose, yaml, &BTreeMap::new()).expect("compose config");
    let report = ours(yaml, &BTreeMap::new(), &PolicyConfig::default());
    let sent = report.rendered.expect("rendered");
    assert!(!sent.contains('!'), "{sent}");
    let ours = compose_config(&compose, &sent, &BTreeMap::new()).expect("compose config of what we send");
    assert_eq!(ours["services"], theirs["services"], "{sent}");
}

#[test]
fn the_simulator_refuses_with_the_message_of_real_compose() {
    let Some(compose) = docker_compose() else { return };
    let opts = SimOptions { version: SimVersion::V25_10, compose: Some(compose), ..Default::default() };
    let mut nas = NasJobs::start(opts);
    let job = nas.create("web", "services:\n  web:\n    image: nginx:1.27\n    foo: 1\n");
    assert_eq!(job["state"], "FAILED", "{job}");
    assert_eq!(job["exc_info"]["type"], "VALIDATION");
    let extra = &job["exc_info"]["extra"][0];
    assert_eq!(extra[0], "app_create.custom_compose_config_string");
    assert_eq!(extra[2], 22);
    let msg = extra[1].as_str().unwrap();
    assert!(
        msg.starts_with("Invalid compose configuration: validating /")
            && msg.ends_with(".yaml: services.web additional properties 'foo' not allowed"),
        "{msg}"
    );
    assert_eq!(nas.create("ok", "services:\n  web:\n    image: nginx:1.27\n")["state"], "SUCCESS");
}
