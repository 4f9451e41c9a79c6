public import DNSWire
public import KMSCrypto
import KMSProtocol

/// An address and port, written `127.0.0.1:5351` or `[::1]:5351`.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let port: Int
    /// The interface an IPv6 link-local address is reached through (`[fe80::1%eth0]:53`, as a
    /// router's DNS appears in resolv.conf): an interface name or index. Nil for other addresses.
    public let scope: String?

    public init(address: IPAddress, port: Int, scope: String? = nil) {
        self.address = address
        self.port = port
        self.scope = scope
    }

    public init?(_ text: String) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard let (address, scope) = Self.scopedAddress(host), !(address.isIPv6 && !text.hasPrefix("[")),
            let port = Int(portText), (0...65535).contains(port)
        else { return nil }
        self.init(address: address, port: port, scope: scope)
    }

    /// An address with an optional `%scope` (IPv6 only, never empty).
    public static func scopedAddress(_ text: some StringProtocol) -> (IPAddress, String?)? {
        let parts = text.split(separator: "%", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = IPAddress(String(parts[0])) else { return nil }
        guard parts.count == 2 else { return (address, nil) }
        guard address.isIPv6, !parts[1].isEmpty else { return nil }
        return (address, String(parts[1]))
    }

    public var description: String {
        address.isIPv6 ? "[\(address)\(scope.map { "%\($0)" } ?? "")]:\(port)" : "\(address):\(port)"
    }
}

/// Another KMS this one talks to: its zone, where it listens, its key.
public struct Peer: Hashable, Sendable, CustomStringConvertible {
    public let name: DomainName
    public let endpoint: Endpoint
    public let key: PublicKey

    public init(name: DomainName, endpoint: Endpoint, key: PublicKey) {
        self.name = name
        self.endpoint = endpoint
        self.key = key
    }

    public var description: String { "\(name) (\(endpoint))" }
}

extension ConfigFile {
    public func name(_ text: String, _ directive: Directive) throws(ConfigError) -> DomainName {
        do { return try DomainName(canonical: text) } catch {
            throw self.error(directive, "'\(text)' is not an absolute lower-case name (like b.a.xx.)")
        }
    }

    public func endpoint(_ text: String, _ directive: Directive) throws(ConfigError) -> Endpoint {
        guard let endpoint = Endpoint(text) else {
            throw self.error(directive, "'\(text)' is not ADDRESS:PORT (like 127.0.0.1:5351, [::1]:5351 or [fe80::1%eth0]:53)")
        }
        return endpoint
    }

    public func address(_ text: String, _ directive: Directive) throws(ConfigError) -> IPAddress {
        guard let address = IPAddress(text) else { throw self.error(directive, "'\(text)' is not an IP address") }
        return address
    }

    /// `ADDRESS` or `ADDRESS/LENGTH`: a network (`trace-allow`, `secondary`, `dns-allow`).
    public func prefix(_ text: String, _ directive: Directive) throws(ConfigError) -> (address: IPAddress, length: Int) {
        let parts = text.split(separator: "/", maxSplits: 1).map(String.init)
        let address = try self.address(parts[0], directive)
        let most = address.isIPv6 ? 128 : 32
        guard let length = parts.count == 2 ? Int(parts[1]) : most, (0...most).contains(length) else {
            throw self.error(directive, "'\(text)' is not ADDRESS/LENGTH with a length of 0-\(most)")
        }
        return (address, length)
    }

    /// A public key given inline (`ed25519:MCow...`) or as a PEM file path.
    public func publicKey(_ text: String, _ directive: Directive) throws(ConfigError) -> PublicKey {
        if let colon = text.firstIndex(of: ":"), KeyAlgorithm(rawValue: String(text[..<colon])) != nil {
            do { return try KeyField.decode(text) } catch {
                throw self.error(directive, "bad key: \(error)")
            }
        }
        do { return try KeyFile.readPublicKey(at: resolve(text)) } catch {
            throw self.error(directive, "\(error)")
        }
    }

    public func privateKey(_ text: String, _ directive: Directive) throws(ConfigError) -> PrivateKey {
        do { return try KeyFile.readPrivateKey(at: resolve(text)) } catch {
            throw self.error(directive, "\(error)")
        }
    }

    public func peer(_ directive: Directive) throws(ConfigError) -> Peer {
        let values = try values(directive, count: 3, usage: "NAME ADDRESS:PORT KEY")
        return Peer(
            name: try name(values[0], directive), endpoint: try endpoint(values[1], directive),
            key: try publicKey(values[2], directive))
    }

    /// A duration: `300`, `300s`, `2000ms`, `5m`, `1h`, `1d`. Returns seconds.
    public func duration(_ directive: Directive) throws(ConfigError) -> Double {
        let text = try values(directive, count: 1, usage: "DURATION (like 300s, 2000ms, 1h)")[0]
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            if let number = Double(text.dropLast(suffix.count)), number > 0 { return number * scale }
        }
        if let number = Double(text), number > 0 { return number }
        throw self.error(directive, "'\(text)' is not a duration (like 300s, 2000ms, 1h)")
    }

    public func flag(_ directive: Directive, yes: String, no: String) throws(ConfigError) -> Bool {
        let text = try values(directive, count: 1, usage: "\(yes)|\(no)")[0]
        switch text {
        case yes: return true
        case no: return false
        default: throw self.error(directive, "'\(text)' is neither \(yes) nor \(no)")
        }
    }
}
