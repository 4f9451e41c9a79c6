internal import CLDNS
import Glibc

/// A domain name (RFC 1035 section 3.1), kept in uncompressed wire form with the case it
/// arrived in. Comparison and hashing ignore ASCII case, as DNS does (RFC 4343).
///
/// Presentation-format parsing and printing are libldns's; this type only carries the bytes.
public struct DomainName: Hashable, Sendable, CustomStringConvertible {
    /// Uncompressed wire form, case as given, ending in the root label.
    public let wire: [UInt8]
    /// Presentation form, absolute (trailing dot), as libldns prints it. Computed when asked:
    /// most names a server decodes are only compared, never printed.
    ///
    /// A name whose labels are only letters, digits, '-' and '_' prints as its labels joined
    /// by dots (libldns escapes none of those), so that form is built from the bytes; every
    /// other name goes through libldns. Anonymous answers print the names they carry, and
    /// libldns's printing (a name object, a buffer, a copy) was 5 % of such an answer.
    public var text: String { plainText ?? ldnsText }

    /// The presentation form as libldns prints it.
    var ldnsText: String {
        LDNS.withName(wire) { rdf in LDNS.string(ldns_rdf2str(rdf)) ?? "." }
    }

    /// The presentation form of a name of plain labels; nil for the root or any other byte.
    private var plainText: String? {
        wire.withUnsafeBufferPointer { wire -> String? in
            guard wire.count > 1 else { return nil }
            return String(unsafeUninitializedCapacity: wire.count - 1) { text in
                var index = 0
                while index < wire.count, wire[index] != 0 {
                    let end = index + 1 + Int(wire[index])
                    guard end < wire.count else { return 0 }
                    for position in index + 1..<end {
                        guard Self.printsAsItself(wire[position]), wire[position] != 0x2E else { return 0 }
                        text[position - 1] = wire[position]
                    }
                    text[end - 1] = 0x2E
                    index = end
                }
                return index == wire.count - 1 ? index : 0
            }.nonEmpty
        }
    }
    /// The canonical (lower-case) wire form: RFC 4034 section 6.2.
    public let canonicalWire: [UInt8]

    public static let root = try! DomainName("." as String)

    /// Parses a name in presentation format. A name without a trailing dot is taken as absolute.
    public init(_ text: String) throws(WireError) {
        guard let rdf = ldns_dname_new_frm_str(text) else {
            throw WireError(.malformedName, "'\(text)' is not a domain name")
        }
        defer { ldns_rdf_deep_free(rdf) }
        self.init(wire: LDNS.bytes(of: rdf))
    }

    /// Parses a name that must already be in the canonical form KMS1 values use: absolute
    /// (trailing dot), lower case, no escapes. Nothing is normalised.
    public init(canonical text: String) throws(WireError) {
        guard text.hasSuffix("."), !text.utf8.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) else {
            throw WireError(.malformedName, "'\(text)' is not absolute and lower case")
        }
        let name = try DomainName(text)
        // Labels of letters, digits, '-' and '_' print back as they are (libldns escapes
        // nothing else here), so the round trip below only runs for other text: it was a
        // print of every name in every KMS1 value read, a visible share of a signed answer.
        // (The checks walk the UTF-8 bytes: `String.contains("..")` is Foundation's search,
        // 1 % of a signed answer.)
        let utf8 = text.utf8
        if utf8.first != 0x2E, !zip(utf8, utf8.dropFirst()).contains(where: { $0 == 0x2E && $1 == 0x2E }),
            utf8.allSatisfy(Self.printsAsItself)
        {
            self = name
            return
        }
        guard name.text == text else {
            throw WireError(.malformedName, "'\(text)' is not in canonical form (\(name.text))")
        }
        self = name
    }

    private static func printsAsItself(_ byte: UInt8) -> Bool {
        (byte >= 0x61 && byte <= 0x7A) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x30 && byte <= 0x39) || byte == 0x2D
            || byte == 0x5F || byte == 0x2E
    }

    /// Takes uncompressed wire-form bytes that libldns produced or validated, or that were a
    /// name's own `wire` or `canonicalWire` (the registry's entries keep the latter); nothing
    /// is checked.
    package init(wire: [UInt8]) {
        self.wire = wire
        // A name already in lower case (most are) shares one buffer for both forms.
        if wire.contains(where: { $0 >= 0x41 && $0 <= 0x5A }) {
            self.canonicalWire = wire.map { $0 >= 0x41 && $0 <= 0x5A ? $0 | 0x20 : $0 }
        } else {
            self.canonicalWire = wire
        }
    }

    /// True when every letter is lower case, as KMS1 requires of names inside values.
    public var isLowerCase: Bool { wire == canonicalWire }

    /// This name in lower case.
    public var lowercased: DomainName { isLowerCase ? self : DomainName(wire: canonicalWire) }

    /// The labels in lower case, leftmost first, without the root label.
    public var lowercasedLabels: [String] {
        var labels: [String] = []
        var index = 0
        while index < canonicalWire.count, canonicalWire[index] != 0 {
            let length = Int(canonicalWire[index])
            let start = index + 1
            labels.append(String(decoding: canonicalWire[start..<min(start + length, canonicalWire.count)], as: UTF8.self))
            index = start + length
        }
        return labels
    }

    /// Number of labels, not counting the root label.
    public var labelCount: Int {
        LDNS.withName(wire) { Int(ldns_dname_label_count($0)) }
    }

    /// The name with its leftmost label removed; nil for the root. (The wire form is
    /// uncompressed and validated, so this is the bytes after the first label.)
    public var parent: DomainName? {
        guard let first = wire.first, first != 0 else { return nil }
        return DomainName(wire: Array(wire[(1 + Int(first))...]))
    }

    /// True when this name lies strictly below `ancestor`.
    /// Compares label boundaries of the canonical wire forms, without allocating: it runs for
    /// every request (routing), where libldns's version built two names each time.
    public func isSubdomain(of ancestor: DomainName) -> Bool {
        let mine = canonicalWire
        let theirs = ancestor.canonicalWire
        guard mine.count > theirs.count else { return false }
        var index = 0
        while index < mine.count, mine[index] != 0 {
            index += 1 + Int(mine[index])
            let left = mine.count - index
            if left == theirs.count { return mine[index...].elementsEqual(theirs) }
            if left < theirs.count { return false }
        }
        return false
    }

    /// True when this name equals `ancestor` or lies below it ("in bailiwick").
    public func isEqualOrSubdomain(of ancestor: DomainName) -> Bool {
        self == ancestor || isSubdomain(of: ancestor)
    }

    /// One `memcmp` of the canonical forms (every table lookup of a name ends in this; the
    /// generic element-by-element array comparison was a visible share of an address answer).
    public static func == (lhs: DomainName, rhs: DomainName) -> Bool {
        lhs.canonicalWire.withUnsafeBytes { left in
            rhs.canonicalWire.withUnsafeBytes { right in
                left.count == right.count && (left.count == 0 || memcmp(left.baseAddress!, right.baseAddress!, left.count) == 0)
            }
        }
    }

    /// The bytes in one call (hashing an array of bytes element by element was the largest
    /// cost of loading a million names into a table).
    public func hash(into hasher: inout Hasher) {
        canonicalWire.withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    public var description: String { text }
}

extension DomainName: ExpressibleByStringLiteral {
    /// For literals in code and tests only; a malformed literal is a programming error.
    public init(stringLiteral value: String) {
        do { try self.init(value) } catch { preconditionFailure("\(error)") }
    }
}

extension String {
    /// nil for the empty string.
    fileprivate var nonEmpty: String? { isEmpty ? nil : self }
}
