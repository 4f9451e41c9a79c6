import DNSWire
import Synchronization

/// The registered hosts, in memory, for the request path. The store is the truth; this mirrors
/// it, and also keeps every name that exists because of them (the hosts and their ancestors,
/// the empty non-terminals), so telling NXDOMAIN from NODATA is one lookup, not a scan.
final class Registry: Sendable {
    private struct State {
        var hosts: [DomainName: RegisteredHost] = [:]
        var existing: Set<DomainName> = []
    }

    private let state = Mutex(State())

    init(_ initial: [RegisteredHost]) {
        replaceAll(initial)
    }

    /// Replaces every host at once (a reload from the store).
    func replaceAll(_ hosts: [RegisteredHost]) {
        var fresh = State()
        for host in hosts { Self.add(host, to: &fresh) }
        state.withLock { $0 = fresh }
    }

    subscript(name: DomainName) -> RegisteredHost? { state.withLock { $0.hosts[name] } }

    func set(_ host: RegisteredHost) {
        state.withLock { Self.add(host, to: &$0) }
    }

    private static func add(_ host: RegisteredHost, to state: inout State) {
        state.hosts[host.name] = host
        var name: DomainName? = host.name
        while let current = name, state.existing.insert(current).inserted { name = current.parent }
    }

    /// Whether `name` is a registered host or lies above one.
    func exists(_ name: DomainName) -> Bool { state.withLock { $0.existing.contains(name) } }

    var all: [RegisteredHost] { state.withLock { Array($0.hosts.values) } }
}
