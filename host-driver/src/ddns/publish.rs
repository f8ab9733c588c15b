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
    use crate::ddns::testkit::bound;
    use hickory_proto::op::{Message, OpCode, ResponseCode, UpdateMessage};
    use hickory_proto::rr::rdata::tsig::TsigAlgorithm;
    use hickory_proto::rr::{DNSClass, Name, RData, TSigResponseContext, TSigner};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn signer() -> TSigner {
        TSigner::new(
            b"0123456789abcdef0123456789abcdef".to_vec(),
            TsigAlgorithm::HmacSha256,
            Name::from_ascii("nc-test.").unwrap(),
            300,
        )
        .unwrap()
    }

    /// A server on 127.0.0.1 that notes each UPDATE as "NAME ADDR..." (a
    /// replacement) or "-NAME" (a deletion) and answers it signed: NOERROR,
    /// or REFUSED while `refuse` is set.
    struct Fake {
        seen: Arc<Mutex<Vec<String>>>,
        refuse: Arc<AtomicBool>,
        client: Client,
    }

    async fn fake() -> Fake {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let refuse = Arc::new(AtomicBool::new(false));
        let (s2, r2) = (seen.clone(), refuse.clone());
        tokio::spawn(async move {
            loop {
                let (mut c, _) = l.accept().await.unwrap();
                let len = c.read_u16().await.unwrap() as usize;
                let mut buf = vec![0; len];
                c.read_exact(&mut buf).await.unwrap();
                let m = Message::from_vec(&buf).unwrap();
                let u = m.updates();
                let adds: Vec<String> = u
                    .iter()
                    .filter(|r| r.dns_class == DNSClass::IN)
                    .map(|r| match &r.data {
                        RData::A(a) => a.to_string(),
                        other => format!("{other:?}"),
                    })
                    .collect();
                let name = u[0].name.to_string();
                s2.lock().unwrap().push(if adds.is_empty() {
                    format!("-{name}")
                } else {
                    format!("{name} {}", adds.join(" "))
                });
                let rcode = if r2.load(Ordering::Relaxed) {
                    ResponseCode::Refused
                } else {
                    ResponseCode::NoError
                };
                let mut a = Message::response(m.metadata.id, OpCode::Update);
                a.metadata.response_code = rcode;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                let mac = m.signature.unwrap().data.mac;
                let ctx = TSigResponseContext::new(m.metadata.id, now, signer(), mac, None);
                a.set_signature(ctx.sign(&a.to_vec().unwrap()).unwrap());
                let out = a.to_vec().unwrap();
                c.write_u16(out.len() as u16).await.unwrap();
                c.write_all(&out).await.unwrap();
            }
        });
        let zone = Name::from_ascii("lan.example.").unwrap();
        Fake {
            seen,
            refuse,
            client: Client::new(addr, zone, signer()),
        }
    }

    /// First sight publishes, the same poll again sends nothing, a new
    /// address or hostname replaces (the old name deleted first), a silent
    /// agent or a lost lease keeps the name, a router gone deletes it; a
    /// refusal is retried only after the backoff.
    #[tokio::test]
    async fn publishes_what_changed_and_only_that() {
        let f = fake().await;
        let mut p = Publisher::new(f.client.clone());
        let t0 = Instant::now();
        let take = || std::mem::take(&mut *f.seen.lock().unwrap());
        let a = bound("web1", 57);
        assert!(p.sync(&[("web1", Some(&a))], t0).await.is_empty());
        assert_eq!(take(), ["web1.lan.example. 203.0.113.57"]);
        p.sync(&[("web1", Some(&a))], t0).await;
        assert!(take().is_empty(), "nothing changed");
        let b = bound("web1", 61);
        p.sync(&[("web1", Some(&b))], t0).await;
        assert_eq!(take(), ["web1.lan.example. 203.0.113.61"]);
        let c = bound("shop", 61);
        p.sync(&[("web1", Some(&c))], t0).await;
        assert_eq!(
            take(),
            ["-web1.lan.example.", "shop.lan.example. 203.0.113.61"]
        );
        let mut lost = c.clone();
        lost.lease = None;
        p.sync(&[("web1", None)], t0).await;
        p.sync(&[("web1", Some(&lost))], t0).await;
        assert!(take().is_empty(), "a gap keeps the name");
        p.sync(&[], t0).await;
        assert_eq!(take(), ["-shop.lan.example."]);
        p.sync(&[], t0).await;
        assert!(take().is_empty(), "deleted once");

        // The name is the status's hostname, not the service's.
        let a = bound("db", 57);
        f.refuse.store(true, Ordering::Relaxed);
        assert_eq!(p.sync(&[("db", Some(&a))], t0).await, ["db"]);
        assert_eq!(take().len(), 1);
        p.sync(&[("db", Some(&a))], t0 + Duration::from_secs(1))
            .await;
        assert!(take().is_empty(), "not before the backoff");
        f.refuse.store(false, Ordering::Relaxed);
        let later = t0 + FIRST_BACKOFF + Duration::from_secs(1);
        assert!(p.sync(&[("db", Some(&a))], later).await.is_empty());
        assert_eq!(take(), ["db.lan.example. 203.0.113.57"]);
    }

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
