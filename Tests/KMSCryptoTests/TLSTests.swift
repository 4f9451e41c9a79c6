import Foundation
import Testing

@testable import KMSCrypto

/// Two TLS connections pumped against each other in memory.
@Suite struct TLSTests {
    struct Pair {
        let client: TLSConnection
        let server: TLSConnection

        /// Moves bytes both ways until neither side has anything to say.
        func pump() throws(CryptoError) {
            for _ in 0..<20 {
                let toServer = client.takeOutbound()
                let toClient = server.takeOutbound()
                if toServer.isEmpty && toClient.isEmpty && client.isEstablished && server.isEstablished { return }
                server.feed(toServer)
                client.feed(toClient)
                if !server.isEstablished { _ = try server.handshake() }
                if !client.isEstablished { _ = try client.handshake() }
            }
        }
    }

    func pair(
        clientKey: PrivateKey, serverKey: PrivateKey, pinned: PublicKey,
        clientCiphers: [TLSCipher] = TLSCipher.allCases, serverCiphers: [TLSCipher] = TLSCipher.allCases
    ) throws -> Pair {
        let clientContext = try TLSContext(role: .client, identity: try TLSIdentity(name: "hosta.b.a.xx.", key: clientKey), ciphers: clientCiphers)
        let serverContext = try TLSContext(role: .server, identity: try TLSIdentity(name: "hostb.c.a.xx.", key: serverKey), ciphers: serverCiphers)
        let client = try TLSConnection(context: clientContext, pinnedKey: pinned, serverName: "hostb.c.a.xx.")
        let server = try TLSConnection(context: serverContext)
        _ = try client.handshake()
        return Pair(client: client, server: server)
    }

    @Test(arguments: KeyAlgorithm.allCases)
    func pinnedHandshakeCarriesDataBothWays(_ algorithm: KeyAlgorithm) throws {
        let clientKey = try PrivateKey(generating: algorithm)
        let serverKey = try PrivateKey(generating: algorithm)
        let pair = try pair(clientKey: clientKey, serverKey: serverKey, pinned: serverKey.publicKey, clientCiphers: [.chacha20poly1305])
        try pair.pump()
        #expect(pair.client.isEstablished && pair.server.isEstablished)
        #expect(pair.client.protocolVersion == "TLSv1.3")
        #expect(pair.client.cipherSuite == "TLS_CHACHA20_POLY1305_SHA256")
        // The server learns who called: the key and the name in the client's certificate.
        #expect(pair.server.peerKey == clientKey.publicKey)
        #expect(pair.server.peerName == "hosta.b.a.xx.")
        #expect(pair.client.peerKey == serverKey.publicKey)

        try pair.client.write(Array("GET / HTTP/1.0\r\n\r\n".utf8))
        let ciphertext = pair.client.takeOutbound()
        #expect(!ciphertext.isEmpty)
        #expect(!String(decoding: ciphertext, as: UTF8.self).contains("GET /"))
        pair.server.feed(ciphertext)
        #expect(try pair.server.read() == .data(Array("GET / HTTP/1.0\r\n\r\n".utf8)))
        try pair.server.write(Array("HTTP/1.0 200 OK\r\n".utf8))
        pair.client.feed(pair.server.takeOutbound())
        #expect(try pair.client.read() == .data(Array("HTTP/1.0 200 OK\r\n".utf8)))

        pair.server.shutdown()
        pair.client.feed(pair.server.takeOutbound())
        #expect(try pair.client.read() == .closed)
    }

    @Test func aDifferentServerKeyFailsTheHandshake() throws {
        let serverKey = try PrivateKey(generating: .ed25519)
        let impostor = try PrivateKey(generating: .ed25519)
        let pair = try pair(clientKey: try PrivateKey(generating: .ed25519), serverKey: impostor, pinned: serverKey.publicKey)
        do {
            try pair.pump()
            Issue.record("a handshake with the wrong key succeeded")
        } catch {
            #expect(error.code == .tlsFailed)
            #expect(error.reason.contains("peer key rejected"), "\(error)")
        }
        #expect(!pair.client.isEstablished)
    }

    @Test func noCommonCipherFails() throws {
        let serverKey = try PrivateKey(generating: .ed25519)
        let pair = try pair(
            clientKey: try PrivateKey(generating: .ed25519), serverKey: serverKey, pinned: serverKey.publicKey,
            clientCiphers: [.aes128gcm], serverCiphers: [.aes256gcm])
        #expect(throws: CryptoError.self) { try pair.pump() }
    }

    @Test func brokenCiphersAreRefusedByName() throws {
        for name in ["DES", "3des", "DES-EDE3"] {
            guard case .failure(let error) = TLSCipher.named(name) else {
                Issue.record("\(name) accepted")
                continue
            }
            #expect(error.reason.contains("broken and refused"))
        }
        #expect(try TLSCipher.named("aes-256-gcm").get() == .aes256gcm)
        guard case .failure(let error) = TLSCipher.named("rot13") else {
            Issue.record("rot13 accepted")
            return
        }
        #expect(error.reason.contains("unknown cipher"))
    }

    /// Read back by OpenSSL's own tool: the subject is the host's name and the certificate's
    /// public key is the host's key (it used to check only the PEM header line).
    @Test(arguments: KeyAlgorithm.allCases)
    func certificateNamesTheHostAndCarriesItsKey(_ algorithm: KeyAlgorithm) throws {
        let key = try PrivateKey(generating: algorithm)
        let pem = try TLSIdentity(name: "hostb.c.a.xx.", key: key).certificatePEM()
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cert-\(UUID().uuidString).pem").path
        try pem.write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        func openssl(_ arguments: [String]) throws -> String {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
            process.arguments = arguments
            let pipe = Pipe()
            process.standardOutput = pipe
            try process.run()
            let output = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "openssl \(arguments.joined(separator: " "))")
            return String(decoding: output, as: UTF8.self)
        }
        let subject = try openssl(["x509", "-in", path, "-noout", "-subject", "-nameopt", "RFC2253"])
        // Certificate names carry no trailing dot (RFC 6125 reference identifiers).
        #expect(subject.trimmingCharacters(in: .whitespacesAndNewlines) == "subject=CN=hostb.c.a.xx")
        #expect(try openssl(["x509", "-in", path, "-noout", "-ext", "subjectAltName"]).contains("DNS:hostb.c.a.xx\n"))
        #expect(try openssl(["x509", "-in", path, "-noout", "-pubkey"]) == (try key.publicKey.pemRepresentation()))
    }
}
