public import DNSWire
public import KMSCrypto
public import KMSProtocol
import Synchronization

/// One entry of the encrypted-path table: an intercept address standing for a group peer.
public struct Mapping: Sendable {
    public let intercept: IPAddress
    public let peer: DomainName
    public let peerAddresses: [IPAddress]
    public let key: PublicKey
    public let settings: PathSettings
    public let expiresAt: Double
    /// Tunnelled connections now open through this address.
    public let liveConnections: Int
    /// The peer's key was withdrawn: the address stays reserved until it expires, and takes no
    /// new connection.
    public var revoked = false
    /// The `not-after` of the countersignature that vouched for `key`.
    public var keyNotAfter: Int64 = 0
}

/// Intercept addresses handed to applications in place of group peers' real addresses.
///
/// - The same peer keeps its address while its mapping lives (each resolution extends it).
/// - A new peer takes a free address; when none is free, one whose mapping has expired and
///   that carries no live connection. An unexpired mapping is never reassigned: an application
///   may still hold that address from an answer whose TTL has not run out.
/// - A mapping with a live connection is never reassigned, expired or not.
public final class InterceptPool: Sendable {
    private struct State {
        var byAddress: [IPAddress: Mapping] = [:]
        var byPeer: [DomainName: IPAddress] = [:]
        var free: [IPAddress]
    }

    private let state: Mutex<State>
    public let lifetime: Double
    public let capacity: Int

    /// Whether the pool's addresses are IPv6.
    public let isIPv6: Bool

    public init(addresses: [IPAddress], lifetime: Double) {
        state = Mutex(State(free: addresses.reversed()))
        self.lifetime = lifetime
        capacity = addresses.count
        isIPv6 = addresses.first?.isIPv6 ?? false
    }

    /// Addresses `first`, `first + 1`, ... `count` of them (IPv4 or IPv6).
    public static func addresses(from first: IPAddress, count: Int) -> [IPAddress] {
        (0..<count).compactMap { offset in
            var bytes = first.bytes
            var carry = offset
            for index in bytes.indices.reversed() where carry > 0 {
                let sum = Int(bytes[index]) + carry
                bytes[index] = UInt8(sum & 0xFF)
                carry = sum >> 8
            }
            return IPAddress(bytes: bytes)
        }
    }

    /// The intercept address for `peer`, new or extended; nil when every address is in use.
    public func assign(
        peer: DomainName, addresses: [IPAddress], key: PublicKey, settings: PathSettings, now: Double, keyNotAfter: Int64 = 0
    ) -> Mapping? {
        state.withLock { state in
            let expiresAt = now + lifetime
            if let address = state.byPeer[peer], let old = state.byAddress[address], old.peer == peer {
                let renewed = Mapping(
                    intercept: address, peer: peer, peerAddresses: addresses, key: key, settings: settings,
                    expiresAt: expiresAt, liveConnections: old.liveConnections, keyNotAfter: keyNotAfter)
                state.byAddress[address] = renewed
                return renewed
            }
            let address: IPAddress
            if let free = state.free.popLast() {
                address = free
            } else if let idle = state.byAddress.values
                .filter({ $0.expiresAt <= now && $0.liveConnections == 0 })
                .min(by: { $0.expiresAt < $1.expiresAt })
            {
                state.byPeer.removeValue(forKey: idle.peer)
                address = idle.intercept
            } else {
                return nil
            }
            let mapping = Mapping(
                intercept: address, peer: peer, peerAddresses: addresses, key: key, settings: settings,
                expiresAt: expiresAt, liveConnections: 0, keyNotAfter: keyNotAfter)
            state.byAddress[address] = mapping
            state.byPeer[peer] = address
            return mapping
        }
    }

    /// The mapping behind an intercept address, if it lives (or carries connections).
    public func lookup(_ address: IPAddress, now: Double) -> Mapping? {
        state.withLock { state in
            guard let mapping = state.byAddress[address], mapping.expiresAt > now || mapping.liveConnections > 0 else {
                return nil
            }
            return mapping
        }
    }

    /// Counts a connection opened through `address`; nil if the address maps to nothing live
    /// (or to a withdrawn key).
    public func open(_ address: IPAddress, now: Double) -> Mapping? {
        state.withLock { state in
            guard let mapping = state.byAddress[address], !mapping.revoked, mapping.expiresAt > now || mapping.liveConnections > 0 else {
                return nil
            }
            let opened = mapping.with(liveConnections: mapping.liveConnections + 1)
            state.byAddress[address] = opened
            return opened
        }
    }

    public func close(_ address: IPAddress) {
        state.withLock { state in
            guard let mapping = state.byAddress[address] else { return }
            state.byAddress[address] = mapping.with(liveConnections: max(0, mapping.liveConnections - 1))
        }
    }

    /// Puts `key` in force for `peer`'s mapping (its key was rotated); false if it has none.
    public func rekey(peer: DomainName, key: PublicKey, keyNotAfter: Int64? = nil) -> Bool {
        state.withLock { state in
            guard let address = state.byPeer[peer], let mapping = state.byAddress[address] else { return false }
            state.byAddress[address] = mapping.with(key: key, revoked: false, keyNotAfter: keyNotAfter)
            return true
        }
    }

    /// Marks `peer`'s mapping withdrawn (its host was removed): no new connection goes through.
    public func revoke(peer: DomainName) {
        state.withLock { state in
            guard let address = state.byPeer[peer], let mapping = state.byAddress[address] else { return }
            state.byAddress[address] = mapping.with(key: mapping.key, revoked: true)
        }
    }

    /// Takes back mappings a previous run handed out (from `ProxyStore`): their addresses are
    /// reserved again until they expire. Addresses outside this pool are ignored.
    public func restore(_ mappings: [Mapping]) {
        state.withLock { state in
            for mapping in mappings {
                guard let index = state.free.firstIndex(of: mapping.intercept), state.byPeer[mapping.peer] == nil else { continue }
                state.free.remove(at: index)
                state.byAddress[mapping.intercept] = mapping
                state.byPeer[mapping.peer] = mapping.intercept
            }
        }
    }

    /// `peer`'s mapping, if it has one.
    public func mapping(of peer: DomainName) -> Mapping? {
        state.withLock { state in state.byPeer[peer].flatMap { state.byAddress[$0] } }
    }

    /// Every mapping, for `kms-proxy status`.
    public var mappings: [Mapping] {
        state.withLock { Array($0.byAddress.values) }.sorted { $0.intercept.bytes.lexicographicallyPrecedes($1.intercept.bytes) }
    }
}

extension Mapping {
    func with(liveConnections: Int) -> Mapping {
        Mapping(
            intercept: intercept, peer: peer, peerAddresses: peerAddresses, key: key, settings: settings,
            expiresAt: expiresAt, liveConnections: liveConnections, revoked: revoked, keyNotAfter: keyNotAfter)
    }

    func with(key: PublicKey, revoked: Bool, keyNotAfter: Int64? = nil) -> Mapping {
        Mapping(
            intercept: intercept, peer: peer, peerAddresses: peerAddresses, key: key, settings: settings,
            expiresAt: expiresAt, liveConnections: liveConnections, revoked: revoked, keyNotAfter: keyNotAfter ?? self.keyNotAfter)
    }
}
