import MetricsHTTP
import NIOCore
import NIOPosix
import Prometheus
import Testing

/// The metrics endpoint over a real socket: a scrape is answered, and a connection that sends
/// no whole request is closed at the idle time-out instead of being held.
@Suite struct MetricsEndpointTests {
    /// Connects, sends `request`, and returns what came back before the endpoint closed the
    /// connection, with how long it stayed open (the test gives up after 10 s).
    static func exchange(_ request: String, with server: any Channel) async throws -> (String, Duration) {
        let started = ContinuousClock.now
        let client = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(to: server.localAddress!) { channel in
                channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
            }
        let guardTimer = client.channel.eventLoop.scheduleTask(in: .seconds(10)) { client.channel.close(promise: nil) }
        defer { guardTimer.cancel() }
        var received = ""
        try await client.executeThenClose { inbound, outbound in
            if !request.isEmpty { try await outbound.write(ByteBuffer(string: request)) }
            for try await chunk in inbound { received += String(buffer: chunk) }
        }
        return (received, ContinuousClock.now - started)
    }

    @Test func aScrapeIsAnsweredAndASilentConnectionIsClosed() async throws {
        let registry = PrometheusCollectorRegistry()
        registry.makeCounter(descriptor: MetricNameDescriptor(metricName: "kms_test_total", unitName: "", helpText: "a test")).increment()
        let server = try await MetricsEndpoint.serve(
            registry, host: "127.0.0.1", port: 0, group: MultiThreadedEventLoopGroup.singleton, idleTimeout: .seconds(1))
        let (scrape, _) = try await Self.exchange("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", with: server)
        #expect(scrape.hasPrefix("HTTP/1.1 200") && scrape.contains("kms_test_total 1"), "\(scrape)")
        // Half a request line, then nothing: closed after the time-out, not held.
        let (silent, held) = try await Self.exchange("GET /met", with: server)
        #expect(silent.isEmpty && held < .seconds(6), "held \(held): \(silent)")
        try await server.close()
    }
}
