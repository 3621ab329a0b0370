//! Append-only JSON Lines audit log of every change attempted on the NAS.
//!
//! One line per attempt: when, which tool, which app, the outcome, the TrueNAS job id, how long it took, and the
//! arguments with secrets removed (compose text and `env` values never reach the log; only their size and the
//! variable names do). The operator chooses the path (`TRUENAS_AUDIT_LOG`); `off` disables it.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::config::AuditTarget;

/// How an attempted change ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
    /// Refused before reaching the NAS (policy, read-only, writable apps, missing confirmation).
    Refused,
    /// The user declined the confirmation.
    Declined,
    /// The caller cancelled; the job was aborted.
    Cancelled,
    /// The connection dropped while the change was in flight.
    Unknown,
    /// The job was started and not waited for.
    Started,
}

/// One line of the audit log.
#[derive(Clone, Debug, Serialize)]
pub struct AuditRecord {
    /// RFC 3339 UTC, millisecond precision.
    pub time: String,
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

/// The audit log; shared by all workers.
pub struct AuditLog {
    path: Option<PathBuf>,
    lock: Mutex<()>,
}

impl AuditLog {
    pub fn new(target: &AuditTarget) -> AuditLog {
        let path = match target {
            AuditTarget::Off => None,
            AuditTarget::File(p) => Some(p.clone()),
        };
        AuditLog { path, lock: Mutex::new(()) }
    }

    pub fn is_enabled(&self) -> bool {
        self.path.is_some()
    }

    /// Append one record. A log that cannot be written is reported on stderr and never stops the tool.
    pub fn append(&self, record: &AuditRecord) {
        let Some(path) = &self.path else { return };
        let line = match serde_json::to_string(record) {
            Ok(l) => l,
            Err(e) => {
                log::error!("audit record not serialisable: {e}");
                return;
            }
        };
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let result = (|| -> std::io::Result<()> {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            let mut file = OpenOptions::new().create(true).append(true).open(path)?;
            // One write per line so concurrent appenders (other processes) never interleave within a line.
            file.write_all(format!("{line}\n").as_bytes())
        })();
        if let Err(e) = result {
            log::error!(
                "cannot write the audit log {}: {e} (set TRUENAS_AUDIT_LOG to a writable path or off)",
                path.display()
            );
        }
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

/// RFC 3339 UTC text of a point in time, e.g. `2026-11-24T03:04:05.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    crate::truenas::ejson::rfc3339_from_millis(since.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, "2000-02-29T00:00:00.000Z"),
            (1_795_489_445, "2026-11-24T03:04:05.000Z"),
            (4_107_542_399, "2100-02-28T23:59:59.000Z"),
        ];
        for (secs, want) in cases {
            assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(secs)), want);
        }
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(1_234)), "1970-01-01T00:00:01.234Z");
    }

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

    #[test]
    fn records_append_as_json_lines_and_create_parent_directories() {
        let dir = std::env::temp_dir().join(format!("truenas-mcp-audit-{}", std::process::id()));
        let path = dir.join("nested/deeper/audit.jsonl");
        let _ = std::fs::remove_dir_all(&dir);
        let log = AuditLog::new(&AuditTarget::File(path.clone()));
        for outcome in [Outcome::Succeeded, Outcome::Refused] {
            log.append(&AuditRecord {
                time: rfc3339(SystemTime::now()),
                tool: "stop_custom_app".into(),
                app: Some("web".into()),
                outcome,
                job_id: Some(7),
                duration_ms: 12,
                arguments: json!({"app_name": "web"}),
                detail: None,
            });
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["outcome"], "succeeded");
        assert_eq!(lines[1]["outcome"], "refused");
        assert_eq!(lines[1]["job_id"], 7);
        let _ = std::fs::remove_dir_all(&dir);

        let off = AuditLog::new(&AuditTarget::Off);
        assert!(!off.is_enabled());
    }
}
