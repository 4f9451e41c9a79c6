import CoreMetrics
import DNSWire
import Synchronization

/// A counter exported as a metric and also kept here, so `kms ctl stats` can read it without
/// the metrics backend.
final class Tally: Sendable {
    let name: String
    private let counter: Counter
    private let value = Atomic<Int>(0)

    init(_ name: String, label: String, dimensions: [(String, String)]) {
        self.name = name
        counter = Counter(label: label, dimensions: dimensions)
    }

    func increment() {
        counter.increment()
        value.add(1, ordering: .relaxed)
    }

    var count: Int { value.load(ordering: .relaxed) }
}

/// The node's counters. Labels are small fixed sets (never the query name), created once.
struct NodeMetrics: Sendable {
    enum Kind: String, CaseIterable { case inquiry, sigreq, anonymous, address, other, malformed }

    let requests: [Kind: Tally]
    let responses: [UInt16: Tally]
    let cacheHits: Tally
    let cacheMisses: Tally
    let upstreamFailures: Tally
    let countersignaturesIssued: Tally
    let dropped: Tally
    /// Requests turned away by a budget (`Spending`) before the work they asked for.
    let throttled: Tally
    let throttledAnonymous: Tally
    let throttledUpstream: Tally

    init(zone: DomainName) {
        let zoneLabel = ("zone", zone.text)
        var requests: [Kind: Tally] = [:]
        for kind in Kind.allCases {
            requests[kind] = Tally("requests.\(kind.rawValue)", label: "kms_requests_total", dimensions: [zoneLabel, ("kind", kind.rawValue)])
        }
        self.requests = requests
        var responses: [UInt16: Tally] = [:]
        for rcode in [RCode.noError, .formatError, .serverFailure, .nameError, .notImplemented, .refused, .badVersion] {
            responses[rcode.rawValue] = Tally(
                "responses.\(rcode.description)", label: "kms_responses_total", dimensions: [zoneLabel, ("rcode", rcode.description)])
        }
        self.responses = responses
        cacheHits = Tally("key-cache.hit", label: "kms_key_cache_total", dimensions: [zoneLabel, ("result", "hit")])
        cacheMisses = Tally("key-cache.miss", label: "kms_key_cache_total", dimensions: [zoneLabel, ("result", "miss")])
        upstreamFailures = Tally("upstream.failures", label: "kms_upstream_failures_total", dimensions: [zoneLabel])
        countersignaturesIssued = Tally("countersignatures.issued", label: "kms_countersignatures_issued_total", dimensions: [zoneLabel])
        dropped = Tally("dropped", label: "kms_dropped_total", dimensions: [zoneLabel])
        throttled = Tally("throttled.verify", label: "kms_throttled_total", dimensions: [zoneLabel, ("budget", "verify")])
        throttledAnonymous = Tally("throttled.anonymous", label: "kms_throttled_total", dimensions: [zoneLabel, ("budget", "anonymous")])
        throttledUpstream = Tally("throttled.upstream", label: "kms_throttled_total", dimensions: [zoneLabel, ("budget", "upstream")])
    }

    /// Every tally, named, in a fixed order (`kms ctl stats`).
    var all: [Tally] {
        Kind.allCases.compactMap { requests[$0] } + responses.values.sorted { $0.name < $1.name }
            + [cacheHits, cacheMisses, upstreamFailures, countersignaturesIssued, dropped, throttled, throttledAnonymous, throttledUpstream]
    }

    func count(_ kind: Kind) { requests[kind]?.increment() }
    func count(_ rcode: RCode) { responses[rcode.rawValue]?.increment() }
}
