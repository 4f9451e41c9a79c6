import KMSCrypto
import Synchronization

/// Countersignatures that verified with a signer's key, remembered so the same bytes are not
/// verified again: the same countersignature reaches a host on every fetch of a key, and a
/// node on every refresh of it, and a verify is the costliest step of a warm fetch
/// (about 61 µs here). An entry is the whole countersignature (target, key, signer, validity,
/// signature) and the signer's key, compared in full: a verify of equal bytes can only give the
/// same answer, and only successes are kept, so nothing unverified is ever taken for verified.
/// Validity is still checked against the clock on every use (`CountersignaturePolicy`).
///
/// Bounded by two generations of `capacity` entries each: when the young one is full it
/// becomes the old one (the previous old one is dropped), and a hit in the old one moves the
/// entry back, so what is in use stays and the memory never exceeds two generations.
final class VerifiedCountersignatures: Sendable {
    static let shared = VerifiedCountersignatures(capacity: 2_048)

    struct Entry: Hashable, Sendable {
        let countersignature: Countersignature
        let signerKey: PublicKey
    }

    private struct Generations {
        var young: Set<Entry> = []
        var old: Set<Entry> = []
    }

    private let generations = Mutex(Generations())
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
    }

    /// Whether this countersignature verified with `signerKey` before.
    func contains(_ countersignature: Countersignature, signerKey: PublicKey) -> Bool {
        let entry = Entry(countersignature: countersignature, signerKey: signerKey)
        return generations.withLock { generations in
            if generations.young.contains(entry) { return true }
            guard generations.old.remove(entry) != nil else { return false }
            Self.insert(entry, into: &generations, capacity: capacity)
            return true
        }
    }

    /// Remembers a countersignature that just verified with `signerKey`.
    func insert(_ countersignature: Countersignature, signerKey: PublicKey) {
        let entry = Entry(countersignature: countersignature, signerKey: signerKey)
        generations.withLock { Self.insert(entry, into: &$0, capacity: capacity) }
    }

    private static func insert(_ entry: Entry, into generations: inout Generations, capacity: Int) {
        if generations.young.count >= capacity {
            generations.old = generations.young
            generations.young = []
        }
        generations.young.insert(entry)
    }

    /// Entries held now (tests).
    var count: Int { generations.withLock { $0.young.count + $0.old.count } }
}
