import DNSWire
import Foundation
import KMSClient
import KMSProtocol
import KMSTestSupport
import Testing

/// Over UDP one lost datagram must not cost a whole time-out: an exchange that hears nothing
/// asks again, with a fresh inquiry, as a stub resolver asks again (`KMS1Exchange.ask`).
@Suite struct RetransmissionTests {
    /// A hierarchy, and a relay in front of `zone`'s node that loses the first datagram.
    func withLossyPath(to zone: DomainName, _ body: (TestHierarchy, LossyRelay) async throws -> Void) async throws {
        let hierarchy = try await TestHierarchy()
        let relay = try await LossyRelay.start(to: hierarchy.servers[zone]!.address, dropping: 1)
        try await afterwards({
            await relay.close()
            await hierarchy.shutdown()
        }) { try await body(hierarchy, relay) }
    }

    @Test func aLostInquiryIsAskedAgainWithAFreshNonce() async throws {
        try await withLossyPath(to: "b.a.xx.") { hierarchy, relay in
            // Host A's home KMS, reached through a network that loses the first datagram.
            let path = try hierarchy.hostConfiguration("hosta.b.a.xx.", timeout: "4s")
            let direct = "\(hierarchy.endpoints["b.a.xx."]!)"
            let text = try String(contentsOfFile: path, encoding: .utf8)
            #expect(text.contains(direct))
            let relayed = text.replacingOccurrences(of: direct, with: "127.0.0.1:\(relay.address.port!)")
            let fetcher = try KeyFetcher(configuration: try HostConfiguration(path: try hierarchy.write(relayed, to: "lossy.conf")), client: hierarchy.client)
            let result = try await fetcher.fetch("hostb.c.a.xx.", useCache: false)
            #expect(result.countersignature.key == hierarchy.keys["hostb.c.a.xx."]!.publicKey)
            // The first inquiry was lost; the one asked again (a new nonce, or PROTOCOL.md's
            // replay check would refuse it) was answered.
            #expect(relay.dropped == 1)
            let nonces = try relay.seen.map { try #require(try DNSMessage(wire: $0).kmsRecord()?.value("nonce")) }
            #expect(nonces.count >= 2 && Set(nonces).count == nonces.count, "\(nonces)")
        }
    }

    /// The same between two nodes: b.a.xx. asks its parent through a network that loses the
    /// first datagram, and asks again with an inquiry of its own, newly signed.
    @Test func aNodeAsksItsParentAgainWhenItsInquiryIsLost() async throws {
        try await withLossyPath(to: "a.xx.") { hierarchy, relay in
            let path = hierarchy.configPath("b.a.xx.")
            let text = try String(contentsOfFile: path, encoding: .utf8)
            let parent = "parent a.xx. \(hierarchy.endpoints["a.xx."]!)"
            #expect(text.contains(parent))
            try text.replacingOccurrences(of: parent, with: "parent a.xx. 127.0.0.1:\(relay.address.port!)")
                .write(toFile: path, atomically: true, encoding: .utf8)
            try hierarchy.startNode("b.a.xx.")
            // Traced: the host asks over TCP, and the node says in the trace that it asked again.
            let result = try await hierarchy.fetcher("hosta.b.a.xx.").fetch("hostb.c.a.xx.", useCache: false, trace: true)
            #expect(result.countersignature.key == hierarchy.keys["hostb.c.a.xx."]!.publicKey)
            // (Two requests, or three if a loaded machine kept the second's answer past the
            // next quarter of the wait.)
            #expect(result.trace.contains { $0.contains("b.a.xx.") && $0.contains("asked a.xx. ") && $0.contains(" times, each newly signed") }, "\(result.trace)")
            let stats = Dictionary(uniqueKeysWithValues: hierarchy.nodes["b.a.xx."]!.stats)
            #expect((1...2).contains(Int(stats["upstream.retransmissions"] ?? "") ?? 0), "\(stats)")
            #expect(relay.dropped == 1)
            let records = try relay.seen.map { try #require(try DNSMessage(wire: $0).kmsRecord()) }
            #expect(records.count >= 2 && records.allSatisfy { $0.value("from") == "b.a.xx." })
            let nonces = records.compactMap { $0.value("nonce") }
            #expect(Set(nonces).count == records.count, "\(nonces)")
        }
    }
}
