public import Foundation
public import NIOCore
import NIOExtras
import NIOPosix

/// A local administration channel: a Unix-domain socket (mode 0600, so only its owner may use
/// it) that answers one JSON object per line with one JSON object per line.
public enum ControlSocket {
    /// Serves `path`, replacing a stale socket file. `handle` gets each request line and returns
    /// the reply; it runs off the event loop, so it may block (a durable store write).
    public static func serve(
        at path: String, group: any EventLoopGroup, handle: @escaping @Sendable (Data) async -> Data
    ) async throws -> any Channel {
        try? FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        unlink(path)
        let channel = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineBasedFrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(RequestHandler(handle: handle))
                }
            }
            .bind(unixDomainSocketPath: path).get()
        chmod(path, 0o600)
        return channel
    }

    /// Sends one request line to `path` and returns the reply line.
    public static func send(_ request: Data, to path: String, group: any EventLoopGroup) async throws -> Data {
        let promise = group.next().makePromise(of: Data.self)
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineBasedFrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(ReplyHandler(promise: promise))
                }
            }
            .connect(unixDomainSocketPath: path).get()
        defer { channel.close(promise: nil) }
        var line = request
        line.append(0x0A)
        try await channel.writeAndFlush(channel.allocator.buffer(bytes: line))
        return try await promise.futureResult.get()
    }

    /// Encodes, sends, decodes.
    public static func send<Request: Encodable, Reply: Decodable>(
        _ request: Request, expecting: Reply.Type, to path: String, group: any EventLoopGroup
    ) async throws -> Reply {
        let data = try await send(try JSONEncoder().encode(request), to: path, group: group)
        return try JSONDecoder().decode(Reply.self, from: data)
    }
}

private final class RequestHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let handle: @Sendable (Data) async -> Data
    init(handle: @escaping @Sendable (Data) async -> Data) { self.handle = handle }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = Data(unwrapInboundIn(data).readableBytesView)
        let channel = context.channel
        let handle = self.handle
        Task {
            var reply = await handle(line)
            reply.append(0x0A)
            try? await channel.writeAndFlush(channel.allocator.buffer(bytes: reply))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}

private final class ReplyHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let promise: EventLoopPromise<Data>
    init(promise: EventLoopPromise<Data>) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        promise.succeed(Data(unwrapInboundIn(data).readableBytesView))
    }

    func channelInactive(context: ChannelHandlerContext) { promise.fail(ChannelError.eof) }
}
