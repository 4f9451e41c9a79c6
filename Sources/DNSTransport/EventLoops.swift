import CSystemShims
import Foundation
public import NIOCore

/// How many event loops a daemon serves on: one per CPU it may run on, as NSD's
/// `server-count`, Knot's `udp-workers` and Unbound's `num-threads` are sized.
///
/// NIO's own choice (`System.coreCount`) counts the machine's CPUs and a cgroup quota, not
/// the process's affinity mask. Under `taskset -c 1` or systemd's `CPUAffinity=1` it would
/// still start a loop per machine CPU, each with its own UDP socket (`SO_REUSEPORT`), and
/// the loops would take turns on the one CPU, a thread switch between read bursts: a kmsd
/// pinned to one CPU of two answered 97k A queries a second on two loops and 109k on one
/// (docs/BENCHMARKS.md, run H).
public enum EventLoops {
    /// The CPUs this process may run on (its affinity mask), nil if that cannot be read.
    public static var allowedCPUs: Int? {
        let count = countersign_allowed_cpus()
        return count > 0 ? Int(count) : nil
    }

    /// The most loops `--threads` may ask for (NIO's own ceiling).
    public static let maximum = 1024

    /// The loops to run: `asked` when given, otherwise NIO's count capped by the CPUs the
    /// process may run on.
    public static func count(asked: Int?, coreCount: Int, allowedCPUs: Int?) -> Int {
        if let asked { return asked }
        return max(1, min(coreCount, allowedCPUs ?? coreCount))
    }

    /// Why `--threads N` cannot be used, or nil when it can (both daemons check it so).
    public static func refusal(threads: Int?) -> String? {
        guard let threads, !(1...maximum).contains(threads) else { return nil }
        return "--threads: \(threads) is not between 1 and \(maximum)"
    }

    /// The line a daemon prints at start: how many loops `group` has, and the option that
    /// sets it (`loops      1 event loop (kmsd --threads)`).
    public static func summary(of group: any EventLoopGroup, option: String) -> String {
        let loops = Array(group.makeIterator()).count
        let count = loops == 1 ? "1 event loop" : "\(loops) event loops, each with its own UDP socket"
        return "loops      \(count) (\(option))"
    }

    /// Sizes NIO's singleton group, which every server and client of the process shares.
    /// Call it once, from `main`, before anything uses the group. `asked` (`--threads`) wins;
    /// without it, `NIO_SINGLETON_GROUP_LOOP_COUNT` set in the environment is left to NIO,
    /// and otherwise the group gets one loop per CPU the process may run on. (The daemons
    /// print the count they got from the group itself.)
    public static func sizeSingletonGroup(asked: Int?) {
        if asked == nil, ProcessInfo.processInfo.environment["NIO_SINGLETON_GROUP_LOOP_COUNT"] != nil { return }
        NIOSingletons.groupLoopCountSuggestion = count(asked: asked, coreCount: System.coreCount, allowedCPUs: allowedCPUs)
    }
}
