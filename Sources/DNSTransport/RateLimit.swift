public import DNSWire
public import NIOCore
import Synchronization

/// A rate and the burst allowed above it, in tokens (requests) per second.
public struct Rate: Sendable, Equatable, CustomStringConvertible {
    public let perSecond: Double
    public let burst: Double

    public init(perSecond: Double, burst: Double? = nil) {
        self.perSecond = perSecond
        self.burst = burst ?? perSecond * 2
    }

    public var description: String { "\(Int(perSecond))/s (burst \(Int(burst)))" }
}

/// The part of a client's address that a limit is kept for: RRL's "client netblock" (BIND and
/// Knot default to /24 for IPv4 and /56 for IPv6), so that one host cannot escape a limit by
/// using every address of its network.
public struct AddressPrefix: Hashable, Sendable, CustomStringConvertible {
    private let high: UInt64
    private let low: UInt64
    private let length: UInt8
    private let isIPv6: Bool

    public init(_ address: IPAddress, v4 v4Length: Int, v6 v6Length: Int) {
        isIPv6 = address.isIPv6
        let bits = isIPv6 ? v6Length : v4Length
        length = UInt8(bits)
        var bytes = address.bytes
        for index in bytes.indices {
            let kept = max(0, min(8, bits - index * 8))
            bytes[index] &= kept == 8 ? 0xFF : ~(0xFF >> kept)
        }
        if isIPv6 {
            high = bytes[0..<8].reduce(0) { $0 << 8 | UInt64($1) }
            low = bytes[8..<16].reduce(0) { $0 << 8 | UInt64($1) }
        } else {
            high = 0
            low = bytes.reduce(0) { $0 << 8 | UInt64($1) }
        }
    }

    public var description: String {
        var bytes: [UInt8] = []
        if isIPv6 {
            for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: high >> UInt64(shift))) }
            for shift in stride(from: 56, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: low >> UInt64(shift))) }
        } else {
            for shift in stride(from: 24, through: 0, by: -8) { bytes.append(UInt8(truncatingIfNeeded: low >> UInt64(shift))) }
        }
        return "\(IPAddress(bytes: bytes)!)/\(length)"
    }
}

/// How much of an address a limit keys on.
public struct PrefixLengths: Sendable, Equatable {
    public let v4: Int
    public let v6: Int

    public init(v4: Int = 24, v6: Int = 56) {
        self.v4 = v4
        self.v6 = v6
    }

    public func prefix(of address: IPAddress) -> AddressPrefix { AddressPrefix(address, v4: v4, v6: v6) }
}

extension Dictionary {
    /// Drops entries, in no particular order, until at most `count` remain: the last resort of
    /// every bounded table here once it has forgotten what had expired.
    public mutating func trim(toAtMost count: Int) {
        guard self.count > count else { return }
        var kept = 0
        self = filter { _ in
            kept += 1
            return kept <= count
        }
    }
}

/// Token buckets, one per key (a client prefix, a sender's name), in a table of bounded size:
/// the admission test that runs before any work that costs CPU (a signature verify, an
/// upstream fetch, a signed answer).
///
/// A full table first forgets the buckets that have refilled (clients that went quiet, which
/// would start full anyway); if that frees less than half, it forgets half of the rest. So a
/// flood from many sources costs bounded memory, and a forgotten source only regains its burst.
public final class RateLimiter<Key: Hashable & Sendable>: Sendable {
    private struct Bucket {
        var tokens: Double
        var updated: UInt64
    }

    public let rate: Rate
    public let capacity: Int
    private let table = Mutex<[Key: Bucket]>([:])

    public init(rate: Rate, capacity: Int = 65_536) {
        self.rate = rate
        self.capacity = capacity
    }

    /// Takes `cost` tokens from the key's bucket if it has them; false if it does not (and
    /// then takes nothing).
    public func take(_ cost: Double = 1, for key: Key, now: UInt64 = NIODeadline.now().uptimeNanoseconds) -> Bool {
        update(key, now: now) { bucket in
            guard bucket.tokens >= cost else { return false }
            bucket.tokens -= cost
            return true
        }
    }

    /// Charges `cost` tokens, going below zero if need be (a penalty that must be earned back).
    public func charge(_ cost: Double = 1, for key: Key, now: UInt64 = NIODeadline.now().uptimeNanoseconds) {
        update(key, now: now) { bucket in
            bucket.tokens = max(bucket.tokens - cost, -rate.burst)
        }
    }

    /// Whether the key's bucket holds at least one token, taking nothing.
    public func allows(_ key: Key, now: UInt64 = NIODeadline.now().uptimeNanoseconds) -> Bool {
        update(key, now: now) { $0.tokens >= 1 }
    }

    /// Whether the key has a bucket now short of one token. Adds no bucket: a key never
    /// charged is not limited, and asking about it costs no memory.
    public func isLimited(_ key: Key, now: UInt64 = NIODeadline.now().uptimeNanoseconds) -> Bool {
        table.withLock { table in
            guard let bucket = table[key] else { return false }
            let elapsed = Double(now &- bucket.updated) / 1e9
            return bucket.tokens + max(0, elapsed) * rate.perSecond < 1
        }
    }

    /// When the key's bucket will hold a token again (uptime nanoseconds), or nil when it holds
    /// one now or has none: lets a caller keep the answer in an atomic instead of asking under
    /// the lock for every packet.
    public func limitedUntil(_ key: Key, now: UInt64 = NIODeadline.now().uptimeNanoseconds) -> UInt64? {
        table.withLock { table in
            guard let bucket = table[key] else { return nil }
            let tokens = bucket.tokens + max(0, Double(now &- bucket.updated) / 1e9) * rate.perSecond
            guard tokens < 1 else { return nil }
            return now + UInt64((1 - tokens) / rate.perSecond * 1e9)
        }
    }

    /// How many keys are tracked (for metrics and tests).
    public var count: Int { table.withLock { $0.count } }

    private func update<Result>(_ key: Key, now: UInt64, _ body: (inout Bucket) -> Result) -> Result {
        table.withLock { table in
            if var bucket = table[key] {
                let elapsed = Double(now &- bucket.updated) / 1e9
                bucket.tokens = min(rate.burst, bucket.tokens + max(0, elapsed) * rate.perSecond)
                bucket.updated = now
                let result = body(&bucket)
                table[key] = bucket
                return result
            }
            if table.count >= capacity { evict(&table, now: now) }
            var bucket = Bucket(tokens: rate.burst, updated: now)
            let result = body(&bucket)
            table[key] = bucket
            return result
        }
    }

    private func evict(_ table: inout [Key: Bucket], now: UInt64) {
        let rate = rate
        table = table.filter { _, bucket in
            bucket.tokens + Double(now &- bucket.updated) / 1e9 * rate.perSecond < rate.burst
        }
        table.trim(toAtMost: capacity / 2)
    }
}

/// RRL's "slip" (BIND's `slip`, NSD's and Knot's `rrl-slip`): of the UDP queries turned away
/// for a budget, one in `every` gets an empty TC=1 reply and the others get nothing.
///
/// A turned-away query comes from a client over budget, or from a forged address during a
/// spoofed flood. The TC=1 tells a real client to come back over TCP; it amplifies nothing,
/// but sending it still costs a reply per query, aimed at whoever the source claims to be.
/// Every second one (the default of BIND and NSD) halves that, and a real client whose query
/// was dropped gets its TC=1 when it asks again. 1 answers every one (Knot's default); 0
/// answers none.
public final class Slip: Sendable {
    public let every: Int
    private let count = Atomic<Int>(0)

    public init(every: Int) {
        precondition(every >= 0, "a slip of \(every)")
        self.every = every
    }

    /// Whether this turned-away query gets its TC=1 (true) or is dropped. Counted over the
    /// whole node, not per client: of `every` in a row, one answers.
    public func answers() -> Bool {
        switch every {
        case 0: return false
        case 1: return true
        default: return count.wrappingAdd(1, ordering: .relaxed).newValue % every == 0
        }
    }
}

extension Replies {
    /// An empty reply with TC=1: "ask again over TCP", where the source address is proven by
    /// the handshake. It is how a rate-limited UDP client is answered (RRL's "slip"): never
    /// larger than the query, so it amplifies nothing, and a real client loses no time.
    public static func truncated(to query: DNSMessage) -> Reply {
        var message = query.response(rcode: .noError, authoritative: false)
        message.header.isTruncated = true
        message.answers = []
        message.authorities = []
        message.additionals = []
        return Reply(message, udpLimit: 512)
    }

    /// The same, built from the query's bytes without decoding them: header and question
    /// copied, QR and TC set, no other section. Nil unless the bytes hold exactly one
    /// question with an uncompressed name, which any real query has; the caller then takes
    /// the ordinary path.
    public static func truncated(raw query: ByteBuffer) -> [UInt8]? {
        let bytes = query.readableBytesView
        guard bytes.count >= DNSMessage.headerSize + 5 else { return nil }
        let start = bytes.startIndex
        guard bytes[start + 4] == 0, bytes[start + 5] == 1 else { return nil }  // QDCOUNT = 1
        var index = start + DNSMessage.headerSize
        var nameLength = 0
        while true {
            guard index < bytes.endIndex else { return nil }
            let length = Int(bytes[index])
            guard length < 64 else { return nil }  // a pointer or an extended label type
            index += 1 + length
            nameLength += 1 + length
            guard nameLength <= 255 else { return nil }
            if length == 0 { break }
        }
        let questionEnd = index + 4
        guard questionEnd <= bytes.endIndex else { return nil }
        var reply = Array(bytes[start..<questionEnd])
        reply[2] = (reply[2] & 0x79) | 0x80 | 0x02  // QR, opcode and RD kept, AA cleared, TC
        reply[3] = 0  // RA, Z, AD, CD and RCODE cleared: NOERROR
        for offset in 6..<12 { reply[offset] = 0 }  // ANCOUNT, NSCOUNT, ARCOUNT
        return reply
    }
}

extension IPAddress {
    /// Whether the address lies in one of `prefixes` (address and length, as configured).
    public func isIn(_ prefixes: [(address: IPAddress, length: Int)]) -> Bool {
        prefixes.contains { allowed in
            isIPv6 == allowed.address.isIPv6
                && AddressPrefix(self, v4: allowed.length, v6: allowed.length)
                    == AddressPrefix(allowed.address, v4: allowed.length, v6: allowed.length)
        }
    }
}
