import DNSWire
import KMSSettings

/// Where a name is answered, by delegation (PROTOCOL.md section 4, step 3).
enum Route: Equatable {
    /// In this node's own zone (not delegated to a child).
    case local
    /// In a child's zone.
    case child(Peer)
    /// Outside this zone: ask the parent.
    case parent(Peer)
    /// Outside this zone, and this node is the root: not in the hierarchy.
    case outside
}

struct Router: Sendable {
    let zone: DomainName
    let parent: Peer?
    let children: [Peer]

    func route(_ name: DomainName) -> Route {
        guard name.isEqualOrSubdomain(of: zone) else { return parent.map(Route.parent) ?? .outside }
        // Longest delegation wins, as in DNS.
        let child = children.filter { name.isEqualOrSubdomain(of: $0.name) }.max { $0.name.labelCount < $1.name.labelCount }
        return child.map(Route.child) ?? .local
    }

    /// The parent or a child with this name: the KMSs allowed to send this node requests.
    func peer(named name: DomainName) -> Peer? {
        if let parent, parent.name == name { return parent }
        return children.first { $0.name == name }
    }
}
