//! Jobs: ids per middleware process, `core.get_jobs` events (ADDED before the call's response), progress,
//! SUCCESS/FAILED/ABORTED, abort, new-style jobs on 25.10 — and the app job bodies that drive the app state
//! machine.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::apps::{compose_from_payload, App, AppState};
use super::compose_check;
use super::middleware::{now_ms, Middleware, Reply};
use super::session::{Credentials, Session};
use super::wire::{Failure, EEXIST, EFAULT, EINVAL};
use super::{schema, SimVersion};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JobState {
    Waiting,
    Running,
    Success,
    Failed,
    Aborted,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Waiting => "WAITING",
            JobState::Running => "RUNNING",
            JobState::Success => "SUCCESS",
            JobState::Failed => "FAILED",
            JobState::Aborted => "ABORTED",
        }
    }
}

/// Completion signal for waiters (new-style jobs, `core.job_wait`).
#[derive(Default)]
pub(crate) struct Done {
    finished: Mutex<bool>,
    cond: Condvar,
}

impl Done {
    fn set(&self) {
        *self.finished.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cond.notify_all();
    }
    fn wait(&self) {
        let mut f = self.finished.lock().unwrap_or_else(|e| e.into_inner());
        while !*f {
            f = self.cond.wait(f).unwrap_or_else(|e| e.into_inner());
        }
    }
}

pub(crate) struct Job {
    pub id: i64,
    /// Unique across restarts, so a job thread from before a restart never updates a new job with its id.
    pub uid: u64,
    pub method: String,
    pub arguments: Value,
    pub message_ids: Vec<Value>,
    pub state: JobState,
    pub percent: i64,
    pub description: Option<String>,
    pub result: Value,
    pub failure: Option<Failure>,
    pub time_started: Option<u64>,
    pub time_finished: Option<u64>,
    pub abort: Arc<AtomicBool>,
    pub credential: (String, String),
    pub done: Arc<Done>,
}

impl Job {
    /// The job dict as `core.get_jobs` and its events carry it (ejson dates).
    pub(crate) fn to_value(&self, version: SimVersion) -> Value {
        let date = |t: Option<u64>| t.map(|ms| json!({"$date": ms})).unwrap_or(Value::Null);
        let mut v = json!({
            "id": self.id,
            "method": self.method,
            "arguments": self.arguments,
            "transient": false,
            "description": null,
            "abortable": true,
            "logs_path": null,
            "logs_excerpt": null,
            "progress": {"percent": self.percent, "description": self.description, "extra": null},
            "result": self.result,
            "result_encoding_error": null,
            "error": self.failure.as_ref().map(|f| f.reason()),
            "exception": self.failure.as_ref().map(|f| f.formatted_trace()),
            "exc_info": self.failure.as_ref().map(|f| f.exc_info()),
            "state": self.state.as_str(),
            "time_started": date(self.time_started),
            "time_finished": date(self.time_finished),
            "credentials": {"type": self.credential.0, "data": {"username": self.credential.1}},
        });
        if version >= SimVersion::V25_10 {
            v["message_ids"] = Value::Array(self.message_ids.clone());
        }
        v
    }
}

/// How a job body ends when it does not succeed.
pub(crate) enum JobEnd {
    Failed(Failure),
    Aborted,
}

impl From<Failure> for JobEnd {
    fn from(f: Failure) -> JobEnd {
        JobEnd::Failed(f)
    }
}

/// What a job body can do: report progress, wait a step, touch the middleware.
pub(crate) struct JobCtx {
    pub mw: Arc<Middleware>,
    pub id: i64,
    uid: u64,
    abort: Arc<AtomicBool>,
    owner: u64,
    done: Arc<Done>,
    /// The caller's API models (validation, result shape).
    api: SimVersion,
}

const JOBS_KEPT: usize = 1000;

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

impl JobCtx {
    fn update(&self, f: impl FnOnce(&mut Job)) {
        let v = self.mw.version();
        let mut st = self.mw.state();
        if let Some(job) = st.jobs.get_mut(&self.id).filter(|j| j.uid == self.uid) {
            f(job);
            let fields = job.to_value(v);
            self.mw.broadcast("changed", "core.get_jobs", Some(&json!(self.id)), Some(&fields));
        }
    }

    fn aborted(&self) -> bool {
        self.abort.load(Ordering::SeqCst)
    }

    /// Report progress; honours abort, "drop mid-job" and "never finish" at 50 %.
    pub(crate) fn progress(&self, percent: i64, description: &str) -> Result<(), JobEnd> {
        if self.aborted() {
            return Err(JobEnd::Aborted);
        }
        self.update(|j| {
            j.percent = percent;
            j.description = Some(description.to_string());
        });
        if percent >= 50 {
            if self.mw.faults.take_drop_mid_job() {
                if let Some(s) = self.mw.session(self.owner) {
                    s.drop_connection();
                }
            }
            while self.mw.faults.never_finish_jobs() {
                if self.aborted() {
                    return Err(JobEnd::Aborted);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        Ok(())
    }

    /// One unit of simulated work (`SimOptions::job_step`).
    pub(crate) fn step(&self) -> Result<(), JobEnd> {
        if Middleware::sleep_unless(&self.abort, self.mw.opts.job_step) {
            Ok(())
        } else {
            Err(JobEnd::Aborted)
        }
    }
}

/// Start `method` as a job; with legacy jobs return its id, else wait and return its result (25.10 opt-in).
pub(crate) fn call_job_method(
    mw: &Arc<Middleware>,
    session: &Arc<Session>,
    msg_id: &Value,
    method: &str,
    params: Vec<Value>,
) -> Reply {
    let credential = match &*session.credentials() {
        Credentials::User { username, method, .. } => (method.credential_type().to_string(), username.clone()),
        _ => ("UNIX_SOCKET".to_string(), "root".to_string()),
    };
    let abort = Arc::new(AtomicBool::new(false));
    let done = Arc::new(Done::default());
    let uid = NEXT_UID.fetch_add(1, Ordering::SeqCst);
    let id = {
        let mut st = mw.state();
        let id = st.next_job_id;
        st.next_job_id += 1;
        let job = Job {
            id,
            uid,
            method: method.to_string(),
            arguments: Value::Array(params.clone()),
            message_ids: if msg_id.is_null() { vec![] } else { vec![msg_id.clone()] },
            state: JobState::Waiting,
            percent: 0,
            description: None,
            result: Value::Null,
            failure: None,
            time_started: None,
            time_finished: None,
            abort: abort.clone(),
            credential,
            done: done.clone(),
        };
        let fields = job.to_value(mw.version());
        st.jobs.insert(id, job);
        // The middleware keeps about this many jobs; finished ones go first.
        while st.jobs.len() > JOBS_KEPT {
            let oldest_finished = st
                .jobs
                .iter()
                .find(|(_, j)| matches!(j.state, JobState::Success | JobState::Failed | JobState::Aborted))
                .map(|(id, _)| *id);
            match oldest_finished {
                Some(old) => st.jobs.remove(&old),
                None => break,
            };
        }
        // Sent while the call is still running, i.e. before its response.
        mw.broadcast("added", "core.get_jobs", Some(&json!(id)), Some(&fields));
        id
    };
    let ctx = JobCtx { mw: mw.clone(), id, uid, abort, owner: session.id, done: done.clone(), api: session.api };
    let method_owned = method.to_string();
    let spawned =
        std::thread::Builder::new().name(format!("sim-job-{id}")).spawn(move || run(ctx, &method_owned, params));
    if let Err(e) = spawned {
        return Err(Failure::call(EFAULT, format!("cannot start job: {e}"))).into();
    }
    if session.legacy_jobs.load(Ordering::SeqCst) {
        return Ok(json!(id)).into();
    }
    done.wait();
    let st = mw.state();
    match st.jobs.get(&id).filter(|j| j.uid == uid) {
        Some(j) if j.state == JobState::Success => Ok(j.result.clone()).into(),
        Some(j) if j.state == JobState::Failed => {
            Err(j.failure.clone().unwrap_or(Failure::call(EFAULT, "job failed"))).into()
        }
        _ => Ok(Value::Null).into(),
    }
}

fn run(ctx: JobCtx, method: &str, params: Vec<Value>) {
    ctx.update(|j| {
        j.state = JobState::Running;
        j.time_started = Some(now_ms());
    });
    let outcome = schema::check_params(ctx.api, method, &params)
        .map_err(JobEnd::Failed)
        .and_then(|()| body(&ctx, method, &params));
    ctx.update(|j| {
        match outcome {
            Ok(result) => {
                j.state = JobState::Success;
                j.percent = 100;
                j.result = result;
            }
            Err(JobEnd::Failed(f)) => {
                j.state = JobState::Failed;
                j.failure = Some(f);
            }
            Err(JobEnd::Aborted) => j.state = JobState::Aborted,
        }
        j.time_finished = Some(now_ms());
    });
    // Also when a restart forgot the job: waiters must not hang.
    ctx.done.set();
}

/// `core.job_abort(id)` → null.
pub(crate) fn abort(mw: &Middleware, id: i64) -> Result<Value, Failure> {
    let st = mw.state();
    match st.jobs.get(&id) {
        Some(j) => {
            j.abort.store(true, Ordering::SeqCst);
            Ok(Value::Null)
        }
        None => Err(Failure::call(EINVAL, format!("Job {id} does not exist"))),
    }
}

fn app_name(params: &[Value]) -> String {
    params.first().and_then(Value::as_str).unwrap_or_default().to_string()
}

fn not_found(name: &str) -> JobEnd {
    JobEnd::Failed(Failure::not_found(format!("App {name} does not exist")))
}

/// The app, if docker is configured and it exists.
fn existing(ctx: &JobCtx, name: &str) -> Result<App, JobEnd> {
    let st = ctx.mw.state();
    match st.apps.get(name).filter(|_| st.docker_pool.is_some()) {
        Some(a) => Ok(a.clone()),
        None => Err(not_found(name)),
    }
}

/// Mutate an app under the lock and announce the change.
fn change_app(ctx: &JobCtx, name: &str, f: impl FnOnce(&mut App)) {
    let mut st = ctx.mw.state();
    if let Some(a) = st.apps.get_mut(name) {
        f(a);
        ctx.mw.app_event(&st, "changed", name);
    }
}

/// Containers reach their steady state a few steps after `compose up` (like docker health checks settling).
fn schedule_settle(mw: &Arc<Middleware>, name: &str) {
    let generation = mw.state().apps.get(name).map(|a| a.generation);
    let mw = mw.clone();
    let name = name.to_string();
    let delay = mw.opts.job_step * 3;
    let _ = std::thread::Builder::new().name("sim-settle".into()).spawn(move || {
        std::thread::sleep(delay);
        let mut st = mw.state();
        if let Some(a) = st.apps.get_mut(&name).filter(|a| Some(a.generation) == generation) {
            if a.state == AppState::Deploying {
                a.settle();
                mw.app_event(&st, "changed", &name);
            }
        }
    });
}

fn entry(ctx: &JobCtx, name: &str) -> Value {
    let st = ctx.mw.state();
    st.apps.get(name).map(|a| a.entry(ctx.api, "0.0.0.0", false)).unwrap_or(Value::Null)
}

fn body(ctx: &JobCtx, method: &str, params: &[Value]) -> Result<Value, JobEnd> {
    let mw = &ctx.mw;
    let version = mw.version();
    match method {
        "app.create" => {
            let data = params.first().cloned().unwrap_or(Value::Null);
            let name = data.get("app_name").and_then(Value::as_str).unwrap_or_default().to_string();
            mw.docker_gate()?;
            if mw.state().apps.contains_key(&name) {
                return Err(Failure::call(EEXIST, format!("Application with name {name} already exists")).into());
            }
            if data.get("custom_app").and_then(Value::as_bool) != Some(true) {
                if data.get("catalog_app").map_or(true, Value::is_null) {
                    return Err(Failure::invalid("app_create.catalog_app", "This field is required", EINVAL).into());
                }
                return Err(Failure::call(EINVAL, "the simulator only installs custom apps").into());
            }
            let compose = compose_from_payload(version, &data, "app_create", mw.opts.compose.is_some())?;
            compose_check::validate_in_job(version, mw.opts.compose.as_deref(), &data, "app_create")?;
            ctx.progress(25, "Initial validation completed for custom app creation")?;
            ctx.step()?;
            ctx.progress(35, "Setting up App directory")?;
            ctx.step()?;
            ctx.progress(60, "App installation in progress, pulling images")?;
            if let Some(failure) = compose_check::up_failure(version, mw.opts.compose.as_deref(), &data, &name) {
                ctx.step()?;
                ctx.progress(80, &format!("Failure occurred while installing '{name}', cleaning up"))?;
                return Err(failure.into());
            }
            {
                let mut st = mw.state();
                if st.apps.contains_key(&name) {
                    return Err(Failure::call(EEXIST, format!("Application with name {name} already exists")).into());
                }
                let mut app = App::new(&name, compose);
                app.action_required = mw.opts.apps_needing_action.contains(&name);
                app.deploy();
                st.apps.insert(name.clone(), app);
            }
            ctx.step()?;
            ctx.progress(100, &format!("'{name}' installed successfully"))?;
            let e = entry(ctx, &name);
            mw.app_event(&mw.state(), "added", &name);
            schedule_settle(mw, &name);
            Ok(e)
        }
        "app.update" => {
            let name = app_name(params);
            let app = existing(ctx, &name)?;
            let data = params.get(1).cloned().unwrap_or(json!({}));
            let compose = compose_from_payload(version, &data, "app_update", mw.opts.compose.is_some())?;
            compose_check::validate_in_job(version, mw.opts.compose.as_deref(), &data, "app_update")?;
            ctx.progress(25, "Initial Validation completed")?;
            ctx.step()?;
            change_app(ctx, &name, |a| a.compose = compose);
            ctx.progress(60, "Configuration updated")?;
            ctx.step()?;
            ctx.progress(70, "Updating docker resources")?;
            if app.state != AppState::Stopped {
                change_app(ctx, &name, App::deploy);
                schedule_settle(mw, &name);
            }
            ctx.step()?;
            ctx.progress(100, &format!("Update completed for '{name}'"))?;
            Ok(entry(ctx, &name))
        }
        "app.delete" => {
            let name = app_name(params);
            existing(ctx, &name)?;
            ctx.progress(20, &format!("Stopping '{name}' app"))?;
            ctx.step()?;
            ctx.progress(50, "Removing docker resources")?;
            ctx.step()?;
            ctx.progress(80, "Removing app configuration")?;
            {
                let mut st = mw.state();
                if st.apps.remove(&name).is_none() {
                    return Err(not_found(&name));
                }
                st.log_lines.remove(&name);
                mw.app_event(&st, "removed", &name);
            }
            ctx.progress(100, &format!("Deleted '{name}' app"))?;
            Ok(json!(true))
        }
        "app.start" => {
            let name = app_name(params);
            existing(ctx, &name)?;
            ctx.progress(30, &format!("Starting '{name}' app"))?;
            ctx.step()?;
            change_app(ctx, &name, App::deploy);
            schedule_settle(mw, &name);
            ctx.progress(100, &format!("Started '{name}' app"))?;
            Ok(Value::Null)
        }
        "app.stop" => {
            let name = app_name(params);
            existing(ctx, &name)?;
            change_app(ctx, &name, |a| {
                a.generation += 1;
                a.state = AppState::Stopping;
            });
            ctx.progress(50, &format!("Stopping '{name}' app"))?;
            ctx.step()?;
            change_app(ctx, &name, App::take_down);
            ctx.progress(100, &format!("Stopped '{name}' app"))?;
            Ok(Value::Null)
        }
        "app.redeploy" => {
            let name = app_name(params);
            existing(ctx, &name)?;
            ctx.progress(25, "Initial Validation completed")?;
            ctx.step()?;
            ctx.progress(70, "Updating docker resources")?;
            change_app(ctx, &name, App::deploy);
            schedule_settle(mw, &name);
            ctx.step()?;
            ctx.progress(100, &format!("Redeployment completed for '{name}'"))?;
            Ok(entry(ctx, &name))
        }
        "app.pull_images" => {
            let name = app_name(params);
            existing(ctx, &name)?;
            let redeploy = params.get(1).and_then(|o| o.get("redeploy")).and_then(Value::as_bool).unwrap_or(true);
            pull_and_maybe_redeploy(ctx, &name, redeploy)?;
            Ok(Value::Null)
        }
        "app.upgrade" => {
            let name = app_name(params);
            let app = existing(ctx, &name)?;
            if app.state == AppState::Stopped {
                return Err(Failure::call(EFAULT, "In order to upgrade an app, it must not be in stopped state").into());
            }
            if app.outdated_images.is_empty() {
                return Err(Failure::call(EFAULT, format!("No upgrade available for '{name}'")).into());
            }
            pull_and_maybe_redeploy(ctx, &name, true)?;
            Ok(entry(ctx, &name))
        }
        "app.convert_to_custom" => {
            let name = app_name(params);
            existing(ctx, &name)?;
            Err(Failure::call(EFAULT, format!("'{name}' is already a custom app")).into())
        }
        "core.job_wait" => {
            let target = params.first().and_then(Value::as_i64).unwrap_or(-1);
            let done = mw.state().jobs.get(&target).map(|j| j.done.clone());
            let Some(done) = done else {
                return Err(Failure::call(EINVAL, format!("Job {target} does not exist")).into());
            };
            done.wait();
            let st = mw.state();
            match st.jobs.get(&target) {
                Some(j) if j.state == JobState::Success => Ok(j.result.clone()),
                Some(j) if j.state == JobState::Failed => {
                    Err(JobEnd::Failed(j.failure.clone().unwrap_or_else(|| Failure::call(EFAULT, "job failed"))))
                }
                _ => Ok(Value::Null),
            }
        }
        m if super::storage::is_job(m) => Ok(super::storage::job(mw, m, params)?),
        other => Err(Failure::MethodNotFound { method: other.to_string() }.into()),
    }
}

fn pull_and_maybe_redeploy(ctx: &JobCtx, name: &str, redeploy: bool) -> Result<(), JobEnd> {
    let images = ctx.mw.state().apps.get(name).map(App::images).unwrap_or_default();
    for (i, image) in images.iter().enumerate() {
        let pct = 10 + (60 * i as i64) / images.len().max(1) as i64;
        ctx.progress(pct, &format!("Pulling {image}"))?;
        ctx.step()?;
    }
    change_app(ctx, name, |a| a.outdated_images.clear());
    if redeploy {
        ctx.progress(80, &format!("Redeploying '{name}'"))?;
        change_app(ctx, name, App::deploy);
        super::storage::after_pull(&ctx.mw, name);
        schedule_settle(&ctx.mw, name);
        ctx.step()?;
    }
    ctx.progress(100, &format!("Images pulled for '{name}'"))?;
    Ok(())
}
