import DNSWire
import KMSProtocol
import KMSSettings

extension KMSNode {
    /// Publishes the countersignatures of up to `limit` waiting hosts as zone data
    /// (`StaticRecords`): from the key cache when one there is fresh, issued here when this
    /// node is the signer, otherwise asked of the signer with a sigreq up the parent chain.
    /// When the zone changed, the serial moves (`notifyIfChanged` tells the secondaries).
    /// Returns how many records changed. A host whose signer cannot be reached now waits for the next sweep.
    @discardableResult
    public func publishStaticRecords(limit: Int = 200) async -> Int {
        guard !configuration.staticSigners.isEmpty else { return 0 }
        if staticRecords.takeSweepRequest() {
            staticRecords.startSweep(restart: true)
        }
        continueSweep(until: limit)
        var changed = 0
        for target in staticRecords.take(limit) {
            guard let host = registry[target] else { continue }
            for signer in configuration.staticSigners {
                let now = Self.now()
                guard let countersignature = await staticCountersignature(for: host, signer: signer, now: now) else { continue }
                // The key may have been rotated meanwhile: never publish the old one.
                guard registry[target]?.key == countersignature.key else { continue }
                if staticRecords.publish(countersignature) { changed += 1 }
            }
        }
        if changed > 0 {
            dnsZone.bump(now: Self.now())
            replies.clear()
        }
        return changed
    }

    /// Sends NOTIFY when the serial moved since the last one sent (a registration, a rotation,
    /// a publication). Returns whether it did.
    @discardableResult
    public func notifyIfChanged() async -> Bool {
        let serial = dnsZone.serial
        guard !configuration.notify.isEmpty, notifiedSerial.exchange(serial, ordering: .relaxed) != serial else { return false }
        await notifySecondaries()
        return true
    }

    /// Starts a sweep for every host whose static records have used half their validity (or
    /// lack one), unless one is running, and queues the first page's.
    public func sweepStaticRecords() {
        guard !configuration.staticSigners.isEmpty else { return }
        staticRecords.startSweep(restart: false)
        continueSweep(until: Self.sweepPage)
    }

    /// Rows of the store a sweep reads at a time.
    static let sweepPage = 10_000

    /// Walks the running sweep on, a page at a time, until `wanted` hosts wait or five pages
    /// were read (a store of fresh records is walked over several rounds, not in one).
    private func continueSweep(until wanted: Int) {
        for _ in 0..<5 {
            guard staticRecords.queuedCount < wanted, let position = staticRecords.sweepPosition else { return }
            let page: [(rowID: Int64, name: DomainName)]
            do { page = try store.hostNames(afterRowID: position, limit: Self.sweepPage) } catch {
                warnings.warning("cannot read the hosts to publish; the sweep starts again later", metadata: ["error": "\(error)"])
                staticRecords.advanceSweep(to: nil, queueing: [])
                return
            }
            let due = registry.due(among: page.map(\.name), signers: configuration.staticSigners, now: Self.now())
            staticRecords.advanceSweep(to: page.count < Self.sweepPage ? nil : page.last?.rowID, queueing: due)
        }
    }

    /// Hosts waiting to be published: those queued, and those the running sweep has yet to
    /// look at (which it may find fresh).
    public var staticRecordsPending: Int {
        let queued = staticRecords.queuedCount
        guard let position = staticRecords.sweepPosition else { return queued }
        return queued + ((try? store.hostCount(afterRowID: position)) ?? 0)
    }

    /// A countersignature of the host's current key by `signer` that this node received before
    /// and kept in its store, verified again. A start empties what was published, and without
    /// this every host would cost a sigreq up the chain again, each a signature and a log
    /// entry at the signer: a million of them for one restart of a zone of a million hosts.
    private func storedCountersignature(for host: RegisteredHost, signer: DomainName, now: UnixTime) -> Countersignature? {
        guard signer != zone,
            let (countersignature, storedAt) = try? store.countersignature(
                target: host.name, signer: signer, key: host.key, origin: .received, validAt: now),
            (try? countersignature.checkValidity(at: now)) != nil, reverified(countersignature)
        else { return nil }
        if storedAt + cache.maximumAge > now { cache.store(countersignature, at: storedAt) }
        return countersignature
    }

    private func staticCountersignature(for host: RegisteredHost, signer: DomainName, now: UnixTime) async -> Countersignature? {
        if let entry = cache.lookup(target: host.name, signer: signer, now: now), entry.countersignature.key == host.key {
            if !entry.countersignature.isPastHalfLife(at: now) { return entry.countersignature }
        }
        if let stored = storedCountersignature(for: host, signer: signer, now: now), !stored.isPastHalfLife(at: now) {
            return stored
        }
        if signer == zone {
            guard let (countersignature, proof) = try? await issue(target: host.name, key: host.key, now: now) else { return nil }
            cache.store(countersignature, proof: proof, at: now)
            return countersignature
        }
        guard let parent = configuration.parent else { return nil }
        let (outcome, _) = await requestCountersignature(
            for: host, signer: signer, ip: configuration.listen.address, via: parent, hops: Hops(node: zone, enabled: false),
            wait: upstream.timeout)
        guard case .key(let countersignature, _, _, _) = outcome else {
            warnings.warning("cannot publish a static countersignature", metadata: ["host": "\(host.name)", "signer": "\(signer)"])
            return nil
        }
        return countersignature
    }
}
