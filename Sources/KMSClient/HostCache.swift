public import DNSWire
import Foundation
import GRDB
import KMSCrypto
public import KMSProtocol

/// The host's own table of fetched keys (the patent's table 25): (target, signer) to key and
/// countersignature, with the time it was stored. Entries are re-verified when read, so a
/// cache file that was changed on disk never yields a key.
public final class HostCache: Sendable {
    private let database: DatabaseQueue
    public let maximumAge: UnixTime

    public init(path: String, maximumAge: UnixTime) throws {
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        database = try DatabaseQueue(path: path)
        self.maximumAge = maximumAge
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "key") { table in
                table.column("target", .text).notNull()
                table.column("signer", .text).notNull()
                table.column("key", .text).notNull()
                table.column("not_before", .integer).notNull()
                table.column("not_after", .integer).notNull()
                table.column("signature", .blob).notNull()
                table.column("stored_at", .integer).notNull()
                table.primaryKey(["target", "signer"])
            }
        }
        try migrator.migrate(database)
    }

    /// The stored countersignature for (target, signer) and when it was stored, if any and young enough.
    public func lookup(target: DomainName, signer: DomainName, now: UnixTime) throws -> (Countersignature, storedAt: UnixTime)? {
        try database.read { db in
            guard let row = try Row.fetchOne(
                db, sql: "SELECT key, not_before, not_after, signature, stored_at FROM key WHERE target = ? AND signer = ?",
                arguments: [target.lowercased.text, signer.text])
            else { return nil }
            let storedAt: UnixTime = row["stored_at"]
            guard storedAt + maximumAge > now, let key = try? KeyField.decode(row["key"]) else { return nil }
            let signature: Data = row["signature"]
            return (
                Countersignature(
                    target: target.lowercased, key: key, signer: signer, notBefore: row["not_before"],
                    notAfter: row["not_after"], signature: Array(signature)),
                storedAt
            )
        }
    }

    public func store(_ countersignature: Countersignature, at now: UnixTime) throws {
        try database.write { db in
            try db.execute(
                sql: """
                    INSERT OR REPLACE INTO key (target, signer, key, not_before, not_after, signature, stored_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                arguments: [
                    countersignature.target.text, countersignature.signer.text, KeyField.encode(countersignature.key),
                    countersignature.notBefore, countersignature.notAfter, Data(countersignature.signature), now,
                ])
        }
    }

    /// Forgets every entry for `target` (the hierarchy says it has no key any more).
    public func remove(target: DomainName) throws {
        try database.write { db in
            try db.execute(sql: "DELETE FROM key WHERE target = ?", arguments: [target.lowercased.text])
        }
    }
}
