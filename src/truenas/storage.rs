//! Typed storage calls for the tools: ZFS snapshots (create, hold, release, rollback, delete, query), datasets and
//! the filesystem (stat, mkdir, chown), with the method names of the connected release.
//!
//! Snapshots moved namespaces: 24.10 and 25.04 publish `zfs.snapshot.*`; 25.10 publishes `pool.snapshot.*` (the
//! `zfs.snapshot.*` methods became private) and 26.0 keeps `pool.snapshot.*`. The params are the same objects in
//! both families (`A/v25_10_5/pool_snapshot.py`; the 24.10/25.04 `@accepts` of `zfs_/snapshot_crud.py`). A method
//! the NAS does not have becomes [`TnError::MethodNotFound`], which [`unavailable`] turns into a plain sentence.

use serde_json::{json, Value};

use super::client::{Client, JobOptions};
use super::error::TnError;
use super::types::ServerInfo;

/// One dataset: its name and where it is mounted.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    pub name: String,
    pub mountpoint: Option<String>,
    pub used: u64,
}

/// One snapshot as the tools need it.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// `dataset@name`.
    pub id: String,
    pub dataset: String,
    pub snapshot_name: String,
    pub createtxg: u64,
    /// Bytes only this snapshot still holds (changed or deleted since it was taken).
    pub used: u64,
    pub held: bool,
    /// ZFS user properties (`module:name` → value).
    pub user_properties: Vec<(String, String)>,
}

impl Snapshot {
    pub fn property(&self, key: &str) -> Option<&str> {
        self.user_properties.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// A file or directory (`filesystem.stat`).
#[derive(Clone, Debug, PartialEq)]
pub struct Stat {
    pub is_dir: bool,
    pub uid: i64,
    pub gid: i64,
}

/// The storage API of one connected NAS.
#[derive(Clone)]
pub struct Storage {
    client: Client,
    version: (u32, u32),
}

/// The sentence a tool shows when `e` means the release lacks the capability, else `None`.
pub fn unavailable(e: &TnError, what: &str, info: &ServerInfo) -> Option<String> {
    match e {
        TnError::MethodNotFound(method) => {
            Some(format!("{what} is not available on this NAS (TrueNAS {}): it has no {method} method", info.version))
        }
        _ => None,
    }
}

fn number(v: &Value) -> u64 {
    v.get("parsed")
        .and_then(|p| p.as_u64().or_else(|| p.as_str()?.parse().ok()))
        .or_else(|| v.get("rawvalue").and_then(Value::as_str).and_then(|s| s.parse().ok()))
        .unwrap_or(0)
}

fn snapshot_from(v: &Value) -> Snapshot {
    let props = v.get("properties").and_then(Value::as_object);
    let user_properties = props
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.contains(':'))
        .map(|(k, p)| (k.clone(), p.get("value").and_then(Value::as_str).unwrap_or_default().to_string()))
        .collect();
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    Snapshot {
        id: s("id"),
        dataset: s("dataset"),
        snapshot_name: s("snapshot_name"),
        createtxg: v.get("createtxg").and_then(|t| t.as_u64().or_else(|| t.as_str()?.parse().ok())).unwrap_or(0),
        used: props.and_then(|p| p.get("used")).map(number).unwrap_or(0),
        held: v.get("holds").and_then(Value::as_object).is_some_and(|h| !h.is_empty()),
        user_properties,
    }
}

impl Storage {
    pub fn new(client: &Client, info: &ServerInfo) -> Storage {
        Storage { client: client.clone(), version: info.version_tuple }
    }

    /// `zfs.snapshot` before 25.10, `pool.snapshot` from 25.10 on.
    pub fn snapshot_namespace(&self) -> &'static str {
        snapshot_namespace(self.version)
    }

    fn snapshot_method(&self, verb: &str) -> String {
        format!("{}.{verb}", self.snapshot_namespace())
    }

    /// Every dataset (flat), with its mountpoint.
    pub fn datasets(&self) -> Result<Vec<Dataset>, TnError> {
        let v = self.client.call("pool.dataset.query", json!([]))?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .map(|d| Dataset {
                name: d.get("id").and_then(Value::as_str).unwrap_or_default().to_string(),
                mountpoint: d.get("mountpoint").and_then(Value::as_str).map(str::to_string),
                used: d.get("used").map(number).unwrap_or(0),
            })
            .collect())
    }

    /// Snapshots matching `filters` (query filters), holds included.
    pub fn snapshots(&self, filters: Value) -> Result<Vec<Snapshot>, TnError> {
        let v = self.client.call(&self.snapshot_method("query"), json!([filters, {"extra": {"holds": true}}]))?;
        Ok(v.as_array().into_iter().flatten().map(snapshot_from).collect())
    }

    /// `<dataset>@<name>`, with ZFS user `properties` set on it.
    pub fn create_snapshot(&self, dataset: &str, name: &str, properties: Value) -> Result<Snapshot, TnError> {
        let params = json!([{"dataset": dataset, "name": name, "recursive": false, "properties": properties}]);
        Ok(snapshot_from(&self.client.call_mutating(&self.snapshot_method("create"), params)?))
    }

    pub fn hold(&self, id: &str) -> Result<(), TnError> {
        self.client.call_mutating(&self.snapshot_method("hold"), json!([id])).map(drop)
    }

    pub fn release(&self, id: &str) -> Result<(), TnError> {
        self.client.call_mutating(&self.snapshot_method("release"), json!([id])).map(drop)
    }

    pub fn delete_snapshot(&self, id: &str) -> Result<(), TnError> {
        self.client.call_mutating(&self.snapshot_method("delete"), json!([id])).map(drop)
    }

    /// Roll the dataset back to `id`; `destroy_newer` destroys the snapshots taken after it (ZFS refuses otherwise).
    pub fn rollback(&self, id: &str, destroy_newer: bool) -> Result<(), TnError> {
        self.client
            .call_mutating(&self.snapshot_method("rollback"), json!([id, {"recursive": destroy_newer}]))
            .map(drop)
    }

    /// `None` when `path` does not exist.
    pub fn stat(&self, path: &str) -> Result<Option<Stat>, TnError> {
        match self.client.call("filesystem.stat", json!([path])) {
            Ok(v) => Ok(Some(Stat {
                is_dir: v.get("type").and_then(Value::as_str) == Some("DIRECTORY"),
                uid: v.get("uid").and_then(Value::as_i64).unwrap_or(-1),
                gid: v.get("gid").and_then(Value::as_i64).unwrap_or(-1),
            })),
            Err(TnError::NotFound(_)) | Err(TnError::Call { errno: 2, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn mkdir(&self, path: &str) -> Result<(), TnError> {
        self.client.call_mutating("filesystem.mkdir", json!([{"path": path, "options": {"mode": "755"}}])).map(drop)
    }

    /// A filesystem dataset `name` (its parent must exist).
    pub fn create_dataset(&self, name: &str) -> Result<(), TnError> {
        self.client.call_mutating("pool.dataset.create", json!([{"name": name, "type": "FILESYSTEM"}])).map(drop)
    }

    /// `filesystem.chown` (a job) of `path` to `uid:gid`.
    pub fn chown(&self, path: &str, uid: u32, gid: u32) -> Result<(), TnError> {
        let params = json!([{"path": path, "uid": uid, "gid": gid}]);
        self.client.call_job("filesystem.chown", params, JobOptions::default()).result.map(drop)
    }
}

/// The snapshot method family of a release.
pub fn snapshot_namespace(version: (u32, u32)) -> &'static str {
    if version >= (25, 10) {
        "pool.snapshot"
    } else {
        "zfs.snapshot"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_methods_follow_the_release() {
        assert_eq!(snapshot_namespace((24, 10)), "zfs.snapshot");
        assert_eq!(snapshot_namespace((25, 4)), "zfs.snapshot");
        assert_eq!(snapshot_namespace((25, 10)), "pool.snapshot");
        assert_eq!(snapshot_namespace((26, 0)), "pool.snapshot");
    }

    #[test]
    fn snapshots_parse_used_space_holds_and_user_properties() {
        let s = snapshot_from(&json!({
            "id": "tank/apps@x", "dataset": "tank/apps", "snapshot_name": "x", "createtxg": "42",
            "holds": {"truenas": 1},
            "properties": {"used": {"parsed": 4096, "rawvalue": "4096", "value": "4K", "source": "NONE"},
                "truenas-mcp:app": {"value": "web", "rawvalue": "web", "parsed": "web", "source": "LOCAL"}},
        }));
        assert_eq!((s.createtxg, s.used, s.held), (42, 4096, true));
        assert_eq!(s.property("truenas-mcp:app"), Some("web"));
    }
}
