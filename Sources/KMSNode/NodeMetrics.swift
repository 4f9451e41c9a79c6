import CoreMetrics
import DNSWire
import KMSCrypto
import KMSSettings
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

    func increment(by amount: Int = 1) {
        counter.increment(by: Int64(amount))
        value.add(amount, ordering: .relaxed)
    }

    var count: Int { value.load(ordering: .relaxed) }
}

/// The node's counters. Labels are small fixed sets (never the query name), created once.
struct NodeMetrics: Sendable {
    enum Kind: String, CaseIterable {
        case inquiry, sigreq, anonymous, address, other, malformed

        /// The position in `allCases`.
        var index: Int {
            switch self {
            case .inquiry: 0
            case .sigreq: 1
            case .anonymous: 2
            case .address: 3
            case .other: 4
            case .malformed: 5
            }
        }
    }

    /// By kind, in `Kind.allCases` order; by rcode, indexed by its value (`count`: an array
    /// index, not a dictionary look-up, on every request).
    private let requests: [Tally]
    private let responses: [Tally?]
    let cacheHits: Tally
    let cacheMisses: Tally
    let upstreamFailures: Tally
    /// Requests to a neighbour sent again, newly signed, after no reply (`KMS1Exchange.ask`).
    let upstreamRetransmissions: Tally
    let countersignaturesIssued: Tally
    let dropped: Tally
    /// Requests turned away by a budget (`Spending`) before the work they asked for.
    let throttled: Tally
    let throttledAnonymous: Tally
    let throttledUpstream: Tally

    init(zone: DomainName) {
        let zoneLabel = ("zone", zone.text)
        requests = Kind.allCases.map { kind in
            Tally("requests.\(kind.rawValue)", label: "kms_requests_total", dimensions: [zoneLabel, ("kind", kind.rawValue)])
        }
        let counted: [RCode] = [.noError, .formatError, .serverFailure, .nameError, .notImplemented, .refused, .badVersion]
        var responses = [Tally?](repeating: nil, count: Int(counted.map(\.rawValue).max()!) + 1)
        for rcode in counted {
            responses[Int(rcode.rawValue)] = Tally(
                "responses.\(rcode.description)", label: "kms_responses_total", dimensions: [zoneLabel, ("rcode", rcode.description)])
        }
        self.responses = responses
        cacheHits = Tally("key-cache.hit", label: "kms_key_cache_total", dimensions: [zoneLabel, ("result", "hit")])
        cacheMisses = Tally("key-cache.miss", label: "kms_key_cache_total", dimensions: [zoneLabel, ("result", "miss")])
        upstreamFailures = Tally("upstream.failures", label: "kms_upstream_failures_total", dimensions: [zoneLabel])
        upstreamRetransmissions = Tally("upstream.retransmissions", label: "kms_upstream_retransmissions_total", dimensions: [zoneLabel])
        countersignaturesIssued = Tally("countersignatures.issued", label: "kms_countersignatures_issued_total", dimensions: [zoneLabel])
        dropped = Tally("dropped", label: "kms_dropped_total", dimensions: [zoneLabel])
        throttled = Tally("throttled.verify", label: "kms_throttled_total", dimensions: [zoneLabel, ("budget", "verify")])
        throttledAnonymous = Tally("throttled.anonymous", label: "kms_throttled_total", dimensions: [zoneLabel, ("budget", "anonymous")])
        throttledUpstream = Tally("throttled.upstream", label: "kms_throttled_total", dimensions: [zoneLabel, ("budget", "upstream")])
        var types: [UInt16: Counter] = [:]
        for type in [RRType.a, .aaaa, .txt, .soa, .ns, RRType(rawValue: 252), RRType(rawValue: 251), RRType(rawValue: 43)] {
            let name = type.rawValue == 252 ? "AXFR" : type.rawValue == 251 ? "IXFR" : type.rawValue == 43 ? "DS" : "\(type)"
            types[type.rawValue] = Counter(label: "kms_queries_total", dimensions: [zoneLabel, ("type", name)])
        }
        queryTypes = types
        otherQueryType = Counter(label: "kms_queries_total", dimensions: [zoneLabel, ("type", "other")])
        var upstream: [String: Timer] = [:]
        for outcome in ["answer", "unresolved", "error", "timeout", "unreachable", "rejected"] {
            upstream[outcome] = Timer(label: "kms_upstream_seconds", dimensions: [zoneLabel, ("outcome", outcome)])
        }
        upstreamTime = upstream
        keyCacheEntries = Gauge(label: "kms_key_cache_entries", dimensions: [zoneLabel])
        registeredHosts = Gauge(label: "kms_registered_hosts", dimensions: [zoneLabel])
        logEntries = Gauge(label: "kms_log_entries", dimensions: [zoneLabel])
        upstreamInFlight = Gauge(label: "kms_upstream_in_flight", dimensions: [zoneLabel])
    }

    /// The `# HELP` text of every metric of kmsd.
    static let help: [String: String] = [
        "kms_requests_total": "Requests by kind: signed inquiries and sigreqs, anonymous TXT, address queries, other, malformed.",
        "kms_responses_total": "Responses by rcode.",
        "kms_queries_total": "Queries by the question's type.",
        "kms_key_cache_total": "Key cache lookups, by hit or miss.",
        "kms_upstream_failures_total": "Questions to a parent or child KMS that got no usable answer.",
        "kms_upstream_retransmissions_total": "Requests to a parent or child KMS sent again, newly signed, because the one before had no reply yet (a lost datagram, or a slow KMS).",
        "kms_upstream_seconds": "Time to hear back from a parent or child KMS, by outcome.",
        "kms_countersignatures_issued_total": "Countersignatures this node issued (each appended to its transparency log).",
        "kms_dropped_total": "Packets dropped unanswered: too short, responses, or too many replies waiting; and TCP connections closed at accept, over the TCP limit.",
        "kms_throttled_total": "Requests turned away by a budget before the work they asked for, by budget.",
        "kms_signatures_total": "Signatures this process made (all nodes): answers, requests, countersignatures, tree heads.",
        "kms_verifications_total": "Signature checks this process made (all nodes).",
        "kms_key_cache_entries": "Countersigned keys held in the key cache.",
        "kms_registered_hosts": "Hosts registered in the zone.",
        "kms_log_entries": "Entries in this node's transparency log.",
        "kms_upstream_in_flight": "Questions to neighbours waiting for an answer now.",
        "kms_build_info": "The running build (value 1).",
    ]

    /// Queries by type (the question's), labelled with a fixed set.
    let queryTypes: [UInt16: Counter]
    let otherQueryType: Counter
    /// Time to hear back from a parent or child KMS, by outcome.
    let upstreamTime: [String: Timer]
    /// Sizes, set when `/metrics` is scraped (`KMSNode.updateGauges`).
    let keyCacheEntries: Gauge
    let registeredHosts: Gauge
    let logEntries: Gauge
    let upstreamInFlight: Gauge

    func count(type: RRType) { (queryTypes[type.rawValue] ?? otherQueryType).increment() }

    /// Every tally, named, in a fixed order (`kms ctl stats`).
    var all: [Tally] {
        requests + responses.compactMap { $0 }.sorted { $0.name < $1.name }
            + [
                cacheHits, cacheMisses, upstreamFailures, upstreamRetransmissions, countersignaturesIssued, dropped, throttled, throttledAnonymous,
                throttledUpstream,
            ]
    }

    func count(_ kind: Kind) { requests[kind.index].increment() }
    func count(_ rcode: RCode) {
        guard Int(rcode.rawValue) < responses.count else { return }
        responses[Int(rcode.rawValue)]?.increment()
    }
}

/// The process-wide metrics of kmsd: signatures made and checked (`CryptoCounts`, brought up
/// to date at each scrape), and the build.
final class ProcessMetrics: Sendable {
    private let signatures = Counter(label: "kms_signatures_total")
    private let verifications = Counter(label: "kms_verifications_total")
    private let build = Gauge(label: "kms_build_info", dimensions: [("version", Build.version)])
    private let seen = Mutex<(signatures: Int, verifications: Int)>((0, 0))

    func update() {
        let (signed, verified) = (CryptoCounts.signatures, CryptoCounts.verifications)
        let (newSignatures, newVerifications) = seen.withLock { seen in
            defer { seen = (signed, verified) }
            return (signed - seen.signatures, verified - seen.verifications)
        }
        if newSignatures > 0 { signatures.increment(by: newSignatures) }
        if newVerifications > 0 { verifications.increment(by: newVerifications) }
        build.record(1)
    }
}
