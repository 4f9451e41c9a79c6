import CoreMetrics
import DNSWire

/// The node's counters. Labels are small fixed sets (never the query name), created once.
struct NodeMetrics: Sendable {
    enum Kind: String, CaseIterable { case inquiry, sigreq, anonymous, address, other, malformed }

    let requests: [Kind: Counter]
    let responses: [UInt16: Counter]
    let cacheHits: Counter
    let cacheMisses: Counter
    let upstreamFailures: Counter
    let countersignaturesIssued: Counter
    let dropped: Counter
    /// Requests turned away by a budget (`Spending`) before the work they asked for.
    let throttled: Counter
    let throttledAnonymous: Counter
    let throttledUpstream: Counter

    init(zone: DomainName) {
        let zoneLabel = ("zone", zone.text)
        var requests: [Kind: Counter] = [:]
        for kind in Kind.allCases {
            requests[kind] = Counter(label: "kms_requests_total", dimensions: [zoneLabel, ("kind", kind.rawValue)])
        }
        self.requests = requests
        var responses: [UInt16: Counter] = [:]
        for rcode in [RCode.noError, .formatError, .serverFailure, .nameError, .notImplemented, .refused, .badVersion] {
            responses[rcode.rawValue] = Counter(
                label: "kms_responses_total", dimensions: [zoneLabel, ("rcode", rcode.description)])
        }
        self.responses = responses
        cacheHits = Counter(label: "kms_key_cache_total", dimensions: [zoneLabel, ("result", "hit")])
        cacheMisses = Counter(label: "kms_key_cache_total", dimensions: [zoneLabel, ("result", "miss")])
        upstreamFailures = Counter(label: "kms_upstream_failures_total", dimensions: [zoneLabel])
        countersignaturesIssued = Counter(label: "kms_countersignatures_issued_total", dimensions: [zoneLabel])
        dropped = Counter(label: "kms_dropped_total", dimensions: [zoneLabel])
        throttled = Counter(label: "kms_throttled_total", dimensions: [zoneLabel, ("budget", "verify")])
        throttledAnonymous = Counter(label: "kms_throttled_total", dimensions: [zoneLabel, ("budget", "anonymous")])
        throttledUpstream = Counter(label: "kms_throttled_total", dimensions: [zoneLabel, ("budget", "upstream")])
    }

    func count(_ kind: Kind) { requests[kind]?.increment() }
    func count(_ rcode: RCode) { responses[rcode.rawValue]?.increment() }
}
