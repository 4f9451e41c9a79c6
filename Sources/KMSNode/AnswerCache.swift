import DNSWire
import KMSProtocol
import Synchronization

/// Signed anonymous answers, reused within the second they were signed.
///
/// An anonymous answer has an empty nonce and a `time` in whole seconds, so within one second
/// the answer for (target, signer) is the same record whether it is signed again or not:
/// reusing it takes the signature off the busiest path (`dig TXT`) without changing a byte
/// a client could tell apart. Signed inquiries are never served from here: their answers
/// echo a nonce and are signed each time.
final class AnswerCache: Sendable {
    private struct Key: Hashable {
        let target: DomainName
        let signer: DomainName
    }

    private struct Entry {
        let second: UnixTime
        let countersignature: Countersignature
        let record: ResourceRecord
    }

    private let entries = Mutex<[Key: Entry]>([:])
    private let capacity: Int

    init(capacity: Int = 10_000) { self.capacity = capacity }

    func lookup(target: DomainName, signer: DomainName, countersignature: Countersignature, second: UnixTime) -> ResourceRecord? {
        entries.withLock { table in
            guard let entry = table[Key(target: target, signer: signer)], entry.second == second,
                entry.countersignature == countersignature
            else { return nil }
            return entry.record
        }
    }

    func store(_ record: ResourceRecord, target: DomainName, signer: DomainName, countersignature: Countersignature, second: UnixTime) {
        entries.withLock { table in
            if table.count >= capacity { table = table.filter { $0.value.second >= second } }
            table[Key(target: target, signer: signer)] = Entry(second: second, countersignature: countersignature, record: record)
        }
    }
}
