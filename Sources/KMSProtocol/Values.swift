import DNSWire
import Foundation
public import KMSCrypto

// The value encodings of PROTOCOL.md section 2. Each parser accepts only the canonical form
// (a receiver never normalises before verifying) and says which field was wrong.

/// RFC 4648 base64, standard alphabet, with padding.
public enum Base64 {
    public static func encode(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }

    /// Decodes canonical base64 only: text that re-encodes to itself.
    public static func decode(_ text: String, field: String) throws(ProtocolError) -> [UInt8] {
        guard let data = Data(base64Encoded: text), data.base64EncodedString() == text else {
            throw ProtocolError(.badBase64, "'\(text.prefix(40))' is not canonical base64", field: field)
        }
        return Array(data)
    }
}

/// Seconds since the Unix epoch, as decimal text without sign or leading zeros.
public typealias UnixTime = Int64

enum Decimal {
    static func parse(_ text: String, field: String) throws(ProtocolError) -> UnixTime {
        guard let value = UnixTime(text), value >= 0, String(value) == text else {
            throw ProtocolError(.badNumber, "'\(text.prefix(40))' is not a decimal number of seconds", field: field)
        }
        return value
    }
}

/// 16 random bytes that a reply echoes; empty for an anonymous query (PROTOCOL.md section 4).
public struct Nonce: Hashable, Sendable, CustomStringConvertible {
    public static let size = 16
    public static let empty = Nonce(unchecked: [])

    public let bytes: [UInt8]

    init(unchecked bytes: [UInt8]) { self.bytes = bytes }

    public init(bytes: [UInt8]) throws(ProtocolError) {
        guard bytes.isEmpty || bytes.count == Self.size else {
            throw ProtocolError(.badNonce, "a nonce is \(Self.size) bytes, not \(bytes.count)", field: "nonce")
        }
        self.bytes = bytes
    }

    public static func random() throws(CryptoError) -> Nonce {
        Nonce(unchecked: try SecureRandom.bytes(size))
    }

    public var isEmpty: Bool { bytes.isEmpty }

    public var description: String { bytes.isEmpty ? "" : Base64.encode(bytes) }

    static func parse(_ text: String) throws(ProtocolError) -> Nonce {
        if text.isEmpty { return .empty }
        return try Nonce(bytes: Base64.decode(text, field: "nonce"))
    }
}

/// The wire form of a public key: `<alg>:<base64 of the DER SubjectPublicKeyInfo>`.
public enum KeyField {
    public static func encode(_ key: PublicKey) -> String {
        "\(key.algorithm.rawValue):\(Base64.encode(key.subjectPublicKeyInfo))"
    }

    public static func decode(_ text: String, field: String = "key") throws(ProtocolError) -> PublicKey {
        guard let colon = text.firstIndex(of: ":") else {
            throw ProtocolError(.badKey, "a key is <alg>:<base64>", field: field)
        }
        let label = String(text[..<colon])
        guard let algorithm = KeyAlgorithm(rawValue: label) else {
            throw ProtocolError(.badKey, "unknown key algorithm '\(label.prefix(20))'", field: field)
        }
        let der = try Base64.decode(String(text[text.index(after: colon)...]), field: field)
        let key: PublicKey
        do { key = try PublicKey(subjectPublicKeyInfo: der) } catch {
            throw ProtocolError(.badKey, error.reason, field: field)
        }
        guard key.algorithm == algorithm else {
            throw ProtocolError(
                .keyLabelMismatch, "labelled \(algorithm) but the key is \(key.algorithm)", field: field)
        }
        return key
    }
}

enum CanonicalName {
    static func parse(_ text: String, field: String) throws(ProtocolError) -> DomainName {
        do { return try DomainName(canonical: text) } catch {
            throw ProtocolError(.nonCanonicalName, error.reason, field: field)
        }
    }
}

enum CanonicalAddress {
    static func parse(_ text: String, field: String) throws(ProtocolError) -> IPAddress {
        guard let address = IPAddress(canonical: text) else {
            throw ProtocolError(.badAddress, "'\(text.prefix(46))' is not a canonical IP address", field: field)
        }
        return address
    }
}

extension UnixTime {
    /// The time as ISO 8601 in UTC (`2026-11-22T10:14:14Z`), for people: traces, listings.
    public var iso8601: String { isoFormatter.string(from: Date(timeIntervalSince1970: TimeInterval(self))) }
}

/// ISO8601DateFormatter is thread-safe; one serves every caller.
nonisolated(unsafe) private let isoFormatter = ISO8601DateFormatter()
