import Glibc
public import NIOCore
import Synchronization

/// What one TCP client may hold of a server (RFC 7766 section 6.2.3), as NSD's `tcp-count` and
/// `tcp-timeout` and Knot's `tcp-max-clients` and `tcp-idle-timeout` bound it:
///
/// - **connections**: the process's open TCP connections, over all its servers. One past the
///   limit is closed as soon as it is accepted, so connections held open cannot take every file
///   descriptor (UDP, the store, upstream fetches and the control socket need theirs).
/// - **idle time-out**: a connection that delivers no *complete* message for this long is
///   closed. Bytes that trickle in without finishing a message do not keep it open.
/// - **back-pressure**: while replies cannot be written (the client does not read them), the
///   connection is not read either, so its queries wait in the kernel, not in this process.
public struct TCPLimits: Sendable {
    public var connections: TCPConnectionBudget
    public var idleTimeout: TimeAmount

    public init(connections: TCPConnectionBudget = .process, idleTimeout: TimeAmount = .seconds(10)) {
        self.connections = connections
        self.idleTimeout = idleTimeout
    }

    public static let standard = TCPLimits()
}

/// A count of open TCP connections against a limit, shared by every server that holds it.
public final class TCPConnectionBudget: Sendable {
    public let limit: Int
    private let open = Atomic<Int>(0)

    public init(limit: Int) { self.limit = limit }

    /// The process's budget: half its open-file limit (Knot's default), so the other half stays
    /// for everything else.
    public static let process = TCPConnectionBudget(limit: max(16, OpenFiles.limit / 2))

    public var count: Int { open.load(ordering: .relaxed) }

    /// For a connection just accepted: takes a slot, given back when the connection closes, or
    /// returns false when all are taken (the caller fails the connection's initializer with
    /// `TCPConnectionLimitReached`, and NIO closes it).
    public func hold(_ channel: any Channel) -> Bool {
        guard take() else { return false }
        channel.closeFuture.whenComplete { _ in self.give() }
        return true
    }

    /// Takes a slot, or returns false when all are taken.
    func take() -> Bool {
        var current = open.load(ordering: .relaxed)
        while current < limit {
            let (exchanged, original) = open.compareExchange(expected: current, desired: current + 1, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    func give() { open.subtract(1, ordering: .relaxed) }

}

/// The process's limit on open files.
public enum OpenFiles {
    /// Raises the soft limit to the hard one, as Go's runtime, BIND and Knot do at start. A
    /// daemon needs a descriptor per TCP connection and per upstream query (each has a socket
    /// of its own, `DNSClient`), and systemd starts services with a soft limit of 1024 under a
    /// hard one of 524288. Call it before anything reads the limit (`TCPConnectionBudget.process`).
    public static func raiseToHardLimit() {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit)
    }

    /// The soft limit in force (1024 if it cannot be read or is unlimited).
    static var limit: Int {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max else { return 1024 }
        return Int(clamping: limit.rlim_cur)
    }
}

/// Why a TCP connection was closed as soon as it was accepted.
public struct TCPConnectionLimitReached: Error, CustomStringConvertible {
    public init() {}
    public var description: String { "the process holds as many TCP connections as it may" }
}
