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

/// What a countersignature must be before anyone accepts it, as named checks in one order:
///
///   1. `target`    it is about the name that was asked
///   2. `key`       it is over the key expected (a sigreq's key, a registered host's key), if any
///   3. `signer`    it is by the countersigner that was asked for
///   4. signature   it verifies with that signer's key, where the key is held here
///   5. validity    now lies within [not-before, not-after]
///
/// The host (`AnswerVerification`), a KMS accepting a forwarded answer and a KMS relaying a
/// sigreq all use this one policy, so their checks cannot drift apart. Each failure has its own
/// `ProtocolError` code.
public struct CountersignaturePolicy: Sendable {
    public var target: DomainName
    public var signer: DomainName
    /// The signer's key, when this party holds it (a host always: its trust anchor; a KMS for
    /// itself, its neighbours and its anchors). Without it the signature is left to whoever
    /// trusts the signer, who always checks it before use.
    public var signerKey: PublicKey?
    /// The key the countersignature must be over, when the asker knows it.
    public var key: PublicKey?

    public init(target: DomainName, signer: DomainName, signerKey: PublicKey?, key: PublicKey? = nil) {
        self.target = target
        self.signer = signer
        self.signerKey = signerKey
        self.key = key
    }

    public func check(_ countersignature: Countersignature, at now: UnixTime) throws(ProtocolError) {
        guard countersignature.target == target else {
            throw ProtocolError(.targetMismatch, "countersignature is over \(countersignature.target), asked \(target)", field: "target")
        }
        if let key, countersignature.key != key {
            throw ProtocolError(.badCountersignature, "countersignature is over another key than the one asked about", field: "key")
        }
        guard countersignature.signer == signer else {
            throw ProtocolError(.signerMismatch, "countersigned by \(countersignature.signer), asked \(signer)", field: "signer")
        }
        if let signerKey { try countersignature.verify(by: signerKey) }
        try countersignature.checkValidity(at: now)
    }
}

/// What a requester checks before it accepts a key (PROTOCOL.md section 5, step 4): the reply
/// checks, then the `CountersignaturePolicy` with the chosen trust anchor's key. Anything that
/// fails is discarded, never used.
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
        try CountersignaturePolicy(target: reply.target, signer: signer, signerKey: signerKey).check(answer.countersignature, at: now)
        return answer
    }
}
