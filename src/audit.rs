//! Append-only JSON Lines audit log of every change attempted on the NAS, written ahead of the change.
//!
//! A change writes two records with the same correlation `id`: `attempted` before its first write call can reach
//! the NAS, and one outcome record when the tool returns (`succeeded`, `failed`, `refused`, `declined`,
//! `cancelled`, `started`, `no_change`, or `unknown` when the process ends before the change does). Refusals by
//! the write gate and dry runs never reach the NAS: a refusal is one `refused` record, a dry run writes nothing.
//! A crash (or `kill -9`) leaves an `attempted` record without an outcome; readers treat that as `unknown`.
//!
//! Every record names the NAS (its host, or `simulator` in mock mode), the tool, the app and the arguments with
//! secrets removed ([`redact_arguments`]). The file is opened once (append) and checked at start-up; every record is
//! one `write` of one line, so concurrent writers never interleave within a line. The operator chooses the path
//! (`TRUENAS_AUDIT_LOG`); `off` disables it.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::config::AuditTarget;

/// What a record says about its change: `attempted` ahead of it, then how it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Written before the change can reach the NAS; an outcome record with the same id follows.
    Attempted,
    Succeeded,
    Failed,
    /// Refused before reaching the NAS (policy, read-only, writable apps, missing confirmation).
    Refused,
    /// The user declined the confirmation.
    Declined,
    /// The caller cancelled; the job was aborted.
    Cancelled,
    /// Nobody can tell whether the change happened: the connection dropped while it was in flight, or the
    /// process ended before the tool did.
    Unknown,
    /// The job was started and not waited for.
    Started,
    /// The call ended without sending a change (identical compose, a question sent back to the client).
    NoChange,
}

/// One line of the audit log.
#[derive(Clone, Debug, Serialize)]
pub struct AuditRecord {
    /// RFC 3339 UTC, millisecond precision.
    pub time: String,
    /// Correlation id: the same on a change's `attempted` and outcome records, unique across processes.
    pub id: String,
    /// The NAS host the change goes to, or `simulator` in mock mode.
    pub nas: String,
    pub tool: String,
    pub app: Option<String>,
    pub outcome: Outcome,
    pub job_id: Option<i64>,
    pub duration_ms: u64,
    /// The arguments with secrets redacted ([`redact_arguments`]).
    pub arguments: Value,
    /// A short reason for failures and refusals (never secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A change whose `attempted` record is written and whose outcome is not.
struct Pending {
    nas: String,
    tool: String,
    app: Option<String>,
    arguments: Value,
    started: Instant,
}

#[derive(Default)]
struct State {
    file: Option<File>,
    pending: BTreeMap<String, Pending>,
    /// Set at exit once the pending changes were written as `unknown`: no change may start after that.
    closed: bool,
}

/// The audit log; shared by all workers.
pub struct AuditLog {
    path: Option<PathBuf>,
    nas: String,
    /// Prefix of this process's correlation ids (start time and pid), so ids from several processes never collide.
    run: String,
    next: AtomicU64,
    state: Mutex<State>,
}

/// The handle of one attempted change; [`Attempt::finish`] writes its outcome. Dropped unfinished (a panicking
/// handler), it writes `unknown`.
pub struct Attempt<'a> {
    log: &'a AuditLog,
    id: String,
    finished: bool,
}

impl AuditLog {
    /// A log for `target` whose records name `nas`. Nothing is opened until [`AuditLog::open`] or the first record.
    pub fn new(target: &AuditTarget, nas: impl Into<String>) -> AuditLog {
        let path = match target {
            AuditTarget::Off => None,
            AuditTarget::File(p) => Some(p.clone()),
        };
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let run = format!("{:x}-{}", since.as_millis(), std::process::id());
        AuditLog { path, nas: nas.into(), run, next: AtomicU64::new(1), state: Mutex::new(State::default()) }
    }

    pub fn is_enabled(&self) -> bool {
        self.path.is_some()
    }

    /// The file records go to (`None` when the log is off).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Open the file now (creating its directory), so an unwritable path stops the program at start-up instead of
    /// surfacing at the first change. The error names the setting and the fix.
    pub fn open(&self) -> Result<(), String> {
        let mut state = self.lock();
        self.ensure_open(&mut state)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ensure_open(&self, state: &mut State) -> Result<(), String> {
        let Some(path) = &self.path else { return Ok(()) };
        if state.file.is_some() {
            return Ok(());
        }
        let opened = (|| -> std::io::Result<File> {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            OpenOptions::new().create(true).append(true).open(path)
        })();
        match opened {
            Ok(f) => {
                state.file = Some(f);
                Ok(())
            }
            Err(e) => Err(format!(
                "cannot write the audit log {}: {e} (set TRUENAS_AUDIT_LOG to a writable file, or \
                 TRUENAS_AUDIT_LOG=off to run without an audit log)",
                path.display()
            )),
        }
    }

    /// Append one record: one write of one line. An error is returned to the caller (and logged).
    fn write(&self, state: &mut State, record: &AuditRecord) -> Result<(), String> {
        if self.path.is_none() {
            return Ok(());
        }
        let line = serde_json::to_string(record).map_err(|e| format!("audit record not serialisable: {e}"))?;
        self.ensure_open(state)?;
        let file = state.file.as_mut().expect("opened above");
        // One write per line so concurrent appenders (other processes) never interleave within a line; a `File`
        // is unbuffered, so the line is in the file when `write_all` returns.
        let result = file.write_all(format!("{line}\n").as_bytes()).map_err(|e| {
            format!("cannot write the audit log {}: {e}", self.path.as_deref().unwrap_or(Path::new("")).display())
        });
        if let Err(e) = &result {
            log::error!("{e}");
            // Reopen next time: the file may have been rotated or its disk freed.
            state.file = None;
        }
        result
    }

    fn record(
        &self,
        nas: &str,
        id: String,
        tool: &str,
        app: Option<String>,
        outcome: Outcome,
        arguments: Value,
    ) -> AuditRecord {
        AuditRecord {
            time: crate::clock::rfc3339(SystemTime::now()),
            id,
            nas: nas.to_string(),
            tool: tool.to_string(),
            app,
            outcome,
            job_id: None,
            duration_ms: 0,
            arguments,
            detail: None,
        }
    }

    fn next_id(&self) -> String {
        format!("{}-{}", self.run, self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// Write the `attempted` record of a change that is about to reach the NAS. An error means the change must not
    /// go ahead: it could not be recorded (or the process is exiting).
    pub fn attempt(&self, tool: &str, app: Option<&str>, args: &Value) -> Result<Attempt<'_>, String> {
        self.attempt_on(&self.nas, tool, app, args)
    }

    /// [`AuditLog::attempt`] on the NAS labelled `nas` (one log serves every NAS of a fleet).
    pub fn attempt_on(&self, nas: &str, tool: &str, app: Option<&str>, args: &Value) -> Result<Attempt<'_>, String> {
        let id = self.next_id();
        let arguments = redact_arguments(args);
        let mut state = self.lock();
        if state.closed {
            return Err("the server is shutting down".into());
        }
        let app = app.map(str::to_string);
        let record = self.record(nas, id.clone(), tool, app.clone(), Outcome::Attempted, arguments.clone());
        self.write(&mut state, &record)?;
        if self.is_enabled() {
            state.pending.insert(
                id.clone(),
                Pending { nas: nas.to_string(), tool: tool.to_string(), app, arguments, started: Instant::now() },
            );
        }
        Ok(Attempt { log: self, id, finished: false })
    }

    /// A single outcome record for a call that never attempted anything (a refusal by the gate).
    pub fn single(&self, tool: &str, app: Option<&str>, args: &Value, outcome: Outcome, detail: Option<String>) {
        self.single_on(&self.nas, tool, app, args, outcome, detail)
    }

    /// [`AuditLog::single`] on the NAS labelled `nas`.
    pub fn single_on(
        &self,
        nas: &str,
        tool: &str,
        app: Option<&str>,
        args: &Value,
        outcome: Outcome,
        detail: Option<String>,
    ) {
        let mut record =
            self.record(nas, self.next_id(), tool, app.map(str::to_string), outcome, redact_arguments(args));
        record.detail = detail;
        let mut state = self.lock();
        let _ = self.write(&mut state, &record);
    }

    /// Write the outcome of pending change `id` (nothing if it was already settled, e.g. as `unknown` at exit).
    fn settle(&self, id: &str, outcome: Outcome, job_id: Option<i64>, detail: Option<String>) {
        let mut state = self.lock();
        let Some(p) = state.pending.remove(id) else { return };
        let mut record = self.record(&p.nas, id.to_string(), &p.tool, p.app, outcome, p.arguments);
        record.job_id = job_id;
        record.duration_ms = p.started.elapsed().as_millis() as u64;
        record.detail = detail;
        let _ = self.write(&mut state, &record);
    }

    /// At exit: write `unknown` for every change still in flight, and refuse new ones. Returns how many.
    pub fn close(&self) -> usize {
        let mut state = self.lock();
        state.closed = true;
        let pending = std::mem::take(&mut state.pending);
        for (id, p) in &pending {
            let mut record =
                self.record(&p.nas, id.clone(), &p.tool, p.app.clone(), Outcome::Unknown, p.arguments.clone());
            record.duration_ms = p.started.elapsed().as_millis() as u64;
            record.detail = Some("the process ended before the change finished; check the app on the NAS".into());
            let _ = self.write(&mut state, &record);
        }
        if !pending.is_empty() {
            log::warn!("{} change(s) still in flight at exit, audited as unknown", pending.len());
        }
        pending.len()
    }
}

impl Attempt<'_> {
    /// Write how the change ended.
    pub fn finish(mut self, outcome: Outcome, job_id: Option<i64>, detail: Option<String>) {
        self.finished = true;
        self.log.settle(&self.id, outcome, job_id, detail);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Only reached when the handler unwound (a panic): the NAS may or may not have been changed.
        self.log.settle(&self.id, Outcome::Unknown, None, Some("the tool failed with an internal error".into()));
    }
}

/// A copy of tool arguments safe to log: the log form of [`crate::redact::log_value`] (compose text becomes its
/// size, `env` its variable names, secrets `***`), with other long strings also reduced to their size.
pub fn redact_arguments(args: &Value) -> Value {
    let Value::Object(obj) = crate::redact::log_value(args) else { return json!({}) };
    let shorten = |(k, v): (String, Value)| match v {
        Value::String(s) if s.len() > 200 => (k, json!(format!("({} bytes)", s.len()))),
        v => (k, v),
    };
    Value::Object(obj.into_iter().map(shorten).collect::<Map<String, Value>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_keeps_names_and_drops_values() {
        let args = json!({
            "app_name": "web",
            "compose_yaml": "services:\n  db:\n    environment:\n      POSTGRES_PASSWORD: hunter2\n",
            "env": {"DB_PASSWORD": "hunter2", "TAG": "1.2"},
            "dry_run": false,
            "note": "x".repeat(201)
        });
        let r = redact_arguments(&args);
        let text = r.to_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(r["app_name"], "web");
        assert_eq!(r["env"], json!({"keys": ["DB_PASSWORD", "TAG"]}));
        assert_eq!(r["compose_yaml"], json!("(compose, 66 bytes)"));
        assert_eq!(r["dry_run"], false);
        assert_eq!(r["note"], json!("(201 bytes)"));
    }

    fn temp_log(tag: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("truenas-mcp-audit-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        (dir.clone(), dir.join("nested/deeper/audit.jsonl"))
    }

    fn lines(path: &Path) -> Vec<Value> {
        let text = std::fs::read_to_string(path).unwrap();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn records_append_as_json_lines_and_create_parent_directories() {
        let (dir, path) = temp_log("append");
        let log = AuditLog::new(&AuditTarget::File(path.clone()), "nas.local");
        log.open().unwrap();
        assert!(path.exists(), "opened at start-up, before any record");
        let attempt = log.attempt("stop_custom_app", Some("web"), &json!({"app_name": "web"})).unwrap();
        attempt.finish(Outcome::Succeeded, Some(7), None);
        log.single("stop_custom_app", Some("db"), &json!({"app_name": "db"}), Outcome::Refused, Some("no".into()));
        let lines = lines(&path);
        let outcomes: Vec<&str> = lines.iter().map(|l| l["outcome"].as_str().unwrap()).collect();
        assert_eq!(outcomes, ["attempted", "succeeded", "refused"]);
        assert_eq!(lines[0]["id"], lines[1]["id"]);
        assert_ne!(lines[1]["id"], lines[2]["id"]);
        assert_eq!(lines[1]["job_id"], 7);
        assert!(lines.iter().all(|l| l["nas"] == "nas.local"));
        let _ = std::fs::remove_dir_all(&dir);

        // One log serves a fleet: each record names the NAS of its call, the outcome that of its attempt.
        let (dir, path) = temp_log("fleet");
        let log = AuditLog::new(&AuditTarget::File(path.clone()), "main (nas.local)");
        let attempt = log.attempt_on("backup (10.0.0.3)", "stop_custom_app", Some("web"), &json!({})).unwrap();
        attempt.finish(Outcome::Succeeded, None, None);
        log.single("stop_custom_app", Some("db"), &json!({}), Outcome::Refused, None);
        let nas: Vec<Value> = self::tests::lines(&path).iter().map(|l| l["nas"].clone()).collect();
        assert_eq!(nas, [json!("backup (10.0.0.3)"), json!("backup (10.0.0.3)"), json!("main (nas.local)")]);
        let _ = std::fs::remove_dir_all(&dir);

        let off = AuditLog::new(&AuditTarget::Off, "nas.local");
        assert!(!off.is_enabled());
        assert!(off.open().is_ok() && off.attempt("stop_custom_app", None, &json!({})).is_ok());
    }

    #[test]
    fn close_settles_pending_changes_as_unknown_and_refuses_new_ones() {
        let (dir, path) = temp_log("close");
        let log = AuditLog::new(&AuditTarget::File(path.clone()), "simulator");
        let inflight = log.attempt("deploy_custom_app", Some("web"), &json!({"app_name": "web"})).unwrap();
        let done = log.attempt("stop_custom_app", Some("db"), &json!({"app_name": "db"})).unwrap();
        done.finish(Outcome::Succeeded, None, None);
        assert_eq!(log.close(), 1);
        assert!(log.attempt("stop_custom_app", Some("db"), &json!({})).is_err(), "no change starts after close");
        // The handler returning after exit began writes nothing more: the change already has its outcome.
        inflight.finish(Outcome::Cancelled, None, None);
        let lines = lines(&path);
        let outcomes: Vec<&str> = lines.iter().map(|l| l["outcome"].as_str().unwrap()).collect();
        assert_eq!(outcomes, ["attempted", "attempted", "succeeded", "unknown"]);
        assert_eq!(lines[3]["id"], lines[0]["id"]);
        assert_eq!(lines[3]["app"], "web");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_dropped_attempt_is_unknown() {
        let (dir, path) = temp_log("drop");
        let log = AuditLog::new(&AuditTarget::File(path.clone()), "simulator");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _attempt = log.attempt("stop_custom_app", Some("web"), &json!({})).unwrap();
            panic!("handler bug");
        }));
        assert!(result.is_err());
        let outcomes: Vec<Value> = lines(&path).iter().map(|l| l["outcome"].clone()).collect();
        assert_eq!(outcomes, [json!("attempted"), json!("unknown")]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unwritable_path_is_reported_with_the_fix() {
        let (dir, _) = temp_log("bad");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("file"), "").unwrap();
        let path = dir.join("file/audit.jsonl");
        let log = AuditLog::new(&AuditTarget::File(path.clone()), "simulator");
        let err = log.open().unwrap_err();
        assert!(err.starts_with(&format!("cannot write the audit log {}: ", path.display())), "{err}");
        assert!(err.contains("TRUENAS_AUDIT_LOG=off"), "{err}");
        assert!(log.attempt("stop_custom_app", None, &json!({})).is_err(), "an unrecorded change must not start");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
