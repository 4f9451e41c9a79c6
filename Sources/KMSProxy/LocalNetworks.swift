import DNSTransport
import DNSWire
import Glibc
import Synchronization

/// Who may query kms-proxy's DNS: the `dns-allow` networks, or, without it, this host and the
/// networks of its interfaces as they are now. Those are read again when the last reading is
/// `interval` old, so a proxy started before DHCP or SLAAC gave the host its addresses (at
/// boot), or on a laptop that joins another network, serves the new network's clients within
/// that time, and stops serving a network the host has left (BIND rescans its interfaces for
/// `localnets` likewise).
final class AllowedClients: Sendable {
    typealias Networks = [(address: IPAddress, length: Int)]
    /// `dns-allow`: never read again.
    private let fixed: Networks?
    private let read: @Sendable () -> Networks
    private let interval: Duration
    private let state: Mutex<(networks: Networks, readAt: ContinuousClock.Instant)>

    /// The `dns-allow` networks (`read` and `state` are never used: `networks` returns these).
    init(_ networks: Networks) {
        fixed = networks
        read = { networks }
        interval = .zero
        state = Mutex((networks, .now))
    }

    /// This host and its networks, read by `read` now and again when the last reading is
    /// `interval` old (at most one reading an interval, whatever the query rate).
    init(
        localNetworksEvery interval: Duration = .seconds(2), now: ContinuousClock.Instant = .now,
        read: @escaping @Sendable () -> Networks = LocalNetworks.current
    ) {
        fixed = nil
        self.read = read
        self.interval = interval
        state = Mutex((read(), now))
    }

    /// Whether `client` may query.
    func allows(_ client: IPAddress, now: ContinuousClock.Instant = .now) -> Bool {
        client.isIn(networks(now: now))
    }

    /// The networks allowed at `now`.
    func networks(now: ContinuousClock.Instant = .now) -> Networks {
        if let fixed { return fixed }
        return state.withLock { state in
            if now - state.readAt >= interval {
                state = (read(), now)
            }
            return state.networks
        }
    }

    /// Whether the networks are `dns-allow`'s rather than this host's.
    var isConfigured: Bool { fixed != nil }
}

/// This host and the networks of its interfaces: who may query kms-proxy's DNS when its
/// configuration has no `dns-allow` (BIND's `localhost; localnets`), so a proxy bound to an
/// address others can reach is not a resolver for the whole Internet.
enum LocalNetworks {
    static func current() -> [(address: IPAddress, length: Int)] {
        [(IPAddress("127.0.0.0")!, 8), (IPAddress("::1")!, 128)] + interfaces().map { ($0.address, $0.length) }
    }

    /// Every address of every interface, with its prefix length and the interface's name.
    static func interfaces() -> [(name: String, address: IPAddress, length: Int)] {
        var found: [(name: String, address: IPAddress, length: Int)] = []
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return found }
        defer { freeifaddrs(list) }
        var entry = list
        while let current = entry {
            entry = current.pointee.ifa_next
            guard let address = current.pointee.ifa_addr, let mask = current.pointee.ifa_netmask else { continue }
            let bytes: (address: [UInt8], mask: [UInt8])
            switch Int32(address.pointee.sa_family) {
            case AF_INET:
                bytes = (
                    address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { withUnsafeBytes(of: $0.pointee.sin_addr) { Array($0) } },
                    mask.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { withUnsafeBytes(of: $0.pointee.sin_addr) { Array($0) } })
            case AF_INET6:
                bytes = (
                    address.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { withUnsafeBytes(of: $0.pointee.sin6_addr) { Array($0) } },
                    mask.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { withUnsafeBytes(of: $0.pointee.sin6_addr) { Array($0) } })
            default:
                continue
            }
            guard let ip = IPAddress(bytes: bytes.address) else { continue }
            found.append((String(cString: current.pointee.ifa_name), ip, bytes.mask.reduce(0) { $0 + $1.nonzeroBitCount }))
        }
        return found
    }
}
