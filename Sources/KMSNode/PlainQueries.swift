import DNSTransport
import DNSWire
import KMSProtocol
import KMSSettings
import NIOCore

extension KMSNode {
    /// A query without a KMS record, answered as an authoritative server answers (docs/DESIGN.md,
    /// "The zone"): a question about a child zone asked without RD gets the delegation; A/AAAA
    /// come from the zone's address table; TXT follows the key path as an anonymous inquiry
    /// (plus any ordinary TXT data); SOA and NS at the apex; every negative answer of this zone
    /// carries its SOA (RFC 2308). With RD, a question of any other type about a name elsewhere
    /// in the hierarchy is asked of the neighbour towards it, so that a stub behind a proxy gets
    /// an answer for every type (MX, HTTPS, SOA...), not a referral or a refusal.
    func answer(plain request: Request) -> Step {
        let name = request.question.name
        let route = router.route(name)
        let type = request.question.type
        // DS at a child's apex is the parent's data (RFC 4035 section 3.1.4.1): this zone has
        // none, so NODATA with this zone's SOA, never a referral (validators ask it here).
        if type == Self.ds, case .child(let peer) = route, peer.name == name {
            metrics.count(.other)
            var message = request.message.response(rcode: .noError, authoritative: true)
            message.authorities = [dnsZone.negativeSOA]
            return .reply(Reply(message, answering: request.message))
        }
        if case .child(let peer) = route, !request.message.header.recursionDesired {
            metrics.count(.other)
            return .reply(referral(request, to: peer.name))
        }
        if type == Self.axfr || type == Self.ixfr {
            metrics.count(.other)
            return answerTransfer(request)
        }
        switch type {
        case .txt where route == .local && StaticCountersignature.target(ofOwner: name) != nil:
            metrics.count(.other)
            if let overBudget = reflectionBudget(request) { return overBudget }
            return .reply(answerStatic(request))
        case .txt where route == .local && LogQuery.isUnder(name, signer: zone):
            metrics.count(.other)
            if let overBudget = reflectionBudget(request) { return overBudget }
            guard let query = LogQuery(name: name, signer: zone) else { return .reply(negative(request)) }
            return .reply(answerLog(request, query))
        case .txt:
            metrics.count(.anonymous)
            return answerAnonymous(request, route: route)
        case .a, .aaaa:
            metrics.count(.address)
            return answerAddress(request, route: route)
        default:
            metrics.count(.other)
            switch route {
            case .local:
                return .reply(answerZoneData(request))
            case .outside:
                return refuse(request, ExtendedDNSError(.notAuthoritative, "\(name) is not in \(zone); this is not an open resolver"))
            case .parent(let peer) where !request.message.header.recursionDesired:
                return refuse(request, notBelow(name, askVia: peer))
            case .child(let peer), .parent(let peer):
                return forward(request, to: peer)
            }
        }
    }

    /// Static countersignatures and log entries cost no crypto, but they are the largest plain
    /// answers (a log answer up to 25 times its query). Sent over UDP to an address that
    /// neither TCP nor a cookie proved, which may be a forged source, they spend the anonymous
    /// budget of its network, whose TC=1 slip bounds what a reflection can send a victim.
    /// Proven clients (a log monitor reading the whole log over TCP) are not charged.
    private func reflectionBudget(_ request: Request) -> Step? {
        guard request.transport == .udp, !request.isProven, let overBudget = spending.mayAnswerAnonymously(request) else { return nil }
        metrics.throttledAnonymous.increment()
        return overBudget.step(for: request)
    }

    /// SOA, NS and other types for a name of this zone: the apex's SOA and NS (with glue), the
    /// name servers' addresses for ANY, otherwise NODATA or NXDOMAIN with the SOA.
    private func answerZoneData(_ request: Request) -> Reply {
        let name = request.question.name
        var message = request.message.response(rcode: .noError, authoritative: true)
        switch request.question.type {
        case .soa where name == zone:
            message.answers = [dnsZone.soa]
        case .ns where name == zone:
            message.answers = dnsZone.apexNS
            message.additionals = dnsZone.addresses(of: dnsZone.nameServers.filter { $0.name.isEqualOrSubdomain(of: zone) })
        case .any:
            // RFC 8482: one answer is enough for ANY; the apex gives its SOA, a host its addresses.
            if name == zone {
                message.answers = [dnsZone.soa]
            } else if let addresses = registry.addresses(of: name, ipv6: false), let v6 = registry.addresses(of: name, ipv6: true) {
                message.answers = (addresses + v6).map { ResourceRecord(name: name, ttl: 300, data: $0.rdata) }
            }
        default:
            break
        }
        return message.answers.isEmpty ? negative(request) : Reply(message, answering: request.message)
    }

    /// `_kms1.<host>` TXT: the host's published countersignatures (`StaticRecords`), as
    /// ordinary authoritative zone data.
    private func answerStatic(_ request: Request) -> Reply {
        let now = Self.now()
        guard let target = StaticCountersignature.target(ofOwner: request.question.name) else { return negative(request) }
        var message = request.message.response(rcode: .noError, authoritative: true)
        message.answers = staticRecords.countersignatures(of: target).compactMap {
            StaticCountersignature($0).record(ttl: staticTTL($0, now: now))
        }
        return message.answers.isEmpty ? negative(request) : Reply(message, answering: request.message)
    }

    /// The delegation to a child zone (RFC 1034 section 4.3.2, step 3b): NOERROR, not
    /// authoritative, the child's NS in the authority section and their glue.
    private func referral(_ request: Request, to child: DomainName) -> Reply {
        var message = request.message.response(rcode: .noError, authoritative: false)
        let (authority, glue) = dnsZone.referral(to: child)
        message.authorities = authority
        message.additionals = glue
        return Reply(message, answering: request.message)
    }

    /// NODATA or NXDOMAIN for a name of this zone, with the SOA (RFC 2308 sections 2.1, 2.2).
    func negative(_ request: Request) -> Reply {
        let exists = nameExists(request.question.name)
        var message = request.message.response(rcode: exists ? .noError : .nameError, authoritative: true)
        message.authorities = [dnsZone.negativeSOA]
        return Reply(message, answering: request.message)
    }

    /// PROTOCOL.md section 4: a plain TXT query follows the inquiry path with an empty nonce and
    /// the configured default signer, so `dig TXT hostb.c.a.xx` shows the answer.
    private func answerAnonymous(_ request: Request, route: Route) -> Step {
        let name = request.question.name
        let ordinary = (configuration.txt[name] ?? []).map {
            ResourceRecord(name: name, ttl: 300, data: .txt([$0]))
        }
        let isHost = route == .local && registry.contains(name)
        if !ordinary.isEmpty && !isHost {
            var message = request.message.response(rcode: .noError)
            message.answers = ordinary
            return .reply(Reply(message, answering: request.message))
        }
        // A name of this zone that exists but is no host (the apex, an empty non-terminal, a
        // name server): it has no key, and no TXT here, so NODATA (RFC 8020: NXDOMAIN would
        // say nothing exists below it).
        if route == .local && !isHost && nameExists(name) {
            return .reply(negative(request))
        }
        guard configuration.allowAnonymous else {
            return refuse(request, ExtendedDNSError(.prohibited, "anonymous key queries are refused here; send a signed kms1:inquiry"))
        }
        if route == .outside {
            return refuse(request, ExtendedDNSError(.notAuthoritative, "\(name) is not in the hierarchy under \(zone)"))
        }
        if let overBudget = spending.mayAnswerAnonymously(request) {
            metrics.throttledAnonymous.increment()
            return overBudget.step(for: request)
        }
        let client = request.client.ip ?? configuration.listen.address
        var hops = Hops(node: zone, enabled: traceAllowed(request))
        hops.note("anonymous query from \(client) for \(name), signer \(configuration.defaultSigner)")
        let step = resolveKey(
            target: name.lowercased, signer: configuration.defaultSigner, ip: client, route: route, hops: hops,
            wait: upstream.wait(for: request), audit: AuditRequest.isRequested(by: request.message))
        return keyReply(step, to: request, nonce: .empty, extra: ordinary)
    }

    /// A and AAAA: the zone's own hosts from memory; other names of the hierarchy from the
    /// child or parent when RD is set, as a stub resolver would get them (without RD, a child's
    /// name got its referral in `answer(plain:)`, and a name above is refused).
    private func answerAddress(_ request: Request, route: Route) -> Step {
        let question = request.question
        switch route {
        case .local:
            if let server = dnsZone.nameServer(named: question.name), registry.addresses(of: question.name, ipv6: false) == nil {
                var message = request.message.response(rcode: .noError)
                message.answers = dnsZone.addresses(of: [server], type: question.type)
                return .reply(message.answers.isEmpty ? negative(request) : Reply(message, answering: request.message))
            }
            guard let addresses = registry.addresses(of: question.name, ipv6: question.type == .aaaa) else {
                return .reply(negative(request))
            }
            guard !addresses.isEmpty else { return .reply(negative(request)) }
            var message = request.message.response(rcode: .noError)
            message.answers = addresses.map { ResourceRecord(name: question.name, ttl: 300, data: $0.rdata) }
            guard policy == nil else {
                addVerdict(to: &message, for: request)
                return .reply(Reply(message, answering: request.message))
            }
            return .cacheable(Reply(message, answering: request.message), query: request.bytes, transport: request.transport)
        case .outside:
            return refuse(request, ExtendedDNSError(.notAuthoritative, "\(question.name) is not in the hierarchy under \(zone); this is not an open resolver"))
        case .parent(let peer) where !request.message.header.recursionDesired:
            return refuse(request, notBelow(question.name, askVia: peer))
        case .child(let peer), .parent(let peer):
            return forward(request, to: peer)
        }
    }

    /// Why a name above this zone asked without RD is refused: a KMS does not look names up
    /// unless asked to.
    private func notBelow(_ name: DomainName, askVia peer: Peer) -> ExtendedDNSError {
        ExtendedDNSError(.notAuthoritative, "\(name) is not below \(zone) (set RD to have it looked up via \(peer.name))")
    }

    /// A question with RD about a name of a neighbour's side of the hierarchy, asked of that
    /// neighbour within the node's budget for upstream work.
    private func forward(_ request: Request, to peer: Peer) -> Step {
        guard let ticket = spending.startFetch(for: request) else {
            metrics.throttledUpstream.increment()
            return .reply(Replies.error(to: request.message, .serverFailure, spending.busy(request).error, querySize: request.size))
        }
        return .later { [self] in
            let reply = await ask(peer, for: request)
            ticket.done()
            return reply
        }
    }

    /// Asks the neighbour with RD set: below it, a child answers or asks its own child instead
    /// of referring; above, the parent looks the name up. A query never goes back the way it
    /// came (a name below a node is never routed to its parent), so nothing loops.
    private func ask(_ peer: Peer, for request: Request) async -> Reply {
        var query = DNSMessage.query(id: 0, name: request.question.name, type: request.question.type)
        query.header.recursionDesired = true
        do {
            let answer = try await upstream.client.query(query, server: try peer.endpoint.socketAddress(), timeout: upstream.timeout)
            var message = request.message.response(rcode: answer.rcode, authoritative: false)
            message.header.recursionAvailable = true
            message.answers = answer.answers
            message.authorities = answer.authorities
            if message.edns != nil { for error in answer.extendedErrors { message.addExtendedError(error) } }
            addVerdict(to: &message, for: request)
            return Reply(message, answering: request.message)
        } catch {
            let reason = (error as? DNSClientError).map { "\(peer.name) (\(peer.endpoint)): \($0.reason)" } ?? "\(error)"
            return Replies.error(to: request.message, .serverFailure, ExtendedDNSError(.noReachableAuthority, reason), querySize: request.size)
        }
    }

    /// Second embodiment: with a policy database, an address answer carries this node's signed
    /// `kms1:cug` verdict for the asking client, bound to the query by its `VerdictNonce`
    /// (PROTOCOL.md section 6; docs/PROTOCOL.md). A verdict with a nonce is signed for that
    /// query alone; one without (a plain `dig`) is reused within its second. A query whose
    /// nonce option is malformed gets no verdict, which a proxy refuses.
    private func addVerdict(to message: inout DNSMessage, for request: Request) {
        guard let policy, request.question.type.isAddress, message.rcode == .noError, !message.answers.isEmpty,
            let client = request.client.ip,
            let nonce = try? VerdictNonce.nonce(in: request.message)
        else { return }
        let name = request.question.name.lowercased
        let now = Self.now()
        let verdict = CUGVerdict(
            target: name, path: policy.current.row(client: client, name: name)?.settings, client: client, from: zone, nonce: nonce,
            time: now)
        let sign = { [configuration] in try? verdict.record().signed(by: configuration.key).resourceRecord() }
        let record = nonce.isEmpty ? verdicts.record(for: verdict, second: now, sign: sign) : sign()
        if let record { message.additionals.append(record) }
    }

    /// Whether a name of this zone exists: the apex, a registered host, a name with TXT data,
    /// a name server, or an ancestor of a host (an empty non-terminal).
    private func nameExists(_ name: DomainName) -> Bool {
        name == zone || registry.exists(name) || configuration.txt[name] != nil || dnsZone.nameServer(named: name) != nil
            || StaticCountersignature.target(ofOwner: name).map(registry.hasPublished) ?? false
    }
}
