import Foundation
import Testing

@testable import KMSCrypto

@Suite struct KeyTests {
    static let hostSeed: [UInt8] = Array(0..<32)

    @Test(arguments: KeyAlgorithm.allCases)
    func signAndVerify(_ algorithm: KeyAlgorithm) throws {
        let key = try PrivateKey(generating: algorithm)
        let message = Array("KMS1 message".utf8)
        let signature = try key.signature(for: message)
        #expect(key.publicKey.isValidSignature(signature, for: message))
        #expect(!key.publicKey.isValidSignature(signature, for: message + [0]))
        let other = try PrivateKey(generating: algorithm)
        #expect(!other.publicKey.isValidSignature(signature, for: message))
        #expect(!key.publicKey.isValidSignature([], for: message))
        #expect(!key.publicKey.isValidSignature([UInt8](repeating: 7, count: 64), for: message))
    }

    @Test(arguments: KeyAlgorithm.allCases)
    func pemRoundTrip(_ algorithm: KeyAlgorithm) throws {
        let key = try PrivateKey(generating: algorithm)
        let pem = try key.pemRepresentation()
        #expect(pem.hasPrefix("-----BEGIN PRIVATE KEY-----\n"))
        let again = try PrivateKey(pemEncoded: pem)
        #expect(again.publicKey == key.publicKey)
        let publicPEM = try key.publicKey.pemRepresentation()
        #expect(publicPEM.hasPrefix("-----BEGIN PUBLIC KEY-----\n"))
        #expect(try PublicKey(pemEncoded: publicPEM) == key.publicKey)
        #expect(try PublicKey(subjectPublicKeyInfo: key.publicKey.subjectPublicKeyInfo) == key.publicKey)
    }

    /// A SubjectPublicKeyInfo in its one DER form is built from its raw bytes: the key it
    /// builds is the same key (OpenSSL encodes it to the same bytes, and it verifies what the
    /// private key signed), and a P-256 point off the curve is refused.
    @Test(arguments: KeyAlgorithm.allCases)
    func keysBuiltFromRawBytesAreTheSameKeys(_ algorithm: KeyAlgorithm) throws {
        let key = try PrivateKey(generating: algorithm)  // new: not among the decoded keys yet
        let der = key.publicKey.subjectPublicKeyInfo
        #expect(der.count == (algorithm == .ed25519 ? 44 : 91))
        let decoded = try PublicKey(subjectPublicKeyInfo: der)
        #expect(decoded.algorithm == algorithm)
        #expect(try decoded.key.subjectPublicKeyInfo() == der)
        let message = Array("raw".utf8)
        #expect(decoded.isValidSignature(try key.signature(for: message), for: message))
        if algorithm == .p256 {
            var offCurve = try PrivateKey(generating: .p256).publicKey.subjectPublicKeyInfo
            offCurve[90] ^= 1  // the last byte of Y
            #expect(throws: CryptoError.self) { try PublicKey(subjectPublicKeyInfo: offCurve) }
        }
    }

    @Test func ed25519IsDeterministic() throws {
        let key = try PrivateKey(ed25519Seed: Self.hostSeed)
        let message = Array("same".utf8)
        #expect(try key.signature(for: message) == key.signature(for: message))
        #expect(try key.signature(for: message).count == 64)
    }

    /// Signatures start from a copy of a context set up once per key (`SigningContext`): the
    /// copy must sign exactly as a fresh context does. RFC 8032 section 7.1, test 2.
    @Test func ed25519SignaturesFromTheKeptContextMatchRFC8032() throws {
        let key = try PrivateKey(ed25519Seed: bytes("TM0Imyj/ltqdtsNG7BFOD1uKMZ81q6Yk2oz27U+4pvs="))
        let expected = bytes("kqAJqfDUyrhyDoILX2QlQKKye1QWUD+Ps3YiI+vbadoIWsHkPhWZbkWPNhPQ8R2MOHsurrQwKu6wDSkWErsMAA==")
        for _ in 0..<3 { #expect(try key.signature(for: [0x72]) == expected) }
    }

    /// ECDSA draws a fresh nonce for every signature; copying one context must not repeat it
    /// (a repeated nonce gives the private key away).
    @Test func p256SignaturesFromTheKeptContextNeverRepeat() throws {
        let key = try PrivateKey(generating: .p256)
        let message = Array("same".utf8)
        let signatures = try (0..<16).map { _ in try key.signature(for: message) }
        #expect(Set(signatures).count == signatures.count)
        for signature in signatures { #expect(key.publicKey.isValidSignature(signature, for: message)) }
    }

    /// An Ed25519 key verifies from the context it keeps (`EVPKey.verifier()`): after a valid
    /// signature, another message's, or a flipped bit, the kept context answers as a new one
    /// would, and one is kept again after each valid signature.
    @Test func ed25519VerifiesFromTheKeptContextAnswerAsNewOnes() throws {
        let key = try PrivateKey(generating: .ed25519)
        let publicKey = try PublicKey(subjectPublicKeyInfo: key.publicKey.subjectPublicKeyInfo)
        let messages = (0..<4).map { Array("message \($0)".utf8) }
        let signatures = try messages.map { try key.signature(for: $0) }
        for round in 0..<3 {
            for (index, message) in messages.enumerated() {
                #expect(publicKey.isValidSignature(signatures[index], for: message))
                #expect(publicKey.key.keepsVerifier)
                #expect(!publicKey.isValidSignature(signatures[(index + 1) % messages.count], for: message))
                var flipped = signatures[index]
                flipped[round * 20] ^= 1
                #expect(!publicKey.isValidSignature(flipped, for: message))
                #expect(!publicKey.isValidSignature(Array(signatures[index].dropLast()), for: message))
            }
        }
    }

    @Test(arguments: KeyAlgorithm.allCases)
    func oneKeySignsFromManyThreadsAtOnce(_ algorithm: KeyAlgorithm) async throws {
        let key = try PrivateKey(generating: algorithm)
        let valid = try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<64 {
                group.addTask {
                    let message = Array("message \(index)".utf8)
                    return key.publicKey.isValidSignature(try key.signature(for: message), for: message)
                }
            }
            return try await group.reduce(into: 0) { $0 += $1 ? 1 : 0 }
        }
        #expect(valid == 64)
    }

    /// RFC 4231 test cases 1 and 2, each MAC twice from the same key (the kept context is
    /// copied, never consumed).
    @Test func hmacSHA256MatchesRFC4231() {
        let first = MACKey([UInt8](repeating: 0x0b, count: 20))
        let second = MACKey(Array("Jefe".utf8))
        for _ in 0..<2 {
            #expect(first.authenticationCode(for: Array("Hi There".utf8))
                == bytes("sDRMYdjbOFNcqK/OrwvxK4gdwgDJgz2nJuk3bC4yz/c="))
            #expect(second.authenticationCode(for: Array("what do ya want for nothing?".utf8))
                == bytes("W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="))
        }
    }

    /// Test vectors are written in base64.
    private func bytes(_ base64: String) -> [UInt8] { Array(Data(base64Encoded: base64)!) }

    @Test func malformedInputIsRejectedWithReason() throws {
        #expect(throws: CryptoError.self) { try PrivateKey(pemEncoded: "not a key") }
        #expect(throws: CryptoError.self) { try PublicKey(subjectPublicKeyInfo: [0x30, 0x03, 0x02, 0x01, 0x01]) }
        #expect(throws: CryptoError.self) { try PrivateKey(ed25519Seed: [1, 2, 3]) }
        let key = try PrivateKey(generating: .ed25519)
        // Trailing bytes after a valid SubjectPublicKeyInfo are not accepted.
        #expect(throws: CryptoError.self) {
            try PublicKey(subjectPublicKeyInfo: key.publicKey.subjectPublicKeyInfo + [0])
        }
        do {
            _ = try PrivateKey(pemEncoded: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            Issue.record("accepted a broken key")
        } catch {
            #expect(error.code == .malformedKey)
        }
    }

    @Test func keyFileIsPrivateAndRefusesOverwrite() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let prefix = directory.appendingPathComponent("host").path
        let key = try PrivateKey(generating: .ed25519)
        try KeyFile.write(key, prefix: prefix, force: false)
        let mode = try FileManager.default.attributesOfItem(atPath: prefix + ".pem")[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(throws: KeyFile.Failure.self) { try KeyFile.write(key, prefix: prefix, force: false) }
        try KeyFile.write(try PrivateKey(generating: .p256), prefix: prefix, force: true)
        #expect(try KeyFile.readPrivateKey(at: prefix + ".pem").algorithm == .p256)
        #expect(try KeyFile.readPublicKey(at: prefix + ".pub.pem").algorithm == .p256)
    }

    /// Defect: a private key readable by group or others was accepted. OpenSSH refuses it, and
    /// so do we, naming the file and its mode; 0600 and 0400 are fine.
    @Test(arguments: [0o644, 0o640, 0o604, 0o660, 0o606])
    func privateKeyOpenToOthersIsRefused(mode: Int) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let prefix = directory.appendingPathComponent("host").path
        try KeyFile.write(try PrivateKey(generating: .ed25519), prefix: prefix, force: false)
        #expect(chmod(prefix + ".pem", mode_t(mode)) == 0)
        do {
            _ = try KeyFile.readPrivateKey(at: prefix + ".pem")
            Issue.record("a private key with mode \(String(mode, radix: 8)) was accepted")
        } catch {
            #expect(error.path == prefix + ".pem")
            #expect(error.reason.contains("mode 0\(String(mode, radix: 8))"), "\(error)")
        }
        #expect(chmod(prefix + ".pem", 0o400) == 0)
        _ = try KeyFile.readPrivateKey(at: prefix + ".pem")
    }

    @Test func opensslCommandLineAgreesOnThePublicKey() throws {
        // `kms keygen` promises files that OpenSSL's own tools read; check with the real tool.
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        for algorithm in KeyAlgorithm.allCases {
            let prefix = directory.appendingPathComponent(algorithm.rawValue).path
            try KeyFile.write(try PrivateKey(generating: algorithm), prefix: prefix, force: false)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
            process.arguments = ["pkey", "-in", prefix + ".pem", "-pubout"]
            let pipe = Pipe()
            process.standardOutput = pipe
            try process.run()
            let output = pipe.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0)
            #expect(String(decoding: output, as: UTF8.self) == (try String(contentsOfFile: prefix + ".pub.pem", encoding: .utf8)))
        }
    }
}
