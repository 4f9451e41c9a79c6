import DNSTransport
import DNSWire
import Synchronization

/// A small cache of upstream answers for names outside the KMS hierarchy, as a stub resolver's
/// forwarder keeps one (dnsmasq): keyed by name (case-insensitive), type, class and the DO and
/// CD bits, kept for the smallest TTL of the answer (a negative answer for its SOA's minimum,
/// RFC 2308), at most `maximumTTL`. Served with the TTLs counted down, the query's ID, and the
/// query's own spelling in the question and the answers owned by the name (a resolver that
/// checks its random case, DNS 0x20, gets it back). Errors other than NXDOMAIN, truncated
/// answers and answers from the hierarchy (signed per query) are not kept. When full, CLOCK
/// replaces an entry not asked for lately, in constant time.
final class AnswerCache: Sendable {
    private struct Key: Hashable {
        let name: DomainName
        let type: RRType
        let rrClass: RRClass
        let dnssecOK: Bool
        let checkingDisabled: Bool

        init(_ query: DNSMessage) {
            let question = query.question!
            name = question.name.lowercased
            type = question.type
            rrClass = question.rrClass
            dnssecOK = query.edns?.dnssecOK ?? false
            checkingDisabled = query.header.checkingDisabled
        }
    }

    private struct Entry {
        let answer: DNSMessage
        let storedAt: Double
        let expiresAt: Double
    }

    private let entries: Mutex<ClockCache<Key, Entry>>
    let capacity: Int
    let maximumTTL: UInt32

    init(capacity: Int = 10_000, maximumTTL: UInt32 = 3600) {
        self.capacity = capacity
        self.maximumTTL = maximumTTL
        entries = Mutex(ClockCache(capacity: capacity))
    }

    /// The cached answer to `query` with its TTLs counted down and the query's ID, or nil.
    func answer(to query: DNSMessage, now: Double) -> DNSMessage? {
        let key = Key(query)
        guard let entry = entries.withLock({ table -> Entry? in
            guard let entry = table.value(for: key) else { return nil }
            guard entry.expiresAt > now else {
                table.remove(key)
                return nil
            }
            return entry
        }) else { return nil }
        var answer = entry.answer
        answer.header.id = query.header.id
        let name = query.question!.name
        answer.questions = query.questions
        for index in answer.answers.indices where answer.answers[index].name == name { answer.answers[index].name = name }
        let age = UInt32(max(0, now - entry.storedAt))
        for section in [\DNSMessage.answers, \DNSMessage.authorities, \DNSMessage.additionals] {
            for index in answer[keyPath: section].indices {
                answer[keyPath: section][index].ttl -= min(age, answer[keyPath: section][index].ttl)
            }
        }
        return answer
    }

    func store(_ answer: DNSMessage, for query: DNSMessage, now: Double) {
        guard !answer.header.isTruncated, answer.rcode == .noError || answer.rcode == .nameError,
            let ttl = Self.lifetime(of: answer), ttl > 0
        else { return }
        let entry = Entry(answer: answer, storedAt: now, expiresAt: now + Double(min(ttl, maximumTTL)))
        entries.withLock { $0.set(entry, for: Key(query)) }
    }

    /// How long an answer may be kept: its smallest TTL; a negative answer, its SOA's
    /// minimum (or the SOA's TTL, if smaller); nil when there is nothing to go by.
    static func lifetime(of answer: DNSMessage) -> UInt32? {
        if !answer.answers.isEmpty { return answer.answers.map(\.ttl).min() }
        guard let soa = answer.authorities.first(where: { $0.type == .soa }) else { return nil }
        guard case .other(_, let rdata) = soa.data, rdata.count >= 4 else { return soa.ttl }
        let minimum = rdata.suffix(4).reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        return min(soa.ttl, minimum)
    }

    var count: Int { entries.withLock { $0.count } }
}
