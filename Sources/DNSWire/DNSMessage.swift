/// A DNS message (RFC 1035 section 4.1) as plain data.
///
///     +---------------------+
///     |        Header       |
///     +---------------------+
///     |       Question      | the question for the name server
///     +---------------------+
///     |        Answer       | RRs answering the question
///     +---------------------+
///     |      Authority      | RRs pointing toward an authority
///     +---------------------+
///     |      Additional     | RRs holding additional information
///     +---------------------+
///
/// The OPT pseudo-record of RFC 6891 is not kept in `additionals`; it is `edns`.
/// Encoding and decoding go through libldns (see `DNSMessage+LDNS.swift`).
public struct DNSMessage: Hashable, Sendable {
    public var header: Header
    public var questions: [Question]
    public var answers: [ResourceRecord]
    public var authorities: [ResourceRecord]
    public var additionals: [ResourceRecord]
    public var edns: EDNS?

    public init(
        header: Header, questions: [Question] = [], answers: [ResourceRecord] = [],
        authorities: [ResourceRecord] = [], additionals: [ResourceRecord] = [], edns: EDNS? = nil
    ) {
        self.header = header
        self.questions = questions
        self.answers = answers
        self.authorities = authorities
        self.additionals = additionals
        self.edns = edns
    }

    /// The first question, which is the only one real servers accept (RFC 9619).
    public var question: Question? { questions.first }

    /// The response code, including the upper bits carried in EDNS (RFC 6891 section 6.1.3).
    public var rcode: RCode {
        get { header.rcode }
        set { header.rcode = newValue }
    }

    /// A standard query: RD clear (KMS1 servers do their own recursion), EDNS0 advertising
    /// `payloadSize` (RFC 8914 errors ride in EDNS, and KMS1 requires at least 1232).
    public static func query(
        id: UInt16, name: DomainName, type: RRType, payloadSize: UInt16 = EDNS.defaultPayloadSize
    ) -> DNSMessage {
        DNSMessage(
            header: Header(id: id),
            questions: [Question(name: name, type: type)],
            edns: EDNS(payloadSize: payloadSize))
    }

    /// The skeleton of a response to `query`: same ID, opcode, RD and question; QR set;
    /// EDNS present when the query had it, with the query's DO bit copied (RFC 3225 section 3:
    /// a server that holds no DNSSEC records still echoes it, as NSD and Knot do).
    public func response(rcode: RCode = .noError, authoritative: Bool = true) -> DNSMessage {
        var header = Header(id: header.id)
        header.isResponse = true
        header.opcode = self.header.opcode
        header.recursionDesired = self.header.recursionDesired
        header.isAuthoritative = authoritative
        header.rcode = rcode
        return DNSMessage(
            header: header, questions: questions,
            edns: edns.map { query in
                var edns = EDNS(payloadSize: EDNS.defaultPayloadSize)
                edns.dnssecOK = query.dnssecOK
                return edns
            })
    }

    /// The RFC 8914 extended errors this message carries.
    public var extendedErrors: [ExtendedDNSError] { edns?.extendedErrors ?? [] }
}

/// The header section (RFC 1035 section 4.1.1). Counts are derived from the sections.
public struct Header: Hashable, Sendable {
    public var id: UInt16
    public var isResponse = false
    public var opcode = OpCode.query
    public var isAuthoritative = false
    public var isTruncated = false
    public var recursionDesired = false
    public var recursionAvailable = false
    public var authenticData = false
    public var checkingDisabled = false
    public var rcode = RCode.noError

    public init(id: UInt16) { self.id = id }
}

/// An entry of the question section (RFC 1035 section 4.1.2).
public struct Question: Hashable, Sendable {
    public var name: DomainName
    public var type: RRType
    public var rrClass: RRClass

    public init(name: DomainName, type: RRType, rrClass: RRClass = .internet) {
        self.name = name
        self.type = type
        self.rrClass = rrClass
    }
}

/// A resource record (RFC 1035 section 4.1.3).
public struct ResourceRecord: Hashable, Sendable {
    public var name: DomainName
    public var rrClass: RRClass
    public var ttl: UInt32
    public var data: RData

    public init(name: DomainName, ttl: UInt32, data: RData, rrClass: RRClass = .internet) {
        self.name = name
        self.ttl = ttl
        self.data = data
        self.rrClass = rrClass
    }

    public var type: RRType { data.type }
}

/// RDATA of the types this project reads; any other type is kept as uncompressed bytes.
public enum RData: Hashable, Sendable {
    /// IPv4 address, 4 bytes (RFC 1035 section 3.4.1).
    case a([UInt8])
    /// IPv6 address, 16 bytes (RFC 3596).
    case aaaa([UInt8])
    /// One or more character-strings (RFC 1035 section 3.3.14), each without its length octet.
    case txt([[UInt8]])
    /// Another type, its RDATA with any names uncompressed.
    case other(RRType, [UInt8])

    public var type: RRType {
        switch self {
        case .a: .a
        case .aaaa: .aaaa
        case .txt: .txt
        case .other(let type, _): type
        }
    }

    /// The RDATA of a TXT record exactly as on the wire: each string with its length octet.
    /// KMS1 signature inputs are built from these bytes.
    public static func txtWire(_ strings: some Sequence<[UInt8]>) -> [UInt8] {
        var out: [UInt8] = []
        for string in strings {
            out.append(UInt8(truncatingIfNeeded: string.count))
            out.append(contentsOf: string)
        }
        return out
    }

    /// The strings of TXT RDATA in wire form; nil if a length octet runs past the end.
    public static func txtStrings(_ wire: [UInt8]) -> [[UInt8]]? {
        var strings: [[UInt8]] = []
        var at = 0
        while at < wire.count {
            let end = at + 1 + Int(wire[at])
            guard end <= wire.count else { return nil }
            strings.append(Array(wire[at + 1..<end]))
            at = end
        }
        return strings
    }
}
