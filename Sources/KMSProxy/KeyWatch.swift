import DNSWire
import Foundation
import KMSClient
import KMSCrypto
import KMSProtocol
import Logging

/// Keeps the keys behind live mappings and tunnels current (docs/PROXY.md, "Keys that change").
///
/// Every `key-refresh` the proxy fetches again the key of every peer it holds a mapping for.
/// The fetch is the host's own: from its cache while the entry is younger than `revalidate`
/// and less than half its validity old, otherwise from the hierarchy. So a rotated or removed
/// key is seen within `key-refresh` + `revalidate`, and a key is renewed long before its
/// countersignature expires: a long-lived tunnel never meets an expired key.
///
/// - A new key replaces the mapping's, and every tunnel pinned to the old one is closed: the
///   application reconnects, and the new tunnel is pinned to the new key.
/// - A host that no longer exists (unresolved) loses its mapping's right to new connections,
///   and its tunnels are closed. The address stays reserved until its mapping expires.
/// - A hierarchy that cannot be reached changes nothing (the host's cache keeps what it
///   verified); the next pass tries again.
struct KeyWatch: Sendable {
    /// What one pass changed, per peer.
    public enum Change: Sendable, Equatable {
        case rotated(DomainName, closed: Int)
        case revoked(DomainName, closed: Int)
    }

    let pools: [InterceptPool]
    let kernel: KernelDiversion?
    let fetchers: [Identity: KeyFetcher]
    let sessions: Sessions
    let store: ProxyStore?
    let logger: Logger

    /// Records the pools' mapping of `peer` as it is now.
    private func persist(_ peer: DomainName) async {
        for pool in pools {
            guard let mapping = pool.mapping(of: peer) else { continue }
            do { try await store?.save(mapping, kind: .intercept, address: mapping.intercept, expiresAt: mapping.expiresAt) } catch {
                logger.error("cannot record a mapping", metadata: ["peer": "\(peer)", "error": "\(error)"])
            }
        }
    }

    func pass() async -> [Change] {
        var peers: [DomainName: Mapping] = [:]
        for mapping in pools.flatMap(\.mappings) + (kernel?.mappings ?? []) where !mapping.revoked {
            peers[mapping.peer] = mapping
        }
        var changes: [Change] = []
        for (peer, mapping) in peers.sorted(by: { $0.key.text < $1.key.text }) {
            guard let fetcher = fetchers[mapping.settings.identity] else { continue }
            do {
                let fetched = try await fetcher.fetch(peer)
                let current = fetched.key
                guard current != mapping.key else { continue }
                for pool in pools { _ = pool.rekey(peer: peer, key: current, keyNotAfter: fetched.countersignature.notAfter) }
                kernel?.rekey(peer: peer, key: current)
                await persist(peer)
                let closed = sessions.close(peer: peer, keeping: current)
                logger.notice("peer key rotated: closed the tunnels pinned to the old key", metadata: ["peer": "\(peer)", "closed": "\(closed)"])
                changes.append(.rotated(peer, closed: closed))
            } catch let error where error.kind == .notFound {
                for pool in pools { pool.revoke(peer: peer) }
                kernel?.rekey(peer: peer, key: nil)
                await persist(peer)
                let closed = sessions.close(peer: peer, keeping: nil)
                logger.notice("peer key withdrawn: closed its tunnels", metadata: ["peer": "\(peer)", "closed": "\(closed)", "reason": "\(error.message)"])
                changes.append(.revoked(peer, closed: closed))
            } catch {
                logger.warning("cannot refresh a peer's key; keeping the one verified", metadata: ["peer": "\(peer)", "reason": "\(error.message)"])
            }
        }
        return changes
    }
}
