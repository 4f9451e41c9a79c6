import DNSTransport
import DNSWire
import KMSProtocol
import Synchronization

/// Signed records reused within the second they were signed.
///
/// A record whose content is fixed by its key and carries no nonce, only `time` in whole
/// seconds (anonymous answers, CUG verdicts), is the same record whether it is signed again or
/// not within that second. Reusing it takes the signature off the busiest paths (`dig TXT`,
/// a proxy's A queries) without changing a byte a client could tell apart. Answers to signed
/// inquiries echo a nonce and are never served from here.
final class PerSecondCache<Key: Hashable & Sendable>: Sendable {
    private struct Entry {
        let second: UnixTime
        let record: ResourceRecord
    }

    /// Full, a key not asked for lately makes room (CLOCK): more keys signed within one second
    /// than it holds cost no scan of the table (they did, for every store).
    private let entries: Mutex<ClockCache<Key, Entry>>

    init(capacity: Int = 10_000) { entries = Mutex(ClockCache(capacity: capacity)) }

    var count: Int { entries.withLock { $0.count } }

    /// The record for `key` signed in `second`, or a new one from `sign`.
    func record(for key: Key, second: UnixTime, sign: () -> ResourceRecord?) -> ResourceRecord? {
        if let entry = entries.withLock({ $0.value(for: key) }), entry.second == second { return entry.record }
        guard let record = sign() else { return nil }
        entries.withLock { $0.set(Entry(second: second, record: record), for: key) }
        return record
    }
}

