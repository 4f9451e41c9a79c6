public import Foundation
public import NIOCore
import NIOExtras
import NIOPosix

/// A local administration channel: a Unix-domain socket (mode 0600, so only its owner may use
/// it) that answers one JSON object per line with one JSON object per line.
public enum ControlSocket {
    /// Why the control socket could not be served or reached.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let path: String
        public let reason: String
        public var description: String { "\(path): \(reason)" }
    }

    /// Serves `path`. A socket file left by a process that died is replaced; one that a live
    /// process still answers on is not, and neither is anything that is not a socket: two daemons on one control socket would take each
    /// other's commands. `handle` gets each request line and returns the reply; it runs off
    /// the event loop, in a task, so it may wait; work that blocks a thread (a durable store
    /// write) belongs on a thread pool (`NIOThreadPool`), not on the concurrency pool.
    ///
    /// Each connection is a child task of the listener's task: closing the returned channel
    /// ends them all.
    public static func serve(
        at path: String, group: any EventLoopGroup, handle: @escaping @Sendable (Data) async -> Data
    ) async throws -> any Channel {
        try? FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        if let type = (try? FileManager.default.attributesOfItem(atPath: path))?[.type] as? FileAttributeType {
            guard type == .typeSocket else {
                throw Failure(path: path, reason: "exists and is not a socket; refusing to replace it")
            }
            if await isServed(path, group: group) {
                throw Failure(path: path, reason: "another running process already serves this control socket")
            }
            unlink(path)
        }
        let server = try await ServerBootstrap(group: group)
            .bind(unixDomainSocketPath: path) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineBasedFrameDecoder()))
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        chmod(path, 0o600)
        let listener = server.channel
        Task {
            try? await server.executeThenClose { connections in
                await withDiscardingTaskGroup { group in
                    do {
                        for try await connection in connections {
                            group.addTask { await answer(connection, handle: handle) }
                        }
                    } catch {}
                }
            }
        }
        return listener
    }

    private static func answer(
        _ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>, handle: @Sendable (Data) async -> Data
    ) async {
        try? await connection.executeThenClose { inbound, outbound in
            for try await line in inbound {
                var reply = await handle(Data(line.readableBytesView))
                reply.append(0x0A)
                try await outbound.write(ByteBuffer(bytes: reply))
            }
        }
    }

    /// Whether a live process answers on `path` (a stale socket file refuses the connection).
    private static func isServed(_ path: String, group: any EventLoopGroup) async -> Bool {
        guard let address = try? SocketAddress(unixDomainSocketPath: path),
            let channel = try? await ClientBootstrap(group: group).connect(to: address).get()
        else { return false }
        try? await channel.close()
        return true
    }

    /// Sends one request line to `path` and returns the reply line.
    public static func send(_ request: Data, to path: String, group: any EventLoopGroup) async throws -> Data {
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
        do {
            channel = try await ClientBootstrap(group: group)
                .connect(to: try SocketAddress(unixDomainSocketPath: path)) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineBasedFrameDecoder()))
                        return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            throw Failure(path: path, reason: "cannot connect (\(Self.describe(error)))")
        }
        var line = request
        line.append(0x0A)
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(bytes: line))
            for try await reply in inbound { return Data(reply.readableBytesView) }
            throw Failure(path: path, reason: "closed without a reply")
        }
    }

    /// Encodes, sends, decodes.
    public static func send<Request: Encodable, Reply: Decodable>(
        _ request: Request, expecting: Reply.Type, to path: String, group: any EventLoopGroup
    ) async throws -> Reply {
        let data = try await send(try JSONEncoder().encode(request), to: path, group: group)
        return try JSONDecoder().decode(Reply.self, from: data)
    }

    /// "No such file or directory" rather than NIO's `connect(descriptor:addr:size:)` prefix.
    private static func describe(_ error: any Error) -> String {
        if let error = error as? IOError { return String(cString: strerror(error.errnoCode)) }
        return "\(error)"
    }
}
