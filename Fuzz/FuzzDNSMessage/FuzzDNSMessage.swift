import DNSWire
import FuzzReplay

/// Any bytes as a DNS message: decoding (libldns plus our RFC 6891 checks) must fail cleanly
/// or give a message that encodes, and whose encoding decodes to the same message.
func check(_ bytes: [UInt8]) {
    guard let message = try? DNSMessage(wire: bytes) else { return }
    guard let encoded = try? message.wire() else { return }
    guard let again = try? DNSMessage(wire: encoded) else {
        fatalError("a decoded message encodes to bytes that do not decode")
    }
    precondition(again.questions == message.questions, "the question changed in a round trip")
    precondition(again.answers.count == message.answers.count, "answers changed in a round trip")
    _ = try? message.wireForUDP(limit: 512)
}

@main struct Main {
    static func main() { FuzzReplay.main("fuzz-dns-message", check) }
}
