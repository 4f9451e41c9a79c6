import Synchronization

/// A value read on every request and replaced whole on reload (SIGHUP): the CUG table, the
/// inbound table. Readers get the old value or the new one, never a mix.
final class Swappable<Value: Sendable>: Sendable {
    private let storage: Mutex<Value>

    init(_ value: Value) { storage = Mutex(value) }

    var value: Value {
        get { storage.withLock { $0 } }
        set { storage.withLock { $0 = newValue } }
    }
}
