import KMSTestSupport
import DNSTransport
import DNSWire
import Foundation
import KMSClient
import KMSCrypto
import KMSNode
import KMSProtocol
import NIOCore
import Testing

/// The acceptance checks of the KMS hierarchy, over real sockets on 127.0.0.1.
@Suite struct HierarchyTests {
    @Test func hostAFetchesHostBCountersignedByTheRoot() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let result = try await hierarchy.fetcher("hosta.b.a.xx.").fetch("hostb.c.a.xx.", trace: true)
            #expect(result.key == hierarchy.keys["hostb.c.a.xx."]!.publicKey)
            #expect(result.countersignature.signer == "xx.")
            #expect(!result.fromCache)
            // The trace names every hop: home, a.xx., c.a.xx., and the signer xx.
            let trace = result.trace.joined(separator: "\n")
            for hop in ["b.a.xx. cache miss; forwarding to a.xx.", "a.xx. cache miss; forwarding to c.a.xx.", "c.a.xx.", "xx. countersigned hostb.c.a.xx."] {
                #expect(trace.contains(hop), "trace lacks '\(hop)':\n\(trace)")
            }
        }
    }

    @Test func withAnchorAXXTheCloserAnchorCountersigns() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let fetcher = try hierarchy.fetcher("hosta.b.a.xx.", anchors: ["xx.", "a.xx."])
            let result = try await fetcher.fetch("hostb.c.a.xx.")
            #expect(result.countersignature.signer == "a.xx.")
            try result.countersignature.verify(by: hierarchy.keys["a.xx."]!.publicKey)
            #expect(result.key == hierarchy.keys["hostb.c.a.xx."]!.publicKey)
        }
    }

    @Test func secondFetchIsServedFromTheHomeCacheWithKMS2Stopped() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let first = try await hierarchy.fetcher("hosta.b.a.xx.").fetch("hostb.c.a.xx.")
            await hierarchy.stop("c.a.xx.")
            // A fresh host store, so the question really goes to KMS1 (b.a.xx.).
            let second = try await hierarchy.fetcher("hosta.b.a.xx.").fetch("hostb.c.a.xx.", useCache: false, trace: true)
            #expect(second.key == first.key)
            #expect(second.trace.contains { $0.contains("b.a.xx. cache hit") })
        }
    }

    @Test func hostCacheAnswersWithoutTheNetwork() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let fetcher = try hierarchy.fetcher("hosta.b.a.xx.", cache: true)
            let first = try await fetcher.fetch("hostb.c.a.xx.")
            for zone in TestHierarchy.zones { await hierarchy.stop(zone) }
            let second = try await fetcher.fetch("hostb.c.a.xx.")
            #expect(second.fromCache)
            #expect(second.key == first.key)
        }
    }

    @Test func unknownNameIsUnresolved() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let fetcher = try hierarchy.fetcher("hosta.b.a.xx.")
            do {
                _ = try await fetcher.fetch("nobody.c.a.xx.")
                Issue.record("an unknown name gave a key")
            } catch let error as FetchError {
                #expect(error.kind == .notFound, "\(error)")
            }
        }
    }

    @Test func parentDownGivesServfailNamingItWithinTheTimeout() async throws {
        let hierarchy = try await TestHierarchy(upstreamTimeout: "500ms")
        try await afterwards({ await hierarchy.shutdown() }) {
            await hierarchy.stop("a.xx.")
            let fetcher = try hierarchy.fetcher("hosta.b.a.xx.")
            let started = ContinuousClock.now
            do {
                _ = try await fetcher.fetch("hostb.c.a.xx.")
                Issue.record("fetched a key with the parent down")
            } catch let error as FetchError {
                #expect(error.kind == .timeout, "\(error)")
                #expect(error.message.contains("SERVFAIL"), "\(error)")
                // Stopped: its port refuses (ICMP port unreachable), and the home KMS says so
                // at once rather than after its time-out.
                #expect(error.message.contains("a.xx. (127.0.0.1:\(hierarchy.endpoints["a.xx."]!.port)) unreachable: connection refused"), "\(error)")
            }
            // The home KMS gave up well before the host's time-out (5 s).
            #expect(ContinuousClock.now - started < .seconds(3))
        }
    }

    /// A KMS that never answers, as a hung process does (a stopped one would be refused at once).
    final class Silent: DNSResponder {
        func respond(to request: DNSRequest) -> DNSReply { .drop }
    }

    /// Equal time-outs everywhere and a silent root two hops behind c.a.xx.'s sigreq (c.a.xx.
    /// -> a.xx. -> xx.): the SERVFAIL must name xx., not a.xx., which did answer. Each request
    /// carries what its sender waits (`TimeBudget`), so every hop waits less than the one
    /// before it and the KMS next to the silent one speaks first. The margins between hops
    /// (a fifth of each budget) must cover each hop's own work in a fully parallel debug run:
    /// with 1500 ms the innermost was 192 ms and was overrun now and then.
    @Test func aSilentRootTwoHopsAwayIsTheOneNamed() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            hierarchy.boxes["xx."]!.responder = Silent()
            do {
                _ = try await hierarchy.fetcher("hosta.b.a.xx.").fetch("hostb.c.a.xx.")
                Issue.record("fetched a key countersigned by a silent root")
            } catch let error as FetchError {
                #expect(error.message.contains("xx. (127.0.0.1:\(hierarchy.endpoints["xx."]!.port)) did not answer"), "\(error)")
                #expect(!error.message.contains("a.xx. (127.0.0.1"), "\(error)")
            }
        }
    }

    @Test func registrationsSurviveARestart() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let key = try PrivateKey(generating: .p256).publicKey
            try hierarchy.nodes["c.a.xx."]!.register(name: "hostd.c.a.xx.", key: key, addresses: [IPAddress("127.0.0.14")!])
            try hierarchy.startNode("c.a.xx.")  // a new node on the same store, as after a restart
            #expect(hierarchy.nodes["c.a.xx."]!.registeredHosts.contains { $0.name == "hostd.c.a.xx." && $0.key == key })
            let result = try await hierarchy.fetcher("hosta.b.a.xx.").fetch("hostd.c.a.xx.")
            #expect(result.key == key)
        }
    }

    @Test func aRotatedKeyIsServedNeverTheOldOne() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let old = hierarchy.keys["hostb.c.a.xx."]!.publicKey
            // hostc lives in c.a.xx., the authoritative KMS for hostb: it asks c.a.xx. directly.
            let fetcher = try hierarchy.fetcher("hostc.c.a.xx.")
            #expect(try await fetcher.fetch("hostb.c.a.xx.").key == old)
            let rotated = try PrivateKey(generating: .ed25519).publicKey
            try hierarchy.nodes["c.a.xx."]!.register(name: "hostb.c.a.xx.", key: rotated, addresses: [IPAddress("127.0.0.12")!])
            for _ in 0..<3 {
                let result = try await fetcher.fetch("hostb.c.a.xx.")
                #expect(result.key == rotated)
                #expect(result.key != old)
            }
            // And the anonymous path of the authoritative KMS agrees.
            let reply = try await hierarchy.send(DNSMessage.query(id: 1, name: "hostb.c.a.xx.", type: .txt), to: "c.a.xx.")
            let answer = try KeyAnswer(try #require(try reply.kmsRecord()))
            #expect(answer.key == rotated)
        }
    }
}

/// Bad input: each gets a precise answer, and the server keeps serving.
@Suite struct BadInputTests {
    func inquiry(_ hierarchy: TestHierarchy, time: UnixTime? = nil, nonce: Nonce? = nil) throws -> KMSRecord {
        try Inquiry(
            target: "hostb.c.a.xx.", signer: "xx.", ip: IPAddress("127.0.0.11")!, from: "hosta.b.a.xx.",
            nonce: try nonce ?? Nonce.random(), time: time ?? UnixTime(Date().timeIntervalSince1970)
        ).record().signed(by: hierarchy.keys["hosta.b.a.xx."]!)
    }

    func refusal(_ reply: DNSMessage) -> String {
        "\(reply.rcode) \(reply.extendedErrors.map(\.text).joined(separator: "; "))"
    }

    @Test func tamperedInquiryIsRefusedWithTheReason() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let record = try inquiry(hierarchy)
            var strings = record.strings
            strings[1] = Array("target=hostc.c.a.xx.".utf8)
            let tampered = try #require(try KMSRecord(owner: record.owner, strings: strings))
            let query = DNSMessage.kmsQuery(id: 0, target: "hostc.c.a.xx.", record: tampered)
            let reply = try await hierarchy.send(query, to: "b.a.xx.")
            #expect(reply.rcode == .refused, "\(refusal(reply))")
            #expect(reply.extendedErrors.first?.text.contains("bad signature") == true, "\(refusal(reply))")
            #expect(try reply.wire().count <= query.wire().count)
        }
    }

    @Test func replayIsRefused() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let query = DNSMessage.kmsQuery(id: 0, target: "hostb.c.a.xx.", record: try inquiry(hierarchy))
            let first = try await hierarchy.send(query, to: "b.a.xx.")
            #expect(first.rcode == .noError, "\(refusal(first))")
            let second = try await hierarchy.send(query, to: "b.a.xx.")
            #expect(second.rcode == .refused)
            #expect(second.extendedErrors.first?.text.contains("replay") == true, "\(refusal(second))")
        }
    }

    /// A sender that reuses its nonce under a new time and a new signature is replaying too
    /// (PROTOCOL.md: a nonce seen within the window is refused, whoever signs it). This was
    /// accepted: the nonce memory was kept per second of `time`.
    @Test func aNonceReusedWithANewTimeIsRefused() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let nonce = try Nonce.random()
            let now = UnixTime(Date().timeIntervalSince1970)
            let first = try await hierarchy.send(
                DNSMessage.kmsQuery(id: 0, target: "hostb.c.a.xx.", record: try inquiry(hierarchy, time: now, nonce: nonce)), to: "b.a.xx.")
            #expect(first.rcode == .noError, "\(refusal(first))")
            for later in [now + 1, now + 60, now - 30] {
                let again = try await hierarchy.send(
                    DNSMessage.kmsQuery(id: 0, target: "hostb.c.a.xx.", record: try inquiry(hierarchy, time: later, nonce: nonce)), to: "b.a.xx.")
                #expect(again.rcode == .refused, "\(refusal(again))")
                #expect(again.extendedErrors.first?.text.contains("replay") == true, "\(refusal(again))")
            }
        }
    }

    @Test func skewedTimeIsRefused() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let now = UnixTime(Date().timeIntervalSince1970)
            for (time, word) in [(now - 1000, "past"), (now + 1000, "future")] {
                let reply = try await hierarchy.send(
                    DNSMessage.kmsQuery(id: 0, target: "hostb.c.a.xx.", record: try inquiry(hierarchy, time: time)), to: "b.a.xx.")
                #expect(reply.rcode == .refused)
                #expect(reply.extendedErrors.first?.text.contains("stale time") == true, "\(refusal(reply))")
                #expect(reply.extendedErrors.first?.text.contains(word) == true, "\(refusal(reply))")
            }
        }
    }

    @Test func unknownSenderIsRefused() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let stranger = try PrivateKey(generating: .ed25519)
            let record = try Inquiry(
                target: "hostb.c.a.xx.", signer: "xx.", ip: IPAddress("127.0.0.99")!, from: "mallory.b.a.xx.",
                nonce: try Nonce.random(), time: UnixTime(Date().timeIntervalSince1970)
            ).record().signed(by: stranger)
            let reply = try await hierarchy.send(DNSMessage.kmsQuery(id: 0, target: "hostb.c.a.xx.", record: record), to: "b.a.xx.")
            #expect(reply.rcode == .refused)
            #expect(reply.extendedErrors.first?.text.contains("unknown sender mallory.b.a.xx.") == true, "\(refusal(reply))")
        }
    }

    @Test func malformedPacketsGetFormerrAndTheServerKeepsServing() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let good = try DNSMessage.query(id: 77, name: "hosta.b.a.xx.", type: .a).wire()
            let server = hierarchy.servers["b.a.xx."]!.address
            // A truncated query: FORMERR echoing the ID.
            let truncated = try await RawUDP.exchange(Array(good.prefix(good.count - 12)), with: server)
            let formerr = try DNSMessage(wire: try #require(truncated))
            #expect(formerr.rcode == .formatError)
            #expect(formerr.header.id == 77)
            #expect(formerr.extendedErrors.first?.text.contains("malformed") == true)
            // A compression loop in the question.
            let loop: [UInt8] = [0, 78, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1]
            #expect(try DNSMessage(wire: try #require(try await RawUDP.exchange(loop, with: server))).rcode == .formatError)
            // Too short, and a response: silence.
            #expect(try await RawUDP.exchange([1, 2, 3], with: server, timeout: .milliseconds(300)) == nil)
            var response = DNSMessage.query(id: 79, name: "hosta.b.a.xx.", type: .a)
            response.header.isResponse = true
            #expect(try await RawUDP.exchange(try response.wire(), with: server, timeout: .milliseconds(300)) == nil)
            // A KMS record that does not parse: FORMERR with the reason.
            var bad = DNSMessage.query(id: 80, name: "hostb.c.a.xx.", type: .txt)
            bad.additionals = [ResourceRecord(name: "hosta.b.a.xx.", ttl: 0, data: .txt([Array("kms1:inquiry".utf8)]))]
            let badReply = try await hierarchy.send(bad, to: "b.a.xx.")
            #expect(badReply.rcode == .formatError)
            #expect(badReply.extendedErrors.first?.text.contains("missing sig=") == true, "\(refusal(badReply))")
            // And the server still answers.
            let answer = try await hierarchy.send(DNSMessage.query(id: 81, name: "hosta.b.a.xx.", type: .a), to: "b.a.xx.")
            #expect(answer.rcode == .noError)
            #expect(answer.answers.first?.data == .a([127, 0, 0, 11]))
        }
    }

    @Test func namesOutsideTheHierarchyAreRefused() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            var query = DNSMessage.query(id: 1, name: "example.com.", type: .a)
            query.header.recursionDesired = true
            let reply = try await hierarchy.send(query, to: "b.a.xx.")
            #expect(reply.rcode == .refused)
            #expect(reply.extendedErrors.first?.text.contains("not in the hierarchy") == true, "\(refusal(reply))")
        }
    }

    @Test func addressesResolveAcrossTheHierarchy() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            var query = DNSMessage.query(id: 1, name: "hostb.c.a.xx.", type: .a)
            query.header.recursionDesired = true
            let reply = try await hierarchy.send(query, to: "b.a.xx.")
            #expect(reply.rcode == .noError)
            #expect(reply.answers.first?.data == .a([127, 0, 0, 12]))
            let missing = try await hierarchy.send(DNSMessage.query(id: 2, name: "nobody.b.a.xx.", type: .a), to: "b.a.xx.")
            #expect(missing.rcode == .nameError)
            // A name above a registered host exists without records of its own (NODATA, not NXDOMAIN).
            try hierarchy.nodes["b.a.xx."]!.register(
                name: "deep.sub.b.a.xx.", key: hierarchy.keys["hosta.b.a.xx."]!.publicKey, addresses: [IPAddress("127.0.0.20")!])
            let between = try await hierarchy.send(DNSMessage.query(id: 3, name: "sub.b.a.xx.", type: .a), to: "b.a.xx.")
            #expect(between.rcode == .noError && between.answers.isEmpty)
            let apex = try await hierarchy.send(DNSMessage.query(id: 4, name: "b.a.xx.", type: .a), to: "b.a.xx.")
            #expect(apex.rcode == .noError && apex.answers.isEmpty)
            let beside = try await hierarchy.send(DNSMessage.query(id: 5, name: "other.sub.b.a.xx.", type: .a), to: "b.a.xx.")
            #expect(beside.rcode == .nameError)
        }
    }

    @Test func repeatedAddressQueriesAreAnsweredTheSameUntilARegistrationChangesThem() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let server = hierarchy.servers["b.a.xx."]!.address
            let query = try DNSMessage.query(id: 41, name: "hosta.b.a.xx.", type: .a).wire()
            var again = query
            again[0] = 0x12
            again[1] = 0x34
            let first = try DNSMessage(wire: try #require(try await RawUDP.exchange(query, with: server)))
            let second = try DNSMessage(wire: try #require(try await RawUDP.exchange(again, with: server)))
            #expect(first.header.id == 41 && second.header.id == 0x1234)
            #expect(first.answers == second.answers && first.answers.first?.data == .a([127, 0, 0, 11]))
            try hierarchy.nodes["b.a.xx."]!.register(
                name: "hosta.b.a.xx.", key: hierarchy.keys["hosta.b.a.xx."]!.publicKey, addresses: [IPAddress("127.0.0.99")!])
            let third = try DNSMessage(wire: try #require(try await RawUDP.exchange(again, with: server)))
            #expect(third.answers.first?.data == .a([127, 0, 0, 99]))
        }
    }

    @Test func anonymousQueriesCanBeRefused() async throws {
        let hierarchy = try await TestHierarchy(extra: ["b.a.xx.": "anonymous refuse"])
        try await afterwards({ await hierarchy.shutdown() }) {
            let refused = try await hierarchy.send(DNSMessage.query(id: 1, name: "hostb.c.a.xx.", type: .txt), to: "b.a.xx.")
            #expect(refused.rcode == .refused)
            #expect(refused.extendedErrors.first?.text.contains("anonymous") == true)
            var recursive = DNSMessage.query(id: 1, name: "hostb.c.a.xx.", type: .txt)
            recursive.header.recursionDesired = true  // as dig asks: a.xx. fetches below itself
            let answered = try await hierarchy.send(recursive, to: "a.xx.")
            #expect(answered.rcode == .noError)
            let record = try #require(try answered.kmsRecord())
            #expect(record.value("nonce") == "")
            #expect(try KeyAnswer(record).key == hierarchy.keys["hostb.c.a.xx."]!.publicKey)
        }
    }

    @Test func anonymousAnswersAreSignedAndReusedOnlyWithinTheirSecond() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            // Pairs of anonymous queries until one pair falls within one second (a pair takes
            // about a millisecond, so the first almost always does); that pair must get the
            // very same signed record. The test fails if no pair ever shares a second.
            var sameSecond: (KMSRecord, KMSRecord)?
            for id in stride(from: 1, through: 20, by: 2) where sameSecond == nil {
                var pair: [KMSRecord] = []
                for offset in 0...1 {
                    let query = DNSMessage.query(id: UInt16(id + offset), name: "hostb.c.a.xx.", type: .txt)
                    let record = try #require(try await hierarchy.send(query, to: "b.a.xx.").kmsRecord())
                    try record.verifySignature(by: hierarchy.keys["b.a.xx."]!.publicKey, signer: "b.a.xx.")
                    pair.append(record)
                }
                if pair[0].value("time") == pair[1].value("time") { sameSecond = (pair[0], pair[1]) }
            }
            let (first, second) = try #require(sameSecond, "no two anonymous answers fell within one second")
            #expect(first == second)
            // A signed inquiry is answered with its own nonce, never from the anonymous answers.
            let inquiry = try Inquiry(
                target: "hostb.c.a.xx.", signer: "xx.", ip: IPAddress("127.0.0.11")!, from: "hosta.b.a.xx.",
                nonce: try Nonce.random(), time: UnixTime(Date().timeIntervalSince1970)
            ).record().signed(by: hierarchy.keys["hosta.b.a.xx."]!)
            let reply = try await hierarchy.send(DNSMessage.kmsQuery(id: 0, target: "hostb.c.a.xx.", record: inquiry), to: "b.a.xx.")
            #expect(try reply.kmsRecord()?.value("nonce") == inquiry.value("nonce"))
        }
    }

    @Test func largeAnswersAreTruncatedOverUDPAndWholeOverTCP() async throws {
        // A traced answer (every hop adds a note) does not fit the 512 bytes this query advertises.
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            var query = DNSMessage.query(id: 5, name: "hostb.c.a.xx.", type: .txt, payloadSize: 512)
            query.header.recursionDesired = true
            query.edns?.options.append(HopTrace.option)
            let server = hierarchy.servers["a.xx."]!.address
            let udp = try await hierarchy.client.query(query, server: server, timeout: .seconds(5), tcpFallback: false)
            #expect(udp.header.isTruncated)
            #expect(udp.answers.isEmpty && udp.additionals.isEmpty)
            #expect(try udp.wire().count <= 512)
            #expect(udp.question == query.question)
            let tcp = try await hierarchy.client.queryOverTCP(query, server: server, timeout: .seconds(5))
            #expect(!tcp.header.isTruncated)
            #expect(try KeyAnswer(try #require(try tcp.kmsRecord())).key == hierarchy.keys["hostb.c.a.xx."]!.publicKey)
            #expect(try tcp.wire().count > 512)
        }
    }
}
