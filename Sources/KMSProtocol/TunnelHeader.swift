/// The first line a tunnel carries inside TLS (docs/PROXY.md): which of the peer's local ports
/// to reach, as `kms1-tunnel PORT` and a newline; or `kms1-ping`, which the endpoint answers
/// with one line, `kms1-pong ok DETAILS` or `kms1-pong refused: REASON`, and closes.
public enum TunnelHeader {
    public static let prefix = "kms1-tunnel "
    /// The longest header line an endpoint reads before it gives up on the connection.
    public static let maximumLength = 32

    /// The header line for `port`, newline included.
    public static func line(port: Int) -> [UInt8] { Array("\(prefix)\(port)\n".utf8) }

    /// The port of a header line (without its newline); nil unless it is exactly
    /// `kms1-tunnel ` and a port number 1-65535.
    public static func parse(_ bytes: [UInt8]) -> Int? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard text.hasPrefix(prefix), let port = Int(text.dropFirst(prefix.count)), (1...65535).contains(port) else {
            return nil
        }
        return port
    }

    public static let ping: [UInt8] = Array("kms1-ping\n".utf8)
    static let pongPrefix = "kms1-pong "

    /// Whether a header line (without its newline) is a ping.
    public static func isPing(_ bytes: [UInt8]) -> Bool { bytes == Array("kms1-ping".utf8) }

    /// The endpoint's answer to a ping, newline included (at most 200 bytes of reason).
    public static func pong(ok: Bool, _ detail: String) -> [UInt8] {
        Array("\(pongPrefix)\(ok ? "ok" : "refused:") \(detail.prefix(200))\n".utf8)
    }

    /// Reads a pong line (without its newline): whether it is ok, and the rest.
    public static func parsePong(_ bytes: [UInt8]) -> (ok: Bool, detail: String)? {
        let text = String(decoding: bytes, as: UTF8.self)
        guard text.hasPrefix(pongPrefix) else { return nil }
        let body = text.dropFirst(pongPrefix.count)
        if body.hasPrefix("ok ") { return (true, String(body.dropFirst(3))) }
        if body.hasPrefix("refused: ") { return (false, String(body.dropFirst(9))) }
        return nil
    }
}
