import DNSTransport
import MetricsHTTP
import Foundation
public import KMSSettings
public import Logging
import NIOCore
import NIOPosix
public import Prometheus
public import ServiceLifecycle
import UnixSignals

/// `kmsd` as a service: starts every configured node in this process (sharing the event
/// loops, one per CPU it may run on, and one upstream client), serves until asked to stop, then stops
/// accepting queries and waits for the stores to flush.
public struct KMSDaemon: Service {
    public let configurations: [NodeConfiguration]
    public let metrics: (endpoint: Endpoint, registry: Prometheus.PrometheusCollectorRegistry)?
    public let banner: String?
    public let logger: Logger
    /// Where the daemon says what it listens on (the executable prints; libraries do not).
    public let report: @Sendable (String) -> Void

    public init(
        configurations: [NodeConfiguration], metrics: (Endpoint, Prometheus.PrometheusCollectorRegistry)?,
        banner: String?, logger: Logger, report: @escaping @Sendable (String) -> Void
    ) {
        self.report = report
        self.configurations = configurations
        self.metrics = metrics.map { (endpoint: $0.0, registry: $0.1) }
        self.banner = banner
        self.logger = logger
    }

    public func run() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let client = try await DNSClient.make(group: group)
        var servers: [NodeServer] = []
        var metricsChannel: (any Channel)?
        do {
            for configuration in configurations {
                let server = try await NodeServer.start(configuration, group: group, client: client, logger: logger)
                servers.append(server)
                let node = server.node
                report(
                    "\(node.zone.text.padding(toLength: 10, withPad: " ", startingAt: 0)) listening on \(configuration.listen) (UDP, TCP)"
                        + "  hosts: \(node.registeredHostCount)  control: \(configuration.control)")
            }
            if let metrics {
                let nodes = servers.map(\.node)
                let process = ProcessMetrics()
                metricsChannel = try await MetricsEndpoint.serve(
                    metrics.registry, host: metrics.endpoint.address.description, port: metrics.endpoint.port, group: group,
                    beforeScrape: {
                        for node in nodes { node.updateGauges() }
                        process.update()
                    })
                report("metrics    http://\(metrics.endpoint)/metrics")
            }
        } catch {
            for server in servers { await server.stop() }
            await client.close()
            throw error
        }
        report(EventLoops.summary(of: group, option: "kmsd --threads"))
        if let banner { report(banner) }
        logger.info("serving", metadata: ["nodes": "\(servers.count)"])

        // Serve until SIGINT/SIGTERM; SIGHUP reloads what can be reloaded (`KMSNode.reload`).
        let hangups = await UnixSignalsSequence(trapping: .sighup)
        let nodes = servers.map(\.node)
        await withDiscardingTaskGroup { group in
            group.addTask { [logger] in
                for await _ in hangups {
                    logger.notice("SIGHUP: reloading")
                    // Off the concurrency pool, as the control socket's ops (`Control.serve`).
                    for node in nodes { _ = try? await NIOThreadPool.singleton.runIfActive { node.reload() } }
                }
            }
            // Each node keeps its published countersignatures fresh (new and rotated hosts
            // within a second, a sweep for renewals every minute) and tells its secondaries
            // whenever the serial moved (NOTIFY).
            for node in nodes {
                group.addTask {
                    var round = 0
                    while !Task.isCancelled {
                        if round % 60 == 0 { await node.sweepStaticRecords() }
                        await node.publishStaticRecords()
                        await node.notifyIfChanged()
                        round += 1
                        try? await Task.sleep(for: .seconds(1))
                    }
                }
            }
            try? await gracefulShutdown()
            group.cancelAll()
        }

        logger.info("shutting down")
        try? await metricsChannel?.close()
        for server in servers { await server.stop() }
        await client.close()
        report("stopped")
    }
}
