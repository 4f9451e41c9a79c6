public import NIOCore
import NIOHTTP1
import NIOPosix
import Glibc
public import Prometheus

/// Serves the Prometheus text format at `GET /metrics` (anything else: 404).
public enum MetricsEndpoint {
    /// The endpoint could not be served: says so as the command-line option that asked for it.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// `beforeScrape` runs before each `/metrics` answer (to set gauges from live tables). A
    /// connection that has not sent a whole request within `idleTimeout` is closed, so
    /// connections opened and left silent do not pile up (a scraper asks and is answered at once).
    public static func serve(
        _ registry: PrometheusCollectorRegistry, host: String, port: Int, group: any EventLoopGroup,
        idleTimeout: TimeAmount = .seconds(10), beforeScrape: @escaping @Sendable () -> Void = {}
    ) async throws -> any Channel {
        do {
            return try await bind(registry, host: host, port: port, group: group, idleTimeout: idleTimeout, beforeScrape: beforeScrape)
        } catch {
            let reason = (error as? IOError).map { String(cString: strerror($0.errnoCode)) } ?? "\(error)"
            let address = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            throw Failure(description: "--metrics: cannot serve on \(address): \(reason)")
        }
    }

    private static func bind(
        _ registry: PrometheusCollectorRegistry, host: String, port: Int, group: any EventLoopGroup, idleTimeout: TimeAmount,
        beforeScrape: @escaping @Sendable () -> Void
    ) async throws -> any Channel {
        try await ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    // After the HTTP decoder: only request parts count as reads.
                    try channel.pipeline.syncOperations.addHandler(IdleStateHandler(readTimeout: idleTimeout))
                    try channel.pipeline.syncOperations.addHandler(Handler(registry: registry, beforeScrape: beforeScrape))
                }
            }
            .bind(to: try SocketAddress(ipAddress: host, port: port)).get()
    }

    private final class Handler: ChannelInboundHandler {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let registry: PrometheusCollectorRegistry
        let beforeScrape: @Sendable () -> Void
        private var path = ""
        init(registry: PrometheusCollectorRegistry, beforeScrape: @escaping @Sendable () -> Void) {
            self.registry = registry
            self.beforeScrape = beforeScrape
        }

        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if event is IdleStateHandler.IdleStateEvent { context.close(promise: nil) } else { context.fireUserInboundEventTriggered(event) }
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            // A request NIO's HTTP parser rejects: this connection ends, the endpoint goes on.
            context.close(promise: nil)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head): path = head.uri
            case .body: break
            case .end:
                let found = path == "/metrics"
                if found { beforeScrape() }
                let body = found ? registry.emitToBuffer() : Array("not found; try /metrics\n".utf8)
                var headers = HTTPHeaders()
                headers.add(name: "Content-Type", value: found ? "text/plain; version=0.0.4" : "text/plain")
                headers.add(name: "Content-Length", value: "\(body.count)")
                headers.add(name: "Connection", value: "close")
                context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: found ? .ok : .notFound, headers: headers))), promise: nil)
                context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
                let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
                context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in bound.value.close(promise: nil) }
            }
        }
    }
}
