import Testing

@testable import DNSWire

/// `LDNSWriter` lays libldns's structures out on the stack instead of building its packet; the
/// bytes must be exactly those of the general path (`wireThroughPacket`, uncompressed), for every shape of
/// message a server writes.
@Suite struct LDNSWriterTests {
    /// Messages of every kind: each section, each RDATA kind, EDNS with and without options,
    /// an extended rcode, every header flag, names in mixed case, an empty TXT string.
    static func messages() -> [DNSMessage] {
        var messages: [DNSMessage] = []
        let query = DNSMessage.query(id: 0xBEEF, name: "HostB.c.A.xx.", type: .txt)
        messages.append(query)
        var plain = query
        plain.edns = nil
        messages.append(plain)

        var address = DNSMessage.query(id: 7, name: "h12.C.a.xx.", type: .a).response(rcode: .noError)
        address.answers = [
            ResourceRecord(name: "h12.C.a.xx.", ttl: 300, data: IPAddress("10.0.0.12")!.rdata),
            ResourceRecord(name: "h12.c.a.xx.", ttl: 300, data: IPAddress("2001:db8::12")!.rdata),
        ]
        messages.append(address)
        var noEDNS = address
        noEDNS.edns = nil
        messages.append(noEDNS)

        var full = address
        full.header.isTruncated = true
        full.header.recursionAvailable = true
        full.header.authenticData = true
        full.header.checkingDisabled = true
        full.header.recursionDesired = true
        full.authorities = [ResourceRecord(name: "c.a.xx.", ttl: 60, data: .other(RRType(rawValue: 10), Array(0..<40)))]
        full.additionals = [
            ResourceRecord(name: "c.a.xx.", ttl: 60, data: .txt([[], Array("two".utf8), [UInt8](repeating: 0x41, count: 255)])),
            ResourceRecord(name: "x.c.a.xx.", ttl: 0, data: .other(RRType(rawValue: 99), [])),
        ]
        full.addExtendedError(ExtendedDNSError(.prohibited, "unknown sender"))
        full.edns?.dnssecOK = true
        full.edns?.options.append(EDNS.Option(code: 10, data: Array(1...24)))
        messages.append(full)

        var badVersion = query.response(rcode: .badVersion)
        badVersion.edns?.payloadSize = 512
        messages.append(badVersion)

        var nameError = DNSMessage.query(id: 9, name: ".", type: .soa).response(rcode: .nameError, authoritative: true)
        nameError.authorities = [ResourceRecord(name: ".", ttl: 5, data: .other(RRType(rawValue: 10), [0, 0, 1, 2, 3]))]
        messages.append(nameError)
        return messages
    }

    @Test(arguments: messages())
    func sameBytesAsTheGeneralPath(_ message: DNSMessage) throws {
        let fast = try #require(LDNSWriter.uncompressed(message, limit: 512))
        #expect(fast == (try message.wireThroughPacket(compressed: false)))
        #expect(try DNSMessage(wire: fast) == message)
    }

    @Test func largerMessagesAndBadStringsGoTheGeneralWay() throws {
        var big = DNSMessage.query(id: 1, name: "a.xx.", type: .txt).response()
        big.answers = (0..<4).map { _ in ResourceRecord(name: "a.xx.", ttl: 1, data: .txt([[UInt8](repeating: 0x61, count: 200)])) }
        #expect(LDNSWriter.uncompressed(big, limit: 512) == nil)
        #expect(try DNSMessage(wire: big.wire()) == big)  // compressed by the general path

        var tooLong = DNSMessage.query(id: 1, name: "a.xx.", type: .txt).response()
        tooLong.answers = [ResourceRecord(name: "a.xx.", ttl: 1, data: .txt([[UInt8](repeating: 0x61, count: 256)]))]
        #expect(LDNSWriter.uncompressed(tooLong, limit: 512) == nil)
        #expect(throws: WireError.self) { try tooLong.wire() }
    }

    /// Over UDP, what fits the requester's limit uncompressed goes uncompressed; what only fits
    /// compressed goes compressed; what fits neither is cut with TC=1.
    @Test func udpRepliesAreCompressedOnlyWhenThatMakesThemFit() throws {
        let name: DomainName = "a-rather-long-label-to-compress.hostb.c.a.xx."
        var answer = DNSMessage.query(id: 3, name: name, type: .txt).response()
        answer.answers = (0..<8).map { _ in ResourceRecord(name: name, ttl: 1, data: .txt([[UInt8](repeating: 0x61, count: 20)])) }
        let plain = try answer.wireThroughPacket(compressed: false)
        let compressed = try answer.wireThroughPacket(compressed: true)
        #expect(plain.count > 512 && compressed.count <= 512 && compressed.count < plain.count)
        #expect(try answer.wireForUDP(limit: 1232) == plain)
        #expect(try answer.wireForUDP(limit: plain.count - 1) == compressed)
        let cut = try DNSMessage(wire: answer.wireForUDP(limit: compressed.count - 1))
        #expect(cut.header.isTruncated && cut.answers.isEmpty)
    }

    /// The computed size is exact: a limit one byte short refuses the message.
    @Test(arguments: messages())
    func sizeIsExact(_ message: DNSMessage) throws {
        let size = try message.wireThroughPacket(compressed: false).count
        #expect(LDNSWriter.uncompressed(message, limit: size) != nil)
        #expect(LDNSWriter.uncompressed(message, limit: size - 1) == nil)
    }
}
