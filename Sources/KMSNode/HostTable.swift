import DNSWire

/// The registry's hosts by name: open addressing (linear probing) over the entries themselves,
/// each of which carries its name (`HostEntry`). A look-up hashes the name asked for, and
/// compares it with the name inside the entry it lands on, which the answer reads next anyway.
///
/// A `[DomainName: HostEntry]` kept each name in its own buffer beside the entry: a look-up
/// touched the table's key, the name's buffer, the table's value and the entry, four places a
/// million hosts spread over memory; here it touches the slot and the entry. A slot is one
/// reference (8 bytes), and no name buffer is held per host.
///
/// Removal shifts the entries after the freed slot back (no tombstones), so a table that sees
/// many registrations and removals never slows down. No lock: the registry keeps it behind one.
struct HostTable: Sendable {
    private var slots: [HostEntry?]
    private(set) var count = 0

    init(minimumCapacity: Int = 0) {
        slots = Array(repeating: nil, count: Self.slotCount(for: minimumCapacity))
    }

    /// A power of two that keeps `count` entries at most three quarters full.
    private static func slotCount(for count: Int) -> Int {
        var slots = 16
        while slots * 3 / 4 < count { slots *= 2 }
        return slots
    }

    mutating func reserveCapacity(_ minimumCapacity: Int) {
        guard Self.slotCount(for: minimumCapacity) > slots.count else { return }
        rehash(into: Self.slotCount(for: minimumCapacity))
    }

    var isEmpty: Bool { count == 0 }

    /// Every entry, in no particular order.
    var entries: some Sequence<HostEntry> { slots.lazy.compactMap { $0 } }

    subscript(name: DomainName) -> HostEntry? {
        name.canonicalWire.withUnsafeBytes { wire in
            guard let slot = find(wire) else { return nil }
            return slots[slot]
        }
    }

    /// Adds `entry` under its name, or replaces the entry of that name; returns the replaced one.
    @discardableResult
    mutating func updateValue(_ entry: HostEntry) -> HostEntry? {
        entry.withName { wire -> HostEntry? in
            var slot = Self.home(of: wire, in: slots.count)
            while let present = slots[slot] {
                if present.isNamed(wire) {
                    slots[slot] = entry
                    return present
                }
                slot = (slot + 1) & (slots.count - 1)
            }
            slots[slot] = entry
            count += 1
            if count > slots.count * 3 / 4 { rehash(into: slots.count * 2) }
            return nil
        }
    }

    /// Removes the entry of `name`; returns it.
    @discardableResult
    mutating func removeValue(forName name: DomainName) -> HostEntry? {
        name.canonicalWire.withUnsafeBytes { wire -> HostEntry? in
            guard var hole = find(wire) else { return nil }
            let removed = slots[hole]
            slots[hole] = nil
            count -= 1
            // Backward shift: an entry after the hole moves into it unless its home lies
            // (cyclically) after the hole and at or before the entry's own slot.
            let mask = slots.count - 1
            var next = (hole + 1) & mask
            while let entry = slots[next] {
                let home = Self.home(of: entry, in: slots.count)
                let staysPut = hole <= next ? (hole < home && home <= next) : (hole < home || home <= next)
                if !staysPut {
                    slots[hole] = entry
                    slots[next] = nil
                    hole = next
                }
                next = (next + 1) & mask
            }
            return removed
        }
    }

    private func find(_ wire: UnsafeRawBufferPointer) -> Int? {
        var slot = Self.home(of: wire, in: slots.count)
        while let present = slots[slot] {
            if present.isNamed(wire) { return slot }
            slot = (slot + 1) & (slots.count - 1)
        }
        return nil
    }

    private mutating func rehash(into slotCount: Int) {
        var fresh = [HostEntry?](repeating: nil, count: slotCount)
        for entry in slots {
            guard let entry else { continue }
            var slot = Self.home(of: entry, in: slotCount)
            while fresh[slot] != nil { slot = (slot + 1) & (slotCount - 1) }
            fresh[slot] = entry
        }
        slots = fresh
    }

    private static func home(of wire: UnsafeRawBufferPointer, in slotCount: Int) -> Int {
        var hasher = Hasher()
        hasher.combine(bytes: wire)
        return hasher.finalize() & (slotCount - 1)
    }

    private static func home(of entry: HostEntry, in slotCount: Int) -> Int {
        entry.withName { home(of: $0, in: slotCount) }
    }
}
