import CoreMetrics

/// The proxy's counters; small fixed label sets.
struct ProxyMetrics: Sendable {
    let encrypted = Counter(label: "kms_proxy_names_total", dimensions: [("verdict", "encrypted")])
    let passed = Counter(label: "kms_proxy_names_total", dimensions: [("verdict", "passed")])
    let refused = Counter(label: "kms_proxy_names_total", dimensions: [("verdict", "refused")])
}

struct TunnelMetrics: Sendable {
    let opened = Counter(label: "kms_proxy_tunnels_total", dimensions: [("result", "opened")])
    let failed = Counter(label: "kms_proxy_tunnels_total", dimensions: [("result", "failed")])
    let inboundAccepted = Counter(label: "kms_proxy_inbound_total", dimensions: [("result", "accepted")])
    let inboundRefused = Counter(label: "kms_proxy_inbound_total", dimensions: [("result", "refused")])
}
