import Glibc

/// An exclusive advisory lock (flock) on a node's database file, held while the node serves.
///
/// Two kmsd processes, or two nodes of one process, on one database would each believe the
/// other's registrations are not there: the second to start is refused, naming the file. The
/// kernel drops the lock when the holder exits, however it exits, so a crash leaves nothing
/// stale. SQLite's own locks (fcntl) are separate and unaffected.
final class DatabaseLock: Sendable {
    private let descriptor: Int32

    init(path: String) throws(LockError) {
        let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw LockError(reason: "cannot open (\(String(cString: strerror(errno))))") }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let busy = errno == EWOULDBLOCK
            let reason = String(cString: strerror(errno))
            close(descriptor)
            throw LockError(reason: busy ? "in use by another running node (it holds the lock)" : "cannot lock (\(reason))")
        }
        self.descriptor = descriptor
    }

    deinit { close(descriptor) }

    struct LockError: Error {
        let reason: String
    }
}
