import DNSWire
@testable import KMSNode
import Testing

/// The registry's one-buffer host entry: what goes in comes out, and publications are replaced
/// per signer, dropped on withdrawal, and carried over only to an entry with the same key.
@Suite struct HostEntryTests {
    static let addresses = [IPAddress("192.0.2.1")!, IPAddress("2001:db8::1")!, IPAddress("192.0.2.2")!]
    static let key: [UInt8] = Array(0..<44)
    static let name: DomainName = "Host-1.C.A.xx."

    static func publication(_ signer: UInt8, _ notBefore: Int64, signature: [UInt8] = Array(repeating: 7, count: 64)) -> HostEntry.Publication {
        .init(signer: signer, notBefore: notBefore, notAfter: notBefore + 86_400, signature: signature)
    }

    @Test func fieldsComeBackAsTheyWent() throws {
        let entry = try #require(HostEntry(name: Self.name, addresses: Self.addresses, key: Self.key, registeredAt: -5))
        #expect(entry.addresses(ipv6: false) == [IPAddress("192.0.2.1")!, IPAddress("192.0.2.2")!])
        #expect(entry.addresses(ipv6: true) == [IPAddress("2001:db8::1")!])
        #expect(Array(entry.key) == Self.key && entry.hasKey(Self.key) && !entry.hasKey(Array(Self.key.dropLast())))
        #expect(entry.registeredAt == -5)
        // The name is kept in lower case, and found by its canonical bytes whatever the case asked.
        #expect(entry.name.wire == DomainName("host-1.c.a.xx.").wire)
        let named = DomainName("HOST-1.c.a.XX.").canonicalWire.withUnsafeBytes { entry.isNamed($0) }
        let other = DomainName("host-2.c.a.xx.").canonicalWire.withUnsafeBytes { entry.isNamed($0) }
        let prefix = DomainName("host-1.c.a.").canonicalWire.withUnsafeBytes { entry.isNamed($0) }
        #expect(named && !other && !prefix)
        #expect(entry.publications.isEmpty && !entry.hasPublications)
        let bare = try #require(HostEntry(name: Self.name, addresses: [], key: [], registeredAt: 0))
        #expect(bare.addresses.isEmpty && bare.key.isEmpty)
    }

    @Test func publicationsAreKeptPerSignerAfterTheKey() throws {
        var entry = try #require(HostEntry(name: Self.name, addresses: Self.addresses, key: Self.key, registeredAt: 1))
        var changed = entry.publish(Self.publication(0, 100))
        #expect(changed)
        changed = entry.publish(Self.publication(0, 100))
        #expect(!changed, "the same record again changes nothing")
        changed = entry.publish(Self.publication(1, 200, signature: Array(repeating: 9, count: 72)))
        #expect(changed)
        changed = entry.publish(Self.publication(0, 300))
        #expect(changed, "a renewal replaces the signer's record")
        #expect(entry.publications == [Self.publication(0, 300), Self.publication(1, 200, signature: Array(repeating: 9, count: 72))])
        // Read in place, as a status or a sweep over a million hosts reads them.
        #expect(entry.publicationCount == 2)
        #expect(entry.validity(of: 1).map { [$0.notBefore, $0.notAfter] } == [200, 200 + 86_400])
        #expect(entry.validity(of: 0).map { [$0.notBefore, $0.notAfter] } == [300, 300 + 86_400])
        #expect(entry.validity(of: 2) == nil)
        // The host's own fields are untouched by what follows them.
        #expect(Array(entry.key) == Self.key && entry.addresses.count == 3 && entry.registeredAt == 1)
        changed = entry.publish(Self.publication(2, 0, signature: Array(repeating: 1, count: 256)))
        #expect(!changed, "too long for the layout")
        changed = entry.withdrawPublications()
        #expect(changed && !entry.hasPublications && entry.publicationCount == 0 && entry.validity(of: 0) == nil)
        changed = entry.withdrawPublications()
        #expect(!changed)
        #expect(Array(entry.key) == Self.key)
    }

    @Test func publicationsFollowOnlyTheSameKey() throws {
        var old = try #require(HostEntry(name: Self.name, addresses: Self.addresses, key: Self.key, registeredAt: 1))
        _ = old.publish(Self.publication(0, 100))
        let sameKey = try #require(HostEntry(name: Self.name, addresses: [IPAddress("198.51.100.1")!], key: Self.key, registeredAt: 2))
        #expect(sameKey.keepingPublications(of: old).publications == [Self.publication(0, 100)])
        let rotated = try #require(HostEntry(name: Self.name, addresses: Self.addresses, key: Array(Self.key.reversed()), registeredAt: 2))
        #expect(rotated.keepingPublications(of: old).publications.isEmpty)
    }
}
