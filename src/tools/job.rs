//! Running a TrueNAS job for a tool call: job progress becomes MCP progress, MCP cancellation aborts the job, and
//! the job id is returned with the result for the audit log and the answer.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::mcp::tool::{CallContext, LogLevel};
use crate::truenas::apps::{AppJob, Apps};
use crate::truenas::error::TnError;
use crate::truenas::JobOptions;

/// Job options that forward TrueNAS progress (scaled into `lo..hi` percent) and honour cancellation, and
/// remember the job id for the audit log.
fn job_options(
    ctx: &CallContext,
    method: &'static str,
    job_id: &Arc<Mutex<Option<i64>>>,
    lo: f64,
    hi: f64,
) -> JobOptions {
    let sink = ctx.progress.clone();
    let log = ctx.log.clone();
    let seen = job_id.clone();
    JobOptions {
        timeout: None,
        progress: Some(Box::new(move |p| {
            if let Ok(mut g) = seen.lock() {
                if g.is_none() {
                    // Tell the client the job id once, so a user can follow or abort it on the NAS too.
                    log.log(
                        LogLevel::Info,
                        "truenas",
                        json!({"message": "TrueNAS job started", "method": method,
                        "job_id": p.job_id}),
                    );
                }
                *g = Some(p.job_id);
            }
            let percent = lo + (hi - lo) * p.percent.clamp(0.0, 100.0) / 100.0;
            sink.report(percent, Some(100.0), p.description.as_deref());
        })),
        cancel: Some(ctx.cancel.clone()),
    }
}

/// A job that ran: its id when TrueNAS gave one, and how it ended.
pub struct Ran {
    pub job_id: Option<i64>,
    pub result: Result<Value, TnError>,
}

/// Run a job of `apps` with progress and cancellation.
pub fn run_job(apps: &Apps, job: &AppJob, ctx: &CallContext, span: (f64, f64), timeout: Option<Duration>) -> Ran {
    let seen = Arc::new(Mutex::new(None));
    let mut opts = job_options(ctx, job.method, &seen, span.0, span.1);
    opts.timeout = timeout;
    let result = apps.run(job, opts);
    let mut job_id = *seen.lock().unwrap_or_else(|p| p.into_inner());
    if let Err(
        TnError::JobFailed { job_id: id, .. }
        | TnError::JobAborted { job_id: id }
        | TnError::Cancelled { job_id: Some(id) },
    ) = &result
    {
        job_id = Some(*id);
    }
    Ran { job_id, result }
}
