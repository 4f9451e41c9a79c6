public import KMSCrypto
public import NIOCore

/// What the handler reports once the handshake is done (a user inbound event).
public struct TLSEstablished: Sendable {
    public let peerKey: PublicKey?
    public let peerName: String?
    public let cipherSuite: String?
}

/// Why a TLS channel closed before or during use.
public struct TLSChannelError: Error, Sendable, CustomStringConvertible {
    public let reason: String
    public init(reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// TLS over a NIO channel, driving a `TLSConnection` (OpenSSL, memory buffers):
/// ciphertext in → plaintext up; plaintext down → ciphertext out.
///
/// States: handshaking (writes are held) → established (`TLSEstablished` is fired, held writes
/// go out) → closed. A half-close of the output sends close_notify; the peer's close_notify
/// arrives as `ChannelEvent.inputClosed`, so relays can half-close end to end.
public final class TLSHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private enum State { case handshaking, established, closed }

    private let connection: TLSConnection
    private let isClient: Bool
    private var state = State.handshaking
    private var heldWrites: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    private var heldOutputClose: EventLoopPromise<Void>??

    public init(connection: TLSConnection, isClient: Bool) {
        self.connection = connection
        self.isClient = isClient
    }

    public func channelActive(context: ChannelHandlerContext) {
        if isClient { advanceHandshake(context: context) }
        context.fireChannelActive()
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if isClient && context.channel.isActive { advanceHandshake(context: context) }
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        guard state != .closed else { return }
        connection.feed(bytes.readableBytesView)
        if state == .handshaking { advanceHandshake(context: context) }
        if state == .established { readPlaintext(context: context) }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        if state == .handshaking {
            state = .closed
            context.fireErrorCaught(TLSChannelError(reason: "connection closed during the TLS handshake"))
        }
        state = .closed
        failHeld(TLSChannelError(reason: "connection closed"))
        context.fireChannelInactive()
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let bytes = unwrapOutboundIn(data)
        switch state {
        case .handshaking:
            heldWrites.append((bytes, promise))
        case .established:
            do {
                try connection.write(bytes.readableBytesView)
                sendOutbound(context: context, promise: promise)
            } catch {
                promise?.fail(error)
                fail(context: context, error)
            }
        case .closed:
            promise?.fail(ChannelError.ioOnClosedChannel)
        }
    }

    public func flush(context: ChannelHandlerContext) {
        context.flush()
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        switch (mode, state) {
        case (.output, .handshaking):
            heldOutputClose = .some(promise)
        case (.output, .established):
            connection.shutdown()
            sendOutbound(context: context, promise: nil)
            context.flush()
            context.close(mode: .output, promise: promise)
        case (_, .established):
            state = .closed
            connection.shutdown()
            sendOutbound(context: context, promise: nil)
            context.flush()
            context.close(mode: mode, promise: promise)
        default:
            state = .closed
            context.close(mode: mode, promise: promise)
        }
    }

    private func advanceHandshake(context: ChannelHandlerContext) {
        do {
            let progress = try connection.handshake()
            sendOutbound(context: context, promise: nil)
            context.flush()
            guard progress == .established else { return }
            state = .established
            context.fireUserInboundEventTriggered(
                TLSEstablished(peerKey: connection.peerKey, peerName: connection.peerName, cipherSuite: connection.cipherSuite))
            let held = heldWrites
            heldWrites = []
            for (bytes, promise) in held { write(context: context, data: wrapOutboundOut(bytes), promise: promise) }
            context.flush()
            if let outputClose = heldOutputClose {
                heldOutputClose = nil
                close(context: context, mode: .output, promise: outputClose)
            }
        } catch {
            sendOutbound(context: context, promise: nil)  // the alert, if any
            context.flush()
            fail(context: context, error)
        }
    }

    private func readPlaintext(context: ChannelHandlerContext) {
        do {
            switch try connection.read() {
            case .data(let bytes):
                context.fireChannelRead(wrapInboundOut(context.channel.allocator.buffer(bytes: bytes)))
                context.fireChannelReadComplete()
                // close_notify may have come in the same read.
                if case .closed = try connection.read() { context.fireUserInboundEventTriggered(ChannelEvent.inputClosed) }
            case .closed:
                context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
            case .wantsInput:
                break
            }
            sendOutbound(context: context, promise: nil)  // e.g. key updates
        } catch {
            fail(context: context, error)
        }
    }

    private func sendOutbound(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        let bytes = connection.takeOutbound()
        if bytes.isEmpty {
            promise?.succeed(())
        } else {
            context.write(wrapOutboundOut(context.channel.allocator.buffer(bytes: bytes)), promise: promise)
        }
    }

    private func fail(context: ChannelHandlerContext, _ error: any Error) {
        guard state != .closed else { return }
        state = .closed
        failHeld(error)
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    private func failHeld(_ error: any Error) {
        let held = heldWrites
        heldWrites = []
        for (_, promise) in held { promise?.fail(error) }
        if let outputClose = heldOutputClose {
            heldOutputClose = nil
            outputClose?.fail(error)
        }
    }
}
