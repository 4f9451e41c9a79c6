import DNSWire
import Foundation
import KMSClient
import KMSCrypto
import KMSProtocol
import NIOCore
import NIOPosix
import TLSTransport

/// What `kms-proxy ping NAME` reports: each step an application's connection would take, with
/// its time, and the peer endpoint's own verdict.
public struct PingReport: Codable, Sendable {
    public struct Step: Codable, Sendable {
        public let step: String
        public let ok: Bool
        public let milliseconds: Double
        public let detail: String
    }

    public var name: String
    public var steps: [Step] = []
    public var ok: Bool { !steps.isEmpty && steps.allSatisfy(\.ok) }
}

/// `kms-proxy ping`, run inside the proxy (over its control socket): resolve NAME as an
/// application would, fetch and verify its key, open the tunnel pinned to it, and ask the
/// peer's endpoint (`kms1-ping`) whether it would let this host in, and to which ports.
struct Pinger: Sendable {
    let dnsProxy: DNSProxy
    let contexts: [Identity: [TLSCipher: TLSContext]]
    let tunnelPort: Int
    let timeout: TimeAmount
    let pools: [InterceptPool]
    let kernel: KernelDiversion?
    let group: any EventLoopGroup

    func ping(_ name: DomainName) async -> PingReport {
        var report = PingReport(name: name.text)
        func timed<T>(_ work: () async throws -> T) async -> (Result<T, any Error>, Double) {
            let start = ContinuousClock.now
            let result: Result<T, any Error>
            do { result = .success(try await work()) } catch { result = .failure(error) }
            let took = ContinuousClock.now - start
            return (result, Double(took.components.seconds) * 1000 + Double(took.components.attoseconds) / 1e15)
        }
        func add(_ step: String, _ ok: Bool, _ ms: Double, _ detail: String) {
            report.steps.append(.init(step: step, ok: ok, milliseconds: (ms * 10).rounded() / 10, detail: detail))
        }

        // 1. Resolve, as the application would (this makes or renews the mapping).
        var query = DNSMessage.query(id: 1, name: name, type: .a)
        query.header.recursionDesired = true
        let (resolved, resolveTime) = await timed { await dnsProxy.resolve(query) }
        guard case .success(let answer) = resolved else { return report }
        let address = answer.answers.compactMap { record -> IPAddress? in
            if case .a(let bytes) = record.data { return IPAddress(bytes: bytes) }
            return nil
        }.first
        let mapping = pools.compactMap { $0.mapping(of: name.lowercased) }.first
            ?? kernel?.mappings.first { $0.peer == name.lowercased }
        guard answer.rcode == .noError, let address else {
            let why = answer.extendedErrors.map(\.text).joined(separator: "; ")
            add("resolve", false, resolveTime, "\(answer.rcode)\(why.isEmpty ? "" : ": \(why)")")
            return report
        }
        guard let mapping else {
            add("resolve", true, resolveTime, "\(address)")
            add("cug", false, 0, "not a CUG peer: no tunnel, an application would connect in the clear")
            return report
        }
        add("resolve", true, resolveTime, mapping.settings.pathProtocol == .kernel
            ? "\(address), its real address, diverted by the kernel" : "intercept \(address) for \(mapping.peerAddresses.map(\.description).joined(separator: " "))")

        // 2. The key, verified (from the host cache when the resolution just fetched it).
        guard let fetcher = dnsProxy.fetchers[mapping.settings.identity] else {
            add("key", false, 0, "identity \(mapping.settings.identity) is not configured")
            return report
        }
        let (fetched, fetchTime) = await timed { () async throws -> FetchResult in try await fetcher.fetch(name) }
        switch fetched {
        case .success(let key):
            let c = key.countersignature
            add("key", key.key == mapping.key, fetchTime,
                "\(KeyField.encode(key.key).prefix(24))… countersigned by \(c.signer) until \(c.notAfter.iso8601)\(key.fromCache ? " (host cache)" : "")\(key.key == mapping.key ? "" : "; NOT the key the mapping is pinned to")")
        case .failure(let error):
            add("key", false, fetchTime, "\(error)")
            return report
        }

        // 3. The tunnel, pinned to that key; 4. the endpoint's verdict.
        guard let peerAddress = mapping.peerAddresses.first, let context = contexts[mapping.settings.identity]?[mapping.settings.cipher] else {
            add("tunnel", false, 0, "no peer address or TLS context for \(mapping.settings)")
            return report
        }
        let (opened, tunnelTime) = await timed { () async throws -> (TLSChannel, TLSEstablished) in
            let tunnel = try await ClientBootstrap(group: group)
                .connectTimeout(timeout)
                .connect(to: try SocketAddress(ipAddress: peerAddress.description, port: tunnelPort)) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try TLSChannel.wrap(
                            channel, connection: try TLSConnection(context: context, pinnedKey: mapping.key, serverName: name.text), isClient: true)
                    }
                }
            let deadline = tunnel.channel.channel.eventLoop.scheduleTask(in: timeout) { tunnel.channel.channel.close(promise: nil) }
            defer { deadline.cancel() }
            do { return (tunnel, try await tunnel.handshake.get()) } catch {
                try? await tunnel.channel.channel.close()
                throw error
            }
        }
        guard case .success(let (tunnel, established)) = opened else {
            if case .failure(let error) = opened { add("tunnel", false, tunnelTime, "\(peerAddress):\(tunnelPort): \(error)") }
            return report
        }
        add("tunnel", true, tunnelTime, "\(peerAddress):\(tunnelPort), TLS 1.3 \(established.cipherSuite ?? "?"), peer key as pinned")
        let (verdict, verdictTime) = await timed { () async throws -> (Bool, String) in
            try await tunnel.channel.executeThenClose { inbound, outbound in
                try await outbound.write(ByteBuffer(bytes: TunnelHeader.ping))
                var line: [UInt8] = []
                for try await chunk in inbound {
                    line += chunk.readableBytesView
                    if line.contains(0x0A) { break }
                }
                guard let end = line.firstIndex(of: 0x0A), let pong = TunnelHeader.parsePong(Array(line[..<end])) else {
                    return (false, "the endpoint closed without a verdict (an endpoint too old for kms1-ping?)")
                }
                return pong
            }
        }
        switch verdict {
        case .success(let (ok, detail)): add("endpoint", ok, verdictTime, ok ? "lets \(mapping.settings.identity) in: \(detail)" : "refused: \(detail)")
        case .failure(let error): add("endpoint", false, verdictTime, "\(error)")
        }
        return report
    }
}
