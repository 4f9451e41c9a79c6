import DNSTransport
import DNSWire
import KMSProtocol
import Synchronization

/// Countersigned keys by (target, signer), with the time they were stored: the patent's
/// figure 3 table, in memory. An entry lives until half its validity has passed or the
/// maximum age, whichever comes first: past half-life it is fetched (and so re-issued by the
/// signer) again, so no KMS hands on a countersignature near its `not-after`.
final class KeyCache: Sendable {
    struct Key: Hashable {
        let target: DomainName
        let signer: DomainName
    }

    struct Entry: Sendable {
        let countersignature: Countersignature
        /// Where it sits in its signer's log, when that came with it.
        let proof: InclusionProof?
        let storedAt: UnixTime
        let expiresAt: UnixTime
    }

    private let entries = Mutex<[Key: Entry]>([:])
    let maximumAge: UnixTime
    let capacity: Int

    init(maximumAge: UnixTime, capacity: Int = 100_000) {
        self.maximumAge = maximumAge
        self.capacity = capacity
    }

    /// A valid entry, or nil. Expired entries are removed as they are met.
    func lookup(target: DomainName, signer: DomainName, now: UnixTime) -> Entry? {
        let key = Key(target: target, signer: signer)
        return entries.withLock { table in
            guard let entry = table[key] else { return nil }
            guard entry.expiresAt > now else {
                table.removeValue(forKey: key)
                return nil
            }
            return now >= entry.countersignature.notBefore ? entry : nil
        }
    }

    func store(_ countersignature: Countersignature, proof: InclusionProof? = nil, at now: UnixTime) {
        let c = countersignature
        let entry = Entry(
            countersignature: c, proof: proof, storedAt: now,
            expiresAt: min(c.notBefore + (c.notAfter - c.notBefore) / 2, now + maximumAge))
        guard entry.expiresAt > now else { return }
        entries.withLock { table in
            // Full: forget what expired, and if that was not enough, half of the rest, so the
            // next stores do not each pay a scan of the whole table.
            if table.count >= capacity {
                table = table.filter { $0.value.expiresAt > now }
                if table.count >= capacity { table.trim(toAtMost: capacity / 2) }
            }
            table[Key(target: countersignature.target, signer: countersignature.signer)] = entry
        }
    }

    /// Entries held now (for `status`).
    var count: Int { entries.withLock { $0.count } }

    /// Forgets everything (a reload).
    func clear() { entries.withLock { $0.removeAll() } }

    /// Forgets every entry for `target` (its key was rotated).
    func purge(target: DomainName) {
        entries.withLock { table in table = table.filter { $0.key.target != target } }
    }
}
