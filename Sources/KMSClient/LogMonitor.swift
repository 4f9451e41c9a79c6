public import DNSTransport
import DNSWire
import KMSCrypto
public import KMSProtocol
public import KMSSettings
public import NIOCore

/// Why following a log stopped: the log misbehaved (`kind == .log`), or could not be read.
public struct MonitorError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable {
        /// The log showed something an append-only log cannot: a head not signed by its
        /// signer, a head that does not extend the last one seen, entries that do not make
        /// the signed root.
        case log
        /// The log could not be reached or answered with an error.
        case unreachable
    }

    public let kind: Kind
    public let description: String

    init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }
}

/// What a monitor remembers of one log between runs: the last verified head and the right edge
/// of the tree, so the next run checks only what was appended since.
public struct LogState: Codable, Hashable, Sendable {
    public var size: UInt64
    public var root: [UInt8]
    public var time: UnixTime
    public var range: CompactRange

    public init() {
        size = 0
        root = Merkle.emptyRoot
        time = 0
        range = CompactRange()
    }
}

/// Follows one signer KMS's transparency log (docs/PROTOCOL.md, "The transparency log"):
/// reads its signed head, checks that it extends the last head seen (RFC 9162 consistency
/// proof), reads every entry appended since, checks that they make the signed root, and hands
/// back the entries. Every question goes over TCP to the signer's KMS.
public struct LogMonitor: Sendable {
    public let signer: TrustAnchors.Anchor
    public let server: SocketAddress
    let client: DNSClient
    let timeout: TimeAmount

    public init(signer: TrustAnchors.Anchor, server: SocketAddress, client: DNSClient, timeout: TimeAmount = .seconds(5)) {
        self.signer = signer
        self.server = server
        self.client = client
        self.timeout = timeout
    }

    /// The log's current head, verified with the signer's key.
    public func head() async throws(MonitorError) -> TreeHead {
        let records = try await ask(.head)
        for rr in records {
            guard case .txt(let strings) = rr.data else { continue }
            do {
                guard let head = try TreeHead(owner: signer.name, strings: strings) else { continue }
                try head.verify(by: signer.key)
                return head
            } catch {
                throw MonitorError(.log, "\(signer.name)'s tree head refused: \(error)")
            }
        }
        throw MonitorError(.log, "\(signer.name) served no tree head")
    }

    /// Checks that `head` extends the state's head, then reads and checks every entry between
    /// them. Returns the new state and the new entries, in log order.
    public func follow(from state: LogState, to head: TreeHead) async throws(MonitorError) -> (LogState, [(index: UInt64, entry: LogEntry)]) {
        guard head.size >= state.size else {
            throw MonitorError(.log, "\(signer.name)'s tree head has \(head.size) entries, fewer than the \(state.size) seen before: an append-only log never shrinks; refused")
        }
        try await checkConsistency(size: state.size, root: state.root, with: head)
        var range = state.range
        var entries: [(index: UInt64, entry: LogEntry)] = []
        while range.size < head.size {
            let batch = try await read(from: range.size, to: head.size)
            guard !batch.isEmpty else { throw MonitorError(.log, "\(signer.name) served no entries from \(range.size) below its size \(head.size)") }
            for (index, entry) in batch {
                guard index == range.size else {
                    throw MonitorError(.log, "\(signer.name) served entry \(index) where \(range.size) was asked for")
                }
                range.append(leafHash: entry.leafHash)
                entries.append((index, entry))
            }
        }
        guard range.root == head.root else {
            throw MonitorError(.log, "\(signer.name)'s entries 0..<\(head.size) do not make the root its head of size \(head.size) signs: the log was rewritten")
        }
        var next = LogState()
        next.size = head.size
        next.root = head.root
        next.time = head.time
        next.range = range
        return (next, entries)
    }

    /// Throws unless the tree with `root` at `size` (a head seen before, or one an inclusion
    /// proof came with) and `head` are the same tree at two sizes, whichever is larger.
    public func checkConsistency(size: UInt64, root: [UInt8], with head: TreeHead) async throws(MonitorError) {
        let (old, oldRoot, new, newRoot) = size <= head.size ? (size, root, head.size, head.root) : (head.size, head.root, size, root)
        if old == 0 || (old == new && oldRoot == newRoot) { return }
        var path: [[UInt8]] = []
        if old < new {
            let records = try await ask(.consistency(old: old, new: new))
            let proofs = records.compactMap { rr -> ConsistencyProof? in
                guard case .txt(let strings) = rr.data else { return nil }
                return try? ConsistencyProof(strings: strings)
            }
            guard let proof = proofs.first, proof.old == old, proof.new == new else {
                throw MonitorError(.log, "\(signer.name) gave no consistency proof from size \(old) to \(new)")
            }
            path = proof.path
        }
        guard Merkle.isConsistent(oldSize: old, oldRoot: oldRoot, newSize: new, newRoot: newRoot, path: path) else {
            throw MonitorError(
                .log,
                "\(signer.name)'s tree head of size \(new) is not an extension of its head of size \(old): the log was forked or rewritten; refused")
        }
    }

    private func read(from first: UInt64, to end: UInt64) async throws(MonitorError) -> [(index: UInt64, entry: LogEntry)] {
        let records = try await ask(.entries(first: first, end: min(end, first + LogQuery.maxEntries)))
        var entries: [(index: UInt64, entry: LogEntry)] = []
        for rr in records {
            guard case .txt(let strings) = rr.data else { continue }
            do {
                guard let (index, entry) = try LogEntry.parse(served: strings) else { continue }
                entries.append((index, entry))
            } catch {
                throw MonitorError(.log, "\(signer.name) served an unreadable entry: \(error)")
            }
        }
        return entries
    }

    private func ask(_ query: LogQuery) async throws(MonitorError) -> [ResourceRecord] {
        guard let name = query.name(signer: signer.name) else { throw MonitorError(.unreachable, "\(signer.name) is too long a name") }
        let reply: DNSMessage
        do {
            reply = try await client.queryOverTCP(DNSMessage.query(id: 0, name: name, type: .txt), server: server, timeout: timeout)
        } catch {
            throw MonitorError(.unreachable, "\(signer.name)'s log at \(server.endpointText): \((error as? DNSClientError)?.reason ?? "\(error)")")
        }
        guard reply.rcode == .noError else {
            throw MonitorError(.unreachable, "\(signer.name)'s log at \(server.endpointText) answered \(reply.rcode) for \(name)")
        }
        return reply.answers.filter { $0.name == name }
    }
}
