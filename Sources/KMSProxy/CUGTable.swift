public import DNSWire
public import KMSCrypto
public import KMSSettings

/// How traffic to a group peer is carried (a CUG row's path settings).
public struct PathSettings: Hashable, Sendable, CustomStringConvertible {
    public enum PathProtocol: String, Sendable { case tls, kernel }

    public let pathProtocol: PathProtocol
    /// The patent's certificate ID: names one of this host's identities.
    public let identity: String
    public let cipher: TLSCipher

    public init(pathProtocol: PathProtocol, identity: String, cipher: TLSCipher) {
        self.pathProtocol = pathProtocol
        self.identity = identity
        self.cipher = cipher
    }

    public var description: String { "\(pathProtocol.rawValue), identity \(identity), \(cipher)" }
}

/// The Closed User Group table: rows of (name pattern, path settings); the first matching row
/// wins. The seed's figure 2, as a file:
///
///     # pattern          protocol  identity  cipher
///     host.example.      tls       default   AES-128-GCM
///     *.myfriends.com    tls       default   AES-256-GCM
///     sato.*             tls       default   CHACHA20-POLY1305
///     *.biglobe.*        tls       default   AES-128-GCM
public struct CUGTable: Sendable {
    public struct Row: Hashable, Sendable {
        public let pattern: NamePattern
        public let settings: PathSettings
        /// Where the row was written, for logs ("row 3").
        public let line: Int

        public init(pattern: NamePattern, settings: PathSettings, line: Int) {
            self.pattern = pattern
            self.settings = settings
            self.line = line
        }
    }

    public let rows: [Row]

    public init(rows: [Row]) { self.rows = rows }

    /// The first row whose pattern matches `name`, or nil: a normal (unencrypted) peer.
    public func match(_ name: DomainName) -> Row? { rows.first { $0.pattern.matches(name) } }

    /// Reads a table file. `identities` are the identity names the host has; `protocols` are
    /// those this build can carry. Broken ciphers (DES, 3DES) are refused with the line.
    public init(file: ConfigFile, identities: Set<String>, protocols: Set<PathSettings.PathProtocol> = [.tls]) throws(ConfigError) {
        var rows: [Row] = []
        for directive in file.directives {
            guard let pattern = NamePattern(directive.name) else {
                throw file.error(directive, "not a name pattern (name.example., sato.*, *.myfriends.com, *.biglobe.*)")
            }
            let values = try file.values(directive, count: 3, usage: "PROTOCOL IDENTITY CIPHER")
            guard let pathProtocol = PathSettings.PathProtocol(rawValue: values[0].lowercased()) else {
                throw file.error(directive, "protocol '\(values[0])' is neither tls nor kernel")
            }
            guard protocols.contains(pathProtocol) else {
                throw file.error(directive, "protocol \(pathProtocol.rawValue) needs kernel diversion (divert-port in the proxy configuration)")
            }
            guard identities.contains(values[1]) else {
                throw file.error(directive, "identity '\(values[1])' is not one of this host's (\(identities.sorted().joined(separator: ", ")))")
            }
            let cipher: TLSCipher
            switch TLSCipher.named(values[2]) {
            case .success(let found): cipher = found
            case .failure(let error): throw file.error(directive, error.reason)
            }
            rows.append(Row(pattern: pattern, settings: PathSettings(pathProtocol: pathProtocol, identity: values[1], cipher: cipher), line: directive.line))
        }
        self.init(rows: rows)
    }
}
