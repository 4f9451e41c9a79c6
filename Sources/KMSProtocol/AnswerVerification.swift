public import DNSWire
public import KMSCrypto

/// What a requester checks before it accepts a key (PROTOCOL.md section 5, step 4). Each
/// check names its own failure; anything that fails is discarded, never used.
public struct AnswerVerification: Sendable {
    /// The KMS the request went to, whose signature must be on the reply.
    public var responder: DomainName
    public var responderKey: PublicKey
    /// The trust anchor chosen as countersigner.
    public var signer: DomainName
    public var signerKey: PublicKey
    public var target: DomainName
    public var nonce: Nonce

    public init(
        responder: DomainName, responderKey: PublicKey, signer: DomainName, signerKey: PublicKey,
        target: DomainName, nonce: Nonce
    ) {
        self.responder = responder
        self.responderKey = responderKey
        self.signer = signer
        self.signerKey = signerKey
        self.target = target
        self.nonce = nonce
    }

    /// Checks a `kms1:answer` or `kms1:countersig` record and returns the key it vouches for.
    public func verify(_ record: KMSRecord, now: UnixTime) throws(ProtocolError) -> KeyAnswer {
        let answer = try KeyAnswer(record)
        guard answer.from == responder else {
            throw ProtocolError(.responderMismatch, "answered by \(answer.from), asked \(responder)", field: "from")
        }
        try record.verifySignature(by: responderKey, signer: responder)
        guard answer.nonce == nonce else {
            throw ProtocolError(.nonceMismatch, "the reply does not echo the request's nonce", field: "nonce")
        }
        guard answer.target == target else {
            throw ProtocolError(.targetMismatch, "answer is for \(answer.target), asked \(target)", field: "target")
        }
        guard answer.signer == signer else {
            throw ProtocolError(.signerMismatch, "countersigned by \(answer.signer), asked \(signer)", field: "signer")
        }
        try answer.countersignature.verify(by: signerKey)
        try answer.countersignature.checkValidity(at: now)
        return answer
    }

    /// Checks a `kms1:unresolved` record from the responder.
    public func verify(unresolved record: KMSRecord) throws(ProtocolError) -> Unresolved {
        let unresolved = try Unresolved(record)
        guard unresolved.from == responder else {
            throw ProtocolError(.responderMismatch, "answered by \(unresolved.from), asked \(responder)", field: "from")
        }
        try record.verifySignature(by: responderKey, signer: responder)
        guard unresolved.nonce == nonce else {
            throw ProtocolError(.nonceMismatch, "the reply does not echo the request's nonce", field: "nonce")
        }
        guard unresolved.target == target else {
            throw ProtocolError(.targetMismatch, "unresolved is for \(unresolved.target), asked \(target)", field: "target")
        }
        return unresolved
    }
}
