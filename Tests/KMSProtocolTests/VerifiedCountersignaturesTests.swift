import DNSWire
import KMSCrypto
import Testing

@testable import KMSProtocol

/// The memory of verified countersignatures: only what verified, only for the key it verified
/// with, compared in full, and bounded.
@Suite struct VerifiedCountersignaturesTests {
    static func issued(by signer: PrivateKey, notAfter: UnixTime = 2_000_000_000) throws -> Countersignature {
        try Countersignature.issue(
            target: "hostb.c.a.xx.", key: try PrivateKey(generating: .ed25519).publicKey, signer: "xx.", signerKey: signer,
            notBefore: 1_000_000_000, notAfter: notAfter)
    }

    @Test func onlyWhatVerifiedIsRememberedAndOnlyForItsKey() throws {
        let memory = VerifiedCountersignatures(capacity: 16)
        let signer = try PrivateKey(generating: .ed25519)
        let stranger = try PrivateKey(generating: .ed25519)
        let good = try Self.issued(by: signer)
        try good.verify(by: signer.publicKey, remembering: memory)
        #expect(memory.contains(good, signerKey: signer.publicKey))
        #expect(!memory.contains(good, signerKey: stranger.publicKey))
        #expect(throws: ProtocolError.self) { try good.verify(by: stranger.publicKey, remembering: memory) }

        // One bit of the signature, or one second of the validity, is another countersignature.
        var bits = good.signature
        bits[0] ^= 1
        let flipped = Countersignature(
            target: good.target, key: good.key, signer: good.signer, notBefore: good.notBefore, notAfter: good.notAfter, signature: bits)
        let stretched = Countersignature(
            target: good.target, key: good.key, signer: good.signer, notBefore: good.notBefore, notAfter: good.notAfter + 1,
            signature: good.signature)
        for forged in [flipped, stretched] {
            #expect(!memory.contains(forged, signerKey: signer.publicKey))
            #expect(throws: ProtocolError.self) { try forged.verify(by: signer.publicKey, remembering: memory) }
        }
        #expect(memory.count == 1, "a failure is never remembered")
    }

    /// An entry stands for a verify: one planted for bytes that would not verify is taken
    /// without asking OpenSSL (which is why only `verify` itself may insert).
    @Test func aRememberedCountersignatureIsNotVerifiedAgain() throws {
        let memory = VerifiedCountersignatures(capacity: 16)
        let signer = try PrivateKey(generating: .ed25519)
        let good = try Self.issued(by: signer)
        let unsigned = Countersignature(
            target: good.target, key: good.key, signer: good.signer, notBefore: good.notBefore, notAfter: good.notAfter,
            signature: [UInt8](repeating: 0, count: 64))
        #expect(throws: ProtocolError.self) { try unsigned.verify(by: signer.publicKey, remembering: memory) }
        memory.insert(unsigned, signerKey: signer.publicKey)
        try unsigned.verify(by: signer.publicKey, remembering: memory)
    }

    /// Two generations of `capacity`: the memory never holds more, and an entry in use
    /// survives while others come and go.
    @Test func theMemoryIsBoundedAndKeepsWhatIsUsed() throws {
        let memory = VerifiedCountersignatures(capacity: 3)
        let signer = try PrivateKey(generating: .ed25519)
        let kept = try Self.issued(by: signer)
        try kept.verify(by: signer.publicKey, remembering: memory)
        for second in 0..<12 {
            let other = try Self.issued(by: signer, notAfter: 2_000_000_000 + UnixTime(second))
            try other.verify(by: signer.publicKey, remembering: memory)
            #expect(memory.count <= 6)
            #expect(memory.contains(kept, signerKey: signer.publicKey), "dropped after \(second + 1) others")
        }
        let first = try Self.issued(by: signer, notAfter: 1_999_999_999)
        try first.verify(by: signer.publicKey, remembering: memory)
        for second in 100..<106 {
            try Self.issued(by: signer, notAfter: 2_000_000_000 + UnixTime(second)).verify(by: signer.publicKey, remembering: memory)
        }
        #expect(!memory.contains(first, signerKey: signer.publicKey), "an entry nobody used outlived two generations")
    }
}
