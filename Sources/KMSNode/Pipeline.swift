public import DNSTransport
public import DNSWire
import KMSProtocol
public import NIOCore

/// One admitted query as the node's stages see it: the request, and what its DNS cookie
/// (RFC 7873) proved, checked once (an HMAC) by the first stage and read by every later one.
struct Request: Sendable {
    let base: DNSRequest
    let cookie: DNSCookies.State

    var message: DNSMessage { base.message }
    var question: Question { base.question }
    var client: SocketAddress { base.client }
    var transport: DNSTransportKind { base.transport }
    var bytes: ByteBuffer { base.bytes }
    var size: Int { base.size }

    /// Whether the client's address is proven: by TCP's handshake, or by a cookie this node made.
    var isProven: Bool {
        if transport == .tcp { return true }
        if case .proven = cookie { return true }
        return false
    }
}

extension KMSNode {
    /// Whether to answer with the hop trace (EDNS option 65001): the requester asked, and may
    /// see it. The trace shows addresses and cache state, so it goes only to loopback, this
    /// node's parent and children, and the `trace-allow` prefixes.
    func traceAllowed(_ request: Request) -> Bool {
        guard HopTrace.isRequested(by: request.message),
            let client = request.client.ip
        else { return false }
        if client.isLoopback { return true }
        if configuration.parent?.endpoint.address == client { return true }
        if configuration.children.contains(where: { $0.endpoint.address == client }) { return true }
        return client.isIn(configuration.limits.traceAllow)
    }
}

/// The request path of a KMS node, stage by stage, in the order the stages run.
///
/// Admission (DNSTransport's `Admission`, shared with the proxy) comes first:
///
///   1. shorter than a header, or a response (QR=1)      -> drop
///      a UDP query over 4 096 bytes (cut by its receive slot) -> TC=1, to be read whole over TCP
///   2. a UDP client out of its failed-verify budget      -> TC=1, undecoded (`Spending`)
///      the same, up to ID and case, as a query answered before from the address table -> that reply (`ReplyCache`)
///   3. does not decode (RFC 6891 OPT rules included)    -> FORMERR, EDE Invalid Data
///   4. opcode other than QUERY                          -> NOTIMP
///   5. not exactly one question                         -> FORMERR
///
/// Then this node:
///
///   6. CH TXT id.server. / hostname.bind., with `identity` -> that identity
///      a class other than IN                            -> REFUSED, extended error Not Supported
///   7. a KMS record that does not parse                 -> FORMERR, with the reason
///   8. dispatch:
///        kms1:inquiry   -> `answer(inquiry:)`            (Inquiries.swift)
///             authenticate (Authentication.swift) -> cache -> route -> countersign / forward / sigreq
///             -> accept what came back (`CountersignaturePolicy`) -> sign the answer
///        kms1:sigreq    -> `answer(signatureRequest:)`   (SignatureRequests.swift)
///        kms1:rotate in an UPDATE -> `answer(rotation:)`  (Rotations.swift)
///        kms1:revoke    -> `answer(revocation:)`         (Revocations.swift)
///             authenticate -> countersign, or pass up and accept (`CountersignaturePolicy`) -> sign
///        no KMS record  -> `answer(plain:)`              (PlainQueries.swift)
///             RD=0 about a child zone -> referral; SOA/NS at the apex; negatives with the SOA (`Zone`)
///   9. count the response code; add the server cookie and the NSID (`finish`)
///
/// Outcomes (NXDOMAIN, REFUSED, unresolved) are values all the way; nothing below this file
/// throws into it, and the server turns an unencodable reply into SERVFAIL in one place
/// (`ReplyEncoder`).
extension KMSNode: DNSResponder {
    public func respond(to received: DNSRequest) -> DNSReply {
        metrics.count(type: received.question.type)
        // 6. A COOKIE option of the wrong length (RFC 7873 section 5.2.2).
        let request = Request(base: received, cookie: cookies.state(of: received.message, from: received.client))
        if request.cookie == .malformed {
            metrics.count(.malformed)
            return finish(request, .reply(Replies.error(to: request.message, .formatError, DNSCookies.malformed, querySize: request.size)))
        }
        // Who this server is, in class CH, as NSD and Knot answer it (`identity`).
        if request.question.rrClass == .chaos, request.question.type == .txt, Self.identityNames.contains(request.question.name),
            let identity = configuration.identity
        {
            metrics.count(.other)
            var message = request.message.response(rcode: .noError, authoritative: true)
            message.answers = [ResourceRecord(name: request.question.name, ttl: 0, data: .txt([Array(identity.utf8)]), rrClass: .chaos)]
            return finish(request, .reply(Reply(message, answering: request.message)))
        }
        // The class: this node serves its zone in class IN only (RFC 1034 section 4.3.2).
        guard request.question.rrClass == .internet else {
            metrics.count(.other)
            return finish(request, .reply(Replies.error(
                to: request.message, .refused,
                ExtendedDNSError(.notSupported, "class \(request.question.rrClass.rawValue) is not served here; \(zone) is in class IN"),
                querySize: request.size)))
        }
        // 7. The KMS record, if any.
        let record: KMSRecord?
        do {
            record = try request.message.kmsRecord()
        } catch {
            metrics.count(.malformed)
            return finish(request, .reply(Replies.error(
                to: request.message, .formatError, ExtendedDNSError(.invalidData, "\(error)"), querySize: request.size)))
        }
        // 8. Dispatch. An UPDATE carries a key rotation, and nothing else.
        if request.message.header.opcode == Rotation.updateOpcode {
            metrics.count(.other)
            guard let record, record.tag == .rotate else {
                return finish(request, .reply(Replies.error(
                    to: request.message, .refused, ExtendedDNSError(.notSupported, "an UPDATE here carries one kms1:rotate record"),
                    querySize: request.size)))
            }
            return finish(request, answer(rotation: record, request))
        }
        switch record?.tag {
        case .inquiry?:
            metrics.count(.inquiry)
            return finish(request, answer(inquiry: record!, request))
        case .signatureRequest?:
            metrics.count(.sigreq)
            return finish(request, answer(signatureRequest: record!, request))
        case .revoke?:
            metrics.count(.other)
            return finish(request, answer(revocation: record!, request))
        case nil:
            return finish(request, answer(plain: request))
        case .some(let tag):
            // kmsRecord() only lets query records through in a query; this is defensive.
            return finish(request, .reply(Replies.error(
                to: request.message, .formatError, ExtendedDNSError(.invalidData, "\(tag) is not a query record"),
                querySize: request.size)))
        }
    }

    /// Stage 2: the reply cache, consulted before decoding (never with a policy database,
    /// whose answers depend on the client).
    public func cachedReply(to query: ByteBuffer, over transport: DNSTransportKind) -> [UInt8]? {
        policy == nil ? replies.reply(to: query, over: transport) : nil
    }

    /// QUERY, and UPDATE for a host's own key rotation (`Rotations.swift`).
    public var acceptedOpcodes: Set<OpCode> { Self.opcodes }
    private static let opcodes: Set<OpCode> = [.query, Rotation.updateOpcode]

    /// Stage 3: a UDP client out of failed-verify budget, an unproven signed request while the
    /// node is out of its budget for those, or an unproven unsigned TXT query from a network
    /// out of its anonymous budget, is sent to TCP undecoded (`Spending.penalty`), or, without
    /// a DNS cookie, dropped as `rate-slip` says. Counted here, by the budget (admission's `.penalised` counts
    /// nothing more).
    public func penalty(for client: SocketAddress, query: ByteBuffer) -> Admission.Penalty? {
        guard let turnaway = spending.penalty(client, query: query) else { return nil }
        switch turnaway.budget {
        case .verify: metrics.throttled.increment()
        case .anonymous: metrics.throttledAnonymous.increment()
        }
        return spending.slips(carriesCookie: turnaway.carriesCookie) ? .drop : .truncate
    }

    /// A query for a server cookie alone (RFC 7873 section 5.4), at admission's stage 6.
    public func answerCookieQuery(_ query: DNSMessage, from client: SocketAddress, querySize: Int) -> Reply? {
        let reply = cookies.reply(toCookieQuery: query, from: client, querySize: querySize)
        metrics.count(reply.message.rcode == .noError ? .other : .malformed)
        metrics.count(reply.message.rcode)
        return reply
    }

    /// Admission's own errors carry a server cookie and the NSID, as the node's answers do.
    public func addServerOptions(to reply: inout Reply, answering query: DNSMessage, from client: SocketAddress) {
        cookies.stamp(&reply.message, answering: query, from: client)
        addNSID(to: &reply.message, answering: query)
    }

    /// The NSID option (RFC 5001) with this node's `identity`, when the query asked for it.
    func addNSID(to message: inout DNSMessage, answering query: DNSMessage) {
        guard let identity = configuration.identity, message.edns != nil,
            query.edns?.options.contains(where: { $0.code == Self.nsidOption }) == true
        else { return }
        message.edns!.options.append(EDNS.Option(code: Self.nsidOption, data: Array(identity.utf8)))
    }

    static let nsidOption: UInt16 = 3
    /// The CH TXT names that ask a server who it is (RFC 4892 section 2.3, and BIND's name).
    static let identityNames: Set<DomainName> = ["id.server.", "hostname.bind."]

    /// The server cookie and the NSID, as every answer to `request` carries them.
    private func addServerOptions(to message: inout DNSMessage, for request: Request) {
        cookies.stamp(&message, for: request)
        addNSID(to: &message, answering: request.message)
    }

    /// Stages 1–5 answered or dropped a query: count it as the node always has.
    public func admissionTurnedAway(_ outcome: Admission.Outcome) {
        switch outcome {
        case .tooShort, .response, .tcpConnectionLimit:
            metrics.dropped.increment()
        case .cached(let reply):
            metrics.count(.address)
            metrics.count(RCode(rawValue: UInt16(reply[3] & 0x0F)))
        case .malformed, .questionCount, .badVersion:
            metrics.count(.malformed)
            metrics.count(RCode.formatError)
        case .notQuery:
            metrics.count(.other)
            metrics.count(RCode.notImplemented)
        case .penalised:
            break  // counted by its budget in `penalty(for:query:)`
        case .oversized:
            metrics.count(.other)
            metrics.count(RCode.noError)
        case .overloaded:
            metrics.dropped.increment()
            logger.debug("dropped: too many replies waiting for the network")
        }
    }

    /// 9. Counts the response code and hands the reply to the server.
    private func finish(_ request: Request, _ step: Step) -> DNSReply {
        switch step {
        case .reply(var reply):
            metrics.count(reply.message.rcode)
            addServerOptions(to: &reply.message, for: request)
            return .reply(reply)
        case .wire(let bytes):
            metrics.count(RCode(rawValue: UInt16(bytes[3] & 0x0F)))
            return .wire(bytes)
        case .drop:
            return .drop
        case .messages(let messages):
            if let first = messages.first, first.count > 3 { metrics.count(RCode(rawValue: UInt16(first[3] & 0x0F))) }
            return .messages(messages)
        case .cacheable(var reply, let query, let transport):
            metrics.count(reply.message.rcode)
            // An answer with a cookie is for its client alone: stamped, never cached.
            addServerOptions(to: &reply.message, for: request)
            if request.cookie != .absent { return .reply(reply) }
            guard let bytes = ReplyEncoder.encode(reply, over: transport) else { return .reply(reply) }
            replies.store(bytes, for: query, over: transport)
            return .wire(bytes)
        case .later(let work):
            return .later { [self] in
                var reply = await work()
                metrics.count(reply.message.rcode)
                addServerOptions(to: &reply.message, for: request)
                return reply
            }
        }
    }
}

/// A reply now, or one that needs the network first.
enum Step: Sendable {
    case reply(Reply)
    /// A reply already encoded (a TC=1 copied from the query).
    case wire([UInt8])
    /// No reply: a budget's refusal that the slip let go unanswered (counted by its budget).
    case drop
    /// A zone transfer: several messages, encoded (and signed), for TCP.
    case messages([[UInt8]])
    /// A reply that any query with the same bytes, up to ID and case, will get again (see `ReplyCache`).
    case cacheable(Reply, query: ByteBuffer, transport: DNSTransportKind)
    case later(@Sendable () async -> Reply)
}
