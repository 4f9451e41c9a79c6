import DNSTransport
import Foundation
import NIOPosix
import Testing

/// How many event loops a daemon starts (`EventLoops`): one per CPU the process may run on.
@Suite struct EventLoopsTests {
    /// The kernel's own account of the affinity mask, `Cpus_allowed_list: 0-3,6`.
    static func cpusAllowedByProc() throws -> Int {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") })
        let list = line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)
        return try list.split(separator: ",").reduce(0) { count, range in
            let bounds = try range.split(separator: "-").map { try #require(Int($0)) }
            return count + (bounds.count == 2 ? bounds[1] - bounds[0] + 1 : 1)
        }
    }

    @Test func theAffinityMaskIsReadAsTheKernelReportsIt() throws {
        #expect(EventLoops.allowedCPUs == (try Self.cpusAllowedByProc()))
    }

    @Test func oneLoopPerAllowedCPUUnlessAsked() {
        // Pinned to one CPU of two: one loop, not two taking turns.
        #expect(EventLoops.count(asked: nil, coreCount: 2, allowedCPUs: 1) == 1)
        // A cgroup quota below the mask: NIO's count stands.
        #expect(EventLoops.count(asked: nil, coreCount: 2, allowedCPUs: 8) == 2)
        // A mask that cannot be read: NIO's count.
        #expect(EventLoops.count(asked: nil, coreCount: 4, allowedCPUs: nil) == 4)
        // --threads wins either way.
        #expect(EventLoops.count(asked: 3, coreCount: 2, allowedCPUs: 1) == 3)
    }

    /// kmsd and kms-proxy refuse the same `--threads` values with the same line.
    @Test func threadsOutsideOneTo1024AreRefused() {
        #expect(EventLoops.refusal(threads: nil) == nil)
        #expect(EventLoops.refusal(threads: 1) == nil)
        #expect(EventLoops.refusal(threads: 1024) == nil)
        #expect(EventLoops.refusal(threads: 0) == "--threads: 0 is not between 1 and 1024")
        #expect(EventLoops.refusal(threads: 1025) == "--threads: 1025 is not between 1 and 1024")
    }

    /// The line both daemons print: the group's own count, and the option that sets it.
    @Test func theStartLineCountsTheGroupsLoops() async throws {
        let one = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let three = MultiThreadedEventLoopGroup(numberOfThreads: 3)
        #expect(EventLoops.summary(of: one, option: "kmsd --threads") == "loops      1 event loop (kmsd --threads)")
        #expect(EventLoops.summary(of: three, option: "kms-proxy run --threads")
            == "loops      3 event loops, each with its own UDP socket (kms-proxy run --threads)")
        try await one.shutdownGracefully()
        try await three.shutdownGracefully()
    }
}
