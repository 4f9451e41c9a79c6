public import DNSWire
public import NIOCore

/// How a query reached the server; it decides how large the reply may be.
public enum DNSTransportKind: String, Sendable {
    case udp, tcp
}

/// A reply and the most a UDP requester can take (from the query's EDNS, RFC 6891).
public struct Reply: Sendable {
    public var message: DNSMessage
    public var udpLimit: Int

    public init(_ message: DNSMessage, udpLimit: Int) {
        self.message = message
        self.udpLimit = udpLimit
    }

    /// A reply to `query`, sized by what it advertised.
    public init(_ message: DNSMessage, answering query: DNSMessage) {
        self.init(message, udpLimit: query.udpResponseLimit(serverLimit: DNSServer.udpPayloadLimit))
    }
}

/// What the server should do with one received message.
public enum DNSReply: Sendable {
    /// Send nothing (responses, garbage too short to be a query: RFC 1035 section 4.1.1).
    case drop
    /// Send this now.
    case reply(Reply)
    /// Send these bytes now: a reply already encoded for this transport.
    case wire([UInt8])
    /// The answer needs the network (an upstream KMS); send it when it is ready.
    case later(@Sendable () async -> Reply?)
    /// Several messages in a row, already encoded (and signed, with TSIG), as a zone transfer
    /// is (RFC 5936 section 2.2): over TCP all of them, in order; over UDP only the first.
    case messages([[UInt8]])
}

/// One query that passed admission (`Admission`): decoded once, with exactly one question.
public struct DNSRequest: Sendable {
    public let message: DNSMessage
    public let question: Question
    /// The sender, IPv4-mapped addresses already unmapped.
    public let client: SocketAddress
    public let transport: DNSTransportKind
    /// The bytes as received (for a reply cache keyed on them).
    public let bytes: ByteBuffer
    /// The query's size on the wire: error replies are never larger (no amplification).
    public var size: Int { bytes.readableBytes }

    public init(message: DNSMessage, question: Question, client: SocketAddress, transport: DNSTransportKind, bytes: ByteBuffer) {
        self.message = message
        self.question = question
        self.client = client
        self.transport = transport
        self.bytes = bytes
    }
}

/// The one method a DNS server needs: given an admitted query, say what to answer.
/// Implementations must not throw: every failure is an answer (FORMERR, REFUSED, SERVFAIL)
/// or a drop. What every DNS server checks first (size, QR, decoding, opcode, question
/// count) is `Admission`'s, done once for every responder.
public protocol DNSResponder: Sendable {
    func respond(to request: DNSRequest) -> DNSReply

    /// Before decoding: an encoded reply for exactly these bytes, if the responder keeps one
    /// (a reply cache). The default keeps none.
    func cachedReply(to query: ByteBuffer, over transport: DNSTransportKind) -> [UInt8]?

    /// Before decoding: whether this UDP query is turned away undecoded (its client spent a
    /// budget it must earn back, or it asks for work the responder will not do for an
    /// unproven address now), and how: sent to TCP with TC=1, or dropped (RRL's slip). The
    /// default: none is.
    func penalty(for client: SocketAddress, query: ByteBuffer) -> Admission.Penalty?

    /// Admission answered or dropped a query itself (for the responder's metrics).
    func admissionTurnedAway(_ outcome: Admission.Outcome)

    /// The opcodes this responder answers; others get NOTIMP at admission. Default: QUERY.
    var acceptedOpcodes: Set<OpCode> { get }

    /// A query with no question and a COOKIE option: a client asking for a server cookie
    /// (RFC 7873 section 5.4). The reply, or nil from a responder that makes no server cookies
    /// (the default), which leaves it to admission's FORMERR for the question count.
    func answerCookieQuery(_ query: DNSMessage, from client: SocketAddress, querySize: Int) -> Reply?

    /// An error admission wrote itself to a query that decoded (BADVERS, NOTIMP, FORMERR for
    /// the question count): the responder adds the options it puts in its own answers, its
    /// server cookie (RFC 7873 section 5.2) and its NSID (RFC 5001). The default adds none.
    func addServerOptions(to reply: inout Reply, answering query: DNSMessage, from client: SocketAddress)
}

extension DNSResponder {
    public func cachedReply(to query: ByteBuffer, over transport: DNSTransportKind) -> [UInt8]? { nil }
    public func penalty(for client: SocketAddress, query: ByteBuffer) -> Admission.Penalty? { nil }
    public var acceptedOpcodes: Set<OpCode> { [.query] }
    public func admissionTurnedAway(_ outcome: Admission.Outcome) {}
    public func answerCookieQuery(_ query: DNSMessage, from client: SocketAddress, querySize: Int) -> Reply? { nil }
    public func addServerOptions(to reply: inout Reply, answering query: DNSMessage, from client: SocketAddress) {}
}
