//! The simulated NAS storage: ZFS datasets, snapshots (holds, rollback that destroys newer snapshots only when
//! asked, space accounting), the ix-apps layout and a filesystem view with ownership.
//!
//! Method names follow the release: 24.10/25.04 answer `zfs.snapshot.*`, 25.10 and later `pool.snapshot.*` (the
//! other family is unknown there). `filesystem.chown`/`setperm` are jobs, as in the middleware. Kept apart from
//! `middleware.rs` so the dispatch only needs two hooks (`known`, `call`) and the job runner one (`job`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::middleware::{now_ms, Middleware};
use super::wire::{Failure, EFAULT, EINVAL, ENOENT};
use super::{query, SimVersion, Simulator};

const EEXIST: i64 = 17;
const EBUSY: i64 = 16;

/// One file or directory.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub dir: bool,
    pub content: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

impl Node {
    fn dir(uid: u32, gid: u32) -> Node {
        Node { dir: true, content: String::new(), uid, gid, mode: 0o755 }
    }
    fn size(&self) -> u64 {
        if self.dir {
            0
        } else {
            self.content.len() as u64
        }
    }
}

#[derive(Clone, Debug)]
struct Snapshot {
    dataset: String,
    snapshot_name: String,
    txg: u64,
    created_ms: u64,
    files: BTreeMap<String, Node>,
    held: bool,
    user_props: BTreeMap<String, String>,
}

/// Datasets (name → mountpoint), snapshots by id, the files of every dataset.
pub(crate) struct Storage {
    pool: String,
    datasets: BTreeMap<String, String>,
    snapshots: BTreeMap<String, Snapshot>,
    files: BTreeMap<String, Node>,
    txg: u64,
    /// Apps whose next image pull brings images that crash ([`Simulator::break_next_pull`]).
    broken_pulls: BTreeSet<String>,
}

/// The apps user and group every TrueNAS app runs as.
const APPS: u32 = 568;

impl Storage {
    /// The pool with the ix-apps layout, an `apps` and a `media` dataset, and the example apps' directories.
    pub(crate) fn new(pool: &str) -> Storage {
        let mut s = Storage {
            pool: pool.into(),
            datasets: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            files: BTreeMap::new(),
            txg: 1,
            broken_pulls: BTreeSet::new(),
        };
        s.files.insert("/mnt".into(), Node::dir(0, 0));
        s.files.insert("/mnt/.ix-apps".into(), Node::dir(0, 0));
        for (name, mountpoint) in [
            (pool.to_string(), format!("/mnt/{pool}")),
            (format!("{pool}/ix-apps"), "/mnt/.ix-apps".into()),
            (format!("{pool}/ix-apps/app_configs"), "/mnt/.ix-apps/app_configs".into()),
            (format!("{pool}/ix-apps/app_mounts"), "/mnt/.ix-apps/app_mounts".into()),
            (format!("{pool}/ix-apps/docker"), "/mnt/.ix-apps/docker".into()),
            (format!("{pool}/apps"), format!("/mnt/{pool}/apps")),
            (format!("{pool}/media"), format!("/mnt/{pool}/media")),
        ] {
            s.files.insert(mountpoint.clone(), Node::dir(0, 0));
            s.datasets.insert(name, mountpoint);
        }
        for dir in ["whoami", "jellyfin", "jellyfin/config", "jellyfin/cache", "postgres", "postgres/data"] {
            s.files.insert(format!("/mnt/{pool}/apps/{dir}"), Node::dir(APPS, APPS));
        }
        s
    }

    /// The dataset whose mountpoint holds `path` (the longest match).
    fn dataset_of(&self, path: &str) -> Option<&str> {
        self.datasets
            .iter()
            .filter(|(_, mp)| path == mp.as_str() || path.starts_with(&format!("{mp}/")))
            .max_by_key(|(_, mp)| mp.len())
            .map(|(name, _)| name.as_str())
    }

    /// The files that belong to `dataset` (not to a child dataset mounted below it).
    fn files_of(&self, dataset: &str) -> BTreeMap<String, Node> {
        self.files
            .iter()
            .filter(|(p, _)| self.dataset_of(p) == Some(dataset))
            .map(|(p, n)| (p.clone(), n.clone()))
            .collect()
    }

    fn referenced(&self, dataset: &str) -> u64 {
        self.files_of(dataset).values().map(Node::size).sum()
    }

    /// Space only the snapshot still holds: its files that were changed or deleted since.
    fn snapshot_used(&self, snap: &Snapshot) -> u64 {
        snap.files.iter().filter(|(p, n)| self.files.get(*p) != Some(n)).map(|(_, n)| n.size()).sum()
    }

    fn dataset_entry(&self, name: &str) -> Value {
        let used: u64 = self.referenced(name)
            + self.snapshots.values().filter(|s| s.dataset == name).map(|s| self.snapshot_used(s)).sum::<u64>();
        json!({
            "id": name, "name": name, "pool": self.pool, "type": "FILESYSTEM", "encrypted": false,
            "mountpoint": self.datasets.get(name), "children": [],
            "used": size_prop(used), "available": size_prop(1_000_000_000_000),
        })
    }

    fn snapshot_entry(&self, id: &str, snap: &Snapshot, holds: bool) -> Value {
        let mut props = serde_json::Map::new();
        let created = (snap.created_ms / 1000).to_string();
        props.insert(
            "creation".into(),
            json!({"value": created, "rawvalue": created, "parsed": {"$date": snap.created_ms}, "source": "NONE"}),
        );
        props.insert("used".into(), size_prop(self.snapshot_used(snap)));
        props.insert("referenced".into(), size_prop(snap.files.values().map(Node::size).sum()));
        for (k, v) in &snap.user_props {
            props.insert(k.clone(), json!({"value": v, "rawvalue": v, "parsed": v, "source": "LOCAL"}));
        }
        let mut e = json!({
            "id": id, "name": id, "pool": self.pool, "type": "SNAPSHOT", "snapshot_name": snap.snapshot_name,
            "dataset": snap.dataset, "createtxg": snap.txg.to_string(), "properties": props,
        });
        if holds {
            e["holds"] = if snap.held { json!({"truenas": 1}) } else { json!({}) };
        }
        e
    }

    fn stat(&self, path: &str) -> Result<Value, Failure> {
        let node = self.files.get(path).ok_or_else(|| Failure::call(ENOENT, format!("Path {path} not found")))?;
        let t = now_ms() as f64 / 1000.0;
        let name = path.rsplit('/').next().unwrap_or_default();
        Ok(json!({
            "name": name, "path": path, "realpath": path, "type": if node.dir { "DIRECTORY" } else { "FILE" },
            "size": node.size(), "allocation_size": node.size(), "mode": node.mode | if node.dir { 0o40000 } else { 0o100000 },
            "mount_id": 42, "uid": node.uid, "gid": node.gid, "atime": t, "mtime": t, "ctime": t, "btime": t,
            "dev": 64770, "inode": 1234, "nlink": 2, "acl": false,
            "is_mountpoint": self.datasets.values().any(|mp| mp == path), "is_ctldir": false, "attributes": [],
            "xattrs": [], "zfs_attrs": [],
            "user": if node.uid == APPS { "apps" } else if node.uid == 0 { "root" } else { "" },
            "group": if node.gid == APPS { "apps" } else if node.gid == 0 { "root" } else { "" },
        }))
    }

    fn parent_is_dir(&self, path: &str) -> Result<(), Failure> {
        let parent = path.rsplit_once('/').map(|(p, _)| p).unwrap_or("");
        match self.files.get(parent) {
            Some(n) if n.dir => Ok(()),
            _ => Err(Failure::call(ENOENT, format!("{parent}: parent directory does not exist"))),
        }
    }
}

fn size_prop(bytes: u64) -> Value {
    json!({"value": bytes.to_string(), "rawvalue": bytes.to_string(), "parsed": bytes, "source": "NONE"})
}

/// The snapshot method family the release answers.
fn snapshot_namespace(version: SimVersion) -> &'static str {
    match version {
        SimVersion::V24_10 | SimVersion::V25_04 => "zfs.snapshot",
        _ => "pool.snapshot",
    }
}

const SNAPSHOT_VERBS: &[&str] = &["query", "create", "delete", "hold", "release", "rollback"];
const PLAIN: &[&str] = &["pool.dataset.query", "pool.dataset.create", "filesystem.stat", "filesystem.mkdir"];
const JOBS: &[&str] = &["filesystem.chown", "filesystem.setperm"];

/// Whether the release knows `method` (a storage method).
pub(crate) fn known(version: SimVersion, method: &str) -> bool {
    PLAIN.contains(&method)
        || JOBS.contains(&method)
        || method
            .strip_prefix(snapshot_namespace(version))
            .and_then(|rest| rest.strip_prefix('.'))
            .is_some_and(|verb| SNAPSHOT_VERBS.contains(&verb))
}

/// `filesystem.chown` and `filesystem.setperm` run as jobs.
pub(crate) fn is_job(method: &str) -> bool {
    JOBS.contains(&method)
}

fn str_arg<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A storage method call (`known` said yes).
pub(crate) fn call(mw: &Middleware, method: &str, params: &[Value]) -> Result<Value, Failure> {
    let arg = |i: usize| params.get(i).cloned().unwrap_or(Value::Null);
    let mut st = mw.state();
    let s = &mut st.storage;
    if let Some(verb) = method.strip_prefix("zfs.snapshot.").or_else(|| method.strip_prefix("pool.snapshot.")) {
        return snapshot_call(s, verb, &arg(0), &arg(1));
    }
    match method {
        "pool.dataset.query" => {
            let items: Vec<Value> = s.datasets.keys().map(|n| s.dataset_entry(n)).collect();
            query::apply(items, &arg(0), &without_extra(arg(1)))
        }
        "pool.dataset.create" => {
            let data = arg(0);
            let name = str_arg(&data, "name").to_string();
            if s.datasets.contains_key(&name) {
                return Err(Failure::call(EEXIST, format!("{name} already exists")));
            }
            let Some(parent_mp) = name.rsplit_once('/').and_then(|(p, _)| s.datasets.get(p)).cloned() else {
                return Err(Failure::invalid("pool_dataset_create.name", "Parent dataset does not exist", ENOENT));
            };
            let mountpoint = format!("{parent_mp}/{}", name.rsplit('/').next().unwrap_or_default());
            s.files.entry(mountpoint.clone()).or_insert(Node::dir(0, 0));
            s.datasets.insert(name.clone(), mountpoint);
            Ok(s.dataset_entry(&name))
        }
        "filesystem.stat" => s.stat(arg(0).as_str().unwrap_or_default()),
        "filesystem.mkdir" => {
            let data = arg(0);
            let path = str_arg(&data, "path").trim_end_matches('/').to_string();
            if s.files.contains_key(&path) {
                return Err(Failure::call(EEXIST, format!("{path}: path already exists")));
            }
            s.parent_is_dir(&path)?;
            let mode = data.pointer("/options/mode").and_then(Value::as_str).unwrap_or("755");
            let mut node = Node::dir(0, 0);
            node.mode = u32::from_str_radix(mode, 8).unwrap_or(0o755);
            s.files.insert(path.clone(), node);
            s.stat(&path)
        }
        other => Err(Failure::MethodNotFound { method: other.to_string() }),
    }
}

fn without_extra(mut options: Value) -> Value {
    if let Some(o) = options.as_object_mut() {
        o.remove("extra");
    }
    options
}

fn snapshot_call(s: &mut Storage, verb: &str, first: &Value, second: &Value) -> Result<Value, Failure> {
    let missing = |id: &str| Failure::call(ENOENT, format!("[ENOENT] {id}: snapshot not found"));
    match verb {
        "query" => {
            let holds = second.pointer("/extra/holds").and_then(Value::as_bool) == Some(true);
            let items: Vec<Value> = s.snapshots.iter().map(|(id, snap)| s.snapshot_entry(id, snap, holds)).collect();
            query::apply(items, first, &without_extra(second.clone()))
        }
        "create" => {
            let dataset = str_arg(first, "dataset").to_string();
            let name = str_arg(first, "name").to_string();
            if !s.datasets.contains_key(&dataset) {
                return Err(Failure::call(ENOENT, format!("Dataset {dataset} not found")));
            }
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)) {
                return Err(Failure::invalid("snapshot_create.name", "Invalid snapshot name", EINVAL));
            }
            let id = format!("{dataset}@{name}");
            if s.snapshots.contains_key(&id) {
                return Err(Failure::call(EEXIST, format!("snapshot {id} already exists")));
            }
            let user_props = first
                .get("properties")
                .and_then(Value::as_object)
                .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
                .unwrap_or_default();
            s.txg += 1;
            let snap = Snapshot {
                files: s.files_of(&dataset),
                dataset,
                snapshot_name: name,
                txg: s.txg,
                created_ms: now_ms(),
                held: false,
                user_props,
            };
            let entry = s.snapshot_entry(&id, &snap, false);
            s.snapshots.insert(id, snap);
            Ok(entry)
        }
        "hold" | "release" => {
            let id = first.as_str().unwrap_or_default();
            let snap = s.snapshots.get_mut(id).ok_or_else(|| missing(id))?;
            snap.held = verb == "hold";
            Ok(Value::Null)
        }
        "delete" => {
            let id = first.as_str().unwrap_or_default();
            let snap = s.snapshots.get(id).ok_or_else(|| missing(id))?;
            if snap.held {
                return Err(Failure::call(EBUSY, format!("cannot destroy snapshot {id}: dataset is busy")));
            }
            s.snapshots.remove(id);
            Ok(json!(true))
        }
        "rollback" => {
            let id = first.as_str().unwrap_or_default();
            let snap = s.snapshots.get(id).cloned().ok_or_else(|| missing(id))?;
            let newer: Vec<String> = s
                .snapshots
                .iter()
                .filter(|(_, o)| o.dataset == snap.dataset && o.txg > snap.txg)
                .map(|(k, _)| k.clone())
                .collect();
            let recursive = second.get("recursive").and_then(Value::as_bool) == Some(true);
            if !newer.is_empty() && !recursive {
                return Err(Failure::call(
                    EFAULT,
                    format!(
                        "cannot rollback to '{id}': more recent snapshots or bookmarks exist\nuse '-r' to force \
                         deletion of the following snapshots and bookmarks:\n{}",
                        newer.join("\n")
                    ),
                ));
            }
            if let Some(held) = newer.iter().find(|k| s.snapshots[*k].held) {
                return Err(Failure::call(EBUSY, format!("cannot destroy snapshot {held}: dataset is busy")));
            }
            for k in &newer {
                s.snapshots.remove(k);
            }
            let current: Vec<String> = s.files_of(&snap.dataset).into_keys().collect();
            for p in current {
                s.files.remove(&p);
            }
            s.files.extend(snap.files);
            Ok(Value::Null)
        }
        other => Err(Failure::MethodNotFound { method: format!("snapshot.{other}") }),
    }
}

/// The body of a storage job (`filesystem.chown`, `filesystem.setperm`).
pub(crate) fn job(mw: &Middleware, method: &str, params: &[Value]) -> Result<Value, Failure> {
    let data = params.first().cloned().unwrap_or(Value::Null);
    let path = str_arg(&data, "path").to_string();
    let mut st = mw.state();
    let node = st.storage.files.get_mut(&path).ok_or_else(|| Failure::call(ENOENT, format!("{path}: not found")))?;
    if let Some(uid) = data.get("uid").and_then(Value::as_u64) {
        node.uid = uid as u32;
    }
    if let Some(gid) = data.get("gid").and_then(Value::as_u64) {
        node.gid = gid as u32;
    }
    if method == "filesystem.setperm" {
        if let Some(mode) = data.get("mode").and_then(Value::as_str) {
            node.mode = u32::from_str_radix(mode, 8).unwrap_or(node.mode);
        }
    }
    Ok(Value::Null)
}

/// After an image pull redeployed `app`: a broken pull leaves containers that crash once they settle.
pub(crate) fn after_pull(mw: &Middleware, app: &str) {
    let mut st = mw.state();
    if st.storage.broken_pulls.remove(app) {
        if let Some(a) = st.apps.get_mut(app) {
            for c in &mut a.containers {
                c.image = format!("{}-crash", c.image);
            }
        }
    }
}

/// Test hooks: what an app writes into its data, and what is there.
impl Simulator {
    /// Write `content` to the file `path` (its parent directory must exist), as the app (uid/gid 568) would.
    pub fn write_file(&self, path: &str, content: &str) {
        let mut st = self.mw.state();
        let node = Node { dir: false, content: content.into(), uid: APPS, gid: APPS, mode: 0o644 };
        st.storage.files.insert(path.into(), node);
    }

    /// The content of the file `path`, `None` when there is none.
    pub fn read_file(&self, path: &str) -> Option<String> {
        self.mw.state().storage.files.get(path).filter(|n| !n.dir).map(|n| n.content.clone())
    }

    /// The owner (uid, gid) of `path`, `None` when it does not exist.
    pub fn owner(&self, path: &str) -> Option<(u32, u32)> {
        self.mw.state().storage.files.get(path).map(|n| (n.uid, n.gid))
    }

    /// The next image pull of `app` brings images whose containers crash (until its compose changes).
    pub fn break_next_pull(&self, app: &str) {
        self.mw.state().storage.broken_pulls.insert(app.into());
    }

    /// Every dataset name.
    pub fn datasets(&self) -> Vec<String> {
        self.mw.state().storage.datasets.keys().cloned().collect()
    }

    /// Every snapshot id with whether it is held.
    pub fn snapshots(&self) -> Vec<(String, bool)> {
        self.mw.state().storage.snapshots.iter().map(|(k, s)| (k.clone(), s.held)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollback_destroys_newer_snapshots_only_when_asked_and_never_held_ones() {
        let mut s = Storage::new("tank");
        s.files.insert("/mnt/tank/apps/f".into(), Node { dir: false, content: "one".into(), uid: 0, gid: 0, mode: 0 });
        let create = |s: &mut Storage, n: &str| {
            snapshot_call(s, "create", &json!({"dataset": "tank/apps", "name": n}), &Value::Null).unwrap()
        };
        create(&mut s, "a");
        s.files.get_mut("/mnt/tank/apps/f").unwrap().content = "two!".into();
        create(&mut s, "b");
        let used = s.snapshot_used(&s.snapshots["tank/apps@a"]);
        assert_eq!(used, 3, "the old content is held only by the snapshot");
        let refused = snapshot_call(&mut s, "rollback", &json!("tank/apps@a"), &json!({})).unwrap_err();
        assert!(refused.reason().contains("more recent snapshots"), "{}", refused.reason());
        snapshot_call(&mut s, "hold", &json!("tank/apps@b"), &Value::Null).unwrap();
        let busy = snapshot_call(&mut s, "rollback", &json!("tank/apps@a"), &json!({"recursive": true})).unwrap_err();
        assert!(busy.reason().contains("busy"));
        snapshot_call(&mut s, "release", &json!("tank/apps@b"), &Value::Null).unwrap();
        snapshot_call(&mut s, "rollback", &json!("tank/apps@a"), &json!({"recursive": true})).unwrap();
        assert_eq!(s.files["/mnt/tank/apps/f"].content, "one");
        assert!(!s.snapshots.contains_key("tank/apps@b"));
    }

    #[test]
    fn snapshot_families_follow_the_release() {
        assert!(known(SimVersion::V25_04, "zfs.snapshot.create") && !known(SimVersion::V25_04, "pool.snapshot.create"));
        assert!(known(SimVersion::V25_10, "pool.snapshot.hold") && !known(SimVersion::V25_10, "zfs.snapshot.hold"));
    }
}
