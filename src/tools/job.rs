//! Running a TrueNAS job for a tool call: job progress becomes MCP progress, MCP cancellation aborts the job, and
//! the job id is returned with the result for the audit log and the answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::mcp::tool::{CallContext, LogLevel};
use crate::truenas::apps::{AppJob, Apps};
use crate::truenas::{JobOptions, JobOutcome};

/// Job options that forward TrueNAS progress (scaled into `lo..hi` percent) and honour cancellation.
fn job_options(ctx: &CallContext, method: &'static str, lo: f64, hi: f64) -> JobOptions {
    let sink = ctx.progress.clone();
    let log = ctx.log.clone();
    let told = AtomicBool::new(false);
    JobOptions {
        timeout: None,
        progress: Some(Box::new(move |p| {
            if !told.swap(true, Ordering::Relaxed) {
                // Tell the client the job id once, so a user can follow or abort it on the NAS too.
                log.log(
                    LogLevel::Info,
                    "truenas",
                    json!({"message": "TrueNAS job started", "method": method,
                    "job_id": p.job_id}),
                );
            }
            let percent = lo + (hi - lo) * p.percent.clamp(0.0, 100.0) / 100.0;
            sink.report(percent, Some(100.0), p.description.as_deref());
        })),
        cancel: Some(ctx.cancel.clone()),
    }
}

/// Run a job of `apps` with progress and cancellation.
pub fn run_job(
    apps: &Apps,
    job: &AppJob,
    ctx: &CallContext,
    span: (f64, f64),
    timeout: Option<Duration>,
) -> JobOutcome {
    let mut opts = job_options(ctx, job.method, span.0, span.1);
    opts.timeout = timeout;
    apps.run(job, opts)
}
