//! The two I/O threads: the reader (the only code that reads the input) and the writer (the only code that
//! writes the output). Everything in between talks to them through channels.

use std::io::{BufReader, BufWriter, Read, Write};
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender};
use serde_json::Value;

use crate::jsonrpc::{read_frame, ErrorObject, Frame};
use crate::redact;

/// What the reader makes of one line.
#[derive(Debug)]
pub enum Incoming {
    /// Valid JSON (not yet checked to be JSON-RPC).
    Json(Value),
    /// Not JSON, not UTF-8, or too long: answered with this error and `id: null`.
    Malformed(ErrorObject),
}

/// Spawn the reader: one [`Incoming`] per non-blank line, then `on_eof` once input ends (or fails).
pub fn spawn_reader<E: Send + 'static>(
    input: impl Read + Send + 'static,
    max_line: usize,
    events: Sender<E>,
    wrap: fn(Incoming) -> E,
    on_eof: E,
) -> std::io::Result<JoinHandle<()>> {
    thread::Builder::new().name("mcp-reader".into()).spawn(move || {
        let mut reader = BufReader::with_capacity(64 * 1024, input);
        let mut line = Vec::with_capacity(4096);
        loop {
            let incoming = match read_frame(&mut reader, max_line, &mut line) {
                Ok(Frame::Eof) => break,
                Err(e) => {
                    log::warn!("reading the input failed, treating it as closed: {e}");
                    break;
                }
                Ok(Frame::TooLong { len }) => Incoming::Malformed(ErrorObject::invalid_request(format!(
                    "message of {len} bytes exceeds the {max_line}-byte line limit and was discarded"
                ))),
                Ok(Frame::Line) if line.iter().all(u8::is_ascii_whitespace) => continue,
                Ok(Frame::Line) => parse_line(&line),
            };
            if events.send(wrap(incoming)).is_err() {
                return; // the main loop is gone
            }
            if line.capacity() > 1024 * 1024 {
                line = Vec::with_capacity(4096); // do not keep a huge buffer after one big message
            }
        }
        let _ = events.send(on_eof);
    })
}

fn parse_line(line: &[u8]) -> Incoming {
    let text = match std::str::from_utf8(line) {
        Ok(text) => text,
        Err(e) => {
            return Incoming::Malformed(ErrorObject::parse_error(format!(
                "parse error: the line is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            )))
        }
    };
    // Some Windows tools start a stream with a byte-order mark; it is not part of the JSON.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match serde_json::from_str(text) {
        Ok(value) => {
            if log::log_enabled!(log::Level::Debug) {
                log::debug!("< {}", redact::for_log(&value));
            }
            Incoming::Json(value)
        }
        Err(e) => {
            log::debug!("< (a line of {} bytes that is not JSON)", text.len());
            Incoming::Malformed(ErrorObject::parse_error(format!("parse error: the line is not valid JSON ({e})")))
        }
    }
}

/// What the writer is told.
pub enum WriterMsg {
    Line(String),
    /// Write what is queued before this, flush and stop.
    Close,
}

/// A cloneable handle that queues messages for the writer; sending after the writer stopped is a no-op.
#[derive(Clone)]
pub struct Outbox(Sender<WriterMsg>);

impl Outbox {
    pub fn send(&self, message: &Value) {
        match serde_json::to_string(message) {
            Ok(line) => {
                if log::log_enabled!(log::Level::Debug) {
                    log::debug!("> {}", redact::for_log(message));
                }
                let _ = self.0.send(WriterMsg::Line(line));
            }
            Err(e) => log::error!("could not serialize an outgoing message: {e}"),
        }
    }

    pub fn close(&self) {
        let _ = self.0.send(WriterMsg::Close);
    }
}

/// Spawn the writer. `on_closed` is sent once if the output fails (e.g. a broken pipe); `done` is dropped when the
/// thread ends, so a receiver can wait for the final flush with a timeout.
pub fn spawn_writer<E: Send + 'static>(
    output: impl Write + Send + 'static,
    queue: usize,
    events: Sender<E>,
    on_closed: E,
) -> std::io::Result<(Outbox, Receiver<()>)> {
    let (tx, rx) = crossbeam_channel::bounded::<WriterMsg>(queue);
    let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
    thread::Builder::new().name("mcp-writer".into()).spawn(move || {
        let _done = done_tx;
        let mut out = BufWriter::with_capacity(64 * 1024, output);
        let write_one = |out: &mut BufWriter<_>, line: &str, flush: bool| -> std::io::Result<()> {
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
            if flush {
                out.flush()?;
            }
            Ok(())
        };
        while let Ok(msg) = rx.recv() {
            let result = match msg {
                // Flush when nothing else is queued: every message leaves promptly, bursts share one write.
                WriterMsg::Line(line) => write_one(&mut out, &line, rx.is_empty()),
                WriterMsg::Close => {
                    let _ = out.flush();
                    return;
                }
            };
            if let Err(e) = result {
                log::info!("the output closed ({e}); stopping");
                let _ = events.send(on_closed);
                return;
            }
        }
        let _ = out.flush();
    })?;
    Ok((Outbox(tx), done_rx))
}
