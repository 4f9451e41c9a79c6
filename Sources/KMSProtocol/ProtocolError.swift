/// Why a KMS1 record was not accepted, or could not be made.
///
/// Every rejection has its own code so that callers (and the wire, via extended DNS errors)
/// can say precisely why; `field` names the offending `name=` string when there is one.
public struct ProtocolError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public var description: String { name }

        // Form: the record itself is not what PROTOCOL.md section 3 describes.
        public static let unknownTag = Code(name: "unknown record tag")
        public static let missingSignature = Code(name: "missing sig=")
        public static let unexpectedField = Code(name: "unexpected field")
        public static let missingField = Code(name: "missing field")
        public static let nonCanonicalName = Code(name: "non-canonical name")
        public static let badBase64 = Code(name: "bad base64")
        public static let badNumber = Code(name: "bad number")
        public static let badAddress = Code(name: "bad IP address")
        public static let badNonce = Code(name: "bad nonce")
        public static let badKey = Code(name: "bad key")
        public static let keyLabelMismatch = Code(name: "key label does not match key")
        public static let stringTooLong = Code(name: "string over 255 bytes")
        public static let ownerMismatch = Code(name: "owner does not match")
        // Placement in the DNS message.
        public static let wrongSection = Code(name: "wrong section")
        public static let multipleRecords = Code(name: "more than one KMS record")
        public static let noRecord = Code(name: "no KMS record")
        // Verification.
        public static let badSignature = Code(name: "bad signature")
        public static let badCountersignature = Code(name: "bad countersignature")
        public static let nonceMismatch = Code(name: "nonce mismatch")
        public static let signerMismatch = Code(name: "signer mismatch")
        public static let targetMismatch = Code(name: "target mismatch")
        public static let responderMismatch = Code(name: "responder mismatch")
        public static let notYetValid = Code(name: "not yet valid")
        public static let expired = Code(name: "expired")
    }

    public let code: Code
    public let reason: String
    public let field: String?

    public init(_ code: Code, _ reason: String, field: String? = nil) {
        self.code = code
        self.reason = reason
        self.field = field
    }

    public var description: String {
        field.map { "\(code) in \($0)=: \(reason)" } ?? "\(code): \(reason)"
    }
}
