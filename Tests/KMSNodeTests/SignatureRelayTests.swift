import DNSTransport
import DNSWire
import Foundation
import KMSCrypto
import KMSNode
import KMSProtocol
import KMSTestSupport
import Testing

/// A KMS that passes a child's sigreq up must accept what comes back by the same policy as an
/// inquiry's answer. It used to check only key and signer, and relayed an expired
/// countersignature as if it were good.
@Suite struct SignatureRelayTests {
    enum Bad: String, CaseIterable, Sendable { case expired, notYetValid, overAnotherKey, forgedSignature }

    /// Stands for the root `xx.`: answers every sigreq with a `kms1:countersig` signed with the
    /// root's real key (so the hop check passes) over the countersignature `make` builds.
    struct Root: DNSResponder {
        let key: PrivateKey
        let make: @Sendable (SignatureRequest, UnixTime) throws -> Countersignature

        func respond(to request: DNSRequest) -> DNSReply {
            guard let record = try? request.message.kmsRecord(), let sigreq = try? SignatureRequest(record) else { return .drop }
            let now = UnixTime(Date().timeIntervalSince1970)
            guard let countersignature = try? make(sigreq, now),
                let answer = try? KeyAnswer(kind: .countersignature, countersignature: countersignature, from: "xx.", nonce: sigreq.nonce, time: now)
                    .record().signed(by: key)
            else { return .drop }
            var message = request.message.response(rcode: .noError)
            message.answers = [answer.resourceRecord()]
            return .reply(Reply(message, answering: request.message))
        }
    }

    /// Every kind of bad countersignature, one after the other against one hierarchy.
    @Test func aBadCountersignatureFromTheParentIsNotRelayed() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            for bad in Bad.allCases {
                let rootKey = hierarchy.keys["xx."]!
                let stranger = try PrivateKey(generating: .ed25519)
                hierarchy.boxes["xx."]!.responder = Root(key: rootKey) { sigreq, now in
                    switch bad {
                    case .expired:
                        try Countersignature.issue(
                            target: sigreq.target, key: sigreq.key, signer: "xx.", signerKey: rootKey, notBefore: now - 7200, notAfter: now - 3600)
                    case .notYetValid:
                        try Countersignature.issue(
                            target: sigreq.target, key: sigreq.key, signer: "xx.", signerKey: rootKey, notBefore: now + 3600, notAfter: now + 7200)
                    case .overAnotherKey:
                        try Countersignature.issue(
                            target: sigreq.target, key: stranger.publicKey, signer: "xx.", signerKey: rootKey, notBefore: now - 60, notAfter: now + 3600)
                    case .forgedSignature:
                        try Countersignature.issue(
                            target: sigreq.target, key: sigreq.key, signer: "xx.", signerKey: stranger, notBefore: now - 60, notAfter: now + 3600)
                    }
                }
                // c.a.xx. asks its parent a.xx. for xx.'s countersignature over host B's key.
                let nonce = try Nonce.random()
                let sigreq = try SignatureRequest(
                    target: "hostb.c.a.xx.", key: hierarchy.keys["hostb.c.a.xx."]!.publicKey, signer: "xx.", ip: IPAddress("127.0.0.1")!,
                    from: "c.a.xx.", nonce: nonce, time: UnixTime(Date().timeIntervalSince1970)
                ).record().signed(by: hierarchy.keys["c.a.xx."]!)
                let reply = try await hierarchy.send(DNSMessage.kmsQuery(id: 0, target: "hostb.c.a.xx.", record: sigreq), to: "a.xx.")
                #expect(reply.rcode == .serverFailure, "\(bad): a.xx. relayed a bad countersignature: \(reply.presentation)")
                #expect(reply.answers.isEmpty)
                #expect(reply.extendedErrors.first?.text.contains("countersignature from xx. rejected") == true, "\(reply.extendedErrors)")
            }
        }
    }
}
