//! What `watch` has published, and what it must change after a poll of the
//! routers: a service seen bound for the first time (a new router, or
//! watch starting: the update is idempotent), an address that changed (a
//! renumbering, a new IPv6 prefix), a hostname that changed, a router that
//! is gone (its records deleted).
//!
//! A router whose agent does not answer, or that has no lease for now,
//! keeps what was published: its name is not taken away for a gap. A
//! failed update is retried after a backoff ([`retry_after`]), so a DNS
//! server that is down costs a warning per backoff, not per poll.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use netcontainer_proto::Status;

use super::client::Client;
use super::message::Records;

/// The first wait after a failed update; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(5);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// One service's name as published (or as last tried).
#[derive(Debug, Default)]
struct Entry {
    /// The hostname and records the server holds, as far as we know.
    published: Option<(String, Records)>,
    /// Failures in a row, and when the next try may be.
    failures: u32,
    retry_at: Option<Instant>,
}

/// The backoff after `failures` failures in a row (at least 1).
pub fn retry_after(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << failures.saturating_sub(1).min(10))
        .min(MAX_BACKOFF)
}

/// What watch keeps published, by service.
#[derive(Debug)]
pub struct Publisher {
    client: Client,
    entries: HashMap<String, Entry>,
}

impl Publisher {
    pub fn new(client: Client) -> Publisher {
        Publisher {
            client,
            entries: HashMap::new(),
        }
    }

    /// Brings the server in line with one poll: `routers` is every router
    /// the poll found, with its status (`None`: the agent did not answer).
    /// Returns the services whose update failed this time.
    pub async fn sync(&mut self, routers: &[(&str, Option<&Status>)], now: Instant) -> Vec<String> {
        let mut failed = Vec::new();
        let mut present = std::collections::HashSet::new();
        for &(service, status) in routers {
            present.insert(service.to_string());
            // No answer, no plan or no lease: what is published stays.
            let Some(st) = status.filter(|s| s.lease.is_some()) else {
                continue;
            };
            let Some(hostname) = st.hostname.clone() else {
                continue;
            };
            let want = (hostname, Records::of(st));
            let e = self.entries.entry(service.to_string()).or_default();
            if e.published.as_ref() == Some(&want) || e.retry_at.is_some_and(|t| now < t) {
                continue;
            }
            // A new hostname: the old name's records go first.
            let old = e
                .published
                .as_ref()
                .map(|(h, _)| h.clone())
                .filter(|h| *h != want.0);
            let mut r = match &old {
                Some(h) => self.client.delete(h).await,
                None => Ok(()),
            };
            if r.is_ok() {
                r = self.client.replace(&want.0, &want.1).await;
            }
            let e = self.entries.entry(service.to_string()).or_default();
            match r {
                Ok(()) => {
                    tracing::info!(%service, hostname = %want.0, records = ?want.1, "dynamic DNS updated");
                    *e = Entry {
                        published: Some(want),
                        ..Entry::default()
                    };
                }
                Err(err) => {
                    e.failures += 1;
                    let wait = retry_after(e.failures);
                    e.retry_at = Some(now + wait);
                    tracing::warn!(%service, error = %err, retry_in = ?wait, "dynamic DNS update failed; the service stays up");
                    failed.push(service.to_string());
                }
            }
        }
        // Routers that are gone: their names go too.
        let gone: Vec<String> = self
            .entries
            .keys()
            .filter(|s| !present.contains(*s))
            .cloned()
            .collect();
        for service in gone {
            let Some(e) = self.entries.get_mut(&service) else {
                continue;
            };
            let Some((hostname, _)) = e.published.clone() else {
                self.entries.remove(&service);
                continue;
            };
            if e.retry_at.is_some_and(|t| now < t) {
                continue;
            }
            match self.client.delete(&hostname).await {
                Ok(()) => {
                    tracing::info!(%service, %hostname, "router gone: dynamic DNS records deleted");
                    self.entries.remove(&service);
                }
                Err(err) => {
                    e.failures += 1;
                    let wait = retry_after(e.failures);
                    e.retry_at = Some(now + wait);
                    tracing::warn!(%service, error = %err, retry_in = ?wait, "dynamic DNS deletion failed");
                    failed.push(service);
                }
            }
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_bound() {
        assert_eq!(retry_after(1), Duration::from_secs(5));
        assert_eq!(retry_after(2), Duration::from_secs(10));
        assert_eq!(retry_after(4), Duration::from_secs(40));
        assert_eq!(retry_after(7), MAX_BACKOFF);
        assert_eq!(retry_after(u32::MAX), MAX_BACKOFF);
        assert_eq!(retry_after(0), FIRST_BACKOFF);
    }
}
