public import DNSWire
public import KMSCrypto

/// The hop-level checks on a KMS reply: it is signed by the KMS that was asked, echoes the
/// request's nonce and is about the name that was asked. Each failure has its own code.
public struct ReplyCheck: Sendable {
    /// The KMS the request went to, whose signature must be on the reply.
    public var responder: DomainName
    public var responderKey: PublicKey
    public var target: DomainName
    public var nonce: Nonce

    public init(responder: DomainName, responderKey: PublicKey, target: DomainName, nonce: Nonce) {
        self.responder = responder
        self.responderKey = responderKey
        self.target = target
        self.nonce = nonce
    }

    /// Checks a `kms1:answer` or `kms1:countersig` record (not yet its countersignature).
    public func verify(answer record: KMSRecord) throws(ProtocolError) -> KeyAnswer {
        let answer = try KeyAnswer(record)
        try check(record, from: answer.from, nonce: answer.nonce, target: answer.target)
        return answer
    }

    /// Checks a `kms1:unresolved` record.
    public func verify(unresolved record: KMSRecord) throws(ProtocolError) -> Unresolved {
        let unresolved = try Unresolved(record)
        try check(record, from: unresolved.from, nonce: unresolved.nonce, target: unresolved.target)
        return unresolved
    }

    private func check(_ record: KMSRecord, from: DomainName, nonce: Nonce, target: DomainName) throws(ProtocolError) {
        guard from == responder else {
            throw ProtocolError(.responderMismatch, "answered by \(from), asked \(responder)", field: "from")
        }
        try record.verifySignature(by: responderKey, signer: responder)
        guard nonce == self.nonce else {
            throw ProtocolError(.nonceMismatch, "the reply does not echo the request's nonce", field: "nonce")
        }
        guard target == self.target else {
            throw ProtocolError(.targetMismatch, "reply is for \(target), asked \(self.target)", field: "target")
        }
    }
}

/// What a requester checks before it accepts a key (PROTOCOL.md section 5, step 4): the reply
/// checks, then that the countersigner is the one asked for, that its countersignature verifies
/// with the anchor's key, and that now lies within the validity. Anything that fails is
/// discarded, never used.
public struct AnswerVerification: Sendable {
    public var reply: ReplyCheck
    /// The trust anchor chosen as countersigner.
    public var signer: DomainName
    public var signerKey: PublicKey

    public init(reply: ReplyCheck, signer: DomainName, signerKey: PublicKey) {
        self.reply = reply
        self.signer = signer
        self.signerKey = signerKey
    }

    /// Checks a `kms1:answer` record and returns the key it vouches for.
    public func verify(_ record: KMSRecord, now: UnixTime) throws(ProtocolError) -> KeyAnswer {
        let answer = try reply.verify(answer: record)
        try Self.checkCountersignature(answer.countersignature, signer: signer, signerKey: signerKey, now: now)
        return answer
    }

    /// The countersignature checks alone, for anyone who holds the signer's key.
    public static func checkCountersignature(
        _ countersignature: Countersignature, signer: DomainName, signerKey: PublicKey, now: UnixTime
    ) throws(ProtocolError) {
        guard countersignature.signer == signer else {
            throw ProtocolError(.signerMismatch, "countersigned by \(countersignature.signer), asked \(signer)", field: "signer")
        }
        try countersignature.verify(by: signerKey)
        try countersignature.checkValidity(at: now)
    }
}
