//! Every tool output, progress message, client log message and resource passes through the redaction module with
//! the values this server has seen in `env` arguments: handlers need not remember to mask them.

use std::sync::Arc;

use serde_json::Value;

use crate::mcp::tool::{CallContext, LogLevel, LogSink, ProgressSink, ResourceContents, ToolOutput};
use crate::redact::Secrets;

/// Remember the `env` values of a call, for this server's outputs and for the process's logs.
pub(super) fn remember(secrets: &Secrets, args: &Value) {
    secrets.remember_env(args.get("env"));
    crate::redact::log_secrets().remember_env(args.get("env"));
}

/// `ctx` with its progress and log notifications masked.
pub(super) fn context(ctx: &CallContext, secrets: &Arc<Secrets>) -> CallContext {
    CallContext {
        cancel: ctx.cancel.clone(),
        progress: Arc::new(Masked { inner: ctx.progress.clone(), secrets: secrets.clone() }),
        log: Arc::new(Masked { inner: ctx.log.clone(), secrets: secrets.clone() }),
        elicitor: ctx.elicitor.clone(),
    }
}

pub(super) fn output(mut out: ToolOutput, secrets: &Secrets) -> ToolOutput {
    out.text = secrets.mask(&out.text);
    if let Some(structured) = &mut out.structured {
        secrets.mask_value(structured);
    }
    out
}

pub(super) fn resources(contents: Vec<ResourceContents>, secrets: &Secrets) -> Vec<ResourceContents> {
    contents.into_iter().map(|c| ResourceContents { text: secrets.mask(&c.text), ..c }).collect()
}

struct Masked<T: ?Sized> {
    inner: Arc<T>,
    secrets: Arc<Secrets>,
}

impl ProgressSink for Masked<dyn ProgressSink> {
    fn report(&self, progress: f64, total: Option<f64>, message: Option<&str>) {
        let message = message.map(|m| self.secrets.mask(m));
        self.inner.report(progress, total, message.as_deref());
    }
}

impl LogSink for Masked<dyn LogSink> {
    fn log(&self, level: LogLevel, logger: &str, mut data: Value) {
        self.secrets.mask_value(&mut data);
        self.inner.log(level, logger, data);
    }
}
