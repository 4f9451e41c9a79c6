import DNSWire
import Foundation
import KMSCrypto
import Synchronization

/// The first embodiment: the application gets the peer's real address, and the kernel diverts
/// TCP to it into the local tunnel. An nftables table holds a set of peer addresses whose
/// elements time out; a NAT rule (output hook for this host's own applications, prerouting for
/// machines using it as their router) redirects TCP for those addresses and the configured
/// ports to `divertPort`, where the tunnel reads the original destination (SO_ORIGINAL_DST).
///
/// The table is created at start and deleted on a clean exit. IPv4 only.
final class KernelDiversion: Sendable {
    static let table = "countersign"

    let ports: [Int]
    let divertPort: Int
    /// Peers by real address, with when their kernel element expires.
    private let peers = Mutex<[IPAddress: (mapping: Mapping, kernelExpiry: Double)]>([:])

    private init(ports: [Int], divertPort: Int) {
        self.ports = ports
        self.divertPort = divertPort
    }

    static func start(ports: [Int], divertPort: Int) throws -> KernelDiversion {
        let portSet = ports.map(String.init).joined(separator: ", ")
        try nft("""
            table ip \(table) {}
            delete table ip \(table)
            table ip \(table) {
                set peers { type ipv4_addr; flags timeout; }
                chain output {
                    type nat hook output priority -100; policy accept;
                    ip daddr @peers tcp dport { \(portSet) } redirect to :\(divertPort)
                }
                chain prerouting {
                    type nat hook prerouting priority -100; policy accept;
                    ip daddr @peers tcp dport { \(portSet) } redirect to :\(divertPort)
                }
            }
            """)
        return KernelDiversion(ports: ports, divertPort: divertPort)
    }

    /// Diverts `mapping.peerAddresses` (IPv4) for the mapping's life. The kernel element lives
    /// twice as long, and is renewed (atomically: delete and add in one nft transaction) once
    /// less than one lifetime is left, so an answer's TTL never outlives its diversion.
    func divert(_ mapping: Mapping, lifetime: Double, now: Double) throws {
        var script: [String] = []
        let addresses = mapping.peerAddresses.filter { !$0.isIPv6 }
        peers.withLock { table in
            for address in addresses {
                let existing = table[address]
                if let existing, existing.kernelExpiry - now > lifetime {
                    table[address] = (mapping, existing.kernelExpiry)
                    continue
                }
                if let existing, existing.kernelExpiry - now > 2 {
                    script.append("delete element ip \(Self.table) peers { \(address) }")
                }
                script.append("add element ip \(Self.table) peers { \(address) timeout \(Int(2 * lifetime))s }")
                table[address] = (mapping, now + 2 * lifetime)
            }
        }
        if !script.isEmpty { try Self.nft(script.joined(separator: "\n")) }
    }

    /// The peer a diverted connection was headed for.
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

    /// Every live mapping (one per peer address).
    var mappings: [Mapping] { peers.withLock { table in table.values.map(\.mapping) } }

    func mapping(for address: IPAddress, now: Double) -> Mapping? {
        peers.withLock { table in
            guard let entry = table[address], entry.kernelExpiry > now, !entry.mapping.revoked else { return nil }
            return entry.mapping
        }
    }

    /// Removes the table (clean exit).
    func stop() {
        try? Self.nft("delete table ip \(Self.table)")
    }

    /// Runs one nft transaction (all lines apply, or none).
    static func nft(_ script: String) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "/usr/sbin/nft")
        process.arguments = ["-f", "-"]
        let input = Pipe()
        let errors = Pipe()
        process.standardInput = input
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        do { try process.run() } catch {
            throw DiversionError(reason: "cannot run nft (install nftables): \(error.localizedDescription)")
        }
        input.fileHandleForWriting.write(Data(script.utf8))
        try? input.fileHandleForWriting.close()
        let message = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let text = String(decoding: message, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? "exit \(process.terminationStatus)"
            throw DiversionError(reason: "nft refused (kernel diversion needs root and nf_tables): \(text)")
        }
    }

    struct DiversionError: Error, CustomStringConvertible {
        let reason: String
        var description: String { reason }
    }
}
