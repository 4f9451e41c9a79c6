import DNSWire
import KMSProtocol
import KMSSettings

extension KMSNode {
    /// Publishes the countersignatures of waiting hosts as zone data (`StaticRecords`): from
    /// the key cache or this node's store when one there is fresh (`local`), issued here when
    /// this node is the signer, otherwise asked of the signer with a sigreq up the parent chain.
    /// At most `limit` hosts cost a signature or a sigreq in one call, and at most
    /// `localLimit` more come from the cache or the store (a point read and a verify each), so
    /// a restart republishes a large zone in minutes without asking the signer again.
    /// When the zone changed, the serial moves (`notifyIfChanged` tells the secondaries).
    /// Returns how many records changed. A host whose signer cannot be reached now waits for the next sweep.
    @discardableResult
    public func publishStaticRecords(limit: Int = 200, localLimit: Int = 2_000) async -> Int {
        guard !configuration.staticSigners.isEmpty else { return 0 }
        if staticRecords.takeSweepRequest() {
            staticRecords.startSweep(restart: true)
        }
        var (changed, asked, local) = (0, 0, 0)
        while asked < limit && local < localLimit {
            await continueSweep(until: limit)
            let batch = staticRecords.take(limit - asked)
            if batch.isEmpty { break }
            for target in batch {
                guard let host = registry[target] else { continue }
                for signer in configuration.staticSigners {
                    let now = Self.now()
                    let (found, source) = await staticCountersignature(for: host, signer: signer, now: now)
                    if source == .local { local += 1 } else { asked += 1 }
                    // A key rotated meanwhile is refused by the registry, under its lock.
                    if let countersignature = found, staticRecords.publish(countersignature) { changed += 1 }
                }
                // A host from the store costs a read and a verify and never suspends: without
                // this, one call ran up to `localLimit` of them (0.4 s here) as one job, and the
                // requests' own tasks waited behind it on a node pinned to one CPU.
                await Task.yield()
            }
        }
        if changed > 0 {
            dnsZone.bump(now: Self.now())
            replies.clear()
        }
        if staticRecords.endRepublicationIfDone() {
            logger.info("static records republished after the start; zone transfers served", metadata: [
                "published": "\(staticRecords.publishedCount)", "serial": "\(dnsZone.serial)",
            ])
        }
        return changed
    }

    /// Sends NOTIFY when the serial moved since the last one sent (a registration, a rotation,
    /// a publication), once the republication after a start is done. Returns whether it did.
    @discardableResult
    public func notifyIfChanged() async -> Bool {
        // A secondary told now would transfer a zone still missing what a start took away.
        guard !staticRecords.isRepublishing else { return false }
        let serial = dnsZone.serial
        guard !configuration.notify.isEmpty, notifiedSerial.exchange(serial, ordering: .relaxed) != serial else { return false }
        await notifySecondaries()
        return true
    }

    /// Starts a sweep for every host whose static records have used half their validity (or
    /// lack one), unless one is running, and queues the first page's.
    public func sweepStaticRecords() async {
        guard !configuration.staticSigners.isEmpty else { return }
        staticRecords.startSweep(restart: false)
        await continueSweep(until: Self.sweepPage)
    }

    /// Rows of the store a sweep reads at a time.
    static let sweepPage = 10_000

    /// Walks the running sweep on, a page at a time, until `wanted` hosts wait or five pages
    /// were read (a store of fresh records is walked over several rounds, not in one). It
    /// yields after each page, so requests waiting on the same pool run in between.
    private func continueSweep(until wanted: Int) async {
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
            await Task.yield()
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

    /// Where a static countersignature came from: this node's cache or store, or a signature
    /// made or asked for.
    private enum Source { case local, signed }

    private func staticCountersignature(
        for host: RegisteredHost, signer: DomainName, now: UnixTime
    ) async -> (Countersignature?, Source) {
        if let entry = cache.lookup(target: host.name, signer: signer, now: now), entry.countersignature.key == host.key {
            if !entry.countersignature.isPastHalfLife(at: now) { return (entry.countersignature, .local) }
        }
        if let stored = storedCountersignature(for: host, signer: signer, now: now), !stored.isPastHalfLife(at: now) {
            return (stored, .local)
        }
        if signer == zone {
            guard let (countersignature, proof) = try? await issue(target: host.name, key: host.key, now: now) else { return (nil, .signed) }
            cache.store(countersignature, proof: proof, at: now)
            return (countersignature, .signed)
        }
        guard let parent = configuration.parent else { return (nil, .signed) }
        let (outcome, _) = await requestCountersignature(
            for: host, signer: signer, ip: configuration.listen.address, via: parent, hops: Hops(node: zone, enabled: false),
            wait: upstream.timeout)
        guard case .key(let countersignature, _, _, _) = outcome else {
            warnings.warning("cannot publish a static countersignature", metadata: ["host": "\(host.name)", "signer": "\(signer)"])
            return (nil, .signed)
        }
        return (countersignature, .signed)
    }
}
