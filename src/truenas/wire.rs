//! One open WebSocket to the middleware: reading and writing frames with the right timeouts, the keepalive ping
//! and pong watch, and a blocking request/answer used while connecting and logging in. Nothing here knows about
//! calls, jobs or subscriptions; messages that are not the awaited answer are handed back to the caller.

use std::time::{Duration, Instant};

use log::{debug, log_enabled, Level};
use serde_json::Value;
use tungstenite::Message;

use super::codec::{Codec, Incoming};
use super::error::{TimeoutPhase, TnError, WireError};
use super::transport::Socket;
use crate::clock::SharedClock;

/// Socket read timeout while requests are outstanding: the longest a new command waits to be sent.
pub const BUSY_TICK: Duration = Duration::from_millis(2);
/// Read timeout used to drain what is already buffered.
pub const DRAIN_TICK: Duration = Duration::from_millis(1);
/// A peer that does not read for this long is dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest single read while waiting for a synchronous answer.
const SYNC_READ: Duration = Duration::from_millis(50);

pub fn lost(detail: impl Into<String>, outcome_unknown: bool) -> TnError {
    TnError::ConnectionLost { outcome_unknown, detail: detail.into() }
}

pub enum ReadOutcome {
    Message(Incoming),
    Control,
    Idle,
}

pub struct Conn {
    socket: Socket,
    pub codec: Box<dyn Codec>,
    pub authenticated: bool,
    read_timeout: Option<Duration>,
    pub last_rx: Instant,
    pub last_tx: Instant,
    last_ping: Instant,
    ping_outstanding: Option<Instant>,
    clock: SharedClock,
}

impl Conn {
    /// Wrap a freshly upgraded socket, switching to the steady-state timeouts.
    pub fn new(mut socket: Socket, codec: Box<dyn Codec>, clock: SharedClock) -> Result<Conn, TnError> {
        socket
            .get_mut()
            .set_timeouts(Some(BUSY_TICK), Some(WRITE_TIMEOUT))
            .map_err(|e| lost(format!("cannot set socket timeouts: {e}"), false))?;
        let now = clock.now();
        Ok(Conn {
            socket,
            codec,
            authenticated: false,
            read_timeout: Some(BUSY_TICK),
            last_rx: now,
            last_tx: now,
            last_ping: now,
            ping_outstanding: None,
            clock,
        })
    }

    /// Read one message, waiting up to `wait` (real time, capped by what the clock allows).
    pub fn read_one(&mut self, wait: Duration) -> Result<ReadOutcome, String> {
        let wait = self.clock.max_real_wait().map_or(wait, |cap| wait.min(cap)).max(Duration::from_millis(1));
        if self.read_timeout != Some(wait) {
            self.socket.get_mut().set_read_timeout(Some(wait)).map_err(|e| format!("socket error: {e}"))?;
            self.read_timeout = Some(wait);
        }
        match self.socket.read() {
            Ok(msg) => {
                self.last_rx = self.clock.now();
                self.ping_outstanding = None;
                match msg {
                    Message::Text(text) => {
                        log_in(&text);
                        Ok(ReadOutcome::Message(self.codec.decode(&text)))
                    }
                    Message::Binary(_) => Ok(ReadOutcome::Message(Incoming::Malformed("a binary frame".into()))),
                    Message::Close(frame) => Err(match frame {
                        Some(f) => format!("the server closed the connection ({} {})", u16::from(f.code), f.reason),
                        None => "the server closed the connection".to_string(),
                    }),
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Ok(ReadOutcome::Control),
                }
            }
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
                ) =>
            {
                Ok(ReadOutcome::Idle)
            }
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                Err("the server closed the connection".to_string())
            }
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err("the server closed the connection".to_string())
            }
            Err(e) => Err(format!("{e}")),
        }
    }

    /// Queue a text frame without flushing (the caller flushes once after a batch).
    pub fn write(&mut self, text: String) -> Result<(), String> {
        self.socket.write(Message::Text(text)).map_err(|e| format!("sending failed: {e}"))
    }

    pub fn flush(&mut self) -> Result<(), String> {
        self.socket.flush().map_err(|e| format!("sending failed: {e}"))?;
        self.last_tx = self.clock.now();
        Ok(())
    }

    /// Write and flush one text frame.
    pub fn send_now(&mut self, text: &str) -> Result<(), String> {
        self.write(text.to_string())?;
        self.flush()
    }

    /// When the keepalive needs attention next (a ping to send, or a pong that is overdue).
    pub fn next_keepalive(&self, interval: Duration, pong_timeout: Duration) -> Instant {
        let next_ping = self.last_ping + interval;
        match self.ping_outstanding {
            Some(sent) => next_ping.min(sent + pong_timeout),
            None => next_ping,
        }
    }

    /// Ping every `interval`; an error when the last ping went unanswered for `pong_timeout` (a dead peer).
    pub fn keepalive(&mut self, now: Instant, interval: Duration, pong_timeout: Duration) -> Result<(), String> {
        if let Some(sent) = self.ping_outstanding {
            if now.saturating_duration_since(sent) > pong_timeout {
                return Err(format!("no answer to a keepalive ping within {pong_timeout:?}"));
            }
        }
        if now.saturating_duration_since(self.last_ping) >= interval {
            self.last_ping = now;
            if self.ping_outstanding.is_none() {
                self.ping_outstanding = Some(now);
            }
            self.socket.write(Message::Ping(Vec::new())).map_err(|e| format!("keepalive ping failed: {e}"))?;
            self.socket.flush().map_err(|e| format!("keepalive ping failed: {e}"))?;
        }
        Ok(())
    }

    /// A polite close that never waits long for a peer that stopped reading.
    pub fn close(&mut self) {
        let _ = self.socket.get_mut().set_timeouts(Some(DRAIN_TICK), Some(Duration::from_millis(100)));
        let _ = self.socket.close(None);
        let _ = self.socket.flush();
    }

    /// Send `text` and read until the answer to `id` arrives; everything else read meanwhile goes to `others`.
    /// A `ConnectionLost` error means this connection is unusable; a `Timeout` leaves the answer outstanding.
    pub fn request_sync(
        &mut self,
        id: &str,
        text: &str,
        timeout: Duration,
        phase: TimeoutPhase,
        others: &mut Vec<Incoming>,
    ) -> Result<Result<Value, WireError>, TnError> {
        self.send_now(text).map_err(|e| lost(e, false))?;
        let deadline = self.clock.now() + timeout;
        loop {
            let now = self.clock.now();
            if now >= deadline {
                return Err(TnError::Timeout { phase, after: timeout });
            }
            match self.read_one((deadline - now).min(SYNC_READ)) {
                Ok(ReadOutcome::Message(Incoming::Response { id: rid, result })) if rid == id => return Ok(result),
                Ok(ReadOutcome::Message(other)) => others.push(other),
                Ok(_) => {}
                Err(e) => return Err(lost(e, false)),
            }
        }
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }
}

pub fn log_out(text: &str) {
    if log_enabled!(Level::Debug) {
        debug!("> {}", crate::redact::frame_for_log(text));
    }
}

fn log_in(text: &str) {
    if log_enabled!(Level::Debug) {
        debug!("< {}", crate::redact::frame_for_log(text));
    }
}
