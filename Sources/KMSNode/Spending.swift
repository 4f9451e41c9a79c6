import DNSTransport
import DNSWire
import KMSProtocol
import NIOCore
import Synchronization

/// What each client may make this node spend, as live state (the settings are `Limits`).
///
/// Every check here runs before the work it guards and costs a hash lookup:
///
///   - a signature verify: the client's verify budget (per prefix over UDP, per address over
///     TCP), the claimed sender's budget, the client's failed-verify budget (a source that
///     sends bad signatures gets no more verifies until it earns them back), and the node's
///     failed-verify budget for all addresses nothing proved (a spoofed flood spread over
///     many prefixes, each within its own budget, sends every unproven client to TCP);
///   - an anonymous key answer (a fresh signature, maybe upstream work): the client's budget;
///     while a network is over it, its anonymous queries are sent to TCP undecoded;
///   - an upstream fetch: a cap on fetches in flight, for the node and for one client, with
///     identical fetches coalesced and "unresolved" remembered for a while; for anonymous
///     queries from addresses nothing proved, the node's budget of such fetches.
///
/// Over UDP a client over budget is told to come back over TCP (TC=1), or, as the slip says,
/// told nothing: a real client loses one round trip (or waits for its retry); a spoofed
/// source gets nothing larger than what it sent. Over TCP, where the address is proven, it is
/// refused with an extended error that says which budget.
final class Spending: Sendable {
    let limits: Limits
    private let verifies: RateLimiter<AddressPrefix>?
    private let senders: RateLimiter<DomainName>?
    private let failures: RateLimiter<AddressPrefix>?
    private let unprovenFailures: RateLimiter<Whole>?
    private let anonymous: RateLimiter<AddressPrefix>?
    private let unprovenFetches: RateLimiter<Whole>?
    private let inFlight = Mutex(InFlightCount())
    private let failuresCharged = Atomic(false)
    /// Set once some network went over its anonymous budget: until then admission does not
    /// look the client up in it.
    private let anonymousSpent = Atomic(false)
    /// Until when (uptime nanoseconds) the node's budget for unproven failures is spent: read
    /// for every UDP query at admission, so kept here rather than asked of the bucket's lock.
    private let unprovenSpentUntil = Atomic<UInt64>(0)
    let unresolved: NegativeCache
    let fetches = Coalescer<FetchKey, (KeyOutcome, Hops)>()
    let cookies: DNSCookies
    /// Which of the UDP queries turned away here get their TC=1 (`rate-slip`).
    let slip: Slip

    init(_ limits: Limits, cookies: DNSCookies) {
        self.limits = limits
        self.cookies = cookies
        slip = Slip(every: limits.slip)
        verifies = limits.verifyRate.map { RateLimiter(rate: $0) }
        senders = limits.senderRate.map { RateLimiter(rate: $0) }
        failures = limits.verifyFailures.map { RateLimiter(rate: $0) }
        unprovenFailures = limits.unprovenFailures.map { RateLimiter(rate: $0, capacity: 1) }
        anonymous = limits.anonymousRate.map { RateLimiter(rate: $0) }
        unprovenFetches = limits.unprovenFetches.map { RateLimiter(rate: $0, capacity: 1) }
        unresolved = NegativeCache(ttl: limits.negativeTTL)
    }

    /// The bucket a request is charged to: its address when TCP or a DNS cookie proved it,
    /// otherwise its network (`rate-prefix`).
    func account(of request: Request) -> AddressPrefix? {
        guard let address = request.client.ip else { return nil }
        return request.isProven ? Self.whole(address) : limits.prefix.prefix(of: address)
    }

    /// The bucket of one proven address: the whole of it.
    private static func whole(_ address: IPAddress) -> AddressPrefix { AddressPrefix(address, v4: 32, v6: 128) }

    /// Before verifying a signature claimed by `sender` (a registered host when `isHost`).
    func mayVerify(_ request: Request, sender: DomainName, isHost: Bool) -> Refusal? {
        guard let account = account(of: request) else { return nil }
        if let failures, !failures.allows(account) {
            return Refusal(.prohibited, budgets: self) { "too many bad signatures from \(account) (limit \(failures.rate)); no verifies for now" }
        }
        // Bad signatures from many unproven addresses at once: nobody unproven gets a verify
        // until the node's budget refills; TCP or a cookie (proven, so budgeted alone) still do.
        if !request.isProven, let unprovenFailures, !unprovenFailures.allows(.node) {
            return Refusal(.prohibited, budgets: self) {
                "too many bad signatures from unproven addresses (limit \(unprovenFailures.rate) for the node); ask over TCP or with a DNS cookie"
            }
        }
        // A neighbour KMS carries the traffic of a whole zone: only failures limit it.
        if isHost, let verifies, !verifies.take(for: account) {
            return Refusal(.prohibited, budgets: self) { "signed requests from \(account) over \(verifies.rate)" }
        }
        // The sender's budget is checked here but charged only once its signature verified,
        // so an impostor naming a host cannot spend that host's budget.
        if isHost, let senders, !senders.allows(sender) {
            return Refusal(.prohibited, budgets: self) { "signed requests from \(sender) over \(senders.rate)" }
        }
        return nil
    }

    /// A host's signature verified: it pays for it.
    func verified(host: DomainName) {
        senders?.charge(for: host)
    }

    /// The budget that turns a UDP query away before it is even decoded (`Admission`, step
    /// 3), or nil:
    ///   - its client's prefix is out of failed-verify budget (any query), unless a cookie
    ///     proves its address, which then has a budget of its own (a neighbour's bad
    ///     signatures are not its own);
    ///   - the node is out of its budget for unproven failures and the query is a signed
    ///     request (it carries a record) with no cookie that proves its address;
    ///   - its client's prefix is out of anonymous budget and the query is an unsigned TXT
    ///     query with no such cookie (RRL's slip, for the queries that budget is charged for).
    /// Either way the work it asks for would be refused, and a flood costs a walk over its
    /// bytes instead of a decode.
    func penalty(_ client: SocketAddress, query: ByteBuffer) -> Turnaway? {
        // Nothing charged yet (the usual state): no lock, no hash, not even the address.
        let failed = failuresCharged.load(ordering: .relaxed)
        let overAnonymous = anonymousSpent.load(ordering: .relaxed)
        guard failed || overAnonymous, let address = client.ip else { return nil }
        let prefix = limits.prefix.prefix(of: address)
        let prefixFailed = failed && failures?.isLimited(prefix) == true
        let unprovenSpent = failed && NIODeadline.now().uptimeNanoseconds < unprovenSpentUntil.load(ordering: .relaxed)
        let anonymousLimited = overAnonymous && anonymous?.isLimited(prefix) == true
        guard prefixFailed || unprovenSpent || anonymousLimited else { return nil }
        let shape = query.withUnsafeReadableBytes { WireShape(wire: $0) }
        if let cookie = shape.cookie, cookies.proves(cookie, address: address) {
            return prefixFailed && failures?.isLimited(Self.whole(address)) == true ? Turnaway(budget: .verify, carriesCookie: true) : nil
        }
        let carriesCookie = shape.cookie != nil
        if prefixFailed || (unprovenSpent && shape.carriesRecords) { return Turnaway(budget: .verify, carriesCookie: carriesCookie) }
        if anonymousLimited && !shape.carriesRecords && shape.questionType == .txt {
            return Turnaway(budget: .anonymous, carriesCookie: carriesCookie)
        }
        return nil
    }

    /// A query turned away undecoded: the budget that did it, and whether the query carries a
    /// DNS cookie (its client then always gets its TC=1, whatever the slip: `slips(carriesCookie:)`).
    struct Turnaway {
        enum Budget { case verify, anonymous }
        let budget: Budget
        let carriesCookie: Bool
    }

    /// Whether a query a budget turned away over UDP goes unanswered: the slip drops it,
    /// unless it carries a DNS cookie. A client that sends one is one that follows TC=1 at
    /// once and may never ask again over UDP (Countersign's own clients do not: a dropped
    /// query costs them their whole time-out); a forged flood that adds a cookie buys nothing
    /// but the TC=1 every query gets at `rate-slip 1`.
    func slips(carriesCookie: Bool) -> Bool {
        !carriesCookie && !slip.answers()
    }

    /// A signature did not verify: the source pays for it.
    func verifyFailed(_ request: Request) {
        guard let account = account(of: request) else { return }
        failuresCharged.store(true, ordering: .relaxed)
        if !request.isProven, let unprovenFailures {
            unprovenFailures.charge(for: .node)
            if let until = unprovenFailures.limitedUntil(.node) { unprovenSpentUntil.store(until, ordering: .relaxed) }
        }
        failures?.charge(for: account)
    }

    /// Before an anonymous key answer, a static countersignature or a log answer (the largest
    /// answers an unsigned query gets).
    func mayAnswerAnonymously(_ request: Request) -> Refusal? {
        guard let anonymous, let account = account(of: request), !anonymous.take(for: account) else { return nil }
        if !request.isProven { anonymousSpent.store(true, ordering: .relaxed) }
        return Refusal(.prohibited, budgets: self) { "anonymous answers to \(account) over \(anonymous.rate)" }
    }

    /// Before an upstream fetch for an anonymous query: over UDP from an address nothing
    /// proved, the node's `unproven-fetches` budget pays for it (a fetch costs a signature and
    /// a verify at every hop; random names from forged addresses ask for nothing else).
    func mayFetchAnonymously(_ request: Request) -> Refusal? {
        guard request.transport == .udp, !request.isProven, let unprovenFetches, !unprovenFetches.take(for: .node) else {
            return nil
        }
        return Refusal(.prohibited, budgets: self) {
            "upstream fetches for unproven addresses over \(unprovenFetches.rate) for the node; ask over TCP or with a DNS cookie"
        }
    }

    /// Before an upstream fetch for `request`: a ticket to give back when done, or nil when
    /// the node or this client already has as many in flight as allowed. A request `joining`
    /// an identical fetch under way holds a place under the node's cap (it is memory while it
    /// waits) but not under its client's, which counts the fetches a client makes the node do.
    func startFetch(for request: Request, joining: Bool = false) -> FetchTicket? {
        let account = joining ? nil : account(of: request)
        let admitted = inFlight.withLock { count -> Bool in
            guard count.total < limits.upstreamInFlight else { return false }
            if let account {
                guard count.byClient[account, default: 0] < limits.upstreamInFlightPerClient else { return false }
                count.byClient[account, default: 0] += 1
            }
            count.total += 1
            return true
        }
        return admitted ? FetchTicket(spending: self, account: account) : nil
    }

    fileprivate func finish(_ account: AddressPrefix?) {
        inFlight.withLock { count in
            count.total -= 1
            if let account {
                let left = count.byClient[account, default: 1] - 1
                count.byClient[account] = left > 0 ? left : nil
            }
        }
    }

    /// Upstream fetches now in flight (metrics, tests).
    var fetchesInFlight: Int { inFlight.withLock { $0.total } }

    /// The refusal for a fetch over the cap.
    func busy(_ request: Request) -> Refusal {
        Refusal(
            .notReady,
            "\(limits.upstreamInFlight) upstream fetches in flight here, or \(limits.upstreamInFlightPerClient) for \(account(of: request).map { "\($0)" } ?? "this client"); ask again shortly",
            budgets: nil)
    }
}

/// The key of a budget kept for the whole node.
private enum Whole: Hashable, Sendable { case node }

private struct InFlightCount {
    var total = 0
    var byClient: [AddressPrefix: Int] = [:]
}

/// One upstream fetch's place under the cap; `done()` gives it back (exactly once).
struct FetchTicket: Sendable {
    fileprivate let spending: Spending
    fileprivate let account: AddressPrefix?

    func done() { spending.finish(account) }
}

/// What makes two fetches the same: the same question to the same neighbour for the same
/// requester address.
struct FetchKey: Hashable, Sendable {
    let target: DomainName
    let signer: DomainName
    let ip: IPAddress
    let peer: DomainName
    let audit: Bool
}

/// Concurrent callers with the same key share one run of the work.
final class Coalescer<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private let pending = Mutex<[Key: Task<Value, Never>]>([:])

    /// The run for `key` under way now, if there is one.
    func running(_ key: Key) -> Task<Value, Never>? { pending.withLock { $0[key] } }

    /// The run for `key`: the one under way, or `work` started now.
    func start(_ key: Key, _ work: @escaping @Sendable () async -> Value) -> Task<Value, Never> {
        pending.withLock { table in
            if let running = table[key] { return running }
            // The task removes itself under the same lock, so never before it was added.
            let task = Task { [self] in
                let value = await work()
                _ = pending.withLock { $0.removeValue(forKey: key) }
                return value
            }
            table[key] = task
            return task
        }
    }
}

/// Names a neighbour said are unresolved, remembered for `ttl` seconds, in a bounded table.
final class NegativeCache: Sendable {
    let ttl: Double
    let capacity: Int
    private let entries = Mutex<[DomainName: UInt64]>([:])

    init(ttl: Double, capacity: Int = 100_000) {
        self.ttl = ttl
        self.capacity = capacity
    }

    func contains(_ name: DomainName, now: UInt64 = NIODeadline.now().uptimeNanoseconds) -> Bool {
        entries.withLock { table in
            guard let expiry = table[name] else { return false }
            if expiry > now { return true }
            table.removeValue(forKey: name)
            return false
        }
    }

    func insert(_ name: DomainName, now: UInt64 = NIODeadline.now().uptimeNanoseconds) {
        entries.withLock { table in
            if table.count >= capacity {
                table = table.filter { $0.value > now }
                table.trim(toAtMost: capacity / 2)
            }
            table[name] = now + UInt64(ttl * 1e9)
        }
    }

    func clear() { entries.withLock { $0.removeAll() } }
}
