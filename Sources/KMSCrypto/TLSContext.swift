internal import COpenSSL
internal import COpenSSLShims

/// A TLS 1.3 configuration (owns one `SSL_CTX`): this host's identity, the allowed cipher
/// suites, and peer authentication by pinned key only.
///
/// - A client pins the server's key with OpenSSL's DANE API (DANE-EE, SPKI, full match): no
///   CA, no name check, only the key the KMS hierarchy vouched for passes.
/// - A server requires a client certificate and hands its key and name to the caller after the
///   handshake, to be checked against the KMS hierarchy (`TLSConnection.peerKey`).
public final class TLSContext: @unchecked Sendable {
    public enum Role: Sendable { case client, server }

    let pointer: OpaquePointer  // SSL_CTX*
    public let role: Role
    public let identity: TLSIdentity

    public init(role: Role, identity: TLSIdentity, ciphers: [TLSCipher] = TLSCipher.allCases) throws(CryptoError) {
        guard let context = SSL_CTX_new(role == .client ? TLS_client_method() : TLS_server_method()) else {
            throw CryptoError(.encodingFailed, "cannot create a TLS context")
        }
        pointer = context
        self.role = role
        self.identity = identity
        guard countersign_ssl_ctx_set_min_proto_version(context, TLS1_3_VERSION) == 1,
            countersign_ssl_ctx_set_max_proto_version(context, TLS1_3_VERSION) == 1,
            SSL_CTX_set_ciphersuites(context, ciphers.map(\.suite).joined(separator: ":")) == 1,
            SSL_CTX_use_certificate(context, identity.certificate) == 1,
            SSL_CTX_use_PrivateKey(context, identity.key.key.pointer) == 1,
            SSL_CTX_check_private_key(context) == 1
        else { throw CryptoError(.encodingFailed, "cannot configure TLS 1.3 with \(ciphers)") }
        switch role {
        case .client:
            guard SSL_CTX_dane_enable(context) == 1 else { throw CryptoError(.encodingFailed, "DANE unavailable") }
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER, nil)
        case .server:
            // Any certificate is taken for the handshake; its key is then checked against the
            // KMS hierarchy before a single byte is relayed.
            SSL_CTX_set_verify(context, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT) { _, _ in 1 }
        }
    }

    deinit { SSL_CTX_free(pointer) }
}
