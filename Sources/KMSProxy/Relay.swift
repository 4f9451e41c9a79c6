import KMSCrypto
import NIOCore
import TLSTransport

/// Copies bytes both ways between two channels until both directions have ended.
///
/// Backpressure: each write is awaited before the next read, so a slow side slows the other.
/// Half-close: when one side's input ends, the other side's output is closed (TCP FIN, or
/// TLS close_notify), and the opposite direction keeps flowing until it ends too.
/// `counted(aToB, count)` is told every chunk relayed (for `kms-proxy status`).
enum Relay {
    static func run(
        _ aInbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator, _ aOutbound: NIOAsyncChannelOutboundWriter<ByteBuffer>,
        _ bInbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator, _ bOutbound: NIOAsyncChannelOutboundWriter<ByteBuffer>,
        counted: @escaping @Sendable (_ aToB: Bool, _ bytes: Int) -> Void = { _, _ in }
    ) async {
        let fromA = Handed(aInbound)
        let fromB = Handed(bInbound)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await copy(fromA.iterator, to: bOutbound) { counted(true, $0) } }
            group.addTask { await copy(fromB.iterator, to: aOutbound) { counted(false, $0) } }
        }
    }

    private static func copy(
        _ inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator, to outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>,
        counted: (Int) -> Void
    ) async {
        var iterator = inbound
        do {
            while let bytes = try await iterator.next() {
                counted(bytes.readableBytes)
                try await outbound.write(bytes)
            }
        } catch {}
        outbound.finish()
    }
}

/// An iterator handed to exactly one task, which alone uses it from then on.
private struct Handed: @unchecked Sendable {
    let iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    init(_ iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator) { self.iterator = iterator }
}

/// A TLS channel wrapped for async use, with the future of its handshake.
struct TLSChannel: Sendable {
    let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
    let handshake: EventLoopFuture<TLSEstablished>

    /// Adds the TLS handler and a handshake watcher to a new channel. The handshake's promise
    /// is made here and owned by the watcher, which completes it on every path (established,
    /// error, inactive, or removed with a channel that never connected), so none can leak.
    static func wrap(_ channel: any Channel, connection: TLSConnection, isClient: Bool) throws -> TLSChannel {
        let promise = channel.eventLoop.makePromise(of: TLSEstablished.self)
        let sync = channel.pipeline.syncOperations
        try sync.addHandler(TLSHandler(connection: connection, isClient: isClient))
        try sync.addHandler(HandshakeWatcher(promise: promise))
        return TLSChannel(
            channel: try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true)),
            handshake: promise.futureResult)
    }
}

/// Turns the TLS handler's `TLSEstablished` event (or its failure) into a future.
final class HandshakeWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    let promise: EventLoopPromise<TLSEstablished>

    init(promise: EventLoopPromise<TLSEstablished>) { self.promise = promise }

    /// A channel whose connect failed is closed without ever becoming active: its handlers are
    /// removed, and the handshake has failed. (Completing a completed promise does nothing.)
    func handlerRemoved(context: ChannelHandlerContext) {
        promise.fail(TLSChannelError(reason: "the connection closed before the TLS handshake finished"))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let established = event as? TLSEstablished { promise.succeed(established) }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(TLSChannelError(reason: "connection closed before the TLS handshake finished"))
        context.fireChannelInactive()
    }
}
