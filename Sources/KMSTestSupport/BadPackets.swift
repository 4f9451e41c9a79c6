public import DNSWire

/// Queries a DNS library would refuse to build, byte by byte: for admission tests.
public enum BadPackets {
    /// A query (ID 0x4242, RD) for `name` A with raw records in its answer and additional
    /// sections, and the header's opcode set to `opcode`.
    public static func query(
        _ name: DomainName = "hosta.b.a.xx.", opcode: UInt8 = 0, answers: [[UInt8]] = [], additionals: [[UInt8]] = []
    ) -> [UInt8] {
        var bytes: [UInt8] = [0x42, 0x42, (opcode << 3) | 0x01, 0x00]
        for count in [1, answers.count, 0, additionals.count] { bytes += [UInt8(count >> 8), UInt8(count & 0xFF)] }
        bytes += name.wire + [0x00, 0x01, 0x00, 0x01]
        for record in answers + additionals { bytes += record }
        return bytes
    }

    /// An OPT pseudo-record (RFC 6891 section 6.1.2): owner, 1232-byte payload, version 0.
    public static func opt(owner: [UInt8] = [0], rdata: [UInt8] = []) -> [UInt8] {
        owner + [0x00, 0x29, 0x04, 0xD0, 0, 0, 0, 0, UInt8(rdata.count >> 8), UInt8(rdata.count & 0xFF)] + rdata
    }

    /// The RFC 6891 breaches that must each get FORMERR.
    public static let ednsBreaches: [(name: String, bytes: [UInt8])] = [
        // An option claiming 16 bytes where the RDATA holds one.
        ("option longer than the OPT RDATA", query(additionals: [opt(rdata: [0x00, 0x0A, 0x00, 0x10, 0xAA])])),
        ("two OPT records", query(additionals: [opt(), opt()])),
        ("OPT owned by a name other than the root", query(additionals: [opt(owner: [1, 0x78, 0])])),
        ("OPT in the answer section", query(answers: [opt()], additionals: [opt()])),
    ]
}
