import DNSWire
import FuzzReplay

/// Any bytes as a DNS message: decoding (libldns plus our RFC 6891 checks) must fail cleanly
/// or give a message that encodes, and whose encoding decodes to the same message. What
/// admission reads off the bytes before decoding (`WireShape`) must never crash on any bytes,
/// and on a message as we encode it must agree with it: the records it carries, its COOKIE.
/// (On the raw bytes the two may differ: libldns does not skip to a record's RDLENGTH when the
/// fields of its type end sooner, an A record of 256 bytes say, and reads the rest as further
/// records; docs/FUZZING.md. Admission only uses the shape to turn work away early, so such a
/// message takes the ordinary path and its checks.)
func check(_ bytes: [UInt8]) {
    _ = WireShape(wire: bytes)
    guard let message = try? DNSMessage(wire: bytes) else { return }
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
