import DNSTransport
import DNSWire
import Foundation
import KMSClient
import KMSCrypto
@testable import KMSNode
import KMSProtocol
import KMSTestSupport
import Testing

/// The transparency log over real sockets: every countersignature a signer issues is in its
/// log before it leaves; answers carry inclusion proofs on request; a monitor follows the log
/// and sees every key vouched for, and what is not in the log, or a log that forked, is refused.
@Suite struct TransparencyLogTests {
    func monitor(_ hierarchy: TestHierarchy, signer: DomainName = "xx.") -> LogMonitor {
        LogMonitor(
            signer: .init(name: signer, key: hierarchy.keys[signer]!.publicKey), server: hierarchy.servers[signer]!.address,
            client: hierarchy.client)
    }

    @Test func anAuditedFetchIsProvenInTheSignersLogAndTheLogSurvivesARestart() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let result = try await hierarchy.fetcher("hosta.b.a.xx.").fetch("hostb.c.a.xx.", audit: true)
            let proof = try #require(result.proof)
            #expect(proof.head.signer == "xx." && proof.index < proof.head.size)
            // Without asking, no proof comes (and none is needed).
            #expect(try await hierarchy.fetcher("hosta.b.a.xx.").fetch("hostb.c.a.xx.").proof == nil)

            // The monitor reads the same entry at that index, and the entries make the signed root.
            let log = monitor(hierarchy)
            let head = try await log.head()
            #expect(head.size >= proof.head.size)
            let (state, entries) = try await log.follow(from: LogState(), to: head)
            let logged = try #require(entries.first { $0.index == proof.index })
            #expect(logged.entry.countersignature == result.countersignature)

            // A restart (the process gone, the store kept) keeps every entry: the new head
            // extends the one seen, and nothing acknowledged is missing.
            try hierarchy.startNode("xx.")
            let after = try await log.head()
            #expect(after.size == head.size)
            let (_, none) = try await log.follow(from: state, to: after)
            #expect(none.isEmpty)
            try await log.checkConsistency(size: proof.head.size, root: proof.head.root, with: after)
        }
    }

    @Test func aCountersignatureOutsideTheLogIsRefusedByAnAudit() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let genuine = try await hierarchy.fetcher("hosta.b.a.xx.").fetch("hostb.c.a.xx.", audit: true)
            let proof = try #require(genuine.proof)
            // Someone with xx.'s signing key, but not its log, vouches for their own key and
            // plants it in host A's home KMS, with the genuine answer's proof beside it.
            let attacker = try PrivateKey(generating: .ed25519).publicKey
            let now = UnixTime(Date().timeIntervalSince1970)
            let forged = try Countersignature.issue(
                target: "hostb.c.a.xx.", key: attacker, signer: "xx.", signerKey: hierarchy.keys["xx."]!, notBefore: now - 60,
                notAfter: now + 3600)
            hierarchy.nodes["b.a.xx."]!.cache.store(forged, proof: proof, at: now)
            // A plain fetch takes it: the countersignature is genuinely xx.'s...
            #expect(try await hierarchy.fetcher("hosta.b.a.xx.").fetch("hostb.c.a.xx.", useCache: false).key == attacker)
            // ...an audit does not: it is not in xx.'s log.
            do {
                _ = try await hierarchy.fetcher("hosta.b.a.xx.").fetch("hostb.c.a.xx.", audit: true)
                Issue.record("an audit accepted a countersignature that is not in the log")
            } catch let error as FetchError {
                #expect(error.kind == .verificationFailed)
                #expect(error.message.contains("does not lead to the root of xx.'s tree"), "\(error)")
            }
            // A tampered path or a head signed by another key is refused too, each saying why.
            // (A log of one entry has an empty path: then a hash is added instead.)
            var path = proof.path
            if path.isEmpty { path = [[UInt8](repeating: 0, count: 32)] } else { path[0][0] ^= 1 }
            let tampered = InclusionProof(target: proof.target, index: proof.index, loggedAt: proof.loggedAt, path: path, head: proof.head)
            #expect(throws: ProtocolError.self) { try tampered.verify(genuine.countersignature, signerKey: hierarchy.keys["xx."]!.publicKey) }
            do {
                try proof.verify(genuine.countersignature, signerKey: hierarchy.keys["a.xx."]!.publicKey)
                Issue.record("a head verified with another KMS's key")
            } catch {
                #expect("\(error)".contains("is not signed by xx."))
            }
        }
    }

    @Test func aKeyACompromisedChildObtainsIsInTheLogForTheOwnerToSee() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            // c.a.xx. (compromised) asks for xx.'s countersignature over a key that is not host B's.
            let attacker = try PrivateKey(generating: .ed25519).publicKey
            let nonce = try Nonce.random()
            let sigreq = try SignatureRequest(
                target: "hostb.c.a.xx.", key: attacker, signer: "xx.", ip: IPAddress("127.0.0.1")!, from: "c.a.xx.", nonce: nonce,
                time: UnixTime(Date().timeIntervalSince1970)
            ).record().signed(by: hierarchy.keys["c.a.xx."]!)
            let reply = try await hierarchy.send(DNSMessage.kmsQuery(id: 7, target: "hostb.c.a.xx.", record: sigreq), to: "a.xx.")
            #expect(reply.rcode == .noError)
            // Whatever it does with it, the owner following xx.'s log sees it.
            let log = monitor(hierarchy)
            let (_, entries) = try await log.follow(from: LogState(), to: try await log.head())
            let vouched = entries.filter { $0.entry.countersignature.target == "hostb.c.a.xx." }.map(\.entry.countersignature.key)
            #expect(vouched.contains(attacker))
        }
    }

    @Test func aLogThatRewroteItsHistoryIsRefused() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let proof = try #require(try await hierarchy.fetcher("hosta.b.a.xx.").fetch("hostb.c.a.xx.", audit: true).proof)
            let log = monitor(hierarchy)
            let (state, _) = try await log.follow(from: LogState(), to: try await log.head())
            // xx. loses its store and starts a new log with the same key: another history.
            for suffix in ["", "-wal", "-shm"] {
                try? FileManager.default.removeItem(atPath: "\(hierarchy.directory.path)/xx.sqlite\(suffix)")
            }
            try hierarchy.startNode("xx.")
            for name in ["hosta.b.a.xx.", "hostc.c.a.xx."] as [DomainName] {
                _ = try await hierarchy.fetcher("hosta.b.a.xx.").fetch(name, audit: true)
            }
            let forked = try await log.head()
            do {
                _ = try await log.follow(from: state, to: forked)
                Issue.record("a rewritten log was followed")
            } catch let error as MonitorError {
                #expect(error.kind == .log)
                #expect(error.description.contains("not an extension") || error.description.contains("never shrinks"), "\(error)")
            }
            // And the proof host A got before is not in the same tree as the new log.
            do {
                try await log.checkConsistency(size: proof.head.size, root: proof.head.root, with: forked)
                Issue.record("a proof from the old history passed as consistent with the new one")
            } catch let error as MonitorError {
                #expect(error.kind == .log)
            }
        }
    }
}
