import DNSTransport
import DNSWire
import NIOCore
import NIOPosix
import Testing

/// Replies that wait for the network are child tasks of their server: bounded, and finished
/// (not abandoned) when the server closes.
@Suite struct DeferredRepliesTests {
    /// Holds work until released.
    actor Gate {
        private var isOpen = false
        private var waiters: [CheckedContinuation<Void, Never>] = []
        func wait() async {
            if isOpen { return }
            await withCheckedContinuation { waiters.append($0) }
        }
        func open() {
            isOpen = true
            for waiter in waiters { waiter.resume() }
            waiters = []
        }
    }

    /// Answers every query later, once the gate opens; reports what happens on `events`.
    struct Waiting: DNSResponder {
        let gate: Gate
        let events: AsyncStream<String>.Continuation

        func respond(to request: DNSRequest) -> DNSReply {
            let query = request.message
            return .later { [gate, events] in
                events.yield("started \(query.header.id)")
                await gate.wait()
                return Reply(query.response(rcode: .noError), answering: query)
            }
        }

        func admissionTurnedAway(_ outcome: Admission.Outcome) {
            if case .overloaded = outcome { events.yield("overloaded") }
        }
    }

    func query(_ id: UInt16, _ client: DNSClient, _ server: DNSServer, timeout: TimeAmount = .seconds(10)) async throws -> DNSMessage {
        try await client.query(DNSMessage.query(id: id, name: "h.xx.", type: .a), server: server.address, timeout: timeout)
    }

    @Test func pastTheLimitAQueryIsDroppedAndTheOthersAreAnswered() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let gate = Gate()
        let (events, continuation) = AsyncStream.makeStream(of: String.self)
        let server = try await DNSServer.bind(
            host: "127.0.0.1", port: 0, group: group, responder: ResponderBox(Waiting(gate: gate, events: continuation)), deferredLimit: 2)
        let client = try await DNSClient.make(group: group)
        var iterator = events.makeAsyncIterator()
        async let first = query(1, client, server)
        async let second = query(2, client, server)
        // Both are under way before the third comes.
        for _ in 0..<2 { #expect(await iterator.next()?.hasPrefix("started") == true) }
        #expect(server.repliesWaiting == 2)
        async let third = query(3, client, server, timeout: .milliseconds(500))
        #expect(await iterator.next() == "overloaded")
        await gate.open()
        #expect(try await first.rcode == .noError)
        #expect(try await second.rcode == .noError)
        let dropped: DNSMessage?
        do { dropped = try await third } catch { dropped = nil }
        #expect(dropped == nil, "the query past the limit was answered")
        await server.close()
        await client.close()
    }

    @Test func closeLetsTheRepliesUnderWayGoOut() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let gate = Gate()
        let (events, continuation) = AsyncStream.makeStream(of: String.self)
        let server = try await DNSServer.bind(
            host: "127.0.0.1", port: 0, group: group, responder: ResponderBox(Waiting(gate: gate, events: continuation)))
        let client = try await DNSClient.make(group: group)
        var iterator = events.makeAsyncIterator()
        async let answer = query(7, client, server)
        #expect(await iterator.next()?.hasPrefix("started") == true)
        async let closed: Void = server.close()
        await gate.open()
        #expect(try await answer.rcode == .noError)
        await closed
        #expect(server.repliesWaiting == 0)
        await client.close()
    }
}
