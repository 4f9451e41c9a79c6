public import DNSWire
import Foundation
import GRDB
public import KMSCrypto
public import KMSProtocol

/// A host registered in this KMS's zone: the patent's domain name / IP address table and
/// domain name / public key table, one row a host.
public struct RegisteredHost: Hashable, Sendable {
    public let name: DomainName
    public let addresses: [IPAddress]
    public let key: PublicKey
    public let registeredAt: UnixTime

    public init(name: DomainName, addresses: [IPAddress], key: PublicKey, registeredAt: UnixTime) {
        self.name = name
        self.addresses = addresses
        self.key = key
        self.registeredAt = registeredAt
    }
}

/// The node's durable state in SQLite (WAL, `synchronous=FULL`): registered hosts, and the
/// countersignatures it issued and received (the table of the patent's figure 3).
///
/// Registrations are written synchronously and are durable when `register` returns.
/// Countersignature rows are an audit and a cache warm-up source; they are written in the
/// background, off the request path.
public final class NodeStore: Sendable {
    public enum Origin: String, Sendable { case issued, received }

    private let database: DatabasePool

    public init(path: String) throws {
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        configuration.busyMode = .timeout(5)
        database = try DatabasePool(path: path, configuration: configuration)
        try Self.migrator.migrate(database)
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "host") { table in
                table.primaryKey("name", .text)
                table.column("addresses", .text).notNull()
                table.column("key", .text).notNull()
                table.column("registered_at", .integer).notNull()
            }
            try db.create(table: "countersignature") { table in
                table.column("target", .text).notNull()
                table.column("signer", .text).notNull()
                table.column("key", .text).notNull()
                table.column("not_before", .integer).notNull()
                table.column("not_after", .integer).notNull()
                table.column("signature", .blob).notNull()
                table.column("origin", .text).notNull()
                table.column("stored_at", .integer).notNull()
                table.primaryKey(["target", "signer", "key", "origin"])
            }
        }
        return migrator
    }

    /// Adds or replaces a host. Durable when it returns.
    public func register(_ host: RegisteredHost) throws {
        try database.write { db in
            try db.execute(
                sql: """
                    INSERT INTO host (name, addresses, key, registered_at) VALUES (?, ?, ?, ?)
                    ON CONFLICT(name) DO UPDATE SET addresses = excluded.addresses, key = excluded.key,
                        registered_at = excluded.registered_at
                    """,
                arguments: [
                    host.name.lowercased.text, host.addresses.map(\.description).joined(separator: " "),
                    KeyField.encode(host.key), host.registeredAt,
                ])
        }
    }

    /// Every registered host. Rows that no longer parse are skipped and reported.
    public func hosts() throws -> (hosts: [RegisteredHost], unreadable: [String]) {
        try database.read { db in
            var hosts: [RegisteredHost] = []
            var unreadable: [String] = []
            for row in try Row.fetchAll(db, sql: "SELECT name, addresses, key, registered_at FROM host") {
                let name: String = row["name"]
                let addressText: String = row["addresses"]
                guard let domain = try? DomainName(canonical: name), let key = try? KeyField.decode(row["key"]) else {
                    unreadable.append(name)
                    continue
                }
                let addresses = addressText.split(separator: " ").compactMap { IPAddress(String($0)) }
                hosts.append(RegisteredHost(name: domain, addresses: addresses, key: key, registeredAt: row["registered_at"]))
            }
            return (hosts, unreadable)
        }
    }

    /// Records a countersignature in the background. `completion` reports a failure to log.
    public func record(_ countersignature: Countersignature, origin: Origin, at now: UnixTime,
                       completion: @escaping @Sendable ((any Error)?) -> Void = { _ in }) {
        database.asyncWrite({ db in
            try db.execute(
                sql: """
                    INSERT OR REPLACE INTO countersignature
                        (target, signer, key, not_before, not_after, signature, origin, stored_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    countersignature.target.text, countersignature.signer.text, KeyField.encode(countersignature.key),
                    countersignature.notBefore, countersignature.notAfter, Data(countersignature.signature),
                    origin.rawValue, now,
                ])
        }, completion: { _, result in
            if case .failure(let error) = result { completion(error) } else { completion(nil) }
        })
    }

    /// Countersignatures of `origin` still valid at `now`, newest first.
    public func countersignatures(origin: Origin, validAt now: UnixTime) throws -> [(Countersignature, storedAt: UnixTime)] {
        try database.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT target, signer, key, not_before, not_after, signature, stored_at FROM countersignature
                    WHERE origin = ? AND not_after > ? ORDER BY stored_at DESC
                    """,
                arguments: [origin.rawValue, now]
            ).compactMap { row in
                guard let target = try? DomainName(canonical: row["target"]),
                    let signer = try? DomainName(canonical: row["signer"]),
                    let key = try? KeyField.decode(row["key"])
                else { return nil }
                let signature: Data = row["signature"]
                return (
                    Countersignature(
                        target: target, key: key, signer: signer, notBefore: row["not_before"],
                        notAfter: row["not_after"], signature: Array(signature)),
                    storedAt: row["stored_at"]
                )
            }
        }
    }

    /// Waits for background writes to reach the database (for tests and shutdown).
    public func flush() throws {
        try database.barrierWriteWithoutTransaction { _ in }
    }
}
