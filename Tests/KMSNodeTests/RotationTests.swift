import DNSTransport
import DNSWire
import Foundation
import KMSCrypto
import KMSNode
import KMSProtocol
import KMSTestSupport
import NIOCore
import Testing

/// A host rotating its own key with a DNS UPDATE (docs/PROTOCOL.md, "Rotation").
@Suite struct RotationTests {
    static func update(_ record: KMSRecord, zone: DomainName) -> DNSMessage {
        var message = DNSMessage.query(id: UInt16.random(in: 1...UInt16.max), name: zone, type: .soa)
        message.header.opcode = Rotation.updateOpcode
        message.authorities = [record.resourceRecord()]
        return message
    }

    static func rotation(_ hierarchy: TestHierarchy, to newKey: PrivateKey, signedBy current: PrivateKey? = nil) throws -> KMSRecord {
        try Rotation.make(
            target: "hosta.b.a.xx.", newKey: newKey, currentKey: current ?? hierarchy.keys["hosta.b.a.xx."]!, nonce: try Nonce.random(),
            time: UnixTime(Date().timeIntervalSince1970))
    }

    @Test func aHostRotatesItsOwnKeyAndEveryoneSeesTheNewOne() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let fetcherB = try hierarchy.fetcher("hostb.c.a.xx.")
            #expect(try await fetcherB.fetch("hosta.b.a.xx.").key == hierarchy.keys["hosta.b.a.xx."]!.publicKey)
            let newKey = try PrivateKey(generating: .ed25519)
            let record = try Self.rotation(hierarchy, to: newKey)
            let server = hierarchy.servers["b.a.xx."]!.address
            let reply = try await hierarchy.client.queryOverTCP(Self.update(record, zone: "b.a.xx."), server: server, timeout: .seconds(5))
            #expect(reply.rcode == .noError, "\(reply.rcode) \(reply.extendedErrors)")
            #expect(reply.header.opcode == Rotation.updateOpcode)
            // Durable and served at once by its KMS (other KMSs' caches: issue 11, revocation).
            try hierarchy.startNode("b.a.xx.")
            let answer = try await hierarchy.send(DNSMessage.query(id: 1, name: "hosta.b.a.xx.", type: .txt), to: "b.a.xx.")
            #expect(try KeyAnswer(try #require(try answer.kmsRecord())).key == newKey.publicKey)
            // The same UPDATE again is a replay.
            let replayed = try await hierarchy.client.queryOverTCP(Self.update(record, zone: "b.a.xx."), server: server, timeout: .seconds(5))
            #expect(replayed.rcode == .refused)
            // The old key can no longer authorise anything.
            let stale = try await hierarchy.client.queryOverTCP(
                Self.update(try Self.rotation(hierarchy, to: try PrivateKey(generating: .ed25519)), zone: "b.a.xx."), server: server,
                timeout: .seconds(5))
            #expect(stale.rcode == .refused && stale.extendedErrors.first?.text.contains("bad signature") == true, "\(stale.extendedErrors)")
        }
    }

    @Test func withoutProofOfPossessionOrPermissionNothingChanges() async throws {
        let hierarchy = try await TestHierarchy(extra: ["c.a.xx.": "self-rotation refuse"])
        try await afterwards({ await hierarchy.shutdown() }) {
            let server = hierarchy.servers["b.a.xx."]!.address
            // newsig= by another key than the one named in key=.
            let claimed = try PrivateKey(generating: .ed25519)
            let good = try Self.rotation(hierarchy, to: claimed)
            let forgedProof = Base64.encode(try PrivateKey(generating: .ed25519).signature(for: Array("not the input".utf8)))
            let forged = try KMSRecord(owner: "hosta.b.a.xx.", tag: .rotate, values: Array(good.values.dropLast()) + [forgedProof])
                .signed(by: hierarchy.keys["hosta.b.a.xx."]!)
            let noProof = try await hierarchy.client.queryOverTCP(Self.update(forged, zone: "b.a.xx."), server: server, timeout: .seconds(5))
            #expect(noProof.rcode == .refused && noProof.extendedErrors.first?.text.contains("proof of possession") == true)
            // The wrong zone: NOTAUTH.
            let elsewhere = try await hierarchy.client.queryOverTCP(
                Self.update(try Self.rotation(hierarchy, to: claimed), zone: "c.a.xx."), server: server, timeout: .seconds(5))
            #expect(elsewhere.rcode == RCode(rawValue: 9))
            // A zone whose operator keeps key changes to itself.
            let hostB = try Rotation.make(
                target: "hostb.c.a.xx.", newKey: claimed, currentKey: hierarchy.keys["hostb.c.a.xx."]!, nonce: try Nonce.random(),
                time: UnixTime(Date().timeIntervalSince1970))
            let refused = try await hierarchy.client.queryOverTCP(
                Self.update(hostB, zone: "c.a.xx."), server: hierarchy.servers["c.a.xx."]!.address, timeout: .seconds(5))
            #expect(refused.rcode == .refused && refused.extendedErrors.first?.text.contains("ask its operator") == true)
            // None of it changed a key.
            #expect(try await hierarchy.fetcher("hostb.c.a.xx.").fetch("hosta.b.a.xx.").key == hierarchy.keys["hosta.b.a.xx."]!.publicKey)
            #expect(try await hierarchy.fetcher("hosta.b.a.xx.").fetch("hostb.c.a.xx.").key == hierarchy.keys["hostb.c.a.xx."]!.publicKey)
        }
    }
}
