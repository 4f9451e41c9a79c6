import ArgumentParser
import DNSWire
import Foundation
import KMSClient
import KMSCrypto
import KMSProtocol
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// The hostile traffic `kms bench --flood` sends beside its measured load, from its own source
/// address, at a fixed rate: what a node must survive without starving its real clients.
enum FloodKind: String, ExpressibleByArgument, CaseIterable {
    /// Signed inquiries that name a registered host as sender, with a signature by another
    /// key and a fresh nonce each: every one would cost a verify.
    case badSignature = "bad-signature"
    /// Anonymous TXT queries for random names below --flood-zone: every one would cost a
    /// fetch through the hierarchy and signatures at every hop.
    case randomNames = "random-names"
}

/// Sends precomputed packets from one UDP socket per source address at `rate` per second
/// until stopped, round-robin over the sockets; replies are read and dropped.
final class Flood: Sendable {
    let channels: [any Channel]
    let sent = NIOLockedValueBox(0)
    let started = NIODeadline.now()

    private init(channels: [any Channel]) { self.channels = channels }

    /// Packets per second since the start.
    var rate: Int {
        let seconds = Double((NIODeadline.now() - started).nanoseconds) / 1e9
        return seconds > 0 ? Int(Double(sent.withLockedValue { $0 }) / seconds) : 0
    }

    /// Builds `count` distinct packets of `kind` (signing costs happen here, before the clock).
    static func packets(_ kind: FloodKind, count: Int, host: HostConfiguration?, zone: DomainName?, target: DomainName) throws -> [[UInt8]] {
        var packets: [[UInt8]] = []
        switch kind {
        case .badSignature:
            guard let host else { throw ValidationError("--flood bad-signature needs --host (the sender it impersonates)") }
            let impostor = try PrivateKey(generating: host.key.algorithm)
            let signer = host.anchors.closest(covering: target)?.name ?? target
            for _ in 0..<count {
                let record = try Inquiry(
                    target: target, signer: signer, ip: host.address, from: host.name, nonce: try Nonce.random(),
                    time: UnixTime(Date().timeIntervalSince1970)
                ).record().signed(by: impostor)
                packets.append(try DNSMessage.kmsQuery(id: UInt16.random(in: 0...UInt16.max), target: target, record: record).wire())
            }
        case .randomNames:
            guard let zone else { throw ValidationError("--flood random-names needs --flood-zone (whose random names to ask for)") }
            for _ in 0..<count {
                let label = String((0..<12).map { _ in "abcdefghijklmnopqrstuvwxyz0123456789".randomElement()! })
                let name = try DomainName(label + "." + zone.text)
                packets.append(try DNSMessage.query(id: UInt16.random(in: 0...UInt16.max), name: name, type: .txt).wire())
            }
        }
        return packets
    }

    /// The first address and `count - 1` more, each in the next /24 (`127.0.1.1`,
    /// `127.0.2.1`, ...): as many client networks as a node's per-prefix budgets see. Any
    /// 127.x.y.z is local on Linux, so no setup is needed on loopback.
    static func sources(from first: String, networks count: Int) throws -> [String] {
        guard let address = IPAddress(first), !address.isIPv6 else {
            throw ValidationError("--flood-source: '\(first)' is not an IPv4 address")
        }
        let base = address.bytes.reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        guard UInt64(base) + UInt64(count - 1) * 256 <= UInt64(UInt32.max) else {
            throw ValidationError("--flood-networks: \(count) networks from \(first) run past 255.255.255.255")
        }
        return (0..<count).map { index in
            let value = base + UInt32(index) * 256
            return "\(value >> 24).\(value >> 16 & 0xFF).\(value >> 8 & 0xFF).\(value & 0xFF)"
        }
    }

    /// Starts sending `packets` round-robin to `server` from `sources` (one socket each, all on
    /// one event loop) at `rate` per second in all.
    static func start(packets: [[UInt8]], from sources: [String], to server: SocketAddress, rate: Int) async throws -> Flood {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        var channels: [any Channel] = []
        for source in sources {
            channels.append(try await DatagramBootstrap(group: loop)
                .channelOption(.socketOption(.so_reuseaddr), value: 1)
                .channelInitializer { channel in channel.eventLoop.makeSucceededVoidFuture() }
                .bind(host: source, port: 0).get())
        }
        let flood = Flood(channels: channels)
        let sockets = flood.channels
        // Paced by the clock, not by the tick count: a tick that runs late (the machine is
        // busy) sends what the rate owes since the start, up to a bounded catch-up.
        let allocator = sockets[0].allocator
        let start = flood.started
        loop.scheduleRepeatedTask(initialDelay: .zero, delay: .milliseconds(1)) { task in
            guard sockets.allSatisfy(\.isActive) else { return task.cancel() }
            let owed = Int(Double((NIODeadline.now() - start).nanoseconds) / 1e9 * Double(rate))
            let (first, count) = flood.sent.withLockedValue { sent -> (Int, Int) in
                let count = min(max(0, owed - sent), max(64, rate / 100))
                defer { sent += count }
                return (sent, count)
            }
            var written = Set<Int>()
            for index in first..<(first + count) {
                let buffer = allocator.buffer(bytes: packets[index % packets.count])
                let socket = index % sockets.count
                sockets[socket].write(AddressedEnvelope(remoteAddress: server, data: buffer), promise: nil)
                written.insert(socket)
            }
            for socket in written { sockets[socket].flush() }
        }
        return flood
    }

    func stop() async {
        for channel in channels { try? await channel.close() }
    }
}
