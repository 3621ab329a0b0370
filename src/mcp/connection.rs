//! A connection is just a pair of channels of typed [`Message`]s. The server loop owns one end and never learns
//! what is on the other: the stdio threads (`stdio::connect`) or a test holding the other end of
//! [`Connection::memory`].
//!
//! Closing is disconnection, in both directions: when every sender of the incoming side is gone (the reader hit
//! EOF, the test dropped its sender), the input is closed; when the outgoing receiver is gone (the writer's output
//! failed), sending fails and the server stops.

use crossbeam_channel::{Receiver, Sender};

use crate::mcp::msg::Message;

/// One end of a message connection.
pub struct Connection {
    pub sender: Sender<Message>,
    pub receiver: Receiver<Message>,
}

impl Connection {
    /// Two connected ends with no bytes, threads or processes in between: (server end, client end).
    pub fn memory() -> (Connection, Connection) {
        let (to_client, from_server) = crossbeam_channel::unbounded();
        let (to_server, from_client) = crossbeam_channel::unbounded();
        (
            Connection { sender: to_client, receiver: from_client },
            Connection { sender: to_server, receiver: from_server },
        )
    }
}
