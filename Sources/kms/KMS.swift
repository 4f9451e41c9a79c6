import ArgumentParser
import KMSSettings

/// `kms`: the host-side tool. Each subcommand lives in its own file and calls the libraries.
@main
struct KMS: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kms",
        abstract: "Keys for the KMS1 hierarchy: make them, fetch them, measure the servers.",
        discussion: """
            A KMS (key management server) serves the public keys of one DNS zone. Hosts ask \
            their home KMS for a peer's key; the answer comes back countersigned by a KMS the \
            host trusts. See docs/ for the protocol and the example hierarchy.
            """,
        version: Build.version,
        subcommands: [Keygen.self, Fetch.self, Register.self, Rotate.self, Ctl.self, Monitor.self, Bench.self])
}
