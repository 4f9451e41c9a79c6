import DNSTransport
import DNSWire
import Foundation
import KMSClient
import KMSCrypto
import KMSNode
import KMSProtocol
import KMSTestSupport
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// What a flood may cost a node: budgets checked before the verify, the signature or the
/// upstream fetch they guard (`Spending`), and what a real client sees meanwhile.
@Suite struct FloodLimitTests {
    /// A signed inquiry that names host A as its sender but is signed by another key.
    func impostorQuery(_ hierarchy: TestHierarchy, impostor: PrivateKey) throws -> [UInt8] {
        let record = try Inquiry(
            target: "hostb.c.a.xx.", signer: "xx.", ip: IPAddress("127.0.0.11")!, from: "hosta.b.a.xx.",
            nonce: try Nonce.random(), time: UnixTime(Date().timeIntervalSince1970)
        ).record().signed(by: impostor)
        return try DNSMessage.kmsQuery(id: UInt16.random(in: 1...UInt16.max), target: "hostb.c.a.xx.", record: record).wire()
    }

    /// Bad signatures from one source use up that source's verifies; past its failure budget it
    /// is told TC=1 without any verify. A real host of the same /24 still gets its key: its
    /// UDP query is also told TC=1, and over TCP (its own, proven address) it is served.
    @Test func badSignaturesCostTheirSourceItsVerifiesAndNobodyElseTheirKeys() async throws {
        let hierarchy = try await TestHierarchy(extra: ["b.a.xx.": "verify-failures 0.001 4\nrate-slip 1"])
        try await afterwards({ await hierarchy.shutdown() }) {
            let impostor = try PrivateKey(generating: .ed25519)
            let server = hierarchy.servers["b.a.xx."]!.address
            var replies: [DNSMessage] = []
            for _ in 0..<10 {
                let bytes = try await RawUDP.exchange(try impostorQuery(hierarchy, impostor: impostor), with: server, from: "127.0.0.9")
                replies.append(try DNSMessage(wire: try #require(bytes, "the node went silent")))
            }
            // The first four cost a verify each and say why they failed.
            for reply in replies.prefix(4) {
                #expect(reply.rcode == .refused)
                #expect(reply.extendedErrors.first?.infoCode == .dnssecBogus, "\(reply.extendedErrors)")
                #expect(!reply.header.isTruncated)
            }
            // The rest were not verified: TC=1, empty, "ask again over TCP".
            for reply in replies.dropFirst(4) {
                #expect(reply.header.isTruncated, "\(reply.rcode) \(reply.extendedErrors)")
                #expect(reply.rcode == .noError && reply.answers.isEmpty && reply.extendedErrors.isEmpty)
            }
            // While the prefix is in the penalty box, any UDP query from it goes to TCP, undecoded.
            let plain = try await RawUDP.exchange(
                try DNSMessage.query(id: 4242, name: "hosta.b.a.xx.", type: .a).wire(), with: server, from: "127.0.0.9")
            let sentAway = try DNSMessage(wire: try #require(plain))
            #expect(sentAway.header.isTruncated && sentAway.header.id == 4242 && sentAway.answers.isEmpty)
            #expect(sentAway.question == Question(name: "hosta.b.a.xx.", type: .a))
            // A cookie that proves its address takes a client of the same /24 past that
            // penalty: the address has a budget of its own, as after decoding. (The server
            // cookie comes over TCP, which admission never turns away.)
            var ask = DNSMessage.query(id: 4343, name: "hosta.b.a.xx.", type: .a)
            ask.edns?.options.append(EDNS.Option(code: 10, data: [9, 8, 7, 6, 5, 4, 3, 2]))
            let handshake = try await hierarchy.client.queryOverTCP(ask, server: server, timeout: .seconds(5))
            let cookie = try #require(handshake.edns?.options.first { $0.code == 10 }?.data, "no server cookie over TCP")
            ask.edns?.options.removeAll { $0.code == 10 }
            ask.edns?.options.append(EDNS.Option(code: 10, data: cookie))
            let proven = try DNSMessage(wire: try #require(try await RawUDP.exchange(try ask.wire(), with: server, from: "127.0.0.1")))
            #expect(!proven.header.isTruncated && proven.rcode == .noError && proven.answers.count == 1, "\(proven.rcode)")
            let stillAway = try DNSMessage(wire: try #require(try await RawUDP.exchange(try ask.wire(), with: server, from: "127.0.0.9")))
            #expect(stillAway.header.isTruncated, "that cookie proves 127.0.0.1, not the address that sent the bad signatures")
            // Host A writes from 127.0.0.1, in the flooded 127.0.0.0/24: its key arrives,
            // through TCP for the hop that is over budget.
            let fetched = try await hierarchy.fetcher("hosta.b.a.xx.").fetch("hostb.c.a.xx.")
            #expect(fetched.countersignature.key == hierarchy.keys["hostb.c.a.xx."]!.publicKey)
            // Over TCP the budget is the address's own, and a bad signature is still named.
            let overTCP = try await hierarchy.client.queryOverTCP(
                try DNSMessage(wire: try impostorQuery(hierarchy, impostor: impostor)), server: server, timeout: .seconds(5))
            #expect(overTCP.rcode == .refused && overTCP.extendedErrors.first?.infoCode == .dnssecBogus)
        }
    }

    /// A spoofed flood spread over many prefixes stays within each prefix's failure budget; the
    /// node's budget for unproven addresses catches it. Past it, no UDP client whose address
    /// nothing proved gets a verify: a real host's signed query is told TC=1 and is served over
    /// TCP. Unsigned queries are not affected.
    @Test func badSignaturesFromManyPrefixesSendEveryUnprovenClientToTCP() async throws {
        let hierarchy = try await TestHierarchy(extra: ["b.a.xx.": "unproven-failures 0.001 5\nrate-slip 1"])
        try await afterwards({ await hierarchy.shutdown() }) {
            let impostor = try PrivateKey(generating: .ed25519)
            let server = hierarchy.servers["b.a.xx."]!.address
            // A client at 127.0.41.1 learns its server cookie before the flood.
            var greeting = DNSMessage.query(id: 1, name: "hosta.b.a.xx.", type: .a)
            greeting.edns?.options.append(EDNS.Option(code: 10, data: [1, 2, 3, 4, 5, 6, 7, 8]))
            let greeted = try DNSMessage(wire: try #require(try await RawUDP.exchange(greeting.wire(), with: server, from: "127.0.41.1")))
            let cookie = try #require(greeted.edns?.options.first { $0.code == 10 }?.data)
            var replies: [DNSMessage] = []
            // One bad signature from each of 8 networks, far inside each network's own budget.
            for network in 10..<18 {
                let bytes = try await RawUDP.exchange(
                    try impostorQuery(hierarchy, impostor: impostor), with: server, from: "127.0.\(network).9")
                replies.append(try DNSMessage(wire: try #require(bytes, "the node went silent")))
            }
            for reply in replies.prefix(5) {
                #expect(reply.rcode == .refused && reply.extendedErrors.first?.infoCode == .dnssecBogus, "\(reply.extendedErrors)")
            }
            for reply in replies.dropFirst(5) {
                #expect(reply.header.isTruncated && reply.answers.isEmpty, "\(reply.rcode) \(reply.extendedErrors)")
            }
            // Host A's own, well-signed inquiry from a network that sent nothing: not verified
            // over UDP either, sent to TCP.
            func inquiry(from sender: DomainName, key: PrivateKey) throws -> DNSMessage {
                let record = try Inquiry(
                    target: "hostb.c.a.xx.", signer: "xx.", ip: IPAddress("127.0.0.11")!, from: sender,
                    nonce: try Nonce.random(), time: UnixTime(Date().timeIntervalSince1970)
                ).record().signed(by: key)
                return DNSMessage.kmsQuery(id: 777, target: "hostb.c.a.xx.", record: record)
            }
            let query = try inquiry(from: "hosta.b.a.xx.", key: hierarchy.keys["hosta.b.a.xx."]!)
            let overUDP = try DNSMessage(wire: try #require(try await RawUDP.exchange(query.wire(), with: server, from: "127.0.40.1")))
            #expect(overUDP.header.isTruncated && overUDP.answers.isEmpty && overUDP.header.id == 777)
            // It is turned away before it is read: an inquiry from a sender nobody registered,
            // refused by name once read, gets the same TC=1.
            let stranger = try inquiry(from: "nobody.b.a.xx.", key: impostor)
            let unread = try DNSMessage(wire: try #require(try await RawUDP.exchange(stranger.wire(), with: server, from: "127.0.40.1")))
            #expect(unread.header.isTruncated && unread.extendedErrors.isEmpty, "\(unread.rcode) \(unread.extendedErrors)")
            // The same query over TCP is verified and answered.
            let overTCP = try await hierarchy.client.queryOverTCP(query, server: server, timeout: .seconds(10))
            #expect(overTCP.rcode == .noError && !overTCP.answers.isEmpty, "\(overTCP.rcode) \(overTCP.extendedErrors)")
            // So is a UDP client whose cookie proves its address.
            var withCookie = try inquiry(from: "hosta.b.a.xx.", key: hierarchy.keys["hosta.b.a.xx."]!)
            withCookie.edns?.options.append(EDNS.Option(code: 10, data: cookie))
            let proven = try DNSMessage(wire: try #require(try await RawUDP.exchange(withCookie.wire(), with: server, from: "127.0.41.1")))
            #expect(!proven.header.isTruncated && proven.rcode == .noError && !proven.answers.isEmpty, "\(proven.rcode) \(proven.extendedErrors)")
            // A fetch follows the TC=1 and gets the key.
            let fetched = try await hierarchy.fetcher("hosta.b.a.xx.").fetch("hostb.c.a.xx.")
            #expect(fetched.countersignature.key == hierarchy.keys["hostb.c.a.xx."]!.publicKey)
            // A client sent to TCP learns its server cookie there; with it, its next signed
            // query is verified and answered over UDP, while unproven ones still go to TCP.
            let client = try await DNSClient.make(group: MultiThreadedEventLoopGroup.singleton)
            let first = try await client.query(
                try inquiry(from: "hosta.b.a.xx.", key: hierarchy.keys["hosta.b.a.xx."]!), server: server, timeout: .seconds(10), cookie: true)
            #expect(first.rcode == .noError && !first.header.isTruncated, "answered over TCP: \(first.rcode) \(first.extendedErrors)")
            let again = try await client.query(
                try inquiry(from: "hosta.b.a.xx.", key: hierarchy.keys["hosta.b.a.xx."]!), server: server, timeout: .seconds(10),
                tcpFallback: false, cookie: true)
            await client.close()
            #expect(!again.header.isTruncated && again.rcode == .noError && !again.answers.isEmpty, "\(again.rcode) \(again.extendedErrors)")
            // An unsigned query from a flooding network is answered over UDP as ever.
            let plain = try await RawUDP.exchange(
                try DNSMessage.query(id: 4243, name: "hosta.b.a.xx.", type: .a).wire(), with: server, from: "127.0.10.9")
            let answered = try DNSMessage(wire: try #require(plain))
            #expect(!answered.header.isTruncated && answered.rcode == .noError && answered.answers.count == 1)
        }
    }

    /// `count` replies to `query` sent to c.a.xx. over raw UDP, one after the other (a
    /// DNSClient would follow TC=1 over TCP by itself).
    func udpReplies(to query: DNSMessage, count: Int, _ hierarchy: TestHierarchy) async throws -> [DNSMessage] {
        var replies: [DNSMessage] = []
        for _ in 0..<count { replies.append(try await udpReply(to: query, from: "127.0.0.1", "c.a.xx.", hierarchy)) }
        return replies
    }

    /// Anonymous answers (each one signed) are limited per client prefix: over budget the
    /// UDP client is told TC=1, and over TCP it is answered.
    @Test func anonymousAnswersOverBudgetAreSentToTCP() async throws {
        // A burst of 3 that refills one answer in 1 000 s: the first answer (a cold fetch in a
        // debug build, under a loaded CI) may take seconds, and 0.5/s had refilled one by then.
        let hierarchy = try await TestHierarchy(extra: ["c.a.xx.": "anonymous-rate 0.001 3\nrate-slip 1"])
        try await afterwards({ await hierarchy.shutdown() }) {
            let query = DNSMessage.query(id: 5, name: "hostb.c.a.xx.", type: .txt)
            let replies = try await udpReplies(to: query, count: 5, hierarchy)
            #expect(replies.prefix(3).allSatisfy { $0.rcode == .noError && $0.answers.count == 1 && !$0.header.isTruncated })
            #expect(replies.dropFirst(3).allSatisfy { $0.header.isTruncated && $0.answers.isEmpty })
            let overTCP = try await hierarchy.client.queryOverTCP(query, server: hierarchy.servers["c.a.xx."]!.address, timeout: .seconds(5))
            #expect(overTCP.rcode == .noError && overTCP.answers.count == 1)
        }
    }

    /// Over budget, only one in `rate-slip` UDP queries gets its TC=1 (2 by default, as in
    /// BIND and NSD); the others get nothing, so a spoofed flood costs the node half the
    /// replies and its victims half the packets. 0 answers none. A query with a DNS cookie
    /// always gets its TC=1: its client may not ask twice. A query no budget turns away, sent
    /// after them all from the same socket, is answered: it shows which were dropped.
    @Test func overBudgetOnlyOneInRateSlipQueriesGetsItsTC() async throws {
        let hierarchy = try await TestHierarchy(extra: [
            "c.a.xx.": "anonymous-rate 0.001 1", "b.a.xx.": "anonymous-rate 0.001 1\nrate-slip 0",
        ])
        try await afterwards({ await hierarchy.shutdown() }) {
            for (zone, name, slip) in [("c.a.xx.", "hostb.c.a.xx.", 2), ("b.a.xx.", "hosta.b.a.xx.", 0)] as [(DomainName, DomainName, Int)] {
                let server = hierarchy.servers[zone]!.address
                let spend = try await udpReply(to: DNSMessage.query(id: 1, name: name, type: .txt), from: "127.0.71.1", zone, hierarchy)
                #expect(spend.rcode == .noError && spend.answers.count == 1 && !spend.header.isTruncated, "\(zone): \(spend.rcode)")
                var over = try (0..<6).map { try DNSMessage.query(id: UInt16(100 + $0), name: name, type: .txt).wire() }
                for id in UInt16(200)..<204 {
                    var withCookie = DNSMessage.query(id: id, name: name, type: .txt)
                    withCookie.edns?.options.append(EDNS.Option(code: 10, data: [1, 2, 3, 4, 5, 6, 7, UInt8(id & 0xFF)]))
                    over.append(try withCookie.wire())
                }
                let barrier = try DNSMessage.query(id: 999, name: name, type: .a).wire()
                let exchanged = try await RawUDP.exchange(over, thenBarrier: barrier, with: server, from: "127.0.71.1")
                let (replies, answered) = try #require(exchanged, "\(zone) went silent")
                let truncated = try replies.map { try DNSMessage(wire: $0) }
                #expect(truncated.allSatisfy { $0.header.isTruncated && $0.answers.isEmpty })
                let ids = truncated.map(\.header.id)
                #expect(ids.filter { (100..<106).contains($0) }.count == (slip == 0 ? 0 : 6 / slip), "\(zone), rate-slip \(slip): \(ids)")
                #expect(ids.filter { (200..<204).contains($0) } == [200, 201, 202, 203], "\(zone), rate-slip \(slip), with cookies: \(ids)")
                let address = try DNSMessage(wire: answered)
                #expect(address.rcode == .noError && address.answers.count == 1 && !address.header.isTruncated)
            }
        }
    }

    /// A UDP reply from `zone` to `query` sent from `source`.
    func udpReply(to query: DNSMessage, from source: String, _ zone: DomainName, _ hierarchy: TestHierarchy) async throws -> DNSMessage {
        let bytes = try await RawUDP.exchange(try query.wire(), with: hierarchy.servers[zone]!.address, from: source)
        return try DNSMessage(wire: try #require(bytes, "\(zone) went silent"))
    }

    /// Once a network is over its anonymous budget, its unsigned TXT queries are sent to TCP
    /// before they are decoded (RRL's slip), even for a name whose plain TXT costs nothing:
    /// a flood from it costs a walk over each packet. Other types from that network, and TXT
    /// from other networks, are answered as before.
    @Test func aNetworkOverItsAnonymousBudgetHasItsTXTQueriesSentToTCPUndecoded() async throws {
        let hierarchy = try await TestHierarchy(extra: ["c.a.xx.": "anonymous-rate 0.001 3\ntxt note.c.a.xx. \"hello\"\nrate-slip 1"])
        try await afterwards({ await hierarchy.shutdown() }) {
            let note = DNSMessage.query(id: 7, name: "note.c.a.xx.", type: .txt)
            // Before: the plain TXT costs no budget.
            let before = try await udpReply(to: note, from: "127.0.61.9", "c.a.xx.", hierarchy)
            #expect(before.rcode == .noError && before.answers.count == 1 && !before.header.isTruncated)
            let key = DNSMessage.query(id: 8, name: "hostb.c.a.xx.", type: .txt)
            var replies: [DNSMessage] = []
            for _ in 0..<4 { replies.append(try await udpReply(to: key, from: "127.0.61.1", "c.a.xx.", hierarchy)) }
            #expect(replies.prefix(3).allSatisfy { $0.rcode == .noError && $0.answers.count == 1 && !$0.header.isTruncated })
            #expect(replies[3].header.isTruncated && replies[3].answers.isEmpty)
            // Now the same network's plain TXT is sent to TCP too, with the query's ID.
            let after = try await udpReply(to: note, from: "127.0.61.9", "c.a.xx.", hierarchy)
            #expect(after.header.isTruncated && after.answers.isEmpty && after.header.id == 7, "\(after.rcode) \(after.answers)")
            // Its A queries, another network's TXT and the same TXT over TCP are answered.
            let address = try await udpReply(to: DNSMessage.query(id: 9, name: "hostb.c.a.xx.", type: .a), from: "127.0.61.9", "c.a.xx.", hierarchy)
            #expect(address.rcode == .noError && address.answers.count == 1 && !address.header.isTruncated)
            let elsewhere = try await udpReply(to: note, from: "127.0.62.1", "c.a.xx.", hierarchy)
            #expect(elsewhere.rcode == .noError && elsewhere.answers.count == 1 && !elsewhere.header.isTruncated)
            let overTCP = try await hierarchy.client.queryOverTCP(note, server: hierarchy.servers["c.a.xx."]!.address, timeout: .seconds(5))
            #expect(overTCP.rcode == .noError && overTCP.answers.count == 1)
        }
    }

    /// An anonymous query for a name in another zone costs a signature and a verify at every
    /// hop. From addresses nothing proved, the node starts only `unproven-fetches` of those,
    /// summed over every network (a spoofed random-name flood comes from many): past it they
    /// are sent to TCP. What needs no fetch (a name remembered as unresolved) is answered.
    @Test func anonymousFetchesForUnprovenAddressesHaveANodeBudget() async throws {
        let hierarchy = try await TestHierarchy(extra: ["b.a.xx.": "unproven-fetches 0.001 2\nrate-slip 1"])
        try await afterwards({ await hierarchy.shutdown() }) {
            func query(_ name: DomainName) -> DNSMessage { DNSMessage.query(id: 11, name: name, type: .txt) }
            for (name, source) in [("ghost1.c.a.xx.", "127.0.63.1"), ("ghost2.c.a.xx.", "127.0.64.1")] {
                let reply = try await udpReply(to: query(DomainName(name)), from: source, "b.a.xx.", hierarchy)
                #expect(reply.rcode == .nameError && !reply.header.isTruncated, "\(reply.rcode) \(reply.extendedErrors)")
            }
            // A third network: the node's budget is spent.
            let third = try await udpReply(to: query("ghost3.c.a.xx."), from: "127.0.65.1", "b.a.xx.", hierarchy)
            #expect(third.header.isTruncated && third.answers.isEmpty && third.authorities.isEmpty, "\(third.rcode)")
            // Remembered as unresolved: no fetch, answered.
            let remembered = try await udpReply(to: query("ghost1.c.a.xx."), from: "127.0.65.1", "b.a.xx.", hierarchy)
            #expect(remembered.rcode == .nameError && !remembered.header.isTruncated)
            // Over TCP the address is proven: fetched and answered.
            let overTCP = try await hierarchy.client.queryOverTCP(query("ghost3.c.a.xx."), server: hierarchy.servers["b.a.xx."]!.address, timeout: .seconds(10))
            #expect(overTCP.rcode == .nameError && !overTCP.header.isTruncated)
        }
    }

    /// Log answers (and static countersignatures) cost no crypto but are the largest plain
    /// answers: over UDP to an unproven address they spend the same budget, so a forged source
    /// gets TC=1 past it; over TCP a log monitor reads on, uncharged.
    @Test func largePlainAnswersToUnprovenAddressesSpendTheAnonymousBudget() async throws {
        let hierarchy = try await TestHierarchy(extra: ["c.a.xx.": "anonymous-rate 0.001 3\nrate-slip 1"])
        try await afterwards({ await hierarchy.shutdown() }) {
            let query = DNSMessage.query(id: 6, name: "_head._kms1log.c.a.xx.", type: .txt)
            let replies = try await udpReplies(to: query, count: 5, hierarchy)
            #expect(replies.prefix(3).allSatisfy { $0.rcode == .noError && $0.answers.count == 1 && !$0.header.isTruncated })
            #expect(replies.dropFirst(3).allSatisfy { $0.header.isTruncated && $0.answers.isEmpty })
            for _ in 0..<5 {
                let overTCP = try await hierarchy.client.queryOverTCP(query, server: hierarchy.servers["c.a.xx."]!.address, timeout: .seconds(5))
                #expect(overTCP.rcode == .noError && overTCP.answers.count == 1)
            }
        }
    }

    /// A parent that never answers, counting what it is asked.
    final class SilentParent: DNSResponder {
        let asked = Mutex<[DomainName]>([])
        func respond(to request: DNSRequest) -> DNSReply {
            asked.withLock { $0.append(request.question.name) }
            return .drop
        }
    }

    /// Twenty queries for the same missing key at once cost one upstream query, and all of
    /// them wait for it: joining a fetch under way is not a fetch, so a burst for one name
    /// never meets the client's cap. Twenty different names are twenty fetches: one client
    /// cannot have more than its share waiting, and the rest are answered SERVFAIL "Not Ready"
    /// at once, without a fetch.
    @Test func upstreamWorkIsSharedAndCapped() async throws {
        let hierarchy = try await TestHierarchy(upstreamTimeout: "600ms", extra: ["a.xx.": "upstream-inflight 100 3"])
        try await afterwards({ await hierarchy.shutdown() }) {
            let silent = SilentParent()
            hierarchy.boxes["xx."]!.responder = silent
            let server = hierarchy.servers["a.xx."]!.address
            // Twenty at once from twenty sockets of 127.0.0.1 (one client, its share 3).
            func burst(_ name: @escaping @Sendable (Int) -> DomainName) async -> [DNSMessage] {
                await withTaskGroup(of: DNSMessage?.self) { group in
                    for id in 0..<20 {
                        group.addTask {
                            let query = DNSMessage.query(id: UInt16(id), name: name(id), type: .txt)
                            return (try? await RawUDP.exchange(try query.wire(), with: server)).flatMap { $0.flatMap { try? DNSMessage(wire: $0) } }
                        }
                    }
                    var replies: [DNSMessage] = []
                    for await reply in group { if let reply { replies.append(reply) } }
                    return replies
                }
            }
            let same = await burst { _ in "ghost.d.xx." }
            #expect(same.count == 20)
            #expect(same.allSatisfy { $0.rcode == .serverFailure && $0.extendedErrors.first?.infoCode == .noReachableAuthority },
                "\(same.map { "\($0.rcode) \($0.extendedErrors)" })")
            // One fetch, asked again as a lost datagram would be (`KMS1Exchange.attempts` in
            // all, fewer if a late wake-up found the deadline gone); unshared fetches would
            // have asked many times as often.
            let asked = silent.asked.withLock { $0 }
            #expect((1...KMS1Exchange.attempts).contains(asked.count) && asked.allSatisfy { $0 == "ghost.d.xx." }, "identical fetches were not shared: \(asked)")
            #expect(hierarchy.nodes["a.xx."]!.upstreamFetchesInFlight == 0)

            let different = await burst { id in try! DomainName("ghost\(id).d.xx.") }
            #expect(different.count == 20)
            let busy = different.filter { $0.extendedErrors.first?.infoCode == .notReady }
            let waited = different.filter { $0.extendedErrors.first?.infoCode == .noReachableAuthority }
            #expect(busy.count == 17 && waited.count == 3, "\(different.map { "\($0.rcode) \($0.extendedErrors)" })")
            #expect(different.allSatisfy { $0.rcode == .serverFailure })
            // After they finished, the share is free again.
            let again = try await hierarchy.send(DNSMessage.query(id: 99, name: "other.d.xx.", type: .txt), to: "a.xx.")
            #expect(again.extendedErrors.first?.infoCode == .noReachableAuthority)
            #expect(hierarchy.nodes["a.xx."]!.upstreamFetchesInFlight == 0)
        }
    }

    /// The hop trace shows internal addresses and cache state: only loopback, the node's
    /// neighbours and `trace-allow` prefixes get it.
    @Test func theHopTraceGoesOnlyToAllowedAddresses() async throws {
        let hierarchy = try await TestHierarchy(extra: ["c.a.xx.": "trace-allow 198.51.100.0/24\ndefault-signer c.a.xx."])
        try await afterwards({ await hierarchy.shutdown() }) {
            // Issued once (which waits for the transparency log), so the calls below answer now.
            let first = try await hierarchy.send(DNSMessage.query(id: 2, name: "hostb.c.a.xx.", type: .txt), to: "c.a.xx.")
            #expect(first.rcode == .noError)
            var query = DNSMessage.query(id: 1, name: "hostb.c.a.xx.", type: .txt)
            query.edns = EDNS(options: [HopTrace.option])
            let bytes = ByteBuffer(bytes: try query.wire())
            func traced(from address: String) throws -> Bool {
                let request = DNSRequest(
                    message: query, question: query.question!, client: try SocketAddress(ipAddress: address, port: 4000),
                    transport: .udp, bytes: bytes)
                guard case .reply(let reply) = hierarchy.nodes["c.a.xx."]!.respond(to: request) else {
                    Issue.record("expected an answer now")
                    return false
                }
                #expect(reply.message.answers.count == 1)
                return !HopTrace.records(in: reply.message).isEmpty
            }
            #expect(try traced(from: "127.0.0.1"))
            #expect(try traced(from: "::1"))
            #expect(try traced(from: "198.51.100.7"))
            #expect(try !traced(from: "192.0.2.7"))
            #expect(try !traced(from: "2001:db8::7"))
        }
    }
}
