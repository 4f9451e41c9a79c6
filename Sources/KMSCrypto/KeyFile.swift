import Foundation

/// PEM key files on disk: `PREFIX.pem` (private, mode 0600) and `PREFIX.pub.pem`.
public enum KeyFile {
    /// A key file that could not be read or written; the message names the file.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public let path: String
        public let reason: String
        public var description: String { "\(path): \(reason)" }
    }

    /// Reads a private key. Like OpenSSH, refuses a file that group or others may read or
    /// write: such a key may already be someone else's too.
    public static func readPrivateKey(at path: String) throws(Failure) -> PrivateKey {
        try requirePrivateMode(path)
        let text = try read(path)
        do { return try PrivateKey(pemEncoded: text) } catch {
            throw Failure(path: path, reason: "not a usable private key (\(error))")
        }
    }

    public static func readPublicKey(at path: String) throws(Failure) -> PublicKey {
        let text = try read(path)
        do { return try PublicKey(pemEncoded: text) } catch {
            throw Failure(path: path, reason: "not a usable public key (\(error))")
        }
    }

    /// Writes `PREFIX.pem` (0600, created with that mode) and `PREFIX.pub.pem` (0644).
    /// Refuses to replace an existing file unless `force` is set. Returns both paths.
    @discardableResult
    public static func write(_ key: PrivateKey, prefix: String, force: Bool) throws(Failure) -> (String, String) {
        let privatePath = prefix + ".pem"
        let publicPath = prefix + ".pub.pem"
        if !force {
            for path in [privatePath, publicPath] where FileManager.default.fileExists(atPath: path) {
                throw Failure(path: path, reason: "exists; pass --force to replace it")
            }
        }
        do {
            try write(try key.pemRepresentation(), to: privatePath, mode: 0o600)
            try write(try key.publicKey.pemRepresentation(), to: publicPath, mode: 0o644)
        } catch let error as Failure {
            throw error
        } catch {
            throw Failure(path: privatePath, reason: "\(error)")
        }
        return (privatePath, publicPath)
    }

    /// A private key file must not be open to group or others (mode 0600 or stricter).
    static func requirePrivateMode(_ path: String) throws(Failure) {
        var status = stat()
        guard stat(path, &status) == 0 else {
            throw Failure(path: path, reason: "cannot read (\(String(cString: strerror(errno))))")
        }
        let mode = status.st_mode & 0o777
        guard mode & 0o077 == 0 else {
            throw Failure(
                path: path,
                reason: "private key has mode \(String(mode, radix: 8, uppercase: false).leftPadded(to: 4)), "
                    + "readable or writable by group or others; refusing it (chmod 600 \(path))")
        }
    }

    private static func read(_ path: String) throws(Failure) -> String {
        do { return try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw Failure(path: path, reason: "cannot read (\(error.localizedDescription))")
        }
    }

    /// Writes through a temporary file created with `mode`, then renames it into place, so a
    /// private key is never readable by others, not even for a moment, and never half-written.
    private static func write(_ text: String, to path: String, mode: mode_t) throws(Failure) {
        let temporary = path + ".tmp-\(getpid())"
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL, mode)
        guard descriptor >= 0 else {
            throw Failure(path: path, reason: "cannot create (\(String(cString: strerror(errno))))")
        }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
        let synced = fsync(descriptor) == 0
        close(descriptor)
        guard written == bytes.count, synced, fchmodat(AT_FDCWD, temporary, mode, 0) == 0,
            rename(temporary, path) == 0
        else {
            unlink(temporary)
            throw Failure(path: path, reason: "cannot write (\(String(cString: strerror(errno))))")
        }
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
