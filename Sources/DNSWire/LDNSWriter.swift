internal import CLDNS
import Glibc

/// Writes a message with libldns's writer without building libldns's heap objects.
///
/// `toLDNS()` allocates a packet, a header, four record lists, and per name and per field a
/// record or an rdf holding its own copy of the bytes, then frees them all once written: most
/// of what encoding an answer cost (`perf`, docs/BENCHMARKS.md). Here the same libldns
/// structures (`ldns_pkt`, `ldns_rr`, `ldns_rdf`, …) are laid out in one scratch allocation on
/// the stack, their bytes copied once into it, and the same libldns function writes them
/// (`ldns_pkt2buffer_wire_compress`, without compression, as `wire()` writes every message
/// under 512 bytes). The OPT pseudo-record (RFC 6891 section 6.1.2) is laid out as the
/// additional record libldns itself makes of a packet's EDNS fields, so it needs none of
/// libldns's EDNS allocations either.
///
/// A message this does not take (larger than `limit`; a TXT string over 255 octets, which is
/// an error the general path reports) returns nil and goes the general way. `LDNSWriterTests`
/// checks that both ways write the same bytes.
enum LDNSWriter {
    /// What a message needs: records (the OPT record included), RDATA fields, bytes to copy,
    /// and its size on the wire.
    private struct Counts {
        var records = 0
        var fields = 0
        var bytes = 0
        var wire = DNSMessage.headerSize
    }

    static func uncompressed(_ message: DNSMessage, limit: Int) -> [UInt8]? {
        // Pass 1: how many structures and bytes, and the exact size on the wire.
        var counts = Counts()
        for question in message.questions {
            counts.bytes += question.name.wire.count
            counts.wire += question.name.wire.count + 4
        }
        func measure(_ section: [ResourceRecord]) -> Bool {
            for record in section {
                guard let length = dataLength(record.data) else { return false }
                counts.records += 1
                counts.fields += fieldCount(record.data)
                counts.bytes += record.name.wire.count + length
                counts.wire += record.name.wire.count + 10 + length
            }
            return true
        }
        guard measure(message.answers), measure(message.authorities), measure(message.additionals) else { return nil }
        let options = message.edns.map { $0.options.reduce(0) { $0 + 4 + $1.data.count } }
        if let options {
            counts.records += 1
            counts.fields += options > 0 ? 1 : 0
            counts.bytes += 1 + options
            counts.wire += 1 + 10 + options
        }
        guard counts.wire <= limit else { return nil }

        // Pass 2: lay the structures out and let libldns write them.
        let questionCount = message.questions.count
        var layout = Layout()
        let rdfs = layout.region(ldns_rdf.self, count: questionCount + counts.records + counts.fields)
        let records = layout.region(ldns_rr.self, count: questionCount + counts.records)
        let fields = layout.region(UnsafeMutablePointer<ldns_rdf>?.self, count: counts.fields)
        let listed = layout.region(UnsafeMutablePointer<ldns_rr>?.self, count: questionCount + counts.records)
        let lists = layout.region(ldns_rr_list.self, count: 4)
        let header = layout.region(ldns_hdr.self, count: 1)
        let packet = layout.region(ldns_pkt.self, count: 1)
        let bytes = layout.region(UInt8.self, count: counts.bytes)

        return withUnsafeTemporaryAllocation(byteCount: layout.size, alignment: Layout.alignment) { scratch in
            var arena = Arena(scratch: scratch, rdfs: rdfs, records: records, fields: fields, listed: listed, bytes: bytes)
            let listPointers = scratch.baseAddress!.advanced(by: lists.offset).bindMemory(to: ldns_rr_list.self, capacity: 4)

            func list(_ index: Int, _ start: Int, _ count: Int) {
                listPointers[index] = ldns_rr_list(
                    _rr_count: count, _rr_capacity: count, _rrs: count > 0 ? arena.listed + start : nil)
            }
            var listedCount = 0
            for question in message.questions {
                arena.addRecord(owner: question.name.wire, type: question.type.rawValue, rrClass: question.rrClass.rawValue, ttl: 0, question: true)
            }
            list(0, listedCount, questionCount)
            listedCount += questionCount
            func add(_ index: Int, _ section: [ResourceRecord]) {
                for record in section {
                    arena.addRecord(owner: record.name.wire, type: record.type.rawValue, rrClass: record.rrClass.rawValue, ttl: record.ttl, question: false)
                    switch record.data {
                    case .a(let data):
                        arena.addField(LDNS_RDF_TYPE_A, data)
                    case .aaaa(let data):
                        arena.addField(LDNS_RDF_TYPE_AAAA, data)
                    case .txt(let strings):
                        for string in strings { arena.addField(LDNS_RDF_TYPE_STR, string, lengthPrefixed: true) }
                    case .other(_, let data):
                        if !data.isEmpty { arena.addField(LDNS_RDF_TYPE_UNKNOWN, data) }
                    }
                }
                var count = section.count
                if index == 2, let edns = message.edns, let options {
                    // RFC 6891 section 6.1.3: CLASS is the payload size; TTL the upper rcode
                    // bits, the version and the DO flag.
                    let ttl = UInt32(truncatingIfNeeded: message.header.rcode.rawValue >> 4) << 24
                        | UInt32(edns.version) << 16 | (edns.dnssecOK ? 0x8000 : 0)
                    arena.addRecord(owner: [0], type: RRType.opt.rawValue, rrClass: edns.payloadSize, ttl: ttl, question: false)
                    if options > 0 { arena.addOptions(edns.options, length: options) }
                    count += 1
                }
                list(index + 1, listedCount, count)
                listedCount += count
            }
            add(0, message.answers)
            add(1, message.authorities)
            add(2, message.additionals)

            let head = message.header
            let headerPointer = scratch.baseAddress!.advanced(by: header.offset).bindMemory(to: ldns_hdr.self, capacity: 1)
            var value = ldns_hdr()
            value._id = head.id
            value._qr = head.isResponse.ldns
            value._aa = head.isAuthoritative.ldns
            value._tc = head.isTruncated.ldns
            value._rd = head.recursionDesired.ldns
            value._cd = head.checkingDisabled.ldns
            value._ra = head.recursionAvailable.ldns
            value._ad = head.authenticData.ldns
            value._opcode = ldns_pkt_opcode(rawValue: UInt32(head.opcode.rawValue))
            value._rcode = UInt8(head.rcode.rawValue & 0x0F)
            value._qdcount = UInt16(questionCount)
            value._ancount = UInt16(message.answers.count)
            value._nscount = UInt16(message.authorities.count)
            value._arcount = UInt16(message.additionals.count + (message.edns == nil ? 0 : 1))
            headerPointer.initialize(to: value)

            let packetPointer = scratch.baseAddress!.advanced(by: packet.offset).bindMemory(to: ldns_pkt.self, capacity: 1)
            var made = ldns_pkt()
            made._header = headerPointer
            made._question = listPointers
            made._answer = listPointers + 1
            made._authority = listPointers + 2
            made._additional = listPointers + 3
            packetPointer.initialize(to: made)

            // The output buffer is malloc'ed, as libldns's own are: should it ever need more
            // room than computed, libldns grows it (realloc) instead of writing past it.
            guard let data = malloc(counts.wire) else { return nil }
            var buffer = ldns_buffer()
            buffer._data = data.assumingMemoryBound(to: UInt8.self)
            buffer._capacity = counts.wire
            buffer._limit = counts.wire
            buffer._status = LDNS_STATUS_OK
            defer { free(buffer._data) }
            guard ldns_pkt2buffer_wire_compress(&buffer, packetPointer, nil) == LDNS_STATUS_OK else { return nil }
            return Array(UnsafeBufferPointer(start: buffer._data, count: ldns_buffer_position(&buffer)))
        }
    }

    /// RDATA length, or nil for data only the general path handles (it reports the error).
    private static func dataLength(_ data: RData) -> Int? {
        switch data {
        case .a(let bytes), .aaaa(let bytes): return bytes.count
        case .txt(let strings):
            guard strings.allSatisfy({ $0.count <= 255 }) else { return nil }
            return strings.reduce(0) { $0 + 1 + $1.count }
        case .other(_, let bytes): return bytes.count
        }
    }

    private static func fieldCount(_ data: RData) -> Int {
        switch data {
        case .a, .aaaa: return 1
        case .txt(let strings): return strings.count
        case .other(_, let bytes): return bytes.isEmpty ? 0 : 1
        }
    }

    /// Offsets of typed regions in one allocation.
    private struct Layout {
        static let alignment = 16
        var size = 0

        struct Region {
            let offset: Int
            let count: Int
        }

        mutating func region<T>(_ type: T.Type, count: Int) -> Region {
            let align = MemoryLayout<T>.alignment
            let offset = (size + align - 1) / align * align
            size = offset + MemoryLayout<T>.stride * count
            return Region(offset: offset, count: count)
        }
    }

    /// Fills the regions in order: rdfs, records, field pointers, listed records, bytes.
    private struct Arena {
        let rdfs: UnsafeMutablePointer<ldns_rdf>
        let records: UnsafeMutablePointer<ldns_rr>
        let fields: UnsafeMutablePointer<UnsafeMutablePointer<ldns_rdf>?>
        let listed: UnsafeMutablePointer<UnsafeMutablePointer<ldns_rr>?>
        let bytes: UnsafeMutablePointer<UInt8>
        var nextRDF = 0
        var nextRecord = 0
        var nextField = 0
        var nextByte = 0

        init(scratch: UnsafeMutableRawBufferPointer, rdfs: Layout.Region, records: Layout.Region, fields: Layout.Region, listed: Layout.Region, bytes: Layout.Region) {
            let base = scratch.baseAddress!
            self.rdfs = base.advanced(by: rdfs.offset).bindMemory(to: ldns_rdf.self, capacity: rdfs.count)
            self.records = base.advanced(by: records.offset).bindMemory(to: ldns_rr.self, capacity: records.count)
            self.fields = base.advanced(by: fields.offset).bindMemory(to: UnsafeMutablePointer<ldns_rdf>?.self, capacity: fields.count)
            self.listed = base.advanced(by: listed.offset).bindMemory(to: UnsafeMutablePointer<ldns_rr>?.self, capacity: listed.count)
            self.bytes = base.advanced(by: bytes.offset).bindMemory(to: UInt8.self, capacity: bytes.count)
        }

        /// Copies bytes in (with a length octet first, for a character-string) and makes an rdf of them.
        private mutating func rdf(_ type: ldns_rdf_type, _ data: [UInt8], lengthPrefixed: Bool = false) -> UnsafeMutablePointer<ldns_rdf> {
            let start = bytes + nextByte
            if lengthPrefixed {
                start.pointee = UInt8(data.count)
                nextByte += 1
            }
            if !data.isEmpty {
                data.withUnsafeBufferPointer { (bytes + nextByte).update(from: $0.baseAddress!, count: $0.count) }
                nextByte += data.count
            }
            let made = rdfs + nextRDF
            made.initialize(to: ldns_rdf(_size: bytes + nextByte - start, _type: type, _data: UnsafeMutableRawPointer(start)))
            nextRDF += 1
            return made
        }

        mutating func addRecord(owner: [UInt8], type: UInt16, rrClass: UInt16, ttl: UInt32, question: Bool) {
            let name = rdf(LDNS_RDF_TYPE_DNAME, owner)
            var record = ldns_rr()
            record._owner = name
            record._ttl = ttl
            record._rd_count = 0
            record._rr_type = ldns_rr_type(rawValue: UInt32(type))
            record._rr_class = ldns_rr_class(rawValue: UInt32(rrClass))
            record._rdata_fields = fields + nextField
            record._rr_question = question.ldns
            let made = records + nextRecord
            made.initialize(to: record)
            (listed + nextRecord).initialize(to: made)
            nextRecord += 1
        }

        /// An RDATA field of the record added last.
        mutating func addField(_ type: ldns_rdf_type, _ data: [UInt8], lengthPrefixed: Bool = false) {
            let field = rdf(type, data, lengthPrefixed: lengthPrefixed)
            (fields + nextField).initialize(to: field)
            nextField += 1
            records[nextRecord - 1]._rd_count += 1
        }

        /// The OPT record's RDATA: each option as code, length, data (RFC 6891 section 6.1.2).
        mutating func addOptions(_ options: [EDNS.Option], length: Int) {
            var data: [UInt8] = []
            data.reserveCapacity(length)
            for option in options {
                data.append(contentsOf: [UInt8(option.code >> 8), UInt8(option.code & 0xFF), UInt8(option.data.count >> 8), UInt8(option.data.count & 0xFF)])
                data.append(contentsOf: option.data)
            }
            addField(LDNS_RDF_TYPE_UNKNOWN, data)
        }
    }
}
