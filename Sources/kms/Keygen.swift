import ArgumentParser
import KMSCrypto
import KMSProtocol

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a key pair for a host or a KMS.",
        discussion: """
            Writes PREFIX.pem (the private key, PKCS#8 PEM, mode 0600) and PREFIX.pub.pem (the \
            public key), the same files `openssl genpkey` and `openssl pkey -pubout` write, and \
            prints the key as it travels in KMS1 records (`key=` field).

            Example:
              kms keygen --alg ed25519 --out /etc/countersign/hosta
              openssl pkey -in /etc/countersign/hosta.pem -pubout   # prints hosta.pub.pem
            """)

    @Option(help: "Key algorithm: ed25519 (default) or p256 (ECDSA P-256 with SHA-256).")
    var alg: KeyAlgorithm = .ed25519

    @Option(help: "Path prefix of the two files to write.")
    var out: String

    @Flag(help: "Replace existing files.")
    var force = false

    func run() throws {
        let key = try PrivateKey(generating: alg)
        try KeyFile.write(key, prefix: out, force: force)
        print("key=\(KeyField.encode(key.publicKey))")
    }
}

extension KeyAlgorithm: ExpressibleByArgument {}
