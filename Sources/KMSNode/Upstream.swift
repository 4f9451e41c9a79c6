import DNSTransport
import DNSWire
import KMSClient
import KMSCrypto
import KMSProtocol
import KMSSettings
import MetricsHTTP
import NIOCore
import CoreMetrics

/// What a parent or child KMS said, after its signature and the nonce echo were checked.
enum UpstreamAnswer: Sendable {
    case key(KeyAnswer, proof: InclusionProof?)
    case unresolved
    /// An error reply (REFUSED, SERVFAIL, ...) with its extended errors, passed on as it came.
    case error(RCode, [ExtendedDNSError])
    /// Nothing usable came back: silence, or a reply that failed verification.
    case failed(ExtendedDNSError)
}

/// A node asking a neighbouring KMS: the shared `KMS1Exchange`, with each failure said as the
/// extended error this node will answer with (the silent or bogus KMS named, with its address).
struct Upstream: Sendable {
    let client: DNSClient
    let timeout: TimeAmount
    /// This node's key: every request to a neighbour is signed with it, anew each time it is
    /// sent (a fresh nonce and time).
    let key: PrivateKey
    /// `NodeMetrics.upstreamTime`.
    var timers: [String: Timer] = [:]
    /// `NodeMetrics.upstreamRetransmissions`.
    var retransmissions: Tally?

    /// How long to wait upstream for `request`: the configured time-out, or less when the
    /// requester said it waits less (`TimeBudget`).
    func wait(for request: Request) -> TimeAmount {
        let configured = UInt32(clamping: timeout.nanoseconds / 1_000_000)
        return .milliseconds(Int64(TimeBudget.wait(configured: configured, received: TimeBudget.milliseconds(in: request.message))))
    }

    /// Asks `peer` with the record `request` builds for a nonce and a time, signed by this
    /// node: again, newly built and signed, when a UDP datagram seems lost (`KMS1Exchange.ask`);
    /// nil when it cannot be built or signed. The neighbour's hop notes join `hops`, after a
    /// note of this node's if it had to ask more than once (also counted in
    /// `kms_upstream_retransmissions_total`).
    func ask(
        _ peer: Peer, target: DomainName, request: @escaping @Sendable (Nonce, UnixTime) throws -> KMSRecord, expecting tag: RecordTag,
        hops: inout Hops, wait: TimeAmount, audit: Bool = false
    ) async -> UpstreamAnswer? {
        let key = key
        let sign = { @Sendable () -> KMS1Exchange.Signed? in
            guard let nonce = try? Nonce.random(), let record = try? request(nonce, KMSNode.now()).signed(by: key) else { return nil }
            return (record, nonce)
        }
        guard let (record, nonce) = sign() else { return nil }
        let exchange = KMS1Exchange(client: client, timeout: timeout)
        let start = ContinuousClock.now
        let (outcome, upstreamHops, requests) = await exchange.ask(
            peer, target: target, record: record, nonce: nonce, expecting: tag, trace: hops.enabled, wait: wait, audit: audit, again: sign)
        if requests > 1 {
            retransmissions?.increment(by: requests - 1)
            hops.note("asked \(peer.name) \(requests) times, each newly signed: no reply to the first within \(KMS1Exchange.askedAgain(1, waiting: wait).nanoseconds / 1_000_000) ms")
        }
        hops.append(upstreamHops)
        let label: String
        switch outcome {
        case .key: label = "answer"
        case .unresolved: label = "unresolved"
        case .error: label = "error"
        case .timeout: label = "timeout"
        case .unreachable: label = "unreachable"
        case .rejected: label = "rejected"
        }
        timers[label]?.record(ContinuousClock.now - start)
        switch outcome {
        case .key(let answer, let proof):
            return .key(answer, proof: proof)
        case .unresolved:
            return .unresolved
        case .error(let rcode, let errors):
            return .error(rcode, errors)
        case .timeout:
            return .failed(ExtendedDNSError(
                .noReachableAuthority, "\(peer.name) (\(peer.endpoint)) did not answer within \(wait.nanoseconds / 1_000_000) ms"))
        case .unreachable(let reason):
            return .failed(ExtendedDNSError(.networkError, "\(peer.name) (\(peer.endpoint)) unreachable: \(reason)"))
        case .rejected(let reason):
            return .failed(ExtendedDNSError(.dnssecBogus, "reply from \(peer.name) rejected: \(reason)"))
        }
    }
}
