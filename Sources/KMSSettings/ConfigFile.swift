import Foundation

/// A configuration file in the style of nsd.conf and unbound.conf, one directive a line:
///
///     # comment
///     zone      b.a.xx.
///     parent    a.xx. 127.0.0.1:5351 keys/a.xx.pub.pem
///     txt       b.a.xx. "hello, world"
///
/// Values are separated by blanks; double quotes keep blanks inside one value. Every
/// directive remembers its line, so every error can point at it.
public struct ConfigFile: Sendable {
    public struct Directive: Sendable {
        public let name: String
        public let values: [String]
        public let line: Int
    }

    public let path: String
    public let directives: [Directive]

    /// The folder relative paths in the file are resolved against.
    public var directory: String { (path as NSString).deletingLastPathComponent }

    public init(path: String) throws(ConfigError) {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw ConfigError(path: path, line: nil, field: nil, reason: "cannot read (\(error.localizedDescription))")
        }
        try self.init(path: path, text: text)
    }

    public init(path: String, text: String) throws(ConfigError) {
        self.path = path
        var directives: [Directive] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let words = try Self.words(in: String(raw), path: path, line: index + 1)
            guard let name = words.first else { continue }
            directives.append(Directive(name: name, values: Array(words.dropFirst()), line: index + 1))
        }
        self.directives = directives
    }

    private static func words(in line: String, path: String, line number: Int) throws(ConfigError) -> [String] {
        var words: [String] = []
        var current = ""
        var quoted = false
        var inWord = false
        for character in line {
            if quoted {
                if character == "\"" { quoted = false } else { current.append(character) }
            } else if character == "#" {
                break
            } else if character == "\"" {
                quoted = true
                inWord = true
            } else if character == " " || character == "\t" || character == "\r" {
                if inWord { words.append(current) }
                current = ""
                inWord = false
            } else {
                current.append(character)
                inWord = true
            }
        }
        if quoted { throw ConfigError(path: path, line: number, field: words.first, reason: "unterminated quote") }
        if inWord { words.append(current) }
        return words
    }

    /// Checks that every directive is one of `known`.
    public func requireKnown(_ known: Set<String>) throws(ConfigError) {
        for directive in directives where !known.contains(directive.name) {
            throw error(directive, "unknown directive (known: \(known.sorted().joined(separator: ", ")))")
        }
    }

    public func all(_ name: String) -> [Directive] { directives.filter { $0.name == name } }

    /// The line of each directive (its first, where it repeats): what an error found after
    /// reading (a busy port, a locked store) points at.
    public var firstLines: [String: Int] {
        Dictionary(directives.map { ($0.name, $0.line) }, uniquingKeysWith: { first, _ in first })
    }

    /// The single directive `name`; an error if it is repeated, or missing when `required`.
    public func one(_ name: String, required: Bool = true) throws(ConfigError) -> Directive? {
        let found = all(name)
        if found.count > 1 { throw error(found[1], "given twice (first on line \(found[0].line))") }
        if found.isEmpty && required {
            throw ConfigError(path: path, line: nil, field: name, reason: "missing")
        }
        return found.first
    }

    /// The values of a directive, which must number `count` (or lie in `count...maximum`).
    public func values(_ directive: Directive, count: Int, maximum: Int? = nil, usage: String) throws(ConfigError) -> [String] {
        let maximum = maximum ?? count
        guard directive.values.count >= count, directive.values.count <= maximum else {
            throw error(directive, "expected: \(directive.name) \(usage)")
        }
        return directive.values
    }

    public func error(_ directive: Directive, _ reason: String) -> ConfigError {
        ConfigError(path: path, line: directive.line, field: directive.name, reason: reason)
    }

    /// Resolves a path written in the file against the file's folder, to an absolute path
    /// without `..` (what logs and status lines print).
    public func resolve(_ relative: String) -> String {
        let base = URL(fileURLWithPath: directory.isEmpty ? "." : directory, isDirectory: true)
        return URL(fileURLWithPath: relative, relativeTo: base).standardizedFileURL.path
    }
}

/// A configuration problem, said in one line: `file:line: field: reason`.
public struct ConfigError: Error, Sendable, CustomStringConvertible {
    public let path: String
    public let line: Int?
    public let field: String?
    public let reason: String

    public init(path: String, line: Int?, field: String?, reason: String) {
        self.path = path
        self.line = line
        self.field = field
        self.reason = reason
    }

    public var description: String {
        var text = path
        if let line { text += ":\(line)" }
        if let field { text += ": \(field)" }
        return text + ": " + reason
    }
}

extension ConfigFile {
    /// A node configuration's control socket: its `control` directive, or its `database` plus
    /// `.control`, resolved against the file. One definition for the node and for clients that
    /// only need to find the socket (`kms register --node`), which then need not read the
    /// node's private key.
    public func nodeControlSocket() throws(ConfigError) -> String {
        if let directive = try one("control", required: false) {
            return resolve(try values(directive, count: 1, usage: "PATH")[0])
        }
        let database = try one("database")!
        return resolve(try values(database, count: 1, usage: "PATH")[0]) + ".control"
    }
}
