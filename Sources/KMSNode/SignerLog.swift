import DNSWire
import KMSCrypto
import KMSProtocol
import Synchronization

/// This node's transparency log (docs/PROTOCOL.md, "The transparency log"): every
/// countersignature it issues, appended to an RFC 9162 Merkle tree kept in its store, with a
/// signed head after every append.
///
/// An issued countersignature leaves the node only after its entry and a head covering it are
/// on disk, so the log never lacks one that was handed out, even after a crash. Appends that
/// arrive while a write is under way wait and go together in the next transaction, under one
/// head signature (group commit), so a burst of issues costs one fsync and one signature.
final class SignerLog: Sendable {
    private struct State {
        /// Leaves appended, including those of the write in progress.
        var tree = MerkleTree()
        /// The last head written: what readers may see.
        var head: TreeHead
    }

    private struct Waiting {
        var entries: [(LogEntry, CheckedContinuation<InclusionProof, any Error>)] = []
        var writing = false
    }

    private let state: Mutex<State>
    private let waiting = Mutex(Waiting())
    private let store: NodeStore
    private let signer: DomainName
    private let key: PrivateKey

    /// Rebuilds the tree from the store and signs a head of its size. Throws if the store's
    /// entries do not make the root of the last head it holds.
    init(store: NodeStore, signer: DomainName, key: PrivateKey, now: UnixTime) throws {
        var tree = MerkleTree()
        let (_, lastHead) = try store.forEachLeafHash { tree.append(leafHash: $0) }
        if let lastHead, lastHead.size <= tree.size, tree.root(size: lastHead.size) != lastHead.root {
            throw NodeStoreError("the transparency log's entries do not make the root of its head of size \(lastHead.size)")
        }
        let head = try TreeHead.sign(signer: signer, size: tree.size, root: tree.root(size: tree.size), time: now, key: key)
        try store.saveHead(head)
        state = Mutex(State(tree: tree, head: head))
        self.store = store
        self.signer = signer
        self.key = key
    }

    /// The latest head written.
    var head: TreeHead { state.withLock { $0.head } }

    /// Appends `countersignature`, logged at `now`; returns once it is durable, with its proof.
    func append(_ countersignature: Countersignature, at now: UnixTime) async throws -> InclusionProof {
        let entry = LogEntry(countersignature, loggedAt: now)
        return try await withCheckedThrowingContinuation { continuation in
            let startWriter = waiting.withLock { waiting in
                waiting.entries.append((entry, continuation))
                defer { waiting.writing = true }
                return !waiting.writing
            }
            if startWriter { Task { await self.writeWaiting() } }
        }
    }

    /// The one writer: takes everything waiting, writes it with its head, answers, repeats.
    private func writeWaiting() async {
        while true {
            let batch = waiting.withLock { waiting in
                let batch = waiting.entries
                waiting.entries = []
                if batch.isEmpty { waiting.writing = false }
                return batch
            }
            guard !batch.isEmpty else { return }
            let (first, size, root, paths) = state.withLock { state in
                let first = state.tree.size
                for (entry, _) in batch { state.tree.append(leafHash: entry.leafHash) }
                let size = state.tree.size
                let paths = (first..<size).map { state.tree.inclusionPath(index: $0, size: size) }
                return (first, size, state.tree.root(size: size), paths)
            }
            do {
                let now = batch.map(\.0.loggedAt).max() ?? 0
                let head = try TreeHead.sign(signer: signer, size: size, root: root, time: now, key: key)
                try await store.appendLog(batch.map(\.0), first: first, head: head)
                state.withLock { $0.head = head }
                for (offset, (entry, continuation)) in batch.enumerated() {
                    continuation.resume(returning: InclusionProof(
                        target: entry.countersignature.target, index: first + UInt64(offset), loggedAt: entry.loggedAt,
                        path: paths[offset], head: head))
                }
            } catch {
                state.withLock { $0.tree.truncate(to: first) }
                for (_, continuation) in batch { continuation.resume(throwing: error) }
            }
        }
    }

    /// Entries `first ..< end`, at most `LogQuery.maxEntries`, within the last head.
    func entries(first: UInt64, end: UInt64) throws -> [(index: UInt64, entry: LogEntry)] {
        let end = min(end, head.size, first + LogQuery.maxEntries)
        guard first < end else { return [] }
        return try store.logEntries(first: first, end: end).enumerated().map { offset, wire in
            guard let strings = RData.txtStrings(wire), let entry = try LogEntry(strings: strings) else {
                throw NodeStoreError("log entry \(first + UInt64(offset)) is unreadable")
            }
            return (first + UInt64(offset), entry)
        }
    }

    /// A consistency proof between two sizes within the last head; nil if either is beyond it.
    func consistency(old: UInt64, new: UInt64) -> ConsistencyProof? {
        state.withLock { state in
            guard old <= new, new <= state.head.size else { return nil }
            return ConsistencyProof(old: old, new: new, path: state.tree.consistencyPath(old: old, new: new))
        }
    }
}
