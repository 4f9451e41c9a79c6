import FuzzReplay
import KMSProtocol

/// Any bytes as the first line of a tunnel: a port 1-65535 or nil, and a port read back is
/// the line written for it.
func check(_ bytes: [UInt8]) {
    guard let port = TunnelHeader.parse(bytes) else { return }
    precondition((1...65535).contains(port), "a header parsed to port \(port)")
    precondition(TunnelHeader.parse(Array(TunnelHeader.line(port: port).dropLast())) == port, "round trip of \(port)")
}

@main struct Main {
    static func main() { FuzzReplay.main("fuzz-tunnel-header", check) }
}
