public import DNSWire
public import KMSCrypto
public import KMSSettings

/// What a host knows (PROTOCOL.md section 1): its own name and key, its home KMS, and the KMSs
/// it trusts as countersigners.
///
///     name     hosta.b.a.xx.
///     key      keys/hosta.b.a.xx.pem
///     address  127.0.0.11
///     home     b.a.xx. 127.0.0.1:5352 keys/b.a.xx.pub.pem
///     trust    ../trust/anchors.conf
///     cache    ../run/hosta.b.a.xx.cache.sqlite
///     timeout  3s
public struct HostConfiguration: Sendable {
    public var path: String
    public var name: DomainName
    public var key: PrivateKey
    public var address: IPAddress
    public var home: Peer
    public var anchors: TrustAnchors
    public var cache: String?
    public var cacheMaxAge: Double
    /// A cached key older than this is asked for again before use, so a revoked key is used at
    /// most this long after its revocation while the hierarchy can be reached (seconds).
    public var revalidate: Double
    public var timeout: Double

    static let directives: Set<String> = ["name", "key", "address", "home", "trust", "anchor", "cache", "cache-max-age", "revalidate", "timeout"]

    public init(file: ConfigFile) throws(ConfigError) {
        try file.requireKnown(Self.directives)
        path = file.path
        let nameDirective = try file.one("name")!
        name = try file.name(try file.values(nameDirective, count: 1, usage: "NAME")[0], nameDirective)
        let keyDirective = try file.one("key")!
        key = try file.privateKey(try file.values(keyDirective, count: 1, usage: "PATH")[0], keyDirective)
        let addressDirective = try file.one("address")!
        address = try file.address(try file.values(addressDirective, count: 1, usage: "ADDRESS")[0], addressDirective)
        home = try file.peer(try file.one("home")!)
        var anchors: [TrustAnchors.Anchor] = []
        for directive in file.all("trust") {
            let trustPath = file.resolve(try file.values(directive, count: 1, usage: "PATH")[0])
            let trustFile: ConfigFile
            do { trustFile = try ConfigFile(path: trustPath) } catch {
                throw file.error(directive, "\(error)")
            }
            anchors += try TrustAnchors(file: trustFile).anchors
        }
        for directive in file.all("anchor") {
            let values = try file.values(directive, count: 2, usage: "NAME KEY")
            anchors.append(.init(name: try file.name(values[0], directive), key: try file.publicKey(values[1], directive)))
        }
        guard !anchors.isEmpty else {
            throw ConfigError(path: file.path, line: nil, field: "trust", reason: "no trust anchors (add a trust or anchor line)")
        }
        self.anchors = TrustAnchors(anchors)
        cache = try file.one("cache", required: false).map { (directive) throws(ConfigError) in
            file.resolve(try file.values(directive, count: 1, usage: "PATH")[0])
        }
        cacheMaxAge = try file.one("cache-max-age", required: false).map(file.duration) ?? 3600
        revalidate = try file.one("revalidate", required: false).map(file.duration) ?? 300
        timeout = try file.one("timeout", required: false).map(file.duration) ?? 3
    }

    public init(path: String) throws(ConfigError) {
        try self.init(file: ConfigFile(path: path))
    }
}
