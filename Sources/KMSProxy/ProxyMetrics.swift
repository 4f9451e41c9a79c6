import CoreMetrics
import KMSSettings

/// The proxy's metrics; small fixed label sets, never a name or an address. `help` is the
/// `# HELP` text of each (`HelpfulMetricsFactory`).
struct ProxyMetrics: Sendable {
    let encrypted = Counter(label: "kms_proxy_names_total", dimensions: [("verdict", "encrypted")])
    let passed = Counter(label: "kms_proxy_names_total", dimensions: [("verdict", "passed")])
    let refused = Counter(label: "kms_proxy_names_total", dimensions: [("verdict", "refused")])
    let clientsRefused = Counter(label: "kms_proxy_clients_refused_total")
    let answerTime = Timer(label: "kms_proxy_dns_seconds")
    let keyFetchTime = Timer(label: "kms_proxy_key_fetch_seconds")

    static let help: [String: String] = [
        "kms_proxy_names_total": "Names resolved through the proxy, by what the CUG table (or the KMS's verdict) decided.",
        "kms_proxy_clients_refused_total": "DNS queries refused because their client is outside dns-allow.",
        "kms_proxy_dns_seconds": "Time to answer a DNS query, upstream and key fetch included.",
        "kms_proxy_key_fetch_seconds": "Time to fetch and verify a peer's key (host cache hits included).",
        "kms_proxy_tunnels_total": "Outgoing tunnels, by whether TLS to the peer's endpoint succeeded with its verified key.",
        "kms_proxy_tunnel_setup_seconds": "Time to connect to a peer's endpoint and finish the pinned TLS 1.3 handshake.",
        "kms_proxy_inbound_total": "Incoming tunnels at the receiving endpoint, by whether the caller was let in.",
        "kms_proxy_relayed_bytes_total": "Bytes carried through tunnels, to peers (sent) and from them (received).",
        "kms_proxy_mappings": "Live mappings: intercept addresses handed out, and peers diverted by the kernel.",
        "kms_proxy_tunnels": "Tunnels open now, by direction.",
        "kms_proxy_pool_addresses": "Intercept pool addresses, in use and in all, by family.",
        "kms_proxy_build_info": "The running build (value 1).",
    ]
}

struct TunnelMetrics: Sendable {
    let opened = Counter(label: "kms_proxy_tunnels_total", dimensions: [("result", "opened")])
    let failed = Counter(label: "kms_proxy_tunnels_total", dimensions: [("result", "failed")])
    let setupTime = Timer(label: "kms_proxy_tunnel_setup_seconds")
    let inboundAccepted = Counter(label: "kms_proxy_inbound_total", dimensions: [("result", "accepted")])
    let inboundRefused = Counter(label: "kms_proxy_inbound_total", dimensions: [("result", "refused")])
}

/// Bytes relayed, for every tunnel (created after the metrics system is set up: on first use).
enum RelayedBytes {
    static let sent = Counter(label: "kms_proxy_relayed_bytes_total", dimensions: [("direction", "sent")])
    static let received = Counter(label: "kms_proxy_relayed_bytes_total", dimensions: [("direction", "received")])
}

/// The gauges, set from the proxy's tables when `/metrics` is scraped.
struct ProxyGauges: Sendable {
    let intercepts = Gauge(label: "kms_proxy_mappings", dimensions: [("kind", "intercept")])
    let diverted = Gauge(label: "kms_proxy_mappings", dimensions: [("kind", "kernel")])
    let tunnelsOut = Gauge(label: "kms_proxy_tunnels", dimensions: [("direction", "out")])
    let tunnelsIn = Gauge(label: "kms_proxy_tunnels", dimensions: [("direction", "in")])
    let used4 = Gauge(label: "kms_proxy_pool_addresses", dimensions: [("family", "ipv4"), ("state", "used")])
    let total4 = Gauge(label: "kms_proxy_pool_addresses", dimensions: [("family", "ipv4"), ("state", "total")])
    let used6 = Gauge(label: "kms_proxy_pool_addresses", dimensions: [("family", "ipv6"), ("state", "used")])
    let total6 = Gauge(label: "kms_proxy_pool_addresses", dimensions: [("family", "ipv6"), ("state", "total")])
    let build = Gauge(label: "kms_proxy_build_info", dimensions: [("version", Build.version)])
}
