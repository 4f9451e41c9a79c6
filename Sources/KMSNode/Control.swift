import DNSWire
import Foundation
import KMSCrypto
import KMSProtocol
public import NIOCore
import NIOPosix
public import ControlSocket

/// The node's side of its local administration channel (`NodeControl` messages over a
/// `ControlSocket`). A registration is acknowledged only after it is durable in the store.
public enum Control {
    public typealias Request = NodeControl.Request
    public typealias Response = NodeControl.Response

    /// Serves `node`'s control socket at `path`.
    public static func serve(_ node: KMSNode, at path: String, group: any EventLoopGroup) async throws -> any Channel {
        try await ControlSocket.serve(at: path, group: group) { line in
            // On NIO's thread pool, not on the concurrency pool: a batch registration parses
            // thousands of keys and waits for the store's durable write, a reload reads every
            // host, and on a node pinned to one CPU the concurrency pool has a single thread,
            // which every forwarded fetch needs.
            let reply = try? await NIOThreadPool.singleton.runIfActive { () -> Data in
                let response: Response
                if let request = try? JSONDecoder().decode(Request.self, from: line) {
                    response = handle(request, node: node)
                } else {
                    response = Response(ok: false, message: "not a JSON control request")
                }
                return (try? JSONEncoder().encode(response)) ?? Data("{\"ok\":false,\"message\":\"encoding\"}".utf8)
            }
            return reply ?? Data("{\"ok\":false,\"message\":\"the node is shutting down\"}".utf8)
        }
    }

    /// Sends one request to the control socket at `path` and returns the response.
    public static func send(_ request: Request, to path: String, group: any EventLoopGroup) async throws -> Response {
        try await ControlSocket.send(request, expecting: Response.self, to: path, group: group)
    }

    static func handle(_ request: Request, node: KMSNode) -> Response {
        switch request.op {
        case "register":
            guard let nameText = request.name, let keyText = request.key else {
                return Response(ok: false, message: "register needs name and key")
            }
            let host: NodeControl.Host = .init(name: nameText, key: keyText, addresses: request.addresses ?? [])
            switch parse(host) {
            case .failure(let refused): return Response(ok: false, message: refused.message)
            case .success(let parsed):
                do {
                    try node.register([parsed])
                    return Response(ok: true, message: "registered \(parsed.name) in \(node.zone)")
                } catch {
                    return Response(ok: false, message: "\(error)")
                }
            }
        case "register-batch":
            var batch: [KMSNode.Registration] = []
            for (index, host) in (request.hosts ?? []).enumerated() {
                switch parse(host) {
                case .success(let parsed): batch.append(parsed)
                case .failure(let refused): return Response(ok: false, message: refused.message, index: index)
                }
            }
            do {
                try node.register(batch)
                return Response(ok: true, message: "registered \(batch.count) hosts in \(node.zone)")
            } catch {
                return Response(ok: false, message: "\(error)")
            }
        case "remove":
            guard let nameText = request.name else { return Response(ok: false, message: "remove needs name") }
            let name: DomainName
            do { name = try DomainName(canonical: nameText) } catch { return Response(ok: false, message: "name: \(error.reason)") }
            do {
                try node.remove(name: name)
                return Response(ok: true, message: "removed \(name) from \(node.zone)")
            } catch {
                return Response(ok: false, message: "\(error)")
            }
        case "flush":
            var name: DomainName?
            if let nameText = request.name {
                do { name = try DomainName(canonical: nameText) } catch { return Response(ok: false, message: "name: \(error.reason)") }
            }
            let dropped = node.flush(name: name)
            return Response(ok: true, message: "flushed \(dropped) cached key\(dropped == 1 ? "" : "s")\(name.map { " of \($0)" } ?? "") in \(node.zone)")
        case "status":
            return Response(ok: true, message: "\(node.zone) serving", fields: node.status.map { [$0.0, $0.1] })
        case "stats":
            return Response(ok: true, message: "\(node.zone) counters since start", fields: node.stats.map { [$0.0, $0.1] })
        case "reload":
            return Response(ok: true, message: node.reload().joined(separator: "\n"))
        case "reload-policy":
            do {
                try node.reloadPolicy()
                return Response(ok: true, message: "policy reloaded")
            } catch {
                return Response(ok: false, message: "\(error)")
            }
        case "hosts":
            return Response(
                ok: true, message: "\(node.registeredHosts.count) hosts",
                hosts: node.registeredHosts.map { "\($0.name) \(KeyField.encode($0.key)) \($0.addresses.map(\.description).joined(separator: " "))" })
        default:
            return Response(ok: false, message: "unknown op '\(request.op)' (register, register-batch, remove, hosts, status, stats, flush, reload, reload-policy)")
        }
    }

    private struct Refused: Error { let message: String }

    /// A host of a request, checked: canonical name, a key that decodes, IP addresses.
    private static func parse(_ host: NodeControl.Host) -> Result<KMSNode.Registration, Refused> {
        let name: DomainName
        do { name = try DomainName(canonical: host.name) } catch {
            return .failure(Refused(message: "name: \(error.reason)"))
        }
        let key: KMSCrypto.PublicKey
        do { key = try KeyField.decode(host.key) } catch {
            return .failure(Refused(message: "key: \(error)"))
        }
        var addresses: [IPAddress] = []
        for text in host.addresses {
            guard let address = IPAddress(text) else { return .failure(Refused(message: "addresses: '\(text)' is not an IP address")) }
            addresses.append(address)
        }
        return .success(KMSNode.Registration(name: name, key: key, addresses: addresses))
    }
}
