import KMSTestSupport
import DNSWire
import Foundation
import KMSCrypto
import KMSNode
import KMSProtocol
import ControlSocket
import NIOPosix
import Testing

/// `kms register`'s path: the node's control socket, a real Unix-domain socket.
@Suite struct ControlTests {
    @Test func registerThroughTheSocketIsDurableAndServedAtOnce() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let node = hierarchy.nodes["c.a.xx."]!
            let path = hierarchy.directory.appendingPathComponent("c.control").path
            let channel = try await Control.serve(node, at: path, group: MultiThreadedEventLoopGroup.singleton)
            defer { channel.close(promise: nil) }
            let key = try PrivateKey(generating: .ed25519).publicKey
            let response = try await Control.send(
                Control.Request(op: "register", name: "hoste.c.a.xx.", key: KeyField.encode(key), addresses: ["127.0.0.15"]),
                to: path, group: MultiThreadedEventLoopGroup.singleton)
            #expect(response.ok, "\(response.message)")
            // Acknowledged means stored: a node opened on the same store sees it.
            try hierarchy.startNode("c.a.xx.")
            #expect(hierarchy.nodes["c.a.xx."]!.registeredHosts.contains { $0.name == "hoste.c.a.xx." })
            #expect(try await hierarchy.fetcher("hosta.b.a.xx.").fetch("hoste.c.a.xx.").key == key)

            // Mistakes come back as one line each, and register nothing.
            for (request, expected) in [
                (Control.Request(op: "register", name: "Hoste.c.a.xx.", key: KeyField.encode(key)), "name:"),
                (Control.Request(op: "register", name: "hostf.b.a.xx.", key: KeyField.encode(key)), "not in zone c.a.xx."),
                (Control.Request(op: "register", name: "hostf.c.a.xx.", key: "ed25519:AAAA"), "key:"),
                (Control.Request(op: "register", name: "hostf.c.a.xx.", key: KeyField.encode(key), addresses: ["nowhere"]), "addresses:"),
                (Control.Request(op: "delete"), "unknown op"),
            ] {
                let answer = try await Control.send(request, to: path, group: MultiThreadedEventLoopGroup.singleton)
                #expect(!answer.ok)
                #expect(answer.message.contains(expected), "\(answer.message)")
            }
        }
    }

    /// `kms register --file`'s path: a batch is stored in one transaction, all or none, and a
    /// refusal names the host that was wrong.
    @Test func aBatchIsRegisteredWholeOrNotAtAll() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let path = hierarchy.directory.appendingPathComponent("c.control").path
            let channel = try await Control.serve(hierarchy.nodes["c.a.xx."]!, at: path, group: MultiThreadedEventLoopGroup.singleton)
            defer { channel.close(promise: nil) }
            let keys = try (0..<3).map { _ in try PrivateKey(generating: .ed25519).publicKey }
            var hosts = (0..<3).map { index in
                NodeControl.Host(name: "batch\(index).c.a.xx.", key: KeyField.encode(keys[index]), addresses: ["127.0.1.\(index)"])
            }
            // A bad second host: refused with its index, and the first is not stored either.
            var bad = hosts
            bad[1].name = "batch1.b.a.xx."
            let refused = try await Control.send(Control.Request(op: "register-batch", hosts: bad), to: path, group: MultiThreadedEventLoopGroup.singleton)
            #expect(!refused.ok && refused.message.contains("not in zone c.a.xx."), "\(refused.message)")
            bad[1] = NodeControl.Host(name: "batch1.c.a.xx.", key: "ed25519:AAAA", addresses: [])
            let badKey = try await Control.send(Control.Request(op: "register-batch", hosts: bad), to: path, group: MultiThreadedEventLoopGroup.singleton)
            #expect(!badKey.ok && badKey.index == 1 && badKey.message.hasPrefix("key:"), "\(badKey.message)")
            try hierarchy.startNode("c.a.xx.")
            #expect(!hierarchy.nodes["c.a.xx."]!.registeredHosts.contains { $0.name == "batch0.c.a.xx." })

            // The good batch: acknowledged means stored, and served at once.
            hosts[2].addresses.append("::2")
            let channel2 = try await Control.serve(hierarchy.nodes["c.a.xx."]!, at: path + "2", group: MultiThreadedEventLoopGroup.singleton)
            defer { channel2.close(promise: nil) }
            let response = try await Control.send(Control.Request(op: "register-batch", hosts: hosts), to: path + "2", group: MultiThreadedEventLoopGroup.singleton)
            #expect(response.ok, "\(response.message)")
            let aaaa = try await hierarchy.send(DNSMessage.query(id: 1, name: "batch2.c.a.xx.", type: .aaaa), to: "c.a.xx.")
            #expect(aaaa.answers.map(\.data) == [.aaaa(IPAddress("::2")!.bytes)])
            try hierarchy.startNode("c.a.xx.")
            let stored = hierarchy.nodes["c.a.xx."]!.registeredHosts.filter { $0.name.text.hasPrefix("batch") }
            #expect(stored.map(\.key) == keys)
            #expect(try await hierarchy.fetcher("hosta.b.a.xx.").fetch("batch1.c.a.xx.").key == keys[1])
        }
    }

    /// `kms ctl remove`, `flush` and `status`: a removal is durable, stops the addresses, the
    /// key and the static records at once, and moves the serial.
    @Test func removeFlushAndStatusThroughTheSocket() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let path = hierarchy.directory.appendingPathComponent("c.control").path
            let node = hierarchy.nodes["c.a.xx."]!
            let channel = try await Control.serve(node, at: path, group: MultiThreadedEventLoopGroup.singleton)
            defer { channel.close(promise: nil) }
            let group = MultiThreadedEventLoopGroup.singleton
            #expect(await node.publishStaticRecords() == 2)
            _ = try await hierarchy.fetcher("hosta.b.a.xx.").fetch("hostc.c.a.xx.")
            let before = try await StaticRecordsTests.serial(hierarchy, "c.a.xx.")

            let removed = try await Control.send(Control.Request(op: "remove", name: "hostc.c.a.xx."), to: path, group: group)
            #expect(removed.ok, "\(removed.message)")
            let a = try await hierarchy.send(DNSMessage.query(id: 1, name: "hostc.c.a.xx.", type: .a), to: "c.a.xx.")
            #expect(a.rcode == .nameError && a.authorities.last?.type == .soa)
            let published = try await hierarchy.send(DNSMessage.query(id: 2, name: "_kms1.hostc.c.a.xx.", type: .txt), to: "c.a.xx.")
            #expect(published.answers.isEmpty)
            #expect(try await StaticRecordsTests.serial(hierarchy, "c.a.xx.") > before)
            // The authoritative KMS no longer vouches for it (KMSs that cached it keep it until
            // it expires or is flushed: pushing revocations to them is issue 11's).
            let anonymous = try await hierarchy.send(DNSMessage.query(id: 3, name: "hostc.c.a.xx.", type: .txt), to: "c.a.xx.")
            #expect(anonymous.rcode == .nameError)
            let again = try await Control.send(Control.Request(op: "remove", name: "hostc.c.a.xx."), to: path, group: group)
            #expect(!again.ok && again.message.contains("is not registered"))
            try hierarchy.startNode("c.a.xx.")
            #expect(
                !hierarchy.nodes["c.a.xx."]!.registeredHosts.contains { $0.name == "hostc.c.a.xx." },
                "the removal is durable, even of a host the configuration's host lines name")

            // Flush at the home KMS: its cached key for host B is dropped. (Host C's went with
            // the removal: the revocation reached b.a.xx. through a.xx.)
            _ = try await hierarchy.fetcher("hosta.b.a.xx.").fetch("hostb.c.a.xx.")
            let homePath = hierarchy.directory.appendingPathComponent("b.control").path
            let home = try await Control.serve(hierarchy.nodes["b.a.xx."]!, at: homePath, group: group)
            defer { home.close(promise: nil) }
            let flushed = try await Control.send(Control.Request(op: "flush", name: "hostb.c.a.xx."), to: homePath, group: group)
            #expect(flushed.ok && flushed.message.hasPrefix("flushed 1 cached key"), "\(flushed.message)")
            let status = try await Control.send(Control.Request(op: "status"), to: homePath, group: group)
            #expect(status.fields?.first == ["zone", "b.a.xx."])
            #expect(status.fields?.contains { $0.first == "serial" } == true)
        }
    }
}
