public import DNSWire
public import KMSCrypto

/// One KMS record: a TXT RR whose character-strings are the tag, the `name=value` fields in
/// the order the tag fixes, and (when signed) a last `sig=<base64>` (PROTOCOL.md section 3).
///
/// A record read from the wire keeps the strings exactly as they came, so its signature input
/// is built from the bytes that were sent, never from a re-encoding.
public struct KMSRecord: Hashable, Sendable {
    public let owner: DomainName
    public let tag: RecordTag
    /// Field values in the tag's order (`tag.fieldNames`).
    public let values: [String]
    /// The signature over `signatureInput`; nil while the record is being built.
    public let signature: [UInt8]?
    /// The character-strings before `sig=`, as sent: tag first.
    public let unsignedStrings: [[UInt8]]

    /// Builds an unsigned record. Fails if a value makes a string longer than 255 bytes.
    public init(owner: DomainName, tag: RecordTag, values: [String]) throws(ProtocolError) {
        precondition(values.count == tag.fieldNames.count, "\(tag) takes \(tag.fieldNames.count) values")
        var strings = [Array(tag.rawValue.utf8)]
        for (name, value) in zip(tag.fieldNames, values) {
            let string = Array("\(name)=\(value)".utf8)
            guard string.count <= 255 else {
                throw ProtocolError(.stringTooLong, "\(string.count) bytes", field: name)
            }
            strings.append(string)
        }
        self.init(owner: owner, tag: tag, values: values, signature: nil, unsignedStrings: strings)
    }

    private init(
        owner: DomainName, tag: RecordTag, values: [String], signature: [UInt8]?, unsignedStrings: [[UInt8]]
    ) {
        self.owner = owner
        self.tag = tag
        self.values = values
        self.signature = signature
        self.unsignedStrings = unsignedStrings
    }

    /// Reads a record from the character-strings of a TXT RR. Returns nil when the first string
    /// is not a `kms1:` tag (ordinary TXT data); throws when it is one but the rest is wrong.
    public init?(owner: DomainName, strings: [[UInt8]]) throws(ProtocolError) {
        guard let first = strings.first, first.starts(with: Array(RecordTag.prefix.utf8)) else { return nil }
        let tagText = String(decoding: first, as: UTF8.self)
        guard let tag = RecordTag(rawValue: tagText) else {
            throw ProtocolError(.unknownTag, "'\(tagText.prefix(40))' is not a KMS1 record tag")
        }
        guard strings.count > 1, let last = strings.last, last.starts(with: Array("sig=".utf8)) else {
            throw ProtocolError(.missingSignature, "the last string of a \(tag) record must be sig=")
        }
        let body = strings.dropFirst().dropLast()
        var values: [String] = []
        for (index, string) in body.enumerated() {
            guard index < tag.fieldNames.count else {
                throw ProtocolError(.unexpectedField, "\(tag) has \(tag.fieldNames.count) fields, this one has more")
            }
            let name = tag.fieldNames[index]
            let prefix = Array("\(name)=".utf8)
            guard string.starts(with: prefix), let value = String(validating: string.dropFirst(prefix.count), as: UTF8.self)
            else {
                let got = String(decoding: string.prefix(24), as: UTF8.self)
                throw ProtocolError(.unexpectedField, "expected \(name)= at position \(index + 1), found '\(got)'", field: name)
            }
            values.append(value)
        }
        guard values.count == tag.fieldNames.count else {
            throw ProtocolError(
                .missingField, "\(tag) lacks its \(tag.fieldNames[values.count])= field",
                field: tag.fieldNames[values.count])
        }
        let signature = try Base64.decode(String(decoding: last.dropFirst(4), as: UTF8.self), field: "sig")
        self.init(
            owner: owner, tag: tag, values: values, signature: signature,
            unsignedStrings: Array(strings.dropLast()))
    }

    /// The value of field `name`.
    public func value(_ name: String) -> String {
        values[tag.fieldNames.firstIndex(of: name)!]
    }

    /// `KMS1`, the owner in canonical wire form, then every string before `sig=` with its
    /// length octet (PROTOCOL.md section 3).
    public var signatureInput: [UInt8] {
        Self.signatureInput(owner: owner, strings: unsignedStrings)
    }

    static func signatureInput(owner: DomainName, strings: [[UInt8]]) -> [UInt8] {
        Array("KMS1".utf8) + owner.canonicalWire + RData.txtWire(strings)
    }

    /// This record signed by `key`.
    public func signed(by key: PrivateKey) throws(CryptoError) -> KMSRecord {
        KMSRecord(
            owner: owner, tag: tag, values: values, signature: try key.signature(for: signatureInput),
            unsignedStrings: unsignedStrings)
    }

    /// Throws `.badSignature` unless the record carries a signature by `key`.
    public func verifySignature(by key: PublicKey, signer: DomainName) throws(ProtocolError) {
        guard let signature, key.isValidSignature(signature, for: signatureInput) else {
            throw ProtocolError(.badSignature, "\(tag) record is not signed by \(signer)", field: "sig")
        }
    }

    /// All character-strings, `sig=` last.
    public var strings: [[UInt8]] {
        guard let signature else { return unsignedStrings }
        return unsignedStrings + [Array("sig=\(Base64.encode(signature))".utf8)]
    }

    /// The TXT resource record that carries this record.
    public func resourceRecord(ttl: UInt32 = 0) -> ResourceRecord {
        ResourceRecord(name: owner, ttl: ttl, data: .txt(strings))
    }
}
