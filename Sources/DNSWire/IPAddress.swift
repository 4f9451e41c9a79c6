import Glibc

/// An IPv4 or IPv6 address, in the canonical text KMS1 values use (dotted quad; RFC 5952
/// for IPv6) and in the bytes A and AAAA records carry.
public struct IPAddress: Hashable, Sendable, CustomStringConvertible {
    /// 4 or 16 bytes, network order.
    public let bytes: [UInt8]

    public var isIPv6: Bool { bytes.count == 16 }

    /// 127.0.0.0/8 or ::1.
    public var isLoopback: Bool { isIPv6 ? bytes == Array(repeating: 0, count: 15) + [1] : bytes[0] == 127 }

    /// Parses any textual form `inet_pton` accepts.
    public init?(_ text: String) {
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            bytes = withUnsafeBytes(of: &v4) { Array($0) }
        } else if inet_pton(AF_INET6, text, &v6) == 1 {
            bytes = withUnsafeBytes(of: &v6) { Array($0) }
        } else {
            return nil
        }
    }

    /// Parses only the canonical text form: it must print back exactly as given.
    public init?(canonical text: String) {
        guard let address = IPAddress(text), address.description == text else { return nil }
        self = address
    }

    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// `inet_ntop`'s text, which for IPv6 is the RFC 5952 form.
    public var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = isIPv6 ? AF_INET6 : AF_INET
        _ = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// The RDATA of an A or AAAA record for this address.
    public var rdata: RData { isIPv6 ? .aaaa(bytes) : .a(bytes) }
}
