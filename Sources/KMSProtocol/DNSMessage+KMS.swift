public import DNSWire

extension DNSMessage {
    /// The one KMS record this message carries, checked to be in the section its tag travels
    /// in (PROTOCOL.md section 3). Nil when the message has no KMS record (a plain DNS query).
    public func kmsRecord() throws(ProtocolError) -> KMSRecord? {
        var found: (KMSRecord, MessageSection)?
        // Each section in turn, without gathering them in a new array: most queries a server
        // reads (an A, a plain TXT) have no records outside the question at all.
        func scan(_ records: [ResourceRecord], in section: MessageSection) throws(ProtocolError) {
            for rr in records {
                guard case .txt(let strings) = rr.data,
                    let record = try KMSRecord(owner: rr.name, strings: strings)
                else { continue }
                guard found == nil else {
                    throw ProtocolError(.multipleRecords, "a KMS1 message carries exactly one KMS record")
                }
                found = (record, section)
            }
        }
        try scan(answers, in: .answer)
        try scan(authorities, in: .authority)
        try scan(additionals, in: .additional)
        guard let (record, section) = found else { return nil }
        guard section == record.tag.section else {
            throw ProtocolError(
                .wrongSection, "\(record.tag) belongs in the \(record.tag.section) section, found in \(section)")
        }
        let isQueryRecord = record.tag == .inquiry || record.tag == .signatureRequest || record.tag == .rotate || record.tag == .revoke
        guard isQueryRecord != header.isResponse else {
            throw ProtocolError(
                .wrongSection, "\(record.tag) travels in a \(isQueryRecord ? "query" : "response"), not a \(header.isResponse ? "response" : "query")")
        }
        return record
    }

    /// A KMS1 query: `QNAME=target, QTYPE=TXT`, the signed inquiry or sigreq in the additional
    /// section, EDNS0 advertising 1232 bytes.
    public static func kmsQuery(id: UInt16, target: DomainName, record: KMSRecord) -> DNSMessage {
        var message = DNSMessage.query(id: id, name: target, type: .txt)
        message.additionals = [record.resourceRecord()]
        return message
    }
}
