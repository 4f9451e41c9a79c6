public import DNSWire
public import KMSCrypto

/// S(T(signer), [D(B), S(B), D(signer), validity]): the signer KMS vouching that `key` is the
/// key of `target` between `notBefore` and `notAfter` (PROTOCOL.md section 3).
///
/// It covers only the record `target` would have with the strings `kms1:countersig`,
/// `target=`, `key=`, `signer=`, `not-before=`, `not-after=`, so any KMS can cache and hand it
/// on and any host that trusts `signer` can check it.
public struct Countersignature: Hashable, Sendable {
    public let target: DomainName
    public let key: PublicKey
    public let signer: DomainName
    public let notBefore: UnixTime
    public let notAfter: UnixTime
    public let signature: [UInt8]

    public init(
        target: DomainName, key: PublicKey, signer: DomainName, notBefore: UnixTime, notAfter: UnixTime,
        signature: [UInt8]
    ) {
        self.target = target
        self.key = key
        self.signer = signer
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.signature = signature
    }

    /// Issues a countersignature with the signer's private key.
    public static func issue(
        target: DomainName, key: PublicKey, signer: DomainName, signerKey: PrivateKey,
        notBefore: UnixTime, notAfter: UnixTime
    ) throws(CryptoError) -> Countersignature {
        let input = signatureInput(
            target: target, key: key, signer: signer, notBefore: notBefore, notAfter: notAfter)
        return Countersignature(
            target: target, key: key, signer: signer, notBefore: notBefore, notAfter: notAfter,
            signature: try signerKey.signature(for: input))
    }

    public var signatureInput: [UInt8] {
        Self.signatureInput(target: target, key: key, signer: signer, notBefore: notBefore, notAfter: notAfter)
    }

    public static func signatureInput(
        target: DomainName, key: PublicKey, signer: DomainName, notBefore: UnixTime, notAfter: UnixTime
    ) -> [UInt8] {
        let strings = [
            RecordTag.countersignature.rawValue, "target=\(target.text)", "key=\(KeyField.encode(key))",
            "signer=\(signer.text)", "not-before=\(notBefore)", "not-after=\(notAfter)",
        ].map { Array($0.utf8) }
        return KMSRecord.signatureInput(owner: target, strings: strings)
    }

    /// Hashed by the last eight bytes of its signature (unpredictable in Ed25519 and ECDSA
    /// alike; an ECDSA signature's first bytes are DER framing); equality is still every field.
    /// Hashing every field (two names, a key, two times, a signature: about 150 bytes through
    /// SipHash) for each look-up in the anonymous answers' per-second cache was about 2 % of an
    /// anonymous answer; the verified countersignatures (`VerifiedCountersignatures`) hash the
    /// same way.
    public func hash(into hasher: inout Hasher) {
        signature.suffix(8).withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    /// Throws unless `signerKey` made this countersignature. The same bytes verified before
    /// with the same key are not verified again (`VerifiedCountersignatures`).
    public func verify(by signerKey: PublicKey) throws(ProtocolError) {
        try verify(by: signerKey, remembering: .shared)
    }

    func verify(by signerKey: PublicKey, remembering verified: VerifiedCountersignatures) throws(ProtocolError) {
        if verified.contains(self, signerKey: signerKey) { return }
        guard signerKey.isValidSignature(signature, for: signatureInput) else {
            throw ProtocolError(
                .badCountersignature, "the countersignature over \(target) is not \(signer)'s", field: "countersig")
        }
        verified.insert(self, signerKey: signerKey)
    }

    /// Whether half the validity has passed at `now`: the time to renew it.
    public func isPastHalfLife(at now: UnixTime) -> Bool {
        Self.isPastHalfLife(notBefore: notBefore, notAfter: notAfter, at: now)
    }

    /// The same, for a validity kept without its countersignature (a published record).
    public static func isPastHalfLife(notBefore: UnixTime, notAfter: UnixTime, at now: UnixTime) -> Bool {
        now >= notBefore + (notAfter - notBefore) / 2
    }

    /// Throws unless `now` lies within [notBefore, notAfter].
    public func checkValidity(at now: UnixTime) throws(ProtocolError) {
        if now < notBefore {
            throw ProtocolError(.notYetValid, "valid from \(notBefore), now is \(now)", field: "not-before")
        }
        if now > notAfter {
            throw ProtocolError(.expired, "valid until \(notAfter), now is \(now)", field: "not-after")
        }
    }
}
