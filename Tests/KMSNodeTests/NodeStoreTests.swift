import DNSWire
import Foundation
import KMSCrypto
import KMSProtocol
import Synchronization
import Testing

@testable import KMSNode

@Suite struct NodeStoreTests {
    /// Registrations, removals and log appends are acknowledged only once on disk: the
    /// connection that commits them must be `synchronous = FULL` (GRDB's pool sets its writer
    /// to NORMAL when it turns WAL on, after the configuration's own set-up ran). Background
    /// cache writes commit with NORMAL and must leave it FULL again.
    @Test func commitsAreSynchronousFull() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("countersign-store-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try NodeStore(path: directory.appendingPathComponent("node.sqlite").path)
        #expect(try store.writerSynchronous() == 2)

        let signer = try PrivateKey(generating: .ed25519)
        let countersignature = try Countersignature.issue(
            target: "hostb.c.a.xx.", key: try PrivateKey(generating: .ed25519).publicKey, signer: "xx.", signerKey: signer,
            notBefore: 100, notAfter: 200)
        let failure: String? = await withCheckedContinuation { continuation in
            store.record(countersignature, origin: .received, at: 150) { error in continuation.resume(returning: error.map { "\($0)" }) }
        }
        #expect(failure == nil)
        #expect(try store.writerSynchronous() == 2)
        #expect(try store.countersignatures(origin: .received, validAt: 150).map(\.0) == [countersignature])
    }

    /// Background writes sent faster than the writer takes them go together (group commit):
    /// none is lost, each one's completion is called once, they apply in the order they came
    /// (a forget after its record removes it), and the writer is FULL again afterwards.
    @Test func backgroundWritesQueuedTogetherAreAllAppliedInOrder() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("countersign-store-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try NodeStore(path: directory.appendingPathComponent("node.sqlite").path)
        let signer = try PrivateKey(generating: .ed25519)
        var countersignatures: [Countersignature] = []
        for index in 0..<200 {
            countersignatures.append(try Countersignature.issue(
                target: try DomainName("h\(index).c.a.xx."), key: try PrivateKey(generating: .ed25519).publicKey, signer: "xx.",
                signerKey: signer, notBefore: 100, notAfter: 200))
        }
        // Queued from one thread in this order, all before the writer takes the first: each
        // tenth host's record is followed at once by its forgetting.
        let expected = countersignatures.count + countersignatures.count / 10
        let done = Mutex<[String?]>([])
        let failures: [String] = await withCheckedContinuation { continuation in
            let finish = { @Sendable (error: (any Error)?) in
                let all = done.withLock { done -> [String?]? in
                    done.append(error.map { "\($0)" })
                    return done.count == expected ? done : nil
                }
                if let all { continuation.resume(returning: all.compactMap { $0 }) }
            }
            for (index, countersignature) in countersignatures.enumerated() {
                store.record(countersignature, origin: .received, at: 150, completion: finish)
                if index % 10 == 0 { store.forgetReceived(target: countersignature.target, completion: finish) }
            }
        }
        #expect(failures.isEmpty, "\(failures)")
        let drains = store.backgroundDrains.load(ordering: .relaxed)
        #expect(drains < expected, "\(drains) transactions for \(expected) writes queued together: none went together")
        #expect(try store.writerSynchronous() == 2)
        let stored = Set(try store.countersignatures(origin: .received, validAt: 150, limit: 1_000).map(\.0.target))
        #expect(stored.count == 180, "\(stored.count) stored")
        for (index, countersignature) in countersignatures.enumerated() {
            #expect(stored.contains(countersignature.target) == (index % 10 != 0), "\(countersignature.target)")
        }
    }

    /// While the writer is busy, at most `backgroundLimit` background writes wait; the rest
    /// are dropped at once with the reason (a cache entry, asked for again when needed), and
    /// those that waited are written when the writer is free.
    @Test func backgroundWritesWaitingForABusyWriterAreBounded() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("countersign-store-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try NodeStore(path: directory.appendingPathComponent("node.sqlite").path, backgroundLimit: 3)
        let signer = try PrivateKey(generating: .ed25519)
        let done = Mutex<[String?]>([])
        let outcomes: [String?] = await withCheckedContinuation { continuation in
            let finish = { @Sendable (error: (any Error)?) in
                let all = done.withLock { done -> [String?]? in
                    done.append(error.map { "\($0)" })
                    return done.count == 20 ? done : nil
                }
                if let all { continuation.resume(returning: all) }
            }
            store.whileWriting {
                for index in 0..<20 {
                    let countersignature = try! Countersignature.issue(
                        target: try! DomainName("h\(index).c.a.xx."), key: try! PrivateKey(generating: .ed25519).publicKey,
                        signer: "xx.", signerKey: signer, notBefore: 100, notAfter: 200)
                    store.record(countersignature, origin: .received, at: 150, completion: finish)
                }
            }
        }
        let dropped = outcomes.compactMap { $0 }
        #expect(dropped.count == 17 && dropped.allSatisfy { $0.contains("3 background writes already wait") }, "\(outcomes)")
        #expect(try store.countersignatures(origin: .received, validAt: 150).count == 3)
    }
}
