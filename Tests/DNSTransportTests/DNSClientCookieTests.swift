import DNSTransport
import DNSWire
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// DNS Cookies on the client side (RFC 7873 section 5.1): what `DNSClient` sends when asked to.
@Suite struct DNSClientCookieTests {
    /// Answers every query, echoing its client cookie with a server cookie of its own, and
    /// keeps the COOKIE option data of each query it gets.
    final class CookieServer: DNSResponder {
        let seen = Mutex<[[UInt8]?]>([])
        let serverCookie: [UInt8] = Array(repeating: 0x5A, count: 16)

        func respond(to request: DNSRequest) -> DNSReply {
            let cookie = request.message.edns?.options.first { $0.code == 10 }?.data
            seen.withLock { $0.append(cookie) }
            var reply = request.message.response(rcode: .noError)
            if let cookie, var edns = reply.edns {
                edns.options = [EDNS.Option(code: 10, data: Array(cookie.prefix(8)) + serverCookie)]
                reply.edns = edns
            }
            return .reply(Reply(reply, answering: request.message))
        }
    }

    @Test func aClientCookieThenTheServerCookieItGave() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let responder = CookieServer()
        let server = try await DNSServer.bind(host: "127.0.0.1", port: 0, group: group, responder: ResponderBox(responder))
        let client = try await DNSClient.make(group: group)
        let query = DNSMessage.query(id: 1, name: "h.xx.", type: .txt)
        _ = try await client.query(query, server: server.address, timeout: .seconds(10), cookie: true)
        _ = try await client.query(query, server: server.address, timeout: .seconds(10), cookie: true)
        _ = try await client.query(query, server: server.address, timeout: .seconds(10))
        await client.close()
        await server.close()
        let seen = responder.seen.withLock { $0 }
        #expect(seen.count == 3)
        let first = try #require(seen[0], "the first query carries no cookie")
        #expect(first.count == 8, "a client cookie alone, before the server gave one")
        let second = try #require(seen[1], "the second query carries no cookie")
        #expect(second == first + responder.serverCookie, "the same client cookie and the server cookie it was given")
        #expect(seen[2] == nil, "no cookie unless asked for")
    }
}
