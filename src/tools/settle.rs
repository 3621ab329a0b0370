//! Waiting for an app to settle after `compose up`: TrueNAS answers as soon as the containers are created, while
//! the app is usually still DEPLOYING (images starting, healthchecks pending).

use std::time::{Duration, Instant};

use super::failure::read_failed;
use crate::mcp::tool::{CallContext, ToolOutput};
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
    Failed(ToolOutput),
}

/// How often the state is read while waiting.
const POLL: Duration = Duration::from_millis(500);

/// Poll until `name` is RUNNING or CRASHED, `timeout` passes or the call is cancelled; progress within `span`.
pub fn wait(apps: &Apps, name: &str, ctx: &CallContext, timeout: Duration, span: (f64, f64)) -> Settled {
    let started = Instant::now();
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
        if cancelled || started.elapsed() >= timeout {
            return Settled::Unsettled { state: app.state, cancelled };
        }
        let fraction = started.elapsed().as_secs_f64() / timeout.as_secs_f64();
        let progress = span.0 + (span.1 - span.0) * fraction;
        ctx.progress.report(progress, Some(100.0), Some(&format!("waiting for '{name}' ({})", app.state)));
        std::thread::sleep(POLL);
    }
}
