internal import COpenSSL
internal import COpenSSLShims
import Synchronization

/// A public key: Ed25519 or ECDSA P-256, known by its DER SubjectPublicKeyInfo.
///
/// Two keys are equal when their SubjectPublicKeyInfo bytes are equal; that is the identity
/// KMS1 distributes and the proxy pins.
public struct PublicKey: Hashable, Sendable {
    public let algorithm: KeyAlgorithm
    /// DER SubjectPublicKeyInfo, as `openssl pkey -pubout -outform DER` writes it.
    public let subjectPublicKeyInfo: [UInt8]
    let key: EVPKey

    init(_ key: EVPKey) throws(CryptoError) {
        guard let algorithm = key.algorithm else {
            throw CryptoError(.unsupportedAlgorithm, "only Ed25519 and ECDSA P-256 keys are used")
        }
        self.algorithm = algorithm
        self.subjectPublicKeyInfo = try key.subjectPublicKeyInfo()
        self.key = key
    }

    /// Reads a DER SubjectPublicKeyInfo.
    ///
    /// Keys arrive in every answer, and the same few keys again and again, so decoded keys are
    /// kept by their bytes (`DecodedKeys`): OpenSSL's generic decoder and the canonical-form
    /// check were a third of a host's cost per fetch.
    public init(subjectPublicKeyInfo der: [UInt8]) throws(CryptoError) {
        if let known = DecodedKeys.shared.key(for: der) {
            self = known
            return
        }
        let key = try Self.decode(der)
        DecodedKeys.shared.keep(key)
        self = key
    }

    /// The fixed start of each algorithm's SubjectPublicKeyInfo in its one DER form: Ed25519
    /// (RFC 8410 section 4) before the 32-byte key, P-256 (RFC 5480 section 2, named curve)
    /// before the 65-byte uncompressed point.
    private static let ed25519Prefix: [UInt8] = [0x30, 0x2A, 0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x03, 0x21, 0x00]
    private static let p256Prefix: [UInt8] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01, 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D,
        0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
    ]

    /// A key in that one form is built from its raw bytes (`EVP_PKEY_new_raw_public_key`, or
    /// `EVP_PKEY_fromdata`, which checks the point is on the curve): about 3 and 14 µs here,
    /// against 97 and 145 µs for OpenSSL's generic decoder and the re-encoding that proves the
    /// form canonical, which bulk registration and every hop of a cold fetch paid per new key.
    /// The bytes are the canonical SubjectPublicKeyInfo by construction. Anything else takes
    /// the generic path (and is refused there unless it is a canonical key of these kinds).
    private static func decodeKnownForm(_ der: [UInt8]) throws(CryptoError) -> PublicKey? {
        let algorithm: KeyAlgorithm
        let made: OpaquePointer?
        if der.count == 44, der.starts(with: ed25519Prefix) {
            algorithm = .ed25519
            made = der.withUnsafeBufferPointer { EVP_PKEY_new_raw_public_key(NID_ED25519, nil, $0.baseAddress! + 12, 32) }
        } else if der.count == 91, der.starts(with: p256Prefix) {
            algorithm = .p256
            made = der.withUnsafeBufferPointer { countersign_p256_public_key($0.baseAddress! + 26, 65) }
        } else {
            return nil
        }
        guard let made else { throw CryptoError(.malformedKey, "not a valid \(algorithm) public key") }
        return PublicKey(algorithm: algorithm, subjectPublicKeyInfo: der, key: EVPKey(taking: made))
    }

    private init(algorithm: KeyAlgorithm, subjectPublicKeyInfo: [UInt8], key: EVPKey) {
        self.algorithm = algorithm
        self.subjectPublicKeyInfo = subjectPublicKeyInfo
        self.key = key
    }

    private static func decode(_ der: [UInt8]) throws(CryptoError) -> PublicKey {
        if let known = try decodeKnownForm(der) { return known }
        let parsed = der.withUnsafeBufferPointer { buffer -> OpaquePointer? in
            var cursor = buffer.baseAddress
            guard let key = d2i_PUBKEY(nil, &cursor, buffer.count) else { return nil }
            // Trailing bytes after the SPKI are not a key we issued: reject, do not ignore.
            guard cursor == buffer.baseAddress! + buffer.count else {
                EVP_PKEY_free(key)
                return nil
            }
            return key
        }
        guard let parsed else { throw CryptoError(.malformedKey, "not a DER SubjectPublicKeyInfo") }
        let key = try PublicKey(EVPKey(taking: parsed))
        guard key.subjectPublicKeyInfo == der else {
            throw CryptoError(.malformedKey, "SubjectPublicKeyInfo is not in canonical DER")
        }
        return key
    }

    /// Reads a PEM `PUBLIC KEY` (what `openssl pkey -pubout` writes).
    public init(pemEncoded pem: String) throws(CryptoError) {
        guard let parsed = PEM.read(pem, { PEM_read_bio_PUBKEY($0, nil, nil, nil) }) else {
            throw CryptoError(.malformedKey, "not a PEM PUBLIC KEY")
        }
        try self.init(EVPKey(taking: parsed))
    }

    /// PEM `PUBLIC KEY`, byte for byte what `openssl pkey -pubout` prints.
    public func pemRepresentation() throws(CryptoError) -> String {
        try PEM.write { PEM_write_bio_PUBKEY($0, key.pointer) }
    }

    /// True when `signature` is this key's signature over `message`. A malformed signature
    /// is simply not valid.
    public func isValidSignature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
        CryptoCounts.verified.add(1, ordering: .relaxed)
        if algorithm == .ed25519 { return isValidEd25519Signature(signature, for: message) }
        guard let context = EVP_MD_CTX_new() else { return false }
        defer {
            EVP_MD_CTX_free(context)
            _ = OpenSSLErrorQueue.drain()
        }
        guard EVP_DigestVerifyInit(context, nil, EVPKey.digest(for: algorithm), nil, key.pointer) == 1 else {
            return false
        }
        return EVP_DigestVerify(context, signature, signature.count, message, message.count) == 1
    }

    /// An Ed25519 verify from the context the key keeps (`EVPKey.verifier()`). A context
    /// that failed a verify is freed, not kept: nothing a bad signature left in it is reused.
    private func isValidEd25519Signature(_ signature: [UInt8], for message: [UInt8]) -> Bool {
        guard let context = key.verifier() else {
            _ = OpenSSLErrorQueue.drain()
            return false
        }
        guard EVP_DigestVerify(context, signature, signature.count, message, message.count) == 1 else {
            EVP_MD_CTX_free(context)
            _ = OpenSSLErrorQueue.drain()
            return false
        }
        key.keep(context)
        return true
    }

    public static func == (lhs: PublicKey, rhs: PublicKey) -> Bool {
        lhs.subjectPublicKeyInfo == rhs.subjectPublicKeyInfo
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(subjectPublicKeyInfo) }
}

/// Public keys already decoded, by their DER bytes: a bounded table (emptied when full), safe
/// to share because an `EVP_PKEY` is only read once built, and every verify makes its own
/// context. Only keys that decoded and re-encoded to the same bytes are kept.
final class DecodedKeys: Sendable {
    static let shared = DecodedKeys(capacity: 4096)

    private let table: Mutex<[[UInt8]: PublicKey]>
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        table = Mutex([:])
    }

    func key(for der: [UInt8]) -> PublicKey? { table.withLock { $0[der] } }

    func keep(_ key: PublicKey) {
        table.withLock { table in
            if table.count >= capacity { table.removeAll(keepingCapacity: true) }
            table[key.subjectPublicKeyInfo] = key
        }
    }
}
