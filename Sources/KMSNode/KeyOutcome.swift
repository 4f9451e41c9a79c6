import DNSWire
import KMSProtocol

/// How a key request ended, as a value.
enum KeyOutcome: Sendable {
    /// A countersigned key, fit to hand on for `ttl` more seconds, with its place in the
    /// signer's log when this node has it.
    case key(Countersignature, proof: InclusionProof?, ttl: UInt32, authoritative: Bool)
    /// The authoritative KMS has no such host (the patent's step 45).
    case unresolved
    /// Refused, with the reason (REFUSED).
    case refused(ExtendedDNSError)
    /// Could not be answered (SERVFAIL), with the reason: never a key that was not verified.
    case failed(ExtendedDNSError)

    /// An upstream error reply passed on with its own reason.
    static func passOn(_ rcode: RCode, _ errors: [ExtendedDNSError], from peer: DomainName) -> KeyOutcome {
        let error = errors.first ?? ExtendedDNSError(.other, "\(peer) answered \(rcode)")
        return rcode == .refused ? .refused(error) : .failed(error)
    }
}

/// Trace notes of one request: this node's and those its upstream returned, in order.
struct Hops: Sendable {
    let node: DomainName
    let enabled: Bool
    private(set) var records: [ResourceRecord] = []

    init(node: DomainName, enabled: Bool) {
        self.node = node
        self.enabled = enabled
    }

    mutating func note(_ text: @autoclosure () -> String) {
        if enabled { records.append(HopTrace.record(node: node, note: text())) }
    }

    mutating func append(_ upstream: [ResourceRecord]) {
        if enabled { records += upstream }
    }
}

/// A key outcome now, or after asking a neighbour. `shared` names the fetch when identical
/// ones share a single run (`Spending.fetches`): a request that joins one already running
/// costs its client no upstream slot.
enum KeyStep: Sendable {
    case now(KeyOutcome, Hops)
    case later(@Sendable () async -> (KeyOutcome, Hops), shared: FetchKey? = nil)
}
