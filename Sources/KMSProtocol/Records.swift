public import DNSWire
public import KMSCrypto

// The five KMS1 records of PROTOCOL.md section 3 as typed values. Each converts to an unsigned
// `KMSRecord` (to sign and send) and from a received `KMSRecord` (parsing every value in its
// canonical form, so a record that decodes is one whose signature can be checked).

/// `kms1:inquiry`: "what is the key of `target`, countersigned by `signer`?"
/// Owner and signer of the record: the sender, `from`.
public struct Inquiry: Hashable, Sendable {
    public var target: DomainName
    public var signer: DomainName
    public var ip: IPAddress
    public var from: DomainName
    public var nonce: Nonce
    public var time: UnixTime

    public init(target: DomainName, signer: DomainName, ip: IPAddress, from: DomainName, nonce: Nonce, time: UnixTime) {
        self.target = target
        self.signer = signer
        self.ip = ip
        self.from = from
        self.nonce = nonce
        self.time = time
    }

    public func record() throws(ProtocolError) -> KMSRecord {
        try KMSRecord(
            owner: from, tag: .inquiry,
            values: [target.text, signer.text, ip.description, from.text, nonce.description, String(time)])
    }

    public init(_ record: KMSRecord) throws(ProtocolError) {
        try record.expect(.inquiry)
        target = try CanonicalName.parse(record.values[0], field: "target")
        signer = try CanonicalName.parse(record.values[1], field: "signer")
        ip = try CanonicalAddress.parse(record.values[2], field: "ip")
        from = try CanonicalName.parse(record.values[3], field: "from")
        nonce = try Nonce.parse(record.values[4])
        time = try Decimal.parse(record.values[5], field: "time")
        try record.expectOwner(from, field: "from")
    }
}

/// `kms1:sigreq`: a KMS asking the KMS named `signer` to countersign `key` for `target`.
public struct SignatureRequest: Hashable, Sendable {
    public var target: DomainName
    public var key: PublicKey
    public var signer: DomainName
    public var ip: IPAddress
    public var from: DomainName
    public var nonce: Nonce
    public var time: UnixTime

    public init(
        target: DomainName, key: PublicKey, signer: DomainName, ip: IPAddress, from: DomainName, nonce: Nonce,
        time: UnixTime
    ) {
        self.target = target
        self.key = key
        self.signer = signer
        self.ip = ip
        self.from = from
        self.nonce = nonce
        self.time = time
    }

    public func record() throws(ProtocolError) -> KMSRecord {
        try KMSRecord(
            owner: from, tag: .signatureRequest,
            values: [
                target.text, KeyField.encode(key), signer.text, ip.description, from.text, nonce.description,
                String(time),
            ])
    }

    public init(_ record: KMSRecord) throws(ProtocolError) {
        try record.expect(.signatureRequest)
        target = try CanonicalName.parse(record.values[0], field: "target")
        key = try KeyField.decode(record.values[1])
        signer = try CanonicalName.parse(record.values[2], field: "signer")
        ip = try CanonicalAddress.parse(record.values[3], field: "ip")
        from = try CanonicalName.parse(record.values[4], field: "from")
        nonce = try Nonce.parse(record.values[5])
        time = try Decimal.parse(record.values[6], field: "time")
        try record.expectOwner(from, field: "from")
    }
}

/// `kms1:answer` (to an inquiry) or `kms1:countersig` (to a sigreq): a countersigned key,
/// handed on by the KMS `from`, which signs the whole record. Owner: the target.
public struct KeyAnswer: Hashable, Sendable {
    public enum Kind: Hashable, Sendable {
        case answer, countersignature
        var tag: RecordTag { self == .answer ? .answer : .countersignature }
    }

    public var kind: Kind
    public var countersignature: Countersignature
    public var from: DomainName
    public var nonce: Nonce
    public var time: UnixTime

    public init(kind: Kind, countersignature: Countersignature, from: DomainName, nonce: Nonce, time: UnixTime) {
        self.kind = kind
        self.countersignature = countersignature
        self.from = from
        self.nonce = nonce
        self.time = time
    }

    public var target: DomainName { countersignature.target }
    public var key: PublicKey { countersignature.key }
    public var signer: DomainName { countersignature.signer }

    public func record() throws(ProtocolError) -> KMSRecord {
        let c = countersignature
        return try KMSRecord(
            owner: c.target, tag: kind.tag,
            values: [
                c.target.text, KeyField.encode(c.key), c.signer.text, String(c.notBefore), String(c.notAfter),
                Base64.encode(c.signature), from.text, nonce.description, String(time),
            ])
    }

    public init(_ record: KMSRecord) throws(ProtocolError) {
        switch record.tag {
        case .answer: kind = .answer
        case .countersignature: kind = .countersignature
        default: throw ProtocolError(.unknownTag, "expected kms1:answer or kms1:countersig, got \(record.tag)")
        }
        let target = try CanonicalName.parse(record.values[0], field: "target")
        countersignature = Countersignature(
            target: target,
            key: try KeyField.decode(record.values[1]),
            signer: try CanonicalName.parse(record.values[2], field: "signer"),
            notBefore: try Decimal.parse(record.values[3], field: "not-before"),
            notAfter: try Decimal.parse(record.values[4], field: "not-after"),
            signature: try Base64.decode(record.values[5], field: "countersig"))
        from = try CanonicalName.parse(record.values[6], field: "from")
        nonce = try Nonce.parse(record.values[7])
        time = try Decimal.parse(record.values[8], field: "time")
        try record.expectOwner(target, field: "target")
    }
}

/// `kms1:unresolved`: the authoritative KMS has no key for `target` (the patent's step 45).
public struct Unresolved: Hashable, Sendable {
    public var target: DomainName
    public var from: DomainName
    public var nonce: Nonce
    public var time: UnixTime

    public init(target: DomainName, from: DomainName, nonce: Nonce, time: UnixTime) {
        self.target = target
        self.from = from
        self.nonce = nonce
        self.time = time
    }

    public func record() throws(ProtocolError) -> KMSRecord {
        try KMSRecord(
            owner: target, tag: .unresolved, values: [target.text, from.text, nonce.description, String(time)])
    }

    public init(_ record: KMSRecord) throws(ProtocolError) {
        try record.expect(.unresolved)
        target = try CanonicalName.parse(record.values[0], field: "target")
        from = try CanonicalName.parse(record.values[1], field: "from")
        nonce = try Nonce.parse(record.values[2])
        time = try Decimal.parse(record.values[3], field: "time")
        try record.expectOwner(target, field: "target")
    }
}

extension KMSRecord {
    func expect(_ expected: RecordTag) throws(ProtocolError) {
        guard tag == expected else { throw ProtocolError(.unknownTag, "expected \(expected), got \(tag)") }
    }

    /// The owner must name the same node as the field that defines it (compared ignoring case,
    /// as DNS owner names are; the signature input lower-cases it).
    func expectOwner(_ name: DomainName, field: String) throws(ProtocolError) {
        guard owner == name else {
            throw ProtocolError(.ownerMismatch, "owner \(owner) is not \(name)", field: field)
        }
    }
}
