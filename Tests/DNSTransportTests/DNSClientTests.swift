@testable import DNSTransport
import DNSWire
import NIOCore
import NIOExtras
import NIOPosix
import Synchronization
import Testing

/// `DNSClient` over real sockets: each UDP query from a socket of its own (RFC 5452), and a
/// server that is down named at once.
@Suite struct DNSClientTests {
    /// Answers every query with one A record, and notes the source port each came from.
    final class PortRecorder: DNSResponder {
        let ports = Mutex<[Int]>([])
        func respond(to request: DNSRequest) -> DNSReply {
            ports.withLock { $0.append(request.client.port ?? -1) }
            return DNSClientTests.answer(request, a: [192, 0, 2, 1])
        }
    }

    /// `request` answered with one A record.
    static func answer(_ request: DNSRequest, a address: [UInt8]) -> DNSReply {
        var reply = request.message.response(rcode: .noError)
        reply.answers = [ResourceRecord(name: request.question.name, ttl: 60, data: .a(address))]
        return .reply(Reply(reply, answering: request.message))
    }

    /// An off-path forger must guess the source port as well as the ID: sixteen queries come
    /// from (almost always) sixteen ports; the shared socket `kms bench` asks for uses one.
    @Test func eachQueryComesFromAPortOfItsOwn() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let recorder = PortRecorder()
        let server = try await DNSServer.bind(host: "127.0.0.1", port: 0, group: group, responder: ResponderBox(recorder))
        let client = try await DNSClient.make(group: group)
        let shared = try await DNSClient.make(group: group, sockets: .shared)
        for id in 0..<16 {
            let reply = try await client.query(DNSMessage.query(id: UInt16(id), name: "h.xx.", type: .a), server: server.address, timeout: .seconds(10))
            #expect(reply.answers.first?.data == .a([192, 0, 2, 1]))
        }
        for id in 0..<4 {
            _ = try await shared.query(DNSMessage.query(id: UInt16(id), name: "h.xx.", type: .a), server: server.address, timeout: .seconds(10))
        }
        await client.close()
        await shared.close()
        await server.close()
        let ports = recorder.ports.withLock { $0 }
        #expect(ports.count == 20)
        // Random ephemeral ports: two of sixteen may meet (about 0.4 % of runs), not more.
        #expect(Set(ports.prefix(16)).count >= 14, "\(ports.prefix(16))")
        #expect(Set(ports.suffix(4)).count == 1, "the shared socket")
    }

    /// On the shared socket a reply frees its query's ID at once, for the next query to take,
    /// before the first query's task has finished. With IDs from a cycle of four and four
    /// queries always in flight, IDs meet all the time: every query must still get its reply.
    /// (A finished query used to remove whichever entry held its ID by then, and the query
    /// that had just taken the ID waited for ever: `kms bench` hung.)
    @Test(.timeLimit(.minutes(1))) func aQueryThatTakesAFreedIDIsStillAnswered() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let server = try await DNSServer.bind(host: "127.0.0.1", port: 0, group: group, responder: ResponderBox(PortRecorder()))
        final class Cycle: Sendable {
            let last = Mutex<UInt16>(0)
            func next() -> UInt16 {
                last.withLock { id in
                    id = (id + 1) % 4
                    return id
                }
            }
        }
        let cycle = Cycle()
        let client = try await DNSClient.make(group: group, sockets: .shared) { cycle.next() }
        let answered = try await withThrowingTaskGroup(of: Int.self) { workers in
            for _ in 0..<4 {
                workers.addTask {
                    var answered = 0
                    for _ in 0..<200 {
                        let reply = try await client.query(DNSMessage.query(id: 0, name: "h.xx.", type: .a), server: server.address, timeout: .seconds(10))
                        if reply.answers.first?.data == .a([192, 0, 2, 1]) { answered += 1 }
                    }
                    return answered
                }
            }
            return try await workers.reduce(0, +)
        }
        #expect(answered == 800)
        await client.close()
        await server.close()
    }

    /// A port nothing listens on: the kernel's ICMP port unreachable ends the query as
    /// `unreachable` ("connection refused"), not as a time-out after 20 s.
    @Test func aServerThatIsDownIsReportedAtOnce() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        // A port that was free a moment ago and is closed again.
        let probe = try await DatagramBootstrap(group: group).bind(host: "127.0.0.1", port: 0).get()
        let closed = probe.localAddress!
        try await probe.close()
        let client = try await DNSClient.make(group: group)
        // Closed before the checks, not by a task left behind (it would race the next test).
        var failure: (any Error)?
        do { _ = try await client.query(DNSMessage.query(id: 1, name: "h.xx.", type: .a), server: closed, timeout: .seconds(20)) } catch {
            failure = error
        }
        await client.close()
        let error = try #require(failure as? DNSClientError, "a reply from a closed port, or another error: \(String(describing: failure))")
        #expect(error.code == .unreachable, "\(error)")
        #expect(error.reason.contains("connection refused"), "\(error)")
    }

    /// Loses the first copy of every query it is sent (by ID) and answers the next.
    final class LosesFirstCopies: DNSResponder {
        let seen = Mutex<[UInt16]>([])
        func respond(to request: DNSRequest) -> DNSReply {
            let id = request.message.header.id
            let copies = seen.withLock { seen in
                seen.append(id)
                return seen.filter { $0 == id }.count
            }
            guard copies > 1 else { return .drop }
            return DNSClientTests.answer(request, a: [192, 0, 2, 7])
        }
    }

    /// A query with `resendAfter` is sent again, the same ID, when its first datagram is lost,
    /// and answered within its time-out; with one attempt the same loss is a time-out. On a
    /// socket of its own and on the shared one.
    @Test func aLostQueryIsSentAgainWithinItsTimeOut() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let loser = LosesFirstCopies()
        let server = try await DNSServer.bind(host: "127.0.0.1", port: 0, group: group, responder: ResponderBox(loser))
        for sockets in [DNSClient.Sockets.perQuery, .shared] {
            let client = try await DNSClient.make(group: group, sockets: sockets)
            let reply = try await client.query(
                DNSMessage.query(id: 0, name: "h.xx.", type: .a), server: server.address, timeout: .seconds(3), resendAfter: DNSClient.steps(of: .seconds(3), attempts: 3))
            #expect(reply.answers.first?.data == .a([192, 0, 2, 7]), "\(sockets)")
            let ids = loser.seen.withLock { seen in defer { seen = [] }; return seen }
            #expect(ids.count == 2 && ids[0] == ids[1], "\(sockets): the server saw \(ids)")
            do {
                _ = try await client.query(DNSMessage.query(id: 0, name: "h.xx.", type: .a), server: server.address, timeout: .milliseconds(400))
                Issue.record("\(sockets): a reply to a query whose only datagram was lost")
            } catch let error as DNSClientError {
                #expect(error.code == .timeout, "\(sockets): \(error)")
            }
            #expect(loser.seen.withLock { seen in defer { seen = [] }; return seen.count } == 1, "\(sockets)")
            await client.close()
        }
        await server.close()
    }

    /// A datagram that does not answer the query (another ID, another question) is ignored,
    /// and the reply that does is taken.
    @Test func onlyAReplyToTheQueryIsTaken() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let server = try await DatagramBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Confuser()) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let client = try await DNSClient.make(group: group)
        let reply = try await client.query(DNSMessage.query(id: 1, name: "h.xx.", type: .a), server: server.localAddress!, timeout: .seconds(10))
        #expect(reply.answers.first?.data == .a([192, 0, 2, 9]))
        await client.close()
        try await server.close()
    }

    /// A server that ignores the client's EDNS limit and sends a 6 000-byte datagram: more
    /// than a per-query socket reads (`largestUDPReply`). The client takes it as truncated and
    /// asks again over TCP, where the same server answers in full; with tcpFallback off it
    /// gets the TC=1 skeleton of its own query. A datagram of that length with another ID is
    /// ignored, as any datagram that does not answer the query.
    @Test(.timeLimit(.minutes(1))) func aDatagramLongerThanTheClientReadsIsAskedAgainOverTCP() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let tcp = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(ByteToMessageHandler(LengthFieldBasedFrameDecoder(lengthFieldBitLength: .twoBytes)))
                    try sync.addHandler(LengthFieldPrepender(lengthFieldBitLength: .twoBytes))
                    try sync.addHandler(OversizedOverTCP())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let udp = try await DatagramBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(OversizedOverUDP()) }
            }
            .bind(to: tcp.localAddress!).get()
        let sample = try #require(Oversized.reply(to: ByteBuffer(bytes: try DNSMessage.query(id: 1, name: "big.xx.", type: .a).wire())))
        #expect(try sample.wire().count > DNSClient.largestUDPReply, "the answer must be longer than the client reads")
        let client = try await DNSClient.make(group: group)
        let server = udp.localAddress!
        let reply = try await client.query(DNSMessage.query(id: 1, name: "big.xx.", type: .a), server: server, timeout: .seconds(10))
        #expect(!reply.header.isTruncated)
        #expect(reply.answers.count == Oversized.records, "the whole answer, over TCP")
        let cut = try await client.query(
            DNSMessage.query(id: 2, name: "big.xx.", type: .a), server: server, timeout: .seconds(10), tcpFallback: false)
        #expect(cut.header.isTruncated && cut.header.isResponse)
        #expect(cut.answers.count == 0, "the skeleton of the query, not the cut datagram")
        #expect(cut.question == Question(name: "big.xx.", type: .a))
        await client.close()
        try await udp.close()
        try await tcp.close()
    }

    /// The answer both servers give: `records` A records (about 6 000 bytes), whatever the
    /// query's EDNS limit.
    enum Oversized {
        static let records = 375
        static func reply(to bytes: ByteBuffer) -> DNSMessage? {
            guard let query = try? DNSMessage(wire: bytes.readableBytesView), let question = query.question else { return nil }
            var reply = query.response(rcode: .noError)
            reply.answers = (0..<records).map { index in
                ResourceRecord(name: question.name, ttl: 60, data: .a([10, 0, UInt8(index / 256), UInt8(index % 256)]))
            }
            return reply
        }
    }

    /// Over UDP: the oversized answer with another ID, then the oversized answer.
    final class OversizedOverUDP: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        typealias OutboundOut = AddressedEnvelope<ByteBuffer>
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            guard let reply = Oversized.reply(to: envelope.data) else { return }
            var stranger = reply
            stranger.header.id &+= 1
            for message in [stranger, reply] {
                let wire = try! message.wire()
                context.write(
                    wrapOutboundOut(AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: context.channel.allocator.buffer(bytes: wire))),
                    promise: nil)
            }
            context.flush()
        }
    }

    /// Over TCP (framed by the pipeline): the oversized answer, which TCP carries whole.
    final class OversizedOverTCP: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard let reply = Oversized.reply(to: unwrapInboundIn(data)) else { return }
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: try! reply.wire())), promise: nil)
        }
    }

    /// Sends three datagrams for each query: another ID, another question, then the reply.
    final class Confuser: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        typealias OutboundOut = AddressedEnvelope<ByteBuffer>
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            guard let query = try? DNSMessage(wire: envelope.data.readableBytesView), let question = query.question else { return }
            var wrongID = query.response(rcode: .noError)
            wrongID.header.id &+= 1
            wrongID.answers = [ResourceRecord(name: question.name, ttl: 60, data: .a([6, 6, 6, 6]))]
            var wrongQuestion = query.response(rcode: .noError)
            wrongQuestion.questions = [Question(name: "other.xx.", type: .a)]
            wrongQuestion.answers = [ResourceRecord(name: "other.xx.", ttl: 60, data: .a([6, 6, 6, 7]))]
            var right = query.response(rcode: .noError)
            right.answers = [ResourceRecord(name: question.name, ttl: 60, data: .a([192, 0, 2, 9]))]
            for message in [wrongID, wrongQuestion, right] {
                let bytes = try! message.wire()
                context.write(
                    wrapOutboundOut(AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: context.channel.allocator.buffer(bytes: bytes))),
                    promise: nil)
            }
            context.flush()
        }
    }
}
