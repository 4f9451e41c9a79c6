public import Foundation
public import Logging

/// One line per event in logfmt, every value quoted, so a log line can be parsed back and a
/// value with spaces or quotes (a reason, a peer's name) cannot be mistaken for two fields:
///
///     time="2026-11-22T10:46:25Z" level="info" logger="kms-proxy" msg="inbound tunnel" caller="hosta.b.a.xx." port="8080"
///
/// Metadata keys come in sorted order after `msg`; `"`, `\` and control characters in values are
/// escaped (`\"`, `\\`, `\n`, `\t`, `\u{1F}`).
public struct LogfmtHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let write: @Sendable (String) -> Void

    /// Writes to standard error.
    public static func standardError(label: String, level: Logger.Level) -> LogfmtHandler {
        LogfmtHandler(label: label, level: level) { line in FileHandle.standardError.write(Data(line.utf8)) }
    }

    public init(label: String, level: Logger.Level, write: @escaping @Sendable (String) -> Void) {
        self.label = label
        self.logLevel = level
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var all = metadata
        if let provided = metadataProvider?.get() { all.merge(provided) { _, new in new } }
        if let given = event.metadata { all.merge(given) { _, new in new } }
        write(Self.line(
            time: Date(), level: event.level, label: label, message: "\(event.message)", metadata: all))
    }

    public static func line(time: Date, level: Logger.Level, label: String, message: String, metadata: Logger.Metadata) -> String {
        var fields = [
            ("time", timeFormatter.string(from: time)), ("level", level.rawValue), ("logger", label), ("msg", message),
        ]
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) { fields.append((key, "\(value)")) }
        return fields.map { "\(key($0.0))=\(quote($0.1))" }.joined(separator: " ") + "\n"
    }

    /// Keys are kept to letters, digits, `_`, `-` and `.`; anything else becomes `_`.
    static func key(_ text: String) -> String {
        String(text.map { $0.isLetter || $0.isNumber || "_-.".contains($0) ? $0 : "_" })
    }

    static func quote(_ value: String) -> String {
        var out = "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F {
                    out += "\\u{\(String(scalar.value, radix: 16, uppercase: true))}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }
}

/// ISO8601DateFormatter is thread-safe; one serves every log line.
nonisolated(unsafe) private let timeFormatter = ISO8601DateFormatter()
