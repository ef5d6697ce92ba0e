//! DNS lookups for discovery: A/AAAA and SRV, each with the instant the answer expires.
//!
//! hickory-resolver caches answers for their TTLs itself; the expiries returned here let the
//! discovery result cache expire no later than the DNS data it was built from.

use std::net::IpAddr;
use std::time::Instant;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::RData;

use super::DiscoveryError;
use super::cache::random_up_to;

/// One SRV answer, with the trailing dot removed from the target.
#[derive(Clone, Debug)]
pub(crate) struct SrvTarget {
    pub host: String,
    pub port: u16,
    priority: u16,
    weight: u16,
}

/// Names are looked up fully qualified, so a search domain in resolv.conf can never turn
/// `example.org` into `example.org.corp.internal`.
fn fqdn(host: &str) -> String {
    if host.ends_with('.') {
        host.to_owned()
    } else {
        format!("{host}.")
    }
}

pub(crate) async fn lookup_ips(
    resolver: &TokioResolver,
    host: &str,
) -> Result<(Vec<IpAddr>, Instant), DiscoveryError> {
    let lookup = resolver
        .lookup_ip(fqdn(host))
        .await
        .map_err(|e| DiscoveryError::Dns(format!("{host}: {e}")))?;
    let ips: Vec<IpAddr> = lookup.iter().collect();
    if ips.is_empty() {
        return Err(DiscoveryError::Dns(format!("{host}: no A/AAAA records")));
    }
    Ok((ips, lookup.valid_until()))
}

/// `Ok(None)` when the name has no SRV records (NXDOMAIN or an empty answer); other DNS
/// failures are errors, so a flaky resolver does not silently send us to port 8448.
pub(crate) async fn lookup_srv(
    resolver: &TokioResolver,
    name: &str,
) -> Result<Option<(Vec<SrvTarget>, Instant)>, DiscoveryError> {
    let lookup = match resolver.srv_lookup(fqdn(name)).await {
        Ok(lookup) => lookup,
        Err(e) if is_no_records(&e) => return Ok(None),
        Err(e) => return Err(DiscoveryError::Dns(format!("SRV {name}: {e}"))),
    };
    let mut targets: Vec<SrvTarget> = lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::SRV(srv) => Some(SrvTarget {
                host: srv
                    .target
                    .to_ascii()
                    .trim_end_matches('.')
                    .to_ascii_lowercase(),
                port: srv.port,
                priority: srv.priority,
                weight: srv.weight,
            }),
            _ => None,
        })
        .collect();
    if targets.is_empty() {
        return Ok(None);
    }
    // RFC 2782: a single record with target "." means the service is decidedly not
    // available at this domain.
    if targets.iter().all(|t| t.host.is_empty()) {
        return Err(DiscoveryError::Dns(format!(
            "SRV {name}: service not available"
        )));
    }
    targets.retain(|t| !t.host.is_empty());
    Ok(Some((order_srv(targets), lookup.valid_until())))
}

fn is_no_records(e: &NetError) -> bool {
    e.is_no_records_found() || e.is_nx_domain()
}

/// RFC 2782 ordering: ascending priority; within one priority, a weighted random order.
fn order_srv(mut targets: Vec<SrvTarget>) -> Vec<SrvTarget> {
    targets.sort_by_key(|t| (t.priority, t.weight));
    let mut ordered = Vec::with_capacity(targets.len());
    while !targets.is_empty() {
        let priority = targets[0].priority;
        let end = targets
            .iter()
            .position(|t| t.priority != priority)
            .unwrap_or(targets.len());
        let mut group: Vec<SrvTarget> = targets.drain(..end).collect();
        while !group.is_empty() {
            let total: u32 = group.iter().map(|t| u32::from(t.weight)).sum();
            let pick = random_up_to(total);
            let mut running = 0;
            let index = group
                .iter()
                .position(|t| {
                    running += u32::from(t.weight);
                    running >= pick
                })
                .unwrap_or(0);
            ordered.push(group.remove(index));
        }
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(host: &str, priority: u16, weight: u16) -> SrvTarget {
        SrvTarget {
            host: host.into(),
            port: 1,
            priority,
            weight,
        }
    }

    #[test]
    fn srv_priority_orders_first() {
        for _ in 0..50 {
            let ordered = order_srv(vec![
                srv("c", 20, 5),
                srv("a", 10, 0),
                srv("b", 10, 100),
                srv("d", 30, 0),
            ]);
            let hosts: Vec<&str> = ordered.iter().map(|t| t.host.as_str()).collect();
            assert_eq!(hosts.len(), 4);
            assert!(hosts[..2].contains(&"a") && hosts[..2].contains(&"b"));
            assert_eq!(&hosts[2..], ["c", "d"]);
        }
    }
}
