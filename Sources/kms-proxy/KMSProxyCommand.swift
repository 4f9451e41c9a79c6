import ArgumentParser
import DNSTransport
import ControlSocket
import Foundation
import KMSProxy
import KMSSettings
import LogFormat
import Logging
import MetricsHTTP
import Metrics
import NIOPosix
import Prometheus
import ServiceLifecycle

/// `kms-proxy`: encryption set up on name resolution.
@main
struct KMSProxyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kms-proxy",
        abstract: "Encrypt traffic to closed-user-group peers, set up when applications resolve their names.",
        discussion: """
            Point applications' DNS at the proxy (the `dns` address; it answers this host and \
            its networks, or the clients `dns-allow` names). For a name that matches a \
            row of the CUG table, the proxy fetches the peer's key from the KMS hierarchy, \
            verifies it, and answers with an intercept address; connections to that address \
            are carried over TLS 1.3 pinned to the verified key. Other names get exactly what \
            the upstream resolver said. A CUG name whose key cannot be verified gets SERVFAIL, \
            never its real address. SIGHUP reads the CUG and inbound tables again (live \
            mappings stay); SIGINT or SIGTERM stops it. See docs/PROXY.md.
            """,
        version: Build.version,
        subcommands: [Run.self, Status.self, Ping.self],
        defaultSubcommand: Run.self)
}

struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the proxy (and its receiving endpoint, if configured).")

    @Argument(help: "The proxy configuration file.")
    var config: String

    @Option(help: "Serve Prometheus metrics at ADDRESS:PORT (GET /metrics).")
    var metrics: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    @Option(help: ArgumentHelp(
        "Event loops to serve on.", discussion: "Default: one per CPU the proxy may run on (taskset, systemd's CPUAffinity=).",
        valueName: "N"))
    var threads: Int?

    func validate() throws {
        if let refusal = EventLoops.refusal(threads: threads) { throw ValidationError(refusal) }
    }

    func run() async throws {
        OpenFiles.raiseToHardLimit()
        EventLoops.sizeSingletonGroup(asked: threads)
        let configuration: ProxyConfiguration
        do { configuration = try ProxyConfiguration(path: config) } catch { fail("\(error)", code: 78) }
        var registry: PrometheusCollectorRegistry?
        if let metrics {
            guard Endpoint(metrics) != nil else { fail("--metrics: '\(metrics)' is not ADDRESS:PORT", code: 64) }
            let made = PrometheusCollectorRegistry()
            MetricsSystem.bootstrap(HelpfulMetricsFactory(registry: made, help: ProxyService.metricsHelp))
            registry = made
        }
        let level = logLevel
        LoggingSystem.bootstrap { label in LogfmtHandler.standardError(label: label, level: level) }
        let logger = Logger(label: "kms-proxy")
        let service = ProxyDaemon(
            configuration: configuration, metrics: metrics.flatMap(Endpoint.init).map { ($0, registry!) }, logger: logger,
            report: say)
        do {
            try await ServiceGroup(services: [service], gracefulShutdownSignals: [.sigterm, .sigint], cancellationSignals: [], logger: logger).run()
        } catch {
            fail("\(error)", code: 1)
        }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List live mappings (intercept address → peer) and tunnel sessions.")

    @Option(help: "The proxy's status socket (`control` in its configuration).")
    var control: String

    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        let status: ProxyService.Status
        do { status = try await ProxyService.status(control: control, group: MultiThreadedEventLoopGroup.singleton) } catch {
            let reason = (error as? ControlSocket.Failure)?.reason ?? "\(error)"
            fail("cannot reach the proxy at \(control): \(reason) (is kms-proxy running?)", code: 69)
        }
        if json {
            let data = try JSONEncoder().encode(status)
            print(String(decoding: data, as: UTF8.self))
            return
        }
        let now = Date().timeIntervalSince1970
        print("mappings (\(status.mappings.count))")
        for row in status.mappings {
            let address = row.kind == "kernel" ? "kernel" : row.intercept
            print("  \(address) -> \(row.peer) [\(row.addresses.joined(separator: " "))]\(row.revoked ? " WITHDRAWN" : "")")
            print("      \(row.path); key \(row.key.prefix(24))… valid until \(row.keyValidUntil == 0 ? "?" : row.keyValidUntil.iso8601); expires in \(row.expiresIn) s; \(row.liveConnections) live")
        }
        print("tunnels (\(status.sessions.count))")
        for session in status.sessions {
            print("  #\(session.id) \(session.direction) \(session.peer) via \(session.local) \(session.cipher)")
            print("      key \(session.key.prefix(24))…; handshake \(session.handshakeMilliseconds) ms; sent \(session.bytesSent) B, received \(session.bytesReceived) B; up \(Int(now - session.started)) s, idle \(Int(now - session.lastActivity)) s")
        }
    }
}

struct Ping: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check the encrypted path to a peer without an application: resolve, key, tunnel, the peer's verdict.",
        discussion: """
            The running proxy resolves NAME as an application would, fetches and verifies its key \
            from the KMS hierarchy, opens the TLS tunnel pinned to that key, and asks the peer's \
            receiving endpoint whether it would let this host in (and to which ports). Each step \
            is printed with its time. Exit code 0 when every step succeeded, 1 otherwise, 69 when \
            the proxy cannot be reached.

            Example: kms-proxy ping hostb.c.a.xx. --control run/proxy-a.control
            """)

    @Argument(help: "The peer's name, e.g. hostb.c.a.xx.")
    var name: String

    @Option(help: "The proxy's status socket (`control` in its configuration).")
    var control: String

    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        let report: PingReport
        do { report = try await ProxyService.ping(name, control: control, group: MultiThreadedEventLoopGroup.singleton) } catch {
            let reason = (error as? ControlSocket.Failure)?.reason ?? "\(error)"
            fail("cannot reach the proxy at \(control): \(reason) (is kms-proxy running?)", code: 69)
        }
        if json {
            print(String(decoding: try JSONEncoder().encode(report), as: UTF8.self))
        } else {
            print("ping \(report.name)")
            for step in report.steps {
                print("  \(step.ok ? "ok  " : "FAIL") \(step.step.padding(toLength: 8, withPad: " ", startingAt: 0)) \(String(format: "%7.1f", step.milliseconds)) ms  \(step.detail)")
            }
            if report.steps.isEmpty { print("  FAIL nothing could be done (is NAME a domain name?)") }
        }
        if !report.ok { Foundation.exit(1) }
    }
}

func say(_ line: String) { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }

func fail(_ message: String, code: Int32) -> Never {
    FileHandle.standardError.write(Data("kms-proxy: \(message)\n".utf8))
    exit(code)
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
