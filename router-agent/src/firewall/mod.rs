//! The agent's firewall: DNAT of the forwarded ports from the leased
//! addresses to the service, reply marking for policy routing, masquerade
//! toward the service, a forward filter for LAN traffic and per-forward
//! counters.
//!
//! - [`policy`]: what the firewall should hold, in no backend's terms (a
//!   [`Policy`] per apply, the firewall's own [`Settings`]), and its
//!   validation.
//! - [`Backend`] ([`mod@backend`]): what puts a policy into the kernel, an
//!   object chosen by name ([`backend()`]). [`nft`] is the one there is: its
//!   ruleset model, builder, renderer and counter reading live in its folder.
//! - [`Firewall`]: what the agent holds: validation in front of a backend,
//!   and conntrack.
//! - [`runner`]: running `nft` and `conntrack` (timeouts, errors).
//! - [`error`]: [`FirewallError`], shared by all of them.
//! - [`conntrack`]: flushing flows whose target a new plan changed.
//!
//! Toward the LAN interface only replies of connections we DNATed pass: the
//! router is no gateway from the Docker side onto the LAN. Without a lease
//! the policy isolates only: nothing is forwarded to or from the LAN.

pub mod backend;
pub mod conntrack;
pub mod error;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod nft;
pub mod policy;
pub mod runner;
#[cfg(test)]
pub(crate) mod sample;

use std::net::Ipv4Addr;
use std::sync::Arc;

use netcontainer_proto::{Forward, ForwardStatus, Protocol};

pub use backend::Backend;
pub use conntrack::stale_targets;
pub use error::FirewallError;
pub use nft::Nft;
pub use policy::{DEFAULT_MARK, DEFAULT_TABLE, Ipv4Policy, Ipv6Policy, Policy, Settings};
pub use runner::Runner;

/// The backends there are, by name (the first is the default).
pub const BACKENDS: &[&str] = &[Nft::NAME];

/// The backend called `name`, reaching the kernel through `runner`.
pub fn backend(name: &str, runner: Runner) -> Result<Box<dyn Backend>, FirewallError> {
    match known_backend(name)? {
        Nft::NAME => Ok(Box::new(Nft::new(runner))),
        other => unreachable!("backend {other} is listed but not built"),
    }
}

/// `name` if it names a backend (for a command line checked before
/// anything starts).
pub fn known_backend(name: &str) -> Result<&'static str, FirewallError> {
    BACKENDS
        .iter()
        .find(|b| **b == name)
        .copied()
        .ok_or_else(|| FirewallError::UnknownBackend {
            name: name.into(),
            known: BACKENDS.join(", "),
        })
}

/// The firewall of one agent: its settings (fixed for its life), a
/// backend, and how to run conntrack. Shared by reference (`Arc`), never
/// mutated: the policy comes with each apply.
#[derive(Clone)]
pub struct Firewall {
    settings: Settings,
    backend: Arc<dyn Backend>,
    conntrack: Runner,
}

impl std::fmt::Debug for Firewall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Firewall")
            .field("settings", &self.settings)
            .field("backend", &self.backend.name())
            .field("conntrack", &self.conntrack)
            .finish()
    }
}

impl Firewall {
    /// The default settings (table, mark, counters on) over `backend`;
    /// conntrack started by `conntrack`.
    pub fn new(backend: Box<dyn Backend>, conntrack: Runner) -> Self {
        Firewall {
            settings: Settings::default(),
            backend: backend.into(),
            conntrack,
        }
    }

    /// The backend called `name`; it and conntrack started by `runner`.
    pub fn by_name(name: &str, runner: Runner) -> Result<Self, FirewallError> {
        Ok(Firewall::new(backend(name, runner.clone())?, runner))
    }

    pub fn with_mark(self, mark: u32) -> Self {
        let settings = Settings {
            mark,
            ..self.settings
        };
        Firewall { settings, ..self }
    }

    pub fn with_table(self, table: &str) -> Self {
        let settings = Settings {
            table: table.to_string(),
            ..self.settings
        };
        Firewall { settings, ..self }
    }

    pub fn with_counters(self, counters: bool) -> Self {
        let settings = Settings {
            counters,
            ..self.settings
        };
        Firewall { settings, ..self }
    }

    /// Gateway mode's egress allow-list (see [`Settings::egress`]).
    pub fn with_egress(self, egress: Vec<netcontainer_proto::Ipv4Net>) -> Self {
        let settings = Settings {
            egress,
            ..self.settings
        };
        Firewall { settings, ..self }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    /// Validates `policy` (and the settings), then has the backend apply it
    /// atomically. An invalid input never reaches the backend; a failing
    /// apply leaves the previous tables.
    pub async fn apply(&self, policy: &Policy) -> Result<(), FirewallError> {
        self.settings.validate()?;
        policy.validate()?;
        self.backend.apply(&self.settings, policy).await?;
        let v4 = &policy.v4;
        match v4.lease {
            Some(lease) => {
                tracing::info!(table = %self.settings.table, forwards = v4.forwards.len(),
                %lease, ipv6_forwards = policy.v6.as_ref().is_some_and(Ipv6Policy::forwards_anything),
                "firewall table applied")
            }
            None => {
                tracing::debug!(table = %self.settings.table, "firewall table: isolation only (no lease)")
            }
        }
        Ok(())
    }

    /// Deletes our tables if present (in every family they may be in).
    pub async fn remove(&self) -> Result<bool, FirewallError> {
        self.backend.remove(&self.settings).await
    }

    pub async fn counters(
        &self,
        forwards: &[Forward],
    ) -> Result<Vec<ForwardStatus>, FirewallError> {
        self.backend.counters(&self.settings, forwards).await
    }

    /// Flushes the tracked flows of our mark toward `old_targets` (see
    /// [`stale_targets`]).
    pub async fn flush_conntrack_to(
        &self,
        old_targets: &[(Protocol, Ipv4Addr)],
    ) -> Result<u64, FirewallError> {
        conntrack::flush_to(&self.conntrack, self.settings.mark, old_targets).await
    }

    /// Flushes every tracked flow to or through `address`, one of ours
    /// that went (see [`conntrack::flush_address`]).
    pub async fn flush_conntrack_of(&self, address: Ipv4Addr) -> Result<u64, FirewallError> {
        conntrack::flush_address(&self.conntrack, address).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::fixtures::{fwd, masquerade, three};
    use futures::future::BoxFuture;
    use std::sync::Mutex;

    /// What reached the recording backend.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Call {
        Apply(Settings, Policy),
        Remove(Settings),
        Counters(Settings, Vec<Forward>),
    }

    /// Records every call; the test keeps a handle on the record.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Call>>>);

    impl Recorder {
        fn calls(&self) -> Vec<Call> {
            self.0.lock().unwrap().clone()
        }

        fn firewall(&self) -> Firewall {
            Firewall::new(Box::new(self.clone()), Runner::default())
        }
    }

    impl Backend for Recorder {
        fn name(&self) -> &'static str {
            "recorder"
        }

        fn apply<'a>(
            &'a self,
            settings: &'a Settings,
            policy: &'a Policy,
        ) -> BoxFuture<'a, Result<(), FirewallError>> {
            let call = Call::Apply(settings.clone(), policy.clone());
            Box::pin(async move {
                self.0.lock().unwrap().push(call);
                Ok(())
            })
        }

        fn remove<'a>(
            &'a self,
            settings: &'a Settings,
        ) -> BoxFuture<'a, Result<bool, FirewallError>> {
            self.0.lock().unwrap().push(Call::Remove(settings.clone()));
            Box::pin(async { Ok(true) })
        }

        fn counters<'a>(
            &'a self,
            settings: &'a Settings,
            forwards: &'a [Forward],
        ) -> BoxFuture<'a, Result<Vec<ForwardStatus>, FirewallError>> {
            let call = Call::Counters(settings.clone(), forwards.to_vec());
            self.0.lock().unwrap().push(call);
            Box::pin(async move {
                Ok(forwards
                    .iter()
                    .map(|f| ForwardStatus::from_forward(f, 1, 2))
                    .collect())
            })
        }
    }

    #[tokio::test]
    async fn validation_refuses_before_the_backend() {
        let rec = Recorder::default();
        let fw = rec.firewall();
        let overlapping = vec![
            fwd("tcp:7000-7009=192.0.2.2:7000"),
            fwd("tcp:7009=192.0.2.3:1"),
        ];
        let e = fw.apply(&masquerade(&overlapping)).await.unwrap_err();
        assert!(
            matches!(e, FirewallError::Invalid(ref m) if m.contains("overlap")),
            "{e}"
        );
        let bad = Forward {
            target_port: 0,
            ..fwd("tcp:80=192.0.2.2:80")
        };
        assert!(matches!(
            fw.apply(&masquerade(&[bad])).await,
            Err(FirewallError::Invalid(_))
        ));
        let mut unspecified = masquerade(&three());
        unspecified.v4.lease = Some(Ipv4Addr::UNSPECIFIED);
        let e = fw.apply(&unspecified).await.unwrap_err();
        assert!(matches!(e, FirewallError::Invalid(_)));
        let bad_name = Policy {
            lan_if: "bad\"name".into(),
            ..masquerade(&three())
        };
        assert!(matches!(
            fw.apply(&bad_name).await,
            Err(FirewallError::Invalid(_))
        ));
        // Forwards without a lease.
        let mut no_lease = masquerade(&three());
        no_lease.v4.lease = None;
        assert!(matches!(
            fw.apply(&no_lease).await,
            Err(FirewallError::Invalid(_))
        ));
        // A bad IPv6 address never reaches the backend.
        let bad6 = Policy {
            v6: Some(Ipv6Policy {
                addresses: vec!["fe80::1".parse().unwrap()],
                service: Some("2001:db8::2".parse().unwrap()),
                forwards: three(),
            }),
            ..masquerade(&three())
        };
        assert!(matches!(
            fw.apply(&bad6).await,
            Err(FirewallError::Invalid(_))
        ));
        // Nor do bad settings.
        for bad in [fw.clone().with_mark(0), fw.clone().with_table("a b")] {
            assert!(matches!(
                bad.apply(&masquerade(&three())).await,
                Err(FirewallError::Invalid(_))
            ));
        }
        assert!(rec.calls().is_empty(), "{:?}", rec.calls());
        // Valid input reaches the backend as it is, with the interface of
        // this apply; IPv6 off (no v6) as well as isolation.
        let lan7 = Policy {
            lan_if: "lan7".into(),
            ..masquerade(&three())
        };
        let no_ipv6 = Policy {
            v6: None,
            ..lan7.clone()
        };
        let isolation = Policy::isolation("lan7", true);
        for p in [&lan7, &no_ipv6, &isolation] {
            fw.apply(p).await.unwrap();
        }
        let s = Settings::default();
        assert_eq!(
            rec.calls(),
            [
                Call::Apply(s.clone(), lan7),
                Call::Apply(s.clone(), no_ipv6),
                Call::Apply(s, isolation)
            ]
        );
    }

    #[tokio::test]
    async fn settings_reach_the_backend() {
        let rec = Recorder::default();
        let fw = rec
            .firewall()
            .with_table("t2")
            .with_mark(7)
            .with_counters(false);
        let want = Settings {
            table: "t2".into(),
            mark: 7,
            counters: false,
            egress: Vec::new(),
        };
        assert_eq!(*fw.settings(), want);
        assert!(fw.remove().await.unwrap());
        let c = fw.counters(&three()).await.unwrap();
        assert_eq!((c[0].packets, c[0].bytes), (1, 2));
        fw.apply(&masquerade(&three())).await.unwrap();
        assert_eq!(
            rec.calls(),
            [
                Call::Remove(want.clone()),
                Call::Counters(want.clone(), three()),
                Call::Apply(want, masquerade(&three())),
            ]
        );
        assert_eq!(fw.backend().name(), "recorder");
        assert!(format!("{fw:?}").contains("recorder"), "{fw:?}");
    }

    #[test]
    fn backends_are_chosen_by_name() {
        let nft = backend("nft", Runner::default()).unwrap();
        assert_eq!(nft.name(), "nft");
        assert_eq!(BACKENDS[0], "nft");
        assert_eq!(known_backend("nft").unwrap(), "nft");
        let e = backend("iptables", Runner::default()).err().unwrap();
        assert!(matches!(e, FirewallError::UnknownBackend { .. }));
        assert_eq!(
            e.to_string(),
            "unknown firewall backend \"iptables\" (known: nft)"
        );
        assert!(Firewall::by_name("", Runner::default()).is_err());
    }

    #[tokio::test]
    async fn a_missing_nft_is_a_spawn_error() {
        let fw =
            Firewall::by_name("nft", Runner::wrapped(vec!["/nonexistent/nft".into()])).unwrap();
        let e = fw.apply(&masquerade(&three())).await.unwrap_err();
        assert!(matches!(e, FirewallError::Spawn { .. }), "{e}");
    }
}
