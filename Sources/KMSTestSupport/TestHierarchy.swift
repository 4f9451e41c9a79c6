public import DNSTransport
public import DNSWire
public import Foundation
public import KMSClient
public import KMSCrypto
public import KMSNode
import KMSProtocol
public import KMSSettings
import Logging
public import NIOCore
import NIOPosix

/// The patent's figure 7 on 127.0.0.1, built inside the test process from real configuration
/// files: KMSs `xx.`, `a.xx.`, `b.a.xx.` (host A's home), `c.a.xx.` (host B's), each a real
/// DNS server on an ephemeral port, talking DNS over real sockets.
public final class TestHierarchy: @unchecked Sendable {
    public static let zones: [DomainName] = ["xx.", "a.xx.", "b.a.xx.", "c.a.xx."]
    public static let parents: [DomainName: DomainName] = ["a.xx.": "xx.", "b.a.xx.": "a.xx.", "c.a.xx.": "a.xx."]
    public static let hosts: [(name: DomainName, zone: DomainName, address: String)] = [
        ("hosta.b.a.xx.", "b.a.xx.", "127.0.0.11"),
        ("hostb.c.a.xx.", "c.a.xx.", "127.0.0.12"),
        ("hostc.c.a.xx.", "c.a.xx.", "127.0.0.13"),
    ]

    public let directory: URL
    public let group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    public let client: DNSClient
    public var keys: [DomainName: PrivateKey] = [:]
    public var servers: [DomainName: DNSServer] = [:]
    public var boxes: [DomainName: ResponderBox] = [:]
    public var nodes: [DomainName: KMSNode] = [:]
    public var endpoints: [DomainName: Endpoint] = [:]
    public let upstreamTimeout: String

    /// `upstreamTimeout` is each hop's deadline. Tests that are about time-outs set a short one;
    /// the default leaves room for a fully parallel suite on two cores, where every suite's
    /// hierarchy starts at once and a single hop was seen to wait more than 2.4 s for its CPU
    /// (a 1 s and then a 3 s deadline were each missed about one run in ten).
    public init(upstreamTimeout: String = "8000ms", extra: [DomainName: String] = [:]) async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("countersign-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        self.upstreamTimeout = upstreamTimeout
        client = try await DNSClient.make(group: group)
        for name in Self.zones + Self.hosts.map(\.name) {
            let key = try PrivateKey(generating: .ed25519)
            keys[name] = key
            try KeyFile.write(key, prefix: keyPrefix(name), force: false)
        }
        // Every server is bound first, so each configuration can name its neighbours' ports.
        for zone in Self.zones {
            let box = ResponderBox()
            let server = try await DNSServer.bind(host: "127.0.0.1", port: 0, group: group, responder: box)
            boxes[zone] = box
            servers[zone] = server
            endpoints[zone] = Endpoint(address: IPAddress("127.0.0.1")!, port: server.address.port!)
        }
        for zone in Self.zones {
            try writeConfiguration(zone, extra: extra[zone] ?? "")
            try startNode(zone)
        }
    }

    public func keyPrefix(_ name: DomainName) -> String { directory.appendingPathComponent(name.text).path }
    public func configPath(_ zone: DomainName) -> String { directory.appendingPathComponent("\(zone.text)conf").path }

    public func writeConfiguration(_ zone: DomainName, extra: String) throws {
        var lines = [
            "zone \(zone)", "listen \(endpoints[zone]!)", "key \(keyPrefix(zone)).pem",
            "database \(directory.path)/\(zone.text)sqlite", "upstream-timeout \(upstreamTimeout)",
            "anchor xx. \(keyPrefix("xx.")).pub.pem",
        ]
        if let parent = Self.parents[zone] {
            lines.append("parent \(parent) \(endpoints[parent]!) \(keyPrefix(parent)).pub.pem")
        }
        for (child, parent) in Self.parents where parent == zone {
            lines.append("child \(child) \(endpoints[child]!) \(keyPrefix(child)).pub.pem")
        }
        for host in Self.hosts where host.zone == zone {
            lines.append("host \(host.name) \(keyPrefix(host.name)).pub.pem \(host.address)")
        }
        lines.append(extra)
        try lines.joined(separator: "\n").write(toFile: configPath(zone), atomically: true, encoding: .utf8)
    }

    /// (Re)creates the node for `zone` from its configuration file and store, and serves it.
    public func startNode(_ zone: DomainName) throws {
        var logger = Logger(label: "test")
        logger.logLevel = .error
        let node = try KMSNode(configuration: try NodeConfiguration(path: configPath(zone)), client: client, logger: logger)
        nodes[zone] = node
        boxes[zone]!.responder = node
    }

    /// Stops answering for `zone`: its sockets close, as when the process dies.
    public func stop(_ zone: DomainName) async {
        await servers[zone]!.close()
    }

    /// Writes a host configuration for `host`, trusting `anchors`, and returns its path.
    public func hostConfiguration(_ host: DomainName, anchors: [DomainName] = ["xx."], cache: Bool = false, timeout: String = "12s") throws -> String {
        let entry = Self.hosts.first { $0.name == host }!
        var lines = [
            "name \(host)", "key \(keyPrefix(host)).pem", "address \(entry.address)",
            "home \(entry.zone) \(endpoints[entry.zone]!) \(keyPrefix(entry.zone)).pub.pem", "timeout \(timeout)",
        ]
        lines += anchors.map { "anchor \($0) \(keyPrefix($0)).pub.pem" }
        if cache { lines.append("cache \(directory.path)/\(host.text)cache.sqlite") }
        let path = directory.appendingPathComponent("\(host.text)\(UUID().uuidString).conf").path
        try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// A host's fetcher, trusting `anchors` (names of KMSs of this hierarchy).
    public func fetcher(_ host: DomainName, anchors: [DomainName] = ["xx."], cache: Bool = false, timeout: String = "12s") throws -> KeyFetcher {
        let path = try hostConfiguration(host, anchors: anchors, cache: cache, timeout: timeout)
        return try KeyFetcher(configuration: try HostConfiguration(path: path), client: client)
    }

    /// Writes `text` to a file in the hierarchy's folder and returns its path.
    public func write(_ text: String, to name: String) throws -> String {
        let path = directory.appendingPathComponent(name).path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Sends raw bytes to a node over UDP and returns the decoded reply.
    public func send(_ message: DNSMessage, to zone: DomainName, timeout: TimeAmount = .seconds(5)) async throws -> DNSMessage {
        try await client.query(message, server: servers[zone]!.address, timeout: timeout)
    }

    public func shutdown() async {
        for server in servers.values { await server.close() }
        await client.close()
        try? FileManager.default.removeItem(at: directory)
    }
}
