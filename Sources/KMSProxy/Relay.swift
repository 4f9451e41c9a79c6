import NIOCore
import TLSTransport

/// Copies bytes both ways between two channels until both directions have ended.
///
/// Backpressure: each write is awaited before the next read, so a slow side slows the other.
/// Half-close: when one side's input ends, the other side's output is closed (TCP FIN, or
/// TLS close_notify), and the opposite direction keeps flowing until it ends too.
enum Relay {
    static func run(
        _ aInbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator, _ aOutbound: NIOAsyncChannelOutboundWriter<ByteBuffer>,
        _ bInbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator, _ bOutbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    ) async {
        let fromA = Handed(aInbound)
        let fromB = Handed(bInbound)
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await copy(fromA.iterator, to: bOutbound) }
            group.addTask { await copy(fromB.iterator, to: aOutbound) }
        }
    }

    private static func copy(
        _ inbound: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator, to outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>
    ) async {
        var iterator = inbound
        do {
            while let bytes = try await iterator.next() { try await outbound.write(bytes) }
        } catch {}
        outbound.finish()
    }
}

/// An iterator handed to exactly one task, which alone uses it from then on.
private struct Handed: @unchecked Sendable {
    let iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    init(_ iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator) { self.iterator = iterator }
}

/// Turns the TLS handler's `TLSEstablished` event (or its failure) into a future.
final class HandshakeWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    let promise: EventLoopPromise<TLSEstablished>

    init(promise: EventLoopPromise<TLSEstablished>) { self.promise = promise }

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
