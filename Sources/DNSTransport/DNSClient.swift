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

/// A DNS client that sends queries over one shared UDP socket and matches replies by ID, server
/// address and question; a reply with TC=1 is asked again over TCP (RFC 7766).
///
/// It is shared by the KMS node (upstream queries), `kms fetch` and `kms bench`.
public final class DNSClient: Sendable {
    private struct PendingKey: Hashable {
        let id: UInt16
        let server: SocketAddress
    }

    private struct Pending {
        let question: Question?
        let promise: EventLoopPromise<DNSMessage>
    }

    private let group: any EventLoopGroup
    private let channels: [any Channel]  // one IPv4, one IPv6 (when the host has IPv6)
    private let pending = Mutex<[PendingKey: Pending]>([:])
    private let cookies = Mutex(CookieJar())

    private init(group: any EventLoopGroup, channels: [any Channel]) {
        self.group = group
        self.channels = channels
    }

    public static func make(group: any EventLoopGroup) async throws -> DNSClient {
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
        let client = DNSClient(group: group, channels: channels)
        inbox.client.withLock { $0 = client }
        return client
    }

    public func close() async {
        for channel in channels { try? await channel.close() }
        let waiting = pending.withLock { table in
            defer { table.removeAll() }
            return Array(table.values)
        }
        for entry in waiting {
            entry.promise.fail(DNSClientError(code: .unreachable, server: "-", reason: "client closed"))
        }
    }

    /// Sends `message` (its ID is replaced by a fresh random one) and returns the reply.
    /// `tcpFallback` retries over TCP when the UDP reply is truncated. With `cookie`, the
    /// query carries a DNS cookie (RFC 7873 section 5.1) unless it has one: this client's
    /// cookie for the server and the server cookie the server last gave, which proves the
    /// address to a server that checks them, so that it is answered over UDP where an
    /// unproven address would be sent to TCP (a KMS under a flood of spoofed signed requests).
    public func query(
        _ message: DNSMessage, server: SocketAddress, timeout: TimeAmount, tcpFallback: Bool = true, cookie: Bool = false
    ) async throws -> DNSMessage {
        let deadline = NIODeadline.now() + timeout
        let server = server.unmapped
        guard let channel = channels.first(where: { $0.localAddress?.protocol == server.protocol }) else {
            throw DNSClientError(code: .unreachable, server: "\(server)", reason: "no socket for its address family")
        }
        var message = message
        if cookie { cookies.withLock { $0.stamp(&message, for: server) } }
        let promise = channel.eventLoop.makePromise(of: DNSMessage.self)
        let key = pending.withLock { table -> PendingKey in
            var key: PendingKey
            repeat {
                key = PendingKey(id: UInt16.random(in: 0...UInt16.max), server: server)
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
        channel.writeAndFlush(AddressedEnvelope(remoteAddress: server, data: channel.allocator.buffer(bytes: bytes)), promise: nil)
        let reply: DNSMessage
        do { reply = try await promise.futureResult.get() } catch {
            timer.cancel()
            throw error
        }
        timer.cancel()
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
        let reply = try await promise.futureResult.get()
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
