import DNSTransport
import DNSWire
import KMSCrypto
import KMSProtocol
import NIOCore

/// DNS Cookies (RFC 7873), server side, in the layout of RFC 9018: a UDP client that returns
/// the server cookie this node gave it has proven its address, as TCP proves it. Such a client
/// is budgeted by its own address rather than its network and is never sent to TCP with TC=1.
/// Every answer to a query with a cookie carries a fresh server cookie.
///
/// The server cookie is version 1, three reserved octets, a timestamp, and eight octets of
/// HMAC-SHA256 over the client cookie, those eight octets and the client's address, keyed by a
/// secret drawn at start (RFC 9018 uses SipHash so that several servers can share a secret;
/// a single node needs no interoperation, and OpenSSL gives HMAC). It is good for an hour.
final class DNSCookies: Sendable {
    private let secret: MACKey

    /// Throws when OpenSSL cannot draw the secret: a node never runs with a guessable one.
    init() throws(CryptoError) {
        secret = MACKey(try SecureRandom.bytes(32))
    }

    /// Why a COOKIE option of the wrong length is FORMERR (RFC 7873 section 5.2.2).
    static let malformed = ExtendedDNSError(.invalidData, "a COOKIE option is 8 or 16-40 octets")

    enum State: Equatable {
        case absent
        case malformed
        /// A client cookie, and no server cookie or one this node did not make (or too old).
        case client([UInt8])
        /// A client cookie and a server cookie this node made for this address within the hour.
        case proven([UInt8])
    }

    func state(of message: DNSMessage, from client: SocketAddress, now: UnixTime = KMSNode.now()) -> State {
        guard let option = message.edns?.options.first(where: { $0.code == EDNS.cookieOption }) else { return .absent }
        return state(of: option.data, from: client.ip, now: now)
    }

    /// The same, for a COOKIE option's data read from a query's bytes (`WireShape`), before
    /// decoding: whether it proves `address`.
    func proves(_ cookie: [UInt8], address: IPAddress, now: UnixTime = KMSNode.now()) -> Bool {
        if case .proven = state(of: cookie, from: address, now: now) { return true }
        return false
    }

    private func state(of data: [UInt8], from address: IPAddress?, now: UnixTime) -> State {
        guard data.count == 8 || (16...40).contains(data.count) else { return .malformed }
        let client = Array(data.prefix(8))
        guard data.count == 24, data[8] == 1, let address else { return .client(client) }
        let time = data[12..<16].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let age = Int64(now) - Int64(time)
        guard age <= 3600, age >= -300 else { return .client(client) }
        let expected = serverCookie(client: client, address: address, time: time)
        return Array(data) == client + expected ? .proven(client) : .client(client)
    }

    func serverCookie(client: [UInt8], address: IPAddress, time: UInt32) -> [UInt8] {
        let head: [UInt8] = [1, 0, 0, 0, UInt8(time >> 24), UInt8(time >> 16 & 0xFF), UInt8(time >> 8 & 0xFF), UInt8(time & 0xFF)]
        return head + secret.authenticationCode(for: client + head + address.bytes).prefix(8)
    }

    /// Puts the client cookie and a fresh server cookie in `message`'s OPT (RFC 7873 section 5.2),
    /// from the cookie state the request's first stage read.
    func stamp(_ message: inout DNSMessage, for request: Request, now: UnixTime = KMSNode.now()) {
        stamp(&message, cookie: request.cookie, client: request.client, now: now)
    }

    /// The same, for a query that has no `Request` (admission's own errors).
    func stamp(_ message: inout DNSMessage, answering query: DNSMessage, from client: SocketAddress, now: UnixTime = KMSNode.now()) {
        stamp(&message, cookie: state(of: query, from: client, now: now), client: client, now: now)
    }

    /// The reply to a query that asks only for a server cookie (no question: RFC 7873 section
    /// 5.4): NOERROR with the client cookie and a fresh server cookie, or FORMERR for a COOKIE
    /// option of the wrong length. Nothing else is looked at.
    func reply(toCookieQuery query: DNSMessage, from client: SocketAddress, querySize: Int, now: UnixTime = KMSNode.now()) -> Reply {
        let cookie = state(of: query, from: client, now: now)
        if cookie == .malformed {
            return Replies.error(to: query, .formatError, Self.malformed, querySize: querySize)
        }
        var message = query.response(rcode: .noError, authoritative: false)
        stamp(&message, cookie: cookie, client: client, now: now)
        return Reply(message, answering: query)
    }

    private func stamp(_ message: inout DNSMessage, cookie: State, client socket: SocketAddress, now: UnixTime) {
        let client: [UInt8]
        switch cookie {
        case .absent, .malformed: return
        case .client(let cookie), .proven(let cookie): client = cookie
        }
        guard let address = socket.ip, var edns = message.edns else { return }
        edns.options.removeAll { $0.code == EDNS.cookieOption }
        edns.options.append(EDNS.Option(code: EDNS.cookieOption, data: client + serverCookie(client: client, address: address, time: UInt32(truncatingIfNeeded: now))))
        message.edns = edns
    }
}
