public import DNSWire
import KMSCrypto
public import KMSClient
public import KMSSettings
public import KMSProtocol

/// Who may call in through the receiving endpoint, and to which local ports.
///
///     # caller pattern   allowed local ports
///     *.b.a.xx.          8080 5432
public struct InboundTable: Sendable {
    public struct Row: Sendable {
        public let pattern: NamePattern
        public let ports: Set<Int>
        public let line: Int
    }

    public let rows: [Row]

    /// The ports `caller` may reach (first matching row), or nil: not in the inbound group.
    public func ports(for caller: DomainName) -> Set<Int>? { rows.first { $0.pattern.matches(caller) }?.ports }

    public init(file: ConfigFile) throws(ConfigError) {
        var rows: [Row] = []
        for directive in file.directives {
            guard let pattern = NamePattern(directive.name) else {
                throw file.error(directive, "not a name pattern (name.example., sato.*, *.myfriends.com, *.biglobe.*)")
            }
            var ports: Set<Int> = []
            for text in try file.values(directive, count: 1, maximum: 64, usage: "PORT [PORT...]") {
                guard let port = Int(text), (1...65535).contains(port) else { throw file.error(directive, "'\(text)' is not a port") }
                ports.insert(port)
            }
            rows.append(Row(pattern: pattern, ports: ports, line: directive.line))
        }
        self.rows = rows
    }
}

/// The configuration of `kms-proxy`.
///
///     dns            127.0.0.1:5300              # where applications send their DNS queries
///     dns-allow      10.0.0.0/8 fd00::/8         # who may query it (repeat; any: everyone;
///                                                #   default: this host and its networks)
///     upstream       127.0.0.1:5303              # default: the home KMS of the default identity
///     hierarchy-zone xx.                         # names for the KMS (repeat; default: the home KMS's top zone)
///     forward-zone   corp.example. 10.0.0.53     # a zone with servers of its own (repeat)
///     resolver       9.9.9.9                     # every other name (repeat; default: /etc/resolv.conf)
///     cache-size     10000                       # answers kept for names outside the hierarchy (0: none)
///     identity       default hosta.conf          # ID and host configuration (repeat)
///     cug            cug.conf                    # outbound Closed User Group table
///     pool           127.100.0.1 250             # intercept addresses: first, count
///     lifetime       300s                        # how long a mapping lives after a resolution
///     key-refresh    60s                         # how often the keys of mapped peers are fetched again
///     ports          8080 5432                   # destination ports carried through tunnels (none: endpoint only)
///     intercept-bind wildcard                    # wildcard (0.0.0.0:PORT) or each (one socket per pool address)
///     tunnel-port    8443                        # where peers' receiving endpoints listen
///     endpoint       127.0.0.11:8443             # this host's receiving endpoint (optional)
///     inbound        inbound.conf                # who may call in, to which ports
///     forward        127.0.0.1                   # where the endpoint delivers inbound connections
///     control        ../run/proxy.control        # `kms-proxy status`
///     store          ../run/proxy.sqlite         # live mappings survive a restart
///     policy         local                       # or server: the home KMS's signed kms1:cug verdicts decide
///     divert-port    15001                       # enables `kernel` rows: nftables redirects peers' addresses here
public struct ProxyConfiguration: Sendable {
    public enum InterceptBind: String, Sendable { case wildcard, each }

    public var path: String
    public var dns: Endpoint
    /// The networks whose hosts may query `dns` (`dns-allow`); nil: this host and the networks
    /// of its interfaces as they change (`AllowedClients`; as BIND's `localhost; localnets`).
    public var dnsAllow: [(address: IPAddress, length: Int)]?
    public var upstream: Endpoint
    /// Split DNS: the hierarchy's zones (to `upstream`), other zones with servers of their own,
    /// and the resolvers for every other name.
    public var forwarding: Forwarding
    public var cacheSize: Int
    public var identities: [Identity: HostConfiguration]
    public var cug: CUGTable
    public var pool: [IPAddress]
    public var poolV6: [IPAddress]
    public var lifetime: Double
    public var ports: [Int]
    public var interceptBind: InterceptBind
    public var tunnelPort: Int
    public var endpoint: Endpoint?
    public var inbound: InboundTable?
    public var forward: IPAddress
    public var control: String?
    /// Where live mappings and diversions are kept across restarts (`ProxyStore`).
    public var store: String?
    public var timeout: Double
    /// How often the keys behind live mappings are fetched again (`KeyWatch`).
    public var keyRefresh: Double
    /// Where CUG verdicts come from: this proxy's `cug` table, or the home KMS's signed
    /// `kms1:cug` records (second embodiment).
    public var policy: PolicyMode
    /// With a port: rows with protocol `kernel` are carried by kernel diversion (nftables)
    /// redirecting to this local port (first embodiment). Needs root.
    public var divertPort: Int?
    /// The line of each directive (its first), for errors found at start (a busy port).
    public var lines: [String: Int]

    public enum PolicyMode: String, Sendable { case local, server }

    static let directives: Set<String> = [
        "dns", "dns-allow", "upstream", "hierarchy-zone", "forward-zone", "resolver", "cache-size", "identity", "cug", "pool", "pool-v6", "lifetime", "ports", "intercept-bind", "tunnel-port",
        "endpoint", "inbound", "forward", "control", "timeout", "policy", "divert-port", "key-refresh", "store",
    ]

    public init(path: String) throws(ConfigError) {
        let file = try ConfigFile(path: path)
        try file.requireKnown(Self.directives)
        self.path = path
        lines = file.firstLines
        let dnsDirective = try file.one("dns")!
        dns = try file.endpoint(try file.values(dnsDirective, count: 1, usage: "ADDRESS:PORT")[0], dnsDirective)
        let allowDirectives = file.all("dns-allow")
        if allowDirectives.isEmpty {
            dnsAllow = nil
        } else {
            var allowed: [(address: IPAddress, length: Int)] = []
            for directive in allowDirectives {
                for text in try file.values(directive, count: 1, maximum: 64, usage: "ADDRESS[/LENGTH]... | any") {
                    if text == "any" {
                        allowed += [(IPAddress("0.0.0.0")!, 0), (IPAddress("::")!, 0)]
                    } else {
                        allowed.append(try file.prefix(text, directive))
                    }
                }
            }
            dnsAllow = allowed
        }

        var identities: [Identity: HostConfiguration] = [:]
        for directive in file.all("identity") {
            let values = try file.values(directive, count: 2, usage: "ID HOST-CONFIG")
            do { identities[Identity(values[0])] = try HostConfiguration(path: file.resolve(values[1])) } catch {
                throw file.error(directive, "\(error)")
            }
        }
        guard let defaultIdentity = identities[.default] else {
            throw ConfigError(path: path, line: nil, field: "identity", reason: "missing the identity named default")
        }
        self.identities = identities
        if let directive = try file.one("upstream", required: false) {
            upstream = try file.endpoint(try file.values(directive, count: 1, usage: "ADDRESS:PORT")[0], directive)
        } else {
            upstream = defaultIdentity.home.endpoint
        }
        var hierarchy = try file.all("hierarchy-zone").map { (directive) throws(ConfigError) in
            try file.name(try file.values(directive, count: 1, usage: "NAME")[0], directive)
        }
        if hierarchy.isEmpty {
            // The whole hierarchy the home KMS belongs to (its top zone short of the root, as
            // for a node's default signer), and the trust anchors' zones.
            var top = defaultIdentity.home.name
            while let parent = top.parent, parent != .root { top = parent }
            hierarchy = [top] + defaultIdentity.anchors.anchors.map(\.name).filter { !$0.isEqualOrSubdomain(of: top) }
        }
        var forwardZones: [(DomainName, [Endpoint])] = []
        for directive in file.all("forward-zone") {
            let values = try file.values(directive, count: 2, maximum: 9, usage: "NAME SERVER [SERVER...]")
            var servers: [Endpoint] = []
            for text in values.dropFirst() { servers.append(try file.server(text, directive)) }
            forwardZones.append((try file.name(values[0], directive), servers))
        }
        var resolvers: [Endpoint] = []
        for directive in file.all("resolver") {
            resolvers.append(try file.server(try file.values(directive, count: 1, usage: "ADDRESS[:PORT]")[0], directive))
        }
        if resolvers.isEmpty { resolvers = ResolvConf.nameservers(excluding: [dns]) }
        forwarding = Forwarding(hierarchy: hierarchy, kms: upstream, forwardZones: forwardZones, resolvers: resolvers)
        if let directive = try file.one("cache-size", required: false) {
            guard let size = Int(try file.values(directive, count: 1, usage: "COUNT")[0]), (0...10_000_000).contains(size) else {
                throw file.error(directive, "expected a count of answers, 0 to 10000000")
            }
            cacheSize = size
        } else {
            cacheSize = 10_000
        }
        if let directive = try file.one("policy", required: false) {
            let text = try file.values(directive, count: 1, usage: "local|server")[0]
            guard let mode = PolicyMode(rawValue: text) else { throw file.error(directive, "'\(text)' is neither local nor server") }
            policy = mode
        } else {
            policy = .local
        }
        if let directive = try file.one("divert-port", required: false) {
            guard let port = Int(try file.values(directive, count: 1, usage: "PORT")[0]), (1...65535).contains(port) else {
                throw file.error(directive, "not a port")
            }
            divertPort = port
        } else {
            divertPort = nil
        }
        if let cugDirective = try file.one("cug", required: policy == .local) {
            let cugPath = file.resolve(try file.values(cugDirective, count: 1, usage: "PATH")[0])
            // The table's own errors name its file and line; `kernel` rows need divert-port.
            cug = try CUGTable(
                file: try ConfigFile(path: cugPath), identities: Set(identities.keys),
                protocols: divertPort == nil ? [.tls] : [.tls, .kernel])
        } else {
            cug = CUGTable(rows: [])
        }
        let poolDirective = try file.one("pool")!
        let poolValues = try file.values(poolDirective, count: 2, usage: "FIRST-ADDRESS COUNT")
        let first = try file.address(poolValues[0], poolDirective)
        guard !first.isIPv6, let count = Int(poolValues[1]), (1...65536).contains(count) else {
            throw file.error(poolDirective, "expected an IPv4 address and a count of 1...65536")
        }
        pool = InterceptPool.addresses(from: first, count: count)
        if let directive = try file.one("pool-v6", required: false) {
            let values = try file.values(directive, count: 2, usage: "FIRST-ADDRESS COUNT")
            let firstV6 = try file.address(values[0], directive)
            guard firstV6.isIPv6, let countV6 = Int(values[1]), (1...65536).contains(countV6) else {
                throw file.error(directive, "expected an IPv6 address and a count of 1...65536")
            }
            poolV6 = InterceptPool.addresses(from: firstV6, count: countV6)
        } else {
            poolV6 = []
        }
        lifetime = try file.one("lifetime", required: false).map(file.duration) ?? 300
        var ports: [Int] = []
        if let portsDirective = try file.one("ports", required: false) {
            for text in try file.values(portsDirective, count: 1, maximum: 64, usage: "PORT [PORT...]") {
                guard let port = Int(text), (1...65535).contains(port) else { throw file.error(portsDirective, "'\(text)' is not a port") }
                ports.append(port)
            }
        }
        self.ports = ports
        if let directive = try file.one("intercept-bind", required: false) {
            let text = try file.values(directive, count: 1, usage: "wildcard|each")[0]
            guard let bind = InterceptBind(rawValue: text) else { throw file.error(directive, "'\(text)' is neither wildcard nor each") }
            interceptBind = bind
        } else {
            interceptBind = .wildcard
        }
        if let directive = try file.one("tunnel-port", required: false) {
            guard let port = Int(try file.values(directive, count: 1, usage: "PORT")[0]), (1...65535).contains(port) else {
                throw file.error(directive, "not a port")
            }
            tunnelPort = port
        } else {
            tunnelPort = 8443
        }
        endpoint = try file.one("endpoint", required: false).map { (directive) throws(ConfigError) in
            try file.endpoint(try file.values(directive, count: 1, usage: "ADDRESS:PORT")[0], directive)
        }
        if let directive = try file.one("inbound", required: false) {
            inbound = try InboundTable(file: try ConfigFile(path: file.resolve(try file.values(directive, count: 1, usage: "PATH")[0])))
        } else {
            inbound = nil
        }
        if endpoint != nil && inbound == nil {
            throw ConfigError(path: path, line: nil, field: "inbound", reason: "an endpoint needs an inbound table (who may call in)")
        }
        if let directive = try file.one("forward", required: false) {
            forward = try file.address(try file.values(directive, count: 1, usage: "ADDRESS")[0], directive)
        } else {
            forward = IPAddress("127.0.0.1")!
        }
        control = try file.one("control", required: false).map { (directive) throws(ConfigError) in
            file.resolve(try file.values(directive, count: 1, usage: "PATH")[0])
        }
        store = try file.one("store", required: false).map { (directive) throws(ConfigError) in
            file.resolve(try file.values(directive, count: 1, usage: "PATH")[0])
        }
        timeout = try file.one("timeout", required: false).map(file.duration) ?? 5
        keyRefresh = try file.one("key-refresh", required: false).map(file.duration) ?? 60
    }
}

extension ConfigFile {
    /// A DNS server: `ADDRESS` (port 53) or `ADDRESS:PORT` (`[ADDRESS]:PORT` for IPv6).
    func server(_ text: String, _ directive: Directive) throws(ConfigError) -> Endpoint {
        if let (address, scope) = Endpoint.scopedAddress(text) { return Endpoint(address: address, port: 53, scope: scope) }
        return try endpoint(text, directive)
    }
}
