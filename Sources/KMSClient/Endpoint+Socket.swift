import Glibc
public import KMSSettings
public import NIOCore

extension Endpoint {
    /// The socket address to send to. A scoped IPv6 address (`[fe80::1%eth0]:53`) carries its
    /// interface's index, without which a link-local address cannot be reached.
    public func socketAddress() throws -> SocketAddress {
        guard let scope else { return try SocketAddress(ipAddress: address.description, port: port) }
        let index = UInt32(scope) ?? if_nametoindex(scope)
        guard index != 0 else { throw EndpointError(description: "\(self): no network interface named \(scope)") }
        var socket = sockaddr_in6()
        socket.sin6_family = sa_family_t(AF_INET6)
        socket.sin6_port = in_port_t(UInt16(port)).bigEndian
        withUnsafeMutableBytes(of: &socket.sin6_addr) { $0.copyBytes(from: address.bytes) }
        socket.sin6_scope_id = index
        return SocketAddress(socket, host: address.description)
    }
}

/// An endpoint that cannot be turned into a socket address (an interface that is not there).
public struct EndpointError: Error, CustomStringConvertible {
    public let description: String
}
