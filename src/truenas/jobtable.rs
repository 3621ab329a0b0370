//! The jobs the actor waits for, as plain state: a job is started, learns its id, merges events (also events that
//! arrived before the response naming the id), finishes, is aborted (with a grace period for its ABORTED event),
//! times out, and is reconciled with `core.get_jobs` after a reconnect. No socket here: the actor turns what these
//! methods return into requests, and the unit tests below drive every transition directly.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use log::{debug, warn};
use serde_json::{json, Value};

use super::error::{TimeoutPhase, TnError};
use super::jobs::{self, JobState};
use super::types::{JobOutcome, JobProgress};

/// How long a job event for an unknown job id is kept, waiting for the response naming that id.
pub const EARLY_EVENT_TTL: Duration = Duration::from_secs(60);
/// How long to wait for a job's ABORTED event after the server accepted `core.job_abort`.
pub const ABORT_GRACE: Duration = Duration::from_secs(5);

/// What the actor tells a `call_job` caller.
#[derive(Debug)]
pub enum JobMsg {
    Started(i64),
    Progress(JobProgress),
    Done(JobOutcome),
}

struct JobWaiter {
    method: String,
    params: Value,
    job_id: Option<i64>,
    reply: Sender<JobMsg>,
    deadline: Instant,
    timeout: Duration,
    /// The job object as merged from events.
    state: Value,
    last_progress: Option<JobProgress>,
    cancel_requested: bool,
    abort_sent: bool,
    /// When the server accepted `core.job_abort`; the job's ABORTED event normally follows at once.
    abort_accepted: Option<Instant>,
    /// The connection dropped after the job id was known: check it with `core.get_jobs` after reconnecting.
    needs_reconcile: bool,
    /// Events for this job id received while `needs_reconcile`: applied after the `core.get_jobs` snapshot once the
    /// job is confirmed to be ours (they may be newer than the snapshot), dropped otherwise.
    held_events: Vec<Value>,
}

/// What to do about a cancelled job.
#[derive(Debug, PartialEq, Eq)]
pub enum Abort {
    /// Send `core.job_abort` for this id.
    Send(i64),
    /// An abort is already on its way, or the job is unknown: nothing to do.
    Nothing,
    /// The job has no id yet: if its start is still queued locally, drop it (then call [`JobTable::finish`] with
    /// `Cancelled`); otherwise the abort goes out when the id arrives.
    NotStarted,
}

#[derive(Default)]
pub struct JobTable {
    jobs: HashMap<u64, JobWaiter>,
    tokens: HashMap<i64, u64>,
    /// Job events that arrived before the response carrying their job id.
    early: HashMap<i64, (Instant, Value)>,
}

impl JobTable {
    /// A job the caller `token` asked for; its start request is about to be queued.
    pub fn add(
        &mut self,
        token: u64,
        method: String,
        params: Value,
        reply: Sender<JobMsg>,
        now: Instant,
        timeout: Duration,
    ) {
        let waiter = JobWaiter {
            method,
            params,
            job_id: None,
            reply,
            deadline: now + timeout,
            timeout,
            state: Value::Null,
            last_progress: None,
            cancel_requested: false,
            abort_sent: false,
            abort_accepted: None,
            needs_reconcile: false,
            held_events: Vec::new(),
        };
        self.jobs.insert(token, waiter);
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Whether a job with a known id waits (it needs a connection to hear how it ends).
    pub fn any_started(&self) -> bool {
        self.jobs.values().any(|w| w.job_id.is_some())
    }

    /// The method and params to send for `token`'s start request.
    pub fn call_of(&self, token: u64) -> Option<(&str, &Value)> {
        self.jobs.get(&token).map(|w| (w.method.as_str(), &w.params))
    }

    /// The job's method (for error messages).
    pub fn method(&self, token: u64) -> String {
        self.jobs.get(&token).map(|w| w.method.clone()).unwrap_or_default()
    }

    /// The start request was answered with `job_id`. True when the caller cancelled meanwhile: abort it now.
    pub fn started(&mut self, token: u64, job_id: i64) -> bool {
        let Some(w) = self.jobs.get_mut(&token) else { return false };
        w.job_id = Some(job_id);
        let _ = w.reply.send(JobMsg::Started(job_id));
        self.tokens.insert(job_id, token);
        if let Some((_, early)) = self.early.remove(&job_id) {
            self.apply(token, &early);
        }
        self.jobs.get(&token).is_some_and(|w| w.cancel_requested)
    }

    /// The caller cancelled.
    pub fn request_abort(&mut self, token: u64) -> Abort {
        let Some(w) = self.jobs.get_mut(&token) else { return Abort::Nothing };
        w.cancel_requested = true;
        match w.job_id {
            Some(job_id) if !w.abort_sent => {
                w.abort_sent = true;
                Abort::Send(job_id)
            }
            Some(_) => Abort::Nothing,
            None => Abort::NotStarted,
        }
    }

    /// The `core.job_abort` request could not be sent or answered: it may be sent again.
    pub fn abort_failed(&mut self, token: u64) {
        if let Some(w) = self.jobs.get_mut(&token) {
            w.abort_sent = false;
        }
    }

    /// The server accepted `core.job_abort`: wait up to [`ABORT_GRACE`] for the ABORTED event, so that
    /// "cancelled" means stopped.
    pub fn abort_accepted(&mut self, token: u64, now: Instant) {
        if let Some(w) = self.jobs.get_mut(&token) {
            w.abort_accepted = Some(now);
        }
    }

    /// A `core.get_jobs` event. `starting` says whether a job start is on the wire (its id may be this one).
    pub fn on_event(&mut self, job_id: i64, fields: &Value, starting: bool, now: Instant) {
        if let Some(&token) = self.tokens.get(&job_id) {
            // Until reconciled after a reconnect, an event for this id may be another job's (ids restart at 1 when
            // the middleware restarts): hold it. It may also be newer than the reconcile's snapshot (the answer to
            // `core.get_jobs` can be overtaken by events), so it is applied after that snapshot, not dropped.
            match self.jobs.get_mut(&token) {
                Some(w) if w.needs_reconcile => w.held_events.push(fields.clone()),
                _ => self.apply(token, fields),
            }
            return;
        }
        // Possibly a job whose id is still on its way to us: keep it while any job start is outstanding.
        if starting {
            let entry = self.early.entry(job_id).or_insert_with(|| (now, json!({})));
            jobs::merge(&mut entry.1, fields);
        }
    }

    fn apply(&mut self, token: u64, fields: &Value) {
        let Some(w) = self.jobs.get_mut(&token) else { return };
        let Some(job_id) = w.job_id else { return };
        jobs::merge(&mut w.state, fields);
        match jobs::job_state(job_id, &w.state) {
            JobState::Running(Some(p)) => {
                if w.last_progress.as_ref() != Some(&p) {
                    w.last_progress = Some(p.clone());
                    let _ = w.reply.send(JobMsg::Progress(p));
                }
            }
            JobState::Running(None) => {}
            JobState::Finished(result) => self.finish(token, result),
            JobState::Aborted => {
                let e = if w.cancel_requested {
                    TnError::Cancelled { job_id: Some(job_id) }
                } else {
                    TnError::JobAborted { job_id }
                };
                self.finish(token, Err(e));
            }
        }
    }

    /// Tell the caller how the job ended and forget it.
    pub fn finish(&mut self, token: u64, result: Result<Value, TnError>) {
        if let Some(w) = self.jobs.remove(&token) {
            if let Some(id) = w.job_id {
                self.tokens.remove(&id);
            }
            let _ = w.reply.send(JobMsg::Done(JobOutcome { job_id: w.job_id, result }));
        }
    }

    /// Finish every started job with the error `why(job_id)` (reconnecting failed, or the client shut down).
    pub fn fail_started(&mut self, why: impl Fn(i64) -> TnError) {
        let started: Vec<(u64, i64)> = self.jobs.iter().filter_map(|(t, w)| w.job_id.map(|id| (*t, id))).collect();
        for (token, id) in started {
            self.finish(token, Err(why(id)));
        }
    }

    /// Finish every job, started or not.
    pub fn fail_all(&mut self, err: TnError) {
        for token in self.jobs.keys().copied().collect::<Vec<_>>() {
            self.finish(token, Err(err.clone()));
        }
    }

    /// Give up on aborted jobs whose ABORTED event never came, on jobs past their deadline, and on early events
    /// nobody claimed.
    pub fn expire(&mut self, now: Instant) {
        let aborted: Vec<(u64, Option<i64>)> = self
            .jobs
            .iter()
            .filter(|(_, w)| w.abort_accepted.is_some_and(|at| now.saturating_duration_since(at) >= ABORT_GRACE))
            .map(|(t, w)| (*t, w.job_id))
            .collect();
        for (token, job_id) in aborted {
            self.finish(token, Err(TnError::Cancelled { job_id }));
        }
        let late: Vec<u64> = self.jobs.iter().filter(|(_, w)| w.deadline <= now).map(|(t, _)| *t).collect();
        for token in late {
            let after = self.jobs[&token].timeout;
            if let Some(id) = self.jobs[&token].job_id {
                warn!("job {id} did not finish within {after:?}; it may still be running on the NAS");
            }
            self.finish(token, Err(TnError::Timeout { phase: TimeoutPhase::Job, after }));
        }
        if !self.early.is_empty() {
            self.early.retain(|_, (at, _)| now.saturating_duration_since(*at) < EARLY_EVENT_TTL);
        }
    }

    /// The connection dropped: started jobs are checked again after reconnecting; an abort must be sent again.
    pub fn connection_lost(&mut self) {
        for w in self.jobs.values_mut().filter(|w| w.job_id.is_some()) {
            w.needs_reconcile = true;
            w.abort_sent = false;
            w.held_events.clear();
        }
    }

    /// The session was renewed on the same connection: the server ended the old session's subscriptions, so job
    /// events sent before we subscribe again are lost; started jobs are looked up again, as after a reconnect.
    pub fn session_renewed(&mut self) {
        for w in self.jobs.values_mut().filter(|w| w.job_id.is_some()) {
            w.needs_reconcile = true;
            w.held_events.clear();
        }
    }

    /// The ids to look up with `core.get_jobs` after a reconnect.
    pub fn to_reconcile(&self) -> Vec<i64> {
        self.jobs.values().filter(|w| w.needs_reconcile).filter_map(|w| w.job_id).collect()
    }

    /// Apply the `core.get_jobs` answer for [`JobTable::to_reconcile`]'s ids: a job that is still ours continues
    /// (with its held events), any other ends with "connection lost, outcome unknown". Returns the jobs whose
    /// cancellation must now be sent.
    pub fn reconcile(&mut self, found: &Result<Value, TnError>) -> Vec<u64> {
        let pending: Vec<(u64, i64)> = self
            .jobs
            .iter()
            .filter(|(_, w)| w.needs_reconcile)
            .filter_map(|(t, w)| w.job_id.map(|id| (*t, id)))
            .collect();
        let mut to_abort = Vec::new();
        for (token, job_id) in pending {
            let job = match found {
                Ok(Value::Array(list)) => list.iter().find(|j| j.get("id").and_then(Value::as_i64) == Some(job_id)),
                _ => None,
            };
            let Some(w) = self.jobs.get_mut(&token) else { continue };
            w.needs_reconcile = false;
            let held = std::mem::take(&mut w.held_events);
            match job {
                Some(job)
                    if job.get("method").and_then(Value::as_str) == Some(w.method.as_str())
                        && job.get("arguments").map_or(true, |reported| arguments_match(&w.params, reported)) =>
                {
                    debug!("job {job_id} survived the reconnect");
                    self.apply(token, job);
                    for fields in held {
                        self.apply(token, &fields);
                    }
                    if self.jobs.get(&token).is_some_and(|w| w.cancel_requested && !w.abort_sent) {
                        to_abort.push(token);
                    }
                }
                _ => {
                    let detail = match found {
                        Err(e) => format!("job {job_id} could not be checked after reconnecting: {e}"),
                        Ok(_) => format!("job {job_id} is unknown after reconnecting (the middleware restarted?)"),
                    };
                    self.finish(token, Err(TnError::ConnectionLost { outcome_unknown: true, detail }));
                }
            }
        }
        to_abort
    }
}

/// Whether a job's `arguments` (as `core.get_jobs` reports them) can be the `sent` params: values TrueNAS masks
/// (`********`) and keys only one side has are tolerated, any other difference is not. After a middleware restart job
/// ids start again at 1, so the same id and method alone may be another client's job.
fn arguments_match(sent: &Value, reported: &Value) -> bool {
    match (sent, reported) {
        (_, Value::String(masked)) if masked == "********" => true,
        (Value::Array(a), Value::Array(b)) => a.iter().zip(b).all(|(x, y)| arguments_match(x, y)),
        (Value::Object(a), Value::Object(b)) => a.iter().all(|(k, v)| b.get(k).map_or(true, |w| arguments_match(v, w))),
        _ => sent == reported,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{unbounded, Receiver};

    const HOUR: Duration = Duration::from_secs(3600);

    fn table_with_job(now: Instant) -> (JobTable, Receiver<JobMsg>) {
        let mut t = JobTable::default();
        let (tx, rx) = unbounded();
        t.add(1, "app.create".into(), json!([{"app_name": "mine"}]), tx, now, HOUR);
        (t, rx)
    }

    fn done(rx: &Receiver<JobMsg>) -> JobOutcome {
        for msg in rx.try_iter() {
            if let JobMsg::Done(o) = msg {
                return o;
            }
        }
        panic!("the job did not finish")
    }

    fn running(percent: f64) -> Value {
        json!({"state": "RUNNING", "progress": {"percent": percent, "description": "working"}})
    }

    #[test]
    fn a_job_starts_reports_progress_and_finishes_with_its_id() {
        let now = Instant::now();
        let (mut t, rx) = table_with_job(now);
        assert!(!t.any_started());
        assert!(!t.started(1, 42), "not cancelled");
        assert!(t.any_started());
        t.on_event(42, &running(10.0), false, now);
        t.on_event(42, &running(10.0), false, now);
        t.on_event(42, &json!({"state": "SUCCESS", "result": "ok"}), false, now);
        let msgs: Vec<JobMsg> = rx.try_iter().collect();
        assert!(matches!(msgs[0], JobMsg::Started(42)), "{msgs:?}");
        assert!(matches!(&msgs[1], JobMsg::Progress(p) if p.percent == 10.0 && p.job_id == 42), "{msgs:?}");
        assert_eq!(msgs.len(), 3, "the repeated progress is not reported twice: {msgs:?}");
        let JobMsg::Done(outcome) = &msgs[2] else { panic!("{msgs:?}") };
        assert_eq!(outcome.job_id, Some(42));
        assert_eq!(outcome.result.as_ref().unwrap(), &json!("ok"));
        assert!(t.is_empty());
    }

    #[test]
    fn an_event_before_the_response_is_kept_while_a_start_is_out_and_expires_after_its_ttl() {
        let now = Instant::now();
        let (mut t, rx) = table_with_job(now);
        t.on_event(42, &json!({"state": "SUCCESS", "result": 1}), true, now);
        t.on_event(43, &json!({"state": "SUCCESS"}), false, now);
        t.started(1, 42);
        assert_eq!(done(&rx).result.unwrap(), json!(1), "the early event finished the job");

        let (tx, rx) = unbounded();
        t.add(2, "app.stop".into(), json!([]), tx, now, HOUR);
        t.on_event(50, &json!({"state": "SUCCESS"}), true, now);
        t.expire(now + EARLY_EVENT_TTL);
        t.started(2, 50);
        assert!(rx.try_iter().all(|m| !matches!(m, JobMsg::Done(_))), "the stale early event was dropped");
    }

    #[test]
    fn an_update_that_fails_or_aborts_the_job_names_its_id() {
        let now = Instant::now();
        let (mut t, rx) = table_with_job(now);
        t.started(1, 7);
        t.on_event(7, &json!({"state": "ABORTED"}), false, now);
        let o = done(&rx);
        assert!(matches!(o.result, Err(TnError::JobAborted { job_id: 7 })), "{o:?}");
    }

    #[test]
    fn abort_before_the_id_waits_for_it_then_grace_ends_the_wait() {
        let now = Instant::now();
        let (mut t, rx) = table_with_job(now);
        assert_eq!(t.request_abort(1), Abort::NotStarted);
        assert!(t.started(1, 9), "cancelled before the id came: abort now");
        assert_eq!(t.request_abort(1), Abort::Send(9));
        assert_eq!(t.request_abort(1), Abort::Nothing, "one abort on the wire at a time");
        t.abort_accepted(1, now);
        t.expire(now + ABORT_GRACE - Duration::from_millis(1));
        assert!(!t.is_empty(), "still waiting for the ABORTED event");
        t.expire(now + ABORT_GRACE);
        let o = done(&rx);
        assert_eq!(o.job_id, Some(9));
        assert!(matches!(o.result, Err(TnError::Cancelled { job_id: Some(9) })), "{o:?}");
    }

    #[test]
    fn a_job_past_its_deadline_times_out() {
        let now = Instant::now();
        let (mut t, rx) = table_with_job(now);
        t.started(1, 3);
        t.expire(now + HOUR);
        let o = done(&rx);
        assert!(matches!(o.result, Err(TnError::Timeout { phase: TimeoutPhase::Job, .. })), "{o:?}");
        assert_eq!(o.job_id, Some(3));
    }

    #[test]
    fn reconcile_after_reconnect_keeps_our_job_applies_held_events_and_drops_a_stranger() {
        let now = Instant::now();
        let (mut t, rx) = table_with_job(now);
        t.started(1, 5);
        let (tx2, rx2) = unbounded();
        t.add(2, "app.delete".into(), json!(["x"]), tx2, now, HOUR);
        t.started(2, 6);
        assert_eq!(t.request_abort(2), Abort::Send(6));
        t.connection_lost();
        let mut ids = t.to_reconcile();
        ids.sort();
        assert_eq!(ids, vec![5, 6]);
        // Held until the snapshot: newer than it, so applied after it.
        t.on_event(5, &json!({"state": "SUCCESS", "result": "held"}), false, now);
        assert!(rx.try_iter().all(|m| !matches!(m, JobMsg::Done(_))), "held, not applied");
        let found = Ok(json!([
            {"id": 5, "method": "app.create", "arguments": [{"app_name": "mine"}], "state": "RUNNING"},
            {"id": 6, "method": "app.delete", "arguments": ["x"], "state": "RUNNING"},
        ]));
        assert_eq!(t.reconcile(&found), vec![2], "the cancelled job's abort is sent again");
        assert_eq!(done(&rx).result.unwrap(), json!("held"));

        // Another client's job under a reused id is not ours.
        t.connection_lost();
        let stranger = Ok(json!([{"id": 6, "method": "app.delete", "arguments": ["other"], "state": "RUNNING"}]));
        assert!(t.reconcile(&stranger).is_empty());
        let o = done(&rx2);
        assert!(matches!(o.result, Err(TnError::ConnectionLost { outcome_unknown: true, .. })), "{o:?}");
        assert!(t.is_empty());
    }

    #[test]
    fn job_arguments_match_despite_masking_but_not_another_app() {
        let sent = json!([{"app_name": "mine", "custom_compose_config_string": "services: {}", "values": {}}]);
        let cases = [
            (json!([{"app_name": "mine", "custom_compose_config_string": "services: {}", "values": {}}]), true),
            (json!([{"app_name": "mine", "custom_compose_config_string": "********"}]), true),
            (json!([{"app_name": "mine", "custom_compose_config_string": "services: {}", "extra": 1}]), true),
            (json!([{"app_name": "theirs", "custom_compose_config_string": "services: {}"}]), false),
            (json!(["mine"]), false),
        ];
        for (reported, want) in cases {
            assert_eq!(arguments_match(&sent, &reported), want, "{reported}");
        }
    }
}
