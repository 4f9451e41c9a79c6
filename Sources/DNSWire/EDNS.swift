/// The EDNS(0) OPT pseudo-record (RFC 6891 section 6.1).
public struct EDNS: Hashable, Sendable {
    /// The payload size KMS1 requesters advertise and servers cap answers at (RFC 9715 / DNS
    /// flag day 2020: 1232 bytes avoids IP fragmentation).
    public static let defaultPayloadSize: UInt16 = 1232

    /// The COOKIE option (RFC 7873 section 4): a client cookie, then the server's, if any.
    public static let cookieOption: UInt16 = 10

    /// The requester's UDP payload size. Values under 512 are treated as 512 (section 6.2.3).
    public var payloadSize: UInt16
    public var version: UInt8 = 0
    public var dnssecOK = false
    public var options: [Option] = []

    public init(payloadSize: UInt16 = EDNS.defaultPayloadSize, options: [Option] = []) {
        self.payloadSize = payloadSize
        self.options = options
    }

    /// An EDNS option: code and opaque data (RFC 6891 section 6.1.2).
    public struct Option: Hashable, Sendable {
        public var code: UInt16
        public var data: [UInt8]
        public init(code: UInt16, data: [UInt8]) {
            self.code = code
            self.data = data
        }
    }

    /// The extended DNS errors among the options.
    public var extendedErrors: [ExtendedDNSError] {
        options.compactMap(ExtendedDNSError.init(option:))
    }
}

/// An Extended DNS Error (RFC 8914): an INFO-CODE and a UTF-8 EXTRA-TEXT.
///
///                                                  1   1   1   1   1   1
///          0   1   2   3   4   5   6   7   8   9   0   1   2   3   4   5
///        +---+---+---+---+---+---+---+---+---+---+---+---+---+---+---+---+
///     0: |                            OPTION-CODE = 15                   |
///        +---+---+---+---+---+---+---+---+---+---+---+---+---+---+---+---+
///     2: |                           OPTION-LENGTH                       |
///        +---+---+---+---+---+---+---+---+---+---+---+---+---+---+---+---+
///     4: | INFO-CODE                                                     |
///        +---+---+---+---+---+---+---+---+---+---+---+---+---+---+---+---+
///     6: / EXTRA-TEXT ...                                                /
///        +---+---+---+---+---+---+---+---+---+---+---+---+---+---+---+---+
public struct ExtendedDNSError: Hashable, Sendable, CustomStringConvertible {
    public static let optionCode: UInt16 = 15

    public var infoCode: InfoCode
    public var text: String

    public init(_ infoCode: InfoCode, _ text: String) {
        self.infoCode = infoCode
        self.text = text
    }

    init?(option: EDNS.Option) {
        guard option.code == Self.optionCode, option.data.count >= 2 else { return nil }
        infoCode = InfoCode(rawValue: UInt16(option.data[0]) << 8 | UInt16(option.data[1]))
        text = String(decoding: option.data.dropFirst(2), as: UTF8.self)
    }

    public var option: EDNS.Option {
        EDNS.Option(
            code: Self.optionCode,
            data: [UInt8(infoCode.rawValue >> 8), UInt8(infoCode.rawValue & 0xFF)] + Array(text.utf8))
    }

    public var description: String { "EDE \(infoCode.rawValue) (\(infoCode)): \(text)" }

    /// INFO-CODE values from the IANA registry (RFC 8914 section 4).
    public struct InfoCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }

        public static let other = InfoCode(rawValue: 0)
        public static let dnssecBogus = InfoCode(rawValue: 6)
        public static let signatureExpired = InfoCode(rawValue: 7)
        public static let signatureNotYetValid = InfoCode(rawValue: 8)
        public static let cachedError = InfoCode(rawValue: 13)
        public static let notReady = InfoCode(rawValue: 14)
        public static let blocked = InfoCode(rawValue: 15)
        public static let prohibited = InfoCode(rawValue: 18)
        public static let notAuthoritative = InfoCode(rawValue: 20)
        public static let notSupported = InfoCode(rawValue: 21)
        public static let noReachableAuthority = InfoCode(rawValue: 22)
        public static let networkError = InfoCode(rawValue: 23)
        public static let invalidData = InfoCode(rawValue: 24)

        public var description: String {
            switch self {
            case .other: "Other Error"
            case .dnssecBogus: "DNSSEC Bogus"
            case .signatureExpired: "Signature Expired"
            case .signatureNotYetValid: "Signature Not Yet Valid"
            case .cachedError: "Cached Error"
            case .notReady: "Not Ready"
            case .blocked: "Blocked"
            case .prohibited: "Prohibited"
            case .notAuthoritative: "Not Authoritative"
            case .notSupported: "Not Supported"
            case .noReachableAuthority: "No Reachable Authority"
            case .networkError: "Network Error"
            case .invalidData: "Invalid Data"
            default: "Code \(rawValue)"
            }
        }
    }
}

extension DNSMessage {
    /// Adds an extended error, creating the OPT record if the message has none.
    public mutating func addExtendedError(_ error: ExtendedDNSError) {
        if edns == nil { edns = EDNS() }
        edns!.options.append(error.option)
    }
}
