/// The identifier field (the patent's item 1061) that opens every KMS record, and the
/// `name=` strings that follow it, in the order PROTOCOL.md section 3 fixes.
public enum RecordTag: String, CaseIterable, Hashable, Sendable, CustomStringConvertible {
    case inquiry = "kms1:inquiry"
    case answer = "kms1:answer"
    case signatureRequest = "kms1:sigreq"
    case countersignature = "kms1:countersig"
    case unresolved = "kms1:unresolved"
    /// Our definition (PROTOCOL.md section 6 leaves its strings to the project): the KMS's CUG
    /// verdict for an address query, for the client that asked.
    case cug = "kms1:cug"
    /// Our definition (docs/PROTOCOL.md, "Rotation"): a host replacing its own key, in a DNS
    /// UPDATE to its KMS, signed by the current key with the new key's proof of possession.
    case rotate = "kms1:rotate"
    /// Our definition (docs/PROTOCOL.md, "Revocation"): a KMS telling a neighbour that fetched a
    /// key through it that the key is withdrawn.
    case revoke = "kms1:revoke"

    /// The prefix shared by all tags; TXT data without it is ordinary TXT.
    public static let prefix = "kms1:"

    public var fieldNames: [String] {
        switch self {
        case .inquiry: ["target", "signer", "ip", "from", "nonce", "time"]
        case .answer, .countersignature:
            ["target", "key", "signer", "not-before", "not-after", "countersig", "from", "nonce", "time"]
        case .signatureRequest: ["target", "key", "signer", "ip", "from", "nonce", "time"]
        case .unresolved: ["target", "from", "nonce", "time"]
        case .cug: ["target", "verdict", "protocol", "identity", "cipher", "client", "from", "nonce", "time"]
        case .rotate: ["target", "key", "from", "nonce", "time", "newsig"]
        case .revoke: ["target", "key", "from", "nonce", "time"]
        }
    }

    /// Where in a DNS message this record travels.
    public var section: MessageSection {
        switch self {
        case .inquiry, .signatureRequest: .additional
        case .answer, .countersignature: .answer
        case .unresolved: .authority
        case .cug: .additional
        case .rotate: .authority  // the UPDATE section of RFC 2136
        case .revoke: .additional
        }
    }

    public var description: String { rawValue }
}

/// The record-carrying sections of a DNS message (RFC 1035 section 4.1).
public enum MessageSection: String, Hashable, Sendable, CustomStringConvertible {
    case answer, authority, additional
    public var description: String { rawValue }
}
