public import DNSTransport
public import DNSWire
import Foundation
public import KMSCrypto
import KMSProtocol
import KMSSettings
import LogFormat
public import Logging
import NIOCore
import Synchronization

/// One Key Management Server: the patent's figure 1, serving one zone.
///
/// It answers from memory (registry, key cache) where it can, signs with its own key, and asks
/// its parent or a child over the network where it must. The request path is in
/// `Pipeline.swift`, in the order it runs.
public final class KMSNode: Sendable {
    public let configuration: NodeConfiguration
    let store: NodeStore
    /// Every countersignature this node issued, in an RFC 9162 tree (`SignerLog`).
    let log: SignerLog
    let registry: Registry
    let cache: KeyCache
    let anonymousAnswers = PerSecondCache<Countersignature>()
    let verdicts = PerSecondCache<CUGVerdict>()
    let replies: ReplyCache
    let policy: PolicySource?
    let replay: ReplayGuard
    let router: Router
    /// SOA, NS, delegations and the serial (`Zone`).
    let dnsZone: Zone
    /// Countersignatures published as zone data (`_kms1.<host>` TXT).
    let staticRecords: StaticRecords
    /// Neighbours that fetched keys through this node (whom to tell of a revocation).
    let subscribers = Subscribers()
    /// Revocations being sent (`revocationsSent()` waits for them).
    let revocationTasks = Mutex<[Task<Void, Never>]>([])
    /// When this node started (seconds since the epoch).
    let startedAt = KMSNode.now()
    /// The serial the secondaries were last told about (`notifyIfChanged`).
    let notifiedSerial: Atomic<UInt32>
    let upstream: Upstream
    let logger: Logger
    /// Warnings a flood could repeat, rate-limited.
    let warnings: LogLimiter
    let metrics: NodeMetrics
    /// What each client may make this node spend (flood limits).
    let spending: Spending
    /// DNS Cookies: which UDP clients have proven their address.
    let cookies: DNSCookies
    /// Registrations are applied one at a time: store, then memory, then cache purge.
    private let registrationOrder = Mutex(())

    public var zone: DomainName { configuration.zone }

    /// Opens the store, applies the configuration's `host` lines for hosts the store does not
    /// know yet, and warms the key cache from countersignatures still valid.
    public init(configuration: NodeConfiguration, client: DNSClient, logger: Logger? = nil) throws(NodeError) {
        self.configuration = configuration
        var logger = logger ?? Logger(label: "kmsd")
        logger[metadataKey: "zone"] = "\(configuration.zone)"
        self.logger = logger
        warnings = LogLimiter(logger)
        do {
            cookies = try DNSCookies()
        } catch {
            throw NodeError(nil, field: nil, "\(configuration.zone): cannot draw the DNS cookie secret: \(error)")
        }
        spending = Spending(configuration.limits, cookies: cookies)
        replies = ReplyCache(capacity: configuration.replyCache)
        do {
            store = try NodeStore(path: configuration.database)
        } catch {
            throw configuration.error("database", "cannot open \(configuration.database): \(error)")
        }
        let now = Self.now()
        do {
            log = try SignerLog(store: store, signer: configuration.zone, key: configuration.key, now: now)
        } catch {
            throw configuration.error("database", "cannot open the transparency log in \(configuration.database): \(error)")
        }
        do {
            registry = Registry(zone: configuration.zone)
            staticRecords = StaticRecords(registry: registry)
            let unreadable = try registry.load(from: store)
            for name in unreadable { logger.warning("skipping unreadable host row", metadata: ["host": "\(name)"]) }
            for seed in configuration.hosts where !registry.contains(seed.name) {
                guard try !store.wasRemoved(seed.name) else { continue }
                let host = RegisteredHost(name: seed.name, addresses: seed.addresses, key: seed.key, registeredAt: now)
                try store.register([host])
                registry.set(host)
            }
        } catch {
            throw configuration.error("database", "cannot read \(configuration.database): \(error)")
        }
        cache = KeyCache(maximumAge: UnixTime(configuration.cacheMaxAge))
        replay = ReplayGuard(window: Int64(configuration.replayWindow), capacity: configuration.replayMemory)
        router = Router(zone: configuration.zone, parent: configuration.parent, children: configuration.children)
        dnsZone = Zone(configuration: configuration, now: now)
        notifiedSerial = Atomic(0)
        if configuration.staticSigners.isEmpty {
            staticRecords.requestSweep()
        } else {
            staticRecords.requestRepublication()
        }
        metrics = NodeMetrics(zone: configuration.zone)
        upstream = Upstream(
            client: client, timeout: .milliseconds(Int64(configuration.upstreamTimeout * 1000)), key: configuration.key,
            timers: metrics.upstreamTime,
            retransmissions: metrics.upstreamRetransmissions)
        do { policy = try configuration.policy.map { (path) throws(ConfigError) in try PolicySource(path: path) } } catch {
            throw NodeError(nil, field: nil, "\(error)")
        }
        warmCache(now: now)
    }

    /// Seconds since the epoch.
    static func now() -> UnixTime { UnixTime(Date().timeIntervalSince1970) }

    /// The key this node holds for a KMS name: itself, its parent, a child, or an anchor.
    func knownKey(of name: DomainName) -> PublicKey? {
        if name == zone { return configuration.key.publicKey }
        if let peer = router.peer(named: name) { return peer.key }
        return configuration.anchors.anchor(named: name)?.key
    }

    /// What comes back from the store is checked again before any use (a key is never used
    /// unverified): its signer's key is known here and the signature verifies with it.
    func reverified(_ countersignature: Countersignature) -> Bool {
        guard let key = knownKey(of: countersignature.signer) else { return false }
        return (try? countersignature.verify(by: key)) != nil
    }

    /// At most this many stored countersignatures warm the cache at start: each is decoded and
    /// verified again (about 100 µs), so a store that holds a million must not cost a minute of
    /// start, and a big one not more than a fraction of a second.
    static let warmLimit = 2_000

    private func warmCache(now: UnixTime) {
        guard let rows = try? store.countersignatures(
            origin: .received, validAt: now, storedAfter: now - cache.maximumAge, limit: Self.warmLimit)
        else { return }
        var loaded = 0
        for (countersignature, storedAt) in rows.reversed() {
            guard storedAt + cache.maximumAge > now, reverified(countersignature) else { continue }
            if case .local = router.route(countersignature.target),
                registry[countersignature.target]?.key != countersignature.key
            {
                continue
            }
            cache.store(countersignature, at: storedAt)
            loaded += 1
        }
        if loaded > 0 { logger.info("warmed key cache", metadata: ["entries": "\(loaded)"]) }
    }

    // MARK: Registration

    /// A host to register: its name, key and addresses.
    public struct Registration: Sendable {
        public let name: DomainName
        public let key: PublicKey
        public let addresses: [IPAddress]

        public init(name: DomainName, key: PublicKey, addresses: [IPAddress]) {
            self.name = name
            self.key = key
            self.addresses = addresses
        }
    }

    /// Adds or replaces a host in this zone. Durable when it returns; from then on the node
    /// serves the new key and never a countersignature over the old one.
    public func register(name: DomainName, key: PublicKey, addresses: [IPAddress]) throws(NodeError) {
        try register([Registration(name: name, key: key, addresses: addresses)])
    }

    /// Adds or replaces hosts in this zone, all or none, in one transaction: durable when it
    /// returns (one fsync for the whole batch, which is what makes bulk loading fast).
    public func register(_ batch: [Registration]) throws(NodeError) {
        let now = Self.now()
        var hosts: [RegisteredHost] = []
        hosts.reserveCapacity(batch.count)
        for (index, registration) in batch.enumerated() {
            let name = registration.name
            let place = batch.count > 1 ? "host \(index + 1) (\(name))" : "name"
            guard name.isSubdomain(of: zone) else {
                throw NodeError(nil, field: place, "\(name) is not in zone \(zone)")
            }
            if case .child(let child) = router.route(name) {
                throw NodeError(nil, field: place, "\(name) is in the child zone \(child.name); register it there")
            }
            guard registration.addresses.count <= Int(UInt16.max) else {
                throw NodeError(nil, field: place, "\(registration.addresses.count) addresses; a host has at most \(UInt16.max)")
            }
            hosts.append(RegisteredHost(name: name.lowercased, addresses: registration.addresses, key: registration.key, registeredAt: now))
        }
        let result: Result<Void, NodeError> = registrationOrder.withLock { _ in
            do { try store.register(hosts) } catch {
                return .failure(NodeError(configuration.database, field: nil, "cannot store the registration: \(error)"))
            }
            var toPublish: [DomainName] = []
            for host in hosts {
                let previous = registry[host.name]?.key
                let rotated = previous.map { $0 != host.key } ?? false
                registry.set(host)
                if let previous, rotated {
                    cache.purge(target: host.name)
                    revoke(target: host.name, key: previous)
                    // Its static records speak for the old key: withdrawn now, republished later.
                    _ = staticRecords.withdraw(host.name)
                } else if !configuration.staticSigners.isEmpty {
                    toPublish.append(host.name)
                }
            }
            // Publication goes at 200 hosts a second, so a bulk load must not wait as a queue
            // of names: past a page of them, the sweep walks the store instead (a registered
            // host takes a row id past the sweep's place, so a sweep under way reaches it too).
            if staticRecords.queuedCount + toPublish.count > Self.sweepPage {
                staticRecords.startSweep(restart: false)
            } else {
                staticRecords.queue(toPublish)
            }
            replies.clear()
            dnsZone.bump(now: now)
            return .success(())
        }
        try result.get()
        if let host = hosts.first, hosts.count == 1 {
            logger.info("registered host", metadata: ["host": "\(host.name)", "key": "\(KeyField.encode(host.key).prefix(24))…"])
        } else {
            logger.info("registered hosts", metadata: ["count": "\(hosts.count)"])
        }
    }

    /// Removes a host from this zone: durable when it returns; from then on the node neither
    /// serves its addresses nor countersigns or publishes its key, and its cached keys and
    /// static records are gone (the serial moves, so secondaries follow).
    public func remove(name: DomainName) throws(NodeError) {
        let name = name.lowercased
        let result: Result<Bool, NodeError> = registrationOrder.withLock { _ in
            let stored: Bool
            do { stored = try store.remove(name, at: Self.now()) } catch {
                return .failure(NodeError(configuration.database, field: nil, "cannot remove \(name): \(error)"))
            }
            let previous = registry[name]?.key
            let known = registry.remove(name)
            if let previous { revoke(target: name, key: previous) }
            guard stored || known else { return .success(false) }
            cache.purge(target: name)
            _ = staticRecords.withdraw(name)
            replies.clear()
            dnsZone.bump(now: Self.now())
            return .success(true)
        }
        guard try result.get() else { throw NodeError(nil, field: "name", "\(name) is not registered in \(zone)") }
        logger.info("removed host", metadata: ["host": "\(name)"])
    }

    /// Forgets the cached keys of `name`, or all of them (and the reply cache): the next
    /// answers are fetched and verified afresh. Returns how many entries were dropped.
    @discardableResult
    public func flush(name: DomainName?) -> Int {
        let before = cache.count
        if let name { cache.purge(target: name.lowercased) } else { cache.clear() }
        replies.clear()
        return before - cache.count
    }

    /// What `kms ctl status` shows.
    public var status: [(String, String)] {
        [
            ("zone", zone.text), ("listen", "\(configuration.listen)"), ("serial", "\(dnsZone.serial)"),
            ("hosts", "\(registry.count)"), ("cached keys", "\(cache.count)"),
            ("static records", "\(staticRecords.publishedCount) published, \(staticRecordsPending) waiting"),
            ("upstream fetches in flight", "\(spending.fetchesInFlight)"),
            ("parent", configuration.parent.map { "\($0.name) \($0.endpoint)" } ?? "none (root)"),
            ("children", configuration.children.map { "\($0.name) \($0.endpoint)" }.joined(separator: ", ")),
            ("secondaries", configuration.secondaries.map { "\($0.address)/\($0.length)" }.joined(separator: ", ")),
            ("zone transfers", staticRecords.isRepublishing ? "held until the static records are republished after the start" : "served"),
            ("transfer key", configuration.transferKey.map { "\($0.name)" } ?? "none"),
            ("started", "\(startedAt)"),
        ]
    }

    /// Sets this node's gauges from its tables (when `/metrics` is scraped).
    public func updateGauges() {
        metrics.keyCacheEntries.record(cache.count)
        metrics.registeredHosts.record(registry.count)
        metrics.logEntries.record(Int(log.head.size))
        metrics.upstreamInFlight.record(spending.fetchesInFlight)
    }

    /// The `# HELP` texts of kmsd's metrics.
    public static var metricsHelp: [String: String] { NodeMetrics.help }

    /// Counters since start, and the sizes a knotc user would look for (`kms ctl stats`).
    public var stats: [(String, String)] {
        metrics.all.map { ($0.name, "\($0.count)") } + [
            ("log.size", "\(log.head.size)"), ("key-cache.entries", "\(cache.count)"), ("hosts", "\(registry.count)"),
            ("upstream.in-flight", "\(spending.fetchesInFlight)"), ("uptime-seconds", "\(Self.now() - startedAt)"),
        ]
    }

    /// What SIGHUP (and the `reload` control op) does, as Unbound and Knot do on theirs: reads
    /// the policy database again (a broken file keeps the last good one), reads the registered
    /// hosts again from the store (the truth), and empties the key and reply caches, so the
    /// next answers are fetched and signed afresh. Returns one line per part, for the log.
    /// The rest of the configuration (addresses, keys, neighbours) needs a restart.
    public func reload() -> [String] {
        var done: [String] = []
        if let policy {
            do {
                try policy.reload()
                done.append("policy: read \(policy.path)")
            } catch {
                done.append("policy: kept the last good one (\(error))")
            }
        }
        let result: Result<Int, any Error> = registrationOrder.withLock { _ in
            do {
                _ = try registry.load(from: store)
                staticRecords.requestSweep()
                cache.clear()
                replies.clear()
                spending.unresolved.clear()
                return .success(registry.count)
            } catch {
                return .failure(error)
            }
        }
        switch result {
        case .success(let count): done.append("hosts: \(count) read from \(configuration.database); key, reply and negative caches emptied")
        case .failure(let error): done.append("hosts: kept (cannot read \(configuration.database): \(error))")
        }
        for line in done { logger.notice("reload", metadata: ["part": "\(line)"]) }
        return done
    }

    /// Reads the policy database again (the `reload-policy` control op).
    public func reloadPolicy() throws(NodeError) {
        guard let policy else { throw configuration.error("policy", "this node has no policy database") }
        do { try policy.reload() } catch { throw NodeError(nil, field: nil, "\(error)") }
        logger.info("reloaded policy", metadata: ["file": "\(policy.path)"])
    }

    /// Upstream fetches waiting for a neighbour now.
    public var upstreamFetchesInFlight: Int { spending.fetchesInFlight }

    /// Every registered host, keys decoded, sorted by name (for listings).
    public var registeredHosts: [RegisteredHost] { registry.all.sorted { $0.name.text < $1.name.text } }

    /// How many hosts are registered (counted, not listed).
    public var registeredHostCount: Int { registry.count }
}

/// A node that cannot start or cannot do what it was asked: says which file, line and field.
public struct NodeError: Error, Sendable, CustomStringConvertible {
    public let path: String?
    public let line: Int?
    public let field: String?
    public let reason: String

    public init(_ path: String?, line: Int? = nil, field: String?, _ reason: String) {
        self.path = path
        self.line = line
        self.field = field
        self.reason = reason
    }

    /// `file:line: field: reason`, leaving out what is not known.
    public var description: String {
        var place = path ?? ""
        if let line, path != nil { place += ":\(line)" }
        let parts = [place.isEmpty ? nil : place, field].compactMap { $0 }
        return (parts + [reason]).joined(separator: ": ")
    }
}

extension NodeConfiguration {
    /// An error about the directive `field` of this configuration, pointing at its line.
    func error(_ field: String, _ reason: String) -> NodeError {
        NodeError(path, line: lines[field], field: field, reason)
    }
}
