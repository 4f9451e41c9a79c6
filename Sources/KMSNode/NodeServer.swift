public import DNSTransport
import KMSSettings
public import Logging
public import NIOCore

/// A running node: its DNS server (UDP and TCP) and its control socket.
public final class NodeServer: Sendable {
    public let node: KMSNode
    public let dns: DNSServer
    private let control: any Channel
    private let lock: DatabaseLock

    private init(node: KMSNode, dns: DNSServer, control: any Channel, lock: DatabaseLock) {
        self.node = node
        self.dns = dns
        self.control = control
        self.lock = lock
    }

    /// Locks the database, builds the node, binds the configured address and the control
    /// socket, serves. Each failure names the file, line and directive it comes from.
    public static func start(
        _ configuration: NodeConfiguration, group: any EventLoopGroup, client: DNSClient, logger: Logger
    ) async throws -> NodeServer {
        let lock: DatabaseLock
        do { lock = try DatabaseLock(path: configuration.database) } catch {
            throw configuration.error("database", "\(configuration.database): \(error.reason)")
        }
        let node = try KMSNode(configuration: configuration, client: client, logger: logger)
        let dns: DNSServer
        do {
            dns = try await DNSServer.bind(
                host: configuration.listen.address.description, port: configuration.listen.port, group: group,
                responder: ResponderBox(node), onReopen: { [logger] line in logger.warning("\(line)") })
        } catch {
            throw configuration.error("listen", "\(error)")
        }
        let control: any Channel
        do { control = try await Control.serve(node, at: configuration.control, group: group) } catch {
            await dns.close()
            throw configuration.error(
                configuration.lines["control"] == nil ? "database" : "control",
                "control socket \(error)")
        }
        return NodeServer(node: node, dns: dns, control: control, lock: lock)
    }

    /// Stops accepting queries; waits for the store's background writes.
    public func stop() async {
        await dns.close()
        try? await control.close()
        try? node.store.flush()
    }
}
