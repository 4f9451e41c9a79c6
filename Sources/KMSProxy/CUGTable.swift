public import DNSWire
import KMSCrypto
public import KMSSettings
public import KMSProtocol

/// The Closed User Group table: rows of (name pattern, path settings); the first matching row
/// wins. The seed's figure 2, as a file:
///
///     # pattern          protocol  identity  cipher
///     host.example.      tls       default   AES-128-GCM
///     *.myfriends.com    tls       default   AES-256-GCM
///     sato.*             tls       default   CHACHA20-POLY1305
///     *.biglobe.*        tls       default   AES-128-GCM
public struct CUGTable: Sendable {
    public typealias Row = CUGRule

    public let rows: [Row]

    public init(rows: [Row]) { self.rows = rows }

    /// The first row whose pattern matches `name`, or nil: a normal (unencrypted) peer.
    public func match(_ name: DomainName) -> Row? { rows.first { $0.pattern.matches(name) } }

    /// Reads a table file. `identities` are the identity names the host has; `protocols` are
    /// those this build can carry. Broken ciphers (DES, 3DES) are refused with the line.
    public init(file: ConfigFile, identities: Set<Identity>, protocols: Set<PathSettings.PathProtocol> = [.tls]) throws(ConfigError) {
        var rows: [Row] = []
        for directive in file.directives {
            let rule = try CUGRule.parse([directive.name] + directive.values, directive, in: file)
            guard protocols.contains(rule.settings.pathProtocol) else {
                throw file.error(directive, "protocol \(rule.settings.pathProtocol.rawValue) needs kernel diversion (divert-port in the proxy configuration)")
            }
            guard identities.contains(rule.settings.identity) else {
                throw file.error(directive, "identity '\(rule.settings.identity)' is not one of this host's (\(identities.sorted().map(\.rawValue).joined(separator: ", ")))")
            }
            rows.append(rule)
        }
        self.init(rows: rows)
    }
}
