public import DNSTransport
public import DNSWire
import Foundation
public import KMSCrypto
public import KMSProtocol
import KMSSettings
public import NIOCore

/// Why a fetch gave no key. `kind` decides the exit code of `kms fetch`.
public struct FetchError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable {
        /// The authoritative KMS has no such host.
        case notFound
        /// Something did not verify: the answer was discarded.
        case verificationFailed
        /// The home KMS, or a KMS behind it, did not answer in time.
        case timeout
        /// The hierarchy refused or failed the request (REFUSED, SERVFAIL, ...).
        case refused
        /// No trust anchor covers the name, or the signer asked for is not an anchor.
        case noAnchor
    }

    public let kind: Kind
    public let message: String
    /// The hops seen before it failed, when `trace` was asked for.
    public var trace: [String] = []

    public init(kind: Kind, message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// A verified key, and how it was obtained.
public struct FetchResult: Sendable {
    public let countersignature: Countersignature
    public let fromCache: Bool
    /// What happened, hop by hop, when `trace` was asked for.
    public let trace: [String]
    /// Its place in the signer's transparency log, verified (a fetch with `audit`).
    public var proof: InclusionProof? = nil

    public var key: KMSCrypto.PublicKey { countersignature.key }
}

/// The host side of KMS1 (PROTOCOL.md section 5, the patent's figure 6).
public final class KeyFetcher: Sendable {
    public let configuration: HostConfiguration
    private let client: DNSClient
    private let cache: HostCache?

    public init(configuration: HostConfiguration, client: DNSClient) throws {
        self.configuration = configuration
        self.client = client
        cache = try configuration.cache.map { try HostCache(path: $0, maximumAge: UnixTime(configuration.cacheMaxAge)) }
    }

    /// Fetches and verifies `target`'s key. `signer` defaults to the closest trust anchor.
    /// With `audit`, the key is asked of the hierarchy (not the host cache) with its inclusion
    /// proof, and accepted only if the proof shows it in the signer's transparency log.
    public func fetch(
        _ target: DomainName, signer requested: DomainName? = nil, useCache: Bool = true, trace: Bool = false, audit: Bool = false
    ) async throws(FetchError) -> FetchResult {
        var lines: [String] = []
        do {
            return try await fetch(
                target.lowercased, signer: requested, useCache: useCache && !audit, trace: trace, audit: audit, lines: &lines)
        } catch {
            var error = error
            error.trace = lines
            throw error
        }
    }

    private func fetch(
        _ target: DomainName, signer requested: DomainName?, useCache: Bool, trace: Bool, audit: Bool, lines: inout [String]
    ) async throws(FetchError) -> FetchResult {
        func note(_ line: @autoclosure () -> String) { if trace { lines.append(line()) } }

        // Step 2: choose the signer (step 62 of the patent).
        let anchor = try signer(for: target, requested: requested)
        note("fetch \(target) as \(configuration.name), countersigner \(anchor.name)\(requested == nil ? " (closest trust anchor)" : "")")
        let now = UnixTime(Date().timeIntervalSince1970)

        // Step 1: the host's own cache, re-verified; past `revalidate` it is asked again first,
        // and used only if the hierarchy cannot be reached (a revoked key then reaches this
        // host within `revalidate`).
        var stale: Countersignature?
        if useCache, let cache {
            if let (countersignature, storedAt) = try? cache.lookup(target: target, signer: anchor.name, now: now) {
                do {
                    try CountersignaturePolicy(target: target, signer: anchor.name, signerKey: anchor.key).check(countersignature, at: now)
                    // Younger than `revalidate` and less than half its validity old: used as it is.
                    // Past half its validity, it is renewed early, so it never expires in use.
                    if Double(now - storedAt) < configuration.revalidate && !countersignature.isPastHalfLife(at: now) {
                        note("host cache: hit (stored \(now - storedAt) s ago), countersignature by \(anchor.name) verified")
                        return FetchResult(countersignature: countersignature, fromCache: true, trace: lines)
                    }
                    note("host cache: stored \(now - storedAt) s ago, past revalidate (\(Int(configuration.revalidate)) s) or half its validity: asking again")
                    stale = countersignature
                } catch {
                    note("host cache: entry discarded (\(error))")
                }
            } else {
                note("host cache: miss")
            }
        }
        do {
            return try await fetchFromHierarchy(target, anchor: anchor, now: now, trace: trace, audit: audit, lines: &lines)
        } catch where stale != nil && error.kind == .timeout {
            note("the hierarchy cannot be reached (\(error.message)); using the cached key")
            return FetchResult(countersignature: stale!, fromCache: true, trace: lines)
        } catch {
            if error.kind == .notFound { try? cache?.remove(target: target) }
            throw error
        }
    }

    private func fetchFromHierarchy(
        _ target: DomainName, anchor: TrustAnchors.Anchor, now: UnixTime, trace: Bool, audit: Bool, lines: inout [String]
    ) async throws(FetchError) -> FetchResult {
        func note(_ line: @autoclosure () -> String) { if trace { lines.append(line()) } }

        // Step 3: a signed inquiry to the home KMS.
        let home = configuration.home
        let (address, name, key) = (configuration.address, configuration.name, configuration.key)
        @Sendable func inquiry(at time: UnixTime) throws -> KMS1Exchange.Signed {
            let nonce = try Nonce.random()
            let record = try Inquiry(target: target, signer: anchor.name, ip: address, from: name, nonce: nonce, time: time)
                .record().signed(by: key)
            return (record, nonce)
        }
        let nonce: Nonce
        let record: KMSRecord
        do {
            (record, nonce) = try inquiry(at: now)
        } catch {
            throw FetchError(kind: .verificationFailed, message: "cannot sign the inquiry: \(error)")
        }
        note("query \(home)\(trace ? " over TCP" : ""): kms1:inquiry target=\(target) signer=\(anchor.name) nonce=\(nonce)")
        let started = Date()
        let timeoutMilliseconds = Int(configuration.timeout * 1000)
        let exchange = KMS1Exchange(client: client, timeout: .milliseconds(Int64(timeoutMilliseconds)))
        // A traced answer carries every hop's notes and rarely fits a UDP reply: ask over TCP.
        // Over UDP a lost datagram is asked again with a fresh inquiry (`again`).
        // Step 4 is `accept`: the reply checks for the nonce it answers, and the
        // countersignature checks (AnswerVerification).
        let (outcome, hops, _) = await exchange.ask(
            home, target: target, record: record, nonce: nonce, expecting: .answer, trace: trace, overTCP: trace || audit, audit: audit,
            again: { try? inquiry(at: UnixTime(Date().timeIntervalSince1970)) },
            accept: { record, nonce in
                try AnswerVerification(
                    reply: ReplyCheck(responder: home.name, responderKey: home.key, target: target, nonce: nonce), signer: anchor.name,
                    signerKey: anchor.key
                ).verify(record, now: UnixTime(Date().timeIntervalSince1970))
            })
        for (node, text) in HopTrace.notes(in: hops) { note("  \(node) \(text)") }
        let summary: String
        switch outcome {
        case .key: summary = "NOERROR"
        case .unresolved: summary = "NXDOMAIN (unresolved)"
        case .error(let rcode, _): summary = "\(rcode)"
        case .timeout: summary = "no reply"
        case .unreachable(let reason): summary = "unreachable (\(reason))"
        case .rejected: summary = "discarded"
        }
        note("reply from \(home.name) in \(Int(Date().timeIntervalSince(started) * 1000)) ms: \(summary)")
        switch outcome {
        case .key(let answer, let proof):
            note("answer signed by \(home.name): verified; nonce echoed")
            note("countersignature by \(anchor.name): verified with the trust anchor; valid \(answer.countersignature.notBefore.iso8601) to \(answer.countersignature.notAfter.iso8601)")
            if audit {
                guard let proof else {
                    throw FetchError(
                        kind: .verificationFailed,
                        message: "audit: \(home.name)'s answer carries no inclusion proof from \(anchor.name)'s log; key not accepted")
                }
                do { try proof.verify(answer.countersignature, signerKey: anchor.key) } catch {
                    throw FetchError(kind: .verificationFailed, message: "audit: \(error); key not accepted")
                }
                note("audit: in \(anchor.name)'s log at index \(proof.index) of \(proof.head.size); tree head signed \(proof.head.time.iso8601), verified with the trust anchor")
            }
            // Step 5: cache and use.
            try? cache?.store(answer.countersignature, at: now)
            var result = FetchResult(countersignature: answer.countersignature, fromCache: false, trace: lines)
            result.proof = audit ? proof : nil
            return result
        case .unresolved:
            throw FetchError(kind: .notFound, message: "\(target) has no registered key (unresolved, signed by \(home.name))")
        case .error(.nameError, _):
            throw FetchError(kind: .verificationFailed, message: "NXDOMAIN from \(home.name) without a kms1:unresolved record discarded")
        case .error(let rcode, let errors):
            let reasons = errors.map(\.text).joined(separator: "; ")
            let why = reasons.isEmpty ? "" : ": \(reasons)"
            // A KMS on the way that was silent (No Reachable Authority) or refused (Network
            // Error: nothing listens on its port): the hierarchy cannot be reached, as when
            // the home KMS itself is down, so a stale cached key may still serve.
            if errors.contains(where: { $0.infoCode == .noReachableAuthority || $0.infoCode == .networkError }) {
                throw FetchError(kind: .timeout, message: "\(home.name) answered \(rcode)\(why)")
            }
            throw FetchError(kind: .refused, message: "\(home.name) answered \(rcode)\(why)")
        case .timeout:
            throw FetchError(kind: .timeout, message: "home KMS \(home) did not answer within \(timeoutMilliseconds) ms")
        case .unreachable(let reason):
            throw FetchError(kind: .timeout, message: "home KMS \(home) unreachable: \(reason)")
        case .rejected(let reason):
            throw FetchError(kind: .verificationFailed, message: "answer from \(home.name) discarded: \(reason)")
        }
    }

    /// Fetches `target`'s key from DNS alone (docs/PROTOCOL.md, "Countersignatures in the
    /// zone"): asks a resolver (any resolver or secondary, RD set) for `_kms1.<target>` TXT and
    /// accepts a record only if its countersignature verifies with the closest trust anchor's
    /// key (or `signer`'s), by that signer, and is valid now. No KMS is needed on the way; the
    /// anchor is what makes the answer trustworthy, not the server that gave it.
    ///
    /// `resolvers` (a host's `/etc/resolv.conf`) are asked in turn as a stub asks them: one that
    /// does not answer, is down, or answers SERVFAIL or REFUSED is passed over for the next;
    /// NXDOMAIN or an answer ends the search.
    public func fetchViaDNS(
        _ target: DomainName, signer requested: DomainName? = nil, resolvers: [SocketAddress]
    ) async throws(FetchError) -> FetchResult {
        let target = target.lowercased
        let anchor = try signer(for: target, requested: requested)
        guard let owner = StaticCountersignature.owner(of: target) else {
            throw FetchError(kind: .notFound, message: "\(target) is too long to have static records")
        }
        var query = DNSMessage.query(id: 0, name: owner, type: .txt)
        query.header.recursionDesired = true
        var failures: [String] = []
        var refusals: [String] = []
        var answer: (reply: DNSMessage, resolver: SocketAddress)?
        for resolver in resolvers where answer == nil {
            do {
                // Sent again after a third and two thirds of the wait, as a stub resolver does.
                let timeout = TimeAmount.milliseconds(Int64(configuration.timeout * 1000))
                let reply = try await client.query(
                    query, server: resolver, timeout: timeout, resendAfter: DNSClient.steps(of: timeout, attempts: 3))
                if reply.rcode == .noError || reply.rcode == .nameError {
                    answer = (reply, resolver)
                } else {
                    refusals.append("resolver \(resolver.endpointText) answered \(reply.rcode)")
                }
            } catch {
                failures.append("resolver \(resolver.endpointText): \((error as? DNSClientError)?.reason ?? "\(error)")")
            }
        }
        guard let (reply, resolver) = answer else {
            let said = (failures + refusals).joined(separator: "; ")
            throw FetchError(kind: refusals.isEmpty ? .timeout : .refused, message: said.isEmpty ? "no resolver to ask" : said)
        }
        guard reply.rcode == .noError else {
            throw FetchError(kind: .notFound, message: "\(owner) does not exist (NXDOMAIN from \(resolver.endpointText))")
        }
        let now = UnixTime(Date().timeIntervalSince1970)
        var reasons: [String] = []
        var accepted: [Countersignature] = []
        for record in reply.answers where record.name == owner {
            guard case .txt(let strings) = record.data else { continue }
            do {
                guard let published = try StaticCountersignature(owner: owner, strings: strings) else { continue }
                let countersignature = published.countersignature
                guard countersignature.signer == anchor.name else {
                    reasons.append("a record by \(countersignature.signer), not \(anchor.name)")
                    continue
                }
                try CountersignaturePolicy(target: target, signer: anchor.name, signerKey: anchor.key).check(countersignature, at: now)
                accepted.append(countersignature)
            } catch {
                reasons.append("\(error)")
            }
        }
        // The latest of those that verify (a rotation may leave two for a while).
        guard let best = accepted.max(by: { $0.notBefore < $1.notBefore }) else {
            let why = reasons.isEmpty ? "no \(StaticCountersignature.tag) record" : reasons.joined(separator: "; ")
            throw FetchError(
                kind: reasons.isEmpty ? .notFound : .verificationFailed,
                message: "\(owner) from \(resolver.endpointText): nothing countersigned by \(anchor.name) verifies (\(why))")
        }
        try? cache?.store(best, at: now)
        return FetchResult(countersignature: best, fromCache: false, trace: [])
    }

    /// Step 2 (the patent's step 62): the anchor asked for, or the closest one above `target`.
    private func signer(for target: DomainName, requested: DomainName?) throws(FetchError) -> TrustAnchors.Anchor {
        if let requested {
            guard let found = configuration.anchors.anchor(named: requested) else {
                throw FetchError(kind: .noAnchor, message: "\(requested) is not one of this host's trust anchors")
            }
            return found
        }
        guard let found = configuration.anchors.closest(covering: target) else {
            throw FetchError(kind: .noAnchor, message: "no trust anchor covers \(target)")
        }
        return found
    }

}
