import ArgumentParser
import DNSTransport
import DNSWire
import Foundation
import KMSClient
import KMSCrypto
import KMSProtocol
import KMSSettings
import NIOCore
import NIOPosix

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Load a KMS with queries and report answers per second and latency.",
        discussion: """
            Keeps --concurrency queries in flight for --duration and reports answers/s and the \
            p50/p99 latency, counted by response code. Modes:
              anonymous   plain TXT queries for NAME (no KMS record), as `dig TXT NAME` sends
              signed      signed kms1:inquiry queries as host --host, each with a fresh nonce
                          and signature (the full verification path on the server)
              address     plain A queries for NAME (the unsigned path)
              fetch       key fetches as `kms fetch` makes them, every answer verified (no host
                          cache): cold, each for a name no KMS has cached yet (NAME with {i}
                          is numbered 0, 1, 2...; the example hierarchy's h{i}.c.a.xx. after
                          `kms register --file`), then warm, NAME with i=0 again and again

            With --flood KIND the run is made twice, without and then with a flood of KIND \
            sent at --flood-rate from --flood-source (or from --flood-networks /24s, as a \
            spoofed flood comes) beside the measured load, and the share of the NOERROR \
            rate that survives is printed (with the server's RSS if --server-pid is given). \
            Kinds:
              bad-signature  signed inquiries naming --host as sender, signed by another key
              random-names   anonymous TXT for random names below --flood-zone

            Example (after `make run`):
              kms bench hostb.c.a.xx. --mode signed --host hierarchy/hosta.conf --duration 10
              kms bench hostb.c.a.xx. --mode signed --host hierarchy/hosta.conf \
                  --flood bad-signature --flood-rate 40000
              kms bench hostb.c.a.xx. --mode signed --host hierarchy/hosta.conf \
                  --flood bad-signature --flood-rate 40000 --flood-networks 1024
            """)

    enum Mode: String, ExpressibleByArgument, CaseIterable { case anonymous, signed, address, fetch }

    @Argument(help: "The name to ask for.")
    var name: String

    @Option(help: "anonymous, signed or address.")
    var mode: Mode = .anonymous

    @Option(help: "Server ADDRESS:PORT. Default: the home KMS of --host.")
    var server: String?

    @Option(help: "Host configuration (needed for signed mode; gives the default server).")
    var host: String?

    @Option(help: "Queries in flight.")
    var concurrency: Int = 32

    @Option(help: "Seconds to run.")
    var duration: Double = 5

    @Option(help: "UDP sockets to send from. A server spreads load over its cores by source address and port, so one socket would load one core.")
    var sockets: Int = 4

    @Option(help: "Per-query time-out in milliseconds.")
    var timeout: Int64 = 2000

    @Option(help: "Also measure under this flood: bad-signature or random-names.")
    var flood: FloodKind?

    @Option(help: "Flood packets per second.")
    var floodRate: Int = 10_000

    @Option(help: "Address the flood is sent from (any 127.x.y.z works on loopback).")
    var floodSource: String = "127.0.1.1"

    @Option(help: "Spread the flood over this many /24 networks, from --flood-source up (127.0.1.1, 127.0.2.1, ...), as a spoofed flood would: each network has its own budgets.")
    var floodNetworks: Int = 1

    @Option(help: "Send the flood here instead of to the server: a closed port measures what the flood costs this machine alone.")
    var floodTo: String?

    @Option(help: "With --mode fetch and a NAME with {i}: the first number of the cold fetches (names no KMS has cached yet).")
    var start: Int = 1

    @Option(help: "Zone whose random names the random-names flood asks for.")
    var floodZone: String?

    @Option(help: "The server's process ID, to report its resident memory before and after.")
    var serverPid: Int?

    func validate() throws {
        guard floodRate >= 1, floodRate <= 1_000_000 else { throw ValidationError("--flood-rate must be 1...1000000") }
        guard floodNetworks >= 1, floodNetworks <= 4096 else { throw ValidationError("--flood-networks must be 1...4096") }
        guard concurrency >= 1, concurrency <= 4096 else { throw ValidationError("--concurrency must be 1...4096") }
        guard duration > 0, duration <= 3600 else { throw ValidationError("--duration must be 0...3600 seconds") }
        guard sockets >= 1, sockets <= 64 else { throw ValidationError("--sockets must be 1...64") }
        if (mode == .signed || mode == .fetch) && host == nil { throw ValidationError("\(mode) mode needs --host (who signs)") }
        if server == nil && host == nil { throw ValidationError("give --server ADDRESS:PORT or --host CONFIG") }
    }

    func run() async throws {
        let hostConfiguration: HostConfiguration?
        do { hostConfiguration = try host.map { try HostConfiguration(path: $0) } } catch {
            FileHandle.standardError.write(Data("kms bench: \(error)\n".utf8))
            Foundation.exit(78)
        }
        let endpoint: Endpoint
        if let server {
            guard let parsed = Endpoint(server) else { throw ValidationError("--server: '\(server)' is not ADDRESS:PORT") }
            endpoint = parsed
        } else {
            endpoint = hostConfiguration!.home.endpoint
        }
        if mode == .fetch {
            try await fetchLatency(hostConfiguration!)
            return
        }
        let target = try DomainName(name.hasSuffix(".") ? name : name + ".").lowercased
        let address = try endpoint.socketAddress()
        var clients: [DNSClient] = []
        for _ in 0..<sockets { clients.append(try await DNSClient.make(group: MultiThreadedEventLoopGroup.singleton, sockets: .shared)) }
        let query = try QueryMaker(mode: mode, target: target, host: hostConfiguration)
        print("kms bench: \(mode) queries for \(target) at \(endpoint), \(concurrency) in flight from \(sockets) sockets, \(duration) s")
        let baseline = await measure(query, clients: clients, address: address)
        print(baseline.report(elapsed: baseline.elapsed))
        if let flood {
            let zone = try floodZone.map { try DomainName($0.hasSuffix(".") ? $0 : $0 + ".") }
            let packets = try Flood.packets(flood, count: 4096, host: hostConfiguration, zone: zone, target: target)
            let rssBefore = serverPid.flatMap(Self.residentKiB)
            let floodAddress = try floodTo.map { text in
                guard let endpoint = Endpoint(text) else { throw ValidationError("--flood-to: '\(text)' is not ADDRESS:PORT") }
                return try endpoint.socketAddress()
            } ?? address
            let sources = try Flood.sources(from: floodSource, networks: floodNetworks)
            let sender = try await Flood.start(packets: packets, from: sources, to: floodAddress, rate: floodRate)
            let flooded = await measure(query, clients: clients, address: address)
            let floodRate = sender.rate
            await sender.stop()
            let sent = sender.sent.withLockedValue { $0 }
            let origin = floodNetworks == 1 ? floodSource : "\(floodNetworks) networks from \(floodSource) to \(sources.last!)"
            print("\nunder a \(flood.rawValue) flood from \(origin) to \(floodAddress), \(sent) packets sent (\(floodRate)/s):")
            print(flooded.report(elapsed: flooded.elapsed))
            let share = baseline.rate > 0 ? flooded.rate / baseline.rate : 0
            print(String(format: "kept         %.0f%% of the rate without the flood", share * 100))
            if let rssBefore, let rssAfter = serverPid.flatMap(Self.residentKiB) {
                print("server RSS   \(rssBefore / 1024) MiB before the flood, \(rssAfter / 1024) MiB after")
            }
        }
        for client in clients { await client.close() }
    }

    /// `--mode fetch`: one fetch at a time, verified as `kms fetch` verifies, timed.
    private func fetchLatency(_ configuration: HostConfiguration) async throws {
        var configuration = configuration
        configuration.cache = nil  // the KMSs' caches are what is measured, not the host's
        let client = try await DNSClient.make(group: MultiThreadedEventLoopGroup.singleton)
        let fetcher = try KeyFetcher(configuration: configuration, client: client)
        func named(_ index: Int) throws -> DomainName {
            let text = name.replacingOccurrences(of: "{i}", with: "\(index)")
            return try DomainName(text.hasSuffix(".") ? text : text + ".")
        }
        func timed(_ target: DomainName) async throws -> Duration {
            let started = ContinuousClock.now
            _ = try await fetcher.fetch(target, useCache: false)
            return ContinuousClock.now - started
        }
        print("kms bench: verified key fetches for \(name) by \(configuration.name) via \(configuration.home.name), one at a time")
        let half = ContinuousClock.Duration.milliseconds(Int64(duration * 500))
        var cold: [Duration] = []
        var deadline = ContinuousClock.now + half
        if name.contains("{i}") {
            var index = start
            while ContinuousClock.now < deadline {
                cold.append(try await timed(try named(index)))
                index += 1
            }
        } else {
            cold.append(try await timed(try named(0)))
        }
        var warm: [Duration] = []
        _ = try await timed(try named(0))
        deadline = ContinuousClock.now + half
        while ContinuousClock.now < deadline { warm.append(try await timed(try named(0))) }
        await client.close()
        func summary(_ label: String, _ values: [Duration]) -> String {
            let sorted = values.sorted()
            func ms(_ p: Double) -> String {
                let value = sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
                return String(format: "%.3f", Double(value.components.attoseconds) / 1e15 + Double(value.components.seconds) * 1000)
            }
            return "\(label) p50 \(ms(0.5)) ms   p99 \(ms(0.99)) ms   (\(values.count) fetches)"
        }
        print(summary("cold", cold))
        print(summary("warm", warm))
    }

    /// VmRSS of a process, in KiB.
    static func residentKiB(_ pid: Int) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") })
        else { return nil }
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    }

    private func measure(_ query: QueryMaker, clients: [DNSClient], address: SocketAddress) async -> Tally {
        let timeout = TimeAmount.milliseconds(self.timeout)
        let deadline = ContinuousClock.now + .milliseconds(Int64(duration * 1000))
        let started = ContinuousClock.now
        let results = await withTaskGroup(of: Tally.self) { group in
            for worker in 0..<concurrency {
                let client = clients[worker % clients.count]
                group.addTask {
                    var tally = Tally()
                    while ContinuousClock.now < deadline {
                        let sent = ContinuousClock.now
                        do {
                            // Signed inquiries carry a DNS cookie as `kms fetch`'s do (KMS1Exchange).
                            let reply = try await client.query(
                                try query.make(), server: address, timeout: timeout, cookie: query.mode == .signed)
                            let received = ContinuousClock.now
                            tally.record(reply.rcode, latency: received - sent, inWindow: received <= deadline)
                        } catch let error as DNSClientError where error.code == .timeout {
                            tally.timeouts += 1
                        } catch {
                            tally.errors += 1
                        }
                    }
                    return tally
                }
            }
            var total = Tally()
            for await tally in group { total.merge(tally) }
            return total
        }
        var measured = results
        measured.elapsed = ContinuousClock.now - started
        measured.window = duration
        return measured
    }
}

/// Builds each query: a signed inquiry needs a fresh nonce and signature every time.
struct QueryMaker: Sendable {
    let mode: Bench.Mode
    let target: DomainName
    let host: HostConfiguration?
    let signer: DomainName?

    init(mode: Bench.Mode, target: DomainName, host: HostConfiguration?) throws {
        self.mode = mode
        self.target = target
        self.host = host
        if mode == .signed {
            guard let anchor = host?.anchors.closest(covering: target) else {
                throw ValidationError("no trust anchor of --host covers \(target)")
            }
            signer = anchor.name
        } else {
            signer = nil
        }
    }

    func make() throws -> DNSMessage {
        switch mode {
        case .anonymous: return .query(id: 0, name: target, type: .txt)
        case .address: return .query(id: 0, name: target, type: .a)
        case .fetch:
            preconditionFailure("fetch mode does not build queries")
        case .signed:
            let host = host!
            let record = try Inquiry(
                target: target, signer: signer!, ip: host.address, from: host.name, nonce: try Nonce.random(),
                time: UnixTime(Date().timeIntervalSince1970)
            ).record().signed(by: host.key)
            return .kmsQuery(id: 0, target: target, record: record)
        }
    }
}

/// Counts and latencies of one worker, merged at the end.
struct Tally: Sendable {
    var byRcode: [UInt16: Int] = [:]
    var latencies: [Duration] = []
    var timeouts = 0
    var errors = 0
    var elapsed: Duration = .zero

    /// The run's duration (what the rate is over).
    var window: Double = 0
    var rate: Double { window > 0 ? Double(servedInWindow) / window : 0 }

    /// Answers that arrived before the deadline: the rate counts only these, over the run's
    /// duration, so queries still waiting for a time-out at the end do not stretch it.
    var inWindow = 0
    /// Of those, the NOERROR answers: what the rate counts, so that a refusal (a budget, a
    /// flood's side effect) is never counted as served.
    var servedInWindow = 0

    mutating func record(_ rcode: RCode, latency: Duration, inWindow: Bool) {
        byRcode[rcode.rawValue, default: 0] += 1
        latencies.append(latency)
        if inWindow { self.inWindow += 1 }
        if inWindow && rcode == .noError { servedInWindow += 1 }
    }

    mutating func merge(_ other: Tally) {
        for (rcode, count) in other.byRcode { byRcode[rcode, default: 0] += count }
        latencies += other.latencies
        inWindow += other.inWindow
        servedInWindow += other.servedInWindow
        timeouts += other.timeouts
        errors += other.errors
    }

    func report(elapsed: Duration) -> String {
        let sorted = latencies.sorted()
        func percentile(_ p: Double) -> String {
            guard !sorted.isEmpty else { return "-" }
            let value = sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
            return String(format: "%.3f ms", Double(value.components.attoseconds) / 1e15 + Double(value.components.seconds) * 1000)
        }
        let codes = byRcode.sorted { $0.key < $1.key }.map { "\(RCode(rawValue: $0.key)) \($0.value)" }.joined(separator: "  ")
        return """
            answers      \(inWindow) in \(String(format: "%.2f", window)) s, \(servedInWindow) NOERROR = \(String(format: "%.0f", rate)) answers/s (\(latencies.count - inWindow) more after the end)
            rcodes       \(codes.isEmpty ? "-" : codes)
            timeouts     \(timeouts)   errors \(errors)
            latency      p50 \(percentile(0.50))   p99 \(percentile(0.99))   max \(percentile(1.0))
            """
    }
}
