import DNSWire
import Foundation
import GRDB
import KMSCrypto
import KMSProtocol

/// The proxy's durable state (`store` in its configuration): the live mappings of the
/// intercept pools and the kernel diversions, so a restarted proxy never hands a live peer's
/// address to another peer and re-diverts what applications may still be using.
///
/// SQLite in WAL mode with `synchronous=NORMAL`: a write is in the log before the DNS answer
/// that hands out the address leaves, so a crash of the process loses none (a power cut may
/// lose the last few, which expire within `lifetime` anyway). Writes go through GRDB's own
/// queue, off the event loops.
final class ProxyStore: Sendable {
    enum Kind: String { case intercept, kernel }

    private let database: DatabasePool

    init(path: String) throws {
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        var configuration = Configuration()
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = NORMAL") }
        configuration.busyMode = .timeout(5)
        database = try DatabasePool(path: path, configuration: configuration)
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: mappings") { db in
            try db.create(table: "mapping") { table in
                table.column("kind", .text).notNull()
                table.column("address", .text).notNull()
                table.column("peer", .text).notNull()
                table.column("peer_addresses", .text).notNull()
                table.column("key", .text).notNull()
                table.column("protocol", .text).notNull()
                table.column("identity", .text).notNull()
                table.column("cipher", .text).notNull()
                table.column("expires_at", .double).notNull()
                table.column("revoked", .boolean).notNull()
                table.primaryKey(["kind", "address"])
            }
        }
        migrator.registerMigration("v2: key validity") { db in
            try db.alter(table: "mapping") { table in table.add(column: "key_not_after", .integer).notNull().defaults(to: 0) }
        }
        try migrator.migrate(database)
    }

    /// Records `mapping` under `address` (its intercept address, or a diverted peer address),
    /// live until `expiresAt`. Returns once it is in the log.
    func save(_ mapping: Mapping, kind: Kind, address: IPAddress, expiresAt: Double) async throws {
        try await database.write { db in
            try db.execute(
                sql: """
                    INSERT OR REPLACE INTO mapping
                        (kind, address, peer, peer_addresses, key, protocol, identity, cipher, expires_at, revoked, key_not_after)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    kind.rawValue, address.description, mapping.peer.text, mapping.peerAddresses.map(\.description).joined(separator: " "),
                    KeyField.encode(mapping.key), mapping.settings.pathProtocol.rawValue, mapping.settings.identity.rawValue,
                    mapping.settings.cipher.rawValue, expiresAt, mapping.revoked, mapping.keyNotAfter,
                ])
        }
    }

    /// The mappings of `kind` still live at `now`, with the time each lives until; the expired
    /// ones are forgotten. Rows that no longer read are skipped.
    func live(_ kind: Kind, now: Double) throws -> [(address: IPAddress, mapping: Mapping, expiresAt: Double)] {
        try database.write { db in
            try db.execute(sql: "DELETE FROM mapping WHERE expires_at <= ?", arguments: [now])
            return try Row.fetchAll(db, sql: "SELECT * FROM mapping WHERE kind = ?", arguments: [kind.rawValue]).compactMap { row in
                guard let address = IPAddress(row["address"] as String),
                    let peer = try? DomainName(canonical: row["peer"] as String),
                    let key = try? KeyField.decode(row["key"] as String),
                    let pathProtocol = PathSettings.PathProtocol(rawValue: row["protocol"] as String),
                    let cipher = TLSCipher(rawValue: row["cipher"] as String)
                else { return nil }
                let addresses = (row["peer_addresses"] as String).split(separator: " ").compactMap { IPAddress(String($0)) }
                let expiresAt: Double = row["expires_at"]
                let mapping = Mapping(
                    intercept: address, peer: peer, peerAddresses: addresses, key: key,
                    settings: PathSettings(pathProtocol: pathProtocol, identity: Identity(row["identity"] as String), cipher: cipher),
                    expiresAt: expiresAt, liveConnections: 0, revoked: row["revoked"], keyNotAfter: row["key_not_after"])
                return (address, mapping, expiresAt)
            }
        }
    }
}
