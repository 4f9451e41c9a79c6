import DNSTransport
import DNSWire
import Glibc
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// What a TCP client may hold of a server (`TCPLimits`), over real sockets: connections past the
/// process's limit are closed at once, a message trickled in byte by byte does not keep its
/// connection open, and a client that never reads its replies is not read either.
@Suite struct TCPLimitsTests {
    /// Answers every query with `size` bytes of TXT and counts what it did.
    final class Counting: DNSResponder {
        let answered = Atomic<Int>(0)
        let refusedConnections = Atomic<Int>(0)
        let size: Int
        init(size: Int = 64) { self.size = size }

        func respond(to request: DNSRequest) -> DNSReply {
            answered.add(1, ordering: .relaxed)
            var reply = request.message.response(rcode: .noError)
            let strings = Array(repeating: [UInt8](repeating: 0x61, count: 250), count: max(1, size / 251))
            reply.answers = [ResourceRecord(name: request.question.name, ttl: 60, data: .txt(strings))]
            return .reply(Reply(reply, udpLimit: 512))
        }

        func admissionTurnedAway(_ outcome: Admission.Outcome) {
            if case .tcpConnectionLimit = outcome { refusedConnections.add(1, ordering: .relaxed) }
        }
    }

    /// A plain blocking TCP socket, so the test controls every byte and every read.
    final class Connection {
        let fd: Int32
        init(to server: SocketAddress, receiveBuffer: Int32? = nil) throws {
            fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            if var size = receiveBuffer {
                setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
            }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(server.port!)).bigEndian
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else { throw POSIXFailure(call: "connect", errno: errno) }
        }
        deinit { Glibc.close(fd) }

        /// Writes all of `bytes`; false once the peer has closed.
        @discardableResult
        func send(_ bytes: [UInt8]) -> Bool {
            var offset = 0
            while offset < bytes.count {
                let sent = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if sent <= 0 { return false }
                offset += sent
            }
            return true
        }

        /// One length-prefixed message, or nil when the peer closed (or nothing came in time).
        func receive(within milliseconds: Int32 = 5000) -> [UInt8]? {
            guard let prefix = read(2, within: milliseconds) else { return nil }
            return read(Int(prefix[0]) << 8 | Int(prefix[1]), within: milliseconds)
        }

        /// Whether the peer closed the connection within the time given (EOF or reset).
        func closedByPeer(within milliseconds: Int32) -> Bool {
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, milliseconds) == 1 else { return false }
            var byte: UInt8 = 0
            return recv(fd, &byte, 1, Int32(MSG_PEEK)) <= 0
        }

        private func read(_ count: Int, within milliseconds: Int32) -> [UInt8]? {
            var out: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: count)
            while out.count < count {
                var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&poller, 1, milliseconds) == 1 else { return nil }
                let got = recv(fd, &buffer, count - out.count, 0)
                guard got > 0 else { return nil }
                out += buffer.prefix(got)
            }
            return out
        }
    }

    struct POSIXFailure: Error { let call: String; let errno: Int32 }

    static func framed(_ id: UInt16) throws -> [UInt8] {
        let wire = try DNSMessage.query(id: id, name: "h.xx.", type: .txt).wire()
        return [UInt8(wire.count >> 8), UInt8(wire.count & 0xFF)] + wire
    }

    /// Runs blocking socket work off the test's own threads.
    static func blocking<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await NIOThreadPool.singleton.runIfActive(work)
    }

    @Test func connectionsPastTheLimitAreClosedAtOnce() async throws {
        let responder = Counting()
        let budget = TCPConnectionBudget(limit: 2)
        let server = try await DNSServer.bind(
            host: "127.0.0.1", port: 0, group: MultiThreadedEventLoopGroup.singleton, responder: ResponderBox(responder),
            tcp: TCPLimits(connections: budget))
        let address = server.address
        // Expectations are checked here, not on the pool's thread, so they count for this test.
        let seen = try await Self.blocking { () throws -> [String: Bool] in
            var seen: [String: Bool] = [:]
            let first = try Connection(to: address)
            let second = try Connection(to: address)
            seen["first served"] = first.send(try Self.framed(1)) && first.receive() != nil
            seen["second served"] = second.send(try Self.framed(2)) && second.receive() != nil
            // The kernel completes the handshake; the server closes it as soon as it sees it.
            let third = try Connection(to: address)
            third.send(try Self.framed(3))
            seen["third closed"] = third.closedByPeer(within: 5000)
            seen["third unanswered"] = third.receive(within: 100) == nil
            // A slot comes back when a connection ends.
            Glibc.shutdown(first.fd, Int32(SHUT_RDWR))
            for _ in 0..<500 where budget.count >= 2 { usleep(10_000) }
            seen["slot given back"] = budget.count < 2
            let fourth = try Connection(to: address)
            seen["fourth served"] = fourth.send(try Self.framed(4)) && fourth.receive() != nil
            return seen
        }
        #expect(seen == ["first served": true, "second served": true, "third closed": true, "third unanswered": true,
                         "slot given back": true, "fourth served": true])
        #expect(responder.refusedConnections.load(ordering: .relaxed) == 1)
        #expect(responder.answered.load(ordering: .relaxed) == 3)
        await server.close()
    }

    @Test func aMessageTrickledInDoesNotKeepItsConnectionOpen() async throws {
        let server = try await DNSServer.bind(
            host: "127.0.0.1", port: 0, group: MultiThreadedEventLoopGroup.singleton, responder: ResponderBox(Counting()),
            tcp: TCPLimits(connections: TCPConnectionBudget(limit: 16), idleTimeout: .seconds(1)))
        let address = server.address
        let (answered, sent, total) = try await Self.blocking { () throws -> (Int, Int, Int) in
            // Whole messages more often than the time-out: every one is answered, past it.
            let steady = try Connection(to: address)
            var answered = 0
            for id in 0..<8 {
                if steady.send(try Self.framed(UInt16(id))), steady.receive() != nil { answered += 1 }
                usleep(300_000)
            }
            // One byte every 100 ms would take over 3 s for one message: closed after 1 s without one.
            let slow = try Connection(to: address)
            let message = try Self.framed(9)
            var sent = 0
            while sent < message.count, !slow.closedByPeer(within: 100) {
                slow.send([message[sent]])
                sent += 1
            }
            return (answered, sent, message.count)
        }
        #expect(answered == 8, "a connection that sends whole messages was closed")
        #expect(sent < total, "the whole trickled message went in before the connection was closed")
        await server.close()
    }

    @Test func aClientThatDoesNotReadIsNotReadEither() async throws {
        // 4 KB a reply: a few thousand fill the socket buffers; 20 000 would be 80 MB held here.
        let responder = Counting(size: 4000)
        let server = try await DNSServer.bind(
            host: "127.0.0.1", port: 0, group: MultiThreadedEventLoopGroup.singleton, responder: ResponderBox(responder),
            tcp: TCPLimits(connections: TCPConnectionBudget(limit: 16), idleTimeout: .seconds(30)))
        let address = server.address
        let queries = 20_000
        try await Self.blocking {
            let client = try Connection(to: address, receiveBuffer: 4096)
            var batch: [UInt8] = []
            for id in 0..<queries { batch += try Self.framed(UInt16(truncatingIfNeeded: id)) }
            // 700 KB of queries: they fit the socket buffers, so the write never waits on the server.
            guard client.send(batch) else { throw POSIXFailure(call: "send", errno: errno) }
            // Until the server stops answering (a second without progress) or has answered all.
            var last = -1
            while responder.answered.load(ordering: .relaxed) != last, last < queries {
                last = responder.answered.load(ordering: .relaxed)
                usleep(1_000_000)
            }
            _ = client
        }
        let answered = responder.answered.load(ordering: .relaxed)
        #expect(answered > 0 && answered < queries / 2, "answered \(answered) of \(queries) queries for a client that reads none")
        await server.close()
    }
}
