import DNSWire
import KMSCrypto
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
}
