public import DNSWire
public import KMSCrypto
public import KMSSettings

/// Everything one KMS node is told at start: the patent's "initial holding data" (its name and
/// key, its parent, its children) plus where to listen, where to keep its store, and its limits.
public struct NodeConfiguration: Sendable {
    /// A host registered from the configuration file when the store does not know it yet.
    public struct SeedHost: Sendable {
        public let name: DomainName
        public let key: PublicKey
        public let addresses: [IPAddress]
    }

    public var path: String
    public var zone: DomainName
    public var listen: Endpoint
    public var key: PrivateKey
    public var database: String
    public var control: String
    public var parent: Peer?
    public var children: [Peer]
    public var anchors: TrustAnchors
    public var hosts: [SeedHost]
    public var txt: [DomainName: [[UInt8]]]
    public var defaultSigner: DomainName
    public var allowAnonymous: Bool
    public var upstreamTimeout: Double
    public var cacheMaxAge: Double
    public var countersignatureValidity: Double
    public var replayWindow: Double
    public var replayMemory: Int
    /// The CUG setting database (second embodiment), if this node keeps one.
    public var policy: String?
    /// The line of each directive (its first, where it repeats), so that errors found after
    /// reading (a busy port, a locked database) can point at it.
    public var lines: [String: Int]

    static let directives: Set<String> = [
        "zone", "listen", "key", "database", "control", "parent", "child", "anchor", "host", "txt",
        "default-signer", "anonymous", "upstream-timeout", "cache-max-age", "countersig-validity",
        "replay-window", "replay-memory", "policy",
    ]

    /// Reads and checks a node configuration file. Every problem is reported as
    /// `file:line: directive: reason`.
    public init(file: ConfigFile) throws(ConfigError) {
        try file.requireKnown(Self.directives)
        path = file.path
        lines = file.firstLines
        let zoneDirective = try file.one("zone")!
        zone = try file.name(try file.values(zoneDirective, count: 1, usage: "NAME")[0], zoneDirective)
        let listenDirective = try file.one("listen")!
        listen = try file.endpoint(try file.values(listenDirective, count: 1, usage: "ADDRESS:PORT")[0], listenDirective)
        let keyDirective = try file.one("key")!
        key = try file.privateKey(try file.values(keyDirective, count: 1, usage: "PATH")[0], keyDirective)
        let databaseDirective = try file.one("database")!
        database = file.resolve(try file.values(databaseDirective, count: 1, usage: "PATH")[0])
        control = try file.nodeControlSocket()

        let zone = zone
        if let directive = try file.one("parent", required: false) {
            let peer = try file.peer(directive)
            guard zone.isSubdomain(of: peer.name) else {
                throw file.error(directive, "\(peer.name) is not above \(zone)")
            }
            parent = peer
        } else {
            parent = nil
        }
        var children: [Peer] = []
        for directive in file.all("child") {
            let peer = try file.peer(directive)
            guard peer.name.isSubdomain(of: zone) else {
                throw file.error(directive, "\(peer.name) is not below \(zone)")
            }
            guard !children.contains(where: { $0.name == peer.name }) else {
                throw file.error(directive, "\(peer.name) given twice")
            }
            children.append(peer)
        }
        self.children = children

        var anchors: [TrustAnchors.Anchor] = []
        for directive in file.all("anchor") {
            let values = try file.values(directive, count: 2, usage: "NAME KEY")
            anchors.append(.init(name: try file.name(values[0], directive), key: try file.publicKey(values[1], directive)))
        }
        self.anchors = TrustAnchors(anchors)

        var hosts: [SeedHost] = []
        for directive in file.all("host") {
            let values = try file.values(directive, count: 3, maximum: 18, usage: "NAME KEY ADDRESS [ADDRESS...]")
            let name = try file.name(values[0], directive)
            guard name.isSubdomain(of: zone) else { throw file.error(directive, "\(name) is not in zone \(zone)") }
            if let child = children.first(where: { name.isEqualOrSubdomain(of: $0.name) }) {
                throw file.error(directive, "\(name) is in the child zone \(child.name), register it there")
            }
            var addresses: [IPAddress] = []
            for text in values.dropFirst(2) { addresses.append(try file.address(text, directive)) }
            hosts.append(SeedHost(name: name, key: try file.publicKey(values[1], directive), addresses: addresses))
        }
        self.hosts = hosts

        var txt: [DomainName: [[UInt8]]] = [:]
        for directive in file.all("txt") {
            let values = try file.values(directive, count: 2, maximum: 32, usage: "NAME \"TEXT\" [\"TEXT\"...]")
            let name = try file.name(values[0], directive)
            guard name.isEqualOrSubdomain(of: zone) else { throw file.error(directive, "\(name) is not in zone \(zone)") }
            let strings = values.dropFirst().map { Array($0.utf8) }
            if let long = strings.first(where: { $0.count > 255 }) {
                throw file.error(directive, "a TXT string is at most 255 bytes, this one is \(long.count)")
            }
            if strings.first?.starts(with: Array("kms1:".utf8)) == true {
                throw file.error(directive, "ordinary TXT data may not start with the kms1: prefix")
            }
            txt[name, default: []] += strings
        }
        self.txt = txt

        if let directive = try file.one("default-signer", required: false) {
            defaultSigner = try file.name(try file.values(directive, count: 1, usage: "NAME")[0], directive)
        } else {
            defaultSigner = Self.topZone(of: zone)
        }
        allowAnonymous = try file.one("anonymous", required: false).map { (d) throws(ConfigError) in
            try file.flag(d, yes: "allow", no: "refuse")
        } ?? true
        upstreamTimeout = try file.one("upstream-timeout", required: false).map(file.duration) ?? 2
        cacheMaxAge = try file.one("cache-max-age", required: false).map(file.duration) ?? 3600
        countersignatureValidity = try file.one("countersig-validity", required: false).map(file.duration) ?? 86400
        replayWindow = try file.one("replay-window", required: false).map(file.duration) ?? 300
        replayMemory = 1_000_000
        policy = try file.one("policy", required: false).map { (directive) throws(ConfigError) in
            file.resolve(try file.values(directive, count: 1, usage: "PATH")[0])
        }
        if let directive = try file.one("replay-memory", required: false) {
            guard let count = Int(try file.values(directive, count: 1, usage: "COUNT")[0]), count >= 1000 else {
                throw file.error(directive, "expected a count of at least 1000 nonces")
            }
            replayMemory = count
        }
    }

    /// The highest zone above `zone` short of the DNS root: the root of a KMS hierarchy
    /// unless configured otherwise (`xx.` for `b.a.xx.`).
    static func topZone(of zone: DomainName) -> DomainName {
        var top = zone
        while let parent = top.parent, parent != .root { top = parent }
        return top
    }

    /// Reads the file at `path`.
    public init(path: String) throws(ConfigError) {
        try self.init(file: ConfigFile(path: path))
    }
}
