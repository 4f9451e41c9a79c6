import DNSWire
import FuzzReplay

/// Any bytes as a DNS message: decoding (libldns plus our RFC 6891 checks) must fail cleanly
/// or give a message that encodes, and whose encoding decodes to the same message. What
/// admission reads off the bytes before decoding (`WireShape`) must never crash on any bytes,
/// and must agree with the decoded message, and with it re-encoded: the records it carries,
/// its COOKIE option.
func check(_ bytes: [UInt8]) {
    let raw = WireShape(wire: bytes)
    guard let message = try? DNSMessage(wire: bytes) else { return }
    if !(message.answers.isEmpty && message.authorities.isEmpty && message.additionals.isEmpty) {
        precondition(raw.carriesRecords, "a message with records read off its bytes as carrying none")
    }
    precondition(
        raw.cookie == message.edns?.options.first { $0.code == EDNS.cookieOption }?.data,
        "the COOKIE option read off the bytes differs from the decoded one")
    guard let encoded = try? message.wire() else { return }
    guard let again = try? DNSMessage(wire: encoded) else {
        fatalError("a decoded message encodes to bytes that do not decode")
    }
    precondition(again.questions == message.questions, "the question changed in a round trip")
    precondition(again.answers.count == message.answers.count, "answers changed in a round trip")
    let shape = WireShape(wire: encoded)
    let carries = !(message.answers.isEmpty && message.authorities.isEmpty && message.additionals.isEmpty)
    precondition(shape.carriesRecords == carries, "the records read off the encoding differ from the message's")
    let cookie = message.edns?.options.first { $0.code == EDNS.cookieOption }?.data
    precondition(shape.cookie == cookie, "the COOKIE option read off the encoding differs from the message's")
    _ = try? message.wireForUDP(limit: 512)
}

@main struct Main {
    static func main() { FuzzReplay.main("fuzz-dns-message", check) }
}
