import DNSWire
import Testing

@testable import KMSNode

@Suite struct NodeMetricsTests {
    /// Each request kind and response code counts in the tally named for it (`count` indexes
    /// arrays by kind and by rcode); an rcode the node never sends is not counted anywhere.
    @Test func eachKindAndResponseCodeCountsInItsOwnTally() {
        let metrics = NodeMetrics(zone: "c.a.xx.")
        for (offset, kind) in NodeMetrics.Kind.allCases.enumerated() {
            for _ in 0...offset { metrics.count(kind) }
        }
        metrics.count(.refused)
        metrics.count(.refused)
        metrics.count(.noError)
        metrics.count(RCode(rawValue: 4095))
        metrics.count(RCode(rawValue: 12))
        let counts = Dictionary(uniqueKeysWithValues: metrics.all.map { ($0.name, $0.count) })
        for (offset, kind) in NodeMetrics.Kind.allCases.enumerated() {
            #expect(counts["requests.\(kind.rawValue)"] == offset + 1, "\(kind)")
        }
        #expect(counts["responses.REFUSED"] == 2)
        #expect(counts["responses.NOERROR"] == 1)
        #expect(metrics.all.filter { $0.name.hasPrefix("responses.") }.map(\.count).reduce(0, +) == 3)
    }
}
