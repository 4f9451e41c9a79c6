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

/// `kms monitor`: follows signer KMSs' transparency logs and reports every key ever
/// countersigned for the watched names (docs/OPERATING.md, "Auditing countersignatures").
struct Monitor: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Watch signers' transparency logs for keys countersigned for your names.",
        discussion: """
            Each round, for every --log: reads the signer's signed tree head, checks it \
            extends the head seen last time (a consistency proof; kept in --state), reads \
            every entry appended since and checks they make the signed root. Every entry for \
            a watched NAME is printed: which key the signer vouched for, and when. With \
            --expect NAME=KEY, any other key is an alert.

            Then each NAME is fetched through the hierarchy with --audit: a countersignature \
            that is served but is not in the signer's log (a forgery made with the signer's \
            key outside its log) is an alert, and so is a proof whose tree head is not the \
            same tree as the log's.

            Examples (after `make run`):
              kms monitor hostb.c.a.xx. --host hierarchy/hosta.conf --log xx.=127.0.0.1:5301 --once
              kms monitor hostb.c.a.xx. --host hierarchy/hosta.conf --log xx.=127.0.0.1:5301 \\
                  --expect hostb.c.a.xx.=hierarchy/keys/hostb.c.a.xx.pub.pem --state run/monitor.json

            Exit codes (with --once; the loop keeps going and prints): 0 nothing wrong; \
            1 alert (an unexpected key, or a countersignature outside the log); 2 a log \
            misbehaved (bad head signature, fork, rewritten entries); 3 a log or the \
            hierarchy could not be reached; 64 usage; 78 configuration.
            """)

    @Argument(help: "Names to watch, e.g. hostb.c.a.xx.")
    var names: [String]

    @Option(help: "Host configuration: the trust anchors (the logs' keys) and the home KMS for the audit fetch. Default: $KMS_HOST_CONFIG or /etc/countersign/host.conf.")
    var host: String?

    @Option(name: .customLong("log"), help: "A signer's log to follow, SIGNER=ADDRESS[:PORT] (the signer's KMS). Repeatable; the signer must be a trust anchor.")
    var logs: [String] = []

    @Option(name: .customLong("expect"), help: "NAME=KEY: the key NAME should have (wire form alg:base64, or a PEM file). Repeatable.")
    var expectations: [String] = []

    @Option(help: "File to keep each log's last verified head in between runs (JSON).")
    var state: String?

    @Flag(help: "Run one round and exit with its verdict.")
    var once = false

    @Option(help: "Seconds between rounds, without --once.")
    var interval: Double = 60

    @Flag(help: "Print findings as JSON lines.")
    var json = false

    func run() async throws {
        let path = host ?? ProcessInfo.processInfo.environment["KMS_HOST_CONFIG"] ?? "/etc/countersign/host.conf"
        let configuration: HostConfiguration
        do { configuration = try HostConfiguration(path: path) } catch { Self.exit("\(error)", code: 78) }
        let watched = names.map { text -> DomainName in
            guard let name = try? DomainName(text.hasSuffix(".") ? text : text + ".").lowercased else {
                Self.exit("'\(text)' is not a domain name", code: 64)
            }
            return name
        }
        guard !watched.isEmpty, !logs.isEmpty else { Self.exit("give at least one NAME and one --log SIGNER=ADDRESS[:PORT]", code: 64) }
        let expected = parseExpectations()
        let client = try await DNSClient.make(group: MultiThreadedEventLoopGroup.singleton)
        let monitors = logs.map { parseLog($0, anchors: configuration.anchors, client: client) }
        let fetcher: KeyFetcher
        do { fetcher = try KeyFetcher(configuration: configuration, client: client) } catch {
            Self.exit("\(path): cache: \(error)", code: 78)
        }
        var states = loadStates()
        while true {
            let verdict = await round(monitors, watched: watched, expected: expected, fetcher: fetcher, states: &states)
            saveStates(states)
            if once {
                await client.close()
                Foundation.exit(verdict)
            }
            do { try await Task.sleep(for: .seconds(interval)) } catch {
                await client.close()  // cancelled between rounds
                throw error
            }
        }
    }

    /// One round over every log; returns the exit code it deserves.
    private func round(
        _ monitors: [LogMonitor], watched: [DomainName], expected: [DomainName: KMSCrypto.PublicKey], fetcher: KeyFetcher,
        states: inout [String: LogState]
    ) async -> Int32 {
        var verdict: Int32 = 0
        func worsen(_ code: Int32) { if verdict == 0 || code < verdict { verdict = code } }
        for monitor in monitors {
            let signer = monitor.signer.name
            let head: TreeHead
            let entries: [(index: UInt64, entry: LogEntry)]
            do {
                head = try await monitor.head()
                let (next, new) = try await monitor.follow(from: states[signer.text] ?? LogState(), to: head)
                states[signer.text] = next
                entries = new
            } catch {
                report("log", signer: signer, ["problem": error.description])
                worsen(error.kind == .log ? 2 : 3)
                continue
            }
            report("head", signer: signer, ["size": "\(head.size)", "time": head.time.iso8601, "new_entries": "\(entries.count)"])
            for (index, entry) in entries where watched.contains(entry.countersignature.target) {
                let c = entry.countersignature
                var fields = [
                    "index": "\(index)", "target": c.target.text, "key": KeyField.encode(c.key),
                    "valid": "\(c.notBefore.iso8601) to \(c.notAfter.iso8601)", "logged": entry.loggedAt.iso8601,
                ]
                if (try? c.verify(by: monitor.signer.key)) == nil { fields["problem"] = "the entry's countersignature does not verify" }
                if let want = expected[c.target], want != c.key {
                    fields["alert"] = "NOT THE EXPECTED KEY: \(signer) vouched for a key that is not \(c.target)'s"
                    worsen(1)
                }
                report("countersigned", signer: signer, fields)
            }
            // What the hierarchy serves must be in this log, in the same tree.
            for name in watched where name.isSubdomain(of: signer) {
                do {
                    let result = try await fetcher.fetch(name, signer: signer, audit: true)
                    guard let proof = result.proof else { continue }
                    try await monitor.checkConsistency(size: proof.head.size, root: proof.head.root, with: head)
                    var fields = ["target": name.text, "index": "\(proof.index)", "key": KeyField.encode(result.key)]
                    if let want = expected[name], want != result.key {
                        fields["alert"] = "the hierarchy serves a key that is not \(name)'s"
                        worsen(1)
                    }
                    report("served", signer: signer, fields)
                } catch let error as FetchError {
                    switch error.kind {
                    case .verificationFailed:
                        report("served", signer: signer, ["target": name.text, "alert": "NOT IN THE LOG: \(error.message)"])
                        worsen(1)
                    case .notFound:
                        report("served", signer: signer, ["target": name.text, "note": "no key registered"])
                    default:
                        report("served", signer: signer, ["target": name.text, "problem": error.message])
                        worsen(3)
                    }
                } catch let error as MonitorError {
                    report("served", signer: signer, ["target": name.text, "alert": "\(error)"])
                    worsen(error.kind == .log ? 2 : 3)
                } catch {
                    report("served", signer: signer, ["target": name.text, "problem": "\(error)"])
                    worsen(3)
                }
            }
        }
        return verdict
    }

    private func report(_ event: String, signer: DomainName, _ fields: [String: String]) {
        if json {
            var object = fields
            object["event"] = event
            object["log"] = signer.text
            if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) {
                print(String(decoding: data, as: UTF8.self))
            }
            return
        }
        let order = ["alert", "problem", "note", "target", "index", "key", "valid", "logged", "size", "time", "new_entries"]
        let text = order.compactMap { key in fields[key].map { "\(key)=\"\($0)\"" } }.joined(separator: " ")
        print("\(signer) \(event) \(text)")
    }

    private func parseLog(_ text: String, anchors: TrustAnchors, client: DNSClient) -> LogMonitor {
        let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
        guard parts.count == 2, let name = try? DomainName(parts[0].hasSuffix(".") ? parts[0] : parts[0] + ".").lowercased else {
            Self.exit("--log: '\(text)' is not SIGNER=ADDRESS[:PORT]", code: 64)
        }
        guard let anchor = anchors.anchor(named: name) else {
            Self.exit("--log: \(name) is not one of the host's trust anchors, so its log's heads cannot be checked", code: 78)
        }
        let endpoint = Endpoint(parts[1]) ?? IPAddress(parts[1]).map { Endpoint(address: $0, port: 53) }
        guard let endpoint, let address = try? endpoint.socketAddress() else {
            Self.exit("--log: '\(parts[1])' is not ADDRESS[:PORT]", code: 64)
        }
        return LogMonitor(signer: anchor, server: address, client: client)
    }

    private func parseExpectations() -> [DomainName: KMSCrypto.PublicKey] {
        var expected: [DomainName: KMSCrypto.PublicKey] = [:]
        for text in expectations {
            let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let name = try? DomainName(parts[0].hasSuffix(".") ? parts[0] : parts[0] + ".").lowercased else {
                Self.exit("--expect: '\(text)' is not NAME=KEY", code: 64)
            }
            if let key = try? KeyField.decode(parts[1]) {
                expected[name] = key
            } else if let key = try? KeyFile.readPublicKey(at: parts[1]) {
                expected[name] = key
            } else {
                Self.exit("--expect: '\(parts[1])' is neither a key in wire form nor a readable PEM public key", code: 64)
            }
        }
        return expected
    }

    private func loadStates() -> [String: LogState] {
        guard let state else { return [:] }
        guard let data = FileManager.default.contents(atPath: state) else { return [:] }
        do { return try JSONDecoder().decode([String: LogState].self, from: data) } catch {
            Self.exit("\(state): not a monitor state file (\(error)); move it away to start over", code: 78)
        }
    }

    private func saveStates(_ states: [String: LogState]) {
        guard let state, let data = try? JSONEncoder().encode(states) else { return }
        let temporary = state + ".tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: data),
            rename(temporary, state) == 0
        else {
            FileHandle.standardError.write(Data("kms monitor: cannot write \(state)\n".utf8))
            return
        }
    }

    static func exit(_ message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data("kms monitor: \(message)\n".utf8))
        Foundation.exit(code)
    }
}
