//! Subscriptions: regular events (`core.get_jobs`, `app.query`) and the event sources we depend on
//! (`app.container_log_follow` with a deterministic synthetic log, `app.stats`), ending with
//! `notify_unsubscribed` / `nosub` like the middleware.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::apps::AppState;
use super::middleware::{AfterReply, Middleware, Reply};
use super::schema;
use super::session::{Session, Subscription};
use super::wire::{Failure, EFAULT, EINVAL, ENOENT};

static NEXT_IDENT: AtomicU64 = AtomicU64::new(1);

/// A fresh subscription ident (uuid-shaped, as the middleware returns).
fn new_ident() -> String {
    let n = NEXT_IDENT.fetch_add(1, Ordering::SeqCst);
    let h = super::apps::hex_id("subscription", n);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// `core.subscribe` / `core.unsubscribe` (JSON-RPC).
pub(crate) fn handle(mw: &Arc<Middleware>, session: &Arc<Session>, method: &str, params: &[Value]) -> Reply {
    let name = params.first().and_then(Value::as_str).unwrap_or_default().to_string();
    if method == "core.unsubscribe" {
        unsubscribe(session, &name);
        return Ok(Value::Null).into();
    }
    let ident = new_ident();
    match subscribe(mw, session, &ident, &name) {
        Ok(after) => Reply { result: Ok(json!(ident)), after },
        Err(f) => Err(f).into(),
    }
}

/// Remove a subscription by ident (unknown idents are ignored, like the middleware).
pub(crate) fn unsubscribe(session: &Session, ident: &str) {
    session.subs().retain(|s| {
        if s.ident == ident {
            if let Some(stop) = &s.stop {
                stop.store(true, Ordering::SeqCst);
            }
            false
        } else {
            true
        }
    });
}

/// One running event source, shared by every subscription with the identical `name:args` string (like the
/// middleware's `EventSourceManager`): a late joiner gets no tail replay, only what comes next.
pub(crate) struct SourceInstance {
    name: String,
    subscribers: Mutex<Vec<Subscriber>>,
}

struct Subscriber {
    session: Arc<Session>,
    ident: String,
    stop: Arc<AtomicBool>,
}

impl SourceInstance {
    fn active(&self) -> Vec<Arc<Session>> {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.retain(|s| !s.stop.load(Ordering::SeqCst) && !s.session.is_closed());
        subs.iter().map(|s| s.session.clone()).collect()
    }

    /// Send an `added` event to every live subscriber; false once nobody listens.
    fn emit(&self, fields: &Value) -> bool {
        let sessions = self.active();
        for s in &sessions {
            s.send_event("added", &self.name, None, Some(fields));
        }
        !sessions.is_empty()
    }

    fn stopped(&self) -> bool {
        self.active().is_empty()
    }

    /// Sleep `d`; false if every subscriber left meanwhile.
    fn sleep(&self, d: Duration) -> bool {
        let end = std::time::Instant::now() + d;
        loop {
            if self.stopped() {
                return false;
            }
            let now = std::time::Instant::now();
            if now >= end {
                return true;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(10)));
        }
    }
}

/// Register a subscription. For event sources, argument errors are reported through `notify_unsubscribed`
/// before the subscribe call answers; otherwise the source starts streaming after the answer (`after`).
pub(crate) fn subscribe(
    mw: &Arc<Middleware>,
    session: &Arc<Session>,
    ident: &str,
    name: &str,
) -> Result<Option<AfterReply>, Failure> {
    let (source, arg_text) = match name.split_once(':') {
        Some((s, a)) if s == "app.container_log_follow" || s == "app.stats" => (s, a),
        _ => {
            session.subs().push(Subscription { ident: ident.to_string(), name: name.to_string(), stop: None });
            return Ok(None);
        }
    };
    let args: Value = match serde_json::from_str(arg_text) {
        Ok(v) => v,
        Err(e) => {
            let f = Failure::call(EINVAL, format!("Invalid event source arguments: {e}"));
            session.send_unsubscribed(name, Some(&f));
            return Ok(None);
        }
    };
    if let Err(f) = schema::check_event_args(session.api, source, &args) {
        session.send_unsubscribed(name, Some(&f));
        return Ok(None);
    }
    let stop = Arc::new(AtomicBool::new(false));
    session.subs().push(Subscription { ident: ident.to_string(), name: name.to_string(), stop: Some(stop.clone()) });
    let subscriber = Subscriber { session: session.clone(), ident: ident.to_string(), stop };
    let instance = {
        let mut st = mw.state();
        if let Some(existing) = st.sources.get(name) {
            existing.subscribers.lock().unwrap_or_else(|e| e.into_inner()).push(subscriber);
            return Ok(None);
        }
        let instance = Arc::new(SourceInstance { name: name.to_string(), subscribers: Mutex::new(vec![subscriber]) });
        st.sources.insert(name.to_string(), instance.clone());
        instance
    };
    let (mw, source) = (mw.clone(), source.to_string());
    Ok(Some(Box::new(move || {
        let _ = std::thread::Builder::new().name("sim-event-source".into()).spawn(move || {
            let end = if source == "app.stats" {
                app_stats(&mw, &instance, &args)
            } else {
                log_follow(&mw, &instance, &args)
            };
            // Detach first so a new subscription starts a fresh instance, then tell the remaining subscribers.
            {
                let mut st = mw.state();
                if st.sources.get(&instance.name).is_some_and(|i| Arc::ptr_eq(i, &instance)) {
                    st.sources.remove(&instance.name);
                }
            }
            let subs = std::mem::take(&mut *instance.subscribers.lock().unwrap_or_else(|e| e.into_inner()));
            for s in subs {
                if let Some(error) = &end {
                    if !s.stop.load(Ordering::SeqCst) && !s.session.is_closed() {
                        s.session.send_unsubscribed(&instance.name, error.as_ref());
                    }
                }
                unsubscribe(&s.session, &s.ident);
            }
        });
    })))
}

/// The deterministic line `i` of a container's log.
pub(crate) fn log_line(app: &str, service: &str, i: u64) -> (String, String) {
    let secs = 1_735_689_600 + i; // 2025-01-01 00:00:00 UTC + i seconds
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let day = 1 + (secs - 1_735_689_600) / 86_400;
    let ts = format!("2025-01-{:02} {h:02}:{m:02}:{s:02}.{:06}+00:00", day.min(28), (i * 7919) % 1_000_000);
    let level = ["INFO", "INFO", "DEBUG", "INFO", "WARN"][(i % 5) as usize];
    (format!("{level} [{app}/{service}] line {i}: request handled in {} ms\n", (i * 37) % 250), ts)
}

/// `None` = ended because unsubscribed or the connection went away (no notification); `Some(err)` = the source
/// finished (cleanly with `None`, or with an error).
fn log_follow(mw: &Middleware, source: &SourceInstance, args: &Value) -> Option<Option<Failure>> {
    let app_name = args["app_name"].as_str().unwrap_or_default().to_string();
    let container_id = args["container_id"].as_str().unwrap_or_default().to_string();
    let tail = match args.get("tail_lines") {
        None => Some(500),
        Some(Value::Null) => None,
        Some(v) => v.as_u64(),
    };
    let (service, total, planted, crash) = {
        let st = mw.state();
        let Some(app) = st.apps.get(&app_name).filter(|_| st.docker_pool.is_some()) else {
            return Some(Some(Failure::not_found(format!("App {app_name} does not exist"))));
        };
        if !matches!(app.state, AppState::Running | AppState::Deploying | AppState::Crashed) {
            return Some(Some(Failure::call(EFAULT, format!("Unable to retrieve logs of stopped '{app_name}' app"))));
        }
        let Some(c) = app.containers.iter().find(|c| c.id == container_id) else {
            return Some(Some(Failure::call(
                ENOENT,
                format!("Container \"{container_id}\" not found in app \"{app_name}\""),
            )));
        };
        // A container that crashed on start printed only its start-up and its fatal error.
        let crash = if c.state == "crashed" { super::apps::crash_log(&c.service_name, &c.image) } else { vec![] };
        let total = if crash.is_empty() {
            st.log_lines.get(&app_name).copied().unwrap_or(mw.opts.log_lines)
        } else {
            crash.len() as u64
        };
        (c.service_name.clone(), total, st.planted_log.get(&app_name).cloned(), crash)
    };
    let start = tail.map(|t| total.saturating_sub(t)).unwrap_or(0);
    for i in start..total {
        let (mut data, ts) = log_line(&app_name, &service, i);
        if let Some(line) = crash.get(i as usize) {
            data = format!("{line}\n");
        }
        if let Some(line) = planted.as_ref().filter(|_| i + 1 == total) {
            data = format!("{line}\n");
        }
        if !source.emit(&json!({"data": data, "timestamp": ts})) {
            return None;
        }
    }
    let mut next = total;
    loop {
        // An exited or crashed container's stream ends after the tail; a removed one ends too.
        let alive = {
            let st = mw.state();
            st.apps.get(&app_name).and_then(|a| a.containers.iter().find(|c| c.id == container_id)).map(|c| c.state)
        };
        match alive {
            Some("running" | "starting" | "created") => {}
            _ => return Some(None),
        }
        if !source.sleep(mw.opts.log_follow_interval) {
            return None;
        }
        let (data, ts) = log_line(&app_name, &service, next);
        if !source.emit(&json!({"data": data, "timestamp": ts})) {
            return None;
        }
        next += 1;
    }
}

fn app_stats(mw: &Middleware, source: &SourceInstance, args: &Value) -> Option<Option<Failure>> {
    let asked = Duration::from_secs(args.get("interval").and_then(Value::as_u64).unwrap_or(2));
    let interval = mw.opts.stats_interval.unwrap_or(asked);
    let mut tick: u64 = 0;
    loop {
        if mw.docker_gate().is_err() {
            return Some(Some(Failure::call(EFAULT, "Apps are not available")));
        }
        if !source.sleep(interval) {
            return None;
        }
        tick += 1;
        let stats: Vec<Value> = {
            let st = mw.state();
            st.apps
                .values()
                .map(|a| {
                    let live = a.state != AppState::Stopped;
                    let k = if live { a.containers.len() as u64 } else { 0 };
                    json!({
                        "app_name": a.name,
                        "cpu_usage": if live { ((tick * 13 + a.name.len() as u64) % 40) as f64 / 10.0 } else { 0.0 },
                        "memory": k * 52_428_800,
                        "networks": if live { json!([{"interface_name": "eth0", "rx_bytes": 1200 * k, "tx_bytes": 800 * k}]) } else { json!([]) },
                        "blkio": {"read": 4096 * k, "write": 8192 * k},
                    })
                })
                .collect()
        };
        if !source.emit(&Value::Array(stats)) {
            return None;
        }
    }
}
