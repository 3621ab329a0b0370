//! Real Docker Compose in the simulator: since TrueNAS 25.10.1 the middleware runs `docker compose config` on
//! every custom app compose inside the app.create / app.update job (`custom_app_utils.validate_payload` →
//! `compose_utils.validate_compose_config`) and refuses what real Compose refuses; 25.04 has no such check and
//! the same compose fails later, at `up`. The simulator runs the binary named by `SimOptions::compose` (found from
//! `TRUENAS_SIM_COMPOSE`, else `docker-compose` or `docker` on `PATH`); without one it skips the check and says so
//! once in its log.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::wire::{Failure, FieldError, EFAULT, EINVAL};
use super::SimVersion;

/// The middleware's `run(..., timeout=30)` of `docker compose config`.
const CONFIG_TIMEOUT: Duration = Duration::from_secs(30);

/// The Compose to validate with: `$TRUENAS_SIM_COMPOSE` (a `docker-compose` v2 binary, or `docker` for the
/// plugin; empty = none), else `docker-compose`, else `docker` with a working `compose` plugin, on `PATH`.
pub(crate) fn find_compose() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TRUENAS_SIM_COMPOSE") {
        return (!path.is_empty()).then(|| PathBuf::from(path));
    }
    let on_path = |name: &str| {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    };
    on_path("docker-compose").or_else(|| {
        on_path("docker").filter(|docker| {
            Command::new(docker)
                .args(["compose", "version"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    })
}

/// Whether `version` validates with real Compose inside the job (25.10.1 and later; the simulator's 25.10 is
/// 25.10.6).
fn validates_in_job(version: SimVersion) -> bool {
    !matches!(version, SimVersion::V24_10 | SimVersion::V25_04)
}

/// The text the middleware hands to Compose: the string as sent, or `yaml.safe_dump` of the dict (JSON is YAML, and
/// Compose's verdict does not depend on the layout).
fn compose_text(data: &Value) -> Option<(String, &'static str)> {
    if let Some(text) = data.get("custom_compose_config_string").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        return Some((text.to_string(), "custom_compose_config_string"));
    }
    let dict = data.get("custom_compose_config").filter(|v| v.as_object().is_some_and(|o| !o.is_empty()))?;
    Some((serde_yaml::to_string(dict).ok()?, "custom_compose_config"))
}

/// `None` when Compose accepts the payload's compose (or no Compose is installed), else Compose's stderr, trimmed.
pub(crate) fn compose_refusal(compose: Option<&Path>, data: &Value) -> Option<String> {
    let Some(binary) = compose else {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            eprintln!(
                "simulator: no docker compose found (set TRUENAS_SIM_COMPOSE=/path/to/docker-compose): custom app \
                 composes are not validated the way TrueNAS 25.10.1+ validates them"
            )
        });
        return None;
    };
    let (text, _) = compose_text(data)?;
    match run_config(binary, &text) {
        Ok(None) => None,
        Ok(Some(stderr)) => Some(stderr),
        Err(e) => {
            eprintln!("simulator: cannot run {}: {e}; compose not validated", binary.display());
            None
        }
    }
}

/// The job failure of 25.10.1+ when real Compose refuses the payload's compose: `ValidationErrors` with one EINVAL
/// error on `<schema>.<field>`, `Invalid compose configuration: <stderr>`.
pub(crate) fn validate_in_job(
    version: SimVersion,
    compose: Option<&Path>,
    data: &Value,
    schema: &str,
) -> Result<(), Failure> {
    if !validates_in_job(version) {
        return Ok(());
    }
    let Some((_, field)) = compose_text(data) else { return Ok(()) };
    match compose_refusal(compose, data) {
        None => Ok(()),
        Some(stderr) => Err(Failure::validation(vec![FieldError::new(
            format!("{schema}.{field}"),
            format!("Invalid compose configuration: {stderr}"),
            EINVAL,
        )])),
    }
}

/// 25.04 (no check in the job): what `compose up` of a Compose-invalid document ends in, `None` on later releases or
/// when Compose accepts it.
pub(crate) fn up_failure(version: SimVersion, compose: Option<&Path>, data: &Value, app: &str) -> Option<Failure> {
    if version != SimVersion::V25_04 {
        return None;
    }
    compose_refusal(compose, data)?;
    Some(Failure::call(
        EFAULT,
        format!("Failed 'up' action for '{app}' app. Please check /var/log/app_lifecycle.log for more details"),
    ))
}

/// `docker compose -f <tmp>.yaml config` (stdout discarded, as the middleware does): `Ok(None)` on success, else
/// the trimmed stderr (`Invalid compose configuration` when empty). The subprocess gets no environment of ours:
/// the middleware's has none of the user's variables, so `${VAR}` must not be filled from the test machine.
fn run_config(binary: &Path, text: &str) -> std::io::Result<Option<String>> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let file =
        std::env::temp_dir().join(format!("tmp{}{}.yaml", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
    std::fs::File::create(&file)?.write_all(text.as_bytes())?;
    let mut command = Command::new(binary);
    if binary.file_name().is_some_and(|n| n == "docker") {
        command.arg("compose");
    }
    command.arg("-f").arg(&file).arg("config").env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    let result = run_bounded(command);
    let _ = std::fs::remove_file(&file);
    let (ok, stderr) = result?;
    let stderr = stderr.trim();
    Ok((!ok).then(|| if stderr.is_empty() { "Invalid compose configuration".into() } else { stderr.to_string() }))
}

/// Run to completion (killed after [`CONFIG_TIMEOUT`]); (success, stderr).
fn run_bounded(mut command: Command) -> std::io::Result<(bool, String)> {
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let mut pipe = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + CONFIG_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stderr = reader.join().unwrap_or_default();
    match status {
        Some(s) => Ok((s.success(), stderr)),
        None => Err(std::io::Error::other("docker compose config timed out after 30 s")),
    }
}
