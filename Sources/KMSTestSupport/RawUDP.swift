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

    /// Sends `packets` in order from one socket, then `barrier`, and returns every datagram
    /// that came back before the barrier's reply (matched by its ID), and that reply; nil if it
    /// never came. A server reads one client socket's datagrams in order, so whatever it
    /// answered to `packets` without waiting for the network has arrived by then, and what has
    /// not was dropped: no time-out decides it.
    public static func exchange(
        _ packets: [[UInt8]], thenBarrier barrier: [UInt8], with server: SocketAddress, from source: String = "127.0.0.1",
        timeout: TimeAmount = .seconds(5)
    ) async throws -> (replies: [[UInt8]], barrier: [UInt8])? {
        precondition(barrier.count >= 2, "the barrier needs an ID")
        let group = MultiThreadedEventLoopGroup.singleton
        let promise = group.next().makePromise(of: ([[UInt8]], [UInt8])?.self)
        let id = barrier.prefix(2)
        let channel = try await DatagramBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Collector(promise: promise, barrierID: Array(id)))
                }
            }
            .bind(host: source, port: 0).get()
        defer { channel.close(promise: nil) }
        let timer = group.next().scheduleTask(in: timeout) { promise.succeed(nil) }
        defer { timer.cancel() }
        for packet in packets + [barrier] {
            channel.write(AddressedEnvelope(remoteAddress: server, data: channel.allocator.buffer(bytes: packet)), promise: nil)
        }
        channel.flush()
        return try await promise.futureResult.get().map { (replies: $0.0, barrier: $0.1) }
    }

    private final class Collector: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let promise: EventLoopPromise<([[UInt8]], [UInt8])?>
        let barrierID: [UInt8]
        var replies: [[UInt8]] = []
        init(promise: EventLoopPromise<([[UInt8]], [UInt8])?>, barrierID: [UInt8]) {
            self.promise = promise
            self.barrierID = barrierID
        }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = Array(unwrapInboundIn(data).data.readableBytesView)
            if bytes.prefix(2).elementsEqual(barrierID) {
                promise.succeed((replies, bytes))
            } else {
                replies.append(bytes)
            }
        }
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
