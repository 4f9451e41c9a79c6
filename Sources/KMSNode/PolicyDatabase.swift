import DNSWire
import Foundation
import KMSCrypto
import KMSProtocol
import KMSSettings
import Synchronization

/// An address prefix: `1.2.3.4`, `10.0.0.0/8`, `2001:db8::/32`.
struct IPPrefix: Hashable, Sendable, CustomStringConvertible {
    let address: IPAddress
    let length: Int

    init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1)
        guard let address = IPAddress(String(parts[0])) else { return nil }
        let maximum = address.bytes.count * 8
        let length = parts.count == 2 ? Int(parts[1]) : maximum
        guard let length, (0...maximum).contains(length) else { return nil }
        self.address = address
        self.length = length
    }

    func contains(_ other: IPAddress) -> Bool {
        guard other.bytes.count == address.bytes.count else { return false }
        var bits = length
        for (mine, theirs) in zip(address.bytes, other.bytes) where bits > 0 {
            let mask: UInt8 = bits >= 8 ? 0xFF : ~(0xFF >> UInt8(bits))
            if mine & mask != theirs & mask { return false }
            bits -= 8
        }
        return true
    }

    var description: String { "\(address)/\(length)" }
}

/// The CUG setting database of the seed's second embodiment (its figure 6): client address
/// or prefix → table → rows. The first `client` line that contains the client picks the table;
/// the first row of that table whose pattern matches the name gives the verdict.
///
///     client  1.2.3.4/32   t502
///     client  0.0.0.0/0    t504
///     t502    *.jinji.nec.com   tls     jinji.nec.com         AES-256-GCM
///     t504    *.soumu.nec.com   tls     soumu.nec.com         AES-128-GCM
struct PolicyDatabase: Sendable {
    typealias Row = CUGRule

    let clients: [(prefix: IPPrefix, table: String)]
    let tables: [String: [Row]]

    init(file: ConfigFile) throws(ConfigError) {
        var clients: [(IPPrefix, String)] = []
        var tables: [String: [Row]] = [:]
        for directive in file.directives {
            if directive.name == "client" {
                let values = try file.values(directive, count: 2, usage: "ADDRESS[/LENGTH] TABLE")
                guard let prefix = IPPrefix(values[0]) else { throw file.error(directive, "'\(values[0])' is not an address or prefix") }
                clients.append((prefix, values[1]))
                continue
            }
            let values = try file.values(directive, count: 4, usage: "PATTERN PROTOCOL IDENTITY CIPHER (after the table name)")
            tables[directive.name, default: []].append(try CUGRule.parse(values, directive, in: file))
        }
        for (prefix, table) in clients where tables[table] == nil && table != "none" {
            throw ConfigError(path: file.path, line: nil, field: "client", reason: "\(prefix) names table \(table), which has no rows")
        }
        self.clients = clients
        self.tables = tables
    }

    /// The row deciding how `client` reaches `name`, or nil: normal communication.
    func row(client: IPAddress, name: DomainName) -> Row? {
        guard let table = clients.first(where: { $0.prefix.contains(client) })?.table else { return nil }
        return tables[table]?.first { $0.pattern.matches(name) }
    }
}

/// The policy database of a node, read again when its file changes (checked at most once a
/// second, on use) or when asked (`kms` control op `reload-policy`): no restart needed.
final class PolicySource: Sendable {
    let path: String
    private struct State {
        var database: PolicyDatabase
        var modified: Date?
        var checked: Double
    }
    private let state: Mutex<State>
    /// How often, at most, the file's modification time is looked at.
    let checkInterval: Double

    init(path: String, checkInterval: Double = 1) throws(ConfigError) {
        self.path = path
        self.checkInterval = checkInterval
        let database = try PolicyDatabase(file: try ConfigFile(path: path))
        state = Mutex(State(database: database, modified: Self.modified(path), checked: Date().timeIntervalSince1970))
    }

    static func modified(_ path: String) -> Date? {
        (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date
    }

    /// The database, re-read first if the file changed since the last look (a second ago or more).
    /// A file that no longer parses leaves the last good database in force; `reload()` says why.
    var current: PolicyDatabase {
        let now = Date().timeIntervalSince1970
        let stale = state.withLock { state -> Bool in
            guard now - state.checked >= checkInterval else { return false }
            state.checked = now
            return Self.modified(path) != state.modified
        }
        if stale { try? reload() }
        return state.withLock { $0.database }
    }

    func reload() throws(ConfigError) {
        let modified = Self.modified(path)
        let database = try PolicyDatabase(file: try ConfigFile(path: path))
        state.withLock {
            $0.database = database
            $0.modified = modified
        }
    }
}
