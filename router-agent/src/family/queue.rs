//! The queue from the family tasks to the core: bounded, and coalescing.
//!
//! A task never waits for the core (its timers keep running while the core
//! applies a plan), so the queue cannot push back; and what reaches a task
//! is paced by the LAN, not by us (any LAN host can send router
//! advertisements as fast as it likes). So the queue keeps at most one
//! event per thing it is about ([`Key`]: the client state, a family's
//! error, an address, a default router): a newer event about the same
//! thing replaces the pending one, and the core, which folds every event
//! into what the families hold, sees the latest state of each. Since the
//! core drains the queue and syncs once for all it found, a flood costs one
//! sync, not one per event.
//!
//! Folding the coalesced queue gives what folding every event would: each
//! thing's value is its last event's, and a survivor keeps the place of its
//! last push, so the last event about any thing is still after every other
//! survivor that came before it. A problem an address's withdrawal carried
//! is kept as the family's error where the withdrawal stood.
//!
//! The things a family reports are capped where they come from (the RA
//! tracker's caps, one DHCP lease per family), so the queue stays small;
//! [`CAPACITY`] guards against a family that would not: past it the oldest
//! event is dropped, with an error in the log.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::{Event, Family};

/// Events pending at most (many times what the families' caps allow).
pub const CAPACITY: usize = 1024;

/// What an event is about: a newer event with the same key supersedes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    State,
    Error(Family),
    Address(IpAddr),
    Router(IpAddr),
}

fn key(ev: &Event) -> Key {
    match ev {
        Event::State(_) => Key::State,
        Event::Error(f, _) => Key::Error(*f),
        Event::Address(a) => Key::Address(a.address),
        Event::AddressGone { address, .. } => Key::Address(*address),
        Event::Router { address } | Event::RouterGone { address } => Key::Router(*address),
    }
}

#[derive(Default)]
struct Shared {
    pending: Mutex<Pending>,
    ready: Notify,
}

#[derive(Default)]
struct Pending {
    events: VecDeque<Event>,
    /// Events dropped past [`CAPACITY`] (for the log).
    dropped: u64,
}

impl Pending {
    fn push(&mut self, ev: Event) {
        let k = key(&ev);
        // The superseded event's place: a withdrawal's problem stays there.
        for old in self.events.iter_mut() {
            if key(old) != k {
                continue;
            }
            if let Event::AddressGone {
                address,
                error: Some(e),
                ..
            } = old
            {
                let problem = Event::Error(Family::of(*address), std::mem::take(e));
                *old = problem;
            }
        }
        self.events.retain(|old| key(old) != k);
        if self.events.len() >= CAPACITY {
            self.dropped += 1;
            tracing::error!(
                dropped = self.dropped,
                "family events: {CAPACITY} pending, the oldest dropped"
            );
            self.events.pop_front();
        }
        self.events.push_back(ev);
    }
}

/// The sending half every family task gets.
#[derive(Clone)]
pub struct Events(Arc<Shared>);

/// The core's receiving half.
pub struct Inbox(Arc<Shared>);

/// A new, empty queue.
pub fn channel() -> (Events, Inbox) {
    let shared = Arc::new(Shared::default());
    (Events(shared.clone()), Inbox(shared))
}

impl Events {
    /// Queues `ev`, superseding a pending event about the same thing. Never
    /// waits.
    pub fn send(&self, ev: Event) {
        self.0.pending.lock().expect("queue lock").push(ev);
        self.0.ready.notify_one();
    }
}

impl Inbox {
    /// The oldest pending event, once there is one. Cancel-safe: an event
    /// is taken only when it is returned.
    pub async fn recv(&mut self) -> Event {
        loop {
            if let Some(ev) = self.try_recv() {
                return ev;
            }
            self.0.ready.notified().await;
        }
    }

    /// The oldest pending event, if any.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.0
            .pending
            .lock()
            .expect("queue lock")
            .events
            .pop_front()
    }

    /// How many events are pending.
    pub fn len(&self) -> usize {
        self.0.pending.lock().expect("queue lock").events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::family::{Address, Origin};
    use std::time::{Duration, Instant};

    fn addr(a: &str, valid_secs: u64) -> Event {
        Event::Address(Address {
            address: a.parse().unwrap(),
            prefix_len: 64,
            preferred_until: None,
            valid_until: Some(Instant::now() + Duration::from_secs(valid_secs)),
            origin: Origin::Slaac,
        })
    }

    fn gone(a: &str, error: Option<&str>) -> Event {
        Event::AddressGone {
            address: a.parse().unwrap(),
            prefix_len: 64,
            error: error.map(str::to_string),
        }
    }

    fn drain(inbox: &mut Inbox) -> Vec<Event> {
        std::iter::from_fn(|| inbox.try_recv()).collect()
    }

    #[test]
    fn the_latest_event_about_a_thing_wins_in_the_place_of_its_push() {
        let (tx, mut rx) = channel();
        let router = || Event::Router {
            address: "fe80::1".parse().unwrap(),
        };
        let other = addr("2001:db8::2", 10);
        tx.send(addr("2001:db8::1", 10));
        tx.send(router());
        tx.send(other.clone());
        let last = addr("2001:db8::1", 20);
        tx.send(last.clone());
        tx.send(Event::RouterGone {
            address: "fe80::1".parse().unwrap(),
        });
        assert_eq!(
            drain(&mut rx),
            vec![
                other,
                last,
                Event::RouterGone {
                    address: "fe80::1".parse().unwrap()
                }
            ]
        );
        assert!(rx.is_empty());
    }

    #[test]
    fn a_withdrawals_problem_survives_the_address_coming_back() {
        let (tx, mut rx) = channel();
        tx.send(gone("192.0.2.50", Some("lease expired")));
        tx.send(Event::State(crate::family::ClientState::Init));
        tx.send(addr("192.0.2.50", 10));
        let got = drain(&mut rx);
        assert_eq!(
            got[0],
            Event::Error(Family::V4, "lease expired".into()),
            "{got:?}"
        );
        assert_eq!(got.len(), 3);
        assert!(matches!(got[2], Event::Address(_)));
    }

    /// A flood of distinct addresses stays at the capacity; the same ones
    /// again add nothing.
    #[test]
    fn a_flood_is_bounded() {
        let (tx, mut rx) = channel();
        for round in 0..3 {
            for i in 0..(CAPACITY as u32 + 300) {
                tx.send(addr(
                    &std::net::Ipv6Addr::from(u128::from(i)).to_string(),
                    round,
                ));
            }
        }
        assert_eq!(rx.len(), CAPACITY);
        let (tx, mut rx2) = channel();
        for _ in 0..10_000 {
            tx.send(addr("2001:db8::1", 1));
        }
        assert_eq!(drain(&mut rx2).len(), 1);
        drain(&mut rx);
    }

    #[tokio::test]
    async fn recv_waits_for_a_send() {
        let (tx, mut rx) = channel();
        let t = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        tx.send(Event::State(crate::family::ClientState::Bound));
        let ev = tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ev, Event::State(crate::family::ClientState::Bound));
    }
}
