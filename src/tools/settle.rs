//! Waiting for an app to settle after `compose up`: TrueNAS answers as soon as the containers are created, while
//! the app is usually still DEPLOYING (images starting, healthchecks pending).

use std::time::Duration;

use super::failure::read_failed;
use super::logs::{self, ContainerLog};
use super::Outcome;
use crate::clock::Clock;
use crate::mcp::tool::CallContext;
use crate::truenas::apps::{AppEntry, AppState, Apps};

/// Where an app ended up.
pub enum Settled {
    Running(AppEntry),
    Crashed(AppEntry),
    /// Neither running nor crashed when the wait ended: the last state seen, and whether the caller cancelled.
    Unsettled {
        state: String,
        cancelled: bool,
    },
    /// The app vanished, or reading it failed: the answer to give.
    Failed(Outcome),
}

/// How often the state is read while waiting.
const POLL: Duration = Duration::from_millis(500);

/// Poll until `name` is RUNNING or CRASHED, `timeout` passes on `clock` or the call is cancelled; progress within
/// `span`.
pub fn wait(
    apps: &Apps,
    name: &str,
    ctx: &CallContext,
    clock: &dyn Clock,
    timeout: Duration,
    span: (f64, f64),
) -> Settled {
    let started = clock.now();
    loop {
        let app = match apps.get(name) {
            Ok(Some(a)) => a,
            Ok(None) => return Settled::Failed(super::failure::missing_app(apps, name)),
            Err(e) => return Settled::Failed(read_failed(&format!("watching '{name}'"), &e)),
        };
        match app.app_state() {
            AppState::Running => return Settled::Running(app),
            AppState::Crashed => return Settled::Crashed(app),
            // A stopped app will not start by itself (stopped meanwhile by someone else).
            AppState::Stopped => return Settled::Unsettled { state: app.state, cancelled: false },
            _ => {}
        }
        let cancelled = ctx.cancel.is_cancelled();
        let waited = clock.elapsed_since(started);
        if cancelled || waited >= timeout {
            return Settled::Unsettled { state: app.state, cancelled };
        }
        let fraction = waited.as_secs_f64() / timeout.as_secs_f64();
        let progress = span.0 + (span.1 - span.0) * fraction;
        ctx.progress.report(progress, Some(100.0), Some(&format!("waiting for '{name}' ({})", app.state)));
        // A cancel wakes the sleep at once; the next round reads the state once more and reports it.
        clock.sleep(POLL, &ctx.cancel);
    }
}

/// The state to report after a change: when containers were (re)created, wait up to `timeout` for RUNNING or
/// CRASHED (with the crashed containers' last log lines); otherwise just read it. `None` when it cannot be read.
pub fn state_after(
    apps: &Apps,
    name: &str,
    ctx: &CallContext,
    clock: &dyn Clock,
    recreated: bool,
    timeout: Duration,
) -> (Option<String>, Vec<ContainerLog>) {
    if !recreated {
        return (apps.get(name).ok().flatten().map(|a| a.state), Vec::new());
    }
    match wait(apps, name, ctx, clock, timeout, (80.0, 99.0)) {
        Settled::Running(a) => (Some(a.state), Vec::new()),
        Settled::Crashed(a) => {
            let crash_logs = logs::crashed_container_logs(apps, &a, 30, clock, &ctx.cancel);
            (Some(a.state), crash_logs)
        }
        Settled::Unsettled { state, .. } => (Some(state), Vec::new()),
        Settled::Failed(_) => (None, Vec::new()),
    }
}
