import DNSWire
import KMSProtocol
import Synchronization

/// The countersignatures this node publishes as zone data: for every registered host and every
/// configured static signer, one `_kms1.<host>` TXT record (`StaticCountersignature`), so any
/// DNS server (a secondary, a resolver's cache) can hold and serve the key with no KMS on the
/// read path.
///
/// Hosts wait in `pending` until they are published: a registration puts the host there (and a
/// rotation first withdraws its records, so an old key is never served again), and a sweep puts
/// back every host whose records have used half their validity.
final class StaticRecords: Sendable {
    private struct State {
        var published: [DomainName: [DomainName: Countersignature]] = [:]
        var pending: Set<DomainName> = []
        /// Every host is to be checked (start, reload): done by the next publication, after
        /// the node serves, not while a million names hold up its start.
        var sweepRequested = false
    }

    private let state = Mutex(State())

    /// The published countersignatures of `target`, by signer.
    func countersignatures(of target: DomainName) -> [Countersignature] {
        state.withLock { Array(($0.published[target] ?? [:]).values) }.sorted { $0.signer.text < $1.signer.text }
    }

    var all: [Countersignature] {
        state.withLock { $0.published.values.flatMap(\.values) }.sorted { ($0.target.text, $0.signer.text) < ($1.target.text, $1.signer.text) }
    }

    /// Publishes (or replaces) one; true if the zone changed.
    func publish(_ countersignature: Countersignature) -> Bool {
        state.withLock { state in
            let previous = state.published[countersignature.target]?[countersignature.signer]
            state.published[countersignature.target, default: [:]][countersignature.signer] = countersignature
            return previous != countersignature
        }
    }

    /// Withdraws every record of `target` and queues it again (its key changed); true if any
    /// was published.
    func withdraw(_ target: DomainName) -> Bool {
        state.withLock { state in
            state.pending.insert(target)
            return state.published.removeValue(forKey: target) != nil
        }
    }

    func requestSweep() { state.withLock { $0.sweepRequested = true } }

    /// Whether a sweep was requested since the last call.
    func takeSweepRequest() -> Bool {
        state.withLock { state in
            defer { state.sweepRequested = false }
            return state.sweepRequested
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

    var pendingCount: Int { state.withLock { $0.pending.count } }

    /// Hosts with a record past half its validity at `now`, or missing one of `signers`.
    func due(among hosts: [DomainName], signers: [DomainName], now: UnixTime) -> [DomainName] {
        state.withLock { state in
            hosts.filter { host in
                let records = state.published[host] ?? [:]
                return signers.contains { signer in
                    guard let record = records[signer] else { return true }
                    return record.isPastHalfLife(at: now)
                }
            }
        }
    }

    /// Withdraws every record `keep` rejects (a reload found another key in the store).
    func retain(_ keep: (Countersignature) -> Bool) {
        state.withLock { state in
            for (target, bySigner) in state.published {
                let kept = bySigner.filter { keep($0.value) }
                state.published[target] = kept.isEmpty ? nil : kept
            }
        }
    }
}
