//! A fixed pool of named worker threads fed by a bounded queue. Each job runs under `catch_unwind`, so a panicking
//! handler becomes a `-32603` error for its request and the worker lives on.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::thread;

use crossbeam_channel::{Sender, TrySendError};
use serde_json::Value;

use crate::jsonrpc::ErrorObject;

pub type Outcome = Result<Value, ErrorObject>;

/// One unit of work: `key` identifies it to the main loop, `label` names it in a panic message.
pub struct Job {
    pub key: u64,
    pub label: String,
    pub run: Box<dyn FnOnce() -> Outcome + Send>,
}

pub struct Pool {
    queue: Sender<Job>,
}

impl Pool {
    /// Start `workers` threads; each finished job is reported with `done(key, outcome)` sent on `events`.
    pub fn start<E: Send + 'static>(
        workers: usize,
        queue: usize,
        events: Sender<E>,
        done: fn(u64, Outcome) -> E,
    ) -> std::io::Result<Pool> {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(queue);
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let events = events.clone();
            thread::Builder::new().name(format!("mcp-worker-{i}")).spawn(move || {
                for job in rx.iter() {
                    let Job { key, label, run } = job;
                    let outcome = catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|panic| {
                        let why = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "unknown panic payload".into());
                        log::error!("{label} panicked: {why}");
                        Err(ErrorObject::internal(format!(
                            "{label} failed with an internal error ({why}); the server is still running, \
                             please report this bug"
                        )))
                    });
                    if events.send(done(key, outcome)).is_err() {
                        return;
                    }
                }
            })?;
        }
        Ok(Pool { queue: tx })
    }

    /// Queue a job without blocking; gives it back when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        self.queue.try_send(job).map_err(|e| match e {
            TrySendError::Full(job) | TrySendError::Disconnected(job) => job,
        })
    }
}
