import DNSWire
import Synchronization

/// The registered hosts, in memory, for the request path. The store is the truth; this is
/// replaced whole on every registration, so readers never see half an update.
final class Registry: Sendable {
    private let hosts = Mutex<[DomainName: RegisteredHost]>([:])

    init(_ initial: [RegisteredHost]) {
        hosts.withLock { table in
            for host in initial { table[host.name] = host }
        }
    }

    subscript(name: DomainName) -> RegisteredHost? { hosts.withLock { $0[name] } }

    func set(_ host: RegisteredHost) { hosts.withLock { $0[host.name] = host } }

    var all: [RegisteredHost] { hosts.withLock { Array($0.values) } }
}
