import ArgumentParser
import Foundation
import KMSCrypto
import ControlSocket
import KMSProtocol
import KMSSettings
import NIOPosix

struct Register: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Register (or re-key) a host with a running KMS.",
        discussion: """
            Talks to the node's control socket (see `control` in its configuration; by default \
            the database path plus `.control`). The registration is stored durably before the \
            node acknowledges it, and takes effect at once: re-registering a host with a new key \
            rotates it, and the node never again countersigns the old key.

            Example:
              kms keygen --out /tmp/hostd
              kms register hostd.c.a.xx. --key /tmp/hostd.pub.pem --address 127.0.0.14 --node hierarchy/c.a.xx.conf
            """)

    @Argument(help: "The host's name, absolute and lower case (hostd.c.a.xx.).")
    var name: String

    @Option(help: "The host's public key: a PEM file or an alg:base64 field.")
    var key: String

    @Option(help: "An address of the host (repeat for more).")
    var address: [String] = []

    @Option(help: "The node's configuration file (to find its control socket).")
    var node: String?

    @Option(help: "The node's control socket.")
    var control: String?

    func validate() throws {
        guard (node == nil) != (control == nil) else {
            throw ValidationError("give exactly one of --node CONFIG or --control SOCKET")
        }
    }

    func run() async throws {
        let socket: String
        if let control {
            socket = control
        } else {
            do { socket = try ConfigFile(path: node!).nodeControlSocket() } catch { Self.exit("\(error)", code: 78) }
        }
        let keyField: String
        if let colon = key.firstIndex(of: ":"), KeyAlgorithm(rawValue: String(key[..<colon])) != nil {
            keyField = key
        } else {
            do { keyField = KeyField.encode(try KeyFile.readPublicKey(at: key)) } catch { Self.exit("\(error)", code: 66) }
        }
        let request = NodeControl.Request(op: "register", name: name, key: keyField, addresses: address)
        let response: NodeControl.Response
        do {
            response = try await ControlSocket.send(
                request, expecting: NodeControl.Response.self, to: socket, group: MultiThreadedEventLoopGroup.singleton)
        } catch let error as ControlSocket.Failure {
            Self.exit("cannot reach the node at \(socket): \(error.reason) (is kmsd running?)", code: 69)
        } catch {
            Self.exit("cannot reach the node at \(socket): \(error) (is kmsd running?)", code: 69)
        }
        guard response.ok else { Self.exit(response.message, code: 65) }
        print(response.message)
    }

    static func exit(_ message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data("kms register: \(message)\n".utf8))
        Foundation.exit(code)
    }
}
