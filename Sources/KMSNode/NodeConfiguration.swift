import Foundation
public import DNSTransport
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
    /// The zone's name servers (NS at the apex; addresses served and given as glue).
    public var nameServers: [(name: DomainName, addresses: [IPAddress])]
    /// Who may transfer the zone (AXFR/IXFR): addresses or prefixes.
    public var secondaries: [(address: IPAddress, length: Int)]
    /// Whether registered hosts may rotate their own keys (`self-rotation allow|refuse`).
    public var selfRotation: Bool
    /// The TSIG key zone transfers must be signed with (`transfer-key FILE`), if any.
    public var transferKey: TSIGKey?
    /// Where to send NOTIFY when the serial moves (RFC 1996).
    public var notify: [Endpoint]
    /// Signers whose countersignatures of every registered host this node publishes as zone
    /// data (`_kms1.<host>` TXT, docs/PROTOCOL.md).
    public var staticSigners: [DomainName]
    /// The SOA MINIMUM, seconds: how long resolvers may cache a negative answer (RFC 2308).
    public var negativeAnswerTTL: Double
    /// What this server calls itself (`identity`), for an operator telling nodes apart behind
    /// one address: the NSID option (RFC 5001) and `id.server` / `hostname.bind` CH TXT, as
    /// NSD and Knot answer them. Nil: neither is answered.
    public var identity: String?
    /// Encoded replies kept for queries the same up to ID and case (`ReplyCache`); 0: none.
    public var replyCache: Int
    /// Flood limits (docs/OPERATING.md, "limits"): what one client may make this node spend.
    public var limits: Limits
    /// The line of each directive (its first, where it repeats), so that errors found after
    /// reading (a busy port, a locked database) can point at it.
    public var lines: [String: Int]

    static let directives: Set<String> = [
        "zone", "listen", "key", "database", "control", "parent", "child", "anchor", "host", "txt",
        "default-signer", "anonymous", "upstream-timeout", "cache-max-age", "countersig-validity",
        "replay-window", "replay-memory", "policy",
        "verify-rate", "sender-rate", "verify-failures", "unproven-failures", "anonymous-rate", "unproven-fetches", "rate-prefix", "rate-slip", "upstream-inflight",
        "negative-ttl", "trace-allow", "reply-cache", "nameserver", "soa-minimum", "identity",
        "secondary", "notify", "static-signers", "transfer-key", "self-rotation",
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
        limits = try Limits(file: file)
        var nameServers: [(name: DomainName, addresses: [IPAddress])] = []
        for directive in file.all("nameserver") {
            let values = try file.values(directive, count: 1, maximum: 17, usage: "NAME [ADDRESS...]")
            let name = try file.name(values[0], directive)
            var addresses: [IPAddress] = []
            for text in values.dropFirst() { addresses.append(try file.address(text, directive)) }
            if name.isEqualOrSubdomain(of: zone) && addresses.isEmpty {
                throw file.error(directive, "\(name) is in \(zone): give its addresses (they are the zone's glue)")
            }
            nameServers.append((name, addresses))
        }
        if nameServers.isEmpty {
            // kms.<zone> at the listening address, unless that is the wildcard.
            let unspecified = listen.address.bytes.allSatisfy { $0 == 0 }
            nameServers = [(Zone.defaultNameServer(of: zone), unspecified ? [] : [listen.address])]
        }
        self.nameServers = nameServers
        negativeAnswerTTL = try file.one("soa-minimum", required: false).map(file.duration) ?? 60
        if let directive = try file.one("identity", required: false) {
            let text = try file.values(directive, count: 1, usage: "TEXT")[0]
            guard text.utf8.count <= 64, text.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
                throw file.error(directive, "'\(text)' is not 1 to 64 printable ASCII characters")
            }
            identity = text
        } else {
            identity = nil
        }
        selfRotation = try file.one("self-rotation", required: false).map { (d) throws(ConfigError) in
            try file.flag(d, yes: "allow", no: "refuse")
        } ?? true
        var secondaries: [(address: IPAddress, length: Int)] = []
        for directive in file.all("secondary") {
            for text in try file.values(directive, count: 1, maximum: 64, usage: "ADDRESS[/LENGTH] ...") {
                secondaries.append(try file.prefix(text, directive))
            }
        }
        self.secondaries = secondaries
        transferKey = try file.one("transfer-key", required: false).map { (directive) throws(ConfigError) in
            try Self.tsigKey(file.resolve(try file.values(directive, count: 1, usage: "FILE")[0]), directive, in: file)
        }
        var notify: [Endpoint] = []
        for directive in file.all("notify") {
            for text in try file.values(directive, count: 1, maximum: 64, usage: "ADDRESS:PORT ...") {
                notify.append(try file.endpoint(text, directive))
            }
        }
        self.notify = notify
        if let directive = try file.one("static-signers", required: false) {
            let values = try file.values(directive, count: 1, maximum: 16, usage: "NAME... | none")
            if values == ["none"] {
                staticSigners = []
            } else {
                var signers: [DomainName] = []
                for text in values {
                    let signer = try file.name(text, directive)
                    guard zone.isEqualOrSubdomain(of: signer) else {
                        throw file.error(directive, "\(signer) is not \(zone) or above it: only KMSs on the path to the root countersign its hosts")
                    }
                    signers.append(signer)
                }
                staticSigners = signers
            }
        } else {
            staticSigners = [defaultSigner]
        }
        replyCache = 10_000
        if let directive = try file.one("reply-cache", required: false) {
            let value = try file.values(directive, count: 1, usage: "COUNT | off")[0]
            if value == "off" {
                replyCache = 0
            } else {
                guard let count = Int(value), count >= 1 else { throw file.error(directive, "expected a count of replies, or off") }
                replyCache = count
            }
        }
    }

    /// A TSIG key file: one line `ALGORITHM:NAME:SECRET`, as `dig -y` takes it
    /// (`hmac-sha256:xfr.c.a.xx.:base64…`); `#` lines are comments.
    static func tsigKey(_ path: String, _ directive: ConfigFile.Directive, in file: ConfigFile) throws(ConfigError) -> TSIGKey {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw file.error(directive, "cannot read the key file \(path)")
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        guard let (index, line) = lines.enumerated().first(where: { !$0.element.trimmingCharacters(in: .whitespaces).isEmpty && !$0.element.hasPrefix("#") }) else {
            throw file.error(directive, "\(path): no key in the file")
        }
        let parts = line.trimmingCharacters(in: .whitespaces).split(separator: ":", maxSplits: 2).map(String.init)
        guard parts.count == 3, TSIGKey.algorithms.contains(parts[0]) else {
            throw file.error(directive, "\(path):\(index + 1): expected ALGORITHM:NAME:SECRET with ALGORITHM one of \(TSIGKey.algorithms.joined(separator: ", "))")
        }
        guard let name = try? DomainName(parts[1].hasSuffix(".") ? parts[1] : parts[1] + "."), let secret = Data(base64Encoded: parts[2]), secret.count >= 16 else {
            throw file.error(directive, "\(path):\(index + 1): the key needs a name and a base64 secret of at least 16 bytes")
        }
        return TSIGKey(name: name, algorithm: parts[0], secret: parts[2])
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

/// What one client may make a node spend, checked before the work (PROTOCOL.md's admission
/// comes first; these come before any signature is verified or made, or any upstream fetch).
public struct Limits: Sendable {
    /// Signature verifies per client prefix over UDP (per address over TCP).
    public var verifyRate: Rate? = Rate(perSecond: 2000)
    /// Verifies per registered host, whatever address it writes from.
    public var senderRate: Rate? = Rate(perSecond: 1000)
    /// Failed verifies per client prefix (per address over TCP); past them, no more verifies.
    public var verifyFailures: Rate? = Rate(perSecond: 10, burst: 50)
    /// Failed verifies for the whole node, summed over every UDP client whose address neither
    /// TCP nor a DNS cookie proved: a spoofed flood from many prefixes stays within each
    /// prefix's budget but not within this one. Past it, such clients are sent to TCP.
    public var unprovenFailures: Rate? = Rate(perSecond: 100, burst: 1000)
    /// Anonymous key answers (each a fresh signature, maybe upstream work) per client prefix.
    public var anonymousRate: Rate? = Rate(perSecond: 200)
    /// Upstream fetches for anonymous UDP queries whose address neither TCP nor a DNS cookie
    /// proved, for the whole node: each costs a signature and a verify at every hop, and a
    /// flood of random names from forged addresses asks for nothing but these. Past it, such
    /// queries are sent to TCP.
    public var unprovenFetches: Rate? = Rate(perSecond: 100, burst: 200)
    /// How much of a client's address the limits key on over UDP.
    public var prefix = PrefixLengths(v4: 24, v6: 56)
    /// Of the UDP queries turned away for a budget, one in this many gets TC=1 and the rest
    /// nothing (RRL's slip; BIND's and NSD's default). 1 answers every one, 0 none.
    public var slip = 2
    /// Upstream fetches in flight, for the whole node and for one client prefix.
    public var upstreamInFlight = 1024
    public var upstreamInFlightPerClient = 64
    /// How long an upstream's "unresolved" is remembered, in seconds.
    public var negativeTTL: Double = 10
    /// Who may have the hop trace (besides loopback and this node's parent and children).
    public var traceAllow: [(address: IPAddress, length: Int)] = []

    public init() {}

    init(file: ConfigFile) throws(ConfigError) {
        func rate(_ name: String, default value: Rate?) throws(ConfigError) -> Rate? {
            guard let directive = try file.one(name, required: false) else { return value }
            let values = try file.values(directive, count: 1, maximum: 2, usage: "PER-SECOND [BURST] | off")
            if values == ["off"] { return nil }
            guard let perSecond = Double(values[0]), perSecond > 0 else {
                throw file.error(directive, "'\(values[0])' is not a rate per second (a positive number, or off)")
            }
            guard values.count == 2 else { return Rate(perSecond: perSecond) }
            guard let burst = Double(values[1]), burst >= 1 else {
                throw file.error(directive, "'\(values[1])' is not a burst (a number of at least 1)")
            }
            return Rate(perSecond: perSecond, burst: burst)
        }
        verifyRate = try rate("verify-rate", default: verifyRate)
        senderRate = try rate("sender-rate", default: senderRate)
        verifyFailures = try rate("verify-failures", default: verifyFailures)
        unprovenFailures = try rate("unproven-failures", default: unprovenFailures)
        anonymousRate = try rate("anonymous-rate", default: anonymousRate)
        unprovenFetches = try rate("unproven-fetches", default: unprovenFetches)
        if let directive = try file.one("rate-prefix", required: false) {
            let values = try file.values(directive, count: 2, usage: "V4-LENGTH V6-LENGTH (like 24 56)")
            guard let v4 = Int(values[0]), (8...32).contains(v4), let v6 = Int(values[1]), (16...128).contains(v6) else {
                throw file.error(directive, "expected an IPv4 prefix length 8-32 and an IPv6 one 16-128, like 24 56")
            }
            prefix = PrefixLengths(v4: v4, v6: v6)
        }
        if let directive = try file.one("rate-slip", required: false) {
            let values = try file.values(directive, count: 1, usage: "N (1 in N over-budget UDP queries gets TC=1; 1 every one, 0 none)")
            guard let every = Int(values[0]), (0...10).contains(every) else {
                throw file.error(directive, "'\(values[0])' is not a slip: a whole number from 0 (never TC=1) to 10; 2 sends every second one to TCP")
            }
            slip = every
        }
        if let directive = try file.one("upstream-inflight", required: false) {
            let values = try file.values(directive, count: 2, usage: "TOTAL PER-CLIENT (like 1024 64)")
            guard let total = Int(values[0]), total >= 1, let each = Int(values[1]), (1...total).contains(each) else {
                throw file.error(directive, "expected two counts, the node's total and one client's share (at most the total)")
            }
            upstreamInFlight = total
            upstreamInFlightPerClient = each
        }
        negativeTTL = try file.one("negative-ttl", required: false).map(file.duration) ?? negativeTTL
        for directive in file.all("trace-allow") {
            for text in try file.values(directive, count: 1, maximum: 64, usage: "ADDRESS[/LENGTH] ...") {
                traceAllow.append(try file.prefix(text, directive))
            }
        }
    }
}
