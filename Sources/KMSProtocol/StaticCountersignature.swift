public import DNSWire
import KMSCrypto

/// A countersignature as static zone data (docs/PROTOCOL.md, "Countersignatures in the zone"):
/// a TXT record any DNS server can hold, transfer and serve, with no per-query signature.
///
///     _kms1.hostb.c.a.xx. TXT "kms1-static" "target=hostb.c.a.xx." "key=ed25519:…" "signer=xx."
///                             "not-before=…" "not-after=…" "countersig=…"
///
/// It carries exactly what the countersignature covers plus the countersignature itself, so a
/// host verifies it with its trust anchor alone (`CountersignaturePolicy`), whoever served it.
/// The tag is `kms1-static`, not `kms1:…`, so it is never mistaken for a KMS1 message record.
public struct StaticCountersignature: Hashable, Sendable {
    public static let tag = "kms1-static"
    /// The label in front of the host's name that owns its static records.
    public static let label = "_kms1"
    static let fields = ["target", "key", "signer", "not-before", "not-after", "countersig"]

    public let countersignature: Countersignature

    public init(_ countersignature: Countersignature) { self.countersignature = countersignature }

    /// `_kms1.<target>`: where a host's static countersignatures live.
    public static func owner(of target: DomainName) -> DomainName? {
        try? DomainName(label + "." + target.text)
    }

    /// The target whose records `owner` holds, if `owner` is `_kms1.<target>`. It runs for
    /// every TXT query and negative answer, so it compares the first label's bytes in place.
    public static func target(ofOwner owner: DomainName) -> DomainName? {
        guard owner.canonicalWire.starts(with: labelWire) else { return nil }
        return owner.parent
    }

    private static let labelWire: [UInt8] = [UInt8(label.utf8.count)] + Array(label.utf8)

    public var strings: [[UInt8]] {
        let c = countersignature
        return [Self.tag, "target=\(c.target.text)", "key=\(KeyField.encode(c.key))", "signer=\(c.signer.text)",
                "not-before=\(c.notBefore)", "not-after=\(c.notAfter)", "countersig=\(Base64.encode(c.signature))"]
            .map { Array($0.utf8) }
    }

    public func record(ttl: UInt32) -> ResourceRecord? {
        guard let owner = Self.owner(of: countersignature.target), strings.allSatisfy({ $0.count <= 255 }) else { return nil }
        return ResourceRecord(name: owner, ttl: ttl, data: .txt(strings))
    }

    /// Reads one from a TXT record's strings. Nil for TXT that is not a static record; throws
    /// for one that is but is malformed, or whose target is not the name it is published at.
    public init?(owner: DomainName, strings: [[UInt8]]) throws(ProtocolError) {
        guard strings.first == Array(Self.tag.utf8) else { return nil }
        guard strings.count == Self.fields.count + 1 else {
            throw ProtocolError(.unexpectedField, "\(Self.tag) has \(Self.fields.count) fields, this one has \(strings.count - 1)")
        }
        var values: [String] = []
        for (name, string) in zip(Self.fields, strings.dropFirst()) {
            let text = String(decoding: string, as: UTF8.self)
            guard text.hasPrefix(name + "=") else {
                throw ProtocolError(.unexpectedField, "expected \(name)=, found '\(text.prefix(20))'", field: name)
            }
            values.append(String(text.dropFirst(name.count + 1)))
        }
        let target = try CanonicalName.parse(values[0], field: "target")
        guard Self.owner(of: target) == owner else {
            throw ProtocolError(.unexpectedField, "a record at \(owner) speaks for \(target)", field: "target")
        }
        countersignature = Countersignature(
            target: target, key: try KeyField.decode(values[1]), signer: try CanonicalName.parse(values[2], field: "signer"),
            notBefore: try Decimal.parse(values[3], field: "not-before"),
            notAfter: try Decimal.parse(values[4], field: "not-after"),
            signature: try Base64.decode(values[5], field: "countersig"))
    }
}
