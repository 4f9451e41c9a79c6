internal import COpenSSL
public import Foundation

/// The ciphers a tunnel may use: TLS 1.3 AEAD suites only. The seed's DES and 3DES are broken
/// and are refused by name, never silently replaced.
public enum TLSCipher: String, CaseIterable, Sendable, CustomStringConvertible {
    case aes128gcm = "AES-128-GCM"
    case aes256gcm = "AES-256-GCM"
    case chacha20poly1305 = "CHACHA20-POLY1305"

    /// The TLS 1.3 cipher suite (RFC 8446 appendix B.4).
    public var suite: String {
        switch self {
        case .aes128gcm: "TLS_AES_128_GCM_SHA256"
        case .aes256gcm: "TLS_AES_256_GCM_SHA384"
        case .chacha20poly1305: "TLS_CHACHA20_POLY1305_SHA256"
        }
    }

    public var description: String { rawValue }

    /// Parses a cipher name as written in a CUG table, case-insensitively.
    public static func named(_ text: String) -> Result<TLSCipher, CryptoError> {
        let upper = text.uppercased()
        if let cipher = TLSCipher(rawValue: upper) { return .success(cipher) }
        if ["DES", "3DES", "TRIPLE-DES", "DES-EDE3", "DES3"].contains(upper) {
            return .failure(CryptoError(
                .unsupportedAlgorithm, "\(text) is broken and refused; use AES-128-GCM, AES-256-GCM or CHACHA20-POLY1305"))
        }
        return .failure(CryptoError(
            .unsupportedAlgorithm, "unknown cipher '\(text)'; use AES-128-GCM, AES-256-GCM or CHACHA20-POLY1305"))
    }
}

/// A host's TLS identity: its KMS1 key in a self-signed X.509 certificate naming the host.
/// Peers do not trust the certificate; they check its key against the one the KMS hierarchy
/// vouches for (DANE-EE, RFC 7671: usage 3, selector 1 — the SubjectPublicKeyInfo).
public final class TLSIdentity: @unchecked Sendable {
    public let name: String
    public let key: PrivateKey
    let certificate: OpaquePointer  // X509*

    public init(name: String, key: PrivateKey, validity: TimeInterval = 365 * 86400) throws(CryptoError) {
        guard let certificate = X509_new() else { throw CryptoError(.encodingFailed, "out of memory") }
        self.name = name
        self.key = key
        self.certificate = certificate
        let serial = try SecureRandom.bytes(16)
        var ok = X509_set_version(certificate, 2) == 1
        if let bignum = BN_bin2bn(serial, Int32(serial.count), nil) {
            BN_set_negative(bignum, 0)
            ok = ok && BN_to_ASN1_INTEGER(bignum, X509_get_serialNumber(certificate)) != nil
            BN_free(bignum)
        }
        ok = ok && X509_gmtime_adj(X509_getm_notBefore(certificate), -3600) != nil
        ok = ok && X509_gmtime_adj(X509_getm_notAfter(certificate), Int(validity)) != nil
        ok = ok && X509_set_pubkey(certificate, key.key.pointer) == 1
        let subject = X509_get_subject_name(certificate)
        let commonName = name.hasSuffix(".") ? String(name.dropLast()) : name
        ok = ok && X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, commonName, -1, -1, 0) == 1
        ok = ok && X509_set_issuer_name(certificate, subject) == 1
        var context = X509V3_CTX()
        X509V3_set_ctx(&context, certificate, certificate, nil, nil, 0)
        if let extensionValue = X509V3_EXT_conf_nid(nil, &context, NID_subject_alt_name, "DNS:\(commonName)") {
            ok = ok && X509_add_ext(certificate, extensionValue, -1) == 1
            X509_EXTENSION_free(extensionValue)
        } else {
            ok = false
        }
        ok = ok && X509_sign(certificate, key.key.pointer, EVPKey.digest(for: key.algorithm)) > 0
        guard ok else { throw CryptoError(.encodingFailed, "cannot build a self-signed certificate for \(name)") }
    }

    deinit { X509_free(certificate) }

    /// The certificate in PEM, for inspection with `openssl x509 -text`.
    public func certificatePEM() throws(CryptoError) -> String {
        try PEM.write { PEM_write_bio_X509($0, certificate) }
    }
}
