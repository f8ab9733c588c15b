//! The agent's core: desired state plus one sync. It holds the inputs (the
//! plan, the LAN link, what the family tasks hold), derives everything the
//! router should hold from them ([`super::desired::derive`], pure), and
//! [`Core::sync`] changes what differs from what it applied last, through
//! the small traits of [`super::ports`]. No handler changes the kernel by
//! itself: events and plans only change inputs.
//!
//! The order of a sync is the lease path's: what a new address needs (the
//! address, its routes and rules) comes first, the firewall after it, and
//! removals last, so that nothing stands between an ACK and its address
//! and nothing is forwarded to an address that is gone. An IPv4 address
//! replaced by another goes before the new one comes: with both in one
//! subnet the new one would be the old one's secondary and go with it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::time::Instant;

use netcontainer_proto::{Ipv6Path, Plan, Protocol};

use super::desired::{self, Desired, Inputs, V4Address, V6Address};
use super::held::{Held, Reported};
use super::ports::{Filter, Listeners, Net};
use super::problems::{Problems, Subsystem};
use crate::family::{Event, Family};
use crate::firewall::Policy;
use crate::relay;

/// The LAN interface the families run on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub name: String,
    pub index: u32,
}

/// What the core last applied. `None` where it is not known (the start's
/// isolation failed, or a rule's state could not be read): the next sync
/// sets it whatever it is.
#[derive(Clone, Debug, Default)]
pub struct Applied {
    pub v4: Option<V4Address>,
    pub v6: BTreeMap<Ipv6Addr, V6Address>,
    pub routers6: BTreeSet<Ipv6Addr>,
    pub service_rule: Option<Option<Ipv4Addr>>,
    pub mark_rule6: Option<bool>,
    pub ipv6_forwarding: bool,
    pub firewall: Option<Policy>,
    pub relay: BTreeMap<relay::Key, SocketAddrV4>,
}

/// How the parts of one sync went that a caller acts on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Synced {
    /// The firewall was applied by this sync (it differed).
    pub firewall_applied: bool,
    /// The firewall's IPv4 rules differed and could not be applied: the
    /// message.
    pub firewall_error: Option<String>,
    /// Only the IPv6 rules could not be applied (the IPv4 ones were).
    pub firewall_v6_error: Option<String>,
    /// The service's routing rule could not be set: the message.
    pub routing_error: Option<String>,
}

/// Which family's rules failed to apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FamilyFailure {
    Ipv4,
    Ipv6,
}

pub struct Core<N, F, L> {
    net: N,
    filter: F,
    relay: L,
    /// The plan in force.
    pub plan: Option<Plan>,
    /// The interface the families run on (kept after they end, to undo
    /// what is on it).
    pub link: Option<Link>,
    pub held: Held,
    /// The family tasks that run (status, and the IPv6 mark rule).
    pub v4_running: bool,
    pub v6_running: bool,
    /// The kernel has IPv6 (the firewall keeps an `ip6` table).
    ipv6_kernel: bool,
    applied: Applied,
    pub problems: Problems,
    /// How the published ports reached the service over IPv6 at the last
    /// sync (status).
    path6: Ipv6Path,
    /// IPv4 addresses removed in this sync whose tracked flows end at its
    /// close, once the new address and rules are in (off the lease path).
    flush_after: Vec<Ipv4Addr>,
}

impl<N: Net, F: Filter, L: Listeners> Core<N, F, L> {
    /// A core that starts from `applied` (what the agent's start put in
    /// place or read).
    pub fn new(net: N, filter: F, relay: L, ipv6_kernel: bool, applied: Applied) -> Self {
        Core {
            net,
            filter,
            relay,
            plan: None,
            link: None,
            held: Held::default(),
            v4_running: false,
            v6_running: false,
            ipv6_kernel,
            applied,
            problems: Problems::default(),
            path6: Ipv6Path::None,
            flush_after: Vec::new(),
        }
    }

    /// How the published ports reach the service over IPv6 now.
    pub fn ipv6_path(&self) -> Ipv6Path {
        self.path6
    }

    /// Isolates `lan_if` now, before a plan naming it brings it up (the
    /// start isolated the default leg only).
    pub async fn isolate(&mut self, lan_if: &str) -> Result<(), crate::firewall::FirewallError> {
        let policy = Policy::isolation(lan_if, self.ipv6_kernel);
        self.filter.apply(&policy).await?;
        self.applied.firewall = Some(policy);
        Ok(())
    }

    pub fn filter(&self) -> &F {
        &self.filter
    }

    pub fn relay_mut(&mut self) -> &mut L {
        &mut self.relay
    }

    /// Everything the router should hold now.
    pub fn desired(&self) -> Desired {
        desired::derive(Inputs {
            plan: self.plan.as_ref(),
            held: &self.held,
            ipv6_kernel: self.ipv6_kernel,
            v6_running: self.v6_running,
        })
    }

    /// What was applied last.
    pub fn applied(&self) -> &Applied {
        &self.applied
    }

    /// Folds a family's event in (the next sync acts on it).
    pub fn absorb(&mut self, ev: Event) {
        let bound = matches!(&ev, Event::Address(a) if a.lease().is_some());
        match self.held.absorb(ev) {
            Some(Reported { family, message }) => {
                let subsystem = match family {
                    Family::V4 => Subsystem::Dhcp,
                    Family::V6 => Subsystem::Ipv6,
                };
                tracing::warn!(%subsystem, "{message}");
                self.problems.set(subsystem, message);
            }
            // A lease in force: whatever the client reported before is over.
            None if bound => self.problems.clear(Subsystem::Dhcp),
            None => {}
        }
    }

    /// Applies what differs between [`Core::desired`] and what was applied,
    /// in the lease path's order (see the module doc).
    pub async fn sync(&mut self) -> Synced {
        let want = self.desired();
        self.path6 = want.ipv6_path;
        let now = Instant::now();
        let mut out = Synced::default();
        let index = self.link.as_ref().map(|l| l.index);
        let mut v4_gone = None;
        if let Some(index) = index {
            v4_gone = self.add_v4(index, &want, now).await;
            self.add_v6(index, &want, now).await;
        }
        self.sync_routing(&want, &mut out).await;
        self.sync_firewall(&want, &mut out).await;
        self.sync_relay(&want);
        match index {
            Some(index) => self.remove(index, v4_gone, &want).await,
            // No interface: nothing of ours can be on one.
            None => {
                self.applied.v4 = None;
                self.applied.v6.clear();
                self.applied.routers6.clear();
            }
        }
        self.flush_removed().await;
        out
    }

    /// Installs or refreshes the IPv4 address (removing one it replaces
    /// first); returns the address to remove once nothing forwards to it.
    async fn add_v4(&mut self, index: u32, want: &Desired, now: Instant) -> Option<V4Address> {
        if self.applied.v4 == want.v4 {
            return None;
        }
        let replaced = matches!((&self.applied.v4, &want.v4),
            (Some(o), Some(n)) if o.address() != n.address());
        if replaced && let Some(old) = self.applied.v4.take() {
            let (a, len) = old.address();
            tracing::info!(old = %a, "removing the replaced address");
            self.remove_v4_now(index, a, len).await;
        }
        let l = match &want.v4 {
            Some(V4Address::Lease(l)) => l,
            Some(V4Address::Keep { .. }) => {
                self.applied.v4 = want.v4.clone();
                return None;
            }
            None => return self.applied.v4.clone(),
        };
        match self.net.install4(index, &l.config(now)).await {
            Ok(()) => {
                let fresh = !matches!(&self.applied.v4,
                    Some(V4Address::Lease(o)) if o.address == l.address);
                if fresh {
                    tracing::info!(address = %l.address, prefix_len = l.prefix_len,
                        gateway = ?l.gateway, "bound");
                } else {
                    tracing::info!(address = %l.address, "lease extended");
                }
                self.problems.clear(Subsystem::Address);
                self.applied.v4 = want.v4.clone();
            }
            // Not recorded as applied: the next sync tries again.
            Err(e) => {
                let name = self.link.as_ref().map_or("?", |l| l.name.as_str());
                let msg = format!("configuring {}/{} on {name}: {e}", l.address, l.prefix_len);
                tracing::error!("{msg}");
                self.problems.set(Subsystem::Address, msg);
            }
        }
        None
    }

    /// IPv6 addresses and default routers that are new or changed.
    async fn add_v6(&mut self, index: u32, want: &Desired, now: Instant) {
        for (a, w) in &want.v6 {
            if self.applied.v6.get(a) == Some(w) {
                continue;
            }
            let (preferred, valid) = w.lifetimes(now);
            if !self.applied.v6.contains_key(a) {
                tracing::info!(address = %a, prefix_len = w.prefix_len,
                    preferred_secs = ?preferred.map(|d| d.as_secs()),
                    valid_secs = ?valid.map(|d| d.as_secs()), "IPv6 address");
            }
            match self
                .net
                .install6(index, *a, w.prefix_len, preferred, valid)
                .await
            {
                Ok(()) => {
                    self.applied.v6.insert(*a, *w);
                }
                Err(e) => self.problem(Subsystem::Ipv6, e),
            }
        }
        for r in want.routers6.difference(&self.applied.routers6.clone()) {
            tracing::info!(router = %r, "IPv6 default router");
            match self.net.router6(index, *r, true).await {
                Ok(()) => {
                    self.applied.routers6.insert(*r);
                }
                Err(e) => self.problem(Subsystem::Ipv6, e),
            }
        }
    }

    /// The service's rule (gateway mode) and the IPv6 mark rule.
    async fn sync_routing(&mut self, want: &Desired, out: &mut Synced) {
        if self.applied.service_rule != Some(want.service_rule) {
            match self
                .net
                .service_rule(self.applied.service_rule, want.service_rule)
                .await
            {
                Ok(()) => {
                    self.applied.service_rule = Some(want.service_rule);
                    self.problems.clear(Subsystem::Routing);
                }
                Err(e) => {
                    let msg = format!("routing the service's traffic: {e}");
                    self.problems.set(Subsystem::Routing, msg.clone());
                    out.routing_error = Some(msg);
                }
            }
        }
        if self.applied.mark_rule6 != Some(want.mark_rule6) {
            match self
                .net
                .mark_rule6(self.applied.mark_rule6, want.mark_rule6)
                .await
            {
                Ok(()) => self.applied.mark_rule6 = Some(want.mark_rule6),
                Err(e) => self.problem(Subsystem::Routing, e),
            }
        }
    }

    /// The firewall, with IPv6 forwarding on first when the kernel path
    /// forwards.
    async fn sync_firewall(&mut self, want: &Desired, out: &mut Synced) {
        if want.ipv6_forwarding && !self.applied.ipv6_forwarding {
            match self.net.ipv6_forwarding() {
                Ok(()) => self.applied.ipv6_forwarding = true,
                Err(e) => {
                    tracing::error!("{e}");
                    self.problems
                        .set(Subsystem::Ipv6, format!("IPv6 forwards: {e}"));
                }
            }
        }
        if self.applied.firewall.as_ref() == Some(&want.firewall) {
            return;
        }
        match self.filter.apply(&want.firewall).await {
            Ok(()) => {
                self.applied.firewall = Some(want.firewall.clone());
                self.problems.clear(Subsystem::Firewall);
                out.firewall_applied = true;
            }
            Err(e) => self.apply_per_family(want, e, out).await,
        }
    }

    /// Both families in one batch failed: each is applied on its own, so
    /// that one family's failure (a bad address, a refused rule) never
    /// holds the other's rules. What fails keeps its previous table (each
    /// batch is atomic) and is tried again, both together, at the next
    /// sync; a failure of IPv4 rules is the plan's (`firewall_error`).
    async fn apply_per_family(
        &mut self,
        want: &Desired,
        joint: crate::firewall::FirewallError,
        out: &mut Synced,
    ) {
        let previous = self.applied.firewall.clone();
        let Some(v6) = want.firewall.v6.clone() else {
            return self.firewall_failed(FamilyFailure::Ipv4, joint.to_string(), out);
        };
        let v4_only = Policy {
            v6: None,
            ..want.firewall.clone()
        };
        let v4 = self.filter.apply(&v4_only).await;
        let applied_v4 = match &v4 {
            Ok(()) => Some(want.firewall.v4.clone()),
            Err(_) => previous.as_ref().map(|p| p.v4.clone()),
        };
        // IPv6 beside the IPv4 rules in force (applied again as they are).
        let v6_result = match &applied_v4 {
            Some(in_force) if v4.is_err() => {
                let p = Policy {
                    v4: in_force.clone(),
                    v6: Some(v6.clone()),
                    ..want.firewall.clone()
                };
                Some(self.filter.apply(&p).await)
            }
            _ => None,
        };
        let applied_v6 = match &v6_result {
            Some(Ok(())) => Some(v6),
            _ => previous.as_ref().and_then(|p| p.v6.clone()),
        };
        self.applied.firewall = applied_v4.map(|v4| Policy {
            lan_if: want.firewall.lan_if.clone(),
            v4,
            v6: applied_v6,
        });
        match v4 {
            Ok(()) => {
                out.firewall_applied = true;
                self.firewall_failed(FamilyFailure::Ipv6, joint.to_string(), out);
            }
            Err(e) => self.firewall_failed(FamilyFailure::Ipv4, e.to_string(), out),
        }
    }

    fn firewall_failed(&mut self, family: FamilyFailure, error: String, out: &mut Synced) {
        let msg = match family {
            FamilyFailure::Ipv4 => {
                out.firewall_error = Some(error.clone());
                format!("applying forwards: {error}")
            }
            FamilyFailure::Ipv6 => {
                out.firewall_v6_error = Some(error.clone());
                format!("IPv6 rules not applied, previous ones kept (IPv4 applied): {error}")
            }
        };
        tracing::error!("{msg}");
        self.problems.set(Subsystem::Firewall, msg);
    }

    /// The relay's listeners (before removals: a listener goes with its
    /// address).
    fn sync_relay(&mut self, want: &Desired) {
        if self.applied.relay == want.relay {
            return;
        }
        let errors = self.relay.update(&want.relay);
        for e in &errors {
            tracing::error!("{e}");
        }
        self.applied.relay = want.relay.clone();
        match errors.into_iter().next().or(want.relay_note.clone()) {
            Some(e) => self.problems.set(Subsystem::Relay, e),
            None => self.problems.clear(Subsystem::Relay),
        }
    }

    /// What is no longer wanted goes, now that nothing is forwarded to it.
    async fn remove(&mut self, index: u32, v4_gone: Option<V4Address>, want: &Desired) {
        if let Some(old) = v4_gone {
            let (a, len) = old.address();
            match old {
                V4Address::Keep { .. } => {
                    tracing::info!(address = %a, "removing the address a previous agent left behind")
                }
                V4Address::Lease(_) => tracing::info!(address = %a, "removing the address"),
            }
            self.remove_v4_now(index, a, len).await;
            self.applied.v4 = None;
        }
        let gone: Vec<_> = self
            .applied
            .v6
            .iter()
            .filter(|(a, _)| !want.v6.contains_key(a))
            .map(|(a, w)| (*a, w.prefix_len))
            .collect();
        for (a, len) in gone {
            tracing::info!(address = %a, "IPv6 address removed");
            if let Err(e) = self.net.remove6(index, a, len).await {
                tracing::warn!(error = %e, "removing an IPv6 address failed");
            }
            // Gone either way: the kernel drops it when its lifetime ends.
            self.applied.v6.remove(&a);
        }
        let routers: Vec<_> = self
            .applied
            .routers6
            .difference(&want.routers6)
            .copied()
            .collect();
        for r in routers {
            tracing::info!(router = %r, "IPv6 default router gone");
            if let Err(e) = self.net.router6(index, r, false).await {
                tracing::warn!(error = %e, "removing an IPv6 default route failed");
            }
            self.applied.routers6.remove(&r);
        }
    }

    /// Removes an IPv4 address with its lease's routes and rules. Gone
    /// either way: the kernel drops it when its lifetime ends.
    async fn remove_v4_now(&mut self, index: u32, a: Ipv4Addr, len: u8) {
        if let Err(e) = self.net.remove4(index, a, len).await {
            tracing::warn!(address = %a, error = %e, "removing the address failed");
        }
        self.flush_after.push(a);
    }

    /// Ends the tracked flows of the addresses removed in this sync: an
    /// outbound flow SNATed to an old address, or an inbound one DNATed
    /// from it, is black-holed otherwise (its entry outlives the address).
    async fn flush_removed(&mut self) {
        for a in std::mem::take(&mut self.flush_after) {
            match self.filter.flush_conntrack_of(a).await {
                Ok(n) => {
                    tracing::info!(address = %a, flows = n, "tracked flows of the old address ended")
                }
                Err(e) => tracing::warn!(address = %a, error = %e,
                    "ending the tracked flows of the old address failed; they time out by themselves"),
            }
        }
    }

    fn problem(&mut self, subsystem: Subsystem, e: impl std::fmt::Display) {
        tracing::warn!(%subsystem, error = %e, "configuration failed");
        self.problems.set(subsystem, e.to_string());
    }

    /// A new plan for the same DHCP identity (the family tasks go on): the
    /// forwards, the routing and the relay follow it. A plan the firewall
    /// refuses leaves the old one in force, rules and all; flows to targets
    /// the new plan moved are ended.
    pub async fn replan(&mut self, plan: Plan) -> Result<(), String> {
        let old = self.plan.replace(plan);
        let synced = self.sync().await;
        if let Some(e) = synced.firewall_error {
            self.plan = old;
            // Back to the old plan's routing; its rules are still in place.
            self.sync().await;
            let msg = format!("forwards not applied, previous rules kept: {e}");
            self.problems.set(Subsystem::Firewall, msg.clone());
            return Err(msg);
        }
        if synced.firewall_applied
            && self.held.lease().is_some()
            && let (Some(old), Some(new)) = (&old, &self.plan)
        {
            let stale: Vec<(Protocol, Ipv4Addr)> =
                crate::firewall::stale_targets(&old.forwards, &new.forwards);
            if !stale.is_empty()
                && let Err(e) = self.filter.flush_conntrack_to(&stale).await
            {
                tracing::warn!(error = %e, "flushing flows to old targets failed; they end by themselves");
            }
        }
        match synced.routing_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
