public import NIOCore
import NIOPosix
import Synchronization

/// A UDP relay on loopback in front of a server that loses the first `dropping` datagrams
/// clients send it: a lossy network, for the code that must survive one. Replies come back
/// to whoever sent the query with that ID. Every client datagram is kept, dropped or not.
public final class LossyRelay: Sendable {
    /// Where clients send: the relay's own address.
    public let address: SocketAddress
    private let front: any Channel
    private let back: any Channel
    private let state: Shared

    final class Shared: Sendable {
        let value: Mutex<State>
        init(_ state: State) { value = Mutex(state) }
        func withLockedValue<Result>(_ body: (inout State) -> Result) -> Result { value.withLock { body(&$0) } }
    }

    struct State {
        var toDrop: Int
        var seen: [[UInt8]] = []
        var dropped = 0
        var clients: [UInt16: SocketAddress] = [:]
        var front: (any Channel)?
    }

    private init(address: SocketAddress, front: any Channel, back: any Channel, state: Shared) {
        self.address = address
        self.front = front
        self.back = back
        self.state = state
    }

    /// Relays to `server`, losing the first `dropping` datagrams from clients.
    public static func start(to server: SocketAddress, dropping: Int) async throws -> LossyRelay {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let state = Shared(State(toDrop: dropping))
        let back = try await DatagramBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Back(state: state)) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        let front = try await DatagramBootstrap(group: loop)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Front(state: state, back: back, server: server))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        state.withLockedValue { $0.front = front }
        return LossyRelay(address: front.localAddress!, front: front, back: back, state: state)
    }

    /// Every datagram clients sent, in order, the lost ones included.
    public var seen: [[UInt8]] { state.withLockedValue { $0.seen } }
    /// How many of them were lost.
    public var dropped: Int { state.withLockedValue { $0.dropped } }

    public func close() async {
        try? await front.close()
        try? await back.close()
    }

    private final class Front: ChannelInboundHandler, Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let state: Shared
        let back: any Channel
        let server: SocketAddress
        init(state: Shared, back: any Channel, server: SocketAddress) {
            self.state = state
            self.back = back
            self.server = server
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            let bytes = Array(envelope.data.readableBytesView)
            let forward = state.withLockedValue { state -> Bool in
                state.seen.append(bytes)
                if state.toDrop > 0 {
                    state.toDrop -= 1
                    state.dropped += 1
                    return false
                }
                if bytes.count >= 2 { state.clients[UInt16(bytes[0]) << 8 | UInt16(bytes[1])] = envelope.remoteAddress }
                return true
            }
            if forward { back.writeAndFlush(AddressedEnvelope(remoteAddress: server, data: envelope.data), promise: nil) }
        }
    }

    private final class Back: ChannelInboundHandler, Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let state: Shared
        init(state: Shared) { self.state = state }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            guard let id = envelope.data.getInteger(at: envelope.data.readerIndex, as: UInt16.self) else { return }
            let (client, front) = state.withLockedValue { ($0.clients[id], $0.front) }
            guard let client, let front else { return }
            front.writeAndFlush(AddressedEnvelope(remoteAddress: client, data: envelope.data), promise: nil)
        }
    }
}
