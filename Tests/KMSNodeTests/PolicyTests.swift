import DNSWire
import Foundation
import KMSCrypto
import KMSProtocol
import KMSSettings
import KMSTestSupport
import Testing

@testable import KMSNode

/// The second embodiment: the CUG database lives in the KMS, per client.
@Suite struct PolicyTests {
    /// The seed's figure 6, with its names mapped onto ours (SSL → tls, IPsec → kernel) and its
    /// 3DES row written with a modern cipher, since DES and 3DES are refused at load.
    static let figure6 = """
        client  1.2.3.4/32      t502
        client  5.6.7.8/32      t503
        client  0.0.0.0/0       t504
        t502    *.jinji.nec.com   tls     jinji.nec.com         AES-256-GCM
        t503    *.eigyo.nec.com   tls     eigyo.nec.com         AES-128-GCM
        t503    *.jinji.nec.com   kernel  soumu-jinji.nec.com   AES-128-GCM
        t504    *.soumu.nec.com   tls     soumu.nec.com         AES-128-GCM
        """

    @Test func theSeedsThreeWorkedExamples() throws {
        let database = try PolicyDatabase(file: try ConfigFile(path: "policy.conf", text: Self.figure6))
        let first = try #require(database.row(client: IPAddress("1.2.3.4")!, name: "kojima.jinji.nec.com."))
        #expect(first.settings.pathProtocol == .tls && first.settings.identity == "jinji.nec.com")
        let second = try #require(database.row(client: IPAddress("5.6.7.8")!, name: "kojima.jinji.nec.com."))
        #expect(second.settings.pathProtocol == .kernel && second.settings.identity == "soumu-jinji.nec.com")
        #expect(second.line == 6)  // the second entry of its table, as the seed says
        #expect(database.row(client: IPAddress("133.11.23.24")!, name: "kojima.jinji.nec.com.") == nil)
    }

    @Test func brokenCiphersAndBadLinesAreRefusedAtLoad() {
        func error(_ text: String) -> String {
            do {
                _ = try PolicyDatabase(file: try ConfigFile(path: "policy.conf", text: text))
                return "accepted"
            } catch { return "\(error)" }
        }
        #expect(error("t1 *.x.com tls id 3DES").hasPrefix("policy.conf:1: t1: 3DES is broken and refused"))
        #expect(error("client 1.2.3.4/33 t1").contains("not an address or prefix"))
        #expect(error("client 1.2.3.4 t9").contains("names table t9, which has no rows"))
        #expect(error("t1 *.x.com ipsec id AES-128-GCM").contains("neither tls nor kernel"))
    }

    @Test func anEditedFileIsReadAgainOnUse() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("policy-\(UUID().uuidString).conf").path
        try "client 0.0.0.0/0 t1\nt1 *.a.xx. tls first AES-128-GCM\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let source = try PolicySource(path: path, checkInterval: 0)
        #expect(source.current.row(client: IPAddress("10.0.0.1")!, name: "h.a.xx.")?.settings.identity == "first")
        try "client 0.0.0.0/0 t1\nt1 *.a.xx. tls second AES-128-GCM\n".write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: 10)], ofItemAtPath: path)
        #expect(source.current.row(client: IPAddress("10.0.0.1")!, name: "h.a.xx.")?.settings.identity == "second")
        // A broken edit leaves the last good database in force.
        try "t1 *.a.xx. tls third DES\n".write(toFile: path, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: 20)], ofItemAtPath: path)
        #expect(source.current.row(client: IPAddress("10.0.0.1")!, name: "h.a.xx.")?.settings.identity == "second")
        #expect(throws: ConfigError.self) { try source.reload() }
    }

    func verdict(_ hierarchy: TestHierarchy, from source: String) async throws -> (CUGVerdict?, KMSRecord?) {
        var query = DNSMessage.query(id: 9, name: "hostb.c.a.xx.", type: .a)
        query.header.recursionDesired = true
        let bytes = try #require(try await RawUDP.exchange(try query.wire(), with: hierarchy.servers["b.a.xx."]!.address, from: source))
        let reply = try DNSMessage(wire: bytes)
        #expect(reply.answers.first?.data == .a([127, 0, 0, 12]))
        guard let record = try reply.kmsRecord() else { return (nil, nil) }
        return (try CUGVerdict(record), record)
    }

    @Test func verdictsTravelSignedPerClientAndChangeWithoutRestart() async throws {
        let policy = FileManager.default.temporaryDirectory.appendingPathComponent("policy-\(UUID().uuidString).conf").path
        try """
            client 127.0.0.1/32 t1
            client 127.0.0.2/32 t2
            t1 *.c.a.xx. tls    jinji.nec.com        AES-256-GCM
            t2 *.x.a.xx. tls    other                AES-256-GCM
            t2 *.c.a.xx. kernel soumu-jinji.nec.com  AES-128-GCM
            """.write(toFile: policy, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: policy) }
        let hierarchy = try await TestHierarchy(extra: ["b.a.xx.": "policy \(policy)"])
        try await afterwards({ await hierarchy.shutdown() }) {
            let key = hierarchy.keys["b.a.xx."]!.publicKey

            let (first, firstRecord) = try await verdict(hierarchy, from: "127.0.0.1")
            #expect(first?.path?.pathProtocol == .tls && first?.path?.identity == "jinji.nec.com")
            #expect(first?.path?.cipher == .aes256gcm && first?.from == "b.a.xx.")
            try #require(firstRecord).verifySignature(by: key, signer: "b.a.xx.")
            let (second, _) = try await verdict(hierarchy, from: "127.0.0.2")
            #expect(second?.path?.pathProtocol == .kernel && second?.path?.identity == "soumu-jinji.nec.com")
            let (third, thirdRecord) = try await verdict(hierarchy, from: "127.0.0.3")
            #expect(third != nil && third?.path == nil)
            try #require(thirdRecord).verifySignature(by: key, signer: "b.a.xx.")

            // A changed row takes effect without a restart.
            try """
                client 0.0.0.0/0 t1
                t1 hostb.c.a.xx. tls changed.example AES-128-GCM
                """.write(toFile: policy, atomically: true, encoding: .utf8)
            try hierarchy.nodes["b.a.xx."]!.reloadPolicy()
            let (changed, _) = try await verdict(hierarchy, from: "127.0.0.3")
            #expect(changed?.path?.identity == "changed.example" && changed?.path?.cipher == .aes128gcm)
        }
    }
}
