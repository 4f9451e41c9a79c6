import DNSWire
import KMSCrypto
import KMSProtocol
import Synchronization

/// A registered host as the registry keeps it: compact, its key as DER SubjectPublicKeyInfo
/// bytes. A million hosts must fit in a few hundred megabytes and load in seconds, so the key
/// is decoded (OpenSSL) only when it is used, and addresses are packed bytes, not objects.
struct HostEntry: Sendable {
    /// Concatenated 4-byte IPv4 and 16-byte IPv6 addresses.
    let v4: [UInt8]
    let v6: [UInt8]
    /// DER SubjectPublicKeyInfo, decoded into a `PublicKey` on use.
    let key: [UInt8]
    let registeredAt: UnixTime

    init(addresses: [IPAddress], key: [UInt8], registeredAt: UnixTime) {
        v4 = addresses.filter { !$0.isIPv6 }.flatMap(\.bytes)
        v6 = addresses.filter(\.isIPv6).flatMap(\.bytes)
        self.key = key
        self.registeredAt = registeredAt
    }

    func addresses(ipv6: Bool) -> [IPAddress] {
        let packed = ipv6 ? v6 : v4
        let size = ipv6 ? 16 : 4
        return stride(from: 0, to: packed.count, by: size).compactMap { IPAddress(bytes: Array(packed[$0..<$0 + size])) }
    }

    var addresses: [IPAddress] { addresses(ipv6: false) + addresses(ipv6: true) }
}

/// The registered hosts, in memory, for the request path. The store is the truth; this mirrors
/// it, and also keeps every empty non-terminal (a name that exists only because hosts lie
/// below it), so telling NXDOMAIN from NODATA is one lookup, not a scan.
///
/// Keys are decoded on first use and the decoded ones kept in a bounded table, so a signed
/// request from a host pays the decode (a few microseconds) once, not every time.
final class Registry: Sendable {
    private struct State {
        var hosts: [DomainName: HostEntry] = [:]
        /// Names that exist only because hosts lie below them, with how many do.
        var nonTerminals: [DomainName: Int] = [:]
        var decoded: [DomainName: PublicKey] = [:]
    }

    private let state = Mutex(State())
    private let zone: DomainName
    static let decodedCapacity = 65_536

    init(zone: DomainName) {
        self.zone = zone
    }

    /// Replaces every host with the store's (a start or a reload), read row by row into the
    /// new table, so that no second copy of a million hosts is ever held. Returns the names of
    /// rows that could not be read.
    func load(from store: NodeStore) throws -> [String] {
        var fresh = State()
        let (_, unreadable) = try store.forEachHost(expecting: { fresh.hosts.reserveCapacity($0) }) { name, entry in
            add(name, entry, to: &fresh)
        }
        state.withLock { $0 = fresh }
        return unreadable
    }

    /// A registered host with its key decoded; nil if the name is not registered (or its
    /// stored key no longer decodes: never use a key that was not read whole).
    subscript(name: DomainName) -> RegisteredHost? {
        let (entry, cached) = state.withLock { ($0.hosts[name], $0.decoded[name]) }
        guard let entry else { return nil }
        let key: PublicKey
        if let cached {
            key = cached
        } else {
            guard let decodedKey = try? PublicKey(subjectPublicKeyInfo: entry.key) else { return nil }
            key = decodedKey
            state.withLock { state in
                if state.decoded.count >= Self.decodedCapacity { state.decoded.removeAll(keepingCapacity: true) }
                if state.hosts[name]?.key == entry.key { state.decoded[name] = key }
            }
        }
        return RegisteredHost(name: name, addresses: entry.addresses, key: key, registeredAt: entry.registeredAt)
    }

    func contains(_ name: DomainName) -> Bool { state.withLock { $0.hosts[name] != nil } }

    /// The host's addresses of one family, without decoding its key; nil if not registered.
    func addresses(of name: DomainName, ipv6: Bool) -> [IPAddress]? {
        state.withLock { $0.hosts[name] }?.addresses(ipv6: ipv6)
    }

    func set(_ host: RegisteredHost) {
        let entry = HostEntry(addresses: host.addresses, key: host.key.subjectPublicKeyInfo, registeredAt: host.registeredAt)
        state.withLock { state in
            add(host.name, entry, to: &state)
            state.decoded[host.name] = host.key
        }
    }

    private func add(_ name: DomainName, _ entry: HostEntry, to state: inout State) {
        guard state.hosts.updateValue(entry, forKey: name) == nil else { return }  // a new key for a known host
        forEachAncestor(of: name) { state.nonTerminals[$0, default: 0] += 1 }
    }

    /// Removes a host; its ancestors stop existing when no other host lies below them.
    /// Returns whether it was registered.
    func remove(_ name: DomainName) -> Bool {
        state.withLock { state in
            guard state.hosts.removeValue(forKey: name) != nil else { return false }
            state.decoded.removeValue(forKey: name)
            forEachAncestor(of: name) { ancestor in
                let left = (state.nonTerminals[ancestor] ?? 1) - 1
                state.nonTerminals[ancestor] = left > 0 ? left : nil
            }
            return true
        }
    }

    private func forEachAncestor(of name: DomainName, _ body: (DomainName) -> Void) {
        var ancestor = name.parent
        while let current = ancestor, current != zone, current.isSubdomain(of: zone) {
            body(current)
            ancestor = current.parent
        }
    }

    /// Whether `name` is a registered host or lies above one (within the zone).
    func exists(_ name: DomainName) -> Bool {
        state.withLock { $0.hosts[name] != nil || $0.nonTerminals[name] != nil }
    }

    var count: Int { state.withLock { $0.hosts.count } }

    /// Every registered name (a snapshot).
    var names: [DomainName] { state.withLock { Array($0.hosts.keys) } }

    /// Every host with its addresses, sorted by name (a snapshot, for a zone transfer).
    var addressTable: [(name: DomainName, addresses: [IPAddress])] {
        state.withLock { state in state.hosts.map { ($0.key, $0.value.addresses) } }.sorted { $0.name.text < $1.name.text }
    }

    /// Every host, keys decoded (for listings; not for the request path).
    var all: [RegisteredHost] {
        let names = state.withLock { Array($0.hosts.keys) }
        return names.compactMap { self[$0] }
    }
}
