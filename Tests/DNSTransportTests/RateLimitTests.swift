import DNSTransport
import DNSWire
import NIOCore
import Testing

@Suite struct RateLimitTests {
    @Test func prefixesKeepOnlyTheNetworkBits() {
        let lengths = PrefixLengths(v4: 24, v6: 56)
        #expect(lengths.prefix(of: IPAddress("192.0.2.200")!) == lengths.prefix(of: IPAddress("192.0.2.1")!))
        #expect(lengths.prefix(of: IPAddress("192.0.3.1")!) != lengths.prefix(of: IPAddress("192.0.2.1")!))
        #expect("\(lengths.prefix(of: IPAddress("192.0.2.200")!))" == "192.0.2.0/24")
        #expect("\(lengths.prefix(of: IPAddress("2001:db8:1:2ff:1::9")!))" == "2001:db8:1:200::/56")
        #expect(lengths.prefix(of: IPAddress("2001:db8:1:2ff::1")!) == lengths.prefix(of: IPAddress("2001:db8:1:200::")!))
        // An odd length masks inside a byte; the families never collide.
        #expect("\(AddressPrefix(IPAddress("10.1.255.1")!, v4: 17, v6: 64))" == "10.1.128.0/17")
        #expect(AddressPrefix(IPAddress("0.0.0.0")!, v4: 32, v6: 128) != AddressPrefix(IPAddress("::")!, v4: 32, v6: 128))
    }

    @Test func aBucketRefillsAtItsRateUpToItsBurst() {
        let limiter = RateLimiter<Int>(rate: Rate(perSecond: 10, burst: 3))
        let second: UInt64 = 1_000_000_000
        #expect((0..<5).map { _ in limiter.take(for: 1, now: second) } == [true, true, true, false, false])
        #expect(limiter.take(for: 2, now: second), "each key has its own bucket")
        #expect(limiter.take(for: 1, now: second + second / 10), "one token back after 0.1 s")
        #expect(!limiter.take(for: 1, now: second + second / 10))
        #expect((0..<5).map { _ in limiter.take(for: 1, now: 100 * second) } == [true, true, true, false, false], "never above the burst")
    }

    @Test func aPenaltyMustBeEarnedBack() {
        let limiter = RateLimiter<Int>(rate: Rate(perSecond: 1, burst: 2))
        let second: UInt64 = 1_000_000_000
        for _ in 0..<4 { limiter.charge(for: 7, now: second) }
        #expect(!limiter.allows(7, now: second))
        #expect(!limiter.allows(7, now: 3 * second), "-2 + 2 tokens is still short of one")
        #expect(limiter.allows(7, now: 4 * second))
    }

    @Test func aSpentBucketSaysWhenItHoldsATokenAgain() {
        let limiter = RateLimiter<Int>(rate: Rate(perSecond: 2, burst: 2))
        let second: UInt64 = 1_000_000_000
        #expect(limiter.limitedUntil(1, now: second) == nil, "no bucket: not limited")
        for _ in 0..<3 { limiter.charge(for: 1, now: second) }
        // -1 token at 2 a second: one token again 1 s later.
        #expect(limiter.limitedUntil(1, now: second) == 2 * second)
        #expect(limiter.limitedUntil(1, now: 2 * second) == nil)
        #expect(limiter.allows(1, now: 2 * second))
    }

    @Test func theTableStaysBoundedUnderManySources() {
        let limiter = RateLimiter<Int>(rate: Rate(perSecond: 1, burst: 5), capacity: 1000)
        for source in 0..<50_000 { _ = limiter.take(for: source, now: 1) }
        #expect(limiter.count <= 1000)
        #expect(limiter.count >= 500, "evicts half at a time, not everything")
    }

    @Test func theSlipAnswersOneInEveryNAndNoneAtZero() {
        let every = (0..<30).map { _ in Slip(every: 3).answers() }
        #expect(every.allSatisfy { !$0 }, "a fresh slip of 3 answers the third, not the first")
        let three = Slip(every: 3)
        let answered = (0..<30).map { _ in three.answers() }
        #expect(answered.filter { $0 }.count == 10)
        #expect(answered == Array(repeating: [false, false, true], count: 10).flatMap { $0 })
        let one = Slip(every: 1)
        #expect((0..<10).allSatisfy { _ in one.answers() })
        let zero = Slip(every: 0)
        #expect((0..<10).allSatisfy { _ in !zero.answers() })
    }
}

@Suite struct RawTruncationTests {
    @Test func theTruncatedReplyIsTheQuestionWithQRAndTC() throws {
        var query = DNSMessage.query(id: 0xBEEF, name: "Host.Example.", type: .txt)
        query.header.recursionDesired = true
        query.edns = EDNS()
        let bytes = try query.wire()
        let raw = try #require(Replies.truncated(raw: ByteBuffer(bytes: bytes)))
        #expect(raw.count < bytes.count, "never larger than the query")
        let reply = try DNSMessage(wire: raw)
        #expect(reply.header.id == 0xBEEF)
        #expect(reply.header.isResponse && reply.header.isTruncated && reply.header.recursionDesired)
        #expect(!reply.header.isAuthoritative)
        #expect(reply.rcode == .noError)
        #expect(reply.questions == query.questions, "the name keeps its case")
        #expect(reply.answers.isEmpty && reply.authorities.isEmpty && reply.additionals.isEmpty && reply.edns == nil)
    }

    @Test func anythingButOnePlainQuestionTakesTheOrdinaryPath() throws {
        let good = try DNSMessage.query(id: 1, name: "a.example.", type: .a).wire()
        var twoQuestions = good
        twoQuestions[5] = 2
        var pointer = Array(good.prefix(12)) + [0xC0, 12, 0, 1, 0, 1]
        pointer[5] = 1
        for bytes in [twoQuestions, pointer, Array(good.prefix(12 + 5)), Array(good.prefix(12 + 13)), Array(good.prefix(12))] {
            #expect(Replies.truncated(raw: ByteBuffer(bytes: bytes)) == nil)
        }
    }
}
