public import DNSWire
import Foundation
import GRDB
import Synchronization
public import KMSCrypto
public import KMSProtocol

/// The store holds something it cannot have written.
struct NodeStoreError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

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
/// background, off the request path, without a sync of their own (`writeInBackground`).
public final class NodeStore: Sendable {
    public enum Origin: String, Sendable { case issued, received }

    private let database: DatabasePool
    private let background = Mutex(BackgroundQueue())
    /// How many transactions (or lone autocommits) the background writes took (tests).
    let backgroundDrains = Atomic(0)
    /// At most this many background writes wait for the writer; past it one is dropped (they
    /// are a cache, asked for again when needed), so a store slower than a flood of cold
    /// fetches costs a warning, not memory without bound.
    let backgroundLimit: Int

    /// A background write that found `backgroundLimit` others waiting, dropped.
    struct BackgroundQueueFull: Error, CustomStringConvertible {
        let limit: Int
        var description: String { "\(limit) background writes already wait for the store; this one is dropped" }
    }

    public init(path: String, backgroundLimit: Int = 10_000) throws {
        self.backgroundLimit = backgroundLimit
        try FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        database = try DatabasePool(path: path, configuration: configuration)
        // GRDB's pool turns WAL on after the configuration's own set-up and sets its writer to
        // `synchronous = NORMAL` as it does (a commit then survives the process, not the
        // machine). The writer is the one connection that commits: FULL again, so a commit is
        // on disk (fdatasync of the WAL) before `write` returns.
        try database.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        try Self.migrator.migrate(database)
    }

    /// Runs `body` while holding the writer, so background writes can only queue (tests).
    func whileWriting(_ body: () -> Void) {
        database.writeWithoutTransaction { _ in body() }
    }

    /// The writer connection's `PRAGMA synchronous` (2 is FULL), for tests.
    func writerSynchronous() throws -> Int {
        try database.writeWithoutTransaction { db in try Int.fetchOne(db, sql: "PRAGMA synchronous") ?? -1 }
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
        migrator.registerMigration("v2: removed hosts") { db in
            // A removal is remembered, so a `host` line of the configuration does not bring the
            // host back at the next start.
            try db.create(table: "removed_host") { table in
                table.primaryKey("name", .text)
                table.column("removed_at", .integer).notNull()
            }
        }
        migrator.registerMigration("v3: transparency log") { db in
            // The countersignatures this node issued, in log order (`SignerLog`): the leaf
            // input and its hash, so a start rebuilds the tree without hashing every entry.
            try db.create(table: "log_entry") { table in
                table.primaryKey("idx", .integer)
                table.column("entry", .blob).notNull()
                table.column("leaf_hash", .blob).notNull()
            }
            try db.create(table: "log_head") { table in
                table.primaryKey("size", .integer)
                table.column("root", .blob).notNull()
                table.column("time", .integer).notNull()
                table.column("signature", .blob).notNull()
            }
        }
        return migrator
    }

    /// Adds or replaces hosts, all in one transaction. Durable when it returns.
    public func register(_ hosts: [RegisteredHost]) throws {
        try database.write { db in
            let statement = try db.makeStatement(
                sql: """
                    INSERT INTO host (name, addresses, key, registered_at) VALUES (?, ?, ?, ?)
                    ON CONFLICT(name) DO UPDATE SET addresses = excluded.addresses, key = excluded.key,
                        registered_at = excluded.registered_at
                    """)
            let forget = try db.makeStatement(sql: "DELETE FROM removed_host WHERE name = ?")
            for host in hosts {
                try forget.execute(arguments: [host.name.lowercased.text])
                try statement.execute(arguments: [
                    host.name.lowercased.text, host.addresses.map(\.description).joined(separator: " "),
                    KeyField.encode(host.key), host.registeredAt,
                ])
            }
        }
    }

    /// Removes a host, and remembers that it was removed. Durable when it returns; false if
    /// the store did not know it.
    public func remove(_ name: DomainName, at now: UnixTime) throws -> Bool {
        try database.write { db in
            try db.execute(sql: "DELETE FROM host WHERE name = ?", arguments: [name.lowercased.text])
            let removed = db.changesCount > 0
            if removed {
                try db.execute(
                    sql: "INSERT OR REPLACE INTO removed_host (name, removed_at) VALUES (?, ?)", arguments: [name.lowercased.text, now])
            }
            return removed
        }
    }

    /// Whether an operator removed `name` (and nobody registered it since).
    public func wasRemoved(_ name: DomainName) throws -> Bool {
        try database.read { db in
            try Bool.fetchOne(db, sql: "SELECT EXISTS(SELECT 1 FROM removed_host WHERE name = ?)", arguments: [name.lowercased.text]) ?? false
        }
    }

    /// Hands every registered host to `visit`, in the registry's compact form, read with a
    /// cursor (a million rows are never all in memory as rows). Rows whose name, addresses or
    /// key text no longer parse are skipped and returned; the key itself is decoded by OpenSSL
    /// on first use. `expecting` is told the row count first.
    func forEachHost(
        expecting: (Int) -> Void, _ visit: (DomainName, HostEntry) -> Void
    ) throws -> (count: Int, unreadable: [String]) {
        try database.read { db in
            expecting(try Int.fetchOne(db, sql: "SELECT count(*) FROM host") ?? 0)
            var unreadable: [String] = []
            var count = 0
            let rows = try Row.fetchCursor(db, sql: "SELECT name, addresses, key, registered_at FROM host")
            while let row = try rows.next() {
                let name: String = row[0]
                let addressText: String = row[1]
                let keyText: String = row[2]
                // Written by `register` in canonical form; checked cheaply, not re-printed. The
                // text is read as UTF-8 bytes: splitting it by Characters was a fifth of a start
                // with a million hosts.
                let key = keyText.utf8
                guard name.hasSuffix("."), let domain = try? DomainName(name), domain.isLowerCase,
                    let colon = key.firstIndex(of: UInt8(ascii: ":")),
                    KeyAlgorithm(rawValue: String(Substring(key[..<colon]))) != nil,
                    let der = Data(base64Encoded: String(Substring(key[key.index(after: colon)...]))).map(Array.init)
                else {
                    unreadable.append(name)
                    continue
                }
                var addresses: [IPAddress] = []
                for text in addressText.utf8.split(separator: UInt8(ascii: " ")) {
                    guard let address = IPAddress(String(Substring(text))) else { continue }
                    addresses.append(address)
                }
                guard let entry = HostEntry(name: domain, addresses: addresses, key: der, registeredAt: row[3]) else {
                    unreadable.append(name)
                    continue
                }
                visit(domain, entry)
                count += 1
            }
            return (count, unreadable)
        }
    }

    /// Up to `limit` registered names after row `rowID`, in row order, with their row ids (a
    /// walk over every host a page at a time; a new host takes the next row id, one registered
    /// again keeps its own).
    /// Names that no longer parse are left out.
    func hostNames(afterRowID rowID: Int64, limit: Int) throws -> [(rowID: Int64, name: DomainName)] {
        try database.read { db in
            try Row.fetchAll(db, sql: "SELECT rowid, name FROM host WHERE rowid > ? ORDER BY rowid LIMIT ?", arguments: [rowID, limit])
                .compactMap { row in (try? DomainName(row[1] as String)).map { (row[0], $0) } }
        }
    }

    /// How many hosts lie after row `rowID`.
    func hostCount(afterRowID rowID: Int64) throws -> Int {
        try database.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM host WHERE rowid > ?", arguments: [rowID]) ?? 0 }
    }

    /// Records a countersignature in the background. `completion` reports a failure to log.
    public func record(_ countersignature: Countersignature, origin: Origin, at now: UnixTime,
                       completion: @escaping @Sendable ((any Error)?) -> Void = { _ in }) {
        writeInBackground({ db in
            try db.cachedStatement(
                sql: """
                    INSERT OR REPLACE INTO countersignature
                        (target, signer, key, not_before, not_after, signature, origin, stored_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """
            ).execute(
                arguments: [
                    countersignature.target.text, countersignature.signer.text, KeyField.encode(countersignature.key),
                    countersignature.notBefore, countersignature.notAfter, Data(countersignature.signature),
                    origin.rawValue, now,
                ])
        }, completion: completion)
    }

    /// Forgets, in the background, every countersignature received for `target` (revoked).
    public func forgetReceived(target: DomainName, completion: @escaping @Sendable ((any Error)?) -> Void = { _ in }) {
        writeInBackground({ db in
            try db.cachedStatement(sql: "DELETE FROM countersignature WHERE target = ? AND origin = ?")
                .execute(arguments: [target.text, Origin.received.rawValue])
        }, completion: completion)
    }

    /// A background write nobody waits for (a cached countersignature, a forgotten one),
    /// committed with `synchronous = NORMAL`: in the WAL but not yet synced (a machine that
    /// fails meanwhile loses a cache entry, which is asked for again); the next acknowledged
    /// commit, FULL, syncs it along. Each had cost an fdatasync that the next log append on
    /// the same writer waited behind.
    ///
    /// Writes that queue up while one is under way go together in the next transaction (group
    /// commit), in the order they came; a lone write goes without a transaction of its own
    /// (SQLite's autocommit), whose BEGIN and COMMIT SQLite would otherwise parse each time.
    private func writeInBackground(
        _ update: @escaping @Sendable (GRDB.Database) throws -> Void, completion: @escaping @Sendable ((any Error)?) -> Void
    ) {
        let (queued, first) = background.withLock { queue -> (Bool, Bool) in
            guard queue.writes.count < backgroundLimit else { return (false, false) }
            queue.writes.append(BackgroundWrite(update: update, completion: completion))
            defer { queue.scheduled = true }
            return (true, !queue.scheduled)
        }
        guard queued else { return completion(BackgroundQueueFull(limit: backgroundLimit)) }
        guard first else { return }
        database.asyncWriteWithoutTransaction { [self] db in
            let batch = background.withLock { queue in
                defer { queue = BackgroundQueue() }
                return queue.writes
            }
            backgroundDrains.add(1, ordering: .relaxed)
            var failures = [(any Error)?](repeating: nil, count: batch.count)
            do {
                try db.cachedStatement(sql: "PRAGMA synchronous = NORMAL").execute()
                defer { try? db.cachedStatement(sql: "PRAGMA synchronous = FULL").execute() }
                if batch.count == 1 {
                    try batch[0].update(db)
                } else {
                    // A failed statement undoes only itself; the others commit.
                    try db.inTransaction {
                        for (index, write) in batch.enumerated() {
                            do { try write.update(db) } catch { failures[index] = error }
                        }
                        return .commit
                    }
                }
            } catch {
                failures = failures.map { $0 ?? error }
            }
            for (write, failure) in zip(batch, failures) { write.completion(failure) }
        }
    }

    private struct BackgroundWrite: Sendable {
        let update: @Sendable (GRDB.Database) throws -> Void
        let completion: @Sendable ((any Error)?) -> Void
    }

    /// Background writes waiting for the writer, and whether a drain is on its way to it.
    private struct BackgroundQueue: Sendable {
        var writes: [BackgroundWrite] = []
        var scheduled = false
    }

    /// Countersignatures of `origin` still valid at `now` and stored after `storedAfter`,
    /// newest first, at most `limit`.
    public func countersignatures(
        origin: Origin, validAt now: UnixTime, storedAfter: UnixTime = 0, limit: Int = Int.max
    ) throws -> [(Countersignature, storedAt: UnixTime)] {
        try database.read { db in
            try Row.fetchAll(
                db,
                sql: """
                    SELECT target, signer, key, not_before, not_after, signature, stored_at FROM countersignature
                    WHERE origin = ? AND not_after > ? AND stored_at > ? ORDER BY stored_at DESC LIMIT ?
                    """,
                arguments: [origin.rawValue, now, storedAfter, limit]
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

    /// The countersignature of `key` for `target` by `signer` kept from `origin`, with when
    /// it was stored, if one is still valid at `now` (a point read on the primary key).
    public func countersignature(
        target: DomainName, signer: DomainName, key: PublicKey, origin: Origin, validAt now: UnixTime
    ) throws -> (Countersignature, storedAt: UnixTime)? {
        try database.read { db in
            guard let row = try Row.fetchOne(
                db.cachedStatement(
                    sql: """
                        SELECT not_before, not_after, signature, stored_at FROM countersignature
                        WHERE target = ? AND signer = ? AND key = ? AND origin = ? AND not_after > ?
                        """),
                arguments: [target.text, signer.text, KeyField.encode(key), origin.rawValue, now])
            else { return nil }
            let signature: Data = row["signature"]
            return (
                Countersignature(
                    target: target, key: key, signer: signer, notBefore: row["not_before"], notAfter: row["not_after"],
                    signature: Array(signature)),
                storedAt: row["stored_at"]
            )
        }
    }

    /// Appends log entries from index `first` and the head that covers them, in one
    /// transaction. Durable when it returns.
    func appendLog(_ entries: [LogEntry], first: UInt64, head: TreeHead) async throws {
        try await database.write { db in
            let statement = try db.cachedStatement(sql: "INSERT INTO log_entry (idx, entry, leaf_hash) VALUES (?, ?, ?)")
            for (offset, entry) in entries.enumerated() {
                try statement.execute(arguments: [Int64(first) + Int64(offset), Data(entry.leafInput), Data(entry.leafHash)])
            }
            try Self.insert(head, db)
        }
    }

    func saveHead(_ head: TreeHead) throws {
        try database.write { db in try Self.insert(head, db) }
    }

    private static func insert(_ head: TreeHead, _ db: GRDB.Database) throws {
        try db.cachedStatement(sql: "INSERT OR REPLACE INTO log_head (size, root, time, signature) VALUES (?, ?, ?, ?)").execute(
            arguments: [Int64(head.size), Data(head.root), head.time, Data(head.signature)])
    }

    /// Every leaf hash of the log, in order, read with a cursor; and the last head stored.
    func forEachLeafHash(_ visit: ([UInt8]) -> Void) throws -> (count: UInt64, lastHead: (size: UInt64, root: [UInt8])?) {
        try database.read { db in
            var count: UInt64 = 0
            let rows = try Row.fetchCursor(db, sql: "SELECT idx, leaf_hash FROM log_entry ORDER BY idx")
            while let row = try rows.next() {
                let index: Int64 = row[0]
                guard index == Int64(count) else { throw NodeStoreError("log entry \(count) is missing (found \(index))") }
                let hash: Data = row[1]
                visit(Array(hash))
                count += 1
            }
            let head = try Row.fetchOne(db, sql: "SELECT size, root FROM log_head ORDER BY size DESC LIMIT 1")
            return (count, head.map { row in (UInt64(row[0] as Int64), Array(row[1] as Data)) })
        }
    }

    /// The leaf inputs (TXT wire) of entries `first ..< end`.
    func logEntries(first: UInt64, end: UInt64) throws -> [[UInt8]] {
        try database.read { db in
            try Data.fetchAll(
                db, sql: "SELECT entry FROM log_entry WHERE idx >= ? AND idx < ? ORDER BY idx", arguments: [Int64(first), Int64(end)]
            ).map(Array.init)
        }
    }

    /// Waits for background writes to reach the database (for tests and shutdown).
    public func flush() throws {
        try database.barrierWriteWithoutTransaction { _ in }
    }
}
