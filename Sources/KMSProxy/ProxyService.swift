import ControlSocket
import DNSTransport
import DNSWire
import Foundation
import KMSClient
import KMSCrypto
import KMSProtocol
import KMSSettings
public import Logging
public import NIOCore

/// A running `kms-proxy`: the DNS proxy, the tunnel listeners, the receiving endpoint and the
/// status socket, built from one configuration.
public final class ProxyService: Sendable {
    public let configuration: ProxyConfiguration
    public let dnsProxy: DNSProxy
    public let pool: InterceptPool
    let sessions: Sessions
    private let channels: [any Channel]
    private let dnsServer: DNSServer
    private let endpointChannel: (any Channel)?
    private let endpoint: ReceivingEndpoint?
    private let client: DNSClient
    private let kernel: KernelDiversion?
    let keyWatch: KeyWatch
    /// Set from the tables when `/metrics` is scraped.
    private let gauges = ProxyGauges()
    private let refreshing: Task<Void, Never>

    private init(
        configuration: ProxyConfiguration, dnsProxy: DNSProxy, pool: InterceptPool, sessions: Sessions, channels: [any Channel],
        dnsServer: DNSServer, endpointChannel: (any Channel)?, endpoint: ReceivingEndpoint?, client: DNSClient, kernel: KernelDiversion?,
        keyWatch: KeyWatch
    ) {
        self.keyWatch = keyWatch
        let interval = configuration.keyRefresh
        refreshing = Task {
            while !Task.isCancelled {
                do { try await Task.sleep(for: .seconds(interval)) } catch { return }
                _ = await keyWatch.pass()
            }
        }
        self.endpoint = endpoint
        self.kernel = kernel
        self.configuration = configuration
        self.dnsProxy = dnsProxy
        self.pool = pool
        self.sessions = sessions
        self.channels = channels
        self.dnsServer = dnsServer
        self.endpointChannel = endpointChannel
        self.client = client
    }

    /// Where the DNS proxy listens (the port is known here when the configuration said 0).
    public var dnsAddress: SocketAddress { dnsServer.address }
    /// Where the receiving endpoint listens, if this host has one.
    public var endpointAddress: SocketAddress? { endpointChannel?.localAddress }

    /// Where each part listens, for the operator.
    public var summary: [String] {
        let resolvers = configuration.forwarding.resolvers.map(\.description).joined(separator: " ")
        var lines = ["dns        \(configuration.dns) (upstream \(configuration.upstream), policy \(configuration.policy.rawValue))"]
        let clients = dnsProxy.allowedClients.networks().map { "\($0.address)/\($0.length)" }.joined(separator: " ")
        lines.append("clients    \(clients)\(dnsProxy.allowedClients.isConfigured ? " (dns-allow)" : " (this host and its networks, as they change; set dns-allow)"); others REFUSED")
        let zones = configuration.forwarding.zones.map { "\($0.name)\($0.isHierarchy ? "" : " -> \($0.servers.map(\.description).joined(separator: " "))")" }
        lines.append("zones      \(zones.joined(separator: ", ")); other names -> \(resolvers.isEmpty ? "none (set resolver)" : resolvers)")
        lines.append("intercept  \(configuration.pool.first!)…\(configuration.pool.last!) ports \(configuration.ports.map(String.init).joined(separator: " ")) (\(configuration.interceptBind.rawValue))")
        if let endpoint = configuration.endpoint { lines.append("endpoint   \(endpoint) (TLS 1.3, client key checked with the KMS hierarchy)") }
        if let divertPort = configuration.divertPort {
            lines.append("kernel     nftables table inet \(KernelDiversion.table) (libnftables): peers' TCP, IPv4 and IPv6, to ports \(configuration.ports.map(String.init).joined(separator: " ")) -> :\(divertPort); all else to them refused")
        }
        if let control = configuration.control { lines.append("status     kms-proxy status --control \(control)") }
        lines.append("store      \(configuration.store.map { "\($0) (\(pool.mappings.count + (kernel?.mappings.count ?? 0)) live mappings kept)" } ?? "none: mappings do not survive a restart (set store)")")
        return lines
    }

    public static func start(_ configuration: ProxyConfiguration, group: any EventLoopGroup, logger: Logger) async throws -> ProxyService {
        let client = try await DNSClient.make(group: group)
        var fetchers: [Identity: KeyFetcher] = [:]
        var clientContexts: [Identity: [TLSCipher: TLSContext]] = [:]
        var identities: [Identity: TLSIdentity] = [:]
        for (id, host) in configuration.identities {
            fetchers[id] = try KeyFetcher(configuration: host, client: client)
            let identity = try TLSIdentity(name: host.name.text, key: host.key)
            identities[id] = identity
            var byCipher: [TLSCipher: TLSContext] = [:]
            for cipher in TLSCipher.allCases { byCipher[cipher] = try TLSContext(role: .client, identity: identity, ciphers: [cipher]) }
            clientContexts[id] = byCipher
        }
        let timeout = TimeAmount.milliseconds(Int64(configuration.timeout * 1000))
        let pool = InterceptPool(addresses: configuration.pool, lifetime: configuration.lifetime)
        let poolV6 = configuration.poolV6.isEmpty ? nil : InterceptPool(addresses: configuration.poolV6, lifetime: configuration.lifetime)
        let pools = [pool] + (poolV6.map { [$0] } ?? [])
        let sessions = Sessions()
        let store: ProxyStore?
        do { store = try configuration.store.map { try ProxyStore(path: $0) } } catch {
            await client.close()
            throw configuration.startError("store", "cannot open \(configuration.store!): \(error)")
        }
        // What a previous run handed out stays reserved (and diverted) until it expires.
        let now = Date().timeIntervalSince1970
        if let store {
            do {
                let intercepts = try store.live(.intercept, now: now).map(\.mapping)
                for pool in pools { pool.restore(intercepts) }
            } catch {
                await client.close()
                throw configuration.startError("store", "cannot read \(configuration.store!): \(error)")
            }
        }
        let kernel: KernelDiversion?
        if let divertPort = configuration.divertPort {
            guard !configuration.ports.isEmpty else {
                throw configuration.startError("divert-port", "kernel diversion needs the ports to divert (ports)")
            }
            do {
                kernel = try KernelDiversion.start(ports: configuration.ports, divertPort: divertPort, tunnelPort: configuration.tunnelPort)
                if let store { try kernel?.restore(try store.live(.kernel, now: now), now: now) }
            } catch {
                await client.close()
                throw configuration.startError("divert-port", "\(error)")
            }
        } else {
            kernel = nil
        }
        let dnsProxy = DNSProxy(
            forwarding: configuration.forwarding, cacheSize: configuration.cacheSize, client: client, cug: configuration.cug, pool: pool, poolV6: poolV6, fetchers: fetchers, timeout: timeout, logger: logger,
            verdictSource: configuration.policy == .server ? configuration.identities[.default]!.home : nil, kernel: kernel,
            store: store, allowedClients: configuration.dnsAllow.map(AllowedClients.init) ?? AllowedClients())
        var channels: [any Channel] = []
        var endpointChannel: (any Channel)?
        var receivingEndpoint: ReceivingEndpoint?
        let dnsServer: DNSServer
        do {
            dnsServer = try await configuration.starting("dns") {
                try await DNSServer.bind(
                    host: configuration.dns.address.description, port: configuration.dns.port, group: group,
                    responder: ResponderBox(dnsProxy), onReopen: { [logger] line in logger.warning("\(line)") })
            }
            let sender = TunnelSender(
                destination: .intercept(pools), contexts: clientContexts, tunnelPort: configuration.tunnelPort, timeout: timeout,
                sessions: sessions, logger: logger)
            if let kernel {
                let diverted = TunnelSender(
                    destination: .original(kernel), contexts: clientContexts, tunnelPort: configuration.tunnelPort, timeout: timeout,
                    sessions: sessions, logger: logger)
                for host in ["0.0.0.0", "::"] {
                    channels.append(try await configuration.starting("divert-port", binding: (host, kernel.divertPort)) {
                        try await diverted.listen(host: host, port: kernel.divertPort, group: group)
                    })
                }
            }
            let hosts: [String]
            switch configuration.interceptBind {
            case .wildcard: hosts = ["0.0.0.0"] + (poolV6 == nil ? [] : ["::"])
            case .each: hosts = (configuration.pool + configuration.poolV6).map(\.description)
            }
            for host in hosts {
                for port in configuration.ports {
                    channels.append(try await configuration.starting(configuration.interceptBind == .each ? "pool" : "ports", binding: (host, port)) {
                        try await sender.listen(host: host, port: port, group: group)
                    })
                }
            }
            if let endpoint = configuration.endpoint, let inbound = configuration.inbound {
                let receiving = ReceivingEndpoint(
                    context: try TLSContext(role: .server, identity: identities[.default]!), fetcher: fetchers[.default]!,
                    inbound: inbound, forward: configuration.forward, timeout: timeout, sessions: sessions, logger: logger)
                let channel = try await configuration.starting("endpoint", binding: (endpoint.address.description, endpoint.port)) {
                    try await receiving.listen(host: endpoint.address.description, port: endpoint.port, group: group)
                }
                channels.append(channel)
                endpointChannel = channel
                receivingEndpoint = receiving
            }
            if let control = configuration.control {
                let pinger = Pinger(
                    dnsProxy: dnsProxy, contexts: clientContexts, tunnelPort: configuration.tunnelPort, timeout: timeout, pools: pools,
                    kernel: kernel, group: group)
                channels.append(try await configuration.starting("control") {
                    try await ControlSocket.serve(at: control, group: group) { [kernel, sessions] request in
                        // {"op":"ping","name":NAME}, or anything else: the status.
                        let asked = try? JSONDecoder().decode([String: String].self, from: request)
                        if asked?["op"] == "ping" {
                            guard let text = asked?["name"], let name = try? DomainName(text.hasSuffix(".") ? text : text + ".") else {
                                return (try? JSONEncoder().encode(PingReport(name: asked?["name"] ?? ""))) ?? Data("{}".utf8)
                            }
                            return (try? JSONEncoder().encode(await pinger.ping(name))) ?? Data("{}".utf8)
                        }
                        return (try? JSONEncoder().encode(Self.status(pools: pools, kernel: kernel, sessions: sessions))) ?? Data("{}".utf8)
                    }
                })
            }
        } catch {
            for channel in channels { try? await channel.close() }
            kernel?.stop()
            await client.close()
            throw error
        }
        return ProxyService(
            configuration: configuration, dnsProxy: dnsProxy, pool: pool, sessions: sessions, channels: channels, dnsServer: dnsServer,
            endpointChannel: endpointChannel, endpoint: receivingEndpoint, client: client, kernel: kernel,
            keyWatch: KeyWatch(
                pools: pools, kernel: kernel, fetchers: fetchers, sessions: sessions, store: store,
                logger: logger))
    }

    /// Sets the gauges from the tables (called when `/metrics` is scraped).
    public func updateGauges() {
        gauges.intercepts.record(keyWatch.pools.reduce(0) { $0 + $1.mappings.count })
        gauges.diverted.record(kernel?.mappings.count ?? 0)
        let all = sessions.all
        gauges.tunnelsOut.record(all.filter { $0.direction == "out" }.count)
        gauges.tunnelsIn.record(all.filter { $0.direction == "in" }.count)
        let v4 = keyWatch.pools.filter { !$0.isIPv6 }
        let v6 = keyWatch.pools.filter(\.isIPv6)
        gauges.used4.record(v4.reduce(0) { $0 + $1.mappings.count })
        gauges.total4.record(v4.reduce(0) { $0 + $1.capacity })
        gauges.used6.record(v6.reduce(0) { $0 + $1.mappings.count })
        gauges.total6.record(v6.reduce(0) { $0 + $1.capacity })
        gauges.build.record(1)
    }

    /// The `# HELP` texts of the proxy's metrics.
    public static var metricsHelp: [String: String] { ProxyMetrics.help }

    /// One pass of `KeyWatch` now (what the `key-refresh` timer does).
    func refreshKeys() async -> [KeyWatch.Change] { await keyWatch.pass() }

    /// What SIGHUP does: reads the configuration file again and puts its CUG table and inbound
    /// table in force. Live mappings and tunnels are kept. A file that no longer reads leaves
    /// everything as it was. Other directives (addresses, pools, identities) need a restart.
    /// Returns one line per part, for the log.
    public func reload() -> [String] {
        let fresh: ProxyConfiguration
        do { fresh = try ProxyConfiguration(path: configuration.path) } catch {
            return ["kept the tables in force: \(error)"]
        }
        dnsProxy.cug.value = fresh.cug
        var done = ["cug: \(fresh.cug.rows.count) rows"]
        if let endpoint, let inbound = fresh.inbound {
            endpoint.inbound.value = inbound
            done.append("inbound: \(inbound.rows.count) rows")
        }
        return done
    }

    /// Stops serving; removes the kernel diversion table.
    public func stop() async {
        refreshing.cancel()
        await dnsServer.close()
        for channel in channels { try? await channel.close() }
        kernel?.stop()
        await client.close()
    }

    /// What `kms-proxy status` prints.
    public struct Status: Codable, Sendable {
        public struct MappingRow: Codable, Sendable {
            public let intercept: String
            public let peer: String
            public let addresses: [String]
            /// The peer's key in wire form, as the hierarchy vouched for it.
            public let key: String
            public let path: String
            /// This host's identity the path presents.
            public let identity: String
            public let expiresIn: Int
            public let liveConnections: Int
            /// Until when the countersignature over `key` is valid (seconds since the epoch).
            public let keyValidUntil: Int64
            /// `intercept` (an intercept address) or `kernel` (the peer's own address, diverted).
            public let kind: String
            public let revoked: Bool
        }

        public let mappings: [MappingRow]
        public let sessions: [Session]
    }

    public func status() -> Status { Self.status(pools: keyWatch.pools, kernel: kernel, sessions: sessions) }

    static func status(pools: [InterceptPool], kernel: KernelDiversion?, sessions: Sessions) -> Status {
        let now = Date().timeIntervalSince1970
        func row(_ mapping: Mapping, kind: String) -> Status.MappingRow {
            Status.MappingRow(
                intercept: mapping.intercept.description, peer: mapping.peer.text, addresses: mapping.peerAddresses.map(\.description),
                key: KeyField.encode(mapping.key), path: "\(mapping.settings)", identity: mapping.settings.identity.rawValue,
                expiresIn: Int(mapping.expiresAt - now), liveConnections: mapping.liveConnections, keyValidUntil: mapping.keyNotAfter,
                kind: kind, revoked: mapping.revoked)
        }
        return Status(
            mappings: pools.flatMap(\.mappings).map { row($0, kind: "intercept") } + (kernel?.mappings ?? []).map { row($0, kind: "kernel") },
            sessions: sessions.all)
    }

    public static func status(control: String, group: any EventLoopGroup) async throws -> Status {
        try await ControlSocket.send(["op": "status"], expecting: Status.self, to: control, group: group)
    }

    /// Asks a running proxy to ping `name` (`Pinger`).
    public static func ping(_ name: String, control: String, group: any EventLoopGroup) async throws -> PingReport {
        try await ControlSocket.send(["op": "ping", "name": name], expecting: PingReport.self, to: control, group: group)
    }
}

extension ProxyConfiguration {
    /// A part of the proxy that could not start, said as a configuration error about the
    /// directive `field`, pointing at its line.
    func startError(_ field: String, _ reason: String) -> ConfigError {
        ConfigError(path: path, line: lines[field], field: field, reason: reason)
    }

    /// Runs one step of the start; a failure is reported against the directive `field`, and
    /// for a listener (`binding` TCP to `host:port`) as the bind that failed.
    func starting<T>(_ field: String, binding listener: (host: String, port: Int)? = nil, _ step: () async throws -> T) async throws -> T {
        do { return try await step() } catch let error as ConfigError { throw error } catch {
            guard let listener else { throw startError(field, "\(error)") }
            let address = listener.host.contains(":") ? "[\(listener.host)]:\(listener.port)" : "\(listener.host):\(listener.port)"
            throw startError(field, "\(BindError("TCP", address, error))")
        }
    }
}
