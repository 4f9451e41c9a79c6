public import NIOCore
import NIOPosix

/// Sends raw bytes over UDP and waits for one datagram back: for packets a DNS library would
/// refuse to build (truncated, looping, not DNS at all).
public enum RawUDP {
    public static func exchange(
        _ bytes: [UInt8], with server: SocketAddress, from source: String = "127.0.0.1", timeout: TimeAmount = .seconds(5)
    ) async throws -> [UInt8]? {
        let group = MultiThreadedEventLoopGroup.singleton
        let promise = group.next().makePromise(of: [UInt8]?.self)
        let channel = try await DatagramBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Catcher(promise: promise))
                }
            }
            .bind(host: source, port: 0).get()
        defer { channel.close(promise: nil) }
        let timer = group.next().scheduleTask(in: timeout) { promise.succeed(nil) }
        defer { timer.cancel() }
        try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: server, data: channel.allocator.buffer(bytes: bytes)))
        return try await promise.futureResult.get()
    }

    private final class Catcher: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let promise: EventLoopPromise<[UInt8]?>
        init(promise: EventLoopPromise<[UInt8]?>) { self.promise = promise }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            promise.succeed(Array(unwrapInboundIn(data).data.readableBytesView))
        }
    }
}
