public import DNSWire
public import KMSCrypto

// The transparency log of countersignatures (docs/PROTOCOL.md, "The transparency log"): each
// signer KMS appends every countersignature it issues to an append-only RFC 9162 Merkle tree
// and signs the tree's head. These are its records. They are TXT data tagged `kms1-…` (with a
// dash), never `kms1:…` message records, so a KMS1 message still carries exactly one of those.

/// One leaf of a signer's log: a countersignature it issued and the second it logged it.
///
///     "kms1-entry" "target=…" "key=…" "signer=…" "not-before=…" "not-after=…" "countersig=…" "logged=…"
///
/// The leaf input (RFC 9162's `entry`) is these strings in TXT wire form (each with its length
/// octet), so anyone holding the entry can hash it.
public struct LogEntry: Hashable, Sendable {
    public static let tag = "kms1-entry"
    static let fields = ["target", "key", "signer", "not-before", "not-after", "countersig", "logged"]

    public let countersignature: Countersignature
    public let loggedAt: UnixTime

    public init(_ countersignature: Countersignature, loggedAt: UnixTime) {
        self.countersignature = countersignature
        self.loggedAt = loggedAt
    }

    public var strings: [[UInt8]] {
        let c = countersignature
        return [Self.tag, "target=\(c.target.text)", "key=\(KeyField.encode(c.key))", "signer=\(c.signer.text)",
                "not-before=\(c.notBefore)", "not-after=\(c.notAfter)", "countersig=\(Base64.encode(c.signature))",
                "logged=\(loggedAt)"].map { Array($0.utf8) }
    }

    public var leafInput: [UInt8] { RData.txtWire(strings) }
    public var leafHash: [UInt8] { Merkle.leafHash(leafInput) }

    /// An entry as the log serves it: `index=` after the tag, then the entry's strings.
    public func strings(index: UInt64) -> [[UInt8]] {
        var strings = self.strings
        strings.insert(Array("index=\(index)".utf8), at: 1)
        return strings
    }

    /// Reads an entry as the log serves it, with its index. Nil for TXT that is not an entry.
    public static func parse(served strings: [[UInt8]]) throws(ProtocolError) -> (index: UInt64, entry: LogEntry)? {
        guard strings.first == Array(tag.utf8) else { return nil }
        guard strings.count > 1, let text = String(validating: strings[1], as: UTF8.self), text.hasPrefix("index=") else {
            throw ProtocolError(.unexpectedField, "\(tag) served by a log starts with index=", field: "index")
        }
        let index = UInt64(try Decimal.parse(String(text.dropFirst(6)), field: "index"))
        var rest = strings
        rest.remove(at: 1)
        return (index, try LogEntry(strings: rest)!)
    }

    /// Reads an entry in its leaf form. Nil for TXT that is not an entry.
    public init?(strings: [[UInt8]]) throws(ProtocolError) {
        guard strings.first == Array(Self.tag.utf8) else { return nil }
        let values = try LogFields.parse(strings, tag: Self.tag, fields: Self.fields).fixed
        countersignature = Countersignature(
            target: try CanonicalName.parse(values[0], field: "target"), key: try KeyField.decode(values[1]),
            signer: try CanonicalName.parse(values[2], field: "signer"),
            notBefore: try Decimal.parse(values[3], field: "not-before"),
            notAfter: try Decimal.parse(values[4], field: "not-after"),
            signature: try Base64.decode(values[5], field: "countersig"))
        loggedAt = try Decimal.parse(values[6], field: "logged")
    }
}

/// A signed tree head: the signer's statement that its log held `size` entries with root
/// `root` at `time`.
///
///     xx. TXT "kms1-head" "signer=xx." "size=42" "root=<base64>" "time=…" "sig=<base64>"
///
/// `sig=` is the signer's signature over "KMS1", the owner (the signer) in canonical wire form
/// and the strings before `sig=` with their length octets: the input of PROTOCOL.md section 3.
public struct TreeHead: Hashable, Sendable {
    public static let tag = "kms1-head"

    public let signer: DomainName
    public let size: UInt64
    public let root: [UInt8]
    public let time: UnixTime
    public let signature: [UInt8]

    public init(signer: DomainName, size: UInt64, root: [UInt8], time: UnixTime, signature: [UInt8]) {
        self.signer = signer
        self.size = size
        self.root = root
        self.time = time
        self.signature = signature
    }

    public static func sign(signer: DomainName, size: UInt64, root: [UInt8], time: UnixTime, key: PrivateKey) throws(CryptoError) -> TreeHead {
        let input = signatureInput(signer: signer, size: size, root: root, time: time)
        return TreeHead(signer: signer, size: size, root: root, time: time, signature: try key.signature(for: input))
    }

    static func unsignedStrings(signer: DomainName, size: UInt64, root: [UInt8], time: UnixTime) -> [[UInt8]] {
        [tag, "signer=\(signer.text)", "size=\(size)", "root=\(Base64.encode(root))", "time=\(time)"].map { Array($0.utf8) }
    }

    static func signatureInput(signer: DomainName, size: UInt64, root: [UInt8], time: UnixTime) -> [UInt8] {
        KMSRecord.signatureInput(owner: signer, strings: unsignedStrings(signer: signer, size: size, root: root, time: time))
    }

    public var strings: [[UInt8]] {
        Self.unsignedStrings(signer: signer, size: size, root: root, time: time) + [Array("sig=\(Base64.encode(signature))".utf8)]
    }

    public func record(ttl: UInt32 = 0) -> ResourceRecord { ResourceRecord(name: signer, ttl: ttl, data: .txt(strings)) }

    /// Reads a head. Nil for TXT that is not one.
    public init?(owner: DomainName, strings: [[UInt8]]) throws(ProtocolError) {
        guard strings.first == Array(Self.tag.utf8) else { return nil }
        let values = try LogFields.parse(strings, tag: Self.tag, fields: ["signer", "size", "root", "time", "sig"])
        signer = try CanonicalName.parse(values.fixed[0], field: "signer")
        guard owner == signer else { throw ProtocolError(.ownerMismatch, "a head at \(owner) speaks for \(signer)", field: "signer") }
        size = UInt64(try Decimal.parse(values.fixed[1], field: "size"))
        root = try Base64.decode(values.fixed[2], field: "root")
        guard root.count == Merkle.hashSize else { throw ProtocolError(.unexpectedField, "a root is 32 bytes", field: "root") }
        time = try Decimal.parse(values.fixed[3], field: "time")
        signature = try Base64.decode(values.fixed[4], field: "sig")
    }

    /// Throws unless the signer's key made this head.
    public func verify(by key: PublicKey) throws(ProtocolError) {
        guard key.isValidSignature(signature, for: Self.signatureInput(signer: signer, size: size, root: root, time: time)) else {
            throw ProtocolError(.badSignature, "the tree head of size \(size) is not signed by \(signer)", field: "sig")
        }
    }
}

/// Where a countersignature sits in its signer's log, and the head that proves it:
///
///     hostb.c.a.xx. TXT "kms1-proof" "signer=xx." "index=7" "size=9" "logged=…" "path=<base64>"…
///
/// with the `kms1-head` of that size beside it. One `path=` string per hash, leaf side first
/// (RFC 9162 section 2.1.3.1).
public struct InclusionProof: Hashable, Sendable {
    public static let tag = "kms1-proof"

    public let target: DomainName
    public let index: UInt64
    public let loggedAt: UnixTime
    public let path: [[UInt8]]
    public let head: TreeHead

    public init(target: DomainName, index: UInt64, loggedAt: UnixTime, path: [[UInt8]], head: TreeHead) {
        self.target = target
        self.index = index
        self.loggedAt = loggedAt
        self.path = path
        self.head = head
    }

    public var records: [ResourceRecord] {
        let strings = [InclusionProof.tag, "signer=\(head.signer.text)", "index=\(index)", "size=\(head.size)", "logged=\(loggedAt)"]
            .map { Array($0.utf8) } + path.map { Array("path=\(Base64.encode($0))".utf8) }
        return [ResourceRecord(name: target, ttl: 0, data: .txt(strings)), head.record()]
    }

    /// The proof about `target` among a reply's records, with its head; nil if there is none.
    public static func find(for target: DomainName, in records: [ResourceRecord]) throws(ProtocolError) -> InclusionProof? {
        var fields: LogFields.Values?
        var heads: [TreeHead] = []
        for rr in records {
            guard case .txt(let strings) = rr.data else { continue }
            if rr.name == target, strings.first == Array(tag.utf8) {
                fields = try LogFields.parse(strings, tag: tag, fields: ["signer", "index", "size", "logged"], repeating: "path")
            } else if let head = try TreeHead(owner: rr.name, strings: strings) {
                heads.append(head)
            }
        }
        guard let fields else { return nil }
        let signer = try CanonicalName.parse(fields.fixed[0], field: "signer")
        let size = UInt64(try Decimal.parse(fields.fixed[2], field: "size"))
        guard let head = heads.first(where: { $0.signer == signer && $0.size == size }) else {
            throw ProtocolError(.missingField, "the proof names \(signer)'s head of size \(size), which the reply lacks", field: "size")
        }
        var path: [[UInt8]] = []
        for text in fields.repeated {
            let hash = try Base64.decode(text, field: "path")
            guard hash.count == Merkle.hashSize else { throw ProtocolError(.unexpectedField, "a path hash is 32 bytes", field: "path") }
            path.append(hash)
        }
        return InclusionProof(
            target: target, index: UInt64(try Decimal.parse(fields.fixed[1], field: "index")),
            loggedAt: try Decimal.parse(fields.fixed[3], field: "logged"), path: path, head: head)
    }

    /// Throws unless `countersignature` is in `signer`'s log: the head is signed by the signer,
    /// and the path leads from the entry to the head's root.
    public func verify(_ countersignature: Countersignature, signerKey: PublicKey) throws(ProtocolError) {
        guard head.signer == countersignature.signer else {
            throw ProtocolError(.signerMismatch, "the proof is from \(head.signer)'s log, the countersignature by \(countersignature.signer)", field: "signer")
        }
        try head.verify(by: signerKey)
        let leaf = LogEntry(countersignature, loggedAt: loggedAt).leafHash
        guard Merkle.root(fromInclusion: path, index: index, size: head.size, leafHash: leaf) == head.root else {
            throw ProtocolError(
                .badCountersignature,
                "the inclusion proof (index \(index)) does not lead to the root of \(head.signer)'s tree of size \(head.size): this countersignature is not shown to be in the log",
                field: "path")
        }
    }
}

/// That a signer's tree of `new` entries extends its tree of `old` entries (RFC 9162 section
/// 2.1.4.1): "kms1-consistency" "old=…" "new=…" "path=<base64>"…
public struct ConsistencyProof: Hashable, Sendable {
    public static let tag = "kms1-consistency"

    public let old: UInt64
    public let new: UInt64
    public let path: [[UInt8]]

    public init(old: UInt64, new: UInt64, path: [[UInt8]]) {
        self.old = old
        self.new = new
        self.path = path
    }

    public var strings: [[UInt8]] {
        [Self.tag, "old=\(old)", "new=\(new)"].map { Array($0.utf8) } + path.map { Array("path=\(Base64.encode($0))".utf8) }
    }

    public init?(strings: [[UInt8]]) throws(ProtocolError) {
        guard strings.first == Array(Self.tag.utf8) else { return nil }
        let values = try LogFields.parse(strings, tag: Self.tag, fields: ["old", "new"], repeating: "path")
        old = UInt64(try Decimal.parse(values.fixed[0], field: "old"))
        new = UInt64(try Decimal.parse(values.fixed[1], field: "new"))
        var path: [[UInt8]] = []
        for text in values.repeated { path.append(try Base64.decode(text, field: "path")) }
        self.path = path
    }
}

/// The names a signer's log answers at, under `_kms1log.<signer>` (TXT, best over TCP):
///
///     _head._kms1log.xx.                    the latest signed tree head
///     <first>-<end>._entries._kms1log.xx.   entries first ..< end (at most `maxEntries`)
///     <old>-<new>._consistency._kms1log.xx. a consistency proof between two sizes
public enum LogQuery: Hashable, Sendable {
    case head
    case entries(first: UInt64, end: UInt64)
    case consistency(old: UInt64, new: UInt64)

    public static let label = "_kms1log"
    /// Entries per reply: about 45 kB, under the 64 kB of a DNS message over TCP.
    public static let maxEntries: UInt64 = 100

    public func name(signer: DomainName) -> DomainName? {
        let prefix: String
        switch self {
        case .head: prefix = "_head"
        case .entries(let first, let end): prefix = "\(first)-\(end)._entries"
        case .consistency(let old, let new): prefix = "\(old)-\(new)._consistency"
        }
        return try? DomainName("\(prefix).\(Self.label).\(signer.text)")
    }

    /// Whether `name` is under `_kms1log.<signer>`: a comparison of wire bytes, cheap enough
    /// for every TXT query of the zone (the full parse builds strings).
    public static func isUnder(_ name: DomainName, signer: DomainName) -> Bool {
        let wire = name.canonicalWire
        let zone = signer.canonicalWire
        guard wire.count > labelWire.count + zone.count else { return false }
        let labelStart = wire.count - zone.count - labelWire.count
        return wire[(labelStart + labelWire.count)...].elementsEqual(zone)
            && wire[labelStart..<(labelStart + labelWire.count)].elementsEqual(labelWire)
    }

    private static let labelWire: [UInt8] = [UInt8(label.utf8.count)] + Array(label.utf8)

    /// The log query `name` asks of `signer`'s log, if it is one.
    public init?(name: DomainName, signer: DomainName) {
        guard Self.isUnder(name, signer: signer) else { return nil }
        let text = name.lowercased.text
        let suffix = ".\(Self.label).\(signer.lowercased.text)"
        guard text.hasSuffix(suffix) else { return nil }
        let labels = text.dropLast(suffix.count).split(separator: ".")
        if labels == ["_head"] {
            self = .head
            return
        }
        guard labels.count == 2 else { return nil }
        let range = labels[0].split(separator: "-")
        guard range.count == 2, let low = UInt64(range[0]), let high = UInt64(range[1]), low <= high else { return nil }
        switch labels[1] {
        case "_entries": self = .entries(first: low, end: high)
        case "_consistency": self = .consistency(old: low, new: high)
        default: return nil
        }
    }
}

/// EDNS option 65004 (private use, like the others of docs/PROTOCOL.md): a request that wants
/// the countersignature's inclusion proof beside the answer. Empty.
public enum AuditRequest {
    public static let optionCode: UInt16 = 65004
    public static let option = EDNS.Option(code: optionCode, data: [])

    public static func isRequested(by message: DNSMessage) -> Bool {
        message.edns?.options.contains { $0.code == optionCode } ?? false
    }
}

/// The `name=value` strings of the `kms1-…` log records, in a fixed order, optionally followed
/// by any number of one repeated field.
enum LogFields {
    struct Values {
        var fixed: [String] = []
        var repeated: [String] = []
    }

    static func parse(_ strings: [[UInt8]], tag: String, fields: [String], repeating: String? = nil) throws(ProtocolError) -> Values {
        var values = Values()
        let body = strings.dropFirst()
        guard body.count >= fields.count, repeating != nil || body.count == fields.count else {
            throw ProtocolError(.unexpectedField, "\(tag) has \(fields.count) fields, this one has \(body.count)")
        }
        for (position, string) in body.enumerated() {
            let name = position < fields.count ? fields[position] : repeating!
            let text = String(decoding: string, as: UTF8.self)
            guard text.hasPrefix(name + "=") else {
                throw ProtocolError(.unexpectedField, "\(tag): expected \(name)=, found '\(text.prefix(20))'", field: name)
            }
            let value = String(text.dropFirst(name.count + 1))
            if position < fields.count { values.fixed.append(value) } else { values.repeated.append(value) }
        }
        return values
    }
}
