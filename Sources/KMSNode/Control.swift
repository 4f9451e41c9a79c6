import DNSWire
import Foundation
import KMSCrypto
import KMSProtocol
public import NIOCore
import NIOExtras
import NIOPosix

/// The node's local administration channel: a Unix-domain socket (mode 0600, so only its
/// owner may use it) speaking one JSON object a line. `kms register` is its client.
///
///     {"op":"register","name":"hostc.b.a.xx.","key":"ed25519:MCow...","addresses":["127.0.0.13"]}
///     {"ok":true,"message":"registered hostc.b.a.xx."}
///
/// A registration is acknowledged only after it is durable in the store.
public enum Control {
    public struct Request: Codable, Sendable {
        public var op: String
        public var name: String?
        public var key: String?
        public var addresses: [String]?

        public init(op: String, name: String? = nil, key: String? = nil, addresses: [String]? = nil) {
            self.op = op
            self.name = name
            self.key = key
            self.addresses = addresses
        }
    }

    public struct Response: Codable, Sendable {
        public var ok: Bool
        public var message: String
        public var hosts: [String]?

        public init(ok: Bool, message: String, hosts: [String]? = nil) {
            self.ok = ok
            self.message = message
            self.hosts = hosts
        }
    }

    /// Serves `node`'s control socket at `path`, replacing a stale socket file.
    public static func serve(_ node: KMSNode, at path: String, group: any EventLoopGroup) async throws -> any Channel {
        try? FileManager.default.createDirectory(
            atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        unlink(path)
        let channel = try await ServerBootstrap(group: group)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineBasedFrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(ControlHandler(node: node))
                }
            }
            .bind(unixDomainSocketPath: path).get()
        chmod(path, 0o600)
        return channel
    }

    /// Sends one request to the control socket at `path` and returns the response.
    public static func send(_ request: Request, to path: String, group: any EventLoopGroup) async throws -> Response {
        let promise = group.next().makePromise(of: Response.self)
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineBasedFrameDecoder()))
                    try channel.pipeline.syncOperations.addHandler(ResponseHandler(promise: promise))
                }
            }
            .connect(unixDomainSocketPath: path).get()
        defer { channel.close(promise: nil) }
        var line = try JSONEncoder().encode(request)
        line.append(0x0A)
        try await channel.writeAndFlush(channel.allocator.buffer(bytes: line))
        return try await promise.futureResult.get()
    }

    static func handle(_ request: Request, node: KMSNode) -> Response {
        switch request.op {
        case "register":
            guard let nameText = request.name, let keyText = request.key else {
                return Response(ok: false, message: "register needs name and key")
            }
            let name: DomainName
            do { name = try DomainName(canonical: nameText) } catch {
                return Response(ok: false, message: "name: \(error.reason)")
            }
            let key: KMSCrypto.PublicKey
            do { key = try KeyField.decode(keyText) } catch {
                return Response(ok: false, message: "key: \(error)")
            }
            var addresses: [IPAddress] = []
            for text in request.addresses ?? [] {
                guard let address = IPAddress(text) else { return Response(ok: false, message: "addresses: '\(text)' is not an IP address") }
                addresses.append(address)
            }
            do {
                try node.register(name: name, key: key, addresses: addresses)
                return Response(ok: true, message: "registered \(name) in \(node.zone)")
            } catch {
                return Response(ok: false, message: "\(error)")
            }
        case "hosts":
            return Response(
                ok: true, message: "\(node.registeredHosts.count) hosts",
                hosts: node.registeredHosts.map { "\($0.name) \(KeyField.encode($0.key)) \($0.addresses.map(\.description).joined(separator: " "))" })
        default:
            return Response(ok: false, message: "unknown op '\(request.op)' (register, hosts)")
        }
    }
}

private final class ControlHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let node: KMSNode
    init(node: KMSNode) { self.node = node }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = unwrapInboundIn(data)
        let channel = context.channel
        let node = self.node
        // The store write blocks until durable: do it off the event loop.
        Task {
            let response: Control.Response
            if let request = try? JSONDecoder().decode(Control.Request.self, from: Data(line.readableBytesView)) {
                response = Control.handle(request, node: node)
            } else {
                response = Control.Response(ok: false, message: "not a JSON control request")
            }
            var bytes = (try? JSONEncoder().encode(response)) ?? Data("{\"ok\":false,\"message\":\"encoding\"}".utf8)
            bytes.append(0x0A)
            try? await channel.writeAndFlush(channel.allocator.buffer(bytes: bytes))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { context.close(promise: nil) }
}

private final class ResponseHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let promise: EventLoopPromise<Control.Response>
    init(promise: EventLoopPromise<Control.Response>) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = unwrapInboundIn(data)
        do { promise.succeed(try JSONDecoder().decode(Control.Response.self, from: Data(line.readableBytesView))) } catch {
            promise.fail(error)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(ChannelError.eof)
    }
}
