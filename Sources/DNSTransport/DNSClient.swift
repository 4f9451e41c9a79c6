public import DNSWire
public import NIOCore
import NIOExtras
import NIOPosix
import Synchronization

/// Why a query got no usable reply.
public struct DNSClientError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: Hashable, Sendable {
        case timeout, unreachable, malformedReply, encodingFailed
    }

    public let code: Code
    public let server: String
    public let reason: String

    public var description: String { "\(server): \(reason)" }
}

/// A DNS client. Each UDP query has a socket of its own, connected to the server, as
/// RFC 5452 section 9.2 asks of a resolver and as dig does:
///
/// - its source port is a fresh one the kernel picks at random, so an off-path attacker who
///   would forge a reply (to poison kms-proxy's answer cache, say) must guess the port as well
///   as the 16-bit ID (RFC 5452 section 4.5);
/// - the kernel passes it only datagrams from the server's address and port;
/// - an ICMP port or host unreachable ends the query at once (`unreachable`, "connection
///   refused"), as dig reports it, instead of after the whole time-out: a KMS whose process is
///   down is named within milliseconds.
///
/// A reply must also carry the query's ID and echo its question (RFC 5452 section 9.1); any
/// other datagram is ignored and the query goes on waiting. A reply with TC=1 is asked again
/// over TCP (RFC 7766).
///
/// `kms bench`, a load generator, asks for `shared` sockets instead: a few sockets for all its
/// queries, replies matched by ID, server address and question, so the socket set-up (three
/// system calls and an epoll registration a query) does not limit the load it can offer.
///
/// It is shared by the KMS node (upstream queries), kms-proxy, `kms fetch` and `kms bench`.
public final class DNSClient: Sendable {
    /// Whether each UDP query has its own socket.
    public enum Sockets: Sendable {
        /// A new connected socket per query (the default; RFC 5452).
        case perQuery
        /// One socket per address family for every query (a load generator's choice).
        case shared
    }

    private struct PendingKey: Hashable {
        let id: UInt16
        let server: SocketAddress
    }

    private struct Pending {
        let question: Question?
        let promise: EventLoopPromise<DNSMessage>
    }

    private let group: any EventLoopGroup
    private let channels: [any Channel]  // shared: one IPv4, one IPv6 (when the host has IPv6); perQuery: none
    private let pending = Mutex<[PendingKey: Pending]>([:])
    /// perQuery: the queries under way, so `close` can end them.
    private let underWay = Mutex<(next: UInt64, promises: [UInt64: EventLoopPromise<DNSMessage>])>((0, [:]))
    private let cookies = Mutex(CookieJar())

    /// Where query IDs come from: the system's random generator (a test may narrow it, to make
    /// IDs meet).
    private let ids: @Sendable () -> UInt16

    private init(group: any EventLoopGroup, channels: [any Channel], ids: @escaping @Sendable () -> UInt16) {
        self.group = group
        self.channels = channels
        self.ids = ids
    }

    public static func make(group: any EventLoopGroup, sockets: Sockets = .perQuery) async throws -> DNSClient {
        try await make(group: group, sockets: sockets, ids: { UInt16.random(in: 0...UInt16.max) })
    }

    static func make(group: any EventLoopGroup, sockets: Sockets, ids: @escaping @Sendable () -> UInt16) async throws -> DNSClient {
        guard sockets == .shared else { return DNSClient(group: group, channels: [], ids: ids) }
        let inbox = ClientInbox()
        var channels: [any Channel] = []
        // One socket per family, the IPv6 one IPv6-only: an IPv4 server is always asked from
        // the IPv4 socket, whatever addresses the host has. Bound by numeric address, never
        // resolved (a resolver may answer "0.0.0.0" with a mapped IPv6 address).
        for (host, isIPv6) in [("0.0.0.0", false), ("::", true)] {
            do {
                var bootstrap = DatagramBootstrap(group: group)
                if isIPv6 { bootstrap = bootstrap.channelOption(ChannelOptions.Types.SocketOption(level: .ipv6, name: .ipv6_v6only), value: 1) }
                let channel = try await bootstrap
                    .channelOption(ChannelOptions.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: 65_535))
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try channel.pipeline.syncOperations.addHandler(ReplyHandler(client: inbox))
                        }
                    }
                    .bind(to: try SocketAddress(ipAddress: host, port: 0)).get()
                channels.append(channel)
            } catch where isIPv6 {
                continue  // no IPv6 on this host
            }
        }
        let client = DNSClient(group: group, channels: channels, ids: ids)
        inbox.client.withLock { $0 = client }
        return client
    }

    public func close() async {
        for channel in channels { try? await channel.close() }
        let waiting = pending.withLock { table in
            defer { table.removeAll() }
            return table.values.map(\.promise)
        }
        let own = underWay.withLock { state in
            defer { state.promises.removeAll() }
            return Array(state.promises.values)
        }
        for promise in waiting + own {
            promise.fail(DNSClientError(code: .unreachable, server: "-", reason: "client closed"))
        }
    }

    /// Sends `message` (its ID is replaced by a fresh random one) and returns the reply.
    /// `tcpFallback` retries over TCP when the UDP reply is truncated. With `cookie`, the
    /// query carries a DNS cookie (RFC 7873 section 5.1) unless it has one: this client's
    /// cookie for the server and the server cookie the server last gave, which proves the
    /// address to a server that checks them, so that it is answered over UDP where an
    /// unproven address would be sent to TCP (a KMS under a flood of spoofed signed requests).
    ///
    /// A UDP query that has no reply `resendAfter` each of those times is sent again, on the
    /// same socket with the same ID and question, so a reply to any copy is taken, as a stub
    /// resolver does (dig's +tries, resolv.conf's attempts): one lost datagram then costs a
    /// step, not the whole time-out. A copy is the same bytes, or what `copy` makes when a
    /// query may not be repeated as it is (a signed KMS1 request carries a nonce a KMS refuses
    /// to see twice: `KMS1Exchange` signs each copy anew); `copy` runs on the event loop when
    /// the copy is due, and returning nil sends nothing.
    public func query(
        _ message: DNSMessage, server: SocketAddress, timeout: TimeAmount, tcpFallback: Bool = true, cookie: Bool = false,
        resendAfter: [TimeAmount] = [], copy: (@Sendable () -> DNSMessage?)? = nil
    ) async throws -> DNSMessage {
        let deadline = NIODeadline.now() + timeout
        let server = server.unmapped
        var message = message
        if cookie { cookies.withLock { $0.stamp(&message, for: server) } }
        let resends = resendAfter.map { deadline - timeout + $0 }
        // A copy of another make: given the query's ID, stamped with the cookie as the first.
        var variant: (@Sendable (UInt16) -> [UInt8]?)?
        if let copy {
            variant = { @Sendable [self] (id: UInt16) -> [UInt8]? in
                guard var next = copy() else { return nil }
                next.header.id = id
                if cookie { self.cookies.withLock { $0.stamp(&next, for: server) } }
                return try? next.wire()
            }
        }
        let reply =
            channels.isEmpty
            ? try await exchangeOverOwnSocket(&message, server: server, deadline: deadline, timeout: timeout, resends: resends, variant: variant)
            : try await exchangeOverSharedSocket(&message, server: server, deadline: deadline, timeout: timeout, resends: resends, variant: variant)
        if cookie { cookies.withLock { $0.learn(from: reply, server: server) } }
        if reply.header.isTruncated && tcpFallback {
            let left = deadline - .now()
            let answer = try await queryOverTCP(message, server: server, timeout: max(left, .milliseconds(1)))
            // A server that sent an unproven client to TCP gives its cookie there.
            if cookie { cookies.withLock { $0.learn(from: answer, server: server) } }
            return answer
        }
        return reply
    }

    /// `resendAfter` for a query sent `attempts` times in all: after each step of
    /// `timeout / attempts` without a reply.
    public static func steps(of timeout: TimeAmount, attempts: Int) -> [TimeAmount] {
        guard attempts > 1 else { return [] }
        return (1..<attempts).map { .nanoseconds(timeout.nanoseconds / Int64(attempts) * Int64($0)) }
    }

    /// One UDP exchange over a socket of its own, connected to `server` (RFC 5452).
    private func exchangeOverOwnSocket(
        _ message: inout DNSMessage, server: SocketAddress, deadline: NIODeadline, timeout: TimeAmount, resends: [NIODeadline],
        variant: (@Sendable (UInt16) -> [UInt8]?)?
    ) async throws -> DNSMessage {
        message.header.id = ids()
        let id = message.header.id
        let bytes: [UInt8]
        do { bytes = try message.wire() } catch {
            throw DNSClientError(code: .encodingFailed, server: "\(server)", reason: "\(error)")
        }
        let loop = group.next()
        let promise = loop.makePromise(of: DNSMessage.self)
        let slot = underWay.withLock { state in
            state.next += 1
            state.promises[state.next] = promise
            return state.next
        }
        defer { _ = underWay.withLock { $0.promises.removeValue(forKey: slot) } }
        // From the socket's creation to its close, every step runs on its event loop, chained:
        // this task hands over once and is resumed once (awaiting each step made four more
        // thread hand-overs a query, which cost more than the socket itself).
        DatagramBootstrap(group: loop)
            .channelOption(ChannelOptions.recvAllocator, value: FixedSizeRecvByteBufferAllocator(capacity: Self.largestUDPReply + 1))
            .channelInitializer { [query = message] channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ConnectedReplyHandler(query: query, server: server, promise: promise))
                }
            }
            .connect(to: server)
            .whenComplete { connected in
                switch connected {
                case .failure(let error):
                    promise.fail(DNSClientError(code: .unreachable, server: "\(server)", reason: "no UDP socket for it (\(error))"))
                case .success(let channel):
                    let timer = loop.scheduleTask(deadline: deadline) {
                        promise.fail(DNSClientError(code: .timeout, server: "\(server)", reason: "no reply within \(timeout.milliseconds) ms"))
                    }
                    // A send that fails (a copy's too: the server's port closed meanwhile) ends
                    // the query, as the reply it waits for cannot come.
                    let send: @Sendable ([UInt8]) -> Void = { bytes in
                        channel.writeAndFlush(channel.allocator.buffer(bytes: bytes)).whenFailure { error in
                            promise.fail(DNSClientError(code: .unreachable, server: "\(server)", reason: "\(ConnectedReplyHandler.describe(error))"))
                        }
                    }
                    send(bytes)
                    let copies = resends.map { at in
                        loop.scheduleTask(deadline: at) {
                            if let copy = variant.map({ $0(id) }) ?? bytes { send(copy) }
                        }
                    }
                    promise.futureResult.whenComplete { _ in
                        timer.cancel()
                        for copy in copies { copy.cancel() }
                        channel.close(promise: nil)
                    }
                }
            }
        return try await Self.reply(promise)
    }

    /// The longest UDP reply a per-query socket reads. Its queries advertise an EDNS payload
    /// of 1 232 bytes (or 512 without EDNS), and a server may send no more (RFC 6891 section
    /// 6.2.5), so this is ample; each new socket allocates its receive buffer once, and 64 KiB
    /// for every upstream query was a measurable share of a cold fetch. A datagram longer
    /// than this (a server that ignores the limit) counts as truncated: asked again over TCP.
    static let largestUDPReply = 4_096

    /// The reply a promise brings, or CancellationError as soon as the task is cancelled (a
    /// caller that asked several servers and took the first answer stops waiting for the rest).
    private static func reply<Value: Sendable>(_ promise: EventLoopPromise<Value>) async throws -> Value {
        try await withTaskCancellationHandler {
            try await promise.futureResult.get()
        } onCancel: {
            promise.fail(CancellationError())
        }
    }

    /// One UDP exchange over the shared socket of the server's family, matched by ID, server
    /// and question.
    private func exchangeOverSharedSocket(
        _ message: inout DNSMessage, server: SocketAddress, deadline: NIODeadline, timeout: TimeAmount, resends: [NIODeadline],
        variant: (@Sendable (UInt16) -> [UInt8]?)?
    ) async throws -> DNSMessage {
        guard let channel = channels.first(where: { $0.localAddress?.protocol == server.protocol }) else {
            throw DNSClientError(code: .unreachable, server: "\(server)", reason: "no socket for its address family")
        }
        let promise = channel.eventLoop.makePromise(of: DNSMessage.self)
        let key = pending.withLock { table -> PendingKey in
            var key: PendingKey
            repeat {
                key = PendingKey(id: ids(), server: server)
            } while table[key] != nil
            table[key] = Pending(question: message.question, promise: promise)
            return key
        }
        message.header.id = key.id
        let bytes: [UInt8]
        do { bytes = try message.wire() } catch {
            _ = pending.withLock { $0.removeValue(forKey: key) }
            throw DNSClientError(code: .encodingFailed, server: "\(server)", reason: "\(error)")
        }
        let timer = channel.eventLoop.scheduleTask(deadline: deadline) { [self] in
            if let entry = self.pending.withLock({ $0.removeValue(forKey: key) }) {
                entry.promise.fail(DNSClientError(code: .timeout, server: "\(server)", reason: "no reply within \(timeout.milliseconds) ms"))
            }
        }
        let copies = resends.map { at in
            channel.eventLoop.scheduleTask(deadline: at) {
                guard let bytes = variant.map({ $0(key.id) }) ?? bytes else { return }
                channel.writeAndFlush(AddressedEnvelope(remoteAddress: server, data: channel.allocator.buffer(bytes: bytes)), promise: nil)
            }
        }
        defer {
            timer.cancel()
            for copy in copies { copy.cancel() }
            // Only this query's entry: the reply's arrival freed the key, and another query
            // may hold it by now (removing that one's entry left it waiting for ever).
            pending.withLock { table in
                if table[key]?.promise.futureResult === promise.futureResult { table.removeValue(forKey: key) }
            }
        }
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: server, data: channel.allocator.buffer(bytes: bytes)), promise: nil)
        return try await Self.reply(promise)
    }

    /// One query over a new TCP connection (RFC 7766 two-byte length framing).
    public func queryOverTCP(_ message: DNSMessage, server: SocketAddress, timeout: TimeAmount) async throws -> DNSMessage {
        let server = server.unmapped
        let bytes = try message.wire()
        let loop = group.next()
        let promise = loop.makePromise(of: DNSMessage.self)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: loop)
                .connectTimeout(timeout)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        try sync.addHandler(ByteToMessageHandler(LengthFieldBasedFrameDecoder(lengthFieldBitLength: .twoBytes)))
                        try sync.addHandler(LengthFieldPrepender(lengthFieldBitLength: .twoBytes))
                        try sync.addHandler(StreamReplyHandler(promise: promise))
                    }
                }
                .connect(to: server).get()
        } catch {
            promise.fail(error)
            throw DNSClientError(code: .unreachable, server: "\(server)", reason: "TCP connect failed (\(error))")
        }
        let timer = loop.scheduleTask(in: timeout) {
            promise.fail(DNSClientError(code: .timeout, server: "\(server)", reason: "no TCP reply within \(timeout.milliseconds) ms"))
        }
        defer {
            timer.cancel()
            channel.close(promise: nil)
        }
        try await channel.writeAndFlush(channel.allocator.buffer(bytes: bytes))
        let reply = try await Self.reply(promise)
        guard reply.header.id == message.header.id, reply.question == message.question else {
            throw DNSClientError(code: .malformedReply, server: "\(server)", reason: "TCP reply does not match the query")
        }
        return reply
    }

    fileprivate func received(_ bytes: ByteBuffer, from server: SocketAddress) {
        guard let reply = try? DNSMessage(wire: bytes.readableBytesView), reply.header.isResponse else { return }
        let key = PendingKey(id: reply.header.id, server: server.unmapped)
        // A reply must echo the question it answers (RFC 5452 section 9.1); others are ignored.
        let entry = pending.withLock { table -> Pending? in
            guard let entry = table[key], entry.question == reply.question else { return nil }
            return table.removeValue(forKey: key)
        }
        entry?.promise.succeed(reply)
    }
}

/// DNS Cookies, client side (RFC 7873 section 5.1): a random client cookie per server, and
/// the server cookie each server last returned with it. Bounded: a client that has asked too
/// many servers starts over (it then sends client cookies only, until the servers answer).
private struct CookieJar {
    struct Entry {
        let client: [UInt8]
        var server: [UInt8] = []
    }

    static let capacity = 4096
    private var entries: [SocketAddress: Entry] = [:]

    mutating func stamp(_ message: inout DNSMessage, for server: SocketAddress) {
        guard var edns = message.edns, !edns.options.contains(where: { $0.code == EDNS.cookieOption }) else { return }
        if entries[server] == nil {
            if entries.count >= Self.capacity { entries.removeAll() }
            // SystemRandomNumberGenerator reads the kernel's CSPRNG (getrandom on Linux).
            entries[server] = Entry(client: (0..<8).map { _ in UInt8.random(in: 0...255) })
        }
        let entry = entries[server]!
        edns.options.append(EDNS.Option(code: EDNS.cookieOption, data: entry.client + entry.server))
        message.edns = edns
    }

    /// Keeps the server cookie of a reply that echoes this client's cookie for the server.
    mutating func learn(from reply: DNSMessage, server: SocketAddress) {
        guard let data = reply.edns?.options.first(where: { $0.code == EDNS.cookieOption })?.data,
            (16...40).contains(data.count), let entry = entries[server], Array(data.prefix(8)) == entry.client
        else { return }
        entries[server]?.server = Array(data.dropFirst(8))
    }
}

/// Lets the socket's handler reach the client that owns the socket, once it exists.
private final class ClientInbox: Sendable {
    let client = Mutex<DNSClient?>(nil)
}

private final class ReplyHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let client: ClientInbox
    init(client: ClientInbox) { self.client = client }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        client.client.withLock { $0 }?.received(envelope.data, from: envelope.remoteAddress)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {}
}

/// The handler of a query's own connected socket: the first datagram with the query's ID and
/// question completes it; an ICMP error the kernel reports on the socket ends it.
private final class ConnectedReplyHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    let query: DNSMessage
    var id: UInt16 { query.header.id }
    let server: SocketAddress
    let promise: EventLoopPromise<DNSMessage>
    init(query: DNSMessage, server: SocketAddress, promise: EventLoopPromise<DNSMessage>) {
        self.query = query
        self.server = server
        self.promise = promise
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data).data
        if bytes.readableBytes > DNSClient.largestUDPReply {
            // Cut by the read: only its header can be trusted, and only if it is this query's
            // (ID, QR). It stands for the query's response skeleton with TC=1.
            guard bytes.getInteger(at: bytes.readerIndex, as: UInt16.self) == id,
                let flags = bytes.getInteger(at: bytes.readerIndex + 2, as: UInt8.self), flags & 0x80 != 0
            else { return }
            var truncated = query.response()
            truncated.header.isTruncated = true
            promise.succeed(truncated)
            return
        }
        guard let reply = try? DNSMessage(wire: bytes.readableBytesView), reply.header.isResponse,
            reply.header.id == id, reply.question == query.question
        else { return }
        promise.succeed(reply)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(DNSClientError(code: .unreachable, server: "\(server)", reason: Self.describe(error)))
    }

    /// ECONNREFUSED on a connected UDP socket is the server's ICMP port unreachable: said as
    /// dig says it.
    static func describe(_ error: any Error) -> String {
        guard let error = error as? IOError else { return "\(error)" }
        switch error.errnoCode {
        case ECONNREFUSED: return "connection refused (nothing listens on the port)"
        case EHOSTUNREACH: return "host unreachable"
        case ENETUNREACH: return "network unreachable"
        default: return "\(error)"
        }
    }
}

private final class StreamReplyHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let promise: EventLoopPromise<DNSMessage>
    init(promise: EventLoopPromise<DNSMessage>) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        do { promise.succeed(try DNSMessage(wire: bytes.readableBytesView)) } catch { promise.fail(error) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(DNSClientError(code: .unreachable, server: "\(context.remoteAddress.map { "\($0)" } ?? "-")", reason: "connection closed"))
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.close(promise: nil)
    }
}

extension TimeAmount {
    var milliseconds: Int64 { nanoseconds / 1_000_000 }
}
