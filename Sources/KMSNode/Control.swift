import DNSWire
import Foundation
import KMSCrypto
import KMSProtocol
public import NIOCore
import ControlSocket

/// The node's local administration channel: a Unix-domain socket (mode 0600, so only its
/// owner may use it) speaking one JSON object a line. `kms register` is its client.
///
///     {"op":"register","name":"hostc.b.a.xx.","key":"ed25519:MCow...","addresses":["127.0.0.13"]}
///     {"ok":true,"message":"registered hostc.b.a.xx."}
///
/// A registration is acknowledged only after it is durable in the store.
public enum Control {
    public struct Request: Codable, Sendable {
        public var op: String
        public var name: String?
        public var key: String?
        public var addresses: [String]?

        public init(op: String, name: String? = nil, key: String? = nil, addresses: [String]? = nil) {
            self.op = op
            self.name = name
            self.key = key
            self.addresses = addresses
        }
    }

    public struct Response: Codable, Sendable {
        public var ok: Bool
        public var message: String
        public var hosts: [String]?

        public init(ok: Bool, message: String, hosts: [String]? = nil) {
            self.ok = ok
            self.message = message
            self.hosts = hosts
        }
    }

    /// Serves `node`'s control socket at `path`.
    public static func serve(_ node: KMSNode, at path: String, group: any EventLoopGroup) async throws -> any Channel {
        try await ControlSocket.serve(at: path, group: group) { line in
            let response: Response
            if let request = try? JSONDecoder().decode(Request.self, from: line) {
                response = handle(request, node: node)
            } else {
                response = Response(ok: false, message: "not a JSON control request")
            }
            return (try? JSONEncoder().encode(response)) ?? Data("{\"ok\":false,\"message\":\"encoding\"}".utf8)
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
            let name: DomainName
            do { name = try DomainName(canonical: nameText) } catch {
                return Response(ok: false, message: "name: \(error.reason)")
            }
            let key: KMSCrypto.PublicKey
            do { key = try KeyField.decode(keyText) } catch {
                return Response(ok: false, message: "key: \(error)")
            }
            var addresses: [IPAddress] = []
            for text in request.addresses ?? [] {
                guard let address = IPAddress(text) else { return Response(ok: false, message: "addresses: '\(text)' is not an IP address") }
                addresses.append(address)
            }
            do {
                try node.register(name: name, key: key, addresses: addresses)
                return Response(ok: true, message: "registered \(name) in \(node.zone)")
            } catch {
                return Response(ok: false, message: "\(error)")
            }
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
            return Response(ok: false, message: "unknown op '\(request.op)' (register, hosts, reload, reload-policy)")
        }
    }
}
