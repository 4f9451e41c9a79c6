import DNSTransport
import DNSWire
import Foundation
import KMSClient
import KMSCrypto
import KMSNode
import KMSProtocol
import KMSTestSupport
import Testing

/// A withdrawn key (rotated or removed) leaves every cache on the path it was fetched along:
/// the authoritative KMS tells the neighbours that fetched it through it, signed, and they tell
/// theirs; a host re-asks a cached key older than its `revalidate` bound.
@Suite struct RevocationTests {
    /// Host A's fetcher with its own cache, asking again for anything cached longer than `revalidate`.
    func fetcherA(_ hierarchy: TestHierarchy, revalidate: Double) throws -> KeyFetcher {
        var configuration = try HostConfiguration(path: try hierarchy.hostConfiguration("hosta.b.a.xx.", cache: true))
        configuration.revalidate = revalidate
        return try KeyFetcher(configuration: configuration, client: hierarchy.client)
    }

    func allRevocationsSent(_ hierarchy: TestHierarchy) async {
        for zone in ["c.a.xx.", "a.xx.", "b.a.xx.", "xx."] as [DomainName] { await hierarchy.nodes[zone]!.revocationsSent() }
    }

    @Test func aRotationReachesEveryCacheOnThePath() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let old = hierarchy.keys["hostb.c.a.xx."]!.publicKey
            // Cached at c.a.xx., a.xx., b.a.xx. and in host A's own store.
            #expect(try await fetcherA(hierarchy, revalidate: 300).fetch("hostb.c.a.xx.").key == old)
            let rotated = try PrivateKey(generating: .ed25519).publicKey
            try hierarchy.nodes["c.a.xx."]!.register(name: "hostb.c.a.xx.", key: rotated, addresses: [IPAddress("127.0.0.12")!])
            await allRevocationsSent(hierarchy)
            // Within the bound, host A's own cache may still give the old key (documented)...
            #expect(try await fetcherA(hierarchy, revalidate: 300).fetch("hostb.c.a.xx.").key == old)
            // ...past it, A asks again, and no KMS on the way answers from a stale cache.
            let fetched = try await fetcherA(hierarchy, revalidate: 0).fetch("hostb.c.a.xx.")
            #expect(fetched.key == rotated && !fetched.fromCache)
            // And the new key is what A's cache holds now.
            #expect(try await fetcherA(hierarchy, revalidate: 300).fetch("hostb.c.a.xx.").key == rotated)
        }
    }

    @Test func aRemovalReachesEveryCacheToo() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            _ = try await fetcherA(hierarchy, revalidate: 300).fetch("hostc.c.a.xx.")
            try hierarchy.nodes["c.a.xx."]!.remove(name: "hostc.c.a.xx.")
            await allRevocationsSent(hierarchy)
            do {
                _ = try await fetcherA(hierarchy, revalidate: 0).fetch("hostc.c.a.xx.")
                Issue.record("a removed host's key was still served from a cache on the path")
            } catch let error as FetchError {
                #expect(error.kind == .notFound, "\(error)")
            }
            // A's cache dropped it, so even within the bound it is gone.
            do {
                _ = try await fetcherA(hierarchy, revalidate: 300).fetch("hostc.c.a.xx.")
                Issue.record("host A's cache kept a removed host's key")
            } catch let error as FetchError {
                #expect(error.kind == .notFound, "\(error)")
            }
        }
    }

    /// Automatic renewal: a key past half its validity is fetched again (and re-issued by the
    /// signer) instead of being used from a cache, so nothing is used near its not-after.
    @Test func keysPastHalfTheirValidityAreRenewed() async throws {
        // xx. vouches for 60 s past the 300 s replay window: past half-life from the start.
        let hierarchy = try await TestHierarchy(extra: ["xx.": "countersig-validity 60s"])
        try await afterwards({ await hierarchy.shutdown() }) {
            let log = LogMonitor(
                signer: .init(name: "xx.", key: hierarchy.keys["xx."]!.publicKey), server: hierarchy.servers["xx."]!.address,
                client: hierarchy.client)
            let fetcher = try fetcherA(hierarchy, revalidate: 300)
            #expect(try await !fetcher.fetch("hostb.c.a.xx.").fromCache)
            let issued = try await log.head().size
            // Well within revalidate, yet asked again, and no KMS cache answered: xx. issued anew.
            #expect(try await !fetcher.fetch("hostb.c.a.xx.").fromCache)
            #expect(try await log.head().size > issued)
        }
        // With a day's validity the same second fetch is the host cache's.
        let normal = try await TestHierarchy()
        try await afterwards({ await normal.shutdown() }) {
            let fetcher = try fetcherA(normal, revalidate: 300)
            _ = try await fetcher.fetch("hostb.c.a.xx.")
            #expect(try await fetcher.fetch("hostb.c.a.xx.").fromCache)
        }
    }

    @Test func onlyANeighbourMayRevoke() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            _ = try await hierarchy.fetcher("hosta.b.a.xx.").fetch("hostb.c.a.xx.")
            // Host A itself (registered at b.a.xx., so its signature verifies) is no neighbour.
            let revocation = try Revocation(
                target: "hostb.c.a.xx.", key: hierarchy.keys["hostb.c.a.xx."]!.publicKey, from: "hosta.b.a.xx.", nonce: try Nonce.random(),
                time: UnixTime(Date().timeIntervalSince1970)
            ).record().signed(by: hierarchy.keys["hosta.b.a.xx."]!)
            let reply = try await hierarchy.send(DNSMessage.kmsQuery(id: 1, target: "hostb.c.a.xx.", record: revocation), to: "b.a.xx.")
            #expect(reply.rcode == .refused && reply.extendedErrors.first?.text.contains("only a neighbouring KMS") == true)
            // b.a.xx. still answers from its cache: with c.a.xx. stopped, the key still comes.
            await hierarchy.stop("c.a.xx.")
            #expect(try await hierarchy.fetcher("hosta.b.a.xx.").fetch("hostb.c.a.xx.").key == hierarchy.keys["hostb.c.a.xx."]!.publicKey)
        }
    }
}
