import DNSTransport
public import KMSSettings
public import Logging
import MetricsHTTP
import NIOCore
import NIOPosix
public import Prometheus
public import ServiceLifecycle
import UnixSignals

/// `kms-proxy` as a service: starts the proxy (and the metrics endpoint), serves until
/// SIGINT/SIGTERM, reloads its CUG and inbound tables on SIGHUP, then stops (removing any
/// kernel diversion).
public struct ProxyDaemon: Service {
    public let configuration: ProxyConfiguration
    public let metrics: (endpoint: Endpoint, registry: PrometheusCollectorRegistry)?
    public let logger: Logger
    /// Where the daemon says what it does (the executable prints; libraries do not).
    public let report: @Sendable (String) -> Void

    public init(
        configuration: ProxyConfiguration, metrics: (Endpoint, PrometheusCollectorRegistry)?, logger: Logger,
        report: @escaping @Sendable (String) -> Void
    ) {
        self.configuration = configuration
        self.metrics = metrics.map { (endpoint: $0.0, registry: $0.1) }
        self.logger = logger
        self.report = report
    }

    public func run() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let proxy = try await ProxyService.start(configuration, group: group, logger: logger)
        var metricsChannel: (any Channel)?
        if let metrics {
            do {
                metricsChannel = try await MetricsEndpoint.serve(
                    metrics.registry, host: metrics.endpoint.address.description, port: metrics.endpoint.port, group: group,
                    beforeScrape: { proxy.updateGauges() })
            } catch {
                await proxy.stop()
                throw error
            }
        }
        for line in proxy.summary { report(line) }
        report(EventLoops.summary(of: group, option: "kms-proxy run --threads"))
        if let metrics { report("metrics    http://\(metrics.endpoint)/metrics") }
        report("ready")

        let hangups = await UnixSignalsSequence(trapping: .sighup)
        await withDiscardingTaskGroup { group in
            group.addTask { [logger, report] in
                for await _ in hangups {
                    for line in proxy.reload() {
                        logger.notice("SIGHUP: reload", metadata: ["part": "\(line)"])
                        report("reloaded   \(line)")
                    }
                }
            }
            try? await gracefulShutdown()
            group.cancelAll()
        }
        try? await metricsChannel?.close()
        await proxy.stop()
        report("stopped")
    }
}
