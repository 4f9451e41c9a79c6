internal import CLDNS
public import Foundation

/// A TSIG key (RFC 8945): the shared secret that authenticates zone transfers. libldns computes
/// and checks the MACs; this type only carries the key and the MAC of the previous message.
public struct TSIGKey: Sendable, Equatable {
    public let name: DomainName
    /// The algorithm's name as TSIG writes it: `hmac-sha256.` (and the others libldns knows).
    public let algorithm: String
    /// The secret, base64, as `dig -y` and NSD's `secret:` take it.
    public let secret: String

    public init(name: DomainName, algorithm: String, secret: String) {
        self.name = name
        self.algorithm = algorithm.hasSuffix(".") ? algorithm : algorithm + "."
        self.secret = secret
    }

    /// The algorithms this project accepts.
    public static let algorithms = ["hmac-sha256", "hmac-sha384", "hmac-sha512"]

    /// How far a signer's clock may be from ours (RFC 8945 section 5.2.3 suggests 300 s).
    public static let fudge: UInt16 = 300

    /// What a query's TSIG says.
    public enum Check: Sendable, Equatable {
        /// Signed with this key and valid: the MAC to chain the reply to (length-prefixed).
        case valid(mac: [UInt8])
        case missing
        case invalid(String)
    }

    /// Checks the TSIG of the message in `wire` (the bytes as received: TSIG signs those).
    public func check(_ wire: [UInt8], now: Date = Date()) -> Check {
        var packet: LDNSPacket?
        guard wire.withUnsafeBufferPointer({ ldns_wire2pkt(&packet, $0.baseAddress, $0.count) }) == LDNS_STATUS_OK, let packet else {
            return .invalid("the message does not decode")
        }
        defer { ldns_pkt_free(packet) }
        guard let tsig = ldns_pkt_tsig(packet) else { return .missing }
        guard let owner = ldns_rr_owner(tsig), DomainName(wire: LDNS.bytes(of: owner)) == name else {
            return .invalid("signed with another key than \(name)")
        }
        guard ldns_rr_rd_count(tsig) >= 4, let signedAt = ldns_rr_rdf(tsig, 1), let mac = ldns_rr_rdf(tsig, 3) else {
            return .invalid("a malformed TSIG record")
        }
        let time = LDNS.bytes(of: signedAt).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let skew = abs(Int64(now.timeIntervalSince1970) - Int64(time))
        guard skew <= Int64(Self.fudge) else { return .invalid("signed \(skew) s away from now (fudge \(Self.fudge) s)") }
        let valid = wire.withUnsafeBufferPointer {
            ldns_pkt_tsig_verify(packet, $0.baseAddress, $0.count, name.text, secret, nil) != 0
        }
        guard valid else { return .invalid("the MAC does not verify with \(name)") }
        return .valid(mac: LDNS.bytes(of: mac))
    }
}

extension DNSMessage {
    /// Encodes the message signed with `key` (RFC 8945 section 5.3): `previousMAC` is the
    /// request's MAC for a reply, or the previous message's for the next message of a transfer
    /// (`timersOnly`: RFC 8945 section 5.3.1). Returns the bytes and this message's MAC, to
    /// chain the next one to.
    public func wire(signedWith key: TSIGKey, previousMAC: [UInt8]?, timersOnly: Bool = false) throws(WireError) -> (wire: [UInt8], mac: [UInt8]) {
        let packet = try toLDNS()
        defer { ldns_pkt_free(packet) }
        let macData = previousMAC.map { mac in mac.withUnsafeBytes { ldns_rdf_new_frm_data(LDNS_RDF_TYPE_INT16_DATA, $0.count, $0.baseAddress)! } }
        defer { if let macData { ldns_rdf_deep_free(macData) } }
        let status = ldns_pkt_tsig_sign_next(packet, key.name.text, key.secret, TSIGKey.fudge, key.algorithm, macData, timersOnly ? 1 : 0)
        guard status == LDNS_STATUS_OK, let tsig = ldns_pkt_tsig(packet), let mac = ldns_rr_rdf(tsig, 3) else {
            throw WireError(.encodingFailed, "cannot sign with \(key.name): \(LDNS.errorString(status))")
        }
        var buffer: UnsafeMutablePointer<UInt8>?
        var size = 0
        let encoded = ldns_pkt2wire(&buffer, packet, &size)
        guard encoded == LDNS_STATUS_OK, let buffer else { throw WireError(.encodingFailed, LDNS.errorString(encoded)) }
        defer { free(buffer) }
        return (Array(UnsafeBufferPointer(start: buffer, count: size)), LDNS.bytes(of: mac))
    }
}
