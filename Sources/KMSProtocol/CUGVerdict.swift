public import DNSWire
import KMSCrypto

/// `kms1:cug`: a KMS's Closed User Group verdict on `target` for the client that asked
/// (the seed's second embodiment, figure 6). It rides in the additional section of the answer
/// to an A or AAAA query, owned by the target and signed by the answering KMS (`from=`):
///
///     "kms1:cug" "target=kojima.jinji.nec.com." "verdict=encrypted" "protocol=tls"
///     "identity=jinji.nec.com" "cipher=AES-256-GCM" "client=133.11.23.24" "from=b.a.xx."
///     "nonce=u0yvxj6fWTHTavQSkneCZQ==" "time=1790000000" "sig=..."
///
/// A `normal` verdict has empty `protocol=`, `identity=` and `cipher=`. `client=` is the
/// address the KMS decided for, and `nonce=` echoes the query's `VerdictNonce` option (empty
/// when the query carried none), both under the signature: a verdict cannot be moved to
/// another client's query, or replayed into a later one.
public struct CUGVerdict: Hashable, Sendable {
    public var target: DomainName
    /// The path to the target when it is a group peer for this client; nil: normal
    /// communication (`verdict=normal`, with empty `protocol=`, `identity=`, `cipher=`).
    public var path: PathSettings?
    /// The client address the verdict was decided for.
    public var client: IPAddress
    public var from: DomainName
    /// The query's nonce (`VerdictNonce`), or empty.
    public var nonce: Nonce
    public var time: UnixTime

    public init(target: DomainName, path: PathSettings?, client: IPAddress, from: DomainName, nonce: Nonce, time: UnixTime) {
        self.target = target
        self.path = path
        self.client = client
        self.from = from
        self.nonce = nonce
        self.time = time
    }

    public func record() throws(ProtocolError) -> KMSRecord {
        try KMSRecord(
            owner: target, tag: .cug,
            values: [
                target.text, path == nil ? "normal" : "encrypted", path?.pathProtocol.rawValue ?? "", path?.identity.rawValue ?? "",
                path?.cipher.rawValue ?? "", client.description, from.text, nonce.description, String(time),
            ])
    }

    public init(_ record: KMSRecord) throws(ProtocolError) {
        try record.expect(.cug)
        target = try CanonicalName.parse(record.values[0], field: "target")
        let (verdict, pathProtocol, identity, cipher) = (record.values[1], record.values[2], record.values[3], record.values[4])
        switch verdict {
        case "encrypted":
            guard let parsed = PathSettings.PathProtocol(rawValue: pathProtocol) else {
                throw ProtocolError(.unexpectedField, "protocol is tls or kernel", field: "protocol")
            }
            guard !identity.isEmpty else { throw ProtocolError(.missingField, "an encrypted verdict names an identity", field: "identity") }
            switch TLSCipher.named(cipher) {
            case .success(let found): path = PathSettings(pathProtocol: parsed, identity: Identity(identity), cipher: found)
            case .failure(let error): throw ProtocolError(.unexpectedField, error.reason, field: "cipher")
            }
        case "normal":
            guard pathProtocol.isEmpty, identity.isEmpty, cipher.isEmpty else {
                throw ProtocolError(.unexpectedField, "a normal verdict carries no path settings", field: "protocol")
            }
            path = nil
        default:
            throw ProtocolError(.unexpectedField, "verdict is encrypted or normal, not '\(verdict.prefix(20))'", field: "verdict")
        }
        client = try CanonicalAddress.parse(record.values[5], field: "client")
        from = try CanonicalName.parse(record.values[6], field: "from")
        nonce = try Nonce.parse(record.values[7])
        time = try Decimal.parse(record.values[8], field: "time")
        try record.expectOwner(target, field: "target")
    }
}

/// EDNS option 65002 (private-use range, RFC 6891 section 9): the 16-byte nonce a proxy in
/// `policy server` mode puts in each address query, which the home KMS echoes in the
/// `kms1:cug` verdict it signs for that query.
public enum VerdictNonce {
    public static let optionCode: UInt16 = 65002

    public static func option(_ nonce: Nonce) -> EDNS.Option { EDNS.Option(code: optionCode, data: nonce.bytes) }

    /// The nonce a query carries: empty when it carries none.
    public static func nonce(in message: DNSMessage) throws(ProtocolError) -> Nonce {
        guard let option = message.edns?.options.first(where: { $0.code == optionCode }) else { return .empty }
        guard option.data.count == Nonce.size else {
            throw ProtocolError(.badNonce, "the verdict nonce option holds \(option.data.count) bytes, not \(Nonce.size)", field: "nonce")
        }
        return try Nonce(bytes: option.data)
    }
}
