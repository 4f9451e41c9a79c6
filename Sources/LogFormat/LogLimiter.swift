import Dispatch
public import Logging
import Synchronization

/// Warnings that a flood could repeat thousands of times a second, at most `perSecond` of each
/// message per second; the rest are counted and said in one line when the next gets through
/// ("suppressed N like this"), so a flood cannot fill the disk with logs. kmsd and kms-proxy
/// write every line a packet or a connection from outside can cause through one.
public final class LogLimiter: Sendable {
    private struct Window {
        var second: UInt64 = 0
        var written = 0
        var suppressed = 0
    }

    public let logger: Logger
    public let perSecond: Int
    private let windows = Mutex<[String: Window]>([:])

    public init(_ logger: Logger, perSecond: Int = 5) {
        self.logger = logger
        self.perSecond = perSecond
    }

    public func warning(_ message: String, metadata: Logger.Metadata) {
        log(.warning, message, metadata: metadata, now: DispatchTime.now().uptimeNanoseconds)
    }

    public func notice(_ message: String, metadata: Logger.Metadata) {
        log(.notice, message, metadata: metadata, now: DispatchTime.now().uptimeNanoseconds)
    }

    /// `now` in nanoseconds of a monotonic clock.
    public func log(_ level: Logger.Level, _ message: String, metadata: Logger.Metadata, now: UInt64) {
        let second = now / 1_000_000_000
        let (write, suppressedBefore) = windows.withLock { table -> (Bool, Int) in
            var window = table[message] ?? Window()
            var carried = 0
            if window.second != second {
                carried = window.suppressed
                window = Window(second: second)
            }
            let write = window.written < perSecond
            if write { window.written += 1 } else { window.suppressed += 1 }
            table[message] = window
            return (write, carried)
        }
        guard write else { return }
        var metadata = metadata
        if suppressedBefore > 0 { metadata["suppressed"] = "\(suppressedBefore) like this in the second before" }
        logger.log(level: level, "\(message)", metadata: metadata)
    }
}
