//! Flushing tracked flows whose DNAT target a new plan changed, so that
//! their next packet goes through the NAT chain again (conntrack-tools).

use std::collections::HashSet;
use std::net::Ipv4Addr;

use netcontainer_proto::{Forward, Protocol};

use super::error::FirewallError;
use super::runner::Runner;

/// Deletes the tracked connections carrying `mark` whose reply source
/// (the DNAT target) is one of `old_targets`, so that they re-enter the
/// NAT chain and reach the new target. No matching entry is not an error.
pub async fn flush_to(
    runner: &Runner,
    mark: u32,
    old_targets: &[(Protocol, Ipv4Addr)],
) -> Result<u64, FirewallError> {
    const OP: &str = "delete conntrack entries";
    let mut targets = old_targets.to_vec();
    targets.sort();
    targets.dedup();
    let mark = mark.to_string();
    let mut deleted = 0;
    for (p, addr) in targets {
        let addr_s = addr.to_string();
        let args = [
            "-D",
            "-p",
            p.as_str(),
            "--reply-src",
            &addr_s,
            "--mark",
            &mark,
        ];
        let n = delete(runner, OP, &args).await?;
        tracing::debug!(protocol = %p, target = %addr, deleted = n, "conntrack entries deleted");
        deleted += n;
    }
    Ok(deleted)
}

/// Deletes every tracked connection to or through `address`, an address of
/// ours that just went (a lease lost or replaced): flows from the LAN to it
/// (original destination) and the service's outbound flows rewritten to it
/// (gateway mode's SNAT: reply destination). Their entries would otherwise
/// keep rewriting packets to an address the LAN no longer routes to us, a
/// black hole until conntrack's timeout (days for an established TCP flow);
/// without them the next packet is NATed anew (to the new address) or
/// refused, and the application sees it at once. No entry is not an error.
pub async fn flush_address(runner: &Runner, address: Ipv4Addr) -> Result<u64, FirewallError> {
    const OP: &str = "delete conntrack entries of an old address";
    let addr = address.to_string();
    let mut deleted = 0;
    for key in ["--orig-dst", "--reply-dst"] {
        deleted += delete(runner, OP, &["-D", "-f", "ipv4", key, &addr]).await?;
    }
    tracing::debug!(%address, deleted, "conntrack entries of an old address deleted");
    Ok(deleted)
}

/// Runs one `conntrack -D` with `args`; how many entries it deleted.
/// conntrack lists the matching entries, then deletes them one by one, and
/// stops at one that went meanwhile (it timed out, or the kernel removed it
/// with the address it was NATed to): "such conntrack doesn't exist", exit
/// 1, the rest not deleted. That entry is gone, which was the point: the
/// delete runs again, a bounded number of times, for the rest.
async fn delete(runner: &Runner, op: &'static str, args: &[&str]) -> Result<u64, FirewallError> {
    const ATTEMPTS: usize = 3;
    let mut attempt = 1;
    loop {
        let out = runner.run(op, "conntrack", args, None).await?;
        match deleted_count(&out.stderr) {
            Some(n) => return Ok(n),
            None if vanished(&out.stderr) && attempt < ATTEMPTS => {
                tracing::debug!(
                    ?args,
                    attempt,
                    "a conntrack entry went while it was being deleted: again"
                );
                attempt += 1;
            }
            None => return Err(out.failed(op)),
        }
    }
}

/// conntrack's error for an entry that went between its listing and its
/// deletion (ENOENT).
fn vanished(stderr: &str) -> bool {
    stderr.contains("such conntrack doesn't exist")
}

/// conntrack prints "N flow entries have been deleted." on stderr, and
/// exits 1 when N is 0: the line, not the status, says whether it worked.
fn deleted_count(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|l| {
        let (_, rest) = l.split_once("): ")?;
        rest.strip_suffix(" flow entries have been deleted.")?
            .parse::<u64>()
            .ok()
    })
}

/// `(protocol, old target)` of every forward of `old` whose public ports are
/// not forwarded identically by `new`: their tracked flows should be flushed.
pub fn stale_targets(old: &[Forward], new: &[Forward]) -> Vec<(Protocol, Ipv4Addr)> {
    let new: HashSet<&Forward> = new.iter().collect();
    let mut v: Vec<(Protocol, Ipv4Addr)> = old
        .iter()
        .filter(|f| !new.contains(f))
        .map(|f| (f.protocol, f.target_address))
        .collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::fixtures::three;

    #[test]
    fn stale_targets_lists_changed_forwards() {
        let old = three();
        let mut new = three();
        new[0].target_address = Ipv4Addr::new(192, 0, 2, 7);
        new.remove(2);
        assert_eq!(
            stale_targets(&old, &new),
            vec![
                (Protocol::Tcp, Ipv4Addr::new(192, 0, 2, 2)),
                (Protocol::Udp, Ipv4Addr::new(192, 0, 2, 2))
            ]
        );
        assert!(stale_targets(&old, &old).is_empty());
    }

    #[test]
    fn reads_the_deleted_count() {
        let out = "conntrack v1.4.7 (conntrack-tools): 4 flow entries have been deleted.";
        assert_eq!(deleted_count(out), Some(4));
        let none = "conntrack v1.4.7 (conntrack-tools): 0 flow entries have been deleted.";
        assert_eq!(deleted_count(none), Some(0));
        assert_eq!(deleted_count("conntrack: Operation not permitted"), None);
        // What conntrack 1.4.7 said when an entry went during the delete
        // (CI, real_outage: the old address's flows were then left behind).
        let gone =
            "conntrack v1.4.7 (conntrack-tools): Operation failed: such conntrack doesn't exist";
        assert_eq!(deleted_count(gone), None);
        assert!(vanished(gone));
        assert!(!vanished("conntrack: Operation not permitted"));
    }
}
