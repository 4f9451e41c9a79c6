import DNSWire
import KMSCrypto
import KMSProtocol
@testable import KMSNode
import Testing

/// The registry's decoded keys stay within their bound however hosts arrive (registered, or
/// read and decoded on first use), and every lookup still gives the host's own key.
@Suite struct RegistryTests {
    @Test func decodedKeysStayWithinTheirBound() throws {
        let registry = Registry(zone: "c.a.xx.", decodedCapacity: 4)
        var keys: [DomainName: PublicKey] = [:]
        for index in 0..<10 {
            let name = try DomainName("h\(index).c.a.xx.")
            let key = try PrivateKey(generating: .ed25519).publicKey
            keys[name] = key
            registry.set(RegisteredHost(name: name, addresses: [IPAddress("192.0.2.1")!], key: key, registeredAt: 1))
            #expect(registry.decodedCount <= 4, "registering host \(index)")
        }
        for (name, key) in keys {
            #expect(registry[name]?.key == key, "\(name) decoded again from its entry")
            #expect(registry.decodedCount <= 4)
        }
    }

    /// Full, the table keeps the keys in use: a host that signs often stays decoded while others
    /// come and go (the table used to be emptied whole, its busiest key with it).
    @Test func aKeyInUseStaysDecoded() throws {
        let registry = Registry(zone: "c.a.xx.", decodedCapacity: 4)
        let busy: DomainName = "busy.c.a.xx."
        let key = try PrivateKey(generating: .ed25519).publicKey
        registry.set(RegisteredHost(name: busy, addresses: [], key: key, registeredAt: 1))
        for index in 0..<12 {
            #expect(registry[busy]?.key == key)
            registry.set(
                RegisteredHost(name: try DomainName("h\(index).c.a.xx."), addresses: [], key: try PrivateKey(generating: .ed25519).publicKey, registeredAt: 1))
            #expect(registry.isDecoded(busy), "after host \(index)")
            #expect(registry.decodedCount <= 4)
        }
    }

    /// Only a countersignature of the host's current key is published (a rotation between the
    /// signing and the publishing must not bring the old key back), and a registration with the
    /// same key keeps what was published.
    @Test func onlyTheCurrentKeyIsPublished() throws {
        let registry = Registry(zone: "c.a.xx.")
        let name: DomainName = "h.c.a.xx."
        let signer = try PrivateKey(generating: .ed25519)
        let (old, new) = (try PrivateKey(generating: .ed25519).publicKey, try PrivateKey(generating: .ed25519).publicKey)
        func countersignature(of key: PublicKey) throws -> Countersignature {
            try Countersignature.issue(target: name, key: key, signer: "xx.", signerKey: signer, notBefore: 0, notAfter: 100)
        }
        registry.set(RegisteredHost(name: name, addresses: [], key: new, registeredAt: 1))
        #expect(!registry.publish(try countersignature(of: old)), "the key before the rotation")
        #expect(registry.publish(try countersignature(of: new)))
        registry.set(RegisteredHost(name: name, addresses: [IPAddress("192.0.2.9")!], key: new, registeredAt: 2))
        #expect(registry.published(of: name) == [try countersignature(of: new)], "same key: kept")
        registry.set(RegisteredHost(name: name, addresses: [], key: old, registeredAt: 3))
        #expect(registry.published(of: name).isEmpty, "another key: dropped")
    }
}
