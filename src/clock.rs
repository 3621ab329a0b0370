//! Time as a dependency (ureq's `CurrentTime` idea): deadlines, keepalives, back-off and the tools' settle loops ask
//! a [`Clock`] for the time and sleep through it, so tests can drive time instead of waiting for it.
//! [`SystemClock`] is the real one; [`ManualClock`] is virtual time that moves only when a test advances it (or,
//! in auto-advance mode, jumps to whatever deadline a sleeper waits for).

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cancel::CancelToken;

pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Instant;

    /// Sleep until `deadline` or until `cancel` is cancelled; true when cancelled.
    fn sleep_until(&self, deadline: Instant, cancel: &CancelToken) -> bool;

    /// The longest a blocking wait on something else (a socket, a channel) may last before the caller looks at
    /// this clock again: unlimited for real time, short for virtual time that a test may advance meanwhile.
    fn max_real_wait(&self) -> Option<Duration> {
        None
    }

    fn sleep(&self, wait: Duration, cancel: &CancelToken) -> bool {
        self.sleep_until(self.now() + wait, cancel)
    }

    /// How long a stream must stay silent (in real time) before a reader takes it as finished, for a reader that
    /// would wait `wanted` on real time. Only a test clock shortens it.
    fn quiet_period(&self, wanted: Duration) -> Duration {
        wanted
    }

    fn elapsed_since(&self, earlier: Instant) -> Duration {
        self.now().saturating_duration_since(earlier)
    }
}

/// The shared handle everything holds.
pub type SharedClock = Arc<dyn Clock>;

/// The real clock.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep_until(&self, deadline: Instant, cancel: &CancelToken) -> bool {
        cancel.wait_timeout(deadline.saturating_duration_since(Instant::now()))
    }
}

/// Virtual time: starts at the real "now" and moves only by [`ManualClock::advance`], or — when `auto_advance` —
/// by jumping to the deadline of whoever sleeps (so a 10 s settle loop finishes in microseconds, in order).
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    offset: Mutex<Duration>,
    moved: Condvar,
    auto_advance: bool,
}

/// How often a sleeper on a manual clock looks at its cancel token while it waits for time to be advanced.
const MANUAL_POLL: Duration = Duration::from_millis(5);

impl ManualClock {
    pub fn new(auto_advance: bool) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            start: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
            moved: Condvar::new(),
            auto_advance,
        })
    }

    /// Move time forward by `by`, waking sleepers whose deadline has come.
    pub fn advance(&self, by: Duration) {
        *self.offset.lock().unwrap_or_else(|p| p.into_inner()) += by;
        self.moved.notify_all();
    }

    /// How far virtual time has moved since the clock was made.
    pub fn elapsed(&self) -> Duration {
        *self.offset.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.elapsed()
    }

    fn sleep_until(&self, deadline: Instant, cancel: &CancelToken) -> bool {
        let target = deadline.saturating_duration_since(self.start);
        let mut offset = self.offset.lock().unwrap_or_else(|p| p.into_inner());
        if self.auto_advance {
            if *offset < target {
                *offset = target;
                self.moved.notify_all();
            }
            return cancel.is_cancelled();
        }
        while *offset < target {
            if cancel.is_cancelled() {
                return true;
            }
            offset = self.moved.wait_timeout(offset, MANUAL_POLL).unwrap_or_else(|p| p.into_inner()).0;
        }
        cancel.is_cancelled()
    }

    fn max_real_wait(&self) -> Option<Duration> {
        Some(MANUAL_POLL)
    }
}

/// Real time that skips every sleep: `now` is the real time plus all the time sleepers skipped, and a sleeper first
/// lets `real_step` of real time pass (so that other threads — a simulator settling an app — move on between two
/// polls) and then jumps to its deadline. Waits on events (a socket, a log stream's quiet period) stay real, so
/// what arrives and in which order is as with [`SystemClock`]; only the pauses between polls disappear. What the
/// binary runs on under [`TEST_CLOCK_ENV`].
#[derive(Debug)]
pub struct SkippingClock {
    skipped: Mutex<Duration>,
    real_step: Duration,
}

impl SkippingClock {
    pub fn new(real_step: Duration) -> Arc<SkippingClock> {
        Arc::new(SkippingClock { skipped: Mutex::new(Duration::ZERO), real_step })
    }

    /// All the time sleepers skipped so far.
    pub fn skipped(&self) -> Duration {
        *self.skipped.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Clock for SkippingClock {
    fn now(&self) -> Instant {
        Instant::now() + self.skipped()
    }

    fn sleep_until(&self, deadline: Instant, cancel: &CancelToken) -> bool {
        if cancel.wait_timeout(self.real_step) {
            return true;
        }
        let mut skipped = self.skipped.lock().unwrap_or_else(|p| p.into_inner());
        let left = deadline.saturating_duration_since(Instant::now() + *skipped);
        *skipped += left;
        cancel.is_cancelled()
    }

    /// A wait on something else gives up after a real step and sleeps the rest on this clock (skipping it) when
    /// the caller decides nothing is coming: the drain of `serve`. A log tail's quiet period stays real (its sleeps
    /// are one step long, so there is nothing left to skip).
    fn max_real_wait(&self) -> Option<Duration> {
        Some(self.real_step)
    }

    /// A burst (a log tail the simulator writes in one go) has no pauses this long even on a loaded machine, while a
    /// running container's next line comes later than this.
    fn quiet_period(&self, wanted: Duration) -> Duration {
        wanted.min(self.real_step * QUIET_STEPS)
    }
}

/// A skipping clock's quiet period, in real steps (100 ms with the test setting's 5 ms step).
const QUIET_STEPS: u32 = 20;

/// The hidden, test-only environment variable: `auto` makes the binary's tool waits (settle and health polls) and
/// the `serve` drain run on a [`SkippingClock`], so integration tests that drive the binary do not wait for time.
/// Honoured only by debug builds (what `cargo test` builds); release builds ignore it.
pub const TEST_CLOCK_ENV: &str = "TRUENAS_MCP_TEST_CLOCK";

/// Whether [`TEST_CLOCK_ENV`] is set to `auto` in a debug build, read through `get` (the environment).
pub fn test_clock_requested(get: impl Fn(&str) -> Option<String>) -> bool {
    cfg!(debug_assertions) && get(TEST_CLOCK_ENV).as_deref() == Some("auto")
}

/// The clock [`TEST_CLOCK_ENV`] asks for, read through `get` (the environment); `None` in release builds or
/// when unset.
pub fn from_test_env(get: impl Fn(&str) -> Option<String>) -> Option<SharedClock> {
    if !test_clock_requested(get) {
        return None;
    }
    log::info!("{TEST_CLOCK_ENV}=auto: tool waits skip their pauses (a test setting)");
    Some(SkippingClock::new(MANUAL_POLL))
}

/// RFC 3339 UTC text of a point in time, e.g. `2026-11-24T03:04:05.123Z` (the audit log's and `check`'s clock).
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    rfc3339_from_millis(since.as_millis() as i64)
}

/// `2025-01-01T12:00:00.123Z` from milliseconds since the Unix epoch (UTC), as TrueNAS sends dates (`$date`).
pub fn rfc3339_from_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, (rem % 3600) / 60, rem % 60)
}

/// Proleptic Gregorian date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, "2000-02-29T00:00:00.000Z"),
            (1_795_489_445, "2026-11-24T03:04:05.000Z"),
            (4_107_542_399, "2100-02-28T23:59:59.000Z"),
        ];
        for (secs, want) in cases {
            assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(secs)), want);
        }
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(1_234)), "1970-01-01T00:00:01.234Z");
        assert_eq!(rfc3339_from_millis(1_571_300_596_053), "2019-10-17T08:23:16.053Z");
    }

    #[test]
    fn negative_millis_are_before_the_epoch() {
        assert_eq!(rfc3339_from_millis(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn manual_time_moves_only_when_advanced() {
        let clock = ManualClock::new(false);
        let t0 = clock.now();
        let sleeper = {
            let clock = Arc::clone(&clock);
            std::thread::spawn(move || {
                let woke = clock.sleep_until(t0 + Duration::from_secs(3600), &CancelToken::new());
                (woke, clock.now())
            })
        };
        clock.advance(Duration::from_secs(1800));
        clock.advance(Duration::from_secs(1800));
        let (cancelled, woke_at) = sleeper.join().unwrap();
        assert!(!cancelled);
        assert_eq!(woke_at - t0, Duration::from_secs(3600));
    }

    #[test]
    fn auto_advance_jumps_to_the_deadline_and_cancel_wakes_a_manual_sleeper() {
        let clock = ManualClock::new(true);
        let t0 = clock.now();
        assert!(!clock.sleep(Duration::from_secs(10), &CancelToken::new()));
        assert_eq!(clock.now() - t0, Duration::from_secs(10));
        let manual = ManualClock::new(false);
        let cancel = CancelToken::new();
        let sleeper = {
            let (manual, cancel) = (Arc::clone(&manual), cancel.clone());
            std::thread::spawn(move || manual.sleep(Duration::from_secs(600), &cancel))
        };
        cancel.cancel();
        assert!(sleeper.join().unwrap(), "the cancel woke it");
    }

    #[test]
    fn a_skipping_clock_jumps_sleeps_and_only_for_the_test_setting() {
        let clock = SkippingClock::new(Duration::from_millis(1));
        let t0 = clock.now();
        assert!(!clock.sleep(Duration::from_secs(30), &CancelToken::new()));
        assert!(clock.now() - t0 >= Duration::from_secs(30));
        assert!(clock.skipped() <= Duration::from_secs(30), "the real step counts towards the sleep");
        let cancel = CancelToken::new();
        cancel.cancel();
        assert!(clock.sleep(Duration::from_secs(30), &cancel));
        assert!(from_test_env(|_| None).is_none());
        assert!(from_test_env(|_| Some("yes".into())).is_none());
        assert_eq!(from_test_env(|k| (k == TEST_CLOCK_ENV).then(|| "auto".into())).is_some(), cfg!(debug_assertions));
        // Silence is shortened to a bound that still spans scheduling pauses; real time keeps what it is asked.
        assert_eq!(clock.quiet_period(Duration::from_secs(1)), Duration::from_millis(20));
        assert_eq!(SkippingClock::new(MANUAL_POLL).quiet_period(Duration::from_secs(1)), Duration::from_millis(100));
        assert_eq!(SystemClock.quiet_period(Duration::from_secs(1)), Duration::from_secs(1));
    }

    #[test]
    fn the_system_clock_sleeps_until_cancelled() {
        let cancel = CancelToken::new();
        cancel.cancel();
        assert!(SystemClock.sleep(Duration::from_secs(600), &cancel));
        let t0 = SystemClock.now();
        assert!(!SystemClock.sleep(Duration::from_millis(1), &CancelToken::new()));
        assert!(SystemClock.elapsed_since(t0) >= Duration::from_millis(1));
    }
}
