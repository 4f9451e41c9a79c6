public import DNSWire
public import KMSCrypto

/// `kms1:rotate` (docs/PROTOCOL.md, "Rotation"): host `target` replacing its key with `key`.
///
/// It travels as the one record of the update section of a DNS UPDATE (RFC 2136) whose zone
/// section names the host's zone. Two signatures make it: `newsig=`, by the new key, over the
/// record's signature input up to and including `time=` (proof that the sender holds the new
/// key), and `sig=`, by the host's current key, over everything before it (newsig included).
public struct Rotation: Hashable, Sendable {
    public static let updateOpcode = OpCode(rawValue: 5)

    public var target: DomainName
    public var key: PublicKey
    public var nonce: Nonce
    public var time: UnixTime
    public var newSignature: [UInt8]

    public var from: DomainName { target }

    /// Builds and signs a rotation: `newKey` proves possession, `currentKey` authorises it.
    public static func make(
        target: DomainName, newKey: PrivateKey, currentKey: PrivateKey, nonce: Nonce, time: UnixTime
    ) throws -> KMSRecord {
        let values = [target.text, KeyField.encode(newKey.publicKey), target.text, nonce.description, String(time)]
        let proof = try newKey.signature(for: Self.proofInput(target: target, values: values))
        return try KMSRecord(owner: target, tag: .rotate, values: values + [Base64.encode(proof)]).signed(by: currentKey)
    }

    /// What `newsig=` signs: the record's signature input without `newsig=` and `sig=`.
    static func proofInput(target: DomainName, values: [String]) -> [UInt8] {
        var strings = [Array(RecordTag.rotate.rawValue.utf8)]
        for (name, value) in zip(RecordTag.rotate.fieldNames, values) { strings.append(Array("\(name)=\(value)".utf8)) }
        return KMSRecord.signatureInput(owner: target, strings: strings)
    }

    public init(_ record: KMSRecord) throws(ProtocolError) {
        try record.expect(.rotate)
        target = try CanonicalName.parse(record.values[0], field: "target")
        key = try KeyField.decode(record.values[1])
        let from = try CanonicalName.parse(record.values[2], field: "from")
        guard from == target else {
            throw ProtocolError(.unexpectedField, "a host rotates only its own key: from= must be target=", field: "from")
        }
        nonce = try Nonce.parse(record.values[3])
        time = try Decimal.parse(record.values[4], field: "time")
        newSignature = try Base64.decode(record.values[5], field: "newsig")
        try record.expectOwner(target, field: "target")
        proofInput = Self.proofInput(target: target, values: Array(record.values.prefix(5)))
    }

    private let proofInput: [UInt8]

    /// Throws unless `newsig=` is the new key's signature (proof of possession).
    public func verifyProof() throws(ProtocolError) {
        guard key.isValidSignature(newSignature, for: proofInput) else {
            throw ProtocolError(.badSignature, "newsig= is not made by the new key", field: "newsig")
        }
    }
}
