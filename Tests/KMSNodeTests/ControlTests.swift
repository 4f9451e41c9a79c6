import KMSTestSupport
import DNSWire
import Foundation
import KMSCrypto
import KMSNode
import KMSProtocol
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
}
