import DNSTransport
import DNSWire
import Foundation
import KMSNode
import KMSSettings
import KMSTestSupport
import Logging
import NIOCore
import NIOPosix
import Testing

/// What `kmsd` refuses at start, each naming the file, line and directive.
@Suite struct NodeServerTests {
    let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })

    /// A copy of `zone`'s test configuration listening on `listen`, with `changes` applied.
    func configuration(
        _ hierarchy: TestHierarchy, _ zone: DomainName, listen: String, database: String? = nil, control: String? = nil
    ) throws -> NodeConfiguration {
        var lines = try String(contentsOfFile: hierarchy.configPath(zone), encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines = lines.map { line in
            if line.hasPrefix("listen ") { return "listen \(listen)" }
            if let database, line.hasPrefix("database ") { return "database \(database)" }
            return line
        }
        if let control { lines.append("control \(control)") }
        let path = try hierarchy.write(lines.joined(separator: "\n"), to: "\(UUID().uuidString).conf")
        return try NodeConfiguration(path: path)
    }

    /// Starts a node from `configuration`: nil if it started (it is stopped again at once),
    /// otherwise the error it was refused with, as kmsd prints it.
    func refusal(_ configuration: NodeConfiguration, _ hierarchy: TestHierarchy) async -> String? {
        do {
            let server = try await NodeServer.start(configuration, group: hierarchy.group, client: hierarchy.client, logger: logger)
            await server.stop()
            return nil
        } catch {
            return "\(error)"
        }
    }

    /// Defect: "bind(descriptor:ptr:bytes:): Address already in use (errno: 98)" named nothing.
    @Test func aBusyPortNamesTheFileLineDirectiveAndAddress() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            // Another program holds the port, TCP and UDP (no SO_REUSEPORT): the first bind,
            // TCP, fails, and the error must say so with the file, line and address.
            var squatters: [any Channel] = []
            while squatters.isEmpty {
                let tcp = try await ServerBootstrap(group: hierarchy.group)
                    .bind(to: try SocketAddress(ipAddress: "127.0.0.1", port: 0)).get()
                if let udp = try? await DatagramBootstrap(group: hierarchy.group)
                    .bind(to: try SocketAddress(ipAddress: "127.0.0.1", port: tcp.localAddress!.port!)).get()
                {
                    squatters = [tcp, udp]
                } else {
                    try await tcp.close()
                }
            }
            defer { for squatter in squatters { squatter.close(promise: nil) } }
            let port = squatters[0].localAddress!.port!
            let config = try configuration(hierarchy, "c.a.xx.", listen: "127.0.0.1:\(port)", database: "\(hierarchy.directory.path)/busy.sqlite")
            let line = try #require(config.lines["listen"])
            let error = try #require(await refusal(config, hierarchy), "started on a busy port")
            #expect(error == "\(config.path):\(line): listen: cannot bind TCP 127.0.0.1:\(port): Address already in use")
        }
    }

    /// Defect: two nodes on one database both started, each blind to the other's registrations.
    @Test func aSecondNodeOnOneDatabaseIsRefused() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let database = "\(hierarchy.directory.path)/shared.sqlite"
            let first = try await NodeServer.start(
                try configuration(hierarchy, "c.a.xx.", listen: "127.0.0.1:0", database: database), group: hierarchy.group,
                client: hierarchy.client, logger: logger)
            let second = try configuration(
                hierarchy, "c.a.xx.", listen: "127.0.0.1:0", database: database,
                control: "\(hierarchy.directory.path)/other.control")
            let error = try #require(await refusal(second, hierarchy), "a second node started on \(database)")
            #expect(error.hasPrefix("\(second.path):\(second.lines["database"]!): database: \(database): in use"), "\(error)")
            await first.stop()
        }
    }

    /// Defect: two nodes on one control socket both started, and `kms register --node` for the
    /// first reached the second.
    @Test func aSecondNodeOnOneControlSocketIsRefused() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let control = "\(hierarchy.directory.path)/shared.control"
            let first = try await NodeServer.start(
                try configuration(hierarchy, "c.a.xx.", listen: "127.0.0.1:0", database: "\(hierarchy.directory.path)/one.sqlite", control: control),
                group: hierarchy.group, client: hierarchy.client, logger: logger)
            let second = try configuration(
                hierarchy, "b.a.xx.", listen: "127.0.0.1:0", database: "\(hierarchy.directory.path)/two.sqlite", control: control)
            let error = try #require(await refusal(second, hierarchy), "a second node took over \(control)")
            #expect(error.hasPrefix("\(second.path):\(second.lines["control"]!): control:"), "\(error)")
            #expect(error.contains("another running process"), "\(error)")
            // Registrations still reach the first node.
            let hosts = try await Control.send(Control.Request(op: "hosts"), to: control, group: hierarchy.group)
            #expect(hosts.hosts?.contains { $0.hasPrefix("hostb.c.a.xx.") } == true)
            await first.stop()
        }
    }
}
