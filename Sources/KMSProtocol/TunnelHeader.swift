/// The first line a tunnel carries inside TLS (docs/PROXY.md): which of the peer's local ports
/// to reach, as `kms1-tunnel PORT` and a newline.
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
}
