//! Runtime fault knobs (latency, drops, stuck jobs, garbage, expired sessions, half-open sockets, stalled TLS),
//! so tests can make the simulator misbehave the way networks and NAS boxes do.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
pub(crate) struct FaultState {
    /// (method prefix, latency) — the longest matching prefix wins.
    pub latency: Mutex<Vec<(String, Duration)>>,
    /// Extra per-call latency drawn from 0..=this (ms), so responses come back out of order.
    pub jitter_ms: AtomicI64,
    jitter_seed: std::sync::atomic::AtomicU64,
    /// Frames left before the connection receiving the last one is dropped (-1 = disarmed).
    pub drop_after_frames: AtomicI64,
    /// The next job reaching 50 % drops its caller's connection.
    pub drop_mid_job: AtomicBool,
    /// Jobs stop at 50 % until aborted (or the knob is cleared).
    pub never_finish_jobs: AtomicBool,
    /// The next outgoing call response is preceded by a garbage text frame.
    pub garbage_next: AtomicBool,
    /// Sessions that logged in before this epoch are logged out before their next call.
    pub expire_epoch: AtomicI64,
    /// Connections existing now stop reading and answering (one shot, picked up by the connection loops).
    pub half_open_epoch: AtomicI64,
    /// New TLS handshakes are not answered while set.
    pub stall_tls: AtomicBool,
    /// Plain TCP peers count as remote (insecure) even on loopback.
    pub plain_tcp_remote: AtomicBool,
    /// Calls counted by the login rate limit at or before this instant no longer count (their window has passed).
    pub rate_window_passed: Mutex<Option<std::time::Instant>>,
}

/// A cloneable handle to the simulator's fault knobs; changes apply at once to live connections.
#[derive(Clone)]
pub struct Faults {
    pub(crate) state: Arc<FaultState>,
}

impl Faults {
    pub(crate) fn new(plain_tcp_remote: bool) -> Faults {
        let state = FaultState::default();
        state.drop_after_frames.store(-1, Ordering::SeqCst);
        state.plain_tcp_remote.store(plain_tcp_remote, Ordering::SeqCst);
        Faults { state: Arc::new(state) }
    }

    /// Delay every call whose method starts with `method_prefix` ("" = all) by `latency` (inside the server's
    /// execution slot, like a slow middleware). A zero duration removes the entry.
    pub fn set_latency(&self, method_prefix: &str, latency: Duration) {
        let mut l = self.state.latency.lock().unwrap_or_else(|e| e.into_inner());
        l.retain(|(p, _)| p != method_prefix);
        if !latency.is_zero() {
            l.push((method_prefix.to_string(), latency));
        }
    }

    /// Add a pseudo-random 0..=`max` delay to every call (responses then complete out of order); zero turns it off.
    pub fn set_latency_jitter(&self, max: Duration) {
        self.state.jitter_ms.store(max.as_millis() as i64, Ordering::SeqCst);
    }

    pub(crate) fn jitter(&self) -> Option<Duration> {
        let max = self.state.jitter_ms.load(Ordering::SeqCst);
        if max <= 0 {
            return None;
        }
        // splitmix64 over a shared counter: deterministic sequence, no dependency.
        let mut z = self.state.jitter_seed.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::SeqCst);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Some(Duration::from_millis(z % (max as u64 + 1)))
    }

    pub fn clear_latency(&self) {
        self.state.latency.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub(crate) fn latency_for(&self, method: &str) -> Option<Duration> {
        let l = self.state.latency.lock().unwrap_or_else(|e| e.into_inner());
        l.iter().filter(|(p, _)| method.starts_with(p.as_str())).max_by_key(|(p, _)| p.len()).map(|(_, d)| *d)
    }

    /// Drop (no close frame) the connection that receives the `n`-th frame from now, counted over all
    /// connections; one shot. `n = 1` drops on the very next frame.
    pub fn drop_after_frames(&self, n: u64) {
        self.state.drop_after_frames.store(n.max(1) as i64, Ordering::SeqCst);
    }

    /// Called per received frame: true when this frame trips the knob.
    pub(crate) fn frame_trips_drop(&self) -> bool {
        let s = &self.state.drop_after_frames;
        let mut cur = s.load(Ordering::SeqCst);
        loop {
            if cur < 1 {
                return false;
            }
            let next = if cur == 1 { -1 } else { cur - 1 };
            match s.compare_exchange(cur, next, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return cur == 1,
                Err(actual) => cur = actual,
            }
        }
    }

    /// The next job that reaches 50 % drops the connection of the session that started it (the job itself goes
    /// on and finishes server-side); one shot.
    pub fn drop_mid_job(&self) {
        self.state.drop_mid_job.store(true, Ordering::SeqCst);
    }

    pub(crate) fn take_drop_mid_job(&self) -> bool {
        self.state.drop_mid_job.swap(false, Ordering::SeqCst)
    }

    /// While set, jobs stop at 50 % and wait (until aborted, or until this is cleared).
    pub fn set_never_finish_jobs(&self, on: bool) {
        self.state.never_finish_jobs.store(on, Ordering::SeqCst);
    }

    pub(crate) fn never_finish_jobs(&self) -> bool {
        self.state.never_finish_jobs.load(Ordering::SeqCst)
    }

    /// The next call response (on any connection) is preceded by a text frame that is not JSON; one shot.
    pub fn send_garbage(&self) {
        self.state.garbage_next.store(true, Ordering::SeqCst);
    }

    pub(crate) fn take_garbage(&self) -> bool {
        self.state.garbage_next.swap(false, Ordering::SeqCst)
    }

    /// Log out every authenticated session: their next call gets 207 ENOTAUTHENTICATED and their subscriptions end
    /// (the strict reading: a client must re-subscribe after logging in again); logging in again works.
    pub fn expire_sessions(&self) {
        self.state.expire_epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Let the rate-limit window of every method and address pass now, as if `RateLimit::window` had elapsed,
    /// so a test need not wait for it.
    pub fn pass_rate_limit_windows(&self) {
        *self.state.rate_window_passed.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
    }

    /// Whether a call counted at `at` is outside the window by [`Faults::pass_rate_limit_windows`].
    pub(crate) fn rate_window_passed(&self, at: std::time::Instant) -> bool {
        self.state.rate_window_passed.lock().unwrap_or_else(|e| e.into_inner()).is_some_and(|passed| at <= passed)
    }

    pub(crate) fn expire_epoch(&self) -> i64 {
        self.state.expire_epoch.load(Ordering::SeqCst)
    }

    /// Every connection open now stops reading and answering but keeps its socket (a half-open peer). New
    /// connections behave normally. Frozen connections still close on the idle timeout, like nginx would.
    pub fn half_open_existing(&self) {
        self.state.half_open_epoch.fetch_add(1, Ordering::SeqCst);
    }

    pub(crate) fn half_open_epoch(&self) -> i64 {
        self.state.half_open_epoch.load(Ordering::SeqCst)
    }

    /// While set, TLS handshakes of new connections are not answered.
    pub fn set_stall_tls_handshake(&self, on: bool) {
        self.state.stall_tls.store(on, Ordering::SeqCst);
    }

    pub(crate) fn stall_tls(&self) -> bool {
        self.state.stall_tls.load(Ordering::SeqCst)
    }

    /// Treat plain TCP (ws://) peers as remote, i.e. insecure transport, even from 127.0.0.1 — makes the API-key
    /// revocation path testable. TLS and in-memory connections stay secure.
    pub fn set_plain_tcp_remote(&self, on: bool) {
        self.state.plain_tcp_remote.store(on, Ordering::SeqCst);
    }

    pub(crate) fn plain_tcp_remote(&self) -> bool {
        self.state.plain_tcp_remote.load(Ordering::SeqCst)
    }
}
