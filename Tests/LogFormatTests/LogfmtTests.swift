import Foundation
import Logging
import Testing

@testable import LogFormat

@Suite struct LogfmtTests {
    @Test func everyValueIsQuotedAndEscaped() {
        let line = LogfmtHandler.line(
            time: Date(timeIntervalSince1970: 0), level: .warning, label: "kmsd", message: "upstream failed",
            metadata: ["reason": "c.a.xx. (127.0.0.1:5304) said \"no\"\nthen\tleft", "peer": "c.a.xx.", "odd key": "\u{1}"])
        #expect(line == """
            time="1970-01-01T00:00:00Z" level="warning" logger="kmsd" msg="upstream failed" odd_key="\\u{1}" peer="c.a.xx." reason="c.a.xx. (127.0.0.1:5304) said \\"no\\"\\nthen\\tleft"

            """)
    }

    @Test func aLoggerWritesOneLinePerEventWithItsMetadata() {
        final class Lines: @unchecked Sendable { var all: [String] = [] }
        let lines = Lines()
        var logger = Logger(label: "kms-proxy") { label in LogfmtHandler(label: label, level: .info) { lines.all.append($0) } }
        logger[metadataKey: "zone"] = "xx."
        logger.debug("not shown")
        logger.info("tunnel open", metadata: ["peer": "hostb.c.a.xx."])
        #expect(lines.all.count == 1)
        #expect(lines.all.first?.contains(#"logger="kms-proxy" msg="tunnel open" peer="hostb.c.a.xx." zone="xx.""#) == true, "\(lines.all)")
    }
}
