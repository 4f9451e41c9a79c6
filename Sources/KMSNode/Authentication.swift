import DNSTransport
import DNSWire
import KMSCrypto
import KMSProtocol
import KMSSettings

/// Who sent a signed request, once its signature, time and nonce have been checked.
enum Sender: Sendable {
    case host(RegisteredHost)
    case parent(Peer)
    case child(Peer)

    var name: DomainName {
        switch self {
        case .host(let host): host.name
        case .parent(let peer), .child(let peer): peer.name
        }
    }
}

/// A request that does not parse: FORMERR with this extended error.
struct FormatError: Error {
    let step: Step
    init(_ request: Request, _ error: ExtendedDNSError) {
        step = .reply(Replies.error(to: request.message, .formatError, error, querySize: request.size))
    }
}

/// A request turned away before any work: REFUSED with this extended error, or, for a client
/// over one of its budgets (`Spending`) asking over UDP, TC=1 so it comes back over TCP, or
/// nothing, as that budget's slip says.
struct Refusal: Error {
    let code: ExtendedDNSError.InfoCode
    /// The budgets, for a budget's refusal: over UDP to an unproven address, it slips.
    let budgets: Spending?
    /// The reason, written only when it is sent or logged: a budget's refusals mostly go out
    /// as TC=1 without it, thousands a second under a flood.
    private let reason: @Sendable () -> String

    var error: ExtendedDNSError { ExtendedDNSError(code, reason()) }

    init(_ code: ExtendedDNSError.InfoCode, _ text: String, budgets: Spending? = nil) {
        self.init(code, budgets: budgets) { text }
    }

    init(_ code: ExtendedDNSError.InfoCode, budgets: Spending? = nil, _ reason: @escaping @Sendable () -> String) {
        self.code = code
        self.budgets = budgets
        self.reason = reason
    }

    /// The reply: REFUSED with the reason, or, for a budget over UDP from an address no cookie
    /// proved, TC=1 copied from the query's header and question (no encoding: a flood is
    /// answered at the cost of a copy) or, as the slip says (`Spending.slips`), nothing.
    func step(for request: Request) -> Step {
        if let budgets, !request.isProven {
            if budgets.slips(carriesCookie: request.cookie != .absent) { return .drop }
            if let truncated = Replies.truncated(raw: request.bytes) { return .wire(truncated) }
        }
        return .reply(Replies.error(to: request.message, .refused, error, querySize: request.size))
    }
}

extension KMSNode {
    /// PROTOCOL.md section 4, step 1: the sender must be a host registered in this zone, the
    /// parent or a child; its signature must verify; its time must be within the window and
    /// its nonce unseen.
    ///
    /// Everything that costs no crypto comes first: the sender's name, the time, the nonce
    /// (looked up, not yet remembered), the client's budgets (`Spending`). Only then the
    /// verify; a failed one is charged to the client. The nonce is remembered only after the
    /// signature verified, so unauthenticated traffic cannot fill the nonce memory.
    func authenticate(_ record: KMSRecord, from: DomainName, nonce: Nonce, time: UnixTime, _ request: Request) -> Result<Sender, Refusal> {
        let overTCP = request.transport == .tcp
        let sender: Sender
        if let parent = configuration.parent, parent.name == from {
            sender = .parent(parent)
        } else if let child = configuration.children.first(where: { $0.name == from }) {
            sender = .child(child)
        } else if case .local = router.route(from), let host = registry[from] {
            sender = .host(host)
        } else {
            return .failure(Refusal(.prohibited, "unknown sender \(from): not a host of \(zone), its parent or a child"))
        }
        guard !nonce.isEmpty else {
            return .failure(Refusal(.invalidData, "a signed request needs a nonce"))
        }
        let now = Self.now()
        if let refusal = refusal(replay.precheck(nonce: nonce, time: time, now: now, overTCP: overTCP), from: from) {
            return .failure(refusal)
        }
        let key: PublicKey
        let isHost: Bool
        switch sender {
        case .host(let host): (key, isHost) = (host.key, true)
        case .parent(let peer), .child(let peer): (key, isHost) = (peer.key, false)
        }
        if let overBudget = spending.mayVerify(request, sender: from, isHost: isHost) {
            metrics.throttled.increment()
            return .failure(overBudget)
        }
        do { try record.verifySignature(by: key, signer: from) } catch {
            spending.verifyFailed(request)
            return .failure(Refusal(.dnssecBogus, "bad signature: the \(record.tag) is not signed by \(from)'s key"))
        }
        if isHost { spending.verified(host: from) }
        if let refusal = refusal(replay.admit(sender: from, nonce: nonce, time: time, now: now, overTCP: overTCP), from: from) {
            return .failure(refusal)
        }
        return .success(sender)
    }

    private func refusal(_ verdict: ReplayGuard.Verdict, from: DomainName) -> Refusal? {
        let window = Int64(configuration.replayWindow)
        switch verdict {
        case .fresh:
            return nil
        case .tooOld(let skew):
            return Refusal(.signatureExpired, "stale time: \(skew) s in the past (window ±\(window) s)")
        case .tooNew(let skew):
            return Refusal(.signatureNotYetValid, "stale time: \(skew) s in the future (window ±\(window) s)")
        case .replayed:
            return Refusal(.prohibited, "replay: nonce from \(from) already seen")
        }
    }

    /// Reads a signed request's record, whose `target=` must be the question (`target` TXT).
    func parse<Record>(
        _ record: KMSRecord, _ request: Request, as make: (KMSRecord) throws(ProtocolError) -> Record,
        target: KeyPath<Record, DomainName>
    ) -> Result<Record, FormatError> {
        let parsed: Record
        do { parsed = try make(record) } catch {
            return .failure(FormatError(request, ExtendedDNSError(.invalidData, "\(error)")))
        }
        guard parsed[keyPath: target] == request.question.name, request.question.type == .txt else {
            return .failure(FormatError(request, ExtendedDNSError(
                .invalidData, "the question must be \(parsed[keyPath: target]) TXT, as target= says")))
        }
        return .success(parsed)
    }

    /// Requests travel up until a zone contains the target, then down. A request that came
    /// down from the parent never goes back up, and one from a child never goes back to it.
    func loopsBack(_ route: Route, to sender: Sender) -> Bool {
        switch (route, sender) {
        case (.parent, .parent): true
        case (.child(let peer), .child(let from)): peer.name == from.name
        default: false
        }
    }
}
