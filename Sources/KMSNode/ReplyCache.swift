import DNSTransport
import NIOCore
import Synchronization

/// Encoded replies to queries that will be answered the same way every time: own-zone A/AAAA
/// answers, on a node without a policy database (whose verdicts depend on the client).
///
/// The key is the query's bytes after its ID, and the transport; a byte-identical query gets a
/// byte-identical reply with its own ID, without decoding or encoding anything. Every
/// registration clears the cache, so an answer never outlives the address table it came from.
final class ReplyCache: Sendable {
    private let entries = Mutex<[[UInt8]: [UInt8]]>([:])
    let capacity: Int

    init(capacity: Int = 10_000) { self.capacity = capacity }

    static func key(_ query: ByteBuffer, _ transport: DNSTransportKind) -> [UInt8] {
        [transport == .udp ? 0 : 1] + query.readableBytesView.dropFirst(2)
    }

    /// The cached reply to `query`, with the query's ID, if there is one.
    func reply(to query: ByteBuffer, over transport: DNSTransportKind) -> [UInt8]? {
        guard capacity > 0, var reply = entries.withLock({ $0[Self.key(query, transport)] }),
            let high = query.getInteger(at: query.readerIndex, as: UInt8.self),
            let low = query.getInteger(at: query.readerIndex + 1, as: UInt8.self)
        else { return nil }
        reply[0] = high
        reply[1] = low
        return reply
    }

    func store(_ reply: [UInt8], for query: ByteBuffer, over transport: DNSTransportKind) {
        guard capacity > 0 else { return }
        entries.withLock { table in
            if table.count >= capacity { table.removeAll(keepingCapacity: true) }
            table[Self.key(query, transport)] = reply
        }
    }

    func clear() { entries.withLock { $0.removeAll() } }
}
