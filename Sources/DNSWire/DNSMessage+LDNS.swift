internal import CLDNS
import Glibc

// The DNS wire format is libldns's: `ldns_wire2pkt` reads (decompressing names and checking
// counts, pointers and lengths) and `ldns_pkt2wire` writes (compressing owner names). This
// file only moves values between libldns's structures and the plain Swift ones.

extension DNSMessage {
    /// The header is 12 bytes (RFC 1035 section 4.1.1); anything shorter is not a message.
    public static let headerSize = 12

    /// Decodes a message from wire format. Bytes in contiguous storage (an array, a NIO
    /// buffer's readable bytes) are read where they are, not copied first.
    public init(wire bytes: some Collection<UInt8>) throws(WireError) {
        let decoded: Result<DNSMessage, WireError>? = bytes.withContiguousStorageIfAvailable { buffer in
            do throws(WireError) { return .success(try Self.decode(buffer)) } catch { return .failure(error) }
        }
        if let decoded {
            self = try decoded.get()
        } else {
            let copy = Array(bytes)
            self = try copy.withUnsafeBufferPointer { buffer throws(WireError) in try Self.decode(buffer) }
        }
    }

    private static func decode(_ bytes: UnsafeBufferPointer<UInt8>) throws(WireError) -> DNSMessage {
        guard bytes.count >= Self.headerSize, let base = bytes.baseAddress else {
            throw WireError(.malformedMessage, "\(bytes.count) bytes is shorter than a DNS header")
        }
        // libldns takes a TSIG record out of the additional section wherever it stands, and
        // loses it (a leak per message, found by fuzzing) when another TSIG follows or a later
        // record fails to read. A TSIG is the message's last record (RFC 8945 section 5.1), so
        // one anywhere else is refused before libldns reads the message.
        if sectionCount(bytes, 3) > 1 && tsigBeforeTheLastRecord(bytes) {
            throw WireError(.malformedMessage, "a TSIG record before the last record (RFC 8945 section 5.1: it comes last)")
        }
        var packet: LDNSPacket?
        let status = ldns_wire2pkt(&packet, base, bytes.count)
        guard status == LDNS_STATUS_OK, let packet else {
            throw WireError(.malformedMessage, LDNS.errorString(status))
        }
        defer { ldns_pkt_free(packet) }
        // libldns stops reading a record's RDATA where the fields of its type end, not at its
        // RDLENGTH, and reads what is left as the next records (found by fuzzing): the same
        // bytes would be one message to libldns and another to any RFC 1035 reader.
        let walk = recordsAgree(packet, bytes)
        guard walk.agree else {
            throw WireError(.malformedMessage, "a record's RDATA does not fill its RDLENGTH (RFC 1035 section 3.2.1)")
        }
        try checkOPT(packet, ownerLength: walk.optOwnerLength)
        return fromLDNS(packet)
    }

    /// Whether libldns read the records where an RFC 1035 reader finds them: the walk over the
    /// bytes (each record skipped by its RDLENGTH) meets the same types, section by section, as
    /// libldns's lists hold (less the OPT and TSIG records, which libldns keeps apart), and
    /// libldns read at least RDLENGTH bytes of each (its fields hold at least what it read from
    /// the wire: as many bytes, or more where a name was compressed). The same walk notes the
    /// length of the OPT record's owner name, which libldns does not keep (`checkOPT`).
    private static func recordsAgree(
        _ packet: LDNSPacket, _ bytes: UnsafeBufferPointer<UInt8>
    ) -> (agree: Bool, optOwnerLength: Int?) {
        let lists = (ldns_pkt_answer(packet), ldns_pkt_authority(packet), ldns_pkt_additional(packet))
        var seen = (0, 0, 0)
        var agree = true
        var optOwnerLength: Int?
        let walked = walkRecords(bytes) { section, ownerLength, type, rdata in
            if section == 3 && type == LDNS_RR_TYPE_OPT.rawValue {
                if optOwnerLength == nil { optOwnerLength = ownerLength }
                return true
            }
            if section == 3 && type == LDNS_RR_TYPE_TSIG.rawValue { return true }
            let list = section == 1 ? lists.0 : section == 2 ? lists.1 : lists.2
            let index = section == 1 ? seen.0 : section == 2 ? seen.1 : seen.2
            guard let list, index < ldns_rr_list_rr_count(list), let record = ldns_rr_list_rr(list, index),
                ldns_rr_get_type(record).rawValue == type
            else {
                agree = false
                return false
            }
            let length = Int(bytes[rdata - 2]) << 8 | Int(bytes[rdata - 1])
            var read = 0
            for field in 0..<ldns_rr_rd_count(record) { read += ldns_rdf_size(ldns_rr_rdf(record, field)) }
            guard read >= length else {
                agree = false
                return false
            }
            switch section {
            case 1: seen.0 += 1
            case 2: seen.1 += 1
            default: seen.2 += 1
            }
            return true
        }
        func count(_ list: UnsafeMutablePointer<ldns_rr_list>?) -> Int { list.map { ldns_rr_list_rr_count($0) } ?? 0 }
        return (walked && agree && seen == (count(lists.0), count(lists.1), count(lists.2)), optOwnerLength)
    }

    /// RFC 6891 section 6.1.1: at most one OPT record, in the additional section, owned by the
    /// root, its options exactly filling its RDATA. libldns reads OPT leniently (a second one
    /// overwrites the first, the owner is not kept, a bad option list is dropped), so what it
    /// lets through is checked here; any breach makes the message malformed (FORMERR).
    private static func checkOPT(_ packet: LDNSPacket, ownerLength: Int?) throws(WireError) {
        if containsOPT(ldns_pkt_answer(packet)) {
            throw WireError(.malformedMessage, "an OPT record in the answer section (RFC 6891 section 6.1.1)")
        }
        if containsOPT(ldns_pkt_authority(packet)) {
            throw WireError(.malformedMessage, "an OPT record in the authority section (RFC 6891 section 6.1.1)")
        }
        let present = packet.pointee._edns_present
        guard present > 0 else { return }
        guard present == 1 else {
            throw WireError(.malformedMessage, "\(present) OPT records; a message carries at most one (RFC 6891 section 6.1.1)")
        }
        if let data = ldns_pkt_edns_data(packet), ldns_rdf_size(data) > 0, ldns_pkt_edns_get_option_list(packet) == nil {
            throw WireError(.malformedMessage, "an EDNS option runs past the end of the OPT RDATA (RFC 6891 section 6.1.2)")
        }
        // The owner: libldns does not keep it; the walk that checked the record boundaries
        // found it (reading each record again with ldns_wire2rr cost a third of a decode).
        guard ownerLength == 1 else {
            throw WireError(.malformedMessage, "the OPT record's owner is not the root (RFC 6891 section 6.1.2)")
        }
    }

    private static func containsOPT(_ list: UnsafeMutablePointer<ldns_rr_list>?) -> Bool {
        guard let list else { return false }
        for index in 0..<ldns_rr_list_rr_count(list) where ldns_rr_get_type(ldns_rr_list_rr(list, index)) == LDNS_RR_TYPE_OPT {
            return true
        }
        return false
    }

    /// Whether a TSIG record stands in the additional section before its last record.
    private static func tsigBeforeTheLastRecord(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        let last = sectionCount(bytes, 3) - 1
        var index = 0
        var found = false
        walkRecords(bytes) { section, _, type, _ in
            guard section == 3 else { return true }
            defer { index += 1 }
            found = type == LDNS_RR_TYPE_TSIG.rawValue && index < last
            return !found
        }
        return found
    }

    /// The record count of a section in the header (0 question, 1 answer, 2 authority, 3 additional).
    static func sectionCount(_ bytes: UnsafeBufferPointer<UInt8>, _ section: Int) -> Int {
        Int(bytes[4 + 2 * section]) << 8 | Int(bytes[5 + 2 * section])
    }

    /// Steps over the question and then each record, bounds-checked (it also runs on bytes
    /// libldns has not read), calling `visit` with the record's section, the length of its
    /// owner name, its type and where its RDATA starts (its length is in the two bytes before)
    /// until `visit` returns false or the bytes run out. Returns whether it walked every record.
    @discardableResult
    static func walkRecords(
        _ bytes: UnsafeBufferPointer<UInt8>, _ visit: (_ section: Int, _ ownerLength: Int, _ type: UInt32, _ rdata: Int) -> Bool
    ) -> Bool {
        var position = headerSize
        guard bytes.count >= headerSize else { return false }
        for _ in 0..<sectionCount(bytes, 0) {
            guard skipName(bytes, &position) else { return false }
            position += 4
        }
        for section in 1...3 {
            for _ in 0..<sectionCount(bytes, section) {
                let start = position
                guard skipName(bytes, &position), position + 10 <= bytes.count else { return false }
                let type = UInt32(bytes[position]) << 8 | UInt32(bytes[position + 1])
                guard visit(section, position - start, type, position + 10) else { return false }
                position += 10 + (Int(bytes[position + 8]) << 8 | Int(bytes[position + 9]))
            }
        }
        return position <= bytes.count
    }

    /// Steps over the name at `position` (labels up to the root, or up to a compression pointer).
    static func skipName(_ bytes: UnsafeBufferPointer<UInt8>, _ position: inout Int) -> Bool {
        while position < bytes.count {
            let length = Int(bytes[position])
            if length == 0 {
                position += 1
                return true
            }
            if length & 0xC0 == 0xC0 {
                position += 2
                return position <= bytes.count
            }
            position += 1 + length
        }
        return false
    }

    /// Encodes the message to wire format.
    ///
    /// A message that is small without name compression (most answers: one question and a
    /// record or two) is written without it, by `LDNSWriter`: libldns's compression builds a
    /// tree of every name per message, which was a quarter of the cost of an address answer.
    /// A larger one is written with compression (RFC 1035 section 4.1.4), so nothing that fits
    /// a UDP reply compressed is sent truncated for want of it.
    public func wire() throws(WireError) -> [UInt8] {
        if let plain = LDNSWriter.uncompressed(self, limit: Self.uncompressedLimit) { return plain }
        return try wireThroughPacket(compressed: true)
    }

    /// The general way: libldns's own packet (`toLDNS()`), written with name compression or
    /// without. Serving only ever needs it compressed; uncompressed it is the reference
    /// `LDNSWriterTests` hold `LDNSWriter` to, which writes those bytes without the packet.
    func wireThroughPacket(compressed: Bool) throws(WireError) -> [UInt8] {
        let packet = try toLDNS()
        defer { ldns_pkt_free(packet) }
        if !compressed {
            guard let plain = ldns_buffer_new(512) else { throw WireError(.encodingFailed, "out of memory") }
            defer { ldns_buffer_free(plain) }
            let status = ldns_pkt2buffer_wire_compress(plain, packet, nil)
            guard status == LDNS_STATUS_OK else { throw WireError(.encodingFailed, LDNS.errorString(status)) }
            return Array(UnsafeBufferPointer(start: ldns_buffer_begin(plain), count: ldns_buffer_position(plain)))
        }
        var buffer: UnsafeMutablePointer<UInt8>?
        var size = 0
        let status = ldns_pkt2wire(&buffer, packet, &size)
        guard status == LDNS_STATUS_OK, let buffer else {
            throw WireError(.encodingFailed, LDNS.errorString(status))
        }
        defer { free(buffer) }
        return Array(UnsafeBufferPointer(start: buffer, count: size))
    }

    /// Up to this size a message is sent without name compression (the classic UDP limit).
    static let uncompressedLimit = 512

    /// The message as libldns prints it (the `dig`-like presentation), for logs and traces.
    public var presentation: String {
        guard let packet = try? toLDNS() else { return "<unencodable message>" }
        defer { ldns_pkt_free(packet) }
        return LDNS.string(ldns_pkt2str(packet)) ?? ""
    }

    // MARK: libldns -> Swift

    private static func fromLDNS(_ packet: LDNSPacket) -> DNSMessage {
        var header = Header(id: ldns_pkt_id(packet))
        header.isResponse = ldns_pkt_qr(packet) != 0
        header.opcode = OpCode(rawValue: UInt8(ldns_pkt_get_opcode(packet).rawValue))
        header.isAuthoritative = ldns_pkt_aa(packet) != 0
        header.isTruncated = ldns_pkt_tc(packet) != 0
        header.recursionDesired = ldns_pkt_rd(packet) != 0
        header.recursionAvailable = ldns_pkt_ra(packet) != 0
        header.authenticData = ldns_pkt_ad(packet) != 0
        header.checkingDisabled = ldns_pkt_cd(packet) != 0
        header.rcode = RCode(
            rawValue: UInt16(ldns_pkt_edns_extended_rcode(packet)) << 4
                | UInt16(ldns_pkt_get_rcode(packet).rawValue & 0x0F))

        var edns: EDNS?
        if ldns_pkt_edns(packet) != 0 {
            var value = EDNS(payloadSize: ldns_pkt_edns_udp_size(packet))
            value.version = ldns_pkt_edns_version(packet)
            value.dnssecOK = ldns_pkt_edns_do(packet) != 0
            if let list = ldns_pkt_edns_get_option_list(packet) {
                for index in 0..<ldns_edns_option_list_get_count(list) {
                    guard let option = ldns_edns_option_list_get_option(list, index) else { continue }
                    let size = ldns_edns_get_size(option)
                    let data = ldns_edns_get_data(option)
                    value.options.append(
                        EDNS.Option(
                            code: UInt16(ldns_edns_get_code(option).rawValue),
                            data: data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []))
                }
            }
            edns = value
        }

        let questions = records(ldns_pkt_question(packet)).map {
            Question(
                name: DomainName(wire: LDNS.bytes(of: ldns_rr_owner($0))),
                type: RRType(rawValue: UInt16(ldns_rr_get_type($0).rawValue)),
                rrClass: RRClass(rawValue: UInt16(ldns_rr_get_class($0).rawValue)))
        }
        return DNSMessage(
            header: header, questions: questions,
            answers: records(ldns_pkt_answer(packet)).map(resourceRecord),
            authorities: records(ldns_pkt_authority(packet)).map(resourceRecord),
            additionals: records(ldns_pkt_additional(packet)).map(resourceRecord),
            edns: edns)
    }

    private static func records(_ list: UnsafeMutablePointer<ldns_rr_list>?) -> [LDNSRecord] {
        guard let list else { return [] }
        return (0..<ldns_rr_list_rr_count(list)).compactMap { ldns_rr_list_rr(list, $0) }
    }

    private static func resourceRecord(_ rr: LDNSRecord) -> ResourceRecord {
        let type = RRType(rawValue: UInt16(ldns_rr_get_type(rr).rawValue))
        let fields = (0..<ldns_rr_rd_count(rr)).compactMap { ldns_rr_rdf(rr, $0) }.map(LDNS.bytes(of:))
        let data: RData
        switch type {
        case .a where fields.count == 1 && fields[0].count == 4:
            data = .a(fields[0])
        case .aaaa where fields.count == 1 && fields[0].count == 16:
            data = .aaaa(fields[0])
        case .txt:
            // Each TXT rdf is a character-string with its length octet first.
            data = .txt(fields.map { Array($0.dropFirst()) })
        default:
            data = .other(type, fields.flatMap { $0 })
        }
        return ResourceRecord(
            name: DomainName(wire: LDNS.bytes(of: ldns_rr_owner(rr))),
            ttl: ldns_rr_ttl(rr), data: data,
            rrClass: RRClass(rawValue: UInt16(ldns_rr_get_class(rr).rawValue)))
    }

    // MARK: Swift -> libldns

    func toLDNS() throws(WireError) -> LDNSPacket {
        guard let packet = ldns_pkt_new() else {
            throw WireError(.encodingFailed, "out of memory")
        }
        ldns_pkt_set_id(packet, header.id)
        ldns_pkt_set_qr(packet, header.isResponse.ldns)
        ldns_pkt_set_opcode(packet, ldns_pkt_opcode(rawValue: UInt32(header.opcode.rawValue)))
        ldns_pkt_set_aa(packet, header.isAuthoritative.ldns)
        ldns_pkt_set_tc(packet, header.isTruncated.ldns)
        ldns_pkt_set_rd(packet, header.recursionDesired.ldns)
        ldns_pkt_set_ra(packet, header.recursionAvailable.ldns)
        ldns_pkt_set_ad(packet, header.authenticData.ldns)
        ldns_pkt_set_cd(packet, header.checkingDisabled.ldns)
        ldns_pkt_set_rcode(packet, UInt8(header.rcode.rawValue & 0x0F))

        do {
            for question in questions {
                let rr = try Self.newRR(owner: question.name, type: question.type, rrClass: question.rrClass)
                ldns_rr_set_question(rr, true.ldns)
                ldns_pkt_push_rr(packet, LDNS_SECTION_QUESTION, rr)
            }
            for (section, records) in [
                (LDNS_SECTION_ANSWER, answers), (LDNS_SECTION_AUTHORITY, authorities),
                (LDNS_SECTION_ADDITIONAL, additionals),
            ] {
                for record in records {
                    ldns_pkt_push_rr(packet, section, try Self.newRR(record))
                }
            }
        } catch {
            ldns_pkt_free(packet)
            throw error
        }

        if let edns {
            ldns_pkt_set_edns_udp_size(packet, edns.payloadSize)
            ldns_pkt_set_edns_version(packet, edns.version)
            ldns_pkt_set_edns_do(packet, edns.dnssecOK.ldns)
            ldns_pkt_set_edns_extended_rcode(packet, UInt8(truncatingIfNeeded: header.rcode.rawValue >> 4))
            if !edns.options.isEmpty, let list = ldns_edns_option_list_new() {
                for option in edns.options {
                    let made = option.data.withUnsafeBytes {
                        ldns_edns_new_from_data(
                            ldns_edns_option_code(rawValue: UInt32(option.code)), $0.count, $0.baseAddress)
                    }
                    if let made { ldns_edns_option_list_push(list, made) }
                }
                ldns_pkt_set_edns_option_list(packet, list)
            }
        }
        return packet
    }

    private static func newRR(owner: DomainName, type: RRType, rrClass: RRClass) throws(WireError) -> LDNSRecord {
        guard let rr = ldns_rr_new() else { throw WireError(.encodingFailed, "out of memory") }
        ldns_rr_set_owner(rr, newRDF(LDNS_RDF_TYPE_DNAME, owner.wire))
        ldns_rr_set_type(rr, ldns_rr_type(rawValue: UInt32(type.rawValue)))
        ldns_rr_set_class(rr, ldns_rr_class(rawValue: UInt32(rrClass.rawValue)))
        return rr
    }

    private static func newRR(_ record: ResourceRecord) throws(WireError) -> LDNSRecord {
        let rr = try newRR(owner: record.name, type: record.type, rrClass: record.rrClass)
        ldns_rr_set_ttl(rr, record.ttl)
        switch record.data {
        case .a(let bytes):
            ldns_rr_push_rdf(rr, newRDF(LDNS_RDF_TYPE_A, bytes))
        case .aaaa(let bytes):
            ldns_rr_push_rdf(rr, newRDF(LDNS_RDF_TYPE_AAAA, bytes))
        case .txt(let strings):
            for string in strings {
                guard string.count <= 255 else {
                    ldns_rr_free(rr)
                    throw WireError(.stringTooLong, "a TXT character-string of \(string.count) bytes (at most 255)")
                }
                ldns_rr_push_rdf(rr, newRDF(LDNS_RDF_TYPE_STR, [UInt8(string.count)] + string))
            }
        case .other(_, let bytes):
            if !bytes.isEmpty { ldns_rr_push_rdf(rr, newRDF(LDNS_RDF_TYPE_UNKNOWN, bytes)) }
        }
        return rr
    }

    private static func newRDF(_ type: ldns_rdf_type, _ bytes: [UInt8]) -> LDNSData {
        bytes.withUnsafeBytes { ldns_rdf_new_frm_data(type, $0.count, $0.baseAddress)! }
    }
}
