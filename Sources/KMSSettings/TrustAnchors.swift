public import DNSWire
public import KMSCrypto

/// The KMSs a host trusts as countersigners: (KMS name, public key) pairs.
public struct TrustAnchors: Sendable {
    public struct Anchor: Hashable, Sendable {
        public let name: DomainName
        public let key: PublicKey
        public init(name: DomainName, key: PublicKey) {
            self.name = name
            self.key = key
        }
    }

    public let anchors: [Anchor]

    public init(_ anchors: [Anchor]) { self.anchors = anchors }

    /// The anchor whose name is the closest ancestor-or-self of `target` (the patent's step 62),
    /// or nil when none covers it.
    public func closest(covering target: DomainName) -> Anchor? {
        anchors.filter { target.isEqualOrSubdomain(of: $0.name) }.max { $0.name.labelCount < $1.name.labelCount }
    }

    public func anchor(named name: DomainName) -> Anchor? { anchors.first { $0.name == name } }

    /// Reads `anchor NAME KEY` lines from a trust file (as in trust/anchors.conf).
    public init(file: ConfigFile) throws(ConfigError) {
        try file.requireKnown(["anchor"])
        var anchors: [Anchor] = []
        for directive in file.all("anchor") {
            let values = try file.values(directive, count: 2, usage: "NAME KEY")
            anchors.append(Anchor(name: try file.name(values[0], directive), key: try file.publicKey(values[1], directive)))
        }
        guard !anchors.isEmpty else {
            throw ConfigError(path: file.path, line: nil, field: "anchor", reason: "no trust anchors")
        }
        self.init(anchors)
    }
}
