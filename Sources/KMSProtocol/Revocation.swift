public import DNSWire
public import KMSCrypto

/// `kms1:revoke` (docs/PROTOCOL.md, "Revocation"): KMS `from` telling a neighbour that `key` is
/// no longer `target`'s key (rotated or removed), so the neighbour drops what it cached. Sent
/// in the additional section of a query `target TXT`, signed by `from`; the answer is an
/// empty NOERROR.
public struct Revocation: Hashable, Sendable {
    public var target: DomainName
    public var key: PublicKey
    public var from: DomainName
    public var nonce: Nonce
    public var time: UnixTime

    public init(target: DomainName, key: PublicKey, from: DomainName, nonce: Nonce, time: UnixTime) {
        self.target = target
        self.key = key
        self.from = from
        self.nonce = nonce
        self.time = time
    }

    public func record() throws(ProtocolError) -> KMSRecord {
        try KMSRecord(owner: from, tag: .revoke, values: [target.text, KeyField.encode(key), from.text, nonce.description, String(time)])
    }

    public init(_ record: KMSRecord) throws(ProtocolError) {
        try record.expect(.revoke)
        target = try CanonicalName.parse(record.values[0], field: "target")
        key = try KeyField.decode(record.values[1])
        from = try CanonicalName.parse(record.values[2], field: "from")
        nonce = try Nonce.parse(record.values[3])
        time = try Decimal.parse(record.values[4], field: "time")
        try record.expectOwner(from, field: "from")
    }
}
