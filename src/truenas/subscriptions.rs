//! Local fan-out of server subscriptions: one server subscription per collection, any number of local subscribers.
//!
//! The server sends one copy of a regular event per socket but N copies of an event source subscribed N times
//! (reference §5.1), so we keep exactly one server subscription per collection name and fan out here.

use std::collections::HashMap;

use crossbeam_channel::{Sender, TrySendError};

use super::error::TnError;
use super::types::SubEvent;

/// How many undelivered events a slow subscriber may have before we drop events for it.
pub const SUBSCRIBER_BUFFER: usize = 4096;

struct Subscriber {
    local_id: u64,
    events: Sender<SubEvent>,
    /// The subscribe caller, until the server confirmed the subscription.
    waiting: Option<Sender<Result<(), TnError>>>,
    dropped: u64,
}

struct Collection {
    /// The server's subscription id once confirmed.
    server_id: Option<String>,
    subscribers: Vec<Subscriber>,
}

/// What the actor must do after [`Registry::add`].
#[derive(Debug, PartialEq, Eq)]
pub enum AddOutcome {
    /// First subscriber: send `core.subscribe` / `sub`.
    SubscribeOnServer,
    /// The server subscription exists or is being made; nothing to send.
    Joined,
}

#[derive(Default)]
pub struct Registry {
    collections: HashMap<String, Collection>,
    by_local: HashMap<u64, String>,
}

impl Registry {
    pub fn add(
        &mut self,
        name: &str,
        local_id: u64,
        events: Sender<SubEvent>,
        reply: Sender<Result<(), TnError>>,
    ) -> AddOutcome {
        self.by_local.insert(local_id, name.to_string());
        match self.collections.get_mut(name) {
            Some(c) => {
                let confirmed = c.server_id.is_some();
                if confirmed {
                    let _ = reply.send(Ok(()));
                }
                c.subscribers.push(Subscriber {
                    local_id,
                    events,
                    waiting: if confirmed { None } else { Some(reply) },
                    dropped: 0,
                });
                AddOutcome::Joined
            }
            None => {
                self.collections.insert(
                    name.to_string(),
                    Collection {
                        server_id: None,
                        subscribers: vec![Subscriber { local_id, events, waiting: Some(reply), dropped: 0 }],
                    },
                );
                AddOutcome::SubscribeOnServer
            }
        }
    }

    /// The server confirmed `name` as `server_id`. Returns the id to unsubscribe at once if every local subscriber
    /// left meanwhile.
    pub fn confirm(&mut self, name: &str, server_id: String) -> Option<String> {
        let Some(c) = self.collections.get_mut(name) else { return Some(server_id) };
        if c.subscribers.is_empty() {
            self.collections.remove(name);
            return Some(server_id);
        }
        c.server_id = Some(server_id);
        for s in &mut c.subscribers {
            if let Some(w) = s.waiting.take() {
                let _ = w.send(Ok(()));
            }
        }
        None
    }

    /// The server ended `name` (or refused it): waiting subscribers get the error, the others an `Ended` event.
    pub fn end(&mut self, name: &str, error: Option<TnError>) {
        let Some(c) = self.collections.remove(name) else { return };
        for s in c.subscribers {
            self.by_local.remove(&s.local_id);
            match s.waiting {
                Some(w) => {
                    let _ = w.send(Err(error.clone().unwrap_or_else(|| {
                        TnError::Protocol(format!("the server ended the subscription to {name} at once"))
                    })));
                }
                None => {
                    let _ = s.events.try_send(SubEvent::Ended(error.clone()));
                }
            }
        }
    }

    /// A local subscriber left. Returns the server id to unsubscribe when it was the last one.
    pub fn remove(&mut self, local_id: u64) -> Option<String> {
        let name = self.by_local.remove(&local_id)?;
        let c = self.collections.get_mut(&name)?;
        c.subscribers.retain(|s| s.local_id != local_id);
        if !c.subscribers.is_empty() {
            return None;
        }
        match c.server_id.clone() {
            Some(id) => {
                self.collections.remove(&name);
                Some(id)
            }
            // Still pending: `confirm` will hand back the id to unsubscribe.
            None => None,
        }
    }

    /// Deliver an event to every subscriber of `name`.
    pub fn fan_out(&mut self, name: &str, event: &SubEvent) {
        let Some(c) = self.collections.get_mut(name) else { return };
        for s in &mut c.subscribers {
            match s.events.try_send(event.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    s.dropped += 1;
                    if s.dropped == 1 || s.dropped % 1000 == 0 {
                        log::warn!("subscriber of {name} is not keeping up: {} events dropped", s.dropped);
                    }
                }
                // The Subscription was dropped; its Unsubscribe command is on its way.
                Err(TrySendError::Disconnected(_)) => {}
            }
        }
    }

    /// The connection is gone: every subscription ends with `error`.
    pub fn end_all(&mut self, error: TnError) {
        let names: Vec<String> = self.collections.keys().cloned().collect();
        for name in names {
            self.end(&name, Some(error.clone()));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.collections.is_empty()
    }

    pub fn has(&self, name: &str) -> bool {
        self.collections.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossbeam_channel::{bounded, unbounded};

    #[test]
    fn one_server_subscription_fans_out_and_the_last_leaver_unsubscribes() {
        let mut r = Registry::default();
        let (e1, r1) = bounded(10);
        let (e2, r2) = bounded(10);
        let (a1, ack1) = unbounded();
        let (a2, ack2) = unbounded();
        assert_eq!(r.add("logs", 1, e1, a1), AddOutcome::SubscribeOnServer);
        assert_eq!(r.add("logs", 2, e2, a2), AddOutcome::Joined);
        assert!(ack1.try_recv().is_err(), "not confirmed yet");
        assert_eq!(r.confirm("logs", "srv".into()), None);
        assert!(ack1.try_recv().unwrap().is_ok() && ack2.try_recv().unwrap().is_ok());
        r.fan_out("logs", &SubEvent::Removed { id: None });
        assert!(r1.try_recv().is_ok() && r2.try_recv().is_ok());
        assert_eq!(r.remove(1), None);
        assert_eq!(r.remove(2), Some("srv".into()));
        assert!(r.is_empty());
    }

    #[test]
    fn ending_reaches_waiting_and_active_subscribers() {
        let mut r = Registry::default();
        let (e1, r1) = bounded(10);
        let (a1, _ack1) = unbounded();
        r.add("x", 1, e1, a1);
        r.confirm("x", "s".into());
        let (e2, _r2) = bounded(10);
        let (a2, ack2) = unbounded();
        r.add("y", 2, e2, a2);
        r.end_all(TnError::ConnectionLost { outcome_unknown: false, detail: "eof".into() });
        assert!(matches!(r1.try_recv().unwrap(), SubEvent::Ended(Some(TnError::ConnectionLost { .. }))));
        assert!(matches!(ack2.try_recv().unwrap(), Err(TnError::ConnectionLost { .. })));
        assert!(r.is_empty());
    }

    #[test]
    fn leaving_before_confirmation_unsubscribes_on_confirmation() {
        let mut r = Registry::default();
        let (e1, _r1) = bounded(10);
        let (a1, _ack1) = unbounded();
        r.add("x", 1, e1, a1);
        assert_eq!(r.remove(1), None);
        assert_eq!(r.confirm("x", "s".into()), Some("s".into()));
        assert!(r.is_empty());
    }
}
