/// A map of at most `capacity` entries that, when full, makes room by CLOCK (second chance):
/// the hand passes over the entries in a ring, clearing the mark of each one read since it last
/// passed, and replaces the first it finds unmarked. Every operation is O(1) (amortised for the
/// hand's pass). No lock: its owner keeps it behind one (kmsd's reply cache, kms-proxy's
/// answer cache).
public struct ClockCache<Key: Hashable, Value> {
    private var keys: [Key] = []
    private var values: [Value] = []
    private var marked: [Bool] = []
    private var slots: [Key: Int] = [:]
    private var hand = 0
    public let capacity: Int

    public init(capacity: Int) { self.capacity = max(0, capacity) }

    public var count: Int { keys.count }

    /// Whether `key` is held, without marking it.
    public func contains(_ key: Key) -> Bool { slots[key] != nil }

    /// The value for `key`, marking it as read.
    public mutating func value(for key: Key) -> Value? {
        guard let slot = slots[key] else { return nil }
        marked[slot] = true
        return values[slot]
    }

    /// Sets the value for `key`; when full, a new key replaces the entry CLOCK picks.
    public mutating func set(_ value: Value, for key: Key) {
        guard capacity > 0 else { return }
        if let slot = slots[key] {
            values[slot] = value
        } else if keys.count < capacity {
            slots[key] = keys.count
            keys.append(key)
            values.append(value)
            marked.append(false)
        } else {
            while marked[hand] {
                marked[hand] = false
                hand = (hand + 1) % keys.count
            }
            slots[keys[hand]] = nil
            keys[hand] = key
            values[hand] = value
            slots[key] = hand
            hand = (hand + 1) % keys.count
        }
    }

    /// Removes `key` (the last entry moves into its slot).
    public mutating func remove(_ key: Key) {
        guard let slot = slots.removeValue(forKey: key) else { return }
        let last = keys.count - 1
        if slot != last {
            keys[slot] = keys[last]
            values[slot] = values[last]
            marked[slot] = marked[last]
            slots[keys[slot]] = slot
        }
        keys.removeLast()
        values.removeLast()
        marked.removeLast()
        if hand >= keys.count { hand = 0 }
    }

    public mutating func removeAll() { self = ClockCache(capacity: capacity) }
}

extension ClockCache: Sendable where Key: Sendable, Value: Sendable {}
