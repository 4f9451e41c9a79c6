import MetricsHTTP
import NIOCore
import NIOPosix
import Prometheus
import Synchronization
import Testing

/// The metrics endpoint over a real socket: a scrape is answered, and a connection that sends
/// no whole request is closed at the idle time-out instead of being held.
@Suite struct MetricsEndpointTests {
    /// Connects, sends `request`, and returns what came back before the connection closed, and
    /// whether the endpoint closed it (rather than this test's own guard, after 30 s).
    static func exchange(_ request: String, with server: any Channel) async throws -> (String, closedByEndpoint: Bool) {
        let client = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(to: server.localAddress!) { channel in
                channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
            }
        let guardFired = Flag()
        let guardTimer = client.channel.eventLoop.scheduleTask(in: .seconds(30)) {
            guardFired.value.withLock { $0 = true }
            client.channel.close(promise: nil)
        }
        defer { guardTimer.cancel() }
        var received = ""
        try await client.executeThenClose { inbound, outbound in
            if !request.isEmpty { try await outbound.write(ByteBuffer(string: request)) }
            for try await chunk in inbound { received += String(buffer: chunk) }
        }
        return (received, !guardFired.value.withLock { $0 })
    }

    final class Flag: Sendable { let value = Mutex(false) }

    @Test func aScrapeIsAnsweredAndASilentConnectionIsClosed() async throws {
        let registry = PrometheusCollectorRegistry()
        registry.makeCounter(descriptor: MetricNameDescriptor(metricName: "kms_test_total", unitName: "", helpText: "a test")).increment()
        // The scrape's endpoint waits long enough for a client on a loaded machine.
        let patient = try await MetricsEndpoint.serve(
            registry, host: "127.0.0.1", port: 0, group: MultiThreadedEventLoopGroup.singleton, idleTimeout: .seconds(20))
        let (scrape, _) = try await Self.exchange("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", with: patient)
        #expect(scrape.hasPrefix("HTTP/1.1 200") && scrape.contains("kms_test_total 1"), "\(scrape)")
        try await patient.close()
        // Half a request line, then nothing: the endpoint closes it at its time-out; it is
        // not held until this test's guard gives up.
        let server = try await MetricsEndpoint.serve(
            registry, host: "127.0.0.1", port: 0, group: MultiThreadedEventLoopGroup.singleton, idleTimeout: .seconds(1))
        let (silent, closedByEndpoint) = try await Self.exchange("GET /met", with: server)
        #expect(silent.isEmpty && closedByEndpoint, "\(silent)")
        try await server.close()
    }
}
