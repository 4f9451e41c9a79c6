/// Why a DNS message or name could not be read or written.
///
/// One error type for the module; `code` can grow without breaking callers, and `reason`
/// carries libldns's own words where it produced the failure.
public struct WireError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public var description: String { name }

        /// The bytes are not a DNS message (too short, counts past the end, bad pointers, ...).
        public static let malformedMessage = Code(name: "malformed message")
        /// A domain name in presentation format could not be parsed.
        public static let malformedName = Code(name: "malformed name")
        /// A character-string longer than 255 bytes.
        public static let stringTooLong = Code(name: "character-string too long")
        /// The message could not be encoded.
        public static let encodingFailed = Code(name: "encoding failed")
    }

    public let code: Code
    public let reason: String

    public init(_ code: Code, _ reason: String) {
        self.code = code
        self.reason = reason
    }

    public var description: String { "\(code): \(reason)" }
}
