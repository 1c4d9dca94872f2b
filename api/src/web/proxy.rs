//! What a request says about its client through a reverse proxy — its address and whether
//! it arrived over TLS — believed only when the connection comes from a configured proxy.
//!
//! Anyone can send `X-Real-IP: 10.1.2.3` or `X-Forwarded-Proto: https`; only a proxy that
//! overwrites those headers makes them true. So they count only on connections from the
//! addresses in `MINITWIT_TRUSTED_PROXIES` (loopback by default); from anywhere else the
//! connection's own peer address is the client, and the request arrived over plain HTTP.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;

use super::WebState;

/// The proxies whose headers about the client are believed, and the header that carries
/// the client's address.
#[derive(Debug, Clone)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
    client_ip_header: Option<HeaderName>,
}

impl TrustedProxies {
    /// Proxies at `networks`, putting the client's address in `client_ip_header` (if any).
    pub fn new(networks: Vec<IpNet>, client_ip_header: Option<HeaderName>) -> Self {
        Self {
            networks,
            client_ip_header,
        }
    }

    /// Whether a connection from `peer` is one of the proxies'.
    fn trusts(&self, peer: IpAddr) -> bool {
        // An IPv4 proxy may reach a dual-stack listener as an IPv4-mapped IPv6 address.
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        self.networks.iter().any(|network| network.contains(&peer))
    }

    /// The client of a request that came over a connection from `peer` with `headers`.
    pub fn client_address(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> IpAddr {
        let from_proxy = self
            .client_ip_header
            .as_ref()
            .filter(|_| peer.is_some_and(|peer| self.trusts(peer)))
            .and_then(|name| forwarded_address(headers, name));
        from_proxy.or(peer).unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    /// Whether the browser reached the proxy in front of us over TLS, as a trusted proxy
    /// says in `X-Forwarded-Proto` or `Forwarded`.
    pub fn arrived_over_tls(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> bool {
        if !peer.is_some_and(|peer| self.trusts(peer)) {
            return false;
        }
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        let forwarded_proto = header("x-forwarded-proto")
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
        let forwarded = header("forwarded").is_some_and(|forwarded| {
            forwarded
                .split([';', ','])
                .any(|pair| pair.trim().eq_ignore_ascii_case("proto=https"))
        });
        forwarded_proto || forwarded
    }
}

/// The address in `header`; for a list (`X-Forwarded-For`), the last entry — the one the
/// trusted proxy itself appended, which the client cannot choose.
fn forwarded_address(headers: &HeaderMap, header: &HeaderName) -> Option<IpAddr> {
    let value = headers.get(header)?.to_str().ok()?;
    value.rsplit(',').next()?.trim().parse().ok()
}

/// The peer of the connection a request came over.
pub fn peer(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip())
}

/// The client's address: from the header a trusted proxy sets, else the connection's peer.
pub struct ClientAddress(pub IpAddr);

impl FromRequestParts<WebState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &WebState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            state
                .proxies
                .client_address(peer(&parts.extensions), &parts.headers),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::tests::headers;

    #[test]
    fn only_a_trusted_proxy_names_the_client_and_the_scheme() {
        let proxies = TrustedProxies::new(
            vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            Some(HeaderName::from_static("x-real-ip")),
        );
        let said = headers(&[("x-real-ip", "203.0.113.9"), ("x-forwarded-proto", "https")]);
        let proxy = IpAddr::from([10, 1, 2, 3]);
        let stranger = IpAddr::from([198, 51, 100, 1]);
        assert_eq!(
            proxies.client_address(Some(proxy), &said),
            IpAddr::from([203, 0, 113, 9])
        );
        assert!(proxies.arrived_over_tls(Some(proxy), &said));
        assert_eq!(proxies.client_address(Some(stranger), &said), stranger);
        assert!(!proxies.arrived_over_tls(Some(stranger), &said));
        let mapped: IpAddr = "::ffff:10.9.9.9".parse().unwrap();
        assert!(proxies.arrived_over_tls(Some(mapped), &said));
        let forwarded = headers(&[("forwarded", "for=203.0.113.9;proto=https")]);
        assert!(proxies.arrived_over_tls("::1".parse().ok(), &forwarded));
        assert!(!proxies.arrived_over_tls(Some(proxy), &HeaderMap::new()));
    }

    #[test]
    fn tls_is_recognised_from_either_proxy_header() {
        let proxies = TrustedProxies::new(vec!["127.0.0.1/32".parse().unwrap()], None);
        let over_tls =
            |pairs| proxies.arrived_over_tls(Some(IpAddr::from([127, 0, 0, 1])), &headers(pairs));
        assert!(over_tls(&[("x-forwarded-proto", "https")]));
        assert!(over_tls(&[("x-forwarded-proto", "HTTPS")]));
        assert!(over_tls(&[(
            "forwarded",
            "for=192.0.2.60;proto=https;by=203.0.113.43"
        )]));
        assert!(!over_tls(&[("x-forwarded-proto", "http")]));
        assert!(!over_tls(&[("forwarded", "proto=http")]));
        assert!(!over_tls(&[]));
    }
}
