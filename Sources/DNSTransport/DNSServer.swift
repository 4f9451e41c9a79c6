import DNSWire
public import NIOCore
import NIOExtras
import NIOPosix
import Synchronization

/// A DNS server on one address: UDP and TCP (RFC 7766 framing) on the same port.
///
/// UDP is served by one socket per event loop, bound with SO_REUSEPORT, so the kernel spreads
/// queries over all cores. TCP connections are spread over the same loops. Replies to UDP
/// queries are cut to the requester's EDNS payload size with TC=1 when they do not fit.
public final class DNSServer: Sendable {
    public let address: SocketAddress
    private let tcp: any Channel
    private let deferred: DeferredReplies
    /// The UDP sockets now serving, and whether the server is closing (no more re-opening).
    private let udp: Mutex<(sockets: [any Channel], closing: Bool)>
    private let responder: ResponderBox
    /// Told (one line) whenever a UDP socket is opened again, or cannot be.
    private let onReopen: @Sendable (String) -> Void
    private let reopened = Atomic(0)

    /// Largest reply over UDP, whatever the requester advertises (RFC 9715 guidance).
    public static let udpPayloadLimit = Int(EDNS.defaultPayloadSize)
    /// Replies waiting for the network at once, per server, before queries are dropped.
    public static let defaultDeferredLimit = 10_000

    private init(
        address: SocketAddress, tcp: any Channel, udp: [any Channel], deferred: DeferredReplies, responder: ResponderBox,
        onReopen: @escaping @Sendable (String) -> Void
    ) {
        self.address = address
        self.tcp = tcp
        self.udp = Mutex((udp, false))
        self.deferred = deferred
        self.responder = responder
        self.onReopen = onReopen
    }

    /// Replies under way that wait for the network.
    public var repliesWaiting: Int { deferred.count }

    /// UDP sockets opened again after NIO closed one (`watch`).
    public var reopenedSockets: Int { reopened.load(ordering: .relaxed) }

    /// Binds UDP and TCP on `host:port` (port 0 picks a free port, the same for both).
    /// `host` is a numeric address, never resolved. The responder is read on every query, so
    /// it may be set after binding. A failure is a `BindError` naming the transport and address.
    ///
    /// A UDP socket that NIO closes while serving is opened again on the same loop and port
    /// (`onReopen` hears of it). NIO closes a datagram channel on a send error other than
    /// EMSGSIZE or EHOSTUNREACH, and the kernel refuses a single reply with EPERM when a
    /// firewall rule rejects its destination or the connection-tracking table is full: one
    /// such reply used to stop the port's UDP service for good, while the process ran on.
    public static func bind(
        host: String, port: Int, group: any EventLoopGroup, responder: ResponderBox,
        deferredLimit: Int = defaultDeferredLimit, tcp limits: TCPLimits = .standard,
        onReopen: @escaping @Sendable (String) -> Void = { _ in }
    ) async throws -> DNSServer {
        // TCP is bound first, without SO_REUSEPORT: it holds the port for this server alone.
        // Only then do the UDP sockets (SO_REUSEPORT, one per loop) join it. The other order
        // let a UDP socket asked for port 0 share a port with another server's UDP sockets
        // (Linux lets reuseport sockets of one user share a port, even one picked for port
        // 0), and the kernel then split that server's queries between the two. With port 0
        // the UDP port may still be taken by a socket that is not ours: try again, a few times.
        var attempt = 0
        while true {
            do {
                return try await bindOnce(
                    host: host, port: port, group: group, responder: responder, deferredLimit: deferredLimit, limits: limits,
                    onReopen: onReopen)
            } catch let error as BindError where port == 0 && error.transport == "UDP" && attempt < 8 {
                attempt += 1
            }
        }
    }

    private static func bindOnce(
        host: String, port: Int, group: any EventLoopGroup, responder: ResponderBox, deferredLimit: Int, limits: TCPLimits,
        onReopen: @escaping @Sendable (String) -> Void
    ) async throws -> DNSServer {
        let loops = Array(group.makeIterator())
        let wildcard: SocketAddress
        do { wildcard = try SocketAddress(ipAddress: host, port: port) } catch {
            throw BindError("TCP", "\(host):\(port)", reason: "not a numeric IP address")
        }
        let deferred = DeferredReplies(limit: deferredLimit)
        let tcp: any Channel
        do {
            tcp = try await ServerBootstrap(group: group)
                .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .serverChannelOption(ChannelOptions.backlog, value: 256)
                .childChannelInitializer { channel in
                    // TCPLimits: a slot of the process's connections, held until the close.
                    guard limits.connections.hold(channel) else {
                        responder.responder?.admissionTurnedAway(.tcpConnectionLimit)
                        return channel.eventLoop.makeFailedFuture(TCPConnectionLimitReached())
                    }
                    return channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        try sync.addHandler(BackPressureHandler())
                        try sync.addHandler(ByteToMessageHandler(LengthFieldBasedFrameDecoder(lengthFieldBitLength: .twoBytes)))
                        // After the framing: only a whole message counts as a read.
                        try sync.addHandler(IdleStateHandler(readTimeout: limits.idleTimeout))
                        try sync.addHandler(LengthFieldPrepender(lengthFieldBitLength: .twoBytes))
                        try sync.addHandler(StreamHandler(responder: responder, deferred: deferred))
                    }
                }
                .bind(to: wildcard).get()
        } catch {
            await deferred.close()
            throw BindError("TCP", wildcard.endpointText, error)
        }
        let boundPort = tcp.localAddress?.port ?? port
        var sockets: [any Channel] = []
        do {
            for loop in loops {
                sockets.append(try await bindUDP(wildcard.withPort(boundPort), on: loop, responder: responder, deferred: deferred))
            }
        } catch {
            for socket in sockets { try? await socket.close() }
            try? await tcp.close()
            await deferred.close()
            throw BindError("UDP", wildcard.withPort(boundPort).endpointText, error)
        }
        let server = DNSServer(
            address: sockets[0].localAddress!, tcp: tcp, udp: sockets, deferred: deferred, responder: responder, onReopen: onReopen)
        for socket in sockets { server.watch(socket) }
        return server
    }

    /// One UDP socket on `loop`, bound to `address` with SO_REUSEPORT beside the others.
    private static func bindUDP(
        _ address: SocketAddress, on loop: any EventLoop, responder: ResponderBox, deferred: DeferredReplies
    ) async throws -> any Channel {
        try await DatagramBootstrap(group: loop)
            .channelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .channelOption(ChannelOptions.socketOption(.init(rawValue: SO_REUSEPORT)), value: 1)
            // NIO cuts one buffer into a slot per datagram of a vector read; a slot
            // holds the largest query served over UDP and one byte more, so a longer
            // datagram shows as cut (Admission sends it to TCP) instead of as malformed.
            .channelOption(
                ChannelOptions.recvAllocator,
                value: FixedSizeRecvByteBufferAllocator(capacity: (Self.largestUDPQuery + 1) * Self.datagramsPerRead))
            // A receive queue that absorbs a burst (the kernel caps it at
            // net.core.rmem_max): with the default 208 KiB, a flood spread over many
            // sources overflowed every socket's queue and real queries were lost with it.
            .channelOption(ChannelOptions.socketOption(.so_rcvbuf), value: Self.receiveBuffer)
            .channelOption(ChannelOptions.datagramVectorReadMessageCount, value: Self.datagramsPerRead)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(DatagramHandler(responder: responder, deferred: deferred))
                }
            }
            .bind(to: address).get()
    }

    /// When NIO closes `socket` and the server is not closing, a new one takes its place.
    private func watch(_ socket: any Channel) {
        socket.closeFuture.whenComplete { [self] _ in
            guard !udp.withLock({ $0.closing }) else { return }
            Task { await reopen(socket) }
        }
    }

    private func reopen(_ closed: any Channel) async {
        // A failed send reaches no handler (replies are written without a promise, and NIO
        // fires no error for it), so the line says the likely cause.
        let why = "after a send error, as EPERM from a firewall rule or a full conntrack table"
        for attempt in 0..<5 {
            if attempt > 0 { try? await Task.sleep(for: .milliseconds(100 << attempt)) }
            guard !udp.withLock({ $0.closing }) else { return }
            do {
                let socket = try await Self.bindUDP(address, on: closed.eventLoop, responder: responder, deferred: deferred)
                let kept = udp.withLock { state -> Bool in
                    guard !state.closing else { return false }
                    state.sockets.removeAll { $0 === closed }
                    state.sockets.append(socket)
                    return true
                }
                guard kept else {
                    try? await socket.close()
                    return
                }
                watch(socket)
                reopened.add(1, ordering: .relaxed)
                onReopen("UDP socket on \(address.endpointText) closed (\(why)); opened again")
                return
            } catch {
                onReopen("UDP socket on \(address.endpointText) closed (\(why)); cannot open it again: \(error)")
            }
        }
    }

    /// Datagrams read per system call (recvmmsg).
    static let datagramsPerRead = 32

    /// The longest query read over UDP. A longer one is answered TC=1 and read over TCP
    /// (up to 65 535 bytes). Queries are a few hundred bytes; 4 096 is the EDNS buffer size
    /// BIND long advertised, and a read of 32 such slots is 128 KiB.
    public static let largestUDPQuery = 4_096

    /// The UDP receive buffer asked for, as NSD's `so-rcvbuf` and Unbound's: 4 MiB.
    static let receiveBuffer: SocketOptionValue = 4 << 20

    /// Stops gracefully: takes no more queries that need the network, lets the replies under
    /// way go out (each bounded by its upstream time-out), then closes the sockets.
    public func close() async {
        await deferred.close()
        let sockets = udp.withLock { state in
            state.closing = true
            return state.sockets
        }
        for socket in sockets { try? await socket.close() }
        try? await tcp.close()
    }
}

/// Holds the responder a server asks, so servers can be bound before the node that answers
/// exists (a hierarchy needs every node's port before any node can be configured).
public final class ResponderBox: Sendable {
    private let storage: Mutex<(any DNSResponder)?>
    public init(_ responder: (any DNSResponder)? = nil) { storage = Mutex(responder) }
    public var responder: (any DNSResponder)? {
        get { storage.withLock { $0 } }
        set { storage.withLock { $0 = newValue } }
    }
}

/// Encodes a reply for the transport; an unencodable message becomes a bare SERVFAIL.
public enum ReplyEncoder {
    public static func encode(_ reply: Reply, over transport: DNSTransportKind) -> [UInt8]? {
        do {
            switch transport {
            case .tcp: return try reply.message.wire()
            case .udp: return try reply.message.wireForUDP(limit: reply.udpLimit)
            }
        } catch {
            var failure = DNSMessage(header: reply.message.header, questions: reply.message.questions)
            failure.rcode = .serverFailure
            return try? failure.wire()
        }
    }
}

final class DatagramHandler: ChannelInboundHandler {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    let responder: ResponderBox
    let deferred: DeferredReplies
    init(responder: ResponderBox, deferred: DeferredReplies) {
        self.responder = responder
        self.deferred = deferred
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard let responder = responder.responder else { return }
        let query = envelope.data
        let remote = envelope.remoteAddress
        switch Admission.process(query, from: remote.unmapped, over: .udp, to: responder) {
        case .drop:
            return
        case .wire(let bytes):
            context.write(
                wrapOutboundOut(AddressedEnvelope(remoteAddress: remote, data: context.channel.allocator.buffer(bytes: bytes))),
                promise: nil)
        case .messages(let messages):
            guard let bytes = messages.first else { return }
            context.write(
                wrapOutboundOut(AddressedEnvelope(remoteAddress: remote, data: context.channel.allocator.buffer(bytes: bytes))),
                promise: nil)
        case .reply(let reply):
            guard let bytes = ReplyEncoder.encode(reply, over: .udp) else { return }
            // Flushed once per read burst (channelReadComplete), so NIO sends the replies of
            // a burst with one sendmmsg instead of one sendmsg each.
            context.write(
                wrapOutboundOut(AddressedEnvelope(remoteAddress: remote, data: context.channel.allocator.buffer(bytes: bytes))),
                promise: nil)
        case .later(let work):
            let channel = context.channel
            let submitted = deferred.submit {
                guard let reply = await work(), let bytes = ReplyEncoder.encode(reply, over: .udp) else { return }
                channel.writeAndFlush(
                    AddressedEnvelope(remoteAddress: remote, data: channel.allocator.buffer(bytes: bytes)), promise: nil)
            }
            if !submitted { responder.admissionTurnedAway(.overloaded) }
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // ICMP port unreachable and the like on an unconnected UDP socket: nothing to do,
        // and never a reason to stop serving. (A fatal send error closes the socket without
        // passing here; the server then opens another: `DNSServer.watch`.)
    }
}

final class StreamHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let responder: ResponderBox
    let deferred: DeferredReplies
    init(responder: ResponderBox, deferred: DeferredReplies) {
        self.responder = responder
        self.deferred = deferred
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let query = unwrapInboundIn(data)
        guard let responder = responder.responder, let remote = context.remoteAddress else { return }
        switch Admission.process(query, from: remote.unmapped, over: .tcp, to: responder) {
        case .drop:
            return
        case .wire(let bytes):
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
        case .reply(let reply):
            guard let bytes = ReplyEncoder.encode(reply, over: .tcp) else { return }
            context.writeAndFlush(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
        case .messages(let messages):
            for bytes in messages {
                context.write(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: nil)
            }
            context.flush()
        case .later(let work):
            let channel = context.channel
            let submitted = deferred.submit {
                guard let reply = await work(), let bytes = ReplyEncoder.encode(reply, over: .tcp) else { return }
                channel.writeAndFlush(channel.allocator.buffer(bytes: bytes), promise: nil)
            }
            if !submitted { responder.admissionTurnedAway(.overloaded) }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // A broken frame or a reset: this connection ends, the server goes on.
        context.close(promise: nil)
    }
}

extension SocketAddress {
    /// The same address with another port.
    func withPort(_ port: Int) -> SocketAddress {
        var copy = self
        copy.port = port
        return copy
    }
}
