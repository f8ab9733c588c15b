//! The seam between the firewall's front and what puts a policy into the
//! kernel: one implementation per folder ([`super::nft`]), chosen by name
//! ([`super::backend()`]).

use futures::future::BoxFuture;
use netcontainer_proto::{Forward, ForwardStatus};

use super::error::FirewallError;
use super::policy::{Policy, Settings};

/// Puts a [`Policy`] into the kernel. A backend owns nothing but the way to
/// reach the kernel: the settings come with each call, already validated
/// with the policy ([`super::Firewall`] checks both first). Object-safe: the
/// agent picks one by name at start.
pub trait Backend: Send + Sync {
    /// The name that selects it ([`super::backend()`], `--firewall`).
    fn name(&self) -> &'static str;

    /// Atomically replaces our tables (every family of the policy) with
    /// what holds `policy`, all in one transaction: on error every previous
    /// table stays as it was.
    fn apply<'a>(
        &'a self,
        settings: &'a Settings,
        policy: &'a Policy,
    ) -> BoxFuture<'a, Result<(), FirewallError>>;

    /// Deletes our tables, in every family, if present; returns whether one
    /// was.
    fn remove<'a>(&'a self, settings: &'a Settings) -> BoxFuture<'a, Result<bool, FirewallError>>;

    /// Per-forward packets/bytes (both directions, IPv4), in the order of
    /// `forwards`; forwards not in the tables read 0.
    fn counters<'a>(
        &'a self,
        settings: &'a Settings,
        forwards: &'a [Forward],
    ) -> BoxFuture<'a, Result<Vec<ForwardStatus>, FirewallError>>;
}
