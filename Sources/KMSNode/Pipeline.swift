public import DNSTransport
import DNSWire
import KMSProtocol
public import NIOCore

/// One query as the pipeline sees it, once it has decoded.
struct Request: Sendable {
    let message: DNSMessage
    let question: Question
    let client: SocketAddress
    let transport: DNSTransportKind
    let size: Int
    /// The bytes as received, for the reply cache.
    let bytes: ByteBuffer
    var trace: Bool { HopTrace.isRequested(by: message) }
}

/// The request path of a KMS node, stage by stage, in the order the stages run.
///
///   1. too short to be a DNS message      -> drop
///   2. a response (QR=1)                  -> drop: never answer a response (reflection loops)
///   2b. byte-identical to a query answered before from the address table -> that reply, new ID
///   3. does not decode                    -> FORMERR
///   4. opcode other than QUERY            -> NOTIMP
///   5. not exactly one question           -> FORMERR
///   6. a KMS record that does not parse   -> FORMERR, with the reason
///   7. dispatch:
///        kms1:inquiry   -> `answer(inquiry:)`            (Inquiries.swift)
///        kms1:sigreq    -> `answer(signatureRequest:)`   (SignatureRequests.swift)
///        no KMS record  -> `answer(plain:)`              (PlainQueries.swift)
///
/// Outcomes (NXDOMAIN, REFUSED, unresolved) are values all the way; nothing below this file
/// throws into it.
extension KMSNode: DNSResponder {
    public func respond(to bytes: ByteBuffer, from client: SocketAddress, over transport: DNSTransportKind) -> DNSReply {
        // 1. Too short.
        guard bytes.readableBytes >= DNSMessage.headerSize else {
            metrics.dropped.increment()
            return .drop
        }
        // 2. A response: the QR bit of the third octet.
        guard let flags = bytes.getInteger(at: bytes.readerIndex + 2, as: UInt8.self), flags & 0x80 == 0 else {
            metrics.dropped.increment()
            return .drop
        }
        // 2b. The same question as before, answered from the address table.
        if policy == nil, let cached = replies.reply(to: bytes, over: transport) {
            metrics.count(.address)
            metrics.count(RCode(rawValue: UInt16(cached[3] & 0x0F)))
            return .wire(cached)
        }
        // 3. Decode.
        let message: DNSMessage
        do {
            message = try DNSMessage(wire: bytes.readableBytesView)
        } catch {
            metrics.count(.malformed)
            return finish(.reply(Replies.formatError(raw: bytes, reason: error.reason)))
        }
        // 4. Opcode.
        guard message.header.opcode == .query else {
            metrics.count(.other)
            return finish(.reply(Replies.error(to: message, .notImplemented, nil, querySize: bytes.readableBytes)))
        }
        // 5. Exactly one question (RFC 9619).
        guard message.questions.count == 1, let question = message.question else {
            metrics.count(.malformed)
            return finish(.reply(Replies.error(
                to: message, .formatError, ExtendedDNSError(.invalidData, "a query carries exactly one question"),
                querySize: bytes.readableBytes)))
        }
        let request = Request(
            message: message, question: question, client: client, transport: transport, size: bytes.readableBytes,
            bytes: bytes)
        // 6. The KMS record, if any.
        let record: KMSRecord?
        do {
            record = try message.kmsRecord()
        } catch {
            metrics.count(.malformed)
            return finish(.reply(Replies.error(
                to: message, .formatError, ExtendedDNSError(.invalidData, "\(error)"), querySize: request.size)))
        }
        // 7. Dispatch.
        switch record?.tag {
        case .inquiry?:
            metrics.count(.inquiry)
            return finish(answer(inquiry: record!, request))
        case .signatureRequest?:
            metrics.count(.sigreq)
            return finish(answer(signatureRequest: record!, request))
        case nil:
            return finish(answer(plain: request))
        case .some(let tag):
            // kmsRecord() only lets query records through in a query; this is defensive.
            return finish(.reply(Replies.error(
                to: message, .formatError, ExtendedDNSError(.invalidData, "\(tag) is not a query record"),
                querySize: request.size)))
        }
    }

    /// Counts the response code and hands the reply to the server.
    private func finish(_ step: Step) -> DNSReply {
        switch step {
        case .reply(let reply):
            metrics.count(reply.message.rcode)
            return .reply(reply)
        case .cacheable(let reply, let query, let transport):
            metrics.count(reply.message.rcode)
            guard let bytes = ReplyEncoder.encode(reply, over: transport) else { return .reply(reply) }
            replies.store(bytes, for: query, over: transport)
            return .wire(bytes)
        case .later(let work):
            return .later { [metrics] in
                let reply = await work()
                metrics.count(reply.message.rcode)
                return reply
            }
        }
    }
}

/// A reply now, or one that needs the network first.
enum Step: Sendable {
    case reply(Reply)
    /// A reply that any byte-identical query will get again (see `ReplyCache`).
    case cacheable(Reply, query: ByteBuffer, transport: DNSTransportKind)
    case later(@Sendable () async -> Reply)
}
