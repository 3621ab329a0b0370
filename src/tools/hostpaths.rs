//! Host paths made ready: every bind source of a compose is looked up on the NAS before a deploy; missing ones are
//! reported with the fix or, with `create_host_paths`, created (a dataset where the operator allows it and the
//! parent is a dataset's root, else directories) and given to the app's user (568:568 unless `user:` says other).

use serde_json::{json, Value};

use crate::compose::{Finding, Severity};
use crate::config::Config;
use crate::truenas::storage::{Dataset, Storage};
use crate::truenas::TnError;

/// The apps user and group TrueNAS apps run as.
const APPS_ID: u32 = 568;

/// A bind source that does not exist yet.
pub struct Missing {
    pub path: String,
    pub uid: u32,
    pub gid: u32,
    /// The dataset to create instead of a directory (its parent is a dataset root and the operator allows it).
    pub dataset: Option<String>,
}

impl Missing {
    fn how(&self) -> String {
        match &self.dataset {
            Some(d) => format!("dataset {d} at {} owned by {}:{}", self.path, self.uid, self.gid),
            None => format!("directory {} owned by {}:{}", self.path, self.uid, self.gid),
        }
    }
}

/// `user: "uid[:gid]"` of a service, when numeric.
fn user_of(service: &Value) -> Option<(u32, u32)> {
    let user = match service.get("user")? {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let (u, g) = user.split_once(':').unwrap_or((&user, &user));
    Some((u.parse().ok()?, g.parse().ok()?))
}

/// Bind sources under the allowed roots with the owner the service using them runs as.
fn sources(compose: &Value, config: &Config) -> Vec<(String, u32, u32)> {
    let mut out: Vec<(String, u32, u32)> = Vec::new();
    for svc in compose.get("services").and_then(Value::as_object).into_iter().flat_map(|s| s.values()) {
        let (uid, gid) = user_of(svc).unwrap_or((APPS_ID, APPS_ID));
        let one = json!({"services": {"s": svc}});
        for path in super::undo::bind_sources(&one) {
            let allowed =
                config.policy.allowed_host_paths.iter().any(|r| path == *r || path.starts_with(&format!("{r}/")));
            if allowed && !out.iter().any(|(p, _, _)| *p == path) {
                out.push((path, uid, gid));
            }
        }
    }
    out
}

/// The bind sources of `compose` that do not exist on the NAS.
pub fn missing(storage: &Storage, compose: &Value, config: &Config) -> Result<Vec<Missing>, TnError> {
    let mut out = Vec::new();
    let mut datasets: Option<Vec<Dataset>> = None;
    for (path, uid, gid) in sources(compose, config) {
        if storage.stat(&path)?.is_some() {
            continue;
        }
        let mut dataset = None;
        if config.host_path_datasets {
            let all = match &datasets {
                Some(d) => d,
                None => datasets.insert(storage.datasets()?),
            };
            let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
            if let Some(d) = all.iter().find(|d| d.mountpoint.as_deref() == Some(parent)) {
                dataset = Some(format!("{}/{}", d.name, path.rsplit('/').next().unwrap_or_default()));
            }
        }
        out.push(Missing { path, uid, gid, dataset });
    }
    Ok(out)
}

/// A warning finding per missing path, with the fix.
pub fn findings(missing: &[Missing]) -> Vec<Finding> {
    missing
        .iter()
        .map(|m| Finding {
            rule: "host-path-missing",
            severity: Severity::Warning,
            service: None,
            path: m.path.clone(),
            message: format!(
                "the bind source {} does not exist on the NAS (Docker would create it owned by root)",
                m.path
            ),
            fix: format!("pass create_host_paths: true to create the {}, or create it on the NAS", m.how()),
        })
        .collect()
}

/// What a dry run would create, one line each.
pub fn plan(missing: &[Missing]) -> Vec<String> {
    missing.iter().map(Missing::how).collect()
}

/// Create every missing path (parents first) and give it to its owner; the lines created.
pub fn create(storage: &Storage, missing: &[Missing]) -> Result<Vec<String>, String> {
    let mut done = Vec::new();
    for m in missing {
        match &m.dataset {
            Some(d) => storage.create_dataset(d).map_err(|e| format!("creating dataset {d}: {e}"))?,
            None => {
                let mut at = String::new();
                for part in m.path.trim_start_matches('/').split('/') {
                    at.push('/');
                    at.push_str(part);
                    if storage.stat(&at).map_err(|e| e.to_string())?.is_none() {
                        storage.mkdir(&at).map_err(|e| format!("creating {at}: {e}"))?;
                    }
                }
            }
        }
        storage.chown(&m.path, m.uid, m.gid).map_err(|e| format!("giving {} to {}:{}: {e}", m.path, m.uid, m.gid))?;
        done.push(m.how());
    }
    Ok(done)
}
