//! One way to make a [`Connection`]: two threads over a byte stream (stdin/stdout, or any `Read`/`Write`). The
//! reader is the only code that reads the input, the writer the only code that writes the output; between them
//! and the server loop there are only typed messages on channels.

use std::io::{BufReader, BufWriter, Read, Write};
use std::thread;
use std::time::Duration;

use crossbeam_channel::Receiver;
use serde_json::Value;

use crate::jsonrpc::{read_frame, ErrorObject, Frame};
use crate::mcp::connection::Connection;
use crate::mcp::msg::Message;
use crate::redact;

/// Messages the reader may queue before it stops reading: a client that floods us is slowed down at the pipe, not
/// buffered in memory.
const INPUT_QUEUE: usize = 64;
/// Messages queued for the writer before senders wait for it.
const OUTPUT_QUEUE: usize = 1024;

/// The threads behind a stdio [`Connection`].
pub struct IoThreads {
    /// Never sent on; disconnects once the writer flushed everything and ended.
    writer_done: Receiver<()>,
}

impl IoThreads {
    /// Wait until the writer has flushed every message queued before the last sender was dropped, at most `within`
    /// (a client that stops reading must not hold our exit forever). The reader is not waited for: it may be
    /// blocked reading an input that never closes, and it ends on its own when the input does.
    pub fn finish(self, within: Duration) {
        let _ = self.writer_done.recv_timeout(within);
    }
}

/// Start the reader (lines of at most `max_line` bytes from `input`) and the writer (to `output`) and return the
/// connection the server loop uses. The input side disconnects at EOF (or a read error); when the output fails
/// (e.g. a broken pipe) the writer stops and sending on the connection fails from then on.
pub fn connect(
    input: impl Read + Send + 'static,
    output: impl Write + Send + 'static,
    max_line: usize,
) -> std::io::Result<(Connection, IoThreads)> {
    let (to_server, from_reader) = crossbeam_channel::bounded::<Message>(INPUT_QUEUE);
    let (to_writer, from_server) = crossbeam_channel::bounded::<Message>(OUTPUT_QUEUE);
    let (done_tx, writer_done) = crossbeam_channel::bounded::<()>(0);
    thread::Builder::new().name("mcp-writer".into()).spawn(move || {
        let _done = done_tx;
        write_messages(output, &from_server)
    })?;
    thread::Builder::new().name("mcp-reader".into()).spawn(move || {
        let mut reader = BufReader::with_capacity(64 * 1024, input);
        let mut line = Vec::with_capacity(4096);
        loop {
            let message = match read_frame(&mut reader, max_line, &mut line) {
                Ok(Frame::Eof) => return,
                Err(e) => {
                    log::warn!("reading the input failed, treating it as closed: {e}");
                    return;
                }
                Ok(Frame::TooLong { len }) => Message::Invalid {
                    id: None,
                    error: ErrorObject::invalid_request(format!(
                        "message of {len} bytes exceeds the {max_line}-byte line limit and was discarded"
                    )),
                },
                Ok(Frame::Line) if line.iter().all(u8::is_ascii_whitespace) => continue,
                Ok(Frame::Line) => parse_line(&line),
            };
            if to_server.send(message).is_err() {
                return; // the server loop is gone
            }
            if line.capacity() > 1024 * 1024 {
                line = Vec::with_capacity(4096); // do not keep a huge buffer after one big message
            }
        }
    })?;
    Ok((Connection { sender: to_writer, receiver: from_reader }, IoThreads { writer_done }))
}

fn parse_line(line: &[u8]) -> Message {
    let text = match std::str::from_utf8(line) {
        Ok(text) => text,
        Err(e) => {
            let error = ErrorObject::parse_error(format!(
                "parse error: the line is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ));
            return Message::Invalid { id: None, error };
        }
    };
    // Some Windows tools start a stream with a byte-order mark; it is not part of the JSON.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match serde_json::from_str::<Value>(text) {
        Ok(value) => {
            if log::log_enabled!(log::Level::Debug) {
                log::debug!("< {}", redact::for_log(&value));
            }
            Message::from_value(value)
        }
        Err(e) => {
            log::debug!("< (a line of {} bytes that is not JSON)", text.len());
            let error = ErrorObject::parse_error(format!("parse error: the line is not valid JSON ({e})"));
            Message::Invalid { id: None, error }
        }
    }
}

/// The writer's loop: one line per message until every sender is gone (then flush) or the output fails.
fn write_messages(output: impl Write, messages: &Receiver<Message>) {
    let mut out = BufWriter::with_capacity(64 * 1024, output);
    for message in messages {
        let Some(value) = message.to_value() else {
            log::error!("a reader-only message was sent to the writer: {message:?}");
            continue;
        };
        if log::log_enabled!(log::Level::Debug) {
            log::debug!("> {}", redact::for_log(&value));
        }
        // Flush when nothing else is queued: every message leaves promptly, bursts share one write.
        let written = serde_json::to_writer(&mut out, &value)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| if messages.is_empty() { out.flush() } else { Ok(()) });
        if let Err(e) = written {
            // Returning drops the receiver, so the next send on the connection fails and the server stops.
            log::info!("the output closed ({e}); stopping");
            return;
        }
    }
    let _ = out.flush();
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::sync::{Arc, Mutex};

    use serde_json::json;

    use super::*;
    use crate::jsonrpc::{self, Request, RequestId};

    /// Output the test can read after the writer has finished.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_reader_turns_lines_into_typed_messages_and_disconnects_at_eof() {
        let long = format!("\"{}\"", "x".repeat(60));
        let input = format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}}\n  \nnot json\n[]\n{long}\n\"last\"");
        let mut input = input.into_bytes();
        input.splice(0..0, b"\xff\n".iter().copied());
        let (connection, _io) = connect(Cursor::new(input), std::io::sink(), 50).unwrap();
        let got: Vec<Message> = connection.receiver.iter().collect(); // ends when the reader hangs up at EOF
        let invalid = |code: i64, message: &str| Message::Invalid { id: None, error: ErrorObject::new(code, message) };
        let ping = Request { id: RequestId::from(1), method: "ping".into(), params: None };
        let not_json = serde_json::from_str::<Value>("not json").unwrap_err();
        assert_eq!(
            got,
            [
                invalid(jsonrpc::PARSE_ERROR, "parse error: the line is not valid UTF-8 (invalid byte at offset 0)"),
                Message::Request(ping),
                invalid(jsonrpc::PARSE_ERROR, &format!("parse error: the line is not valid JSON ({not_json})")),
                Message::Batch(Vec::new()),
                invalid(
                    jsonrpc::INVALID_REQUEST,
                    "message of 62 bytes exceeds the 50-byte line limit and was discarded"
                ),
                Message::from_value(json!("last")),
            ]
        );
    }

    #[test]
    fn the_writer_writes_one_line_per_message_and_finishes_when_the_senders_are_gone() {
        let output = Shared::default();
        let (connection, io) = connect(std::io::empty(), output.clone(), 1024).unwrap();
        connection.sender.send(Message::notification("notifications/progress", json!({"progress": 1}))).unwrap();
        let invalid = Message::Invalid { id: None, error: ErrorObject::internal("x") };
        connection.sender.send(invalid).unwrap(); // reader-only: skipped, not written
        let answer = jsonrpc::Response { id: Some(RequestId::from(2)), outcome: Ok(json!({})) };
        connection.sender.send(Message::Batch(vec![answer.into()])).unwrap();
        drop(connection);
        io.finish(Duration::from_secs(10));
        let text = String::from_utf8(output.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(
            lines,
            [
                json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progress": 1}}),
                json!([{"jsonrpc": "2.0", "id": 2, "result": {}}]),
            ]
        );
    }
}
