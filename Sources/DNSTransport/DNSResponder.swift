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
}

/// The one method a DNS server needs: given the bytes of a query and who sent it, say what
/// to answer. Implementations must not throw: every failure is an answer (FORMERR, REFUSED,
/// SERVFAIL) or a drop.
public protocol DNSResponder: Sendable {
    func respond(to query: ByteBuffer, from client: SocketAddress, over transport: DNSTransportKind) -> DNSReply
}
