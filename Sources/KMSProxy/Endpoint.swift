import DNSTransport
import DNSWire
import Foundation
import KMSClient
import KMSCrypto
import KMSProtocol
import LogFormat
import Logging
import NIOCore
import NIOPosix
import TLSTransport

/// The receiving side: TLS 1.3 with this host's key, a client certificate required. The caller
/// is let in only when the key in its certificate equals the key the KMS hierarchy vouches for
/// the name in it, its name is in the inbound CUG table, and the port it asks for is allowed.
final class ReceivingEndpoint: Sendable {
    let context: TLSContext
    let fetcher: KeyFetcher
    /// The inbound table in force; replaced whole on reload (SIGHUP).
    let inbound: Swappable<InboundTable>
    let forward: IPAddress
    let timeout: TimeAmount
    let connections: TCPConnectionBudget
    let sessions: Sessions
    let logger: Logger
    /// Lines a packet or a connection from outside can cause, at most 5 a second each.
    let warnings: LogLimiter
    let metrics = TunnelMetrics()

    init(
        context: TLSContext, fetcher: KeyFetcher, inbound: InboundTable, forward: IPAddress, timeout: TimeAmount, sessions: Sessions,
        logger: Logger, connections: TCPConnectionBudget = .process
    ) {
        self.context = context
        self.fetcher = fetcher
        self.inbound = Swappable(inbound)
        self.forward = forward
        self.timeout = timeout
        self.connections = connections
        self.sessions = sessions
        self.logger = logger
        warnings = LogLimiter(logger)
    }

    func listen(host: String, port: Int, group: any EventLoopGroup) async throws -> any Channel {
        let context = self.context
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .bind(to: try SocketAddress(ipAddress: host, port: port)) { [connections] channel -> EventLoopFuture<TLSChannel> in
                // The process's TCP budget (`TCPLimits`): callers that connect and wait cannot
                // take every file descriptor. One past it is closed at accept.
                guard connections.hold(channel) else { return channel.eventLoop.makeFailedFuture(TCPConnectionLimitReached()) }
                return channel.eventLoop.makeCompletedFuture {
                    try TLSChannel.wrap(channel, connection: try TLSConnection(context: context), isClient: false)
                }
            }
        let listener = server.channel
        Task {
            try? await server.executeThenClose { connections in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in connections {
                        group.addTask { await self.admit(connection, group: listener.eventLoop) }
                    }
                }
            }
        }
        return listener
    }

    /// One caller, top to bottom: the TLS handshake; the header line (`kms1-tunnel PORT`, or
    /// `kms1-ping`); 1. its key is the one the hierarchy vouches for its name; 2. its name is
    /// in the inbound table; 3. the port is allowed. A tunnel then relays to `forward:PORT`. A
    /// ping is answered with its verdict, `kms1-pong ok ports=...` or `kms1-pong refused:
    /// REASON`, and closed; a refused tunnel is closed without a word.
    private func admit(_ caller: TLSChannel, group: any EventLoop) async {
        let remote = caller.channel.channel.remoteAddress.map { "\($0)" } ?? "-"
        do {
            // The handshake and the header line, together, within the time-out: a caller that
            // stops before its header holds nothing for longer.
            let deadline = caller.channel.channel.eventLoop.scheduleTask(in: timeout) { caller.channel.channel.close(promise: nil) }
            defer { deadline.cancel() }
            let handshake = try await caller.handshake.get()
            try await caller.channel.executeThenClose { tunnelIn, tunnelOut in
                var iterator = tunnelIn.makeAsyncIterator()
                var header: [UInt8] = []
                var rest = ByteBuffer()
                while !header.contains(0x0A) {
                    guard header.count <= TunnelHeader.maximumLength, let chunk = try await iterator.next() else {
                        throw Refused("the caller sent no tunnel header")
                    }
                    header += chunk.readableBytesView
                }
                deadline.cancel()
                let newline = header.firstIndex(of: 0x0A)!
                rest.writeBytes(header[(newline + 1)...])
                let line = Array(header[..<newline])
                let isPing = TunnelHeader.isPing(line)
                let port = TunnelHeader.parse(line)
                guard isPing || port != nil else { throw Refused("the caller sent a malformed tunnel header") }
                do {
                    // 1. The caller is who its certificate says, by the KMS hierarchy.
                    guard let nameText = handshake.peerName, let name = try? DomainName(canonical: nameText.lowercased()),
                        let presented = handshake.peerKey
                    else { throw Refused("the client certificate names no host") }
                    let vouched: FetchResult
                    do { vouched = try await fetcher.fetch(name) } catch let error as FetchError {
                        throw Refused("no verified key for \(name): \(error.message)")
                    }
                    guard vouched.key == presented else {
                        throw Refused("\(name) presented a key that is not the one the KMS hierarchy vouches for")
                    }
                    // 2. The caller is in this host's inbound group.
                    guard let ports = inbound.value.ports(for: name) else { throw Refused("\(name) is not in the inbound CUG table") }
                    if isPing {
                        try await tunnelOut.write(ByteBuffer(bytes: TunnelHeader.pong(ok: true, "ports=\(ports.sorted().map(String.init).joined(separator: ","))")))
                        logger.info("ping answered", metadata: ["caller": "\(name)"])
                        return
                    }
                    // 3. The port it asks for is allowed.
                    guard let port, ports.contains(port) else { throw Refused("\(name) may not reach port \(port ?? 0) (allowed: \(ports.sorted()))") }
                    try await relay(from: name, key: presented, remote: remote, port: port, cipher: handshake.cipherSuite,
                                    caller: caller, iterator: iterator, rest: rest, tunnelOut: tunnelOut, group: group)
                } catch let refused as Refused where isPing {
                    try await tunnelOut.write(ByteBuffer(bytes: TunnelHeader.pong(ok: false, refused.description)))
                    throw refused
                }
            }
        } catch {
            metrics.inboundRefused.increment()
            warnings.warning("inbound refused", metadata: ["remote": "\(remote)", "reason": "\(error)"])
            try? await caller.channel.channel.close()
        }
    }

    /// An admitted tunnel: connect to `forward:port` and relay both ways.
    private func relay(
        from name: DomainName, key: PublicKey, remote: String, port: Int, cipher: String?, caller: TLSChannel,
        iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator, rest: ByteBuffer,
        tunnelOut: NIOAsyncChannelOutboundWriter<ByteBuffer>, group: any EventLoop
    ) async throws {
        let local = try await ClientBootstrap(group: group)
            .connectTimeout(timeout)
            .channelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .connect(to: try SocketAddress(ipAddress: forward.description, port: port)) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                        wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                }
            }
        metrics.inboundAccepted.increment()
        let (session, activity) = sessions.open(
            direction: "in", peer: "\(name) \(remote)", local: "\(forward):\(port)", cipher: cipher ?? "?",
            peerName: name, key: key, channels: [caller.channel.channel, local.channel])
        defer { sessions.close(session) }
        logger.info("inbound tunnel", metadata: ["caller": "\(name)", "port": "\(port)", "cipher": "\(cipher ?? "?")"])
        try await local.executeThenClose { localIn, localOut in
            if rest.readableBytes > 0 {
                activity.count(sent: false, rest.readableBytes)
                try await localOut.write(rest)
            }
            await Relay.run(iterator, tunnelOut, localIn.makeAsyncIterator(), localOut) { fromPeer, bytes in
                activity.count(sent: !fromPeer, bytes)
            }
        }
    }

    struct Refused: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }
}
