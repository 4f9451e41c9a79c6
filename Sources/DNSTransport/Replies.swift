public import DNSWire
public import NIOCore

/// Building replies. Error replies carry the question, the OPT record (when the query had one:
/// RFC 6891 section 7) and one extended error, and are never larger than the query that
/// caused them or 192 bytes, whichever is more (no amplification): an over-long reason is
/// shortened to fit.
public enum Replies {
    /// FORMERR for bytes that did not decode: the ID and opcode are copied from the raw header.
    /// An extended error is added when the header says an additional record (likely OPT) came.
    public static func formatError(raw: ByteBuffer, reason: String) -> Reply {
        let id = raw.getInteger(at: raw.readerIndex, as: UInt16.self) ?? 0
        let opcodeBits = raw.getInteger(at: raw.readerIndex + 2, as: UInt8.self) ?? 0
        let additionalCount = raw.getInteger(at: raw.readerIndex + 10, as: UInt16.self) ?? 0
        var header = Header(id: id)
        header.isResponse = true
        header.opcode = OpCode(rawValue: (opcodeBits >> 3) & 0x0F)
        header.rcode = .formatError
        var message = DNSMessage(header: header)
        if additionalCount > 0 {
            message.edns = EDNS()
            message.addExtendedError(ExtendedDNSError(.invalidData, "malformed query: \(reason)"))
        }
        return Reply(fitting: message, within: max(raw.readableBytes, minimumErrorSize))
    }

    /// An error reply (REFUSED, FORMERR, SERVFAIL, NOTIMP) to a query that decoded.
    public static func error(to query: DNSMessage, _ rcode: RCode, _ error: ExtendedDNSError?, querySize: Int) -> Reply {
        var message = query.response(rcode: rcode, authoritative: false)
        if let error, message.edns != nil { message.addExtendedError(error) }
        let limit = rcode == .serverFailure ? query.udpResponseLimit() : max(querySize, minimumErrorSize)
        return Reply(fitting: message, within: limit, udpLimit: query.udpResponseLimit())
    }

    /// An error reply may always be this large, so a short plain query still gets a readable
    /// reason; signed requests are larger than this, so their refusals never exceed them.
    public static let minimumErrorSize = 192
}

extension Reply {
    /// A reply whose extended-error text is cut so the whole message fits `limit` bytes.
    public init(fitting message: DNSMessage, within limit: Int, udpLimit: Int = 512) {
        var message = message
        if let size = try? message.wire().count, size > limit, var edns = message.edns,
            let index = edns.options.firstIndex(where: { $0.code == ExtendedDNSError.optionCode })
        {
            let option = edns.options[index]
            let excess = size - limit
            let kept = max(2, option.data.count - excess)
            edns.options[index] = EDNS.Option(code: option.code, data: Array(option.data.prefix(kept)))
            message.edns = edns
        }
        self.init(message, udpLimit: udpLimit)
    }
}
