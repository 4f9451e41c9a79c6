internal import COpenSSL
import Synchronization

/// OpenSSL contexts that are ready for another use, kept for the next caller instead of
/// being made again: a context is used by one thread at a time (taken out, used, put back),
/// and at most `limit` wait here (one per thread that signs or MACs at once is enough).
final class ContextPool: Sendable {
    /// A context between two users: only the pool, or the one thread that took it, holds it.
    private struct Idle: @unchecked Sendable { let context: OpaquePointer }
    private let idle = Mutex<[Idle]>([])
    private let limit: Int
    private let free: @Sendable (OpaquePointer) -> Void

    init(limit: Int = 16, free: @escaping @Sendable (OpaquePointer) -> Void) {
        self.limit = limit
        self.free = free
    }

    deinit { for waiting in idle.withLock({ $0 }) { free(waiting.context) } }

    /// A context from the pool, or nil when none waits (the caller makes one).
    func take() -> OpaquePointer? { idle.withLock { $0.popLast()?.context } }

    /// Hands a context back after a successful use; one that failed is freed by the caller.
    func putBack(_ context: OpaquePointer) {
        let returning = Idle(context: context)
        let kept = idle.withLock { idle in
            guard idle.count < limit else { return false }
            idle.append(returning)
            return true
        }
        if !kept { free(context) }
    }
}
