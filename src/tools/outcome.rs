//! What a handler returns: the answer for the caller and what the audit log records about the change, in one
//! typed value. The gate in `Tools::call` is the only place that turns it into the audit record and the MCP
//! [`ToolOutput`]; compose findings stay typed until then and become `structuredContent.findings` there.

use serde_json::Value;

use crate::audit::Outcome as AuditOutcome;
use crate::compose::Finding;
use crate::mcp::tool::ToolOutput;

/// A handler's result.
#[derive(Debug, Default)]
pub struct Outcome {
    pub text: String,
    pub structured: Option<Value>,
    pub is_error: bool,
    /// A question for the user that must travel back first (modern-era elicitation): nothing was changed.
    pub input_required: Option<Value>,
    /// The TrueNAS job the change ran as.
    pub job_id: Option<i64>,
    /// What the audit record says when `is_error` alone does not (refused, declined, cancelled, unknown, started,
    /// no change); `None`: failed when `is_error`, else succeeded.
    pub audit: Option<AuditOutcome>,
    /// The audit record's detail; `None`: the first line of an error's text.
    pub detail: Option<String>,
    /// Compose findings, serialised into `structured["findings"]` when the output is built.
    pub findings: Option<Vec<Finding>>,
}

impl Outcome {
    pub fn ok(text: impl Into<String>, structured: Value) -> Outcome {
        Outcome { text: text.into(), structured: Some(structured), ..Outcome::default() }
    }

    pub fn error(text: impl Into<String>) -> Outcome {
        Outcome { text: text.into(), is_error: true, ..Outcome::default() }
    }

    pub fn error_with(text: impl Into<String>, structured: Value) -> Outcome {
        Outcome { text: text.into(), structured: Some(structured), is_error: true, ..Outcome::default() }
    }

    /// Record `audit` as the change's outcome.
    pub fn audit(mut self, audit: AuditOutcome) -> Outcome {
        self.audit = Some(audit);
        self
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Outcome {
        self.detail = Some(detail.into());
        self
    }

    pub fn job(mut self, job_id: Option<i64>) -> Outcome {
        self.job_id = job_id;
        self
    }

    pub fn findings(mut self, findings: Vec<Finding>) -> Outcome {
        self.findings = Some(findings);
        self
    }

    /// What the audit log records for this change.
    pub fn audit_outcome(&self) -> AuditOutcome {
        if self.input_required.is_some() {
            return AuditOutcome::NoChange;
        }
        self.audit.unwrap_or(if self.is_error { AuditOutcome::Failed } else { AuditOutcome::Succeeded })
    }

    /// The audit record's detail: the handler's, or for an error the first line of its text.
    pub fn audit_detail(&self) -> Option<String> {
        match &self.detail {
            Some(d) => Some(d.clone()),
            None if self.is_error => Some(self.text.lines().next().unwrap_or("").chars().take(300).collect()),
            None => None,
        }
    }

    /// The MCP result: findings serialised into the structured content, here and nowhere earlier.
    pub fn into_output(self) -> ToolOutput {
        let mut structured = self.structured;
        if let (Some(findings), Some(Value::Object(map))) = (self.findings, structured.as_mut()) {
            map.insert("findings".into(), serde_json::to_value(findings).unwrap_or(Value::Null));
        }
        ToolOutput { text: self.text, structured, is_error: self.is_error, input_required: self.input_required }
    }
}

/// A plain answer (an elicitation's `input_required`, a helper's error) as an outcome with nothing to audit.
impl From<ToolOutput> for Outcome {
    fn from(out: ToolOutput) -> Outcome {
        Outcome {
            text: out.text,
            structured: out.structured,
            is_error: out.is_error,
            input_required: out.input_required,
            ..Outcome::default()
        }
    }
}
