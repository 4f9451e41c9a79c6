public import DNSWire
public import KMSCrypto

/// `kms1:cug`: a KMS's Closed User Group verdict on `target` for the client that asked
/// (the seed's second embodiment, figure 6). It rides in the additional section of the answer
/// to an A or AAAA query, owned by the target and signed by the answering KMS (`from=`):
///
///     "kms1:cug" "target=kojima.jinji.nec.com." "verdict=encrypted" "protocol=tls"
///     "identity=jinji.nec.com" "cipher=AES-256-GCM" "from=b.a.xx." "time=1790000000" "sig=..."
///
/// A `normal` verdict has empty `protocol=`, `identity=` and `cipher=`.
public struct CUGVerdict: Hashable, Sendable {
    public enum Verdict: String, Sendable { case encrypted, normal }

    public var target: DomainName
    public var verdict: Verdict
    /// `tls` or `kernel` when encrypted.
    public var pathProtocol: String
    public var identity: String
    public var cipher: TLSCipher?
    public var from: DomainName
    public var time: UnixTime

    public init(
        target: DomainName, verdict: Verdict, pathProtocol: String = "", identity: String = "", cipher: TLSCipher? = nil,
        from: DomainName, time: UnixTime
    ) {
        self.target = target
        self.verdict = verdict
        self.pathProtocol = pathProtocol
        self.identity = identity
        self.cipher = cipher
        self.from = from
        self.time = time
    }

    public func record() throws(ProtocolError) -> KMSRecord {
        try KMSRecord(
            owner: target, tag: .cug,
            values: [
                target.text, verdict.rawValue, pathProtocol, identity, cipher?.rawValue ?? "", from.text, String(time),
            ])
    }

    public init(_ record: KMSRecord) throws(ProtocolError) {
        try record.expect(.cug)
        target = try CanonicalName.parse(record.values[0], field: "target")
        guard let verdict = Verdict(rawValue: record.values[1]) else {
            throw ProtocolError(.unexpectedField, "verdict is encrypted or normal, not '\(record.values[1].prefix(20))'", field: "verdict")
        }
        self.verdict = verdict
        pathProtocol = record.values[2]
        identity = record.values[3]
        switch verdict {
        case .encrypted:
            guard ["tls", "kernel"].contains(pathProtocol) else {
                throw ProtocolError(.unexpectedField, "protocol is tls or kernel", field: "protocol")
            }
            guard !identity.isEmpty else { throw ProtocolError(.missingField, "an encrypted verdict names an identity", field: "identity") }
            switch TLSCipher.named(record.values[4]) {
            case .success(let found): cipher = found
            case .failure(let error): throw ProtocolError(.unexpectedField, error.reason, field: "cipher")
            }
        case .normal:
            guard pathProtocol.isEmpty, identity.isEmpty, record.values[4].isEmpty else {
                throw ProtocolError(.unexpectedField, "a normal verdict carries no path settings", field: "protocol")
            }
            cipher = nil
        }
        from = try CanonicalName.parse(record.values[5], field: "from")
        time = try Decimal.parse(record.values[6], field: "time")
        try record.expectOwner(target, field: "target")
    }
}
