internal import COpenSSL

/// Why a key could not be read, made, used or checked.
///
/// `code` says what went wrong in this project's terms; `openSSL` carries every entry that was
/// on OpenSSL's thread-local error queue at the time (the queue is drained, so one failure
/// never leaks its errors into the next call).
public struct CryptoError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        let name: String
        public var description: String { name }

        public static let malformedKey = Code(name: "malformed key")
        public static let unsupportedAlgorithm = Code(name: "unsupported key algorithm")
        public static let signingFailed = Code(name: "signing failed")
        public static let keyGenerationFailed = Code(name: "key generation failed")
        public static let encodingFailed = Code(name: "encoding failed")
        public static let randomFailed = Code(name: "random generator failed")
        public static let tlsFailed = Code(name: "TLS failed")
    }

    public let code: Code
    public let reason: String
    public let openSSL: [String]
    public let location: String

    init(_ code: Code, _ reason: String, fileID: String = #fileID, line: Int = #line) {
        self.code = code
        self.reason = reason
        self.openSSL = OpenSSLErrorQueue.drain()
        self.location = "\(fileID):\(line)"
    }

    public var description: String {
        openSSL.isEmpty ? "\(code): \(reason)" : "\(code): \(reason) (\(openSSL.joined(separator: "; ")))"
    }
}

enum OpenSSLErrorQueue {
    /// Empties this thread's OpenSSL error queue, returning its entries oldest first.
    static func drain() -> [String] {
        var entries: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { return entries }
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            entries.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
    }
}
