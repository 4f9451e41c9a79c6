import Logging
import Synchronization
import Testing

@testable import LogFormat

/// Lines a flood could repeat: at most `perSecond` of each message a second, and the next line
/// that gets through says how many were left out.
@Suite struct LogLimiterTests {
    final class Lines: Sendable {
        let all = Mutex<[String]>([])
    }

    static func limiter(_ lines: Lines, perSecond: Int = 3) -> LogLimiter {
        LogLimiter(Logger(label: "kmsd") { label in LogfmtHandler(label: label, level: .info) { line in lines.all.withLock { $0.append(line) } } }, perSecond: perSecond)
    }

    @Test func eachMessageHasItsOwnBudgetAndTheSuppressedAreCounted() {
        let lines = Lines()
        let limiter = Self.limiter(lines)
        let second: UInt64 = 1_000_000_000
        for _ in 0..<1000 { limiter.log(.warning, "inbound refused", metadata: ["remote": "x"], now: 5 * second) }
        limiter.log(.notice, "upstream failed", metadata: [:], now: 5 * second + 1)
        var written = lines.all.withLock { $0 }
        #expect(written.filter { $0.contains("inbound refused") }.count == 3, "\(written.count) lines")
        #expect(written.filter { $0.contains(#"level="notice" logger="kmsd" msg="upstream failed""#) }.count == 1)
        // The next second: written again, saying how many the second before left out.
        limiter.log(.warning, "inbound refused", metadata: ["remote": "y"], now: 6 * second)
        written = lines.all.withLock { $0 }
        #expect(written.count == 5)
        #expect(written.last?.contains(#"suppressed="997 like this in the second before""#) == true, "\(written.last ?? "")")
    }
}
