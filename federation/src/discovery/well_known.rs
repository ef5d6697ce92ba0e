//! Fetching and caching `https://<hostname>/.well-known/matrix/server` (step 3).
//!
//! Cache policy follows Synapse: `Cache-Control: no-store` / `max-age` / `Expires` decide how
//! long a valid answer is kept, clamped to [5 min, 48 h], 24 h (±10 %) without headers. A
//! failed or invalid fetch is cached for 1 h, or 2 min if the domain had a valid well-known
//! recently (so a brief outage of a delegating domain heals quickly). A temporary failure
//! (connection error, 5xx, oversized body) while a previous valid answer is still cached keeps
//! using that answer. Entries are refetched in the last 20 % of their lifetime.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{CACHE_CONTROL, EXPIRES, HOST, LOCATION, USER_AGENT};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName as TlsName;
use serde::Deserialize;

use super::Resolver;
use super::cache::jittered;
use super::server_name::{Host, ParsedServerName};

/// How a fetch ended, before caching.
enum Fetched {
    /// A valid `m.server`, and the cache period the response's headers ask for (if any).
    Delegated(String, Option<Duration>),
    /// Non-200 or a body that is not a valid well-known: not worth retrying soon.
    Invalid,
    /// Could not connect, 5xx, or an oversized body: may heal by itself.
    Unreachable,
}

/// What a lookup returns: the delegated server name (if any), and when a resolution built on
/// it should ask again (the start of the refresh window, so the refetch really happens).
pub(crate) struct WellKnown {
    pub delegated: Option<String>,
    pub refresh_at: Instant,
}

/// Refetch in the last 20 % of an entry's lifetime (Synapse's grace period), so a live
/// domain's answer is renewed before it expires.
fn refresh_point(expires: Instant, ttl: Duration) -> Instant {
    expires.checked_sub(ttl.mul_f64(0.2)).unwrap_or(expires)
}

#[derive(Clone)]
pub(crate) struct CachedWellKnown {
    delegated: Option<String>,
    ttl: Duration,
}

#[derive(Deserialize)]
struct ServerWellKnown {
    #[serde(rename = "m.server")]
    server: String,
}

/// An https URL broken into the parts a request needs.
struct Target {
    host: Host,
    port: u16,
    /// `Host` header: the URL's authority as written (port only if non-default).
    authority: String,
    path: String,
}

impl Resolver {
    /// Step 3: the delegated server name for `hostname`, from the cache or the network.
    pub(crate) async fn well_known(&self, hostname: &str) -> WellKnown {
        let cfg = &self.inner.config.well_known;
        let key = hostname.to_owned();
        let previous = self.inner.well_known.get_with_expiry(&key);
        let now = Instant::now();
        if let Some((entry, expires)) = &previous {
            let refresh_at = refresh_point(*expires, entry.ttl);
            if now < refresh_at {
                return WellKnown {
                    delegated: entry.delegated.clone(),
                    refresh_at,
                };
            }
        }

        let fetched = self.fetch_well_known(hostname).await;
        // A temporary failure inside the previous answer's lifetime keeps serving it.
        if let (Fetched::Unreachable, Some((entry, expires))) = (&fetched, &previous)
            && entry.delegated.is_some()
            && now < *expires
        {
            return WellKnown {
                delegated: entry.delegated.clone(),
                refresh_at: *expires,
            };
        }
        let (delegated, ttl) = match fetched {
            Fetched::Delegated(server, header_period) => {
                let ttl = match header_period {
                    Some(p) => p.clamp(cfg.min_cache_period, cfg.max_cache_period),
                    None => jittered(cfg.default_cache_period, cfg.jitter),
                };
                // Remember for a while after expiry that this domain delegates, so a later
                // failure is cached only briefly.
                self.inner.had_valid_well_known.insert(
                    key.clone(),
                    (),
                    now + ttl + cfg.remember_had_valid,
                );
                (Some(server), ttl)
            }
            Fetched::Invalid | Fetched::Unreachable => {
                let period = if self.inner.had_valid_well_known.get(&key).is_some() {
                    cfg.error_cache_period_after_valid
                } else {
                    cfg.error_cache_period
                };
                (None, jittered(period, cfg.jitter))
            }
        };
        let valid_until = now + ttl;
        if !ttl.is_zero() {
            self.inner.well_known.insert(
                key,
                CachedWellKnown {
                    delegated: delegated.clone(),
                    ttl,
                },
                valid_until,
            );
        }
        WellKnown {
            delegated,
            refresh_at: refresh_point(valid_until, ttl),
        }
    }

    async fn fetch_well_known(&self, hostname: &str) -> Fetched {
        let cfg = &self.inner.config.well_known;
        let mut target = Target {
            host: Host::Name(hostname.to_owned()),
            port: self.inner.config.well_known_port,
            authority: hostname.to_owned(),
            path: "/.well-known/matrix/server".to_owned(),
        };
        let mut redirects = 0;
        loop {
            let response =
                tokio::time::timeout(cfg.request_timeout, self.get_once(&target, cfg.max_size))
                    .await
                    .unwrap_or(Err(Fetched::Unreachable));
            let (status, headers, body) = match response {
                Ok(r) => r,
                Err(outcome) => {
                    tracing::info!(server = hostname, "well-known fetch failed");
                    return outcome;
                }
            };
            if status.is_redirection() {
                redirects += 1;
                let next = headers
                    .get(LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| self.redirect_target(&target, l));
                match next {
                    // The redirect limit also ends loops.
                    Some(next) if redirects <= cfg.max_redirects => {
                        target = next;
                        continue;
                    }
                    _ => return Fetched::Invalid,
                }
            }
            if status.is_server_error() {
                return Fetched::Unreachable;
            }
            if status != StatusCode::OK {
                return Fetched::Invalid;
            }
            // Invalid JSON, a missing `m.server`, or one that is not a server name: treat as
            // if there were no well-known (the spec's "skip to step 4").
            let Ok(parsed) = serde_json::from_slice::<ServerWellKnown>(&body) else {
                return Fetched::Invalid;
            };
            if ParsedServerName::parse(&parsed.server).is_err() {
                return Fetched::Invalid;
            }
            return Fetched::Delegated(parsed.server, cache_period_from_headers(&headers));
        }
    }

    /// One GET, without following redirects. `Err` carries how the failure should count.
    async fn get_once(
        &self,
        target: &Target,
        max_size: usize,
    ) -> Result<(StatusCode, HeaderMap, Bytes), Fetched> {
        let (addrs, tls_name): (Vec<SocketAddr>, TlsName<'static>) = match &target.host {
            Host::Ip(ip) => (
                vec![SocketAddr::new(*ip, target.port)],
                TlsName::IpAddress((*ip).into()),
            ),
            Host::Name(name) => {
                let (ips, _) = super::dns::lookup_ips(&self.inner.dns, name)
                    .await
                    .map_err(|_| Fetched::Unreachable)?;
                let name = TlsName::try_from(name.clone()).map_err(|_| Fetched::Invalid)?;
                let addrs = ips
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, target.port))
                    .collect();
                (addrs, name)
            }
        };
        let addrs = self.filter_addresses(addrs).map_err(|_| Fetched::Invalid)?;
        let cfg = &self.inner.config.well_known;
        let stream =
            super::connect::connect_tls(&self.inner.tls, &addrs, &tls_name, cfg.request_timeout)
                .await
                .map_err(|_| Fetched::Unreachable)?;

        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| Fetched::Unreachable)?;
        // The connection is used for this one request; it ends when the response is read
        // and `sender` is dropped.
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "well-known connection ended with an error");
            }
        });
        let request = Request::get(&target.path)
            .header(HOST, &target.authority)
            .header(USER_AGENT, concat!("Myelin/", env!("CARGO_PKG_VERSION")))
            .body(Empty::<Bytes>::new())
            .map_err(|_| Fetched::Invalid)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|_| Fetched::Unreachable)?;
        let (parts, body) = response.into_parts();
        // Synapse treats an oversized well-known as a temporary failure.
        let body = Limited::new(body, max_size)
            .collect()
            .await
            .map_err(|_| Fetched::Unreachable)?
            .to_bytes();
        Ok((parts.status, parts.headers, body))
    }

    /// Where a `Location` header points, if it is an https URL or a path on the same origin.
    fn redirect_target(&self, current: &Target, location: &str) -> Option<Target> {
        if location.starts_with('/') && !location.starts_with("//") {
            return Some(Target {
                host: current.host.clone(),
                port: current.port,
                authority: current.authority.clone(),
                path: location.to_owned(),
            });
        }
        let uri: http::Uri = location.parse().ok()?;
        if uri.scheme_str() != Some("https") {
            return None;
        }
        let authority = uri.authority()?;
        let host = ParsedServerName::parse(authority.as_str()).ok()?;
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        Some(Target {
            port: host.port.unwrap_or(self.inner.config.well_known_port),
            authority: host.authority(),
            host: host.host,
            path,
        })
    }
}

/// The cache period a response asks for: `no-store` means zero, then `max-age`, then
/// `Expires` (an unparseable `Expires` means already expired, per RFC 9111).
fn cache_period_from_headers(headers: &HeaderMap) -> Option<Duration> {
    let mut max_age = None;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let mut kv = directive.splitn(2, '=');
            let key = kv.next().unwrap_or("").trim().to_ascii_lowercase();
            let val = kv.next().map(|v| v.trim().trim_matches('"'));
            match key.as_str() {
                "no-store" => return Some(Duration::ZERO),
                "max-age" => {
                    if let Some(secs) = val.and_then(|v| v.parse::<u64>().ok()) {
                        max_age = Some(Duration::from_secs(secs));
                    }
                }
                _ => {}
            }
        }
    }
    if max_age.is_some() {
        return max_age;
    }
    let expires = headers.get_all(EXPIRES).iter().next_back()?;
    let Some(at) = expires
        .to_str()
        .ok()
        .and_then(|s| httpdate::parse_http_date(s).ok())
    else {
        return Some(Duration::ZERO);
    };
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&http::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                *k,
                HeaderValue::from_str(v).unwrap_or_else(|_| unreachable!()),
            );
        }
        map
    }

    #[test]
    fn cache_control_max_age() {
        let h = headers(&[(&CACHE_CONTROL, "public, max-age=3600")]);
        assert_eq!(
            cache_period_from_headers(&h),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn no_store_wins() {
        let h = headers(&[(&CACHE_CONTROL, "max-age=3600, no-store")]);
        assert_eq!(cache_period_from_headers(&h), Some(Duration::ZERO));
    }

    #[test]
    fn expires_header() {
        let at = SystemTime::now() + Duration::from_secs(7200);
        let h = headers(&[(&EXPIRES, &httpdate::fmt_http_date(at))]);
        let period = cache_period_from_headers(&h).unwrap_or_default();
        assert!(period > Duration::from_secs(7100) && period <= Duration::from_secs(7200));
        let h = headers(&[(&EXPIRES, "0")]);
        assert_eq!(cache_period_from_headers(&h), Some(Duration::ZERO));
    }

    #[test]
    fn no_headers_means_default() {
        assert_eq!(cache_period_from_headers(&HeaderMap::new()), None);
    }
}
