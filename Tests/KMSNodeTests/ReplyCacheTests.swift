import DNSTransport
import DNSWire
import KMSTestSupport
import NIOCore
import Testing

@testable import KMSNode

/// The reply cache answers every spelling of a name from one entry, with the query's own
/// spelling and ID, byte for byte what the node would have encoded; when full, CLOCK keeps the
/// entries asked for and replaces one that was not.
@Suite struct ReplyCacheTests {
    static func query(_ id: UInt16, _ name: DomainName, _ type: RRType = .a) throws -> (DNSMessage, ByteBuffer) {
        let query = DNSMessage.query(id: id, name: name, type: type)
        return (query, ByteBuffer(bytes: try query.wire()))
    }

    /// What the node encodes for an A query about a host with two addresses.
    static func encoded(_ query: DNSMessage) throws -> [UInt8] {
        var message = query.response(rcode: .noError)
        message.answers = [[10, 0, 0, 1], [10, 0, 0, 2]].map { ResourceRecord(name: query.question!.name, ttl: 300, data: .a($0)) }
        return try #require(ReplyEncoder.encode(Reply(message, answering: query), over: .udp))
    }

    @Test func everySpellingSharesOneEntryAndGetsItsOwnCase() throws {
        let cache = ReplyCache(capacity: 10)
        let (first, firstBytes) = try Self.query(1, "H1.c.A.xx.")
        cache.store(try Self.encoded(first), for: firstBytes, over: .udp)
        for (id, spelling) in [(77, "h1.C.a.XX."), (78, "h1.c.a.xx."), (79, "H1.C.A.XX.")] as [(UInt16, DomainName)] {
            let (asked, bytes) = try Self.query(id, spelling)
            let reply = try #require(cache.reply(to: bytes, over: .udp), "\(spelling) missed")
            #expect(reply == (try Self.encoded(asked)), "\(spelling): not what the node encodes for it")
        }
        #expect(cache.count == 1)
        // Other types, other names and the other transport are other entries.
        #expect(cache.reply(to: try Self.query(2, "h1.c.a.xx.", .aaaa).1, over: .udp) == nil)
        #expect(cache.reply(to: try Self.query(3, "h2.c.a.xx.").1, over: .udp) == nil)
        #expect(cache.reply(to: firstBytes, over: .tcp) == nil)
    }

    @Test func whenFullTheEntriesAskedForStay() throws {
        let cache = ReplyCache(capacity: 2)
        let names: [DomainName] = ["a.c.a.xx.", "b.c.a.xx.", "c.c.a.xx."]
        func store(_ index: Int) throws {
            let (query, bytes) = try Self.query(UInt16(index), names[index])
            cache.store(try Self.encoded(query), for: bytes, over: .udp)
        }
        func hit(_ index: Int) throws -> Bool { cache.reply(to: try Self.query(9, names[index]).1, over: .udp) != nil }
        try store(0)
        try store(1)
        #expect(try hit(0))
        // Full: b, not asked for since it came, makes room for c; a stays.
        try store(2)
        #expect(try hit(0), "an entry asked for was evicted")
        #expect(try !hit(1))
        #expect(try hit(2))
        #expect(cache.count == 2)
    }

    /// Over a node's real socket: the cached answers echo each query's random case (DNS 0x20).
    @Test func aNodeAnswersEverySpellingFromOneEntry() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let node = try #require(hierarchy.nodes["c.a.xx."])
            for (id, spelling) in [(1, "hostb.c.a.xx."), (2, "HostB.C.a.xx."), (3, "hOSTb.c.A.XX.")] as [(UInt16, DomainName)] {
                let query = DNSMessage.query(id: id, name: spelling, type: .a)
                let bytes = try #require(try await RawUDP.exchange(try query.wire(), with: hierarchy.servers["c.a.xx."]!.address))
                let reply = try DNSMessage(wire: bytes)
                #expect(reply.header.id == id && reply.questions.first?.name.wire == spelling.wire, "question not echoed as asked")
                #expect(reply.answers.map(\.name.wire) == reply.answers.map { _ in spelling.wire } && !reply.answers.isEmpty)
            }
            #expect(node.replies.count == 1, "three spellings, \(node.replies.count) entries")
        }
    }
}
