import DNSWire
import KMSProtocol
import KMSSettings
import Synchronization

/// What makes a node's zone a zone as DNS knows it (RFC 1034 section 4.2, RFC 1035 section
/// 3.3.13): an SOA and NS records at the apex, addresses for its name servers, and a
/// delegation (NS and glue) for each child zone. Negative answers carry the SOA (RFC 2308).
///
/// The serial moves whenever the zone's data does (a registration), so a secondary or a cache
/// can tell versions apart; it starts at the time the node started.
final class Zone: Sendable {
    /// A name server of this zone or of a child, with the addresses that go in glue.
    struct NameServer: Sendable {
        let name: DomainName
        let addresses: [IPAddress]
    }

    let apex: DomainName
    let nameServers: [NameServer]
    /// Child zone -> its name servers (the delegation).
    let delegations: [DomainName: [NameServer]]
    let soaTTL: UInt32 = 3600
    let nsTTL: UInt32 = 3600
    /// The SOA MINIMUM: how long a negative answer may be cached (RFC 2308 section 4).
    let negativeTTL: UInt32
    private let serialNumber: Atomic<UInt32>
    /// MNAME and RNAME in wire form.
    private let soaNames: [UInt8]

    init(configuration: NodeConfiguration, now: UnixTime) {
        apex = configuration.zone
        nameServers = configuration.nameServers.map { NameServer(name: $0.name, addresses: $0.addresses) }
        var delegations: [DomainName: [NameServer]] = [:]
        for child in configuration.children {
            delegations[child.name] = [NameServer(name: Self.defaultNameServer(of: child.name), addresses: [child.endpoint.address])]
        }
        self.delegations = delegations
        negativeTTL = UInt32(configuration.negativeAnswerTTL)
        let mname = nameServers.first?.name ?? apex
        let rname = (try? DomainName("hostmaster." + apex.text)) ?? apex
        soaNames = mname.wire + rname.wire
        serialNumber = Atomic(UInt32(truncatingIfNeeded: now))
    }

    /// `kms.<zone>`: the name server name a zone gets unless its configuration names others.
    static func defaultNameServer(of zone: DomainName) -> DomainName {
        (try? DomainName("kms." + zone.text)) ?? zone
    }

    var serial: UInt32 { serialNumber.load(ordering: .relaxed) }

    /// The zone changed: the serial moves to now, or one past where it was (RFC 1982).
    func bump(now: UnixTime) {
        var current = serialNumber.load(ordering: .relaxed)
        while true {
            let next = max(current &+ 1, UInt32(truncatingIfNeeded: now))
            let (exchanged, original) = serialNumber.compareExchange(expected: current, desired: next, ordering: .relaxed)
            if exchanged { return }
            current = original
        }
    }

    // MARK: Records

    /// The apex SOA: MNAME the first name server, RNAME `hostmaster.<zone>`. It is in every
    /// negative answer, so only the serial is filled in per answer.
    var soa: ResourceRecord {
        var rdata = soaNames
        for value in [serial, 3600, 900, 604_800, negativeTTL] {
            rdata += [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
        }
        return ResourceRecord(name: apex, ttl: soaTTL, data: .other(.soa, rdata))
    }

    /// The SOA for a negative answer's authority section: TTL the smaller of its own and
    /// MINIMUM (RFC 2308 section 3).
    var negativeSOA: ResourceRecord {
        var record = soa
        record.ttl = min(soaTTL, negativeTTL)
        return record
    }

    var apexNS: [ResourceRecord] { Self.ns(apex, nameServers, ttl: nsTTL) }

    /// Address records for name servers (glue, or answers for the name server names).
    func addresses(of servers: [NameServer], type: RRType? = nil) -> [ResourceRecord] {
        servers.flatMap { server in
            server.addresses.filter { type == nil || $0.isIPv6 == (type == .aaaa) }.map {
                ResourceRecord(name: server.name, ttl: nsTTL, data: $0.rdata)
            }
        }
    }

    /// A name server of this zone with this name, if any (its addresses are zone data).
    func nameServer(named name: DomainName) -> NameServer? {
        nameServers.first { $0.name == name && $0.name.isEqualOrSubdomain(of: apex) }
    }

    /// The referral to `child`: its NS records and, where its name servers lie inside it,
    /// their addresses (glue, RFC 1034 section 4.2.1).
    func referral(to child: DomainName) -> (authority: [ResourceRecord], glue: [ResourceRecord]) {
        let servers = delegations[child] ?? []
        let glue = addresses(of: servers.filter { $0.name.isEqualOrSubdomain(of: child) })
        return (Self.ns(child, servers, ttl: nsTTL), glue)
    }

    private static func ns(_ owner: DomainName, _ servers: [NameServer], ttl: UInt32) -> [ResourceRecord] {
        servers.map { ResourceRecord(name: owner, ttl: ttl, data: .other(.ns, $0.name.wire)) }
    }
}
