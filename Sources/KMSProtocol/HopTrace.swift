public import DNSWire

/// Our extension for `kms fetch --trace`: a requester that puts EDNS option 65001 (private-use
/// range, RFC 6891 section 9) in its query asks every KMS on the path to report what it did.
/// Each KMS forwards the option upstream and adds, to the additional section of its reply,
/// ordinary TXT records (owner: the KMS, first string `kms1-trace`, then one note) after
/// those it received from upstream, so the notes arrive in the order the work happened.
///
/// Trace records are informational and unsigned: a requester prints them and never bases a
/// decision on them.
public enum HopTrace {
    public static let optionCode: UInt16 = 65001
    public static let tag = "kms1-trace"

    /// The EDNS option that asks for a trace.
    public static var option: EDNS.Option { EDNS.Option(code: optionCode, data: []) }

    public static func isRequested(by message: DNSMessage) -> Bool {
        message.edns?.options.contains { $0.code == optionCode } ?? false
    }

    /// A trace note by `node`.
    public static func record(node: DomainName, note: String) -> ResourceRecord {
        ResourceRecord(name: node, ttl: 0, data: .txt([Array(tag.utf8), Array(note.utf8.prefix(255))]))
    }

    /// The trace records of a reply, in order.
    public static func records(in message: DNSMessage) -> [ResourceRecord] {
        message.additionals.filter {
            if case .txt(let strings) = $0.data { return strings.first == Array(tag.utf8) }
            return false
        }
    }

    /// The (node, note) pairs of a reply, for printing.
    public static func notes(in message: DNSMessage) -> [(node: DomainName, note: String)] {
        notes(in: records(in: message))
    }

    /// The notes of trace records, in order.
    public static func notes(in records: [ResourceRecord]) -> [(node: DomainName, note: String)] {
        records.compactMap { record in
            guard case .txt(let strings) = record.data, strings.count >= 2 else { return nil }
            return (record.name, String(decoding: strings[1], as: UTF8.self))
        }
    }
}
