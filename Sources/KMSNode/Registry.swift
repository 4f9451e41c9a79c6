import DNSTransport
import DNSWire
import KMSCrypto
import KMSProtocol
import Synchronization

/// The registered hosts, in memory, for the request path. The store is the truth; this mirrors
/// it, and also keeps every empty non-terminal (a name that exists only because hosts lie
/// below it), so telling NXDOMAIN from NODATA is one lookup, not a scan.
///
/// Keys are decoded on first use and the decoded ones kept in a bounded table, so a signed
/// request from a host pays the decode (a few microseconds) once, not every time.
final class Registry: Sendable {
    private struct State {
        var hosts = HostTable()
        /// Names that exist only because hosts lie below them, with how many do.
        var nonTerminals: [DomainName: Int] = [:]
        /// Decoded keys, the ones in use kept when full (CLOCK).
        var decoded: ClockCache<DomainName, PublicKey>
        /// The signers of published countersignatures, which `HostEntry` names by index.
        var signers: [DomainName] = []

        init(decodedCapacity: Int) { decoded = ClockCache(capacity: decodedCapacity) }
    }

    private let state: Mutex<State>
    private let zone: DomainName
    /// Decoded keys kept at most (an `EVP_PKEY` is several hundred bytes; a million of them
    /// would more than double a large registry).
    let decodedCapacity: Int

    init(zone: DomainName, decodedCapacity: Int = 65_536) {
        self.zone = zone
        self.decodedCapacity = decodedCapacity
        state = Mutex(State(decodedCapacity: decodedCapacity))
    }

    /// How many decoded keys are kept (for tests).
    var decodedCount: Int { state.withLock { $0.decoded.count } }

    /// Whether `name`'s key is kept decoded (for tests).
    func isDecoded(_ name: DomainName) -> Bool { state.withLock { $0.decoded.contains(name) } }

    /// Keeps a decoded key; when the table is full, one not used lately makes room.
    private func keep(_ key: PublicKey, for name: DomainName, in state: inout State) {
        state.decoded.set(key, for: name)
    }

    /// Replaces every host with the store's (a start or a reload), read row by row into the
    /// new table, so that no second copy of a million hosts is ever held. A host whose key is
    /// unchanged keeps what was published for it. Returns the names of rows that could not be
    /// read.
    func load(from store: NodeStore) throws -> [String] {
        var fresh = State(decodedCapacity: decodedCapacity)
        fresh.signers = state.withLock { $0.signers }
        let (_, unreadable) = try store.forEachHost(expecting: { fresh.hosts.reserveCapacity($0) }) { name, entry in
            let previous = state.withLock { $0.hosts[name] }
            add(name, previous.map { entry.keepingPublications(of: $0) } ?? entry, to: &fresh)
        }
        state.withLock { $0 = fresh }
        return unreadable
    }

    /// A registered host with its key decoded; nil if the name is not registered (or its
    /// stored key no longer decodes: never use a key that was not read whole).
    subscript(name: DomainName) -> RegisteredHost? {
        let (entry, cached) = state.withLock { ($0.hosts[name], $0.decoded.value(for: name)) }
        guard let entry, let key = key(of: name, entry, cached: cached) else { return nil }
        return RegisteredHost(name: name, addresses: entry.addresses, key: key, registeredAt: entry.registeredAt)
    }

    /// `entry`'s key: `cached` when the table had it, else decoded and kept.
    private func key(of name: DomainName, _ entry: HostEntry, cached: PublicKey?) -> PublicKey? {
        if let cached { return cached }
        guard let key = try? PublicKey(subjectPublicKeyInfo: Array(entry.key)) else { return nil }
        state.withLock { state in
            if state.hosts[name]?.key.elementsEqual(entry.key) == true { keep(key, for: name, in: &state) }
        }
        return key
    }

    func contains(_ name: DomainName) -> Bool { state.withLock { $0.hosts[name] != nil } }

    /// The host's addresses of one family, without decoding its key; nil if not registered.
    func addresses(of name: DomainName, ipv6: Bool) -> [IPAddress]? {
        state.withLock { $0.hosts[name] }?.addresses(ipv6: ipv6)
    }

    /// Adds or replaces a host; false if it does not fit an entry (`HostEntry`). Its published
    /// countersignatures stay only if its key is unchanged.
    @discardableResult
    func set(_ host: RegisteredHost) -> Bool {
        guard let entry = HostEntry(name: host.name, addresses: host.addresses, key: host.key.subjectPublicKeyInfo, registeredAt: host.registeredAt)
        else {
            return false
        }
        state.withLock { state in
            add(host.name, state.hosts[host.name].map { entry.keepingPublications(of: $0) } ?? entry, to: &state)
            keep(host.key, for: host.name, in: &state)
        }
        return true
    }

    private func add(_ name: DomainName, _ entry: HostEntry, to state: inout State) {
        guard state.hosts.updateValue(entry) == nil else { return }  // a new key for a known host
        forEachAncestor(of: name) { state.nonTerminals[$0, default: 0] += 1 }
    }

    /// Removes a host; its ancestors stop existing when no other host lies below them.
    /// Returns whether it was registered.
    func remove(_ name: DomainName) -> Bool {
        state.withLock { state in
            guard state.hosts.removeValue(forName: name) != nil else { return false }
            state.decoded.remove(name)
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

    /// Every host with its addresses, sorted by name (a snapshot, for a zone transfer).
    var addressTable: [(name: DomainName, addresses: [IPAddress])] {
        state.withLock { state in state.hosts.entries.map { ($0.name, $0.addresses) } }.sorted { $0.name.text < $1.name.text }
    }

    // MARK: Published countersignatures (`StaticRecords`)

    /// Publishes a countersignature of a host's current key; false if the zone does not change
    /// (already published, the host is gone, or its key is no longer the one countersigned).
    func publish(_ countersignature: Countersignature) -> Bool {
        let der = countersignature.key.subjectPublicKeyInfo
        return state.withLock { state in
            guard var entry = state.hosts[countersignature.target], entry.hasKey(der) else { return false }
            let signer: Int
            if let known = state.signers.firstIndex(of: countersignature.signer) {
                signer = known
            } else {
                guard state.signers.count <= Int(UInt8.max) else { return false }
                state.signers.append(countersignature.signer)
                signer = state.signers.count - 1
            }
            let publication = HostEntry.Publication(
                signer: UInt8(signer), notBefore: countersignature.notBefore, notAfter: countersignature.notAfter,
                signature: countersignature.signature)
            guard entry.publish(publication) else { return false }
            state.hosts.updateValue(entry)
            return true
        }
    }

    /// Withdraws what was published for `name`; true if anything was.
    func withdrawPublications(_ name: DomainName) -> Bool {
        state.withLock { state in
            guard var entry = state.hosts[name], entry.withdrawPublications() else { return false }
            state.hosts.updateValue(entry)
            return true
        }
    }

    /// The countersignatures published for `name`, by the key of the same entry.
    func published(of name: DomainName) -> [Countersignature] {
        let (entry, cached, signers) = state.withLock { ($0.hosts[name], $0.decoded.value(for: name), $0.signers) }
        guard let entry, entry.hasPublications, let key = key(of: name, entry, cached: cached) else { return [] }
        return entry.publications.map {
            Countersignature(
                target: name, key: key, signer: signers[Int($0.signer)], notBefore: $0.notBefore, notAfter: $0.notAfter,
                signature: $0.signature)
        }
    }

    /// Whether anything is published for `name`.
    func hasPublished(_ name: DomainName) -> Bool { state.withLock { $0.hosts[name]?.hasPublications ?? false } }

    /// Every published countersignature (a zone transfer).
    var allPublished: [Countersignature] {
        state.withLock { state in state.hosts.entries.compactMap { $0.hasPublications ? $0.name : nil } }.flatMap { published(of: $0) }
    }

    /// How many countersignatures are published.
    var publishedCount: Int {
        state.withLock { state in state.hosts.entries.reduce(0) { $0 + $1.publicationCount } }
    }

    /// The hosts among `names` that lack a publication by one of `signers`, or have one past
    /// half its validity at `now`.
    func due(among names: [DomainName], signers: [DomainName], now: UnixTime) -> [DomainName] {
        state.withLock { state in
            let indices = signers.map { signer in state.signers.firstIndex(of: signer).map(UInt8.init) }
            return names.filter { name in
                guard let entry = state.hosts[name] else { return false }
                return indices.contains { index in
                    guard let index, let (notBefore, notAfter) = entry.validity(of: index) else { return true }
                    return Countersignature.isPastHalfLife(notBefore: notBefore, notAfter: notAfter, at: now)
                }
            }
        }
    }

    /// Every host, keys decoded (for listings; not for the request path).
    var all: [RegisteredHost] {
        let names = state.withLock { $0.hosts.entries.map(\.name) }
        return names.compactMap { self[$0] }
    }
}
