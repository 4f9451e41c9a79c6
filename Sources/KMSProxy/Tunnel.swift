import MetricsHTTP
import DNSTransport
import DNSWire
import Foundation
import KMSCrypto
import KMSProtocol
import LogFormat
import Logging
import NIOCore
import NIOPosix
import Synchronization
import TLSTransport

/// A tunnel session, for `kms-proxy status`.
public struct Session: Codable, Sendable {
    public let id: Int
    public let direction: String
    public let peer: String
    public let local: String
    public let cipher: String
    public let started: Double
    /// The peer's key the tunnel is pinned to (or the caller's key, checked), in wire form.
    public var key: String = ""
    /// How long the TCP connect and TLS handshake took, in milliseconds.
    public var handshakeMilliseconds: Int = 0
    /// Bytes carried to the peer and from it.
    public var bytesSent: Int = 0
    public var bytesReceived: Int = 0
    /// When bytes last went either way (seconds since the epoch).
    public var lastActivity: Double = 0
}

/// A live session's counters, updated by its relay.
final class Activity: Sendable {
    private let sent = Atomic<Int>(0)
    private let received = Atomic<Int>(0)
    private let last = Atomic<Int64>(0)

    func count(sent isSent: Bool, _ bytes: Int) {
        if isSent {
            sent.add(bytes, ordering: .relaxed)
            RelayedBytes.sent.increment(by: bytes)
        } else {
            received.add(bytes, ordering: .relaxed)
            RelayedBytes.received.increment(by: bytes)
        }
        last.store(Int64(Date().timeIntervalSince1970 * 1000), ordering: .relaxed)
    }

    func fill(_ session: inout Session) {
        session.bytesSent = sent.load(ordering: .relaxed)
        session.bytesReceived = received.load(ordering: .relaxed)
        let last = last.load(ordering: .relaxed)
        session.lastActivity = last == 0 ? session.started : Double(last) / 1000
    }
}

/// Live sessions, outgoing and incoming, with the peer's verified key and the channels that
/// carry them, so that a withdrawn key can close them (`KeyWatch`).
final class Sessions: Sendable {
    private struct Live {
        let session: Session
        let peerName: DomainName
        let key: PublicKey
        let channels: [any Channel]
        let activity: Activity
    }

    private let table = Mutex<(next: Int, live: [Int: Live])>((1, [:]))

    /// Opens a session; its relay counts into the returned activity.
    func open(
        direction: String, peer: String, local: String, cipher: String, peerName: DomainName, key: PublicKey, channels: [any Channel],
        handshakeMilliseconds: Int = 0
    ) -> (id: Int, activity: Activity) {
        table.withLock { state in
            let id = state.next
            state.next += 1
            var session = Session(id: id, direction: direction, peer: peer, local: local, cipher: cipher, started: Date().timeIntervalSince1970)
            session.key = KeyField.encode(key)
            session.handshakeMilliseconds = handshakeMilliseconds
            let activity = Activity()
            state.live[id] = Live(session: session, peerName: peerName, key: key, channels: channels, activity: activity)
            return (id, activity)
        }
    }

    func close(_ id: Int) { _ = table.withLock { $0.live.removeValue(forKey: id) } }

    /// Closes every session with `peer` whose key is not `keep` (every one, with nil); returns
    /// how many. Each session's relay then ends and removes it.
    func close(peer: DomainName, keeping keep: PublicKey?) -> Int {
        let doomed = table.withLock { state in state.live.values.filter { $0.peerName == peer && $0.key != keep } }
        for channel in doomed.flatMap(\.channels) { channel.close(promise: nil) }
        return doomed.count
    }

    var all: [Session] {
        table.withLock { state in
            state.live.values.map { live in
                var session = live.session
                live.activity.fill(&session)
                return session
            }.sorted { $0.id < $1.id }
        }
    }
}

/// The sending side: accepts the application's connections to intercept addresses, opens
/// TLS 1.3 to the peer's receiving endpoint pinned to the KMS-verified key, and relays.
final class TunnelSender: Sendable {
    /// How an accepted connection says which peer it is for.
    enum Destination: Sendable {
        /// The accepted socket's local address is an intercept address of one of the pools
        /// (IPv4 and IPv6; first and third embodiments).
        case intercept([InterceptPool])
        /// The kernel redirected it; SO_ORIGINAL_DST holds the peer's real address (first embodiment, kernel).
        case original(KernelDiversion)
    }

    let destination: Destination
    let contexts: [Identity: [TLSCipher: TLSContext]]
    let tunnelPort: Int
    let timeout: TimeAmount
    let connections: TCPConnectionBudget
    let sessions: Sessions
    let logger: Logger
    /// Lines a packet or a connection from outside can cause, at most 5 a second each.
    let warnings: LogLimiter
    let metrics = TunnelMetrics()

    init(
        destination: Destination, contexts: [Identity: [TLSCipher: TLSContext]], tunnelPort: Int, timeout: TimeAmount, sessions: Sessions,
        logger: Logger, connections: TCPConnectionBudget = .process
    ) {
        self.destination = destination
        self.contexts = contexts
        self.tunnelPort = tunnelPort
        self.timeout = timeout
        self.connections = connections
        self.sessions = sessions
        self.logger = logger
        warnings = LogLimiter(logger)
    }

    /// Listens on `host:port` and serves connections until the returned channel is closed.
    ///
    /// An IPv6 wildcard (`::`) listens with IPV6_V6ONLY, so it coexists with `0.0.0.0` on the
    /// same port. Every socket is bound with IP_FREEBIND / IPV6_FREEBIND, so `intercept-bind
    /// each` needs no pool address assigned to an interface: a local route for the pool's
    /// prefix (`ip route add local 10.99.0.0/24 dev lo`, `ip -6 route add local fd00:99::/120
    /// dev lo`) is enough to receive on them.
    func listen(host: String, port: Int, group: any EventLoopGroup) async throws -> any Channel {
        let isIPv6 = host.contains(":")
        let freebind = isIPv6
            ? ChannelOptions.Types.SocketOption(level: .init(rawValue: CInt(IPPROTO_IPV6)), name: .init(rawValue: Self.ipv6FreeBind))
            : ChannelOptions.Types.SocketOption(level: .init(rawValue: CInt(IPPROTO_IP)), name: .init(rawValue: Self.ipFreeBind))
        var bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(freebind, value: 1)
        if isIPv6 {
            bootstrap = bootstrap.serverChannelOption(
                ChannelOptions.Types.SocketOption(level: .init(rawValue: CInt(IPPROTO_IPV6)), name: .ipv6_v6only), value: 1)
        }
        let server = try await bootstrap
            .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
            .bind(to: try SocketAddress(ipAddress: host, port: port)) { [connections] channel -> EventLoopFuture<NIOAsyncChannel<ByteBuffer, ByteBuffer>> in
                // The process's TCP budget (`TCPLimits`), as on the tunnel port: an encryption
                // node's intercept addresses face its clients' network (third embodiment).
                guard connections.hold(channel) else { return channel.eventLoop.makeFailedFuture(TCPConnectionLimitReached()) }
                return channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                        wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                }
            }
        let listener = server.channel
        Task {
            try? await server.executeThenClose { connections in
                try await withThrowingDiscardingTaskGroup { group in
                    for try await connection in connections {
                        group.addTask { await self.carry(connection, group: listener.eventLoop) }
                    }
                }
            }
        }
        return listener
    }

    /// Which peer an accepted connection is for: the address and port the application dialled,
    /// its mapping, and where to open the tunnel (an intercept's peer's first address; for a
    /// diverted connection, the very address the application dialled, of its family).
    private func resolveDestination(_ channel: any Channel) async -> (IPAddress, Int, Mapping, peer: IPAddress)? {
        let now = Date().timeIntervalSince1970
        switch destination {
        case .intercept(let pools):
            guard let local = channel.localAddress, let ip = local.ipAddress.flatMap({ IPAddress($0) }), let port = local.port else {
                return nil
            }
            // Opened in exactly one pool (a lazy compactMap(...).first would open it twice).
            for pool in pools {
                guard let mapping = pool.open(ip, now: now) else { continue }
                guard let peer = mapping.peerAddresses.first else {
                    pool.close(ip)
                    return nil
                }
                return (ip, port, mapping, peer)
            }
            return nil
        case .original(let kernel):
            guard let provider = channel as? any SocketOptionProvider, let local = channel.localAddress else { return nil }
            let ip: IPAddress
            let port: Int
            if case .v6 = local {
                guard let original: sockaddr_in6 = try? await provider.unsafeGetSocketOption(
                    level: SocketOptionLevel(IPPROTO_IPV6), name: SocketOptionName(Self.soOriginalDestination)
                ).get() else { return nil }
                ip = IPAddress(bytes: withUnsafeBytes(of: original.sin6_addr) { Array($0) })!
                port = Int(UInt16(bigEndian: original.sin6_port))
            } else {
                guard let original: sockaddr_in = try? await provider.unsafeGetSocketOption(
                    level: SocketOptionLevel(SOL_IP), name: SocketOptionName(Self.soOriginalDestination)
                ).get() else { return nil }
                ip = IPAddress(bytes: withUnsafeBytes(of: original.sin_addr) { Array($0) })!
                port = Int(UInt16(bigEndian: original.sin_port))
            }
            guard let mapping = kernel.mapping(for: ip, now: now) else { return nil }
            return (ip, port, mapping, ip)
        }
    }

    /// SO_ORIGINAL_DST, from <linux/netfilter_ipv4.h> (IP6T_SO_ORIGINAL_DST has the same number).
    static let soOriginalDestination: Int32 = 80
    /// IP_FREEBIND and IPV6_FREEBIND, from <linux/in.h> and <linux/in6.h>.
    static let ipFreeBind: CInt = 15
    static let ipv6FreeBind: CInt = 78

    private func carry(_ application: NIOAsyncChannel<ByteBuffer, ByteBuffer>, group: any EventLoop) async {
        guard let (ip, port, mapping, peerAddress) = await resolveDestination(application.channel) else {
            warnings.notice("closed a connection to an address that maps to no peer", metadata: ["local": "\(application.channel.localAddress.map { "\($0)" } ?? "-")"])
            try? await application.channel.close()
            return
        }
        defer { if case .intercept(let pools) = destination { for pool in pools { pool.close(ip) } } }
        guard let context = contexts[mapping.settings.identity]?[mapping.settings.cipher] else {
            try? await application.channel.close()
            return
        }
        do {
            let peerName = mapping.peer.text
            let pinned = mapping.key
            let connecting = ContinuousClock.now
            let tunnel = try await ClientBootstrap(group: group)
                .connectTimeout(timeout)
                .channelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
                .connect(to: try SocketAddress(ipAddress: peerAddress.description, port: tunnelPort)) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let connection = try TLSConnection(context: context, pinnedKey: pinned, serverName: peerName)
                        return try TLSChannel.wrap(channel, connection: connection, isClient: true)
                    }
                }
            let deadline = tunnel.channel.channel.eventLoop.scheduleTask(in: timeout) {
                let channel = tunnel.channel.channel
                channel.pipeline.fireErrorCaught(TLSChannelError(reason: "TLS handshake with \(mapping.peer) timed out"))
                channel.close(promise: nil)
            }
            let handshake: TLSEstablished
            do { handshake = try await tunnel.handshake.get() } catch {
                deadline.cancel()
                try? await tunnel.channel.channel.close()
                throw error
            }
            deadline.cancel()
            let took = ContinuousClock.now - connecting
            metrics.opened.increment()
            metrics.setupTime.record(took)
            let (session, activity) = sessions.open(
                direction: "out", peer: "\(mapping.peer) \(peerAddress):\(tunnelPort)", local: "\(ip):\(port)",
                cipher: handshake.cipherSuite ?? "?", peerName: mapping.peer, key: pinned,
                channels: [application.channel, tunnel.channel.channel],
                handshakeMilliseconds: Int(took.components.seconds * 1000 + took.components.attoseconds / 1_000_000_000_000_000))
            defer { sessions.close(session) }
            logger.info("tunnel open", metadata: ["peer": "\(mapping.peer)", "intercept": "\(ip):\(port)", "cipher": "\(handshake.cipherSuite ?? "?")"])
            try await application.executeThenClose { appIn, appOut in
                try await tunnel.channel.executeThenClose { tunnelIn, tunnelOut in
                    try await tunnelOut.write(ByteBuffer(bytes: TunnelHeader.line(port: port)))
                    await Relay.run(appIn.makeAsyncIterator(), appOut, tunnelIn.makeAsyncIterator(), tunnelOut) { toPeer, bytes in
                        activity.count(sent: toPeer, bytes)
                    }
                }
            }
        } catch {
            metrics.failed.increment()
            warnings.warning("tunnel refused: the peer could not be reached with its verified key", metadata: ["peer": "\(mapping.peer)", "reason": "\(error)"])
            try? await application.channel.close()
        }
    }
}
