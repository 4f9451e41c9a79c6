import ArgumentParser
import DNSTransport
import Foundation
import KMSNode
import KMSSettings
import LogFormat
import Logging
import MetricsHTTP
import Metrics
import Prometheus
import ServiceLifecycle

/// `kmsd`: runs one or more KMS nodes.
@main
struct KMSD: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kmsd",
        abstract: "Serve public keys for one or more DNS zones (KMS1 key management servers).",
        discussion: """
            Each CONFIG file describes one node: its zone, where it listens, its key, its parent \
            and children, and the hosts registered in it. Several files run several nodes in one \
            process, as `make run` does with the example hierarchy:

              kmsd hierarchy/xx.conf hierarchy/a.xx.conf hierarchy/b.a.xx.conf hierarchy/c.a.xx.conf

            A configuration error stops the start with one line naming the file, line and field. \
            SIGHUP reloads what can change without a restart: the policy database, the \
            registered hosts (from the store), and empties the key caches. SIGINT or SIGTERM \
            stops the nodes gracefully: they stop accepting queries and flush their stores. Register hosts while a node runs with `kms register`, \
            and control it with `kms ctl`; `kmsd --check CONFIG...` checks files without starting. \
            See docs/OPERATING.md for every directive.
            """,
        version: Build.version)

    @Argument(help: "Node configuration files.")
    var configs: [String]

    @Option(help: "Serve Prometheus metrics at ADDRESS:PORT (GET /metrics).")
    var metrics: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .notice

    @Option(help: "A file whose text is printed once every node is listening.")
    var banner: String?

    @Option(help: ArgumentHelp(
        "Event loops to serve on, each with its own UDP socket.",
        discussion: "Default: one per CPU kmsd may run on, so `taskset -c 1 kmsd ...` or systemd's CPUAffinity= gives one loop per allowed CPU.",
        valueName: "N"))
    var threads: Int?

    @Flag(help: "Only check the configuration files (every directive, key files, the TSIG key) and say so; start nothing.")
    var check = false

    func validate() throws {
        if let refusal = EventLoops.refusal(threads: threads) { throw ValidationError(refusal) }
    }

    func run() async throws {
        OpenFiles.raiseToHardLimit()
        EventLoops.sizeSingletonGroup(asked: threads)
        var configurations: [NodeConfiguration] = []
        // Two nodes may not share a zone, a database or a control socket.
        var taken: [String: [String: String]] = ["zone": [:], "database": [:], "control": [:]]
        do {
            for path in configs {
                let configuration = try NodeConfiguration(path: path)
                let claims = ["zone": configuration.zone.text, "database": configuration.database, "control": configuration.control]
                for (field, value) in claims.sorted(by: { $0.key > $1.key }) {
                    if let other = taken[field]![value] {
                        let line = configuration.lines[field] ?? configuration.lines["database"]
                        throw ConfigError(path: path, line: line, field: field, reason: "\(value) is also used by \(other)")
                    }
                    taken[field]![value] = path
                }
                configurations.append(configuration)
            }
        } catch {
            Self.fail("\(error)")
        }
        if check {
            for configuration in configurations {
                print("\(configuration.path): ok (zone \(configuration.zone), listen \(configuration.listen), \(configuration.hosts.count) host lines)")
            }
            return
        }
        var metricsSetup: (Endpoint, PrometheusCollectorRegistry)?
        if let metrics {
            guard let endpoint = Endpoint(metrics) else { Self.fail("--metrics: '\(metrics)' is not ADDRESS:PORT") }
            let registry = PrometheusCollectorRegistry()
            MetricsSystem.bootstrap(HelpfulMetricsFactory(registry: registry, help: KMSNode.metricsHelp))
            metricsSetup = (endpoint, registry)
        }
        let level = logLevel
        LoggingSystem.bootstrap { label in LogfmtHandler.standardError(label: label, level: level) }
        let logger = Logger(label: "kmsd")
        let bannerText = try banner.map { try String(contentsOfFile: $0, encoding: .utf8) }
        let daemon = KMSDaemon(
            configurations: configurations, metrics: metricsSetup, banner: bannerText, logger: logger,
            report: { line in
                FileHandle.standardOutput.write(Data((line.hasSuffix("\n") ? line : line + "\n").utf8))
            })
        let group = ServiceGroup(
            services: [daemon], gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: logger)
        do {
            try await group.run()
        } catch {
            Self.fail("\(error)")
        }
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("kmsd: \(message)\n".utf8))
        Foundation.exit(78)  // EX_CONFIG
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
