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

struct Rotate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replace this host's key with a new one, at its home KMS, by itself.",
        discussion: """
            Generates a new key, keeps it beside the current one (PREFIX.next.pem), and sends \
            the home KMS a DNS UPDATE carrying a kms1:rotate record signed by the current key \
            with the new key's proof of possession (docs/PROTOCOL.md, "Rotation"). Only when \
            the KMS acknowledges (after storing the new key durably) are the key files swapped, \
            each by an atomic rename. If the acknowledgement is lost, run it again: the waiting \
            key is reused, and if the KMS already has it the files are swapped.

            Example (after `make run`):
              kms rotate --host hierarchy/hosta.conf

            Exit codes: 0 rotated; 65 the KMS refused (the reason is printed; nothing \
            changed); 69 the KMS cannot be reached (nothing changed); 78 configuration.
            """)

    @Option(help: "Host configuration (its key, name and home KMS). Default: $KMS_HOST_CONFIG or /etc/countersign/host.conf.")
    var host: String?

    @Option(help: "Algorithm of the new key: ed25519 or p256. Default: the current key's.")
    var alg: KeyAlgorithm?

    func run() async throws {
        let path = host ?? ProcessInfo.processInfo.environment["KMS_HOST_CONFIG"] ?? "/etc/countersign/host.conf"
        let configuration: HostConfiguration
        let keyPath: String
        do {
            configuration = try HostConfiguration(path: path)
            let file = try ConfigFile(path: path)
            guard let directive = try file.one("key") else { Self.exit("\(path): key: missing", code: 78) }
            keyPath = file.resolve(try file.values(directive, count: 1, usage: "PATH")[0])
        } catch {
            Self.exit("\(error)", code: 78)
        }
        let prefix = keyPath.hasSuffix(".pem") ? String(keyPath.dropLast(4)) : keyPath
        let next = prefix + ".next"
        let newKey: PrivateKey
        if FileManager.default.fileExists(atPath: next + ".pem") {
            do { newKey = try KeyFile.readPrivateKey(at: next + ".pem") } catch { Self.exit("\(next).pem: \(error)", code: 78) }
            print("reusing the waiting key \(next).pem")
        } else {
            do {
                newKey = try PrivateKey(generating: alg ?? configuration.key.publicKey.algorithm)
                try KeyFile.write(newKey, prefix: next, force: false)
            } catch {
                Self.exit("cannot write the new key beside \(keyPath): \(error)", code: 73)
            }
        }
        // Closed before each normal return; the error paths below end the process (`exit`).
        let client = try await DNSClient.make(group: MultiThreadedEventLoopGroup.singleton)

        let record: KMSRecord
        do {
            record = try Rotation.make(
                target: configuration.name, newKey: newKey, currentKey: configuration.key, nonce: try Nonce.random(),
                time: UnixTime(Date().timeIntervalSince1970))
        } catch {
            Self.exit("cannot sign the rotation: \(error)", code: 70)
        }
        var update = DNSMessage.query(id: 0, name: configuration.home.name, type: .soa)
        update.header.opcode = Rotation.updateOpcode
        update.authorities = [record.resourceRecord()]
        let home = configuration.home
        let reply: DNSMessage
        do {
            let server = try home.endpoint.socketAddress()
            reply = try await client.queryOverTCP(update, server: server, timeout: .milliseconds(Int64(configuration.timeout * 1000)))
        } catch {
            Self.exit("cannot reach \(home.name) (\(home.endpoint)): \((error as? DNSClientError)?.reason ?? "\(error)"); nothing changed, \(next).pem waits", code: 69)
        }
        if reply.rcode != .noError {
            // An earlier attempt may have reached the KMS and only lost its answer.
            if await alreadyRotated(configuration, client: client, to: newKey.publicKey) {
                await client.close()
                swap(prefix: prefix, next: next)
                print("rotated \(configuration.name) (the KMS already had the new key): \(KeyField.encode(newKey.publicKey))")
                return
            }
            let reasons = reply.extendedErrors.map(\.text).joined(separator: "; ")
            Self.exit("\(home.name) answered \(reply.rcode)\(reasons.isEmpty ? "" : ": \(reasons)"); the current key stays, \(next).pem waits", code: 65)
        }
        await client.close()
        swap(prefix: prefix, next: next)
        print("rotated \(configuration.name): \(KeyField.encode(newKey.publicKey))")
    }

    /// Whether the hierarchy already serves `key` for this host.
    private func alreadyRotated(_ configuration: HostConfiguration, client: DNSClient, to key: PublicKey) async -> Bool {
        var verifying = configuration
        verifying.cache = nil
        guard let fetcher = try? KeyFetcher(configuration: verifying, client: client),
            let result = try? await fetcher.fetch(configuration.name, useCache: false)
        else { return false }
        return result.key == key
    }

    /// The new key takes the current one's place: an atomic rename per file.
    private func swap(prefix: String, next: String) {
        for suffix in [".pub.pem", ".pem"] where rename(next + suffix, prefix + suffix) != 0 {
            Self.exit("the KMS has the new key, but \(next + suffix) could not replace \(prefix + suffix): \(String(cString: strerror(errno))); rename it by hand", code: 74)
        }
    }

    static func exit(_ message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data("kms rotate: \(message)\n".utf8))
        Foundation.exit(code)
    }
}
