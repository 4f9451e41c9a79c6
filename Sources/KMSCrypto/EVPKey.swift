internal import COpenSSL
internal import COpenSSLShims
import Synchronization

/// Owns one `EVP_PKEY`. OpenSSL keys are reference counted and safe to use for signing and
/// verifying from several threads at once (each operation has its own `EVP_MD_CTX`).
final class EVPKey: @unchecked Sendable {
    let pointer: OpaquePointer
    /// One Ed25519 verify context set up for this key, between two verifies (`verifier()`).
    private let keptVerifier = Atomic<OpaquePointer?>(nil)

    init(taking pointer: OpaquePointer) { self.pointer = pointer }
    deinit {
        if let kept = keptVerifier.exchange(nil, ordering: .acquiring) { EVP_MD_CTX_free(kept) }
        EVP_PKEY_free(pointer)
    }

    /// An Ed25519 verify context for this key: the one kept from an earlier verify, or a new
    /// one (nil when OpenSSL cannot make one). Hand it back with `keep(_:)` after a verify
    /// that succeeded; free it otherwise.
    ///
    /// Ed25519 verifies in one call (`EVP_DigestVerify` hashes and checks at once), which does
    /// not spend the context, as `openssl speed` relies on in its loop; keeping one saves
    /// `EVP_DigestVerifyInit` (a provider look-up, with locks and allocations) on every
    /// verify after the first, about 6 % of a verify here. One per key at most, and only once
    /// the key has verified something: a kept context is 576 bytes (counted with `mallinfo2`
    /// around 10 000 of them, in C), so a registry's 65 536 decoded keys (`Registry`) hold at
    /// most 36 MiB of them. A second thread verifying with the same key at once makes its own.
    /// Not for ECDSA, whose context is spent by its final step.
    func verifier() -> OpaquePointer? {
        if let kept = keptVerifier.exchange(nil, ordering: .acquiring) { return kept }
        guard let context = EVP_MD_CTX_new() else { return nil }
        guard EVP_DigestVerifyInit(context, nil, nil, nil, pointer) == 1 else {
            EVP_MD_CTX_free(context)
            return nil
        }
        return context
    }

    /// Whether a verify context is kept now (for tests).
    var keepsVerifier: Bool { keptVerifier.load(ordering: .acquiring) != nil }

    /// Keeps a context from `verifier()` for the next verify, or frees it if one is kept.
    func keep(_ verifier: OpaquePointer) {
        if !keptVerifier.compareExchange(expected: nil, desired: verifier, ordering: .acquiringAndReleasing).exchanged {
            EVP_MD_CTX_free(verifier)
        }
    }

    /// The algorithm of this key, or nil for one KMS1 does not use.
    var algorithm: KeyAlgorithm? {
        switch EVP_PKEY_get_base_id(pointer) {
        case NID_ED25519: return .ed25519
        case EVP_PKEY_EC:
            var name = [CChar](repeating: 0, count: 64)
            var length = 0
            guard EVP_PKEY_get_group_name(pointer, &name, name.count, &length) == 1 else { return nil }
            let group = String(decoding: name.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            return group == "prime256v1" || group == "P-256" ? .p256 : nil
        default: return nil
        }
    }

    /// The digest the algorithm signs with (`nil` for Ed25519, which hashes internally).
    static func digest(for algorithm: KeyAlgorithm) -> OpaquePointer? {
        algorithm == .p256 ? EVP_sha256() : nil
    }

    /// DER SubjectPublicKeyInfo (RFC 5280 section 4.1.2.7).
    func subjectPublicKeyInfo() throws(CryptoError) -> [UInt8] {
        var out: UnsafeMutablePointer<UInt8>?
        let length = i2d_PUBKEY(pointer, &out)
        guard length > 0, let out else { throw CryptoError(.encodingFailed, "cannot encode SubjectPublicKeyInfo") }
        defer { countersign_openssl_free(out) }
        return Array(UnsafeBufferPointer(start: out, count: Int(length)))
    }
}

/// Reads and writes PEM through an in-memory BIO.
enum PEM {
    static func read<T>(_ text: String, _ body: (OpaquePointer) -> T?) -> T? {
        var bytes = Array(text.utf8)
        return bytes.withUnsafeMutableBytes { buffer -> T? in
            guard let bio = BIO_new_mem_buf(buffer.baseAddress, Int32(buffer.count)) else { return nil }
            defer { BIO_free(bio) }
            return body(bio)
        }
    }

    static func write(_ body: (OpaquePointer) -> Int32) throws(CryptoError) -> String {
        guard let bio = BIO_new(BIO_s_mem()) else { throw CryptoError(.encodingFailed, "out of memory") }
        defer { BIO_free(bio) }
        guard body(bio) == 1 else { throw CryptoError(.encodingFailed, "cannot write PEM") }
        var data: UnsafeMutablePointer<CChar>?
        let length = countersign_bio_get_mem_data(bio, &data)
        guard length > 0, let data else { throw CryptoError(.encodingFailed, "empty PEM") }
        return String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self)
    }
}
