import Synchronization

/// The replies of one server that wait for the network (`DNSReply.later`), run as child tasks
/// of one task, so their lifetime is the server's:
///
/// - bounded: at most `limit` at once; past that a query is dropped (as Unbound drops when its
///   request list is full), so a flood of queries that need an upstream cannot pile up tasks
///   and memory without end;
/// - closed with the server: `close()` takes no new work, lets the work under way finish (each
///   is bounded by its upstream time-out) so its replies still go out, then ends the task.
final class DeferredReplies: Sendable {
    typealias Work = @Sendable () async -> Void

    let limit: Int
    private let continuation: AsyncStream<Work>.Continuation
    private let runner: Task<Void, Never>
    private let inFlight = Atomic<Int>(0)
    private let closing = Atomic<Bool>(false)

    init(limit: Int) {
        self.limit = limit
        let (stream, continuation) = AsyncStream.makeStream(of: Work.self)
        self.continuation = continuation
        runner = Task {
            await withDiscardingTaskGroup { group in
                for await work in stream { group.addTask { await work() } }
            }
        }
    }

    /// Runs `work` as a child task; false (and nothing runs) when `limit` are under way or the
    /// server is closing.
    func submit(_ work: @escaping Work) -> Bool {
        guard !closing.load(ordering: .relaxed) else { return false }
        guard inFlight.add(1, ordering: .relaxed).newValue <= limit else {
            inFlight.subtract(1, ordering: .relaxed)
            return false
        }
        let result = continuation.yield { [self] in
            await work()
            inFlight.subtract(1, ordering: .relaxed)
        }
        if case .terminated = result {  // closed between the check above and here
            inFlight.subtract(1, ordering: .relaxed)
            return false
        }
        return true
    }

    /// How many are under way (for tests and metrics).
    var count: Int { inFlight.load(ordering: .relaxed) }

    /// Takes no more work and waits for the work under way.
    func close() async {
        closing.store(true, ordering: .relaxed)
        continuation.finish()
        await runner.value
    }
}
