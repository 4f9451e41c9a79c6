internal import COpenSSL
import Synchronization

/// A signing context set up once for a private key; an ECDSA signature starts from a copy of
/// it, an Ed25519 one from a context kept from an earlier signature (or a copy, when none waits).
///
/// `EVP_DigestSignInit` looks the algorithm up in OpenSSL 3's provider store (locks, name
/// comparisons, allocations) every time; a copy of an initialised context skips that, about
/// 1.7 µs of the 26 µs an Ed25519 signature costs here. The template itself is touched only
/// under the lock, so concurrent signers never share an OpenSSL context.
///
/// An Ed25519 context is not spent by a signature (it is one-shot: `EVP_DigestSign` hashes
/// and signs in one call, and `openssl speed` signs from one context in its loop), so those
/// are kept in a pool and used again: no copy (an allocation and the provider context's
/// duplicate, 3.6 µs a signature on this machine, in a C loop), and no lock on the template.
/// An ECDSA context hashes as it goes and is spent by its final step; each of those is a copy.
final class SigningContext: Sendable {
    /// Read only under `lock` (a copy reads it; nothing else touches it after init).
    nonisolated(unsafe) private let template: OpaquePointer
    private let lock = Mutex(())
    let algorithm: KeyAlgorithm
    /// Ed25519 contexts that have signed and may sign again.
    private let reusable = ContextPool(free: { EVP_MD_CTX_free($0) })

    init(_ key: EVPKey, algorithm: KeyAlgorithm) throws(CryptoError) {
        guard let context = EVP_MD_CTX_new() else { throw CryptoError(.signingFailed, "out of memory") }
        guard EVP_DigestSignInit(context, nil, EVPKey.digest(for: algorithm), nil, key.pointer) == 1 else {
            EVP_MD_CTX_free(context)
            throw CryptoError(.signingFailed, "cannot start an \(algorithm) signature")
        }
        template = context
        self.algorithm = algorithm
    }

    deinit { EVP_MD_CTX_free(template) }

    /// Ed25519 (pure) or ECDSA with SHA-256 (DER) over `message`.
    func sign(_ message: [UInt8]) throws(CryptoError) -> [UInt8] {
        if algorithm == .ed25519 { return try signReusingContext(message) }
        let context = try copyOfTemplate()
        defer { EVP_MD_CTX_free(context) }
        var length = 0
        guard EVP_DigestSign(context, nil, &length, message, message.count) == 1 else {
            throw CryptoError(.signingFailed, "cannot size an \(algorithm) signature")
        }
        var signature = [UInt8](repeating: 0, count: length)
        guard EVP_DigestSign(context, &signature, &length, message, message.count) == 1 else {
            throw CryptoError(.signingFailed, "cannot make an \(algorithm) signature")
        }
        return Array(signature.prefix(length))
    }

    /// A fresh context, initialised for this key.
    private func copyOfTemplate() throws(CryptoError) -> OpaquePointer {
        guard let context = EVP_MD_CTX_new() else { throw CryptoError(.signingFailed, "out of memory") }
        guard lock.withLock({ _ in EVP_MD_CTX_copy_ex(context, template) }) == 1 else {
            EVP_MD_CTX_free(context)
            throw CryptoError(.signingFailed, "cannot start an \(algorithm) signature")
        }
        return context
    }

    /// An Ed25519 signature (always 64 bytes) from a kept context, or a copy when none waits.
    private func signReusingContext(_ message: [UInt8]) throws(CryptoError) -> [UInt8] {
        let context: OpaquePointer
        if let kept = reusable.take() { context = kept } else { context = try copyOfTemplate() }
        var signature = [UInt8](repeating: 0, count: 64)
        var length = signature.count
        guard EVP_DigestSign(context, &signature, &length, message, message.count) == 1, length == 64 else {
            EVP_MD_CTX_free(context)
            throw CryptoError(.signingFailed, "cannot make an \(algorithm) signature")
        }
        reusable.putBack(context)
        return signature
    }
}
