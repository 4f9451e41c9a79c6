/// The signature algorithms KMS1 keys use. The raw value is the wire label (`ed25519:...`).
public enum KeyAlgorithm: String, CaseIterable, Hashable, Sendable, CustomStringConvertible {
    /// Ed25519 (RFC 8032): 64-byte deterministic signatures. The default.
    case ed25519
    /// ECDSA over P-256 with SHA-256 (FIPS 186-4): DER `ECDSA-Sig-Value` signatures.
    case p256

    public var description: String { rawValue }
}
