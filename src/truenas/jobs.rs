//! What a `core.get_jobs` job object says: still running (with progress) or finished (with a result or a typed
//! error). The actor feeds every job event through here (reference §4.2).

use serde_json::Value;

use super::error::{validation_items, TnError, ENOENT};
use super::types::JobProgress;

/// Where a job stands.
#[derive(Debug)]
pub enum JobState {
    Running(Option<JobProgress>),
    Finished(Result<Value, TnError>),
    /// ABORTED: the error fields are all null, so this is its own case.
    Aborted,
}

/// Read the (merged) job object `job` of job `job_id`.
pub fn job_state(job_id: i64, job: &Value) -> JobState {
    let state = job.get("state").and_then(Value::as_str).unwrap_or("");
    match state {
        "SUCCESS" => JobState::Finished(Ok(job.get("result").cloned().unwrap_or(Value::Null))),
        "ABORTED" => JobState::Aborted,
        "FAILED" => JobState::Finished(Err(job_failure(job_id, job))),
        _ => JobState::Running(progress(job_id, job)),
    }
}

fn progress(job_id: i64, job: &Value) -> Option<JobProgress> {
    let p = job.get("progress")?;
    let percent = p.get("percent").and_then(Value::as_f64)?;
    Some(JobProgress {
        job_id,
        percent,
        description: p.get("description").and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string),
    })
}

fn job_failure(job_id: i64, job: &Value) -> TnError {
    let exc = job.get("exc_info").filter(|e| e.is_object());
    let error_text = job
        .get("error")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| "the job failed without an error message".to_string());
    if let Some(exc) = exc {
        let items = validation_items(exc.get("extra"));
        if exc.get("type").and_then(Value::as_str) == Some("VALIDATION") {
            if let Some(nf) = items.iter().find(|i| i.errno == ENOENT) {
                return TnError::NotFound(nf.message.clone());
            }
            if !items.is_empty() {
                return TnError::Validation(items);
            }
        }
        if exc.get("errno").and_then(Value::as_i64) == Some(ENOENT) {
            return TnError::NotFound(strip_errname(&error_text));
        }
    }
    TnError::JobFailed { job_id, error: strip_errname(&error_text) }
}

/// `"[EFAULT] Failed to pull"` → `"Failed to pull"`.
fn strip_errname(text: &str) -> String {
    match text.trim().strip_prefix('[').and_then(|x| x.split_once("] ")) {
        Some((name, rest)) if name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') => {
            rest.trim().to_string()
        }
        _ => text.trim().to_string(),
    }
}

/// Merge a (possibly partial) `fields` update into the job object we know.
pub fn merge(job: &mut Value, fields: &Value) {
    match (job.as_object_mut(), fields.as_object()) {
        (Some(dst), Some(src)) => {
            for (k, v) in src {
                dst.insert(k.clone(), v.clone());
            }
        }
        _ => *job = fields.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn job_objects_map_to_states() {
        let cases = vec![
            (json!({"state":"WAITING","progress":{"percent":0,"description":null}}), "Running(Some(JobProgress { job_id: 7, percent: 0.0, description: None }))"),
            (json!({"state":"RUNNING","progress":{"percent":50,"description":"pulling"}}), "Running(Some(JobProgress { job_id: 7, percent: 50.0, description: Some(\"pulling\") }))"),
            (json!({"state":"RUNNING"}), "Running(None)"),
            (json!({"state":"SUCCESS","result":{"name":"web"}}), "Finished(Ok(Object {\"name\": String(\"web\")}))"),
            (json!({"state":"ABORTED","error":null,"exception":null,"exc_info":null}), "Aborted"),
            (
                json!({"state":"FAILED","error":"[EINVAL] app_name: bad","exc_info":{"type":"VALIDATION","errno":22,"extra":[["app_create.app_name","bad",22]]}}),
                "Finished(Err(Validation([ValidationItem { attribute: \"app_create.app_name\", message: \"bad\", errno: 22 }])))",
            ),
            (
                json!({"state":"FAILED","error":"[ENOENT] None: App x does not exist","exc_info":{"type":"VALIDATION","errno":22,"extra":[[null,"App x does not exist",2]]}}),
                "Finished(Err(NotFound(\"App x does not exist\")))",
            ),
            (
                json!({"state":"FAILED","error":"[EFAULT] Failed to pull image","exc_info":{"type":"CallError","errno":14,"extra":null}}),
                "Finished(Err(JobFailed { job_id: 7, error: \"Failed to pull image\" }))",
            ),
            (
                json!({"state":"FAILED","error":null,"exc_info":null}),
                "Finished(Err(JobFailed { job_id: 7, error: \"the job failed without an error message\" }))",
            ),
        ];
        for (job, want) in cases {
            assert_eq!(format!("{:?}", job_state(7, &job)), want, "for {job}");
        }
    }

    #[test]
    fn partial_updates_merge() {
        let mut job = json!({"id":1,"state":"WAITING","method":"app.create"});
        merge(&mut job, &json!({"state":"RUNNING","progress":{"percent":10}}));
        assert_eq!(job, json!({"id":1,"state":"RUNNING","method":"app.create","progress":{"percent":10}}));
    }
}
