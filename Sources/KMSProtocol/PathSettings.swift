public import KMSCrypto

/// Which of a host's keys (and certificates) a group path uses: the seed's "certificate ID".
/// A proxy configuration names its identities (`identity default hosta.conf`); CUG rows and
/// `kms1:cug` verdicts refer to them by this name.
public struct Identity: RawRepresentable, Hashable, Sendable, CustomStringConvertible, Comparable, ExpressibleByStringLiteral {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(_ name: String) { self.init(rawValue: name) }
    public init(stringLiteral name: String) { self.init(rawValue: name) }

    /// The identity a proxy's receiving endpoint presents and its DNS side fetches with when
    /// nothing else is named.
    public static let `default` = Identity("default")

    public var description: String { rawValue }
    public static func < (lhs: Identity, rhs: Identity) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// How traffic to a group peer is carried: one type for a proxy's CUG table row, a KMS policy
/// database row and a `kms1:cug` verdict (the seed's figure 2 and figure 6 columns).
public struct PathSettings: Hashable, Sendable, CustomStringConvertible {
    /// The seed's SSL/TLS and IPsec: TLS 1.3 through intercept addresses, or the kernel
    /// diverting the peer's real address into the same tunnel.
    public enum PathProtocol: String, CaseIterable, Sendable { case tls, kernel }

    public let pathProtocol: PathProtocol
    public let identity: Identity
    public let cipher: TLSCipher

    public init(pathProtocol: PathProtocol, identity: Identity, cipher: TLSCipher) {
        self.pathProtocol = pathProtocol
        self.identity = identity
        self.cipher = cipher
    }

    public var description: String { "\(pathProtocol.rawValue), identity \(identity), \(cipher)" }
}
