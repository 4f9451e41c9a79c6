import DNSWire
@testable import KMSProxy
import Synchronization
import Testing

/// Who may query the proxy's DNS when no `dns-allow` is set: this host's networks as they are
/// now, not as they were at start.
@Suite struct AllowedClientsTests {
    /// The host's interfaces, as a test changes them.
    final class Interfaces: Sendable {
        let networks = Mutex<[(address: IPAddress, length: Int)]>([(IPAddress("127.0.0.0")!, 8)])
        let readings = Atomic<Int>(0)
        func read() -> [(address: IPAddress, length: Int)] {
            readings.add(1, ordering: .relaxed)
            return networks.withLock { $0 }
        }
    }

    /// Started before DHCP gave the host 192.0.2.7/24: that network's clients are served once
    /// the interfaces are read again, and no longer once the host has left it.
    @Test func aNetworkTheHostJoinsAfterTheStartIsServedAndOneItLeavesIsNot() {
        let interfaces = Interfaces()
        let start = ContinuousClock.now
        let allowed = AllowedClients(localNetworksEvery: .seconds(2), now: start) { interfaces.read() }
        let neighbour = IPAddress("192.0.2.99")!
        #expect(!allowed.allows(neighbour, now: start))
        interfaces.networks.withLock { $0.append((IPAddress("192.0.2.7")!, 24)) }
        // Within the interval the last reading stands.
        #expect(!allowed.allows(neighbour, now: start + .seconds(1)))
        #expect(allowed.allows(neighbour, now: start + .seconds(2)))
        #expect(allowed.allows(IPAddress("127.0.0.1")!, now: start + .seconds(2)))
        #expect(!allowed.allows(IPAddress("192.0.3.1")!, now: start + .seconds(2)), "outside the new network")
        interfaces.networks.withLock { _ = $0.removeLast() }
        #expect(allowed.allows(neighbour, now: start + .seconds(3)))
        #expect(!allowed.allows(neighbour, now: start + .seconds(4)))
    }

    /// However many queries come, the interfaces are read at most once an interval.
    @Test func theInterfacesAreReadAtMostOnceAnInterval() {
        let interfaces = Interfaces()
        let start = ContinuousClock.now
        let allowed = AllowedClients(localNetworksEvery: .seconds(2), now: start) { interfaces.read() }
        for step in 0..<1_000 {
            _ = allowed.allows(IPAddress("10.1.2.3")!, now: start + .milliseconds(step * 5))
        }
        // At start, then at 2 s and 4 s of the 5 s the queries span.
        #expect(interfaces.readings.load(ordering: .relaxed) == 3)
    }

    /// `dns-allow` is the operator's list: the interfaces do not widen it.
    @Test func dnsAllowIsNeverWidenedByTheInterfaces() {
        let allowed = AllowedClients([(IPAddress("10.0.0.0")!, 8)])
        #expect(allowed.isConfigured)
        #expect(allowed.allows(IPAddress("10.9.9.9")!, now: .now + .seconds(3600)))
        #expect(!allowed.allows(IPAddress("127.0.0.1")!, now: .now + .seconds(3600)))
    }
}
