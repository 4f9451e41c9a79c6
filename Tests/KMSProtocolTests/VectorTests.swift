import DNSWire
import KMSCrypto
import Testing

@testable import KMSProtocol

/// The shared KMS1 vectors, reproduced byte for byte.
@Suite struct VectorTests {
    let vectors: Vectors
    init() throws { vectors = try Vectors.load() }

    @Test func keysDecodeToTheGivenFields() throws {
        let host = try PrivateKey(ed25519Seed: hex(vectors.host_ed25519_seed_hex))
        let signer = try PrivateKey(ed25519Seed: hex(vectors.signer_ed25519_seed_hex))
        let hostB = try PrivateKey(p256Scalar: hex(vectors.hostb_p256_scalar_hex))
        #expect(KeyField.encode(host.publicKey) == vectors.host_public_key_field)
        #expect(KeyField.encode(signer.publicKey) == vectors.signer_public_key_field)
        #expect(KeyField.encode(hostB.publicKey) == vectors.hostb_public_key_field)
        // And back: the fields decode to the same keys.
        #expect(try KeyField.decode(vectors.host_public_key_field) == host.publicKey)
        #expect(try KeyField.decode(vectors.hostb_public_key_field) == hostB.publicKey)
    }

    @Test func inquirySignatureInputAndSignature() throws {
        let v = vectors.inquiry
        let inquiry = Inquiry(
            target: "hostb.c.a.xx.", signer: "xx.", ip: IPAddress("127.0.0.11")!, from: "hosta.b.a.xx.",
            nonce: try Nonce(bytes: Array(0..<16)), time: 1_790_000_000)
        let record = try inquiry.record()
        #expect(record.owner.text == v.owner)
        #expect(record.unsignedStrings.map { String(decoding: $0, as: UTF8.self) } == v.strings_before_sig)
        #expect(hexString(record.signatureInput) == v.signature_input_hex)

        let host = try PrivateKey(ed25519Seed: hex(vectors.host_ed25519_seed_hex))
        let signed = try record.signed(by: host)
        let sigString = signed.strings.last.map { String(decoding: $0, as: UTF8.self) }
        #expect(sigString == v.sig_field)
        try signed.verifySignature(by: host.publicKey, signer: "hosta.b.a.xx.")
    }

    @Test func countersignatureInputAndSignature() throws {
        let v = vectors.countersignature
        let hostBKey = try KeyField.decode(v.key)
        let signer = try PrivateKey(ed25519Seed: hex(vectors.signer_ed25519_seed_hex))
        let input = Countersignature.signatureInput(
            target: try DomainName(canonical: v.target), key: hostBKey, signer: try DomainName(canonical: v.signer),
            notBefore: v.not_before, notAfter: v.not_after)
        #expect(hexString(input) == v.signature_input_hex)

        let issued = try Countersignature.issue(
            target: "hostb.c.a.xx.", key: hostBKey, signer: "xx.", signerKey: signer,
            notBefore: v.not_before, notAfter: v.not_after)
        #expect("countersig=" + Base64.encode(issued.signature) == v.countersig_field)
        try issued.verify(by: signer.publicKey)
    }

    @Test func p256SignaturesVerifyOverTheVectorInput() throws {
        // ECDSA is randomised, so only the input is pinned; a signature over it must verify.
        let hostB = try PrivateKey(p256Scalar: hex(vectors.hostb_p256_scalar_hex))
        let input = hex(vectors.countersignature.signature_input_hex)
        let signature = try hostB.signature(for: input)
        #expect(hostB.publicKey.isValidSignature(signature, for: input))
        #expect(signature.first == 0x30)  // DER ECDSA-Sig-Value
    }
}
