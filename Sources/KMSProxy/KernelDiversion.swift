import CNFTables
import DNSWire
import Foundation
import KMSCrypto
import Synchronization

/// The first embodiment: the application gets the peer's real address, and the kernel diverts
/// TCP to it into the local tunnel. An nftables table of the `inet` family holds two sets of
/// peer addresses, IPv4 and IPv6, whose elements time out; NAT rules (output hook for this
/// host's own applications, prerouting for machines using it as their router) redirect TCP for
/// those addresses and the configured ports to `divertPort`, where the tunnel reads the
/// original destination (SO_ORIGINAL_DST, IP6T_SO_ORIGINAL_DST). Filter rules on the output and
/// forward hooks reject everything else sent to those addresses (fail closed: nothing reaches a
/// group peer in clear), except the tunnel's own connections to the peer's tunnel port.
///
/// It talks to nftables through libnftables, the library `nft` itself is built on: one context,
/// used under a lock, one transaction per change, no process per peer. Callers run it off the
/// event loops (NIO's blocking-work pool). The table is created at start and deleted on a clean
/// exit.
final class KernelDiversion: Sendable {
    static let table = "countersign"

    let ports: [Int]
    let divertPort: Int
    /// Peers by real address, with when their kernel element expires.
    private let peers = Mutex<[IPAddress: (mapping: Mapping, kernelExpiry: Double)]>([:])
    private let nft: NFTables

    private init(ports: [Int], divertPort: Int, nft: NFTables) {
        self.ports = ports
        self.divertPort = divertPort
        self.nft = nft
    }

    static func start(ports: [Int], divertPort: Int, tunnelPort: Int) throws -> KernelDiversion {
        let nft = try NFTables()
        let portSet = ports.map(String.init).joined(separator: ", ")
        let rules = """
                ip daddr @peers4 tcp dport { \(portSet) } redirect to :\(divertPort)
                ip6 daddr @peers6 tcp dport { \(portSet) } redirect to :\(divertPort)
            """
        // What the NAT rules did not send into the tunnel (UDP such as QUIC, TCP to other
        // ports, ICMP) must not reach a group peer in clear either: it is rejected, TCP with a
        // reset and the rest with ICMP "administratively prohibited", so applications fail at
        // once. Let through: the tunnel's own connections (to the peer's tunnel port, where
        // only mutual TLS is answered), and replies to connections the peer opened to us.
        let fence = """
                ct direction reply accept
                ip daddr @peers4 tcp dport \(tunnelPort) accept
                ip6 daddr @peers6 tcp dport \(tunnelPort) accept
                ip daddr @peers4 meta l4proto tcp reject with tcp reset
                ip6 daddr @peers6 meta l4proto tcp reject with tcp reset
                ip daddr @peers4 reject with icmpx type admin-prohibited
                ip6 daddr @peers6 reject with icmpx type admin-prohibited
            """
        try nft.run("""
            table inet \(table) {}
            delete table inet \(table)
            table inet \(table) {
                set peers4 { type ipv4_addr; flags timeout; }
                set peers6 { type ipv6_addr; flags timeout; }
                chain output {
                    type nat hook output priority -100; policy accept;
            \(rules)
                }
                chain prerouting {
                    type nat hook prerouting priority -100; policy accept;
            \(rules)
                }
                chain fence_output {
                    type filter hook output priority 0; policy accept;
            \(fence)
                }
                chain fence_forward {
                    type filter hook forward priority 0; policy accept;
            \(fence)
                }
            }
            """)
        return KernelDiversion(ports: ports, divertPort: divertPort, nft: nft)
    }

    /// Diverts `mapping.peerAddresses` (both families) for the mapping's life. The kernel
    /// element lives twice as long, and is renewed (atomically: delete and add in one nft
    /// transaction) once less than one lifetime is left, so an answer's TTL never outlives its
    /// diversion. Returns each address with the time its element lives until (`ProxyStore`).
    @discardableResult
    func divert(_ mapping: Mapping, lifetime: Double, now: Double) throws -> [(IPAddress, Double)] {
        var script: [String] = []
        let expiries: [(IPAddress, Double)] = peers.withLock { table in
            mapping.peerAddresses.map { address in
                let set = address.isIPv6 ? "peers6" : "peers4"
                let existing = table[address]
                if let existing, existing.kernelExpiry - now > lifetime {
                    table[address] = (mapping, existing.kernelExpiry)
                    return (address, existing.kernelExpiry)
                }
                if let existing, existing.kernelExpiry - now > 2 {
                    script.append("delete element inet \(Self.table) \(set) { \(address) }")
                }
                script.append("add element inet \(Self.table) \(set) { \(address) timeout \(Int(2 * lifetime))s }")
                table[address] = (mapping, now + 2 * lifetime)
                return (address, now + 2 * lifetime)
            }
        }
        if !script.isEmpty { try nft.run(script.joined(separator: "\n")) }
        return expiries
    }

    /// Diverts again what a previous run diverted (from `ProxyStore`), each for the time it
    /// had left: the table was made anew at start, empty.
    func restore(_ entries: [(address: IPAddress, mapping: Mapping, expiresAt: Double)], now: Double) throws {
        let live = entries.filter { $0.expiresAt - now >= 1 }
        guard !live.isEmpty else { return }
        try nft.run(live.map { entry in
            "add element inet \(Self.table) \(entry.address.isIPv6 ? "peers6" : "peers4") { \(entry.address) timeout \(Int(entry.expiresAt - now))s }"
        }.joined(separator: "\n"))
        peers.withLock { table in
            for entry in live { table[entry.address] = (entry.mapping, entry.expiresAt) }
        }
    }

    /// Puts `key` in force for `peer` (rotated), or with nil stops diverting its connections
    /// anywhere but to a closed door (removed): its kernel elements stay until they time out,
    /// so its TCP still reaches the tunnel listener, which finds no mapping and closes it.
    func rekey(peer: DomainName, key: PublicKey?) {
        peers.withLock { table in
            for (address, entry) in table where entry.mapping.peer == peer {
                if let key {
                    table[address] = (entry.mapping.with(key: key, revoked: false), entry.kernelExpiry)
                } else {
                    table[address] = (entry.mapping.with(key: entry.mapping.key, revoked: true), entry.kernelExpiry)
                }
            }
        }
    }

    /// Every live mapping, one per peer.
    var mappings: [Mapping] {
        peers.withLock { table in
            var byPeer: [DomainName: Mapping] = [:]
            for entry in table.values { byPeer[entry.mapping.peer] = entry.mapping }
            return byPeer.values.sorted { $0.peer.text < $1.peer.text }
        }
    }

    /// The addresses diverted now for `peer`.
    func addresses(of peer: DomainName) -> [IPAddress] {
        peers.withLock { table in table.compactMap { $0.value.mapping.peer == peer ? $0.key : nil } }
    }

    /// The peer a diverted connection was headed for.
    func mapping(for address: IPAddress, now: Double) -> Mapping? {
        peers.withLock { table in
            guard let entry = table[address], entry.kernelExpiry > now, !entry.mapping.revoked else { return nil }
            return entry.mapping
        }
    }

    /// Removes the table (clean exit).
    func stop() {
        try? nft.run("delete table inet \(Self.table)")
    }
}

/// One libnftables context. The library keeps per-context state, so calls are serialised.
final class NFTables: Sendable {
    private let context: Mutex<OpaquePointer>

    init() throws {
        guard let context = nft_ctx_new(UInt32(NFT_CTX_DEFAULT)) else {
            throw DiversionError(reason: "libnftables could not make a context")
        }
        nft_ctx_buffer_output(context)
        nft_ctx_buffer_error(context)
        self.context = Mutex(context)
    }

    deinit { context.withLock { nft_ctx_free($0) } }

    /// Runs one nft script as one transaction (every line applies, or none).
    func run(_ script: String) throws {
        try context.withLock { context in
            guard nft_run_cmd_from_buffer(context, script) == 0 else {
                let message = nft_ctx_get_error_buffer(context).map { String(cString: $0) } ?? ""
                let first = message.split(separator: "\n").first.map(String.init) ?? "it failed"
                throw DiversionError(reason: "nftables refused (kernel diversion needs root and nf_tables): \(first)")
            }
        }
    }
}

struct DiversionError: Error, CustomStringConvertible {
    let reason: String
    var description: String { reason }
}
