//! Addresses, routes and policy rules through netlink, in the agent's own
//! network namespace.
//!
//! On bind the lease's address goes on the LAN interface with the lease's
//! lifetime (so the kernel drops it by itself if the agent dies and the lease
//! runs out). Routing toward the LAN lives in a table of the agent's own,
//! selected by two rules: traffic sourced from the leased address, and packets
//! carrying the agent's mark (replies of connections that came in on the LAN,
//! marked by the firewall). The main table is left alone: inside a Docker
//! container its default route points at Docker's gateway and must stay.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::{AddressAttribute, CacheInfo};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags};
use rtnetlink::packet_route::route::RouteProtocol;
use rtnetlink::packet_route::rule::RuleAction;
use rtnetlink::{AddressMessageBuilder, Handle, LinkUnspec, RouteMessageBuilder};

/// Routing table of the agent (ASCII "NC").
pub const ROUTE_TABLE: u32 = netcontainer_proto::contract::ROUTE_TABLE;
/// Priority of the agent's `ip rule`s; below the main table's 32766.
pub const RULE_PRIORITY: u32 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum NetconfError {
    #[error("interface {0} not found in the agent's network namespace")]
    NoSuchInterface(String),
    #[error("interface {0} has no Ethernet address")]
    NoMac(String),
    #[error("cannot open a netlink socket: {0}")]
    Connection(#[source] std::io::Error),
    #[error("{what}: {source}")]
    Netlink {
        what: String,
        #[source]
        source: rtnetlink::Error,
    },
}

fn nl(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetconfError {
    let what = what.into();
    move |source| NetconfError::Netlink { what, source }
}

/// errno of a netlink error, positive (e.g. `libc::EEXIST`).
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// An interface as seen by the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub mac: [u8; 6],
    pub up: bool,
}

/// What netconf installs for one lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressConfig {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
    /// Classless static routes (option 121): destination, prefix length,
    /// router (0.0.0.0: on-link).
    pub routes: Vec<(Ipv4Addr, u8, Ipv4Addr)>,
    /// The interface MTU the lease gave (option 26); `None`: left as it is.
    pub mtu: Option<u16>,
    /// Remaining lifetime; `None` for an infinite lease.
    pub lifetime: Option<Duration>,
}

/// The plan's routing rules found in place (see [`Netconf::rules_in_place`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RulesInPlace {
    /// Gateway mode's `from <service> lookup <our table>`.
    pub service: Option<Ipv4Addr>,
    /// The IPv6 mark rule.
    pub mark6: bool,
}

/// A netlink handle in the agent's namespace.
#[derive(Clone)]
pub struct Netconf {
    handle: Handle,
    mark: u32,
}

impl Netconf {
    /// Opens a netlink connection in the calling thread's network namespace.
    /// Must be called inside a tokio runtime.
    pub fn new(mark: u32) -> Result<Self, NetconfError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetconfError::Connection)?;
        tokio::spawn(conn);
        Ok(Netconf { handle, mark })
    }

    pub async fn link(&self, name: &str) -> Result<Link, NetconfError> {
        let res = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute()
            .try_next()
            .await;
        let msg = match res {
            Ok(Some(m)) => m,
            Ok(None) => return Err(NetconfError::NoSuchInterface(name.into())),
            Err(e) if errno(&e) == Some(libc::ENODEV) => {
                return Err(NetconfError::NoSuchInterface(name.into()));
            }
            Err(e) => return Err(nl(format!("looking up interface {name}"))(e)),
        };
        let mac = msg
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Address(a) if a.len() == 6 => {
                    Some([a[0], a[1], a[2], a[3], a[4], a[5]])
                }
                _ => None,
            })
            .ok_or_else(|| NetconfError::NoMac(name.into()))?;
        Ok(Link {
            index: msg.header.index,
            mac,
            up: msg.header.flags.contains(LinkFlags::Up),
        })
    }

    /// Brings the link up. A macvlan whose MAC is still held by an
    /// identical leg in a namespace the kernel has not finished tearing down
    /// (the previous router, killed) fails with EADDRINUSE until that
    /// namespace is gone: retry that for up to `patience`.
    pub async fn set_up(
        &self,
        name: &str,
        index: u32,
        patience: Duration,
    ) -> Result<(), NetconfError> {
        let deadline = tokio::time::Instant::now() + patience;
        let mut warned = false;
        loop {
            match self
                .handle
                .link()
                .set(LinkUnspec::new_with_index(index).up().build())
                .execute()
                .await
            {
                Err(e)
                    if errno(&e) == Some(libc::EADDRINUSE)
                        && tokio::time::Instant::now() < deadline =>
                {
                    if !warned {
                        tracing::warn!(
                            interface = name,
                            "MAC address still in use by a previous leg; waiting for it to go"
                        );
                        warned = true;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                r => return r.map_err(nl(format!("bringing {name} up"))),
            }
        }
    }

    /// Takes the link down (on shutdown: frees its MAC on the parent at once,
    /// even before the namespace is torn down).
    pub async fn set_down(&self, name: &str, index: u32) -> Result<(), NetconfError> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).down().build())
            .execute()
            .await
            .map_err(nl(format!("taking {name} down")))
    }

    /// Adds (or refreshes the lifetime of) the address, and installs the
    /// agent's routing table and rules for it.
    pub async fn install(&self, index: u32, cfg: &AddressConfig) -> Result<(), NetconfError> {
        // The LAN's MTU first (RFC 2132 section 5.1): routes and the
        // firewall's MSS clamp follow the link's. One set, no dump.
        if let Some(mtu) = cfg.mtu {
            self.handle
                .link()
                .set(LinkUnspec::new_with_index(index).mtu(mtu.into()).build())
                .execute()
                .await
                .map_err(nl(format!("setting the MTU to {mtu} (option 26)")))?;
        }
        let secs = kernel_lifetime(cfg.lifetime).max(1);
        let mut req = self
            .handle
            .address()
            .add(index, IpAddr::V4(cfg.address), cfg.prefix_len)
            .replace();
        let mut lifetimes = CacheInfo::default();
        lifetimes.ifa_preferred = secs;
        lifetimes.ifa_valid = secs;
        req.message_mut()
            .attributes
            .push(AddressAttribute::CacheInfo(lifetimes));
        req.execute().await.map_err(nl(format!(
            "adding address {}/{}",
            cfg.address, cfg.prefix_len
        )))?;

        // The lease's subnet, and the link-local range: the host's shim on
        // the parent has a link-local address (see the host driver's `shim`),
        // and replies to it must stay on the link.
        let subnet = network(cfg.address, cfg.prefix_len);
        for (dest, plen) in [
            (subnet, cfg.prefix_len),
            (Ipv4Addr::new(169, 254, 0, 0), 16),
        ] {
            let on_link = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(dest, plen)
                .output_interface(index)
                .pref_source(cfg.address)
                .scope(rtnetlink::packet_route::route::RouteScope::Link)
                .protocol(RouteProtocol::Dhcp)
                .table_id(ROUTE_TABLE)
                .build();
            self.handle
                .route()
                .add(on_link)
                .replace()
                .execute()
                .await
                .map_err(nl(format!(
                    "adding route {dest}/{plen} to table {ROUTE_TABLE}"
                )))?;
        }
        if let Some(gw) = cfg.gateway {
            let default = RouteMessageBuilder::<Ipv4Addr>::new()
                .gateway(gw)
                .output_interface(index)
                .pref_source(cfg.address)
                .onlink()
                .protocol(RouteProtocol::Dhcp)
                .table_id(ROUTE_TABLE)
                .build();
            self.handle
                .route()
                .add(default)
                .replace()
                .execute()
                .await
                .map_err(nl(format!(
                    "adding default route via {gw} to table {ROUTE_TABLE}"
                )))?;
        }
        for &(dest, plen, via) in &cfg.routes {
            let b = RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(network(dest, plen), plen)
                .output_interface(index)
                .pref_source(cfg.address)
                .protocol(RouteProtocol::Dhcp)
                .table_id(ROUTE_TABLE);
            let b = if via.is_unspecified() {
                b.scope(rtnetlink::packet_route::route::RouteScope::Link)
            } else {
                b.gateway(via).onlink()
            };
            if let Err(e) = self.handle.route().add(b.build()).replace().execute().await {
                // One bad route from the server must not cost the lease.
                tracing::warn!(route = %format!("{dest}/{plen} via {via}"), error = %e,
                    "cannot install a classless static route");
            }
        }
        self.add_rule(Some(cfg.address), None, RULE_PRIORITY)
            .await?;
        self.add_rule(None, Some(self.mark), RULE_PRIORITY + 1)
            .await?;
        Ok(())
    }

    /// Gateway mode: `from SERVICE lookup <our table>`, so that the
    /// service's replies and its own traffic (the router is its default
    /// route) leave on the LAN; `None` removes it. While no lease fills our
    /// table the lookup falls through to the main table (Docker's gateway).
    pub async fn service_rule(&self, service: Option<Ipv4Addr>) -> Result<(), NetconfError> {
        match service {
            Some(a) => self.add_rule(Some(a), None, RULE_PRIORITY + 2).await,
            None => self.del_rules_at(RULE_PRIORITY + 2).await,
        }
    }

    /// [`Netconf::service_rule`] from a known state (`now`: the rule in
    /// place): the exact rule goes and the new one comes, without listing
    /// the rules (a dump on a plan's path costs what the lease waits for).
    pub async fn set_service_rule(
        &self,
        now: Option<Ipv4Addr>,
        want: Option<Ipv4Addr>,
    ) -> Result<(), NetconfError> {
        let priority = RULE_PRIORITY + 2;
        if let Some(old) = now {
            self.del_rule_exact(rule_message(priority, Some(old.into()), None))
                .await?;
        }
        if let Some(a) = want {
            self.add_rule_exact(rule_message(priority, Some(a.into()), None))
                .await?;
        }
        Ok(())
    }

    /// [`Netconf::mark_rule_v6`] from a known state (`now`: it is in place).
    pub async fn set_mark_rule_v6(&self, now: bool, want: bool) -> Result<(), NetconfError> {
        let mut rule = rule_message(RULE_PRIORITY + 1, None, Some(self.mark));
        rule.header.family = rtnetlink::packet_route::AddressFamily::Inet6;
        match (now, want) {
            (true, false) => self.del_rule_exact(rule).await,
            (false, true) => self.add_rule_exact(rule).await,
            _ => Ok(()),
        }
    }

    async fn add_rule_exact(
        &self,
        rule: rtnetlink::packet_route::rule::RuleMessage,
    ) -> Result<(), NetconfError> {
        let what = format!("adding {}", describe_rule(&rule));
        let mut req = self.handle.rule().add();
        *req.message_mut() = rule;
        match req.execute().await {
            // Already there: what we wanted.
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            r => r.map_err(nl(what)),
        }
    }

    async fn del_rule_exact(
        &self,
        rule: rtnetlink::packet_route::rule::RuleMessage,
    ) -> Result<(), NetconfError> {
        let what = format!("removing {}", describe_rule(&rule));
        match self.handle.rule().del(rule).execute().await {
            // Gone already: what we wanted.
            Err(e) if matches!(errno(&e), Some(libc::ENOENT | libc::ESRCH)) => Ok(()),
            r => r.map_err(nl(what)),
        }
    }

    /// The rules of ours that only a plan sets, as they are now (an earlier
    /// agent's may still be in place): the core changes them only when its
    /// plan wants otherwise.
    pub async fn rules_in_place(&self) -> Result<RulesInPlace, NetconfError> {
        use rtnetlink::packet_route::rule::RuleAttribute;
        let ours = |r: &rtnetlink::packet_route::rule::RuleMessage, priority: u32| {
            r.attributes
                .iter()
                .any(|a| matches!(a, RuleAttribute::Priority(p) if *p == priority))
                && r.attributes
                    .iter()
                    .any(|a| matches!(a, RuleAttribute::Table(t) if *t == ROUTE_TABLE))
        };
        let mut found = RulesInPlace::default();
        let v4: Vec<_> = self
            .handle
            .rule()
            .get(rtnetlink::IpVersion::V4)
            .execute()
            .try_collect()
            .await
            .map_err(nl("listing ip rules"))?;
        for r in v4.iter().filter(|r| ours(r, RULE_PRIORITY + 2)) {
            found.service = r.attributes.iter().find_map(|a| match a {
                RuleAttribute::Source(IpAddr::V4(a)) => Some(*a),
                _ => None,
            });
        }
        let v6: Vec<_> = self
            .handle
            .rule()
            .get(rtnetlink::IpVersion::V6)
            .execute()
            .try_collect()
            .await
            .map_err(nl("listing ip -6 rules"))?;
        found.mark6 = v6.iter().any(|r| ours(r, RULE_PRIORITY + 1));
        Ok(found)
    }

    async fn add_rule(
        &self,
        from: Option<Ipv4Addr>,
        mark: Option<u32>,
        priority: u32,
    ) -> Result<(), NetconfError> {
        // Replace whatever rule sits at our priority (a previous address).
        self.del_rules_at(priority).await?;
        let mut req = self
            .handle
            .rule()
            .add()
            .v4()
            .table_id(ROUTE_TABLE)
            .priority(priority)
            .action(RuleAction::ToTable);
        if let Some(a) = from {
            req = req.source_prefix(a, 32);
        }
        if let Some(m) = mark {
            req = req.fw_mark(m);
        }
        req.execute()
            .await
            .map_err(nl(format!("adding ip rule at priority {priority}")))
    }

    async fn del_rules_at(&self, priority: u32) -> Result<(), NetconfError> {
        self.del_rules_at_v(priority, rtnetlink::IpVersion::V4)
            .await
    }

    async fn del_rules_at_v(
        &self,
        priority: u32,
        version: rtnetlink::IpVersion,
    ) -> Result<(), NetconfError> {
        use rtnetlink::packet_route::rule::RuleAttribute;
        let rules: Vec<_> = self
            .handle
            .rule()
            .get(version)
            .execute()
            .try_collect()
            .await
            .map_err(nl("listing ip rules"))?;
        for r in rules {
            let ours = r
                .attributes
                .iter()
                .any(|a| matches!(a, RuleAttribute::Priority(p) if *p == priority))
                && r.attributes
                    .iter()
                    .any(|a| matches!(a, RuleAttribute::Table(t) if *t == ROUTE_TABLE));
            if ours {
                match self.handle.rule().del(r).execute().await {
                    Ok(()) => {}
                    Err(e) if errno(&e) == Some(libc::ENOENT) => {}
                    Err(e) => {
                        return Err(nl(format!("removing ip rule at priority {priority}"))(e));
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds (or refreshes the lifetimes of) an IPv6 address. A /64 from
    /// SLAAC brings the kernel's on-link prefix route; a DHCPv6 address is a
    /// /128 unless an RA said its prefix is on-link (RFC 8415 section 21.6:
    /// DHCPv6 conveys no prefix length). `None`: infinite.
    pub async fn install_v6(
        &self,
        index: u32,
        address: Ipv6Addr,
        prefix_len: u8,
        preferred: Option<Duration>,
        valid: Option<Duration>,
    ) -> Result<(), NetconfError> {
        let secs = kernel_lifetime;
        let mut req = self
            .handle
            .address()
            .add(index, IpAddr::V6(address), prefix_len)
            .replace();
        let mut lifetimes = CacheInfo::default();
        lifetimes.ifa_preferred = secs(preferred);
        lifetimes.ifa_valid = secs(valid).max(1);
        req.message_mut()
            .attributes
            .push(AddressAttribute::CacheInfo(lifetimes));
        req.execute()
            .await
            .map_err(nl(format!("adding address {address}/{prefix_len}")))?;
        // The on-link prefix in our table too: replies of forwarded
        // connections are routed there (see `mark_rule_v6`).
        if prefix_len < 128 {
            self.handle
                .route()
                .add(on_link_v6(index, address, prefix_len))
                .replace()
                .execute()
                .await
                .map_err(nl(format!(
                    "adding route {}/{prefix_len} to table {ROUTE_TABLE}",
                    network6(address, prefix_len)
                )))?;
        }
        Ok(())
    }

    /// IPv6 replies of connections that came in on the LAN (the firewall
    /// copies their mark to the packets) look up our table, which holds the
    /// LAN's on-link prefixes and default routers: inside a Docker
    /// container on an IPv6 network the main table's default route is
    /// Docker's. `false` removes the rule.
    pub async fn mark_rule_v6(&self, enable: bool) -> Result<(), NetconfError> {
        let priority = RULE_PRIORITY + 1;
        self.del_rules_at_v(priority, rtnetlink::IpVersion::V6)
            .await?;
        if !enable {
            return Ok(());
        }
        self.handle
            .rule()
            .add()
            .v6()
            .table_id(ROUTE_TABLE)
            .priority(priority)
            .action(RuleAction::ToTable)
            .fw_mark(self.mark)
            .execute()
            .await
            .map_err(nl(format!("adding ip -6 rule at priority {priority}")))
    }

    /// Removes an IPv6 address; a missing one is not an error (the kernel
    /// drops it by itself when its valid lifetime ends).
    pub async fn remove_v6(
        &self,
        index: u32,
        address: Ipv6Addr,
        prefix_len: u8,
    ) -> Result<(), NetconfError> {
        if prefix_len < 128 {
            let route = on_link_v6(index, address, prefix_len);
            match self.handle.route().del(route).execute().await {
                Ok(()) => {}
                Err(e) if matches!(errno(&e), Some(libc::ESRCH | libc::ENODEV | libc::ENOENT)) => {}
                Err(e) => {
                    return Err(nl(format!(
                        "removing route {}/{prefix_len} from table {ROUTE_TABLE}",
                        network6(address, prefix_len)
                    ))(e));
                }
            }
        }
        let msg = AddressMessageBuilder::<Ipv6Addr>::new()
            .index(index)
            .address(address, prefix_len)
            .build();
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    errno(&e),
                    Some(libc::EADDRNOTAVAIL | libc::ENODEV | libc::ENOENT)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(nl(format!("removing address {address}/{prefix_len}"))(e)),
        }
    }

    /// Adds or removes the IPv6 default route via a router of the LAN
    /// (protocol `ra`), in the main table and in ours (see `mark_rule_v6`).
    pub async fn default_route_v6(
        &self,
        index: u32,
        router: Ipv6Addr,
        add: bool,
    ) -> Result<(), NetconfError> {
        for table in [None, Some(ROUTE_TABLE)] {
            let mut b = RouteMessageBuilder::<Ipv6Addr>::new()
                .gateway(router)
                .output_interface(index)
                .protocol(RouteProtocol::Ra);
            if let Some(t) = table {
                b = b.table_id(t);
            }
            let msg = b.build();
            if add {
                self.handle
                    .route()
                    .add(msg)
                    .replace()
                    .execute()
                    .await
                    .map_err(nl(format!("adding IPv6 default route via {router}")))?;
            } else {
                match self.handle.route().del(msg).execute().await {
                    Ok(()) => {}
                    Err(e)
                        if matches!(errno(&e), Some(libc::ESRCH | libc::ENODEV | libc::ENOENT)) => {
                    }
                    Err(e) => {
                        return Err(nl(format!("removing IPv6 default route via {router}"))(e));
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes the address, the agent's routes and rules. Missing pieces are
    /// not an error (the kernel drops an expired address by itself).
    pub async fn remove(
        &self,
        index: u32,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), NetconfError> {
        let msg = AddressMessageBuilder::<Ipv4Addr>::new()
            .index(index)
            .address(address, prefix_len)
            .build();
        match self.handle.address().del(msg).execute().await {
            Ok(()) => {}
            Err(e)
                if matches!(
                    errno(&e),
                    Some(libc::EADDRNOTAVAIL | libc::ENODEV | libc::ENOENT)
                ) => {}
            Err(e) => return Err(nl(format!("removing address {address}/{prefix_len}"))(e)),
        }
        self.flush_table().await?;
        self.del_rules_at(RULE_PRIORITY).await?;
        self.del_rules_at(RULE_PRIORITY + 1).await
    }

    async fn flush_table(&self) -> Result<(), NetconfError> {
        let filter = RouteMessageBuilder::<Ipv4Addr>::new()
            .table_id(ROUTE_TABLE)
            .build();
        let routes: Vec<_> = self
            .handle
            .route()
            .get(filter)
            .execute()
            .try_collect()
            .await
            .map_err(nl("listing routes"))?;
        for r in routes {
            let table = r
                .attributes
                .iter()
                .find_map(|a| match a {
                    rtnetlink::packet_route::route::RouteAttribute::Table(t) => Some(*t),
                    _ => None,
                })
                .unwrap_or(u32::from(r.header.table));
            if table != ROUTE_TABLE {
                continue;
            }
            match self.handle.route().del(r).execute().await {
                Ok(()) => {}
                Err(e) if matches!(errno(&e), Some(libc::ESRCH | libc::ENOENT)) => {}
                Err(e) => return Err(nl(format!("removing a route of table {ROUTE_TABLE}"))(e)),
            }
        }
        Ok(())
    }
}

/// One of our rules (`lookup <our table>` at `priority`), as a message to
/// add or delete exactly: IPv4 unless `from` is IPv6 (set the header's
/// family for an IPv6 rule without a source).
fn rule_message(
    priority: u32,
    from: Option<IpAddr>,
    mark: Option<u32>,
) -> rtnetlink::packet_route::rule::RuleMessage {
    use rtnetlink::packet_route::AddressFamily;
    use rtnetlink::packet_route::rule::{RuleAttribute, RuleMessage};
    let mut m = RuleMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.action = RuleAction::ToTable;
    m.attributes.push(RuleAttribute::Table(ROUTE_TABLE));
    m.attributes.push(RuleAttribute::Priority(priority));
    if let Some(a) = from {
        let (family, len) = match a {
            IpAddr::V4(_) => (AddressFamily::Inet, 32),
            IpAddr::V6(_) => (AddressFamily::Inet6, 128),
        };
        m.header.family = family;
        m.header.src_len = len;
        m.attributes.push(RuleAttribute::Source(a));
    }
    if let Some(mark) = mark {
        m.attributes.push(RuleAttribute::FwMark(mark));
    }
    m
}

/// For errors: `ip rule` at its priority.
fn describe_rule(m: &rtnetlink::packet_route::rule::RuleMessage) -> String {
    use rtnetlink::packet_route::rule::RuleAttribute;
    let priority = m.attributes.iter().find_map(|a| match a {
        RuleAttribute::Priority(p) => Some(*p),
        _ => None,
    });
    let v6 = m.header.family == rtnetlink::packet_route::AddressFamily::Inet6;
    format!(
        "ip {}rule at priority {}",
        if v6 { "-6 " } else { "" },
        priority.unwrap_or_default()
    )
}

/// `prefix/len dev <index>` in our table, for an IPv6 address's on-link prefix.
fn on_link_v6(
    index: u32,
    address: Ipv6Addr,
    prefix_len: u8,
) -> rtnetlink::packet_route::route::RouteMessage {
    RouteMessageBuilder::<Ipv6Addr>::new()
        .destination_prefix(network6(address, prefix_len), prefix_len)
        .output_interface(index)
        .protocol(RouteProtocol::Ra)
        .table_id(ROUTE_TABLE)
        .build()
}

/// The prefix of `addr/prefix_len`.
pub fn network6(addr: Ipv6Addr, prefix_len: u8) -> Ipv6Addr {
    let len = u32::from(prefix_len.min(128));
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - len)
    };
    Ipv6Addr::from(u128::from(addr) & mask)
}

/// The network address of `addr/prefix_len`.
pub fn network(addr: Ipv4Addr, prefix_len: u8) -> Ipv4Addr {
    let mask = if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix_len.min(32)))
    };
    Ipv4Addr::from(u32::from(addr) & mask)
}

/// An address lifetime as the kernel takes it, in whole seconds rounded up:
/// the kernel must not drop an address before the lease ends (the agent is
/// still renewing or rebinding until then, and removes it itself at expiry).
/// `None` is infinite; `u32::MAX` is the kernel's infinity, so a finite one
/// stops below it.
fn kernel_lifetime(d: Option<Duration>) -> u32 {
    d.map_or(u32::MAX, |d| {
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        secs.min(u64::from(u32::MAX - 1)) as u32
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lease with 29.4 s left is 30 s for the kernel, not 29: truncated,
    /// the kernel removed the address while the agent was still rebinding.
    #[test]
    fn kernel_lifetimes_round_up() {
        assert_eq!(kernel_lifetime(Some(Duration::from_millis(29_400))), 30);
        assert_eq!(kernel_lifetime(Some(Duration::from_secs(30))), 30);
        assert_eq!(kernel_lifetime(Some(Duration::from_nanos(1))), 1);
        assert_eq!(kernel_lifetime(Some(Duration::ZERO)), 0);
        assert_eq!(kernel_lifetime(None), u32::MAX);
        assert_eq!(
            kernel_lifetime(Some(Duration::from_secs(u64::MAX))),
            u32::MAX - 1
        );
    }

    #[test]
    fn network6_masks() {
        let a: Ipv6Addr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        assert_eq!(
            network6(a, 64),
            "2001:db8:1:2::".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(network6(a, 128), a);
        assert_eq!(network6(a, 0), Ipv6Addr::UNSPECIFIED);
        assert_eq!(network6(a, 200), a);
    }

    #[test]
    fn network_masks() {
        let a = Ipv4Addr::new(192, 0, 2, 57);
        assert_eq!(network(a, 24), Ipv4Addr::new(192, 0, 2, 0));
        assert_eq!(network(a, 32), a);
        assert_eq!(network(a, 0), Ipv4Addr::UNSPECIFIED);
        assert_eq!(network(a, 26), Ipv4Addr::new(192, 0, 2, 0));
        assert_eq!(
            network(Ipv4Addr::new(192, 0, 2, 200), 26),
            Ipv4Addr::new(192, 0, 2, 192)
        );
    }
}
