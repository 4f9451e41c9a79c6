import DNSWire
import Glibc
import KMSProtocol

/// A registered host as the registry keeps it: one heap buffer per host, so that a million
/// hosts fit in a few hundred megabytes and load in seconds. The key stays DER
/// SubjectPublicKeyInfo bytes (decoded by OpenSSL only when used), addresses are packed bytes,
/// and the countersignatures published for the host as zone data (`StaticRecords`) follow in
/// the same buffer: their target and key are the host's, so each is a signer, a validity and a
/// signature.
///
/// The entry also carries the host's name (canonical wire form), so that the registry's table
/// (`HostTable`) finds a host by comparing the name in the entry it lands on: the entry is read
/// anyway, and a separate name buffer per host was one more cache miss per look-up and about
/// 60 bytes per host.
///
/// Layout, integers little-endian:
///
///     v4 count (2) | v6 count (2) | key length (2) | registered at (8) | name length (1)
///     name (canonical wire form) | v4 addresses (4 each) | v6 addresses (16 each) | key (DER SPKI)
///     published records: signer index (1) | signature length (1) | not before (8) | not after (8) | signature
struct HostEntry: Sendable {
    private(set) var bytes: [UInt8]

    private static let fixedHeaderSize = 15
    private static let recordHeaderSize = 18

    /// A published countersignature without its target and key (the host's).
    struct Publication: Equatable, Sendable {
        /// Index into the registry's table of signers.
        var signer: UInt8
        var notBefore: UnixTime
        var notAfter: UnixTime
        var signature: [UInt8]
    }

    /// Nil when the host has more addresses than the layout counts (65 535 of a family) or a
    /// key longer than 65 535 bytes; registrations are far below both.
    init?(name: DomainName, addresses: [IPAddress], key: [UInt8], registeredAt: UnixTime) {
        let v4 = addresses.filter { !$0.isIPv6 }
        let v6 = addresses.filter(\.isIPv6)
        let wire = name.canonicalWire
        guard v4.count <= UInt16.max, v6.count <= UInt16.max, key.count <= UInt16.max, wire.count <= UInt8.max else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Self.fixedHeaderSize + wire.count + v4.count * 4 + v6.count * 16 + key.count)
        Self.append(UInt16(v4.count), to: &bytes)
        Self.append(UInt16(v6.count), to: &bytes)
        Self.append(UInt16(key.count), to: &bytes)
        Self.append(UInt64(bitPattern: registeredAt), to: &bytes)
        bytes.append(UInt8(wire.count))
        bytes += wire
        for address in v4 + v6 { bytes += address.bytes }
        bytes += key
        self.bytes = bytes
    }

    private var nameLength: Int { Int(bytes[14]) }
    private var headerSize: Int { Self.fixedHeaderSize + nameLength }
    private var v4Count: Int { Int(Self.read(UInt16.self, bytes, at: 0)) }
    private var v6Count: Int { Int(Self.read(UInt16.self, bytes, at: 2)) }
    private var keyStart: Int { headerSize + v4Count * 4 + v6Count * 16 }
    private var keyEnd: Int { keyStart + Int(Self.read(UInt16.self, bytes, at: 4)) }

    var registeredAt: UnixTime { UnixTime(bitPattern: Self.read(UInt64.self, bytes, at: 6)) }

    /// The host's name, lower case (a copy of its bytes: for listings and walks, not look-ups).
    var name: DomainName { DomainName(wire: Array(bytes[Self.fixedHeaderSize..<headerSize])) }

    /// Whether this is the entry of the name whose canonical wire form is `canonicalWire`.
    func isNamed(_ canonicalWire: UnsafeRawBufferPointer) -> Bool {
        bytes.withUnsafeBytes { entry in
            entry.count > Self.fixedHeaderSize && Int(entry[14]) == canonicalWire.count
                && memcmp(entry.baseAddress! + Self.fixedHeaderSize, canonicalWire.baseAddress!, canonicalWire.count) == 0
        }
    }

    /// Lends the name's canonical wire bytes, in place.
    func withName<T>(_ body: (UnsafeRawBufferPointer) -> T) -> T {
        let end = headerSize
        return bytes.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[Self.fixedHeaderSize..<end])) }
    }

    /// The DER SubjectPublicKeyInfo.
    var key: ArraySlice<UInt8> { bytes[keyStart..<keyEnd] }

    func hasKey(_ der: [UInt8]) -> Bool { key.elementsEqual(der) }

    func addresses(ipv6: Bool) -> [IPAddress] {
        let size = ipv6 ? 16 : 4
        let start = ipv6 ? headerSize + v4Count * 4 : headerSize
        let count = ipv6 ? v6Count : v4Count
        return (0..<count).compactMap { IPAddress(bytes: Array(bytes[start + $0 * size..<start + ($0 + 1) * size])) }
    }

    var addresses: [IPAddress] { addresses(ipv6: false) + addresses(ipv6: true) }

    // MARK: Published countersignatures

    var publications: [Publication] {
        var found: [Publication] = []
        forEachRecord { offset, length in
            let start = offset + Self.recordHeaderSize
            found.append(
                Publication(
                    signer: bytes[offset], notBefore: notBefore(at: offset), notAfter: notAfter(at: offset),
                    signature: Array(bytes[start..<start + length])))
        }
        return found
    }

    /// How many records are published (counted in place, for a status over a million hosts).
    var publicationCount: Int {
        var count = 0
        forEachRecord { _, _ in count += 1 }
        return count
    }

    /// The validity of what `signer` published, read in place; nil if it published nothing.
    func validity(of signer: UInt8) -> (notBefore: UnixTime, notAfter: UnixTime)? {
        var found: (UnixTime, UnixTime)?
        forEachRecord { offset, _ in
            if found == nil, bytes[offset] == signer { found = (notBefore(at: offset), notAfter(at: offset)) }
        }
        return found
    }

    /// Calls `body` with each record's offset and signature length.
    private func forEachRecord(_ body: (_ offset: Int, _ signatureLength: Int) -> Void) {
        var offset = keyEnd
        while offset + Self.recordHeaderSize <= bytes.count {
            let length = Int(bytes[offset + 1])
            body(offset, length)
            offset += Self.recordHeaderSize + length
        }
    }

    private func notBefore(at offset: Int) -> UnixTime { UnixTime(bitPattern: Self.read(UInt64.self, bytes, at: offset + 2)) }
    private func notAfter(at offset: Int) -> UnixTime { UnixTime(bitPattern: Self.read(UInt64.self, bytes, at: offset + 10)) }

    var hasPublications: Bool { bytes.count > keyEnd }

    /// Publishes `publication`, replacing the signer's previous one; false if it was already
    /// there or its signature is longer than the layout holds (255 bytes).
    mutating func publish(_ publication: Publication) -> Bool {
        guard publication.signature.count <= UInt8.max else { return false }
        var records = publications
        if let index = records.firstIndex(where: { $0.signer == publication.signer }) {
            guard records[index] != publication else { return false }
            records[index] = publication
        } else {
            records.append(publication)
        }
        setPublications(records)
        return true
    }

    /// Drops every publication; true if there was any.
    mutating func withdrawPublications() -> Bool {
        guard hasPublications else { return false }
        setPublications([])
        return true
    }

    /// This entry with `other`'s publications (the same host re-read or re-registered with the
    /// same key: what was published still speaks for it).
    func keepingPublications(of other: HostEntry) -> HostEntry {
        guard other.hasPublications, other.key.elementsEqual(key) else { return self }
        var copy = self
        copy.bytes = Array(bytes[..<keyEnd]) + other.bytes[other.keyEnd...]  // the records as they are
        return copy
    }

    private mutating func setPublications(_ records: [Publication]) {
        var fresh = Array(bytes[..<keyEnd])
        fresh.reserveCapacity(keyEnd + records.reduce(0) { $0 + Self.recordHeaderSize + $1.signature.count })
        for record in records {
            fresh.append(record.signer)
            fresh.append(UInt8(record.signature.count))
            Self.append(UInt64(bitPattern: record.notBefore), to: &fresh)
            Self.append(UInt64(bitPattern: record.notAfter), to: &fresh)
            fresh += record.signature
        }
        bytes = fresh
    }

    // MARK: Integers

    private static func append<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { bytes += $0 }
    }

    private static func read<T: FixedWidthInteger>(_: T.Type, _ bytes: [UInt8], at offset: Int) -> T {
        var value: T = 0
        for index in (0..<MemoryLayout<T>.size).reversed() { value = value << 8 | T(bytes[offset + index]) }
        return value
    }
}
