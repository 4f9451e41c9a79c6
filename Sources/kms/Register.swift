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

            With --file, many hosts are registered from a CSV file, one host a line: \
            NAME,KEY,ADDRESS[,ADDRESS...] (KEY as alg:base64; blank lines and lines starting \
            with # are skipped). They are sent in batches of --batch hosts; each batch is \
            stored in one transaction and acknowledged only once durable, so an interrupted \
            load leaves whole batches, and a bad line stops the load naming its line.

            Examples:
              kms keygen --out /tmp/hostd
              kms register hostd.c.a.xx. --key /tmp/hostd.pub.pem --address 127.0.0.14 --node hierarchy/c.a.xx.conf
              kms register --file hosts.csv --node hierarchy/c.a.xx.conf
            """)

    @Argument(help: "The host's name, absolute and lower case (hostd.c.a.xx.).")
    var name: String?

    @Option(help: "The host's public key: a PEM file or an alg:base64 field.")
    var key: String?

    @Option(help: "Register every host of this CSV file (NAME,KEY,ADDRESS[,ADDRESS...]).")
    var file: String?

    @Option(help: "Hosts per batch with --file.")
    var batch: Int = 5000

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
        if file != nil {
            guard name == nil, key == nil, address.isEmpty else {
                throw ValidationError("--file takes the hosts from the file: give no NAME, --key or --address with it")
            }
            guard (1...100_000).contains(batch) else { throw ValidationError("--batch must be 1...100000") }
        } else {
            guard name != nil, key != nil else { throw ValidationError("give NAME and --key (or --file)") }
        }
    }

    func run() async throws {
        let socket: String
        if let control {
            socket = control
        } else {
            do { socket = try ConfigFile(path: node!).nodeControlSocket() } catch { Self.exit("\(error)", code: 78) }
        }
        if let file {
            try await registerFile(file, socket: socket)
            return
        }
        let key = key!
        let keyField: String
        if let colon = key.firstIndex(of: ":"), KeyAlgorithm(rawValue: String(key[..<colon])) != nil {
            keyField = key
        } else {
            do { keyField = KeyField.encode(try KeyFile.readPublicKey(at: key)) } catch { Self.exit("\(error)", code: 66) }
        }
        let response = await send(NodeControl.Request(op: "register", name: name, key: keyField, addresses: address), to: socket)
        guard response.ok else { Self.exit(response.message, code: 65) }
        print(response.message)
    }

    private func send(_ request: NodeControl.Request, to socket: String) async -> NodeControl.Response {
        do {
            return try await ControlSocket.send(
                request, expecting: NodeControl.Response.self, to: socket, group: MultiThreadedEventLoopGroup.singleton)
        } catch let error as ControlSocket.Failure {
            Self.exit("cannot reach the node at \(socket): \(error.reason) (is kmsd running?)", code: 69)
        } catch {
            Self.exit("cannot reach the node at \(socket): \(error) (is kmsd running?)", code: 69)
        }
    }

    /// Reads the CSV file and sends it in batches; a refused host is named by file and line.
    private func registerFile(_ path: String, socket: String) async throws {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            Self.exit("\(path): cannot read: \(error.localizedDescription)", code: 66)
        }
        var pending: [(line: Int, host: NodeControl.Host)] = []
        var registered = 0
        let started = ContinuousClock.now
        func flush() async {
            guard !pending.isEmpty else { return }
            let response = await send(NodeControl.Request(op: "register-batch", hosts: pending.map(\.host)), to: socket)
            guard response.ok else {
                let line = response.index.map { pending[$0].line }
                Self.exit("\(path)\(line.map { ":\($0)" } ?? ""): \(response.message) (\(registered) hosts registered before)", code: 65)
            }
            registered += pending.count
            pending.removeAll(keepingCapacity: true)
        }
        for (offset, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard fields.count >= 2, !fields[0].isEmpty, !fields[1].isEmpty else {
                Self.exit("\(path):\(offset + 1): expected NAME,KEY,ADDRESS[,ADDRESS...]", code: 65)
            }
            pending.append((offset + 1, NodeControl.Host(name: fields[0], key: fields[1], addresses: Array(fields.dropFirst(2)))))
            if pending.count >= batch { await flush() }
        }
        await flush()
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        print("registered \(registered) hosts from \(path) in \(String(format: "%.1f", seconds)) s")
    }

    static func exit(_ message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data("kms register: \(message)\n".utf8))
        Foundation.exit(code)
    }
}
