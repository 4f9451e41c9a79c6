import DNSWire
import Foundation
import KMSCrypto
import KMSNode
import KMSTestSupport
import Testing

/// What SIGHUP and the `reload` control op do to a running node.
@Suite struct ReloadTests {
    @Test func reloadReadsTheStoreAgainAndEmptiesTheCaches() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let node = hierarchy.nodes["c.a.xx."]!
            // b.a.xx. caches host B's key on the first fetch.
            let fetcher = try hierarchy.fetcher("hosta.b.a.xx.")
            _ = try await fetcher.fetch("hostb.c.a.xx.")
            // An operator rewrites the store behind the node's back (another process, sqlite3).
            let rotated = try PrivateKey(generating: .ed25519).publicKey
            let store = try NodeStore(path: node.configuration.database)
            try store.register([RegisteredHost(name: "hostb.c.a.xx.", addresses: [IPAddress("127.0.0.12")!], key: rotated, registeredAt: 1)])
            try store.register([RegisteredHost(name: "hostz.c.a.xx.", addresses: [IPAddress("127.0.0.26")!], key: rotated, registeredAt: 1)])
            #expect(!node.registeredHosts.contains { $0.name == "hostz.c.a.xx." })
            let lines = node.reload()
            #expect(lines.contains { $0.hasPrefix("hosts: 3 read from") }, "\(lines)")
            #expect(node.registeredHosts.contains { $0.name == "hostz.c.a.xx." })
            // b.a.xx. still holds the old key in its cache until it reloads too.
            #expect(try await fetcher.fetch("hostb.c.a.xx.", useCache: false).key != rotated)
            _ = hierarchy.nodes["b.a.xx."]!.reload()
            _ = hierarchy.nodes["a.xx."]!.reload()
            #expect(try await fetcher.fetch("hostb.c.a.xx.", useCache: false).key == rotated)
            #expect(try await fetcher.fetch("hostz.c.a.xx.", useCache: false).key == rotated)
        }
    }

    @Test func aBrokenPolicyFileKeepsTheLastGoodOneOnReload() async throws {
        let policy = FileManager.default.temporaryDirectory.appendingPathComponent("policy-\(UUID().uuidString).conf").path
        try "client 127.0.0.0/8 t1\nt1 *.c.a.xx. tls default AES-128-GCM\n".write(toFile: policy, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: policy) }
        let hierarchy = try await TestHierarchy(extra: ["b.a.xx.": "policy \(policy)"])
        try await afterwards({ await hierarchy.shutdown() }) {
            try "client 127.0.0.0/8\n".write(toFile: policy, atomically: true, encoding: .utf8)
            let lines = hierarchy.nodes["b.a.xx."]!.reload()
            #expect(lines.first?.hasPrefix("policy: kept the last good one") == true, "\(lines)")
            #expect(lines.contains { $0.hasPrefix("hosts:") })
        }
    }
}
