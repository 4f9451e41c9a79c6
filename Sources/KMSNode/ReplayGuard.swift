import DNSWire
import KMSProtocol
import Synchronization

/// Refuses a signed request whose `time` is outside the window, or whose nonce was already
/// seen within it, whoever signed it and whatever time it now carries (PROTOCOL.md section 4,
/// step 1). Nonces are 16 random bytes: two honest senders never share one.
///
/// A request first seen over UDP may come once more over TCP: that is the standard retry after
/// a truncated (TC=1) reply (RFC 7766), and it carries the same signed record, so the same
/// time. Any other repeat is a replay.
///
/// Memory is bounded: nonces are remembered with the second of their `time`. When the memory
/// is full the oldest second is forgotten and every request at or before it is refused as
/// stale from then on, so a forgotten nonce can never be replayed.
final class ReplayGuard: Sendable {
    enum Verdict: Equatable {
        case fresh
        case tooOld(skew: Int64)
        case tooNew(skew: Int64)
        case replayed
    }

    private struct Seen {
        let time: UnixTime
        var mayRetryOverTCP: Bool
    }

    private struct State {
        var seen: [Nonce: Seen] = [:]
        /// The nonces first seen with each `time`, to forget them when it leaves the window.
        var buckets: [UnixTime: [Nonce]] = [:]
        var floor: UnixTime = .min  // requests with time <= floor are refused

        mutating func forget(second: UnixTime) {
            for nonce in buckets.removeValue(forKey: second) ?? [] where seen[nonce]?.time == second {
                seen.removeValue(forKey: nonce)
            }
        }
    }

    private let state = Mutex(State())
    let window: Int64
    let capacity: Int

    init(window: Int64, capacity: Int) {
        self.window = window
        self.capacity = capacity
    }

    /// What `admit` would say, remembering nothing: checked before the signature is verified,
    /// so a stale or replayed request costs no crypto. (`admit` after the verify decides.)
    func precheck(nonce: Nonce, time: UnixTime, now: UnixTime, overTCP: Bool) -> Verdict {
        if time < now - window { return .tooOld(skew: now - time) }
        if time > now + window { return .tooNew(skew: time - now) }
        return state.withLock { state in
            if time <= state.floor { return .tooOld(skew: now - time) }
            if let seen = state.seen[nonce], !(seen.mayRetryOverTCP && overTCP && seen.time == time) { return .replayed }
            return .fresh
        }
    }

    /// `sender` names who signed it, for the refusal's text; it does not scope the nonce.
    func admit(sender: DomainName, nonce: Nonce, time: UnixTime, now: UnixTime, overTCP: Bool) -> Verdict {
        if time < now - window { return .tooOld(skew: now - time) }
        if time > now + window { return .tooNew(skew: time - now) }
        return state.withLock { state in
            // Forget what has left the window.
            if state.buckets.count > 2 * Int(window) + 2 || state.seen.count >= capacity {
                for second in state.buckets.keys where second < now - window { state.forget(second: second) }
            }
            if time <= state.floor { return .tooOld(skew: now - time) }
            if let seen = state.seen[nonce] {
                guard seen.mayRetryOverTCP, overTCP, seen.time == time else { return .replayed }
                state.seen[nonce]!.mayRetryOverTCP = false
                return .fresh
            }
            while state.seen.count >= capacity, let oldest = state.buckets.keys.min() {
                state.forget(second: oldest)
                state.floor = max(state.floor, oldest)
                if time <= state.floor { return .tooOld(skew: now - time) }
            }
            state.seen[nonce] = Seen(time: time, mayRetryOverTCP: !overTCP)
            state.buckets[time, default: []].append(nonce)
            return .fresh
        }
    }
}
