public import DNSWire
import Foundation
public import KMSSettings

/// Where each name's questions go: split DNS, as Unbound's `forward-zone` and dnsmasq's
/// `server=/zone/` do it. The most specific zone wins:
///
/// - the zones of the KMS hierarchy (`hierarchy-zone`, by default the names of the default
///   identity's trust anchors) go to the home KMS (`upstream`), with the CUG and key machinery;
/// - `forward-zone NAME SERVER...` zones go to their servers;
/// - every other name goes to the system's resolvers (`resolver`, by default the nameservers
///   of /etc/resolv.conf other than the proxy itself), so the proxy can be a host's only resolver.
public struct Forwarding: Sendable {
    public struct Zone: Sendable {
        public let name: DomainName
        public let servers: [Endpoint]
        /// The KMS hierarchy: answers come with KMS1 semantics (verdicts, keys).
        public let isHierarchy: Bool
    }

    /// Most specific first.
    public let zones: [Zone]
    public let resolvers: [Endpoint]

    public init(hierarchy: [DomainName], kms: Endpoint, forwardZones: [(DomainName, [Endpoint])], resolvers: [Endpoint]) {
        var zones = hierarchy.map { Zone(name: $0.lowercased, servers: [kms], isHierarchy: true) }
        zones += forwardZones.map { Zone(name: $0.0.lowercased, servers: $0.1, isHierarchy: false) }
        self.zones = zones.sorted { $0.name.labelCount > $1.name.labelCount }
        self.resolvers = resolvers
    }

    /// Every name to the KMS: a proxy in front of a hierarchy and nothing else.
    public static func kmsOnly(_ kms: Endpoint) -> Forwarding {
        Forwarding(hierarchy: [.root], kms: kms, forwardZones: [], resolvers: [])
    }

    public struct Route: Sendable {
        public let servers: [Endpoint]
        public let isHierarchy: Bool
        /// What the route is, for logs and extended errors ("zone xx.", "resolvers").
        public let label: String
    }

    public func route(_ name: DomainName) -> Route {
        if let zone = zones.first(where: { name.isEqualOrSubdomain(of: $0.name) }) {
            return Route(servers: zone.servers, isHierarchy: zone.isHierarchy, label: "zone \(zone.name)")
        }
        return Route(servers: resolvers, isHierarchy: false, label: "resolvers")
    }
}
