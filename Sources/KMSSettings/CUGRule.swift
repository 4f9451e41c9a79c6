import DNSWire
import KMSCrypto
public import KMSProtocol

/// One Closed User Group rule: names matching `pattern` are group peers, reached with
/// `settings`. A proxy's CUG table and a KMS's policy database are lists of these, read by the
/// one parser below, so both refuse the same mistakes with the same words.
public struct CUGRule: Hashable, Sendable {
    public let pattern: NamePattern
    public let settings: PathSettings
    /// Where the rule was written, for logs ("row 3").
    public let line: Int

    public init(pattern: NamePattern, settings: PathSettings, line: Int) {
        self.pattern = pattern
        self.settings = settings
        self.line = line
    }

    /// Reads `PATTERN PROTOCOL IDENTITY CIPHER` from `values`. Broken ciphers (DES, 3DES) are
    /// refused by name, with the line.
    public static func parse(_ values: [String], _ directive: ConfigFile.Directive, in file: ConfigFile) throws(ConfigError) -> CUGRule {
        guard values.count == 4 else { throw file.error(directive, "expected: PATTERN PROTOCOL IDENTITY CIPHER") }
        guard let pattern = NamePattern(values[0]) else {
            throw file.error(directive, "'\(values[0])' is not a name pattern (name.example., sato.*, *.myfriends.com, *.biglobe.*)")
        }
        guard let pathProtocol = PathSettings.PathProtocol(rawValue: values[1].lowercased()) else {
            throw file.error(directive, "protocol '\(values[1])' is neither tls nor kernel")
        }
        let cipher: TLSCipher
        switch TLSCipher.named(values[3]) {
        case .success(let found): cipher = found
        case .failure(let error): throw file.error(directive, error.reason)
        }
        return CUGRule(
            pattern: pattern, settings: PathSettings(pathProtocol: pathProtocol, identity: Identity(values[2]), cipher: cipher),
            line: directive.line)
    }
}
