extension DNSMessage {
    /// The largest UDP response this message's sender can take: its EDNS payload size
    /// (never under 512, RFC 6891 section 6.2.5) or 512 without EDNS (RFC 1035 section 4.2.1),
    /// capped at `serverLimit`.
    public func udpResponseLimit(serverLimit: Int = Int(EDNS.defaultPayloadSize)) -> Int {
        guard let edns else { return 512 }
        return min(max(Int(edns.payloadSize), 512), max(serverLimit, 512))
    }

    /// Encodes for a UDP reply of at most `limit` bytes. A message that does not fit is cut to
    /// its header, question and OPT record with TC=1 (RFC 2181 section 9, RFC 7766 section 5),
    /// so the requester retries over TCP.
    ///
    /// What fits `limit` without name compression is sent without it (`LDNSWriter`): a signed
    /// KMS1 answer is a little over 512 bytes, and compressing it (libldns builds a tree of
    /// every name) would save a few dozen bytes of a requester's 1232 at a visible share of
    /// the answer's cost.
    public func wireForUDP(limit: Int) throws(WireError) -> [UInt8] {
        if let plain = LDNSWriter.uncompressed(self, limit: max(limit, Self.uncompressedLimit)) { return plain }
        let full = try wireThroughPacket(compressed: true)
        guard full.count > limit else { return full }
        var cut = DNSMessage(header: header, questions: questions, edns: edns)
        cut.header.isTruncated = true
        return try cut.wire()
    }
}
