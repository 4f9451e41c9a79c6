import DNSWire
import Foundation
import KMSCrypto
import Testing

@testable import KMSSettings

/// Configuration errors name the file, the line and the field.
@Suite struct ConfigFileTests {
    @Test func wordsCommentsAndQuotes() throws {
        let file = try ConfigFile(path: "t.conf", text: """
            # a comment
            zone   b.a.xx.   # trailing comment
            txt    b.a.xx. "two words" "# not a comment"

            """)
        #expect(file.directives.count == 2)
        #expect(file.directives[0].line == 2)
        #expect(file.directives[1].values == ["b.a.xx.", "two words", "# not a comment"])
    }

    @Test func errorsPointAtTheLine() throws {
        #expect(throws: ConfigError.self) { try ConfigFile(path: "t.conf", text: "txt x. \"open") }
        let file = try ConfigFile(path: "t.conf", text: "zone b.a.xx.\nlisten 127.0.0.1\nzone c.a.xx.")
        do {
            _ = try file.one("zone")
            Issue.record("a repeated directive was accepted")
        } catch {
            #expect(error.description == "t.conf:3: zone: given twice (first on line 1)")
        }
        let listen = file.all("listen")[0]
        do {
            _ = try file.endpoint(listen.values[0], listen)
            Issue.record("an address without a port was accepted")
        } catch {
            #expect(error.description.hasPrefix("t.conf:2: listen: '127.0.0.1' is not ADDRESS:PORT"))
        }
        do {
            try file.requireKnown(["zone"])
            Issue.record("an unknown directive was accepted")
        } catch {
            #expect(error.description.hasPrefix("t.conf:2: listen: unknown directive"))
        }
        do {
            _ = try file.one("key")
            Issue.record("a missing directive was accepted")
        } catch {
            #expect(error.description == "t.conf: key: missing")
        }
    }

    @Test func valuesAreCheckedStrictly() throws {
        let file = try ConfigFile(path: "t.conf", text: "d 300s\nd 2000ms\nd 1h\nd soon\nn B.a.xx.\nk ed25519:AAAA\nk /nonexistent.pem")
        let d = file.all("d")
        #expect(try file.duration(d[0]) == 300)
        #expect(try file.duration(d[1]) == 2)
        #expect(try file.duration(d[2]) == 3600)
        #expect(throws: ConfigError.self) { try file.duration(d[3]) }
        let n = file.all("n")[0]
        #expect(throws: ConfigError.self) { try file.name(n.values[0], n) }
        let k = file.all("k")
        #expect(throws: ConfigError.self) { try file.publicKey(k[0].values[0], k[0]) }
        do {
            _ = try file.publicKey(k[1].values[0], k[1])
            Issue.record("a missing key file was accepted")
        } catch {
            #expect(error.description.hasPrefix("t.conf:7: k: /nonexistent.pem: cannot read"))
        }
    }

    @Test func endpoints() {
        #expect(Endpoint("127.0.0.1:53")?.port == 53)
        #expect(Endpoint("[::1]:5353")?.address.isIPv6 == true)
        #expect(Endpoint("::1:53") == nil)
        #expect(Endpoint("127.0.0.1:70000") == nil)
        #expect(Endpoint("localhost:53") == nil)
        // A link-local IPv6 server with its interface, as resolv.conf names a router's DNS.
        let scoped = Endpoint("[fe80::1%eth0]:53")
        #expect(scoped?.scope == "eth0" && scoped?.address == IPAddress("fe80::1") && scoped?.description == "[fe80::1%eth0]:53")
        #expect(Endpoint("[fe80::1%eth0]:53") != Endpoint("[fe80::1]:53"))
        #expect(Endpoint("[fe80::1%]:53") == nil && Endpoint("10.0.0.1%eth0:53") == nil && Endpoint("fe80::1%eth0:53") == nil)
    }

    @Test func closestAnchorCoversTheName() throws {
        let key = try PrivateKey(generating: .ed25519).publicKey
        let anchors = TrustAnchors([.init(name: "xx.", key: key), .init(name: "a.xx.", key: key), .init(name: "b.a.xx.", key: key)])
        #expect(anchors.closest(covering: "hostb.c.a.xx.")?.name == "a.xx.")
        #expect(anchors.closest(covering: "hosta.b.a.xx.")?.name == "b.a.xx.")
        #expect(anchors.closest(covering: "a.xx.")?.name == "a.xx.")
        #expect(anchors.closest(covering: "q.xx.")?.name == "xx.")
        #expect(anchors.closest(covering: "example.com.") == nil)
    }

    @Test func resolvConfNameserversLeaveOutTheProxyItself() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("resolv-\(UUID().uuidString).conf").path
        try "# generated\nnameserver 127.0.0.11\nnameserver 10.0.0.1\nnameserver fe80::1%eth0\nsearch example.com\n"
            .write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let resolvers = ResolvConf.nameservers(from: path, excluding: [Endpoint("127.0.0.11:53")!])
        #expect(resolvers == [Endpoint("10.0.0.1:53")!, Endpoint("[fe80::1%eth0]:53")!])
    }
}
