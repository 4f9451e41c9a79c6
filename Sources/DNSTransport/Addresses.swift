public import DNSWire
public import NIOCore
import Glibc

extension SocketAddress {
    /// The address as the IPv4 address it is when it is IPv4-mapped (`::ffff:a.b.c.d`,
    /// RFC 4291 section 2.5.5.2), as a dual-stack socket reports IPv4 peers; otherwise itself.
    ///
    /// Everything that compares, logs or decides by address (reply matching, client policy,
    /// the `ip=` field) sees one spelling per peer.
    public var unmapped: SocketAddress {
        guard case .v6(let v6) = self else { return self }
        let bytes = withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) }
        guard bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF else { return self }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = v6.address.sin6_port
        withUnsafeMutableBytes(of: &address.sin_addr) { $0.copyBytes(from: bytes[12..<16]) }
        return SocketAddress(address, host: "")
    }
}

extension SocketAddress {
    /// The IP address, read from the socket address's bytes (no text round trip: this runs for
    /// every query that a limit or a policy looks at). Nil for a Unix-domain address.
    public var ip: IPAddress? {
        switch self {
        case .v4(let v4): return IPAddress(bytes: withUnsafeBytes(of: v4.address.sin_addr) { Array($0) })
        case .v6(let v6): return IPAddress(bytes: withUnsafeBytes(of: v6.address.sin6_addr) { Array($0) })
        case .unixDomainSocket: return nil
        }
    }

    /// `127.0.0.1:53` or `[::1]:53`, as configuration files and operators write addresses.
    public var endpointText: String {
        guard let ip = ipAddress, let port else { return pathname ?? "\(self)" }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }
}

/// A socket that could not be bound, named by transport and address.
public struct BindError: Error, CustomStringConvertible, Sendable {
    public let transport: String
    public let address: String
    public let reason: String

    public var description: String { "cannot bind \(transport) \(address): \(reason)" }

    public init(_ transport: String, _ address: String, reason: String) {
        self.transport = transport
        self.address = address
        self.reason = reason
    }

    /// NIO's `bind(descriptor:ptr:bytes:): Address already in use (errno: 98)` as
    /// `Address already in use`.
    public init(_ transport: String, _ address: String, _ error: any Error) {
        self.transport = transport
        self.address = address
        if let error = error as? IOError {
            reason = String(cString: strerror(error.errnoCode))
        } else {
            reason = "\(error)"
        }
    }
}
