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

/// A domain name condition of a CUG row (PROTOCOL.md section 6), matched label-wise and
/// ignoring case.
public enum NamePattern: Hashable, Sendable, CustomStringConvertible {
    /// `name.example.`: exactly this name.
    case exact(DomainName)
    /// `sato.*`: first label `sato`, and at least one label after it.
    case firstLabel(String)
    /// `*.myfriends.com`: strictly below `myfriends.com` (not `myfriends.com` itself).
    case suffix(DomainName)
    /// `*.biglobe.*`: any label equal to `biglobe`.
    case anyLabel(String)

    public init?(_ text: String) {
        let lower = text.lowercased()
        if lower.hasPrefix("*.") && lower.hasSuffix(".*") && lower.count > 4 {
            let label = String(lower.dropFirst(2).dropLast(2))
            guard !label.isEmpty, !label.contains("."), !label.contains("*") else { return nil }
            self = .anyLabel(label)
        } else if lower.hasPrefix("*.") {
            let rest = String(lower.dropFirst(2))
            guard !rest.contains("*"), let name = try? DomainName(rest.hasSuffix(".") ? rest : rest + ".") else { return nil }
            self = .suffix(name.lowercased)
        } else if lower.hasSuffix(".*") {
            let label = String(lower.dropLast(2))
            guard !label.isEmpty, !label.contains("."), !label.contains("*") else { return nil }
            self = .firstLabel(label)
        } else {
            guard !lower.contains("*"), let name = try? DomainName(lower.hasSuffix(".") ? lower : lower + ".") else { return nil }
            self = .exact(name.lowercased)
        }
    }

    public func matches(_ name: DomainName) -> Bool {
        switch self {
        case .exact(let exact): return name == exact
        case .suffix(let parent): return name.isSubdomain(of: parent)
        case .firstLabel(let label):
            let labels = name.lowercasedLabels
            return labels.count >= 2 && labels[0] == label
        case .anyLabel(let label):
            return name.lowercasedLabels.contains(label)
        }
    }

    public var description: String {
        switch self {
        case .exact(let name): name.text
        case .firstLabel(let label): "\(label).*"
        case .suffix(let name): "*.\(name.text)"
        case .anyLabel(let label): "*.\(label).*"
        }
    }
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
                throw file.error(directive, "protocol \(pathProtocol.rawValue) is not available in this mode")
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
