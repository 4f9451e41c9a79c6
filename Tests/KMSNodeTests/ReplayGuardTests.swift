import KMSTestSupport
import DNSWire
import KMSCrypto
import KMSProtocol
import Testing

@testable import KMSNode

@Suite struct ReplayGuardTests {
    @Test func windowAndReplays() throws {
        let guardian = ReplayGuard(window: 300, capacity: 1000)
        let nonce = try Nonce.random()
        #expect(guardian.admit(sender: "h.xx.", nonce: nonce, time: 1000, now: 1000, overTCP: false) == .fresh)
        #expect(guardian.admit(sender: "h.xx.", nonce: nonce, time: 1000, now: 1001, overTCP: false) == .replayed)
        // A nonce seen within the window is refused whoever signs it ...
        #expect(guardian.admit(sender: "g.xx.", nonce: nonce, time: 1000, now: 1001, overTCP: false) == .replayed)
        // ... and whatever new time it carries (this was accepted: the memory was per second).
        #expect(guardian.admit(sender: "h.xx.", nonce: nonce, time: 1001, now: 1001, overTCP: false) == .replayed)
        #expect(guardian.admit(sender: "h.xx.", nonce: nonce, time: 1002, now: 1002, overTCP: true) == .replayed)
        #expect(guardian.admit(sender: "h.xx.", nonce: try Nonce.random(), time: 600, now: 1000, overTCP: false) == .tooOld(skew: 400))
        #expect(guardian.admit(sender: "h.xx.", nonce: try Nonce.random(), time: 1400, now: 1000, overTCP: false) == .tooNew(skew: 400))
    }

    @Test func oneTCPRetryAfterUDPIsAllowed() throws {
        let guardian = ReplayGuard(window: 300, capacity: 1000)
        let nonce = try Nonce.random()
        #expect(guardian.admit(sender: "h.xx.", nonce: nonce, time: 1000, now: 1000, overTCP: false) == .fresh)
        #expect(guardian.admit(sender: "h.xx.", nonce: nonce, time: 1000, now: 1000, overTCP: true) == .fresh)
        #expect(guardian.admit(sender: "h.xx.", nonce: nonce, time: 1000, now: 1000, overTCP: true) == .replayed)
        // The retry carries the same record, so the same time.
        let other = try Nonce.random()
        #expect(guardian.admit(sender: "h.xx.", nonce: other, time: 1000, now: 1000, overTCP: false) == .fresh)
        #expect(guardian.admit(sender: "h.xx.", nonce: other, time: 1001, now: 1001, overTCP: true) == .replayed)
        let tcpFirst = try Nonce.random()
        #expect(guardian.admit(sender: "h.xx.", nonce: tcpFirst, time: 1000, now: 1000, overTCP: true) == .fresh)
        #expect(guardian.admit(sender: "h.xx.", nonce: tcpFirst, time: 1000, now: 1000, overTCP: true) == .replayed)
    }

    @Test func aNonceIsForgottenOnlyOnceItsSecondLeavesTheWindow() throws {
        let guardian = ReplayGuard(window: 10, capacity: 1000)
        let nonce = try Nonce.random()
        #expect(guardian.admit(sender: "h.xx.", nonce: nonce, time: 1000, now: 1000, overTCP: false) == .fresh)
        // Still remembered at the window's edge, with a time of its own that is in the window.
        #expect(guardian.admit(sender: "h.xx.", nonce: nonce, time: 1010, now: 1010, overTCP: false) == .replayed)
        // Thirty seconds of other traffic: the memory sheds the seconds that left the window.
        for second in UnixTime(1011)...1040 {
            #expect(guardian.admit(sender: "h.xx.", nonce: try Nonce.random(), time: second, now: second, overTCP: false) == .fresh)
        }
        #expect(guardian.admit(sender: "h.xx.", nonce: nonce, time: 1040, now: 1040, overTCP: false) == .fresh)
    }

    @Test func fullMemoryRaisesTheFloorInsteadOfForgettingSilently() throws {
        let guardian = ReplayGuard(window: 300, capacity: 1000)
        var first: [Nonce] = []
        for second in 0..<1000 {
            let nonce = try Nonce.random()
            if second < 10 { first.append(nonce) }
            #expect(guardian.admit(sender: "h.xx.", nonce: nonce, time: 1000 + UnixTime(second % 100), now: 1100, overTCP: false) == .fresh)
        }
        // Memory is full: admitting one more forgets the oldest second (1000) ...
        #expect(guardian.admit(sender: "h.xx.", nonce: try Nonce.random(), time: 1150, now: 1100, overTCP: false) == .fresh)
        // ... and a replay of a nonce from that second is still refused, as stale.
        #expect(guardian.admit(sender: "h.xx.", nonce: first[0], time: 1000, now: 1100, overTCP: false) == .tooOld(skew: 100))
        #expect(guardian.admit(sender: "h.xx.", nonce: try Nonce.random(), time: 1000, now: 1100, overTCP: false) == .tooOld(skew: 100))
    }
}

@Suite struct PerSecondCacheTests {
    /// A record is signed once per key and second, and signed again in the next second.
    @Test func signsOncePerKeyAndSecond() {
        let cache = PerSecondCache<String>()
        var signatures = 0
        func record(_ key: String, _ second: UnixTime) -> ResourceRecord? {
            cache.record(for: key, second: second) {
                signatures += 1
                return ResourceRecord(name: "h.xx.", ttl: 0, data: .txt([Array("\(key) \(second) #\(signatures)".utf8)]))
            }
        }
        let first = record("a", 100)
        #expect(record("a", 100) == first)
        #expect(signatures == 1)
        #expect(record("b", 100) != first)
        #expect(signatures == 2)
        let next = record("a", 101)
        #expect(next != first)
        #expect(signatures == 3)
        #expect(record("a", 101) == next)
        #expect(signatures == 3)
    }

    /// Signed records of one second: more keys than the cache holds are signed and served, and
    /// the cache stays within its bound (it used to grow past it within a second).
    @Test func thePerSecondCacheStaysWithinItsBound() throws {
        let cache = PerSecondCache<Int>(capacity: 8)
        var signed = 0
        let record = ResourceRecord(name: "x.c.a.xx.", ttl: 0, data: .txt([[1]]))
        for key in 0..<100 { _ = cache.record(for: key, second: 5) { signed += 1; return record } }
        #expect(signed == 100 && cache.count == 8)
        _ = cache.record(for: 99, second: 5) { signed += 1; return record }
        #expect(signed == 100, "the last record of the second was signed again")
    }

    /// Anonymous answers are kept by countersignature: the same one (the same bytes, decoded
    /// twice) finds the answer; one that differs anywhere, even only in a field the hash does
    /// not read, does not.
    @Test func anonymousAnswersAreKeptByTheWholeCountersignature() throws {
        let signer = try KMSCrypto.PrivateKey(generating: .ed25519)
        let host = try KMSCrypto.PrivateKey(generating: .ed25519).publicKey
        func countersignature(_ target: DomainName = "h.xx.", notAfter: UnixTime = 1000) throws -> Countersignature {
            try Countersignature.issue(target: target, key: host, signer: "xx.", signerKey: signer, notBefore: 100, notAfter: notAfter)
        }
        let cache = PerSecondCache<Countersignature>()
        var signed = 0
        func answer(_ countersignature: Countersignature) -> ResourceRecord? {
            cache.record(for: countersignature, second: 7) {
                signed += 1
                return ResourceRecord(name: countersignature.target, ttl: 0, data: .txt([Array("#\(signed)".utf8)]))
            }
        }
        let first = try answer(countersignature())
        #expect(try answer(countersignature()) == first)  // Ed25519: the same bytes again
        #expect(signed == 1)
        let original = try countersignature()
        let otherKey = Countersignature(
            target: original.target, key: try KMSCrypto.PrivateKey(generating: .ed25519).publicKey, signer: original.signer,
            notBefore: original.notBefore, notAfter: original.notAfter, signature: original.signature)
        for different in [try countersignature(notAfter: 1001), try countersignature("g.xx."), otherKey] {
            #expect(answer(different) != first)
        }
        #expect(signed == 4)
    }
}

@Suite struct KeyCacheTests {
    @Test func entriesLiveUntilHalfTheirValidityOrMaximumAge() throws {
        let key = try KMSCrypto.PrivateKey(generating: .ed25519)
        let countersignature = try Countersignature.issue(
            target: "h.xx.", key: key.publicKey, signer: "xx.", signerKey: key, notBefore: 100, notAfter: 1000)
        let cache = KeyCache(maximumAge: 300)
        cache.store(countersignature, at: 110)
        #expect(cache.lookup(target: "h.xx.", signer: "xx.", now: 409) != nil)
        #expect(cache.lookup(target: "h.xx.", signer: "xx.", now: 410) == nil)  // maximum age
        cache.store(countersignature, at: 400)
        #expect(cache.lookup(target: "h.xx.", signer: "xx.", now: 549) != nil)
        #expect(cache.lookup(target: "h.xx.", signer: "xx.", now: 550) == nil)  // half of 100...1000: renew
        cache.store(countersignature, at: 600)
        #expect(cache.lookup(target: "h.xx.", signer: "xx.", now: 601) == nil)  // past half-life: not kept
        cache.store(countersignature, at: 200)
        cache.purge(target: "h.xx.")
        #expect(cache.lookup(target: "h.xx.", signer: "xx.", now: 201) == nil)
    }

    /// A full cache of live entries makes room for half its size at once, so a flood of new
    /// names costs one scan per half a table, not one per store; the newest entry is kept.
    @Test func aFullCacheStaysBoundedAndKeepsTheNewest() throws {
        let key = try KMSCrypto.PrivateKey(generating: .ed25519)
        let cache = KeyCache(maximumAge: 3600, capacity: 10)
        for index in 0..<25 {
            let target = try DomainName("h\(index).xx.")
            cache.store(
                try Countersignature.issue(target: target, key: key.publicKey, signer: "xx.", signerKey: key, notBefore: 0, notAfter: 10_000),
                at: 100)
            #expect(cache.count <= 10)
            #expect(cache.lookup(target: target, signer: "xx.", now: 101) != nil, "the entry just stored")
        }
    }
}


