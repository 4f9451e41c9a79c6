internal import CLDNS

/// What admission may know of a query before decoding it, read by one bounds-checked walk
/// over its bytes: whether it carries any record besides OPT (a signed request does: its KMS1
/// record rides in the additional section, an UPDATE's in its update section), and the data of
/// its EDNS COOKIE option (RFC 7873), if any, and the type its one question asks for. A node
/// under a flood sends unproven signed requests, or a network's anonymous key queries, to TCP
/// on this alone, at the cost of the walk instead of a decode.
public struct WireShape: Sendable, Equatable {
    /// A record other than OPT, or bytes that do not walk (unsure counts as carrying).
    public let carriesRecords: Bool
    /// The COOKIE option's data (client cookie, then server cookie if any).
    public let cookie: [UInt8]?
    /// QTYPE, when the query has exactly one question whose name walks.
    public let questionType: RRType?

    public init(wire bytes: some Collection<UInt8>) {
        self = bytes.withContiguousStorageIfAvailable { Self.read($0) } ?? Array(bytes).withUnsafeBufferPointer { Self.read($0) }
    }

    /// The same, from bytes in place (a received buffer's readable bytes): no generic
    /// collection to go through, on the path every UDP query takes while a budget is spent.
    public init(wire bytes: UnsafeRawBufferPointer) {
        self = Self.read(UnsafeBufferPointer(start: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), count: bytes.count))
    }

    init(carriesRecords: Bool, cookie: [UInt8]?, questionType: RRType? = nil) {
        self.carriesRecords = carriesRecords
        self.cookie = cookie
        self.questionType = questionType
    }

    private static func read(_ bytes: UnsafeBufferPointer<UInt8>) -> WireShape {
        var carries = false
        var cookie: [UInt8]?
        let walked = DNSMessage.walkRecords(bytes) { section, _, type, rdata in
            // An OPT counts only in the additional section (RFC 6891 6.1.1); elsewhere it is
            // a record like any other, as the decoder reads it.
            if section == 3 && type == LDNS_RR_TYPE_OPT.rawValue {
                cookie = option(Int(EDNS.cookieOption), inOPTAt: rdata, of: bytes)
            } else {
                carries = true
            }
            return true
        }
        return WireShape(carriesRecords: carries || !walked, cookie: cookie, questionType: questionType(bytes))
    }

    /// The QTYPE of a query with one question, read after its name.
    private static func questionType(_ bytes: UnsafeBufferPointer<UInt8>) -> RRType? {
        guard bytes.count >= DNSMessage.headerSize, DNSMessage.sectionCount(bytes, 0) == 1 else { return nil }
        var position = DNSMessage.headerSize
        guard DNSMessage.skipName(bytes, &position), position + 2 <= bytes.count else { return nil }
        return RRType(rawValue: UInt16(bytes[position]) << 8 | UInt16(bytes[position + 1]))
    }

    /// The data of the first option `code` in the OPT RDATA at `rdata` (its length in the two
    /// bytes before), or nil.
    private static func option(_ code: Int, inOPTAt rdata: Int, of bytes: UnsafeBufferPointer<UInt8>) -> [UInt8]? {
        let end = rdata + (Int(bytes[rdata - 2]) << 8 | Int(bytes[rdata - 1]))
        guard end <= bytes.count else { return nil }
        var position = rdata
        while position + 4 <= end {
            let found = Int(bytes[position]) << 8 | Int(bytes[position + 1])
            let length = Int(bytes[position + 2]) << 8 | Int(bytes[position + 3])
            position += 4
            guard position + length <= end else { return nil }
            if found == code { return Array(bytes[position..<(position + length)]) }
            position += length
        }
        return nil
    }
}
