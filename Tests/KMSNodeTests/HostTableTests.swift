import DNSWire
@testable import KMSNode
import Testing

/// The registry's open-addressing table, checked against a Dictionary doing the same thing.
@Suite struct HostTableTests {
    static func entry(_ name: DomainName, _ tag: UInt8) -> HostEntry {
        HostEntry(name: name, addresses: [IPAddress("192.0.2.\(tag)")!], key: [tag], registeredAt: Int64(tag))!
    }

    /// Registrations, replacements and removals in a random order (a fixed seed), through
    /// growth from the smallest table, with every name then looked up in another case.
    @Test func behavesAsADictionaryOfNames() throws {
        var generator = SeededGenerator(seed: 9)
        var table = HostTable()
        var model: [DomainName: UInt8] = [:]
        let names = (0..<3_000).map { DomainName(stringLiteral: "h\($0).c.a.xx.") }
        for step in 0..<20_000 {
            let name = names[Int.random(in: 0..<names.count, using: &generator)]
            if Int.random(in: 0..<3, using: &generator) == 0 {
                let removed = table.removeValue(forName: name)
                #expect((removed != nil) == (model.removeValue(forKey: name) != nil), "step \(step): remove \(name)")
            } else {
                let tag = UInt8(step % 250)
                let replaced = table.updateValue(Self.entry(name, tag))
                let previous = model.updateValue(tag, forKey: name)
                #expect(replaced?.registeredAt == previous.map(Int64.init), "step \(step): set \(name)")
            }
            #expect(table.count == model.count)
        }
        for name in names {
            let shouted = try DomainName(name.text.uppercased())
            #expect(table[shouted]?.registeredAt == model[name].map(Int64.init), "\(name)")
            #expect(table[shouted]?.name == model[name].map { _ in name })
        }
        #expect(Set(table.entries.map(\.name)).symmetricDifference(model.keys).isEmpty, "the entries are the model's names")
        #expect(table[DomainName("h3000.c.a.xx.")] == nil)
    }

    /// Every name removed again, in the order they went in: each removal shifts the entries
    /// after it back, and nothing is lost or left behind.
    @Test func emptiesCompletely() {
        var table = HostTable(minimumCapacity: 10)
        let names = (0..<500).map { DomainName(stringLiteral: "n\($0).example.") }
        for (index, name) in names.enumerated() { table.updateValue(Self.entry(name, UInt8(index % 250))) }
        #expect(table.count == 500)
        for (index, name) in names.enumerated() {
            #expect(table.removeValue(forName: name) != nil)
            #expect(table[name] == nil)
            if let next = names.dropFirst(index + 1).first { #expect(table[next] != nil, "\(next) after removing \(name)") }
        }
        #expect(table.isEmpty && Array(table.entries).isEmpty)
        #expect(table.removeValue(forName: names[0]) == nil)
    }
}

/// A deterministic generator (SplitMix64), so a failure repeats.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
