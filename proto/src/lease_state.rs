//! The lease crate's client state as the wire spells it (feature `lease`):
//! the lease crate owns its state machine's states, the protocol owns their
//! names on the wire, and this is the one place that maps one to the other.

use netcontainer_lease::State as Client;

use crate::State;

impl State {
    /// A DHCP client's state as status reports it; `None` (no client runs)
    /// is `waiting-for-plan`. The lease crate's states map one to one, but
    /// for the wire's `init-reboot`, which no client reports (it sends its
    /// REQUEST at once, and is then `rebooting`).
    pub fn of_client(state: Option<Client>) -> State {
        match state {
            None => State::WaitingForPlan,
            Some(Client::Init) => State::Init,
            Some(Client::Selecting) => State::Selecting,
            Some(Client::Requesting) => State::Requesting,
            Some(Client::Rebooting) => State::Rebooting,
            Some(Client::Bound) => State::Bound,
            Some(Client::Renewing) => State::Renewing,
            Some(Client::Rebinding) => State::Rebinding,
            Some(Client::Stopped) => State::Stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_state_has_its_wire_name() {
        // Listed by hand, not derived: a new client state must be added here
        // (and to `of_client`'s match, which does not compile without it).
        let cases = [
            (None, "waiting-for-plan"),
            (Some(Client::Init), "init"),
            (Some(Client::Selecting), "selecting"),
            (Some(Client::Requesting), "requesting"),
            (Some(Client::Rebooting), "rebooting"),
            (Some(Client::Bound), "bound"),
            (Some(Client::Renewing), "renewing"),
            (Some(Client::Rebinding), "rebinding"),
            (Some(Client::Stopped), "stopped"),
        ];
        for (state, wire) in cases {
            assert_eq!(State::of_client(state).as_str(), wire, "{state:?}");
        }
    }
}
