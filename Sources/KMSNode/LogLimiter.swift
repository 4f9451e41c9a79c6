import Logging
import NIOCore
import Synchronization

/// Warnings that a flood could repeat thousands of times a second, at most `perSecond` of each
/// message per second; the rest are counted and said in one line when the next gets through
/// ("suppressed N like this"), so a flood cannot fill the disk with logs.
final class LogLimiter: Sendable {
    private struct Window {
        var second: UInt64 = 0
        var written = 0
        var suppressed = 0
    }

    let logger: Logger
    let perSecond: Int
    private let windows = Mutex<[String: Window]>([:])

    init(_ logger: Logger, perSecond: Int = 5) {
        self.logger = logger
        self.perSecond = perSecond
    }

    func warning(_ message: String, metadata: Logger.Metadata, now: UInt64 = NIODeadline.now().uptimeNanoseconds) {
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
        logger.warning("\(message)", metadata: metadata)
    }
}
