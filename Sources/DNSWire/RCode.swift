/// A DNS response code (RFC 1035 section 4.1.1, extended to 12 bits by RFC 6891 section 6.1.3).
public struct RCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let noError = RCode(rawValue: 0)
    public static let formatError = RCode(rawValue: 1)
    public static let serverFailure = RCode(rawValue: 2)
    public static let nameError = RCode(rawValue: 3)
    public static let notImplemented = RCode(rawValue: 4)
    public static let refused = RCode(rawValue: 5)
    /// BADVERS (RFC 6891 section 6.1.3): an EDNS version this responder does not implement.
    public static let badVersion = RCode(rawValue: 16)

    public var description: String {
        switch self {
        case .noError: "NOERROR"
        case .formatError: "FORMERR"
        case .serverFailure: "SERVFAIL"
        case .nameError: "NXDOMAIN"
        case .notImplemented: "NOTIMP"
        case .refused: "REFUSED"
        case .badVersion: "BADVERS"
        default: "RCODE\(rawValue)"
        }
    }
}

/// A resource record TYPE (RFC 1035 section 3.2.2).
public struct RRType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let a = RRType(rawValue: 1)
    public static let ns = RRType(rawValue: 2)
    public static let cname = RRType(rawValue: 5)
    public static let soa = RRType(rawValue: 6)
    public static let txt = RRType(rawValue: 16)
    public static let aaaa = RRType(rawValue: 28)
    public static let opt = RRType(rawValue: 41)
    /// Service bindings (RFC 9460): their `ipv4hint` and `ipv6hint` parameters carry addresses.
    public static let svcb = RRType(rawValue: 64)
    public static let https = RRType(rawValue: 65)
    public static let any = RRType(rawValue: 255)

    /// A or AAAA: a question or record that carries a host's address.
    public var isAddress: Bool { self == .a || self == .aaaa }

    /// A record a client may connect by: an address, or a service binding with its address
    /// hints, protocols (QUIC) and alternative endpoints.
    public var leadsToAnAddress: Bool { isAddress || self == .svcb || self == .https }

    public var description: String {
        switch self {
        case .a: "A"
        case .ns: "NS"
        case .cname: "CNAME"
        case .soa: "SOA"
        case .txt: "TXT"
        case .aaaa: "AAAA"
        case .opt: "OPT"
        case .svcb: "SVCB"
        case .https: "HTTPS"
        case .any: "ANY"
        default: "TYPE\(rawValue)"
        }
    }
}

/// A resource record CLASS (RFC 1035 section 3.2.4).
public struct RRClass: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let internet = RRClass(rawValue: 1)
    /// CHAOS (RFC 1035 section 3.2.4), where servers answer questions about themselves.
    public static let chaos = RRClass(rawValue: 3)
}

/// A DNS OPCODE (RFC 1035 section 4.1.1).
public struct OpCode: RawRepresentable, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let query = OpCode(rawValue: 0)
}
