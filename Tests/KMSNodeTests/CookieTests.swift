import DNSTransport
import DNSWire
import Foundation
import KMSNode
import KMSTestSupport
import Testing

/// DNS Cookies (RFC 7873): answered with a server cookie; a client that returns it has proven
/// its address, so a budget it exceeds refuses it by name instead of sending it to TCP.
@Suite struct CookieTests {
    static func query(cookie: [UInt8]) -> DNSMessage {
        var query = DNSMessage.query(id: UInt16.random(in: 1...UInt16.max), name: "hostb.c.a.xx.", type: .txt)
        query.edns?.options.append(EDNS.Option(code: 10, data: cookie))
        return query
    }

    static func udp(_ message: DNSMessage, _ hierarchy: TestHierarchy) async throws -> DNSMessage {
        // RawUDP: a DNSClient would follow TC=1 over TCP by itself.
        try DNSMessage(wire: try #require(try await RawUDP.exchange(try message.wire(), with: hierarchy.servers["c.a.xx."]!.address)))
    }

    @Test func aReturnedServerCookieProvesTheAddress() async throws {
        let hierarchy = try await TestHierarchy(extra: ["c.a.xx.": "anonymous-rate 0.001 1"])
        try await afterwards({ await hierarchy.shutdown() }) {
            let client: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8]
            let first = try await Self.udp(Self.query(cookie: client), hierarchy)
            let cookie = try #require(first.edns?.options.first { $0.code == 10 }?.data, "no COOKIE in the answer")
            #expect(cookie.count == 24 && Array(cookie.prefix(8)) == client && cookie[8] == 1, "client cookie echoed, server cookie version 1")
            #expect(first.answers.count == 1, "the one anonymous answer the budget allows")
            // Over budget without a valid server cookie: sent to TCP.
            let unproven = try await Self.udp(Self.query(cookie: client), hierarchy)
            #expect(unproven.header.isTruncated)
            var forged = cookie
            forged[23] ^= 1
            #expect(try await Self.udp(Self.query(cookie: forged), hierarchy).header.isTruncated, "a server cookie this node did not make proves nothing")
            // With the server cookie it gave: the address is proven, so its own budget (a fresh
            // bucket: an address, not the /24) answers it.
            let proven = try await Self.udp(Self.query(cookie: cookie), hierarchy)
            #expect(!proven.header.isTruncated && proven.answers.count == 1, "\(proven.rcode) \(proven.extendedErrors)")
            // Past that budget too: REFUSED with the reason, never TC=1.
            let refused = try await Self.udp(Self.query(cookie: cookie), hierarchy)
            #expect(refused.rcode == .refused && !refused.header.isTruncated && refused.extendedErrors.first?.text.contains("anonymous") == true)
        }
    }

    @Test func aMalformedCookieIsAFormatError() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let reply = try await Self.udp(Self.query(cookie: [1, 2, 3, 4, 5]), hierarchy)
            #expect(reply.rcode == .formatError && reply.extendedErrors.first?.text.contains("COOKIE") == true)
        }
    }

    /// A query with no question and only a COOKIE option (`dig +cookie +header-only`), as a
    /// client asks for a server cookie before it needs one (RFC 7873 section 5.4).
    static func cookieQuery(_ cookie: [UInt8]) -> DNSMessage {
        var query = DNSMessage(header: Header(id: UInt16.random(in: 1...UInt16.max)), edns: EDNS())
        query.edns?.options.append(EDNS.Option(code: 10, data: cookie))
        return query
    }

    @Test func aQueryForACookieAloneGetsOneThatProvesTheAddress() async throws {
        let hierarchy = try await TestHierarchy(extra: ["c.a.xx.": "anonymous-rate 0.001 1"])
        try await afterwards({ await hierarchy.shutdown() }) {
            let client: [UInt8] = [8, 7, 6, 5, 4, 3, 2, 1]
            let asked = Self.cookieQuery(client)
            let reply = try await Self.udp(asked, hierarchy)
            #expect(reply.header.id == asked.header.id && reply.rcode == .noError, "\(reply.rcode) \(reply.extendedErrors)")
            #expect(reply.questions.isEmpty && reply.answers.isEmpty && reply.authorities.isEmpty)
            let cookie = try #require(reply.edns?.options.first { $0.code == 10 }?.data, "no COOKIE in the reply")
            #expect(cookie.count == 24 && Array(cookie.prefix(8)) == client && cookie[8] == 1)
            // The cookie proves the address: past its budget the client is refused by name,
            // never sent to TCP (an unproven one is: aReturnedServerCookieProvesTheAddress).
            let first = try await Self.udp(Self.query(cookie: cookie), hierarchy)
            #expect(!first.header.isTruncated && first.answers.count == 1, "\(first.rcode) \(first.extendedErrors)")
            let second = try await Self.udp(Self.query(cookie: cookie), hierarchy)
            #expect(second.rcode == .refused && !second.header.isTruncated)
        }
    }

    @Test func aQueryForACookieAloneIsCheckedLikeAnyOther() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let malformed = try await Self.udp(Self.cookieQuery([1, 2, 3, 4, 5]), hierarchy)
            #expect(malformed.rcode == .formatError && malformed.extendedErrors.first?.text.contains("COOKIE") == true)
            // No question and no cookie: still the question count's FORMERR.
            let bare = try await Self.udp(DNSMessage(header: Header(id: 7), edns: EDNS()), hierarchy)
            #expect(bare.rcode == .formatError && bare.extendedErrors.first?.text.contains("one question") == true)
            // An opcode the node does not take is NOTIMP before the question count is looked at.
            var notify = Self.cookieQuery([1, 2, 3, 4, 5, 6, 7, 8])
            notify.header.opcode = OpCode(rawValue: 4)
            #expect(try await Self.udp(notify, hierarchy).rcode == .notImplemented)
            // An UPDATE, which a node takes (key rotation), with no zone and only a cookie is not
            // a cookie query either: the question count's FORMERR.
            var update = Self.cookieQuery([1, 2, 3, 4, 5, 6, 7, 8])
            update.header.opcode = OpCode(rawValue: 5)
            let updated = try await Self.udp(update, hierarchy)
            #expect(updated.rcode == .formatError && updated.extendedErrors.first?.text.contains("one question") == true, "\(updated.rcode)")
        }
    }

    /// The errors admission writes before the node sees a query (BADVERS, NOTIMP, FORMERR for
    /// the question count) carry a server cookie, as BIND's and Knot's do: a client that keeps
    /// its cookie state per server learns it from whatever reply comes.
    @Test func admissionErrorsCarryAServerCookie() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let client: [UInt8] = [9, 9, 8, 8, 7, 7, 6, 6]
            var versioned = Self.query(cookie: client)
            versioned.edns?.version = 1
            var notify = Self.query(cookie: client)
            notify.header.opcode = OpCode(rawValue: 4)
            var twoQuestions = Self.query(cookie: client)
            twoQuestions.questions.append(twoQuestions.questions[0])
            for (query, rcode) in [(versioned, RCode.badVersion), (notify, .notImplemented), (twoQuestions, .formatError)] {
                let reply = try await Self.udp(query, hierarchy)
                #expect(reply.rcode == rcode && !reply.extendedErrors.isEmpty, "\(reply.rcode)")
                let cookie = reply.edns?.options.first { $0.code == 10 }?.data
                #expect(cookie?.count == 24 && cookie.map { Array($0.prefix(8)) } == client && cookie?[8] == 1, "\(rcode): \(String(describing: cookie))")
            }
            // A malformed cookie gets none, whatever the error.
            var malformed = Self.query(cookie: [1, 2, 3])
            malformed.edns?.version = 1
            let reply = try await Self.udp(malformed, hierarchy)
            #expect(reply.rcode == .badVersion && reply.edns?.options.contains { $0.code == 10 } != true)
        }
    }
}
