import DNSWire
import KMSProtocol
import Synchronization

/// The countersignatures this node publishes as zone data: for every registered host and every
/// configured static signer, one `_kms1.<host>` TXT record (`StaticCountersignature`), so any
/// DNS server (a secondary, a resolver's cache) can hold and serve the key with no KMS on the
/// read path.
///
/// What is published is kept in the registry, beside the host and its key (`HostEntry`): a
/// rotation or a removal takes it away in the same step, so an old key is never served again.
/// This type keeps what waits to be published: hosts queued by a registration or a rotation
/// (a bulk registration past a page of them starts the sweep instead), and a sweep that walks the store page by page for hosts whose records are missing or have
/// used half their validity. The sweep holds only its place (a row id) and one page, so at a
/// million hosts it does not hold a million names.
final class StaticRecords: Sendable {
    private struct State {
        var pending: Set<DomainName> = []
        /// The row id of the last host the running sweep looked at; nil when none runs.
        var sweep: Int64?
        /// Every host is to be checked (start, reload): done by the next publication, after
        /// the node serves, not while a million names hold up its start.
        var sweepRequested = false
        /// From a start until the first sweep has looked at every host and what it queued has
        /// been published (or failed): the zone lacks records it had before the start.
        var republishing = false
    }

    private let state = Mutex(State())
    private let registry: Registry

    init(registry: Registry) {
        self.registry = registry
    }

    /// The published countersignatures of `target`, by signer.
    func countersignatures(of target: DomainName) -> [Countersignature] {
        registry.published(of: target).sorted { $0.signer.text < $1.signer.text }
    }

    var all: [Countersignature] {
        registry.allPublished.sorted { ($0.target.text, $0.signer.text) < ($1.target.text, $1.signer.text) }
    }

    var publishedCount: Int { registry.publishedCount }

    /// Publishes (or replaces) one, if it is of the host's current key; true if the zone changed.
    func publish(_ countersignature: Countersignature) -> Bool { registry.publish(countersignature) }

    /// Withdraws every record of `target` and queues it again; true if any was published.
    func withdraw(_ target: DomainName) -> Bool {
        state.withLock { _ = $0.pending.insert(target) }
        return registry.withdrawPublications(target)
    }

    func requestSweep() { state.withLock { $0.sweepRequested = true } }

    /// At a start: every host is to be republished, and until then the zone is incomplete.
    func requestRepublication() {
        state.withLock { state in
            state.sweepRequested = true
            state.republishing = true
        }
    }

    /// Whether the records published before the start are not all back yet: zone transfers
    /// and NOTIFY wait, so a secondary keeps its complete copy instead of taking a partial one.
    var isRepublishing: Bool { state.withLock { $0.republishing } }

    /// Ends the republication when its sweep has walked every host and nothing waits; true
    /// the one time it ends.
    func endRepublicationIfDone() -> Bool {
        state.withLock { state in
            guard state.republishing, !state.sweepRequested, state.sweep == nil, state.pending.isEmpty else { return false }
            state.republishing = false
            return true
        }
    }

    /// Whether a sweep was requested since the last call.
    func takeSweepRequest() -> Bool {
        state.withLock { state in
            defer { state.sweepRequested = false }
            return state.sweepRequested
        }
    }

    /// Starts a sweep from the store's first host; one already running goes on unless `restart`.
    func startSweep(restart: Bool) {
        state.withLock { state in
            if restart || state.sweep == nil { state.sweep = 0 }
        }
    }

    /// Where the running sweep is, nil when none runs.
    var sweepPosition: Int64? { state.withLock { $0.sweep } }

    /// Moves the sweep past `rowID` (nil: it has seen every host), queueing `due`.
    func advanceSweep(to rowID: Int64?, queueing due: [DomainName]) {
        state.withLock { state in
            state.pending.formUnion(due)
            state.sweep = rowID
        }
    }

    func queue(_ targets: [DomainName]) {
        state.withLock { $0.pending.formUnion(targets) }
    }

    /// Up to `limit` hosts waiting to be published, taken off the queue.
    func take(_ limit: Int) -> [DomainName] {
        state.withLock { state in
            let taken = Array(state.pending.prefix(limit))
            state.pending.subtract(taken)
            return taken
        }
    }

    /// Hosts queued (not counting those the running sweep has yet to look at).
    var queuedCount: Int { state.withLock { $0.pending.count } }
}
