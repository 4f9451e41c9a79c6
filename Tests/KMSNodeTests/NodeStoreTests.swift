import Foundation
import KMSCrypto
import KMSProtocol
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
}
