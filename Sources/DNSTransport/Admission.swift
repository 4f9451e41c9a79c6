import DNSWire
public import NIOCore

/// What every query goes through before a responder sees it, in this order (as hickory-dns's
/// `ServerContext::handle_request` and miekg/dns's `MsgAcceptFunc` do):
///
///   1. shorter than a DNS header                      -> drop
///   2. a response (QR=1)                              -> drop: never answer a response (reflection)
///      a UDP query longer than `DNSServer.largestUDPQuery` -> TC=1 (its header and question), so it
///      comes again over TCP; FORMERR if even its question cannot be read
///   3. a UDP query the responder turns away undecoded -> TC=1 (`Replies.truncated(raw:)`), or a
///      drop as the responder's slip says: a client in its penalty box, or a signed request it
///      will not verify for an unproven address now
///      the responder's reply cache knows these bytes (up to ID and case) -> that reply
///   4. does not decode (including RFC 6891 OPT rules) -> FORMERR, extended error Invalid Data
///      an EDNS version other than 0 (RFC 6891 6.1.3)  -> BADVERS, with an OPT of version 0
///      (this and the errors below carry the responder's server cookie and NSID, if it has them)
///   5. an opcode the responder does not take (QUERY; a KMS also UPDATE) -> NOTIMP
///   6. no question, and a COOKIE option               -> the responder's server cookie (RFC 7873 section 5.4)
///      not exactly one question (RFC 9619)            -> FORMERR, extended error Invalid Data
///   7. the responder
///
/// The KMS node and the proxy both sit behind it, so they cannot disagree on any of this.
public enum Admission {
    /// What becomes of a UDP query its responder turns away undecoded (`DNSResponder.penalty`).
    public enum Penalty: Sendable {
        /// An empty reply with TC=1, copied from the query's header and question.
        case truncate
        /// Nothing: the slip let this one go unanswered.
        case drop
    }

    /// Why admission answered or dropped a query itself.
    public enum Outcome: Sendable {
        case tooShort, response, malformed, badVersion, notQuery, questionCount
        /// Needed the network while the server's deferred replies were at their limit: dropped.
        case overloaded
        /// Answered from the reply cache.
        case cached([UInt8])
        /// A UDP client in the penalty box, sent to TCP undecoded or dropped (the slip).
        case penalised
        /// A UDP query longer than the server reads over UDP (`DNSServer.largestUDPQuery`),
        /// sent to TCP with TC=1.
        case oversized
        /// A TCP connection closed as soon as it was accepted: the process holds as many as
        /// `TCPLimits` allows.
        case tcpConnectionLimit
    }

    public static func process(
        _ bytes: ByteBuffer, from client: SocketAddress, over transport: DNSTransportKind, to responder: any DNSResponder
    ) -> DNSReply {
        // 1. Too short.
        guard bytes.readableBytes >= DNSMessage.headerSize else {
            responder.admissionTurnedAway(.tooShort)
            return .drop
        }
        // 2. A response: the QR bit of the third octet.
        guard let flags = bytes.getInteger(at: bytes.readerIndex + 2, as: UInt8.self), flags & 0x80 == 0 else {
            responder.admissionTurnedAway(.response)
            return .drop
        }
        // A datagram longer than a receive slot arrives cut to the slot, one byte over the
        // limit: decoded, it would look malformed. Over TCP it is read whole.
        if transport == .udp, bytes.readableBytes > DNSServer.largestUDPQuery {
            guard let truncated = Replies.truncated(raw: bytes) else {
                responder.admissionTurnedAway(.malformed)
                return .reply(Replies.formatError(raw: bytes, reason: "a UDP query longer than \(DNSServer.largestUDPQuery) bytes; send it over TCP"))
            }
            responder.admissionTurnedAway(.oversized)
            return .wire(truncated)
        }
        // 3. A client that must earn its budget back: to TCP, at the cost of a header copy,
        // or nothing at all (the slip).
        if transport == .udp, let penalty = responder.penalty(for: client, query: bytes) {
            switch penalty {
            case .drop:
                responder.admissionTurnedAway(.penalised)
                return .drop
            case .truncate:
                if let truncated = Replies.truncated(raw: bytes) {
                    responder.admissionTurnedAway(.penalised)
                    return .wire(truncated)
                }
            }
        }
        // The same bytes as a query answered before.
        if let cached = responder.cachedReply(to: bytes, over: transport) {
            responder.admissionTurnedAway(.cached(cached))
            return .wire(cached)
        }
        // 4. Decode.
        let message: DNSMessage
        do {
            message = try DNSMessage(wire: bytes.readableBytesView)
        } catch {
            responder.admissionTurnedAway(.malformed)
            return .reply(Replies.formatError(raw: bytes, reason: error.reason))
        }
        // An EDNS version we do not implement.
        if let edns = message.edns, edns.version != 0 {
            responder.admissionTurnedAway(.badVersion)
            return refuse(
                message, .badVersion, ExtendedDNSError(.notSupported, "EDNS version \(edns.version) is not implemented; use 0"),
                bytes, client, responder)
        }
        // 5. Opcode.
        guard responder.acceptedOpcodes.contains(message.header.opcode) else {
            responder.admissionTurnedAway(.notQuery)
            return refuse(
                message, .notImplemented, ExtendedDNSError(.notSupported, "opcode \(message.header.opcode.rawValue) is not served here"),
                bytes, client, responder)
        }
        // 6. Only a cookie, asked for with QDCOUNT 0 (`dig +cookie +header-only`); otherwise
        // exactly one question.
        if message.questions.isEmpty, message.edns?.options.contains(where: { $0.code == EDNS.cookieOption }) == true,
            message.header.opcode == .query, let reply = responder.answerCookieQuery(message, from: client, querySize: bytes.readableBytes)
        {
            return .reply(reply)
        }
        guard message.questions.count == 1, let question = message.question else {
            responder.admissionTurnedAway(.questionCount)
            return refuse(
                message, .formatError, ExtendedDNSError(.invalidData, "a query carries exactly one question"), bytes, client, responder)
        }
        // 7. The responder.
        return responder.respond(to: DNSRequest(message: message, question: question, client: client, transport: transport, bytes: bytes))
    }

    /// An error admission writes to a query that decoded, with the responder's server cookie and NSID.
    private static func refuse(
        _ query: DNSMessage, _ rcode: RCode, _ error: ExtendedDNSError, _ bytes: ByteBuffer, _ client: SocketAddress,
        _ responder: any DNSResponder
    ) -> DNSReply {
        var reply = Replies.error(to: query, rcode, error, querySize: bytes.readableBytes)
        responder.addServerOptions(to: &reply, answering: query, from: client)
        return .reply(reply)
    }
}
