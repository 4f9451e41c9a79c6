import DNSWire
import KMSProtocol
import Synchronization

/// Refuses a signed request whose `time` is outside the window, or whose (sender, nonce) was
/// already seen within it (PROTOCOL.md section 4, step 1).
///
/// A request first seen over UDP may come once more over TCP: that is the standard retry after
/// a truncated (TC=1) reply (RFC 7766), and it carries the same signed record. Any other
/// repeat is a replay.
///
/// Memory is bounded: nonces are kept in one bucket per second of their `time`. When the
/// memory is full the oldest second is forgotten and every request at or before it is refused
/// as stale from then on, so a forgotten nonce can never be replayed.
final class ReplayGuard: Sendable {
    enum Verdict: Equatable {
        case fresh
        case tooOld(skew: Int64)
        case tooNew(skew: Int64)
        case replayed
    }

    private struct Seen: Hashable {
        let sender: DomainName
        let nonce: Nonce
    }

    private struct State {
        /// Per second of `time`: the nonces seen, and whether a TCP retry is still allowed.
        var buckets: [UnixTime: [Seen: Bool]] = [:]
        var count = 0
        var floor: UnixTime = .min  // requests with time <= floor are refused
    }

    private let state = Mutex(State())
    let window: Int64
    let capacity: Int

    init(window: Int64, capacity: Int) {
        self.window = window
        self.capacity = capacity
    }

    func admit(sender: DomainName, nonce: Nonce, time: UnixTime, now: UnixTime, overTCP: Bool) -> Verdict {
        if time < now - window { return .tooOld(skew: now - time) }
        if time > now + window { return .tooNew(skew: time - now) }
        let seen = Seen(sender: sender, nonce: nonce)
        return state.withLock { state in
            // Forget what has left the window.
            if state.buckets.count > 2 * Int(window) + 2 || state.count >= capacity {
                for (second, bucket) in state.buckets where second < now - window {
                    state.count -= bucket.count
                    state.buckets.removeValue(forKey: second)
                }
            }
            if time <= state.floor { return .tooOld(skew: now - time) }
            if let mayRetry = state.buckets[time]?[seen] {
                guard mayRetry && overTCP else { return .replayed }
                state.buckets[time]![seen] = false
                return .fresh
            }
            while state.count >= capacity, let oldest = state.buckets.keys.min() {
                state.count -= state.buckets.removeValue(forKey: oldest)?.count ?? 0
                state.floor = max(state.floor, oldest)
                if time <= state.floor { return .tooOld(skew: now - time) }
            }
            state.buckets[time, default: [:]][seen] = !overTCP
            state.count += 1
            return .fresh
        }
    }
}
