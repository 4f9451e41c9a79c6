internal import COpenSSL
internal import COpenSSLShims
import Glibc

/// A private signing key: Ed25519 or ECDSA P-256.
///
/// On disk it is PEM PKCS#8 (`-----BEGIN PRIVATE KEY-----`), what `openssl genpkey` writes,
/// so operators can inspect and convert keys with OpenSSL's own tools.
public struct PrivateKey: Sendable {
    let key: EVPKey
    public let algorithm: KeyAlgorithm
    public let publicKey: PublicKey
    private let signer: SigningContext

    private init(_ key: EVPKey) throws(CryptoError) {
        guard let algorithm = key.algorithm else {
            throw CryptoError(.unsupportedAlgorithm, "only Ed25519 and ECDSA P-256 keys are used")
        }
        self.key = key
        self.algorithm = algorithm
        self.publicKey = try PublicKey(key)
        self.signer = try SigningContext(key, algorithm: algorithm)
    }

    /// Generates a new key from OpenSSL's default random generator.
    public init(generating algorithm: KeyAlgorithm) throws(CryptoError) {
        let name = algorithm == .ed25519 ? "ED25519" : "EC"
        guard let context = EVP_PKEY_CTX_new_from_name(nil, name, nil) else {
            throw CryptoError(.keyGenerationFailed, "no \(name) implementation")
        }
        defer { EVP_PKEY_CTX_free(context) }
        guard EVP_PKEY_keygen_init(context) == 1,
            algorithm == .ed25519 || EVP_PKEY_CTX_set_group_name(context, "P-256") == 1
        else { throw CryptoError(.keyGenerationFailed, "cannot set up \(algorithm) generation") }
        var made: OpaquePointer?
        guard EVP_PKEY_generate(context, &made) == 1, let made else {
            throw CryptoError(.keyGenerationFailed, "cannot generate an \(algorithm) key")
        }
        try self.init(EVPKey(taking: made))
    }

    /// Reads a PEM private key (PKCS#8, or the traditional `EC PRIVATE KEY`).
    public init(pemEncoded pem: String) throws(CryptoError) {
        guard let parsed = PEM.read(pem, { PEM_read_bio_PrivateKey($0, nil, nil, nil) }) else {
            throw CryptoError(.malformedKey, "not a PEM private key")
        }
        try self.init(EVPKey(taking: parsed))
    }

    /// An Ed25519 key from its 32-byte seed (RFC 8032 section 5.1.5).
    public init(ed25519Seed seed: [UInt8]) throws(CryptoError) {
        guard seed.count == 32,
            let made = EVP_PKEY_new_raw_private_key(NID_ED25519, nil, seed, seed.count)
        else { throw CryptoError(.malformedKey, "an Ed25519 seed is 32 bytes") }
        try self.init(EVPKey(taking: made))
    }

    /// A P-256 key from its 32-byte private scalar; the public point is derived from it.
    public init(p256Scalar scalar: [UInt8]) throws(CryptoError) {
        guard scalar.count == 32 else { throw CryptoError(.malformedKey, "a P-256 scalar is 32 bytes") }
        let made = try Self.p256FromScalar(scalar)
        try self.init(EVPKey(taking: made))
    }

    /// PEM PKCS#8 `PRIVATE KEY`, as `openssl genpkey` writes it.
    public func pemRepresentation() throws(CryptoError) -> String {
        try PEM.write { PEM_write_bio_PrivateKey($0, key.pointer, nil, nil, 0, nil, nil) }
    }

    /// Signs `message`: Ed25519 (pure) or ECDSA with SHA-256, DER-encoded.
    public func signature(for message: [UInt8]) throws(CryptoError) -> [UInt8] {
        CryptoCounts.signed.add(1, ordering: .relaxed)
        return try signer.sign(message)
    }

    private static func p256FromScalar(_ scalar: [UInt8]) throws(CryptoError) -> OpaquePointer {
        guard let group = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1),
            let point = EC_POINT_new(group), let bignum = BN_bin2bn(scalar, 32, nil)
        else { throw CryptoError(.malformedKey, "cannot set up P-256") }
        defer {
            EC_POINT_free(point)
            EC_GROUP_free(group)
            BN_clear_free(bignum)
        }
        var publicPoint = [UInt8](repeating: 0, count: 65)
        guard EC_POINT_mul(group, point, bignum, nil, nil, nil) == 1,
            EC_POINT_point2oct(group, point, POINT_CONVERSION_UNCOMPRESSED, &publicPoint, 65, nil) == 65,
            let builder = OSSL_PARAM_BLD_new()
        else { throw CryptoError(.malformedKey, "not a valid P-256 scalar") }
        defer { OSSL_PARAM_BLD_free(builder) }
        // The builder keeps the key-name and value pointers until OSSL_PARAM_BLD_to_param
        // copies them, so every C string and buffer must outlive the whole build.
        let names: [UnsafeMutablePointer<CChar>] = [OSSL_PKEY_PARAM_GROUP_NAME, OSSL_PKEY_PARAM_PRIV_KEY, OSSL_PKEY_PARAM_PUB_KEY, "prime256v1"]
            .map { (name: String) in strdup(name)! }
        defer { names.forEach { free($0) } }
        let parameters = publicPoint.withUnsafeBytes { point -> OpaquePointer? in
            guard OSSL_PARAM_BLD_push_utf8_string(builder, names[0], names[3], 0) == 1,
                OSSL_PARAM_BLD_push_BN(builder, names[1], bignum) == 1,
                OSSL_PARAM_BLD_push_octet_string(builder, names[2], point.baseAddress, point.count) == 1
            else { return nil }
            return OpaquePointer(OSSL_PARAM_BLD_to_param(builder))
        }
        guard let parameters else { throw CryptoError(.malformedKey, "cannot build P-256 parameters") }
        defer { OSSL_PARAM_free(UnsafeMutablePointer(parameters)) }
        guard let context = EVP_PKEY_CTX_new_from_name(nil, "EC", nil) else {
            throw CryptoError(.malformedKey, "no EC implementation")
        }
        defer { EVP_PKEY_CTX_free(context) }
        var made: OpaquePointer?
        guard EVP_PKEY_fromdata_init(context) == 1,
            EVP_PKEY_fromdata(context, &made, countersign_evp_pkey_keypair_selection(), UnsafeMutablePointer(parameters)) == 1, let made
        else { throw CryptoError(.malformedKey, "cannot make a P-256 key from the scalar") }
        return made
    }
}
