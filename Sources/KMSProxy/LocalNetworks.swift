import DNSWire
import Glibc

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
