internal import COpenSSL
internal import COpenSSLShims

/// One TLS connection (owns one `SSL`) driven through memory buffers: the caller feeds it the
/// bytes that came from the network and sends what `takeOutbound()` returns. It knows nothing of
/// sockets or channels, so tests can pump two of them against each other.
///
/// Not thread-safe: use it from one thread (one event loop) at a time.
public final class TLSConnection {
    public enum Progress: Equatable, Sendable {
        /// More bytes from the peer are needed.
        case wantsInput
        /// The handshake is complete.
        case established
    }

    public enum ReadResult: Equatable, Sendable {
        case data([UInt8])
        case wantsInput
        /// The peer sent close_notify: no more data will come.
        case closed
    }

    private let ssl: OpaquePointer
    private let inbound: OpaquePointer  // BIO*: network -> SSL
    private let outbound: OpaquePointer  // BIO*: SSL -> network
    private let context: TLSContext  // keeps the SSL_CTX alive

    /// - Parameters:
    ///   - pinnedKey: for a client, the only server key accepted (DANE-EE SPKI).
    ///   - serverName: for a client, the name the server is known by (SNI and DANE base name).
    public init(context: TLSContext, pinnedKey: PublicKey? = nil, serverName: String? = nil) throws(CryptoError) {
        guard let ssl = SSL_new(context.pointer), let inbound = BIO_new(BIO_s_mem()), let outbound = BIO_new(BIO_s_mem())
        else { throw CryptoError(.encodingFailed, "cannot create a TLS connection") }
        self.ssl = ssl
        self.inbound = inbound
        self.outbound = outbound
        self.context = context
        SSL_set_bio(ssl, inbound, outbound)  // the SSL now owns both BIOs
        switch context.role {
        case .client:
            guard let pinnedKey else { throw CryptoError(.malformedKey, "a client connection needs the server's pinned key") }
            var name = serverName ?? "peer"
            if name.hasSuffix(".") { name.removeLast() }
            let spki = pinnedKey.subjectPublicKeyInfo
            guard SSL_dane_enable(ssl, name) > 0,
                SSL_dane_tlsa_add(ssl, 3, 1, 0, spki, spki.count) > 0  // DANE-EE, SPKI, full
            else { throw CryptoError(.encodingFailed, "cannot pin the peer key") }
            // The key is the identity: a DANE-EE match needs no name check (RFC 7671 section 5.1).
            SSL_dane_set_flags(ssl, UInt(DANE_FLAG_NO_DANE_EE_NAMECHECKS))
            SSL_set_connect_state(ssl)
        case .server:
            SSL_set_accept_state(ssl)
        }
    }

    deinit { SSL_free(ssl) }

    /// Hands the connection bytes received from the network.
    public func feed(_ bytes: some Collection<UInt8>) {
        let array = Array(bytes)
        _ = array.withUnsafeBytes { BIO_write(inbound, $0.baseAddress, Int32($0.count)) }
    }

    /// Bytes to send to the network (handshake, encrypted data, alerts).
    public func takeOutbound() -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16_384)
        while BIO_ctrl_pending(outbound) > 0 {
            let count = BIO_read(outbound, &buffer, Int32(buffer.count))
            if count <= 0 { break }
            out += buffer.prefix(Int(count))
        }
        return out
    }

    /// Advances the handshake.
    public func handshake() throws(CryptoError) -> Progress {
        let result = SSL_do_handshake(ssl)
        if result == 1 { return .established }
        switch SSL_get_error(ssl, result) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .wantsInput
        default: throw failure("handshake failed")
        }
    }

    public var isEstablished: Bool { SSL_is_init_finished(ssl) == 1 }

    /// Encrypts application data; the ciphertext is then in `takeOutbound()`.
    public func write(_ bytes: some Collection<UInt8>) throws(CryptoError) {
        let array = Array(bytes)
        var offset = 0
        while offset < array.count {
            let written = array.withUnsafeBytes {
                SSL_write(ssl, $0.baseAddress! + offset, Int32(array.count - offset))
            }
            guard written > 0 else { throw failure("write failed") }
            offset += Int(written)
        }
    }

    /// Decrypts what has been fed so far.
    public func read() throws(CryptoError) -> ReadResult {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16_384)
        while true {
            let count = SSL_read(ssl, &buffer, Int32(buffer.count))
            if count > 0 {
                out += buffer.prefix(Int(count))
                continue
            }
            switch SSL_get_error(ssl, count) {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
                return out.isEmpty ? .wantsInput : .data(out)
            case SSL_ERROR_ZERO_RETURN:
                return out.isEmpty ? .closed : .data(out)
            default:
                throw failure("read failed")
            }
        }
    }

    /// Sends close_notify: this side will write no more.
    public func shutdown() {
        _ = SSL_shutdown(ssl)
        _ = OpenSSLErrorQueue.drain()
    }

    /// The peer's public key, once established.
    public var peerKey: PublicKey? {
        guard let certificate = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(certificate) }
        guard let key = X509_get_pubkey(certificate) else { return nil }
        return try? PublicKey(EVPKey(taking: key))
    }

    /// The name in the peer's certificate (its subject CN, which our certificates make equal to
    /// the host name, with the trailing dot restored).
    public var peerName: String? {
        guard let certificate = SSL_get1_peer_certificate(ssl) else { return nil }
        defer { X509_free(certificate) }
        let subject = X509_get_subject_name(certificate)
        let index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1)
        guard index >= 0, let entry = X509_NAME_get_entry(subject, index), let data = X509_NAME_ENTRY_get_data(entry),
            let bytes = ASN1_STRING_get0_data(data)
        else { return nil }
        let name = String(decoding: UnsafeBufferPointer(start: bytes, count: Int(ASN1_STRING_length(data))), as: UTF8.self)
        return name.hasSuffix(".") ? name : name + "."
    }

    /// The negotiated TLS 1.3 cipher suite, e.g. `TLS_AES_128_GCM_SHA256`.
    public var cipherSuite: String? {
        guard let cipher = SSL_get_current_cipher(ssl), let name = SSL_CIPHER_get_name(cipher) else { return nil }
        return String(cString: name)
    }

    public var protocolVersion: String { String(cString: SSL_get_version(ssl)) }

    private func failure(_ what: String) -> CryptoError {
        let verify = SSL_get_verify_result(ssl)
        if verify != X509_V_OK {
            let reason = String(cString: X509_verify_cert_error_string(verify))
            return CryptoError(.tlsFailed, "\(what): peer key rejected (\(reason))")
        }
        return CryptoError(.tlsFailed, what)
    }
}
