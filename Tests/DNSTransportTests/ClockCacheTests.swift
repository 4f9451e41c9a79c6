import DNSTransport
import Testing

/// CLOCK (second chance): full, a new key replaces the first entry not read since the hand last
/// passed; entries read meanwhile stay; removal keeps every other entry findable.
@Suite struct ClockCacheTests {
    @Test func theEntriesReadSinceTheHandPassedStay() {
        var cache = ClockCache<String, Int>(capacity: 3)
        for (index, key) in ["a", "b", "c"].enumerated() { cache.set(index, for: key) }
        #expect(cache.value(for: "a") == 0 && cache.value(for: "c") == 2)
        cache.set(3, for: "d")  // b was not read: it goes
        #expect(cache.value(for: "b") == nil)
        #expect(cache.value(for: "a") == 0 && cache.value(for: "c") == 2 && cache.value(for: "d") == 3)
        #expect(cache.count == 3)
        // Every mark is cleared as the hand goes round: with all three read, the next new key
        // still finds room (the oldest position after a full pass).
        cache.set(4, for: "e")
        #expect(cache.count == 3 && cache.value(for: "e") == 4)
        // Setting a key that is there replaces its value in place.
        cache.set(40, for: "e")
        #expect(cache.value(for: "e") == 40 && cache.count == 3)
    }

    @Test func removalKeepsTheOthersFindable() {
        var cache = ClockCache<Int, Int>(capacity: 4)
        for key in 0..<4 { cache.set(key * 10, for: key) }
        cache.remove(1)
        cache.remove(7)  // absent: nothing happens
        #expect(cache.count == 3 && cache.value(for: 1) == nil)
        #expect([0, 2, 3].allSatisfy { cache.value(for: $0) == $0 * 10 })
        cache.set(50, for: 5)
        cache.set(60, for: 6)  // full again: one of the unread goes, the others stay
        #expect(cache.count == 4 && cache.value(for: 6) == 60)
        cache.removeAll()
        #expect(cache.count == 0 && cache.value(for: 0) == nil)
        var none = ClockCache<Int, Int>(capacity: 0)
        none.set(1, for: 1)
        #expect(none.count == 0)
    }
}
