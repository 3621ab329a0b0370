//! An in-memory duplex byte pipe that behaves like a `TcpStream` (timeouts, EOF, broken pipe), so mock mode can run
//! the real WebSocket framing without a socket.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Bytes one direction may hold before writers block (like a socket buffer).
pub(crate) const PIPE_CAPACITY: usize = 4 * 1024 * 1024;

#[derive(Default)]
struct PipeState {
    data: VecDeque<u8>,
    /// The writing end is gone: readers see EOF once the data is drained.
    writer_closed: bool,
    /// The reading end is gone: writers get `BrokenPipe`.
    reader_closed: bool,
    /// A wake-up was requested: the next (or current) read returns `WouldBlock` at once.
    woken: bool,
}

/// One direction of a pipe.
pub(crate) struct Pipe {
    state: Mutex<PipeState>,
    changed: Condvar,
    capacity: usize,
}

impl Pipe {
    pub(crate) fn new(capacity: usize) -> Arc<Pipe> {
        Arc::new(Pipe { state: Mutex::new(PipeState::default()), changed: Condvar::new(), capacity })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PipeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Read like a socket with `SO_RCVTIMEO`: data, `Ok(0)` at EOF, `WouldBlock` after the timeout or a wake-up.
    pub(crate) fn read(&self, buf: &mut [u8], timeout: Option<Duration>) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.lock();
        loop {
            if !st.data.is_empty() {
                let n = buf.len().min(st.data.len());
                for (slot, byte) in buf.iter_mut().zip(st.data.drain(..n)) {
                    *slot = byte;
                }
                self.changed.notify_all();
                return Ok(n);
            }
            if st.writer_closed {
                return Ok(0);
            }
            if st.woken {
                st.woken = false;
                return Err(io::Error::new(io::ErrorKind::WouldBlock, "woken"));
            }
            st = match deadline {
                None => self.changed.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(io::Error::new(io::ErrorKind::WouldBlock, "read timed out"));
                    }
                    self.changed.wait_timeout(st, d - now).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
    }

    /// Write like a socket with `SO_SNDTIMEO`: as much as fits, `WouldBlock` when full past the timeout.
    pub(crate) fn write(&self, buf: &[u8], timeout: Option<Duration>) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.lock();
        loop {
            if st.reader_closed {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "peer closed the in-memory connection"));
            }
            if st.writer_closed {
                return Err(io::Error::new(io::ErrorKind::NotConnected, "in-memory connection shut down"));
            }
            let room = self.capacity.saturating_sub(st.data.len());
            if room > 0 {
                let n = room.min(buf.len());
                st.data.extend(&buf[..n]);
                self.changed.notify_all();
                return Ok(n);
            }
            st = match deadline {
                None => self.changed.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Err(io::Error::new(io::ErrorKind::WouldBlock, "write timed out"));
                    }
                    self.changed.wait_timeout(st, d - now).unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
    }

    pub(crate) fn close_writer(&self) {
        self.lock().writer_closed = true;
        self.changed.notify_all();
    }

    pub(crate) fn close_reader(&self) {
        let mut st = self.lock();
        st.reader_closed = true;
        st.data.clear();
        self.changed.notify_all();
    }

    pub(crate) fn wake(&self) {
        self.lock().woken = true;
        self.changed.notify_all();
    }
}

/// One end of an in-memory byte pipe (Read + Write, read timeouts like a socket).
///
/// `read` returns `WouldBlock` after the read timeout (as `TcpStream` does on Linux), `Ok(0)` once the peer is
/// dropped or shut down and all data is read; `write` fails with `BrokenPipe` when the peer is gone.
pub struct MemStream {
    rx: Arc<Pipe>,
    tx: Arc<Pipe>,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

/// Makes a blocked (or the next) `read` on a [`MemStream`] return `WouldBlock` at once, so an actor waiting for
/// bytes can also react to its own command queue without polling.
#[derive(Clone)]
pub struct MemWaker {
    pipe: Arc<Pipe>,
}

impl MemWaker {
    pub fn wake(&self) {
        self.pipe.wake();
    }
}

impl MemStream {
    /// A connected pair of ends.
    pub fn pair() -> (MemStream, MemStream) {
        MemStream::pair_with_capacity(PIPE_CAPACITY)
    }

    pub fn pair_with_capacity(capacity: usize) -> (MemStream, MemStream) {
        let a_to_b = Pipe::new(capacity);
        let b_to_a = Pipe::new(capacity);
        let a = MemStream { rx: b_to_a.clone(), tx: a_to_b.clone(), read_timeout: None, write_timeout: None };
        let b = MemStream { rx: a_to_b, tx: b_to_a, read_timeout: None, write_timeout: None };
        (a, b)
    }

    /// Like `TcpStream::set_read_timeout`: `None` blocks, a zero duration is an error.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        self.read_timeout = timeout;
        Ok(())
    }

    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        check_timeout(timeout)?;
        self.write_timeout = timeout;
        Ok(())
    }

    pub fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    /// A handle that interrupts this end's reads (see [`MemWaker`]).
    pub fn waker(&self) -> MemWaker {
        MemWaker { pipe: self.rx.clone() }
    }

    /// Like `TcpStream::shutdown(Both)`: the peer reads EOF, our own reads end too.
    pub fn shutdown(&self) {
        self.tx.close_writer();
        self.rx.close_writer();
    }
}

/// The client's connector hands this end to the actor in mock mode.
impl crate::truenas::ByteStream for MemStream {
    fn set_read_timeout(&mut self, read: Option<Duration>) -> io::Result<()> {
        MemStream::set_read_timeout(self, read)
    }

    fn set_write_timeout(&mut self, write: Option<Duration>) -> io::Result<()> {
        MemStream::set_write_timeout(self, write)
    }
}

fn check_timeout(timeout: Option<Duration>) -> io::Result<()> {
    if timeout == Some(Duration::ZERO) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot set a 0 duration timeout"));
    }
    Ok(())
}

impl Read for MemStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.rx.read(buf, self.read_timeout)
    }
}

impl Write for MemStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx.write(buf, self.write_timeout)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for MemStream {
    fn drop(&mut self) {
        self.tx.close_writer();
        self.rx.close_reader();
    }
}

impl std::fmt::Debug for MemStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemStream").field("read_timeout", &self.read_timeout).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_flow_both_ways_and_eof_follows_drop() {
        let (mut a, mut b) = MemStream::pair();
        a.write_all(b"hello").unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(b.read(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        b.write_all(b"x").unwrap();
        assert_eq!(a.read(&mut buf).unwrap(), 1);
        drop(a);
        assert_eq!(b.read(&mut buf).unwrap(), 0);
        assert_eq!(b.write(b"y").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn read_times_out_with_would_block_and_waker_interrupts() {
        let (_a, mut b) = MemStream::pair();
        b.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(b.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        b.set_read_timeout(None).unwrap();
        let waker = b.waker();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            waker.wake();
        });
        assert_eq!(b.read(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        t.join().unwrap();
        assert!(b.set_read_timeout(Some(Duration::ZERO)).is_err());
    }

    #[test]
    fn full_pipe_blocks_writer_until_timeout() {
        let (mut a, _b) = MemStream::pair_with_capacity(4);
        a.set_write_timeout(Some(Duration::from_millis(10))).unwrap();
        assert_eq!(a.write(b"abcdef").unwrap(), 4);
        assert_eq!(a.write(b"g").unwrap_err().kind(), io::ErrorKind::WouldBlock);
    }
}
