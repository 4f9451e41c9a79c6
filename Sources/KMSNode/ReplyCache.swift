import DNSTransport
import NIOCore
import Synchronization

/// Encoded replies to queries that will be answered the same way every time: own-zone A/AAAA
/// answers, on a node without a policy database (whose verdicts depend on the client).
///
/// The key is the transport and the query's bytes after its ID, with the question name in lower
/// case: `h1.c.a.xx.`, `H1.C.a.xx.` and every other spelling share one entry, as DNS names
/// compare without case (RFC 4343). A hit is the stored reply with the query's ID and the
/// query's own spelling written where the reply carries the question name (the question, and
/// each answer owned by that name), so it is byte for byte what the node would have encoded
/// for that query, and a resolver checking its random case (DNS 0x20) sees it echoed. Nothing
/// is decoded or encoded.
///
/// At `capacity` the CLOCK policy (second chance) picks what goes: an entry asked for since the
/// hand last passed it stays, the first one that was not is replaced. Every registration clears
/// the cache, so an answer never outlives the address table it came from.
final class ReplyCache: Sendable {
    private struct Entry {
        var reply: [UInt8]
        /// Where the reply carries the question name in the spelling of the query it was
        /// encoded for (always 12, the question).
        var namePositions: [Int]
    }

    private let table: Mutex<ClockCache<[UInt8], Entry>>
    let capacity: Int
    /// The question follows the 12-octet header (RFC 1035 section 4.1).
    private static let questionOffset = 12

    init(capacity: Int = 10_000) {
        self.capacity = capacity
        table = Mutex(ClockCache(capacity: capacity))
    }

    var count: Int { table.withLock { $0.count } }

    /// The key, and the length of the question name (from byte 12), or nil for bytes that do
    /// not start with one uncompressed name.
    static func key(_ query: ByteBuffer, _ transport: DNSTransportKind) -> (key: [UInt8], nameLength: Int)? {
        query.withUnsafeReadableBytes { bytes -> ([UInt8], Int)? in
            guard let end = nameEnd(bytes, from: Self.questionOffset, compressed: false) else { return nil }
            var key: [UInt8] = []
            key.reserveCapacity(bytes.count - 1)
            key.append(transport == .udp ? 0 : 1)
            key.append(contentsOf: bytes[2..<Self.questionOffset])
            // Length octets (at most 63) are never ASCII capitals.
            for byte in bytes[Self.questionOffset..<end] { key.append(byte >= 0x41 && byte <= 0x5A ? byte | 0x20 : byte) }
            key.append(contentsOf: bytes[end...])
            return (key, end - Self.questionOffset)
        }
    }

    /// The cached reply to `query`, with the query's ID and spelling, if there is one.
    func reply(to query: ByteBuffer, over transport: DNSTransportKind) -> [UInt8]? {
        guard capacity > 0, let (key, nameLength) = Self.key(query, transport) else { return nil }
        guard let entry = table.withLock({ $0.value(for: key) }) else { return nil }
        var reply = entry.reply
        query.withUnsafeReadableBytes { bytes in
            reply[0] = bytes[0]
            reply[1] = bytes[1]
            let name = bytes[Self.questionOffset..<Self.questionOffset + nameLength]
            for position in entry.namePositions { reply.replaceSubrange(position..<position + nameLength, with: name) }
        }
        return reply
    }

    func store(_ reply: [UInt8], for query: ByteBuffer, over transport: DNSTransportKind) {
        guard capacity > 0, let (key, nameLength) = Self.key(query, transport),
            let positions = Self.namePositions(in: reply, query: query, nameLength: nameLength)
        else { return }
        table.withLock { $0.set(Entry(reply: reply, namePositions: positions), for: key) }
    }

    func clear() { table.withLock { $0.removeAll() } }

    /// Where `reply` carries the query's question name as the query spelled it: the question,
    /// then each answer whose owner is that name written out. Nil if the reply is not laid out
    /// as this node encodes one (then it is not cached).
    private static func namePositions(in reply: [UInt8], query: ByteBuffer, nameLength: Int) -> [Int]? {
        query.withUnsafeReadableBytes { bytes -> [Int]? in
            let start = Self.questionOffset
            let name = bytes[start..<start + nameLength]
            guard reply.count >= start + nameLength + 4, reply[start..<start + nameLength].elementsEqual(name) else { return nil }
            var positions = [start]
            var offset = start + nameLength + 4
            let answers = Int(reply[6]) << 8 | Int(reply[7])
            for _ in 0..<answers {
                if offset + nameLength <= reply.count, reply[offset..<offset + nameLength].elementsEqual(name) { positions.append(offset) }
                guard let end = reply.withUnsafeBytes({ nameEnd($0, from: offset, compressed: true) }), end + 10 <= reply.count else {
                    return nil
                }
                offset = end + 10 + (Int(reply[end + 8]) << 8 | Int(reply[end + 9]))
                guard offset <= reply.count else { return nil }
            }
            return positions
        }
    }

    /// The offset just past the name at `start`: labels up to the root label, or (when
    /// `compressed`) up to a compression pointer.
    private static func nameEnd(_ bytes: UnsafeRawBufferPointer, from start: Int, compressed: Bool) -> Int? {
        var index = start
        while index < bytes.count, index - start <= 255 {
            let length = bytes[index]
            if length == 0 { return index + 1 }
            if length & 0xC0 == 0xC0 { return compressed && index + 2 <= bytes.count ? index + 2 : nil }
            guard length < 64 else { return nil }
            index += 1 + Int(length)
        }
        return nil
    }
}
