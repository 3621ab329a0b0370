//! Mock mode's memory (`--mock-state FILE` / `TRUENAS_MOCK_STATE`): the simulator's apps saved to a JSON file
//! after every change and loaded at start, so `call deploy_custom_app` and a later `call get_custom_app_status`
//! (two processes, two simulators) see the same NAS.
//!
//! Only what a person would miss is kept: each app's compose, whether it is deployed or stopped, its container
//! generation and the images the update cache flags. Jobs, sessions and keys start afresh, as after a reboot.
//! Deployed apps are loaded settled (running, or crashed per the image convention).
//! Two processes changing apps at the same time through one file: the last save wins (each save is whole and
//! atomic, so the file is never torn).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};

use super::apps::{App, AppState};

/// What the file says it is, so an unrelated JSON file is refused rather than overwritten.
const FORMAT: &str = "truenas-mcp mock state 1";

/// The apps saved in `path`; `Ok(None)` when there is no file yet (the simulator starts from its seeds).
pub(crate) fn load(path: &Path) -> Result<Option<BTreeMap<String, App>>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read the mock state file '{}': {e}", path.display())),
    };
    let bad = |why: &str| format!("the mock state file '{}' {why}: delete it to start afresh", path.display());
    let v: Value = serde_json::from_str(&text).map_err(|e| bad(&format!("is not JSON ({e})")))?;
    if v.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(bad(&format!("is not a truenas-mcp mock state (no \"format\": \"{FORMAT}\")")));
    }
    let mut apps = BTreeMap::new();
    for a in v.get("apps").and_then(Value::as_array).ok_or_else(|| bad("has no \"apps\" list"))? {
        let (Some(name), Some(compose)) = (a.get("name").and_then(Value::as_str), a.get("compose")) else {
            return Err(bad("has an app without \"name\" or \"compose\""));
        };
        let mut app = App::new(name, compose.clone());
        app.deploy_count = a.get("deploy_count").and_then(Value::as_u64).unwrap_or(0);
        app.outdated_images = serde_json::from_value(a.get("outdated_images").cloned().unwrap_or(json!([])))
            .map_err(|_| bad("has \"outdated_images\" that are not strings"))?;
        if a.get("deployed").and_then(Value::as_bool) == Some(true) {
            // `deploy` counts this `up` again: the containers keep the ids they had when saved.
            app.deploy_count = app.deploy_count.saturating_sub(1);
            app.deploy();
            app.settle();
        }
        apps.insert(name.to_string(), app);
    }
    Ok(Some(apps))
}

/// Write `apps` to `path` atomically (a temporary file in the same directory, then a rename), readable only by
/// the owner: a compose may hold secrets.
pub(crate) fn save(path: &Path, apps: &BTreeMap<String, App>) -> std::io::Result<()> {
    let list: Vec<Value> = apps
        .values()
        .map(|a| {
            json!({
                "name": a.name,
                "deployed": !matches!(a.state, AppState::Stopped | AppState::Stopping),
                "deploy_count": a.deploy_count,
                "outdated_images": a.outdated_images,
                "compose": a.compose,
            })
        })
        .collect();
    let text = serde_json::to_vec_pretty(&json!({ "format": FORMAT, "apps": list }))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(&text)?;
        f.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("truenas-mcp-state-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn apps_survive_a_save_and_load_in_their_settled_state() {
        let dir = temp_dir("roundtrip");
        let path = dir.join("mock.json");
        assert!(load(&path).unwrap().is_none(), "no file yet: start from the seeds");
        let mut apps: BTreeMap<String, App> =
            super::super::apps::example_apps("tank").into_iter().map(|a| (a.name.clone(), a)).collect();
        apps.get_mut("whoami").unwrap().deploy(); // saved while DEPLOYING: loaded settled
        save(&path, &apps).unwrap();
        let loaded = load(&path).unwrap().unwrap();
        let states: Vec<_> = loaded.values().map(|a| (a.name.as_str(), a.state)).collect();
        assert_eq!(
            states,
            [("jellyfin", AppState::Stopped), ("postgres", AppState::Crashed), ("whoami", AppState::Running)]
        );
        assert_eq!(loaded["whoami"].containers[0].id, apps["whoami"].containers[0].id, "same container ids");
        assert_eq!(loaded["whoami"].outdated_images, ["traefik/whoami:v1.10"]);
        assert_eq!(loaded["jellyfin"].compose, apps["jellyfin"].compose);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["mock.json"], "no temporary file is left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_that_is_no_mock_state_is_refused_not_overwritten() {
        let dir = temp_dir("bad");
        let path = dir.join("notes.json");
        for text in ["not json", "{\"apps\": []}", "{\"format\": \"truenas-mcp mock state 1\"}"] {
            std::fs::write(&path, text).unwrap();
            let err = load(&path).unwrap_err();
            assert!(err.starts_with(&format!("the mock state file '{}' ", path.display())), "{err}");
            assert!(err.ends_with("delete it to start afresh"), "{err}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
