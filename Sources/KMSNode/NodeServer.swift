public import DNSTransport
public import KMSSettings
public import Logging
public import NIOCore

/// A running node: its DNS server (UDP and TCP) and its control socket.
public final class NodeServer: Sendable {
    public let node: KMSNode
    public let dns: DNSServer
    private let control: any Channel

    private init(node: KMSNode, dns: DNSServer, control: any Channel) {
        self.node = node
        self.dns = dns
        self.control = control
    }

    /// Binds the configured address, builds the node, serves.
    public static func start(
        _ configuration: NodeConfiguration, group: any EventLoopGroup, client: DNSClient, logger: Logger
    ) async throws -> NodeServer {
        let node = try KMSNode(configuration: configuration, client: client, logger: logger)
        let dns: DNSServer
        do {
            dns = try await DNSServer.bind(
                host: configuration.listen.address.description, port: configuration.listen.port, group: group,
                responder: ResponderBox(node))
        } catch {
            throw NodeError(configuration.path, field: "listen", "cannot listen on \(configuration.listen): \(error)")
        }
        let control: any Channel
        do { control = try await Control.serve(node, at: configuration.control, group: group) } catch {
            await dns.close()
            throw NodeError(configuration.path, field: "control", "cannot open \(configuration.control): \(error)")
        }
        return NodeServer(node: node, dns: dns, control: control)
    }

    /// Stops accepting queries; waits for the store's background writes.
    public func stop() async {
        await dns.close()
        try? await control.close()
        try? node.store.flush()
    }
}
