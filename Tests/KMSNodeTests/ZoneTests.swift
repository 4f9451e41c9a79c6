import DNSTransport
import DNSWire
import Foundation
import KMSCrypto
import KMSNode
import KMSProtocol
import KMSTestSupport
import NIOCore
import Testing

/// Each node's zone as DNS knows it: SOA and NS at the apex, referrals to child zones,
/// negative answers with the SOA (RFC 2308), BADVERS, class IN only, AA where authoritative.
@Suite struct ZoneTests {
    static func query(_ name: DomainName, _ type: RRType, recursive: Bool = false) -> DNSMessage {
        var message = DNSMessage.query(id: UInt16.random(in: 1...UInt16.max), name: name, type: type)
        message.header.recursionDesired = recursive
        return message
    }

    /// SOA RDATA: MNAME, RNAME, then SERIAL REFRESH RETRY EXPIRE MINIMUM.
    static func soaFields(_ record: ResourceRecord?) -> (mname: [UInt8], serial: UInt32, minimum: UInt32)? {
        guard let record, case .other(.soa, let rdata) = record.data, rdata.count >= 22 else { return nil }
        func number(at offset: Int) -> UInt32 { rdata[offset..<offset + 4].reduce(0) { $0 << 8 | UInt32($1) } }
        var index = 0
        while rdata[index] != 0 { index += 1 + Int(rdata[index]) }
        let mname = Array(rdata[...index])
        return (mname, number(at: rdata.count - 20), number(at: rdata.count - 4))
    }

    @Test func everyApexHasItsSOAAndNSWithGlue() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            for zone in TestHierarchy.zones {
                let soa = try await hierarchy.send(Self.query(zone, .soa), to: zone)
                #expect(soa.rcode == .noError && soa.header.isAuthoritative, "\(zone) SOA")
                let fields = try #require(Self.soaFields(soa.answers.first), "\(zone) SOA")
                #expect(fields.mname == (try DomainName("kms." + zone.text)).wire)
                #expect(fields.minimum == 60)
                let ns = try await hierarchy.send(Self.query(zone, .ns), to: zone)
                #expect(ns.header.isAuthoritative)
                #expect(ns.answers.map(\.data) == [.other(.ns, try DomainName("kms." + zone.text).wire)])
                #expect(ns.additionals.contains { $0.data == .a([127, 0, 0, 1]) }, "glue for kms.\(zone)")
                // The name server's own name answers with its address.
                let a = try await hierarchy.send(Self.query(try DomainName("kms." + zone.text), .a), to: zone)
                #expect(a.answers.map(\.data) == [.a([127, 0, 0, 1])] && a.header.isAuthoritative)
            }
        }
    }

    @Test func negativeAnswersCarryTheSOAAndTellNXDOMAINFromNODATA() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let key = try PrivateKey(generating: .ed25519).publicKey
            try hierarchy.nodes["c.a.xx."]!.register(name: "deep.ent.c.a.xx.", key: key, addresses: [IPAddress("127.0.0.30")!])
            let cases: [(DomainName, RRType, RCode)] = [
                ("nothing.c.a.xx.", .a, .nameError),  // no such name
                ("nothing.c.a.xx.", .txt, .nameError),
                ("hostb.c.a.xx.", .aaaa, .noError),  // a host without IPv6: NODATA
                ("hostb.c.a.xx.", RRType(rawValue: 15), .noError),  // MX of a host: NODATA
                ("c.a.xx.", .txt, .noError),  // the apex has no TXT: NODATA, never NXDOMAIN (RFC 8020)
                ("c.a.xx.", .a, .noError),
                ("ent.c.a.xx.", .txt, .noError),  // an empty non-terminal exists
                ("ent.c.a.xx.", .a, .noError),
            ]
            for (name, type, rcode) in cases {
                let reply = try await hierarchy.send(Self.query(name, type), to: "c.a.xx.")
                #expect(reply.rcode == rcode, "\(name) \(type): \(reply.rcode)")
                #expect(reply.header.isAuthoritative, "\(name) \(type)")
                #expect(reply.answers.isEmpty, "\(name) \(type)")
                let soa = try #require(reply.authorities.last, "\(name) \(type): no SOA")
                #expect(soa.name == "c.a.xx." && soa.type == .soa, "\(name) \(type)")
                #expect(soa.ttl == 60, "negative TTL is the SOA minimum")
            }
            // Removing the only host below an empty non-terminal makes it vanish too.
            try hierarchy.nodes["c.a.xx."]!.remove(name: "deep.ent.c.a.xx.")
            let vanished = try await hierarchy.send(Self.query("ent.c.a.xx.", .a), to: "c.a.xx.")
            #expect(vanished.rcode == .nameError, "\(vanished.rcode)")
            // An anonymous "unresolved" is also a negative answer: the signed record, then the SOA.
            let anonymous = try await hierarchy.send(Self.query("nothing.c.a.xx.", .txt), to: "c.a.xx.")
            guard case .txt(let strings)? = anonymous.authorities.first?.data else {
                Issue.record("no kms1:unresolved record first in the authority section")
                return
            }
            #expect(try KMSRecord(owner: "nothing.c.a.xx.", strings: strings)?.tag == .unresolved)
            #expect(anonymous.authorities.last?.type == .soa)
        }
    }

    @Test func aQuestionAboutAChildZoneWithoutRDGetsTheDelegation() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            for type in [RRType.a, .txt, RRType(rawValue: 15)] {
                let referral = try await hierarchy.send(Self.query("hostb.c.a.xx.", type), to: "a.xx.")
                #expect(referral.rcode == .noError && !referral.header.isAuthoritative && referral.answers.isEmpty, "\(type)")
                #expect(referral.authorities.map(\.name) == ["c.a.xx."], "\(type)")
                #expect(referral.authorities.map(\.data) == [.other(.ns, DomainName("kms.c.a.xx.").wire)], "\(type)")
                #expect(referral.additionals.map(\.name) == ["kms.c.a.xx."] && referral.additionals.first?.data == .a([127, 0, 0, 1]))
            }
            // Walking the referrals from the root, as dig +trace does (one address, the ports
            // of the test hierarchy): xx. -> a.xx. -> c.a.xx., which answers with AA.
            var zone: DomainName = "xx."
            var steps: [DomainName] = [zone]
            while true {
                let reply = try await hierarchy.send(Self.query("hostb.c.a.xx.", .a), to: zone)
                if let answer = reply.answers.first {
                    #expect(answer.data == .a([127, 0, 0, 12]) && reply.header.isAuthoritative)
                    break
                }
                zone = try #require(reply.authorities.first?.name, "no referral from \(zone)")
                steps.append(zone)
                #expect(steps.count <= 3)
            }
            #expect(steps == ["xx.", "a.xx.", "c.a.xx."])
            // DS for the child is the parent's to answer (validators ask it there): NODATA, AA,
            // with the parent's SOA, not a referral to the child.
            let ds = try await hierarchy.send(Self.query("c.a.xx.", RRType(rawValue: 43)), to: "a.xx.")
            #expect(ds.rcode == .noError && ds.header.isAuthoritative && ds.answers.isEmpty)
            #expect(ds.authorities.map(\.name) == ["a.xx."] && ds.authorities.first?.type == .soa)
            // With RD the node asks below itself, and the answer is not its own: AA clear.
            let fetched = try await hierarchy.send(Self.query("hostb.c.a.xx.", .a, recursive: true), to: "xx.")
            #expect(fetched.answers.map(\.data) == [.a([127, 0, 0, 12])] && !fetched.header.isAuthoritative)
        }
    }

    /// A stub behind a proxy asks every type (MX, HTTPS, SOA...), with RD: each node asks the
    /// neighbour towards the name, and the answer is the authoritative node's, AA clear.
    @Test func withRDEveryTypeIsAnsweredByTheZoneItBelongsTo() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let mx = RRType(rawValue: 15), https = RRType(rawValue: 65)
            // NODATA from c.a.xx. for a host it has, asked of a sibling's node (up, then down).
            let nodata = try await hierarchy.send(Self.query("hostb.c.a.xx.", mx, recursive: true), to: "b.a.xx.")
            #expect(nodata.rcode == .noError && nodata.answers.isEmpty && !nodata.header.isAuthoritative)
            #expect(nodata.authorities.map(\.name) == ["c.a.xx."] && nodata.authorities.first?.type == .soa)
            // NXDOMAIN from below, asked at the root.
            let missing = try await hierarchy.send(Self.query("nothing.c.a.xx.", https, recursive: true), to: "xx.")
            #expect(missing.rcode == .nameError && missing.authorities.first?.name == "c.a.xx.")
            // The root's SOA, asked at a leaf.
            let soa = try await hierarchy.send(Self.query("xx.", .soa, recursive: true), to: "c.a.xx.")
            #expect(soa.rcode == .noError && soa.answers.map(\.name) == ["xx."] && soa.answers.first?.type == .soa)
            // Without RD a name above is still refused, with the reason.
            let refused = try await hierarchy.send(Self.query("xx.", .soa), to: "c.a.xx.")
            #expect(refused.rcode == .refused && refused.extendedErrors.first?.infoCode == .notAuthoritative)
            // A name outside the hierarchy is never looked up: this is no open resolver.
            let outside = try await hierarchy.send(Self.query("example.com.", mx, recursive: true), to: "xx.")
            #expect(outside.rcode == .refused && outside.extendedErrors.first?.infoCode == .notAuthoritative)
        }
    }

    @Test func badVersionOtherClassesAndTheMovingSerial() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            var versioned = Self.query("hostb.c.a.xx.", .a)
            versioned.edns?.version = 1
            let badvers = try await hierarchy.send(versioned, to: "c.a.xx.")
            #expect(badvers.rcode == .badVersion)
            #expect(badvers.edns?.version == 0 && badvers.answers.isEmpty)
            // The DO bit is copied into every response (RFC 3225 section 3), errors included,
            // and is not set where the query did not set it.
            var dnssecOK = Self.query("hostb.c.a.xx.", .a)
            dnssecOK.edns?.dnssecOK = true
            let answered = try await hierarchy.send(dnssecOK, to: "c.a.xx.")
            #expect(answered.rcode == .noError && answered.edns?.dnssecOK == true)
            dnssecOK.edns?.version = 1
            #expect(try await hierarchy.send(dnssecOK, to: "c.a.xx.").edns?.dnssecOK == true)
            #expect(try await hierarchy.send(Self.query("hostb.c.a.xx.", .a), to: "c.a.xx.").edns?.dnssecOK == false)

            var chaos = Self.query("hostb.c.a.xx.", .a)
            chaos.questions[0].rrClass = RRClass(rawValue: 3)
            let refused = try await hierarchy.send(chaos, to: "c.a.xx.")
            #expect(refused.rcode == .refused && refused.extendedErrors.first?.infoCode == .notSupported)

            let before = try #require(Self.soaFields(try await hierarchy.send(Self.query("c.a.xx.", .soa), to: "c.a.xx.").answers.first))
            try hierarchy.nodes["c.a.xx."]!.register(
                name: "hostn.c.a.xx.", key: try PrivateKey(generating: .ed25519).publicKey, addresses: [IPAddress("127.0.0.31")!])
            let after = try #require(Self.soaFields(try await hierarchy.send(Self.query("c.a.xx.", .soa), to: "c.a.xx.").answers.first))
            #expect(after.serial > before.serial, "a registration moves the serial")
        }
    }

    /// `identity` names the server, as NSD and Knot do: in the NSID option (RFC 5001) when a
    /// query asks for it (admission's own errors included), and as CH TXT `id.server.` and
    /// `hostname.bind.`. A node without one answers neither.
    @Test func theIdentityIsTheNSIDAndTheAnswerToIdServer() async throws {
        let hierarchy = try await TestHierarchy(extra: ["c.a.xx.": "identity kms-c-1"])
        try await afterwards({ await hierarchy.shutdown() }) {
            func nsid(_ message: DNSMessage) -> String? {
                message.edns?.options.first { $0.code == 3 }.map { String(decoding: $0.data, as: UTF8.self) }
            }
            var asking = Self.query("hostb.c.a.xx.", .a)
            asking.edns?.options.append(EDNS.Option(code: 3, data: []))
            let answered = try await hierarchy.send(asking, to: "c.a.xx.")
            #expect(answered.rcode == .noError && nsid(answered) == "kms-c-1")
            #expect(nsid(try await hierarchy.send(Self.query("hostb.c.a.xx.", .a), to: "c.a.xx.")) == nil, "NSID not asked for")
            asking.edns?.version = 1
            #expect(nsid(try await hierarchy.send(asking, to: "c.a.xx.")) == "kms-c-1", "BADVERS")
            asking.edns?.version = 0
            #expect(nsid(try await hierarchy.send(asking, to: "b.a.xx.")) == nil, "a node without an identity")
            for name in ["id.server.", "hostname.bind."] as [DomainName] {
                var chaos = Self.query(name, .txt)
                chaos.questions[0].rrClass = .chaos
                let reply = try await hierarchy.send(chaos, to: "c.a.xx.")
                #expect(reply.rcode == .noError && reply.answers.first?.data == .txt([Array("kms-c-1".utf8)]) && reply.answers.first?.rrClass == .chaos)
                #expect(try await hierarchy.send(chaos, to: "b.a.xx.").rcode == .refused)
            }
            var version = Self.query("version.bind.", .txt)
            version.questions[0].rrClass = .chaos
            #expect(try await hierarchy.send(version, to: "c.a.xx.").rcode == .refused, "no version is told")
        }
    }
}
