import ControlSocket
import Foundation
import NIOCore
import NIOPosix
import Testing

/// The local administration socket that `kms register`, `kms-proxy status` and the daemons share.
@Suite struct ControlSocketTests {
    let group = MultiThreadedEventLoopGroup.singleton

    func temporaryPath() -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("control-\(UUID().uuidString).sock").path
    }

    @Test func aRequestGetsItsReply() async throws {
        let path = temporaryPath()
        let server = try await ControlSocket.serve(at: path, group: group) { line in Data("echo ".utf8) + line }
        let reply = try await ControlSocket.send(Data("ping".utf8), to: path, group: group)
        #expect(String(decoding: reply, as: UTF8.self) == "echo ping")
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        #expect(mode == 0o600)
        try await server.close()
    }

    /// Defect: a client promise made before connect() leaked when the connect failed, and the
    /// debug build stopped with "leaking promise" instead of saying the node is not running.
    @Test func noDaemonGivesAClearErrorEveryTime() async throws {
        let missing = temporaryPath()
        let notASocket = temporaryPath()
        try "not a socket".write(toFile: notASocket, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: notASocket) }
        for path in [missing, notASocket] {
            for _ in 0..<20 {
                do {
                    _ = try await ControlSocket.send(Data("{}".utf8), to: path, group: group)
                    Issue.record("a reply from \(path), where nothing serves")
                } catch let error as ControlSocket.Failure {
                    #expect(error.path == path)
                    #expect(error.reason.hasPrefix("cannot connect"), "\(error)")
                }
            }
        }
    }

    /// Defect: two daemons configured with one control socket both started, and the second
    /// took the first one's commands. A stale socket file (its process died) is replaced.
    @Test func aSocketServedByALiveProcessIsNotTakenOver() async throws {
        let path = temporaryPath()
        let first = try await ControlSocket.serve(at: path, group: group) { _ in Data("first".utf8) }
        do {
            let second = try await ControlSocket.serve(at: path, group: group) { _ in Data("second".utf8) }
            try await second.close()
            Issue.record("a second server took over a live control socket")
        } catch let error as ControlSocket.Failure {
            #expect(error.reason.contains("another running process"), "\(error)")
        }
        #expect(String(decoding: try await ControlSocket.send(Data("?".utf8), to: path, group: group), as: UTF8.self) == "first")
        try await first.close()
        // The first is gone; its socket file (if left) is stale, and a new server may take it.
        let third = try await ControlSocket.serve(at: path, group: group) { _ in Data("third".utf8) }
        #expect(String(decoding: try await ControlSocket.send(Data("?".utf8), to: path, group: group), as: UTF8.self) == "third")
        try await third.close()
    }

    /// A control path that names an ordinary file (a typo in a configuration) is refused, and
    /// the file is left as it was.
    @Test func aFileThatIsNotASocketIsNeverReplaced() async throws {
        let path = temporaryPath()
        try "precious".write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            let server = try await ControlSocket.serve(at: path, group: group) { _ in Data() }
            try await server.close()
            Issue.record("served over an ordinary file")
        } catch let error as ControlSocket.Failure {
            #expect(error.reason.contains("not a socket"), "\(error)")
        }
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "precious")
    }
}
