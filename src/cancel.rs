//! A cancellation token that any layer can hold and wait on: set by `notifications/cancelled` or Ctrl-C, read by
//! tool handlers, the TrueNAS client and the clock. It lives below `mcp` and `truenas` so that neither imports the
//! other to share it, and it can be waited on (`crossbeam_channel::select!` on [`CancelToken::receiver`], or
//! [`CancelToken::wait_timeout`]) instead of being polled.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

/// Never sent: the channel only ever disconnects, which is what wakes the waiters.
pub enum Never {}

#[derive(Debug)]
struct Inner {
    cancelled: AtomicBool,
    /// Dropped on cancel, which disconnects `closed` for every waiter at once.
    sender: Mutex<Option<Sender<Never>>>,
    closed: Receiver<Never>,
}

/// Cheap to clone; every clone sees the same cancellation.
#[derive(Clone, Debug)]
pub struct CancelToken(Arc<Inner>);

impl Default for CancelToken {
    fn default() -> CancelToken {
        let (sender, closed) = crossbeam_channel::bounded(0);
        CancelToken(Arc::new(Inner { cancelled: AtomicBool::new(false), sender: Mutex::new(Some(sender)), closed }))
    }
}

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// Cancel: idempotent; wakes every waiter.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        self.0.sender.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// A receiver that becomes ready (disconnected) when the token is cancelled: put it in a `select!` beside the
    /// channel you are waiting on.
    pub fn receiver(&self) -> &Receiver<Never> {
        &self.0.closed
    }

    /// Block up to `wait`; true when cancelled (at once if it already was).
    pub fn wait_timeout(&self, wait: Duration) -> bool {
        if self.is_cancelled() {
            return true;
        }
        match self.0.closed.recv_timeout(wait) {
            Err(RecvTimeoutError::Disconnected) => true,
            Err(RecvTimeoutError::Timeout) => self.is_cancelled(),
            Ok(never) => match never {},
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_wakes_when_another_thread_cancels() {
        let token = CancelToken::new();
        assert!(!token.wait_timeout(Duration::from_millis(1)));
        let remote = token.clone();
        let waiter = std::thread::spawn(move || remote.wait_timeout(Duration::from_secs(600)));
        token.cancel();
        assert!(waiter.join().unwrap(), "woken by the cancel, not by the 600 s timeout");
        assert!(token.is_cancelled() && token.wait_timeout(Duration::ZERO));
        token.cancel();
        crossbeam_channel::select! {
            recv(token.receiver()) -> r => assert!(r.is_err()),
            default(Duration::from_secs(600)) => panic!("select did not see the cancel"),
        }
    }
}
