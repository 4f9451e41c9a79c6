import DNSTransport
import KMSTestSupport
import Foundation
import KMSCrypto
import KMSNode
import KMSSettings
import Testing

/// A broken node configuration stops the start with one line: file, line, field, reason.
@Suite struct NodeConfigurationTests {
    let directory: URL
    let keyPath: String

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("countersign-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        keyPath = directory.appendingPathComponent("k").path
        try KeyFile.write(try PrivateKey(generating: .ed25519), prefix: keyPath, force: false)
    }

    func load(_ lines: [String]) throws(ConfigError) -> NodeConfiguration {
        let path = directory.appendingPathComponent("node.conf").path
        try? lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return try NodeConfiguration(path: path)
    }

    var base: [String] { ["zone b.a.xx.", "listen 127.0.0.1:5303", "key k.pem", "database store.sqlite"] }

    func error(_ lines: [String]) -> String {
        do {
            _ = try load(lines)
            return "accepted"
        } catch {
            return error.description.replacingOccurrences(of: directory.path + "/", with: "")
        }
    }

    @Test func aGoodConfigurationLoadsWithDefaults() throws {
        let configuration = try load(base + ["parent a.xx. 127.0.0.1:5302 k.pub.pem", "host hosta.b.a.xx. k.pub.pem 127.0.0.11"])
        #expect(configuration.zone == "b.a.xx.")
        #expect(configuration.parent?.name == "a.xx.")
        #expect(configuration.defaultSigner == "xx.")
        #expect(configuration.allowAnonymous)
        #expect(configuration.upstreamTimeout == 2)
        #expect(configuration.replayWindow == 300)
        #expect(configuration.database == directory.appendingPathComponent("store.sqlite").path)
        #expect(configuration.control == configuration.database + ".control")
        #expect(configuration.limits.verifyFailures == Rate(perSecond: 10, burst: 50))
        #expect(configuration.limits.unprovenFailures == Rate(perSecond: 100, burst: 1000))
        #expect(configuration.limits.unprovenFetches == Rate(perSecond: 100, burst: 200))
        #expect(configuration.limits.slip == 2)
        #expect(configuration.nameServers.map(\.name) == ["kms.b.a.xx."])
        #expect(configuration.staticSigners == ["xx."])
        #expect(configuration.secondaries.isEmpty && configuration.notify.isEmpty)
    }

    @Test func eachMistakeNamesFileLineAndField() {
        #expect(error(Array(base.dropFirst())) == "node.conf: zone: missing")
        #expect(error(base + ["zone c.a.xx."]) == "node.conf:5: zone: given twice (first on line 1)")
        #expect(error(base + ["parent b.xx. 127.0.0.1:5302 k.pub.pem"]) == "node.conf:5: parent: b.xx. is not above b.a.xx.")
        #expect(error(base + ["child c.a.xx. 127.0.0.1:5304 k.pub.pem"]) == "node.conf:5: child: c.a.xx. is not below b.a.xx.")
        #expect(error(base + ["host hostb.c.a.xx. k.pub.pem 127.0.0.12"]) == "node.conf:5: host: hostb.c.a.xx. is not in zone b.a.xx.")
        #expect(error(base + ["host hosta.b.a.xx. k.pub.pem"]).hasPrefix("node.conf:5: host: expected: host NAME KEY ADDRESS"))
        #expect(error(base + ["anonymous maybe"]) == "node.conf:5: anonymous: 'maybe' is neither allow nor refuse")
        #expect(error(base + ["upstream-timeout fast"]).hasPrefix("node.conf:5: upstream-timeout: 'fast' is not a duration"))
        #expect(error(base + ["colour blue"]).hasPrefix("node.conf:5: colour: unknown directive"))
        // Limits, zone and transfer settings.
        #expect(error(base + ["verify-rate lots"]) == "node.conf:5: verify-rate: 'lots' is not a rate per second (a positive number, or off)")
        #expect(error(base + ["unproven-failures 100 0"]) == "node.conf:5: unproven-failures: '0' is not a burst (a number of at least 1)")
        #expect(error(base + ["unproven-fetches -1"]) == "node.conf:5: unproven-fetches: '-1' is not a rate per second (a positive number, or off)")
        #expect(error(base + ["anonymous-rate 10 0"]) == "node.conf:5: anonymous-rate: '0' is not a burst (a number of at least 1)")
        #expect(error(base + ["rate-prefix 24 200"]).hasPrefix("node.conf:5: rate-prefix: expected an IPv4 prefix length 8-32"))
        #expect(error(base + ["rate-slip 11"]).hasPrefix("node.conf:5: rate-slip: '11' is not a slip: a whole number from 0 (never TC=1) to 10"))
        #expect(error(base + ["rate-slip 1 2"]).hasPrefix("node.conf:5: rate-slip: expected: rate-slip N"))
        #expect(error(base + ["upstream-inflight 10 20"]).hasPrefix("node.conf:5: upstream-inflight: expected two counts"))
        #expect(error(base + ["trace-allow 10.0.0.0/40"]) == "node.conf:5: trace-allow: '10.0.0.0/40' is not ADDRESS/LENGTH with a length of 0-32")
        #expect(error(base + ["secondary nowhere"]) == "node.conf:5: secondary: 'nowhere' is not an IP address")
        #expect(error(base + ["notify 192.0.2.1"]).hasPrefix("node.conf:5: notify: '192.0.2.1' is not ADDRESS:PORT"))
        #expect(error(base + ["static-signers c.a.xx."]).hasPrefix("node.conf:5: static-signers: c.a.xx. is not b.a.xx. or above it"))
        #expect(error(base + ["nameserver ns.b.a.xx."]).hasPrefix("node.conf:5: nameserver: ns.b.a.xx. is in b.a.xx.: give its addresses"))
        #expect(error(base + ["reply-cache some"]) == "node.conf:5: reply-cache: expected a count of replies, or off")
        #expect(error(base + ["identity k\u{E9}"]) == "node.conf:5: identity: 'k\u{E9}' is not 1 to 64 printable ASCII characters")
        #expect(error(base + ["identity two words"]) == "node.conf:5: identity: expected: identity TEXT")
        #expect(error(base + ["transfer-key missing.key"]).hasPrefix("node.conf:5: transfer-key: cannot read the key file"))
        try? "# a comment\nhmac-md5:xfr.b.a.xx.:c2VjcmV0\n".write(toFile: directory.appendingPathComponent("bad.key").path, atomically: true, encoding: .utf8)
        #expect(error(base + ["transfer-key bad.key"]).hasSuffix("bad.key:2: expected ALGORITHM:NAME:SECRET with ALGORITHM one of hmac-sha256, hmac-sha384, hmac-sha512"))
        #expect(error(base + ["txt b.a.xx. \"kms1:answer\""]) == "node.conf:5: txt: ordinary TXT data may not start with the kms1: prefix")
        #expect(error(["zone b.a.xx.", "listen 127.0.0.1:5303", "key missing.pem", "database s"]).hasPrefix("node.conf:3: key: "))
        #expect(error(["zone B.a.xx.", "listen 127.0.0.1:5303", "key k.pem", "database s"]).hasPrefix("node.conf:1: zone: 'B.a.xx.' is not an absolute lower-case name"))
    }
}
