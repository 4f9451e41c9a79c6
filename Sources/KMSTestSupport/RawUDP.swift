public import NIOCore
import NIOPosix

/// Sends raw bytes over UDP and waits for what comes back: for packets a DNS library would
/// refuse to build (truncated, looping, not DNS at all).
public enum RawUDP {
    /// Sends `bytes` and returns the first datagram back, or nil after `timeout`.
    public static func exchange(
        _ bytes: [UInt8], with server: SocketAddress, from source: String = "127.0.0.1", timeout: TimeAmount = .seconds(5)
    ) async throws -> [UInt8]? {
        try await collect([bytes], with: server, from: source, timeout: timeout) { _ in true }?.last
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
        let id = Array(barrier.prefix(2))
        return try await collect(packets + [barrier], with: server, from: source, timeout: timeout) { $0.prefix(2).elementsEqual(id) }
            .map { (replies: $0.before, barrier: $0.last) }
    }

    /// Sends `packets` from one socket and gathers the datagrams back until one `isLast`.
    private static func collect(
        _ packets: [[UInt8]], with server: SocketAddress, from source: String, timeout: TimeAmount,
        isLast: @escaping @Sendable ([UInt8]) -> Bool
    ) async throws -> (before: [[UInt8]], last: [UInt8])? {
        let group = MultiThreadedEventLoopGroup.singleton
        let promise = group.next().makePromise(of: ([[UInt8]], [UInt8])?.self)
        let channel = try await DatagramBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(Collector(promise: promise, isLast: isLast))
                }
            }
            .bind(host: source, port: 0).get()
        defer { channel.close(promise: nil) }
        let timer = group.next().scheduleTask(in: timeout) { promise.succeed(nil) }
        defer { timer.cancel() }
        for packet in packets.dropLast() {
            channel.write(AddressedEnvelope(remoteAddress: server, data: channel.allocator.buffer(bytes: packet)), promise: nil)
        }
        if let last = packets.last {
            try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: server, data: channel.allocator.buffer(bytes: last)))
        }
        return try await promise.futureResult.get().map { (before: $0.0, last: $0.1) }
    }

    private final class Collector: ChannelInboundHandler {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let promise: EventLoopPromise<([[UInt8]], [UInt8])?>
        let isLast: @Sendable ([UInt8]) -> Bool
        var before: [[UInt8]] = []
        init(promise: EventLoopPromise<([[UInt8]], [UInt8])?>, isLast: @escaping @Sendable ([UInt8]) -> Bool) {
            self.promise = promise
            self.isLast = isLast
        }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = Array(unwrapInboundIn(data).data.readableBytesView)
            if isLast(bytes) {
                promise.succeed((before, bytes))
            } else {
                before.append(bytes)
            }
        }
    }
}
