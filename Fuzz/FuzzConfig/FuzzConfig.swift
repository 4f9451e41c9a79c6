import FuzzReplay
import KMSSettings

/// Any text as a configuration file: the reader and the value parsers every configuration
/// uses (names, endpoints, durations, addresses, inline keys, CUG rows) must answer with a
/// `file:line: directive: reason` error, never crash.
func check(_ bytes: [UInt8]) {
    guard let file = try? ConfigFile(path: "/nonexistent/fuzz.conf", text: String(decoding: bytes, as: UTF8.self)) else { return }
    for directive in file.directives {
        guard let first = directive.values.first else { continue }
        _ = try? file.name(first, directive)
        _ = try? file.endpoint(first, directive)
        _ = try? file.address(first, directive)
        _ = try? file.duration(directive)
        _ = try? file.flag(directive, yes: "allow", no: "refuse")
        if first.contains(":") { _ = try? file.publicKey(first, directive) }
        _ = try? CUGRule.parse(directive.values, directive, in: file)
        _ = try? file.values(directive, count: 1, maximum: 3, usage: "A [B [C]]")
    }
    _ = file.firstLines
    _ = try? file.requireKnown(["zone", "listen", "key"])
}

@main struct Main {
    static func main() { FuzzReplay.main("fuzz-config", check) }
}
