import DNSTransport
import DNSWire
import KMSClient
import Foundation
import KMSSettings
import KMSTestSupport
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

@testable import KMSProxy

/// Split DNS: the proxy answers every name, the hierarchy's through the KMS, the rest through
/// the resolvers, with a small cache.
@Suite struct SplitDNSTests {
    @Test func theMostSpecificZoneDecides() {
        let kms = Endpoint("127.0.0.1:5303")!
        let corp = Endpoint("10.0.0.53:53")!
        let resolver = Endpoint("9.9.9.9:53")!
        let table = Forwarding(
            hierarchy: ["xx."], kms: kms, forwardZones: [("corp.example.", [corp]), ("b.a.xx.", [corp])], resolvers: [resolver])
        #expect(table.route("hostb.c.a.xx.").isHierarchy)
        #expect(table.route("hostb.c.a.xx.").servers == [kms])
        #expect(table.route("XX.").isHierarchy)
        #expect(table.route("hosta.b.a.xx.").servers == [corp])  // more specific than xx.
        #expect(!table.route("hosta.b.a.xx.").isHierarchy)
        #expect(table.route("www.corp.example.").servers == [corp])
        #expect(table.route("www.example.com.").servers == [resolver])
        #expect(table.route("xxx.").servers == [resolver])  // a label, not a suffix
    }

    @Test func theCacheCountsTTLsDownAndKeepsNegativeAnswersForTheSOAMinimum() throws {
        let cache = AnswerCache()
        var query = DNSMessage.query(id: 7, name: "www.example.com.", type: .a)
        var answer = query.response()
        answer.answers = [ResourceRecord(name: "www.example.com.", ttl: 300, data: .a([10, 0, 0, 1]))]
        cache.store(answer, for: query, now: 1000)
        query.header.id = 8
        let hit = try #require(cache.answer(to: query, now: 1100))
        #expect(hit.header.id == 8)
        #expect(hit.answers.first?.ttl == 200)
        #expect(cache.answer(to: query, now: 1300) == nil)
        // Another spelling of the name hits, and gets its own spelling back (DNS 0x20); another
        // DO bit does not hit.
        cache.store(answer, for: query, now: 2000)
        let respelled = try #require(cache.answer(to: DNSMessage.query(id: 9, name: "WWW.Example.COM.", type: .a), now: 2001))
        #expect(respelled.questions.first?.name.wire == DomainName("WWW.Example.COM.").wire)
        #expect(respelled.answers.first?.name.wire == DomainName("WWW.Example.COM.").wire)
        var withDO = DNSMessage.query(id: 9, name: "www.example.com.", type: .a)
        withDO.edns = EDNS()
        withDO.edns!.dnssecOK = true
        #expect(cache.answer(to: withDO, now: 2001) == nil)
        // NXDOMAIN: kept for the SOA minimum (60 here, below the SOA's TTL of 900).
        let missing = DNSMessage.query(id: 10, name: "nowhere.example.com.", type: .a)
        var negative = missing.response(rcode: .nameError)
        let soaRDATA = DomainName("ns.example.com.").wire + DomainName("admin.example.com.").wire
            + [0, 0, 0, 1, 0, 0, 14, 16, 0, 0, 3, 132, 0, 9, 58, 128, 0, 0, 0, 60]
        negative.authorities = [ResourceRecord(name: "example.com.", ttl: 900, data: .other(.soa, soaRDATA))]
        cache.store(negative, for: missing, now: 3000)
        #expect(cache.answer(to: missing, now: 3059)?.rcode == .nameError)
        #expect(cache.answer(to: missing, now: 3061) == nil)
        // SERVFAIL is never kept.
        cache.store(missing.response(rcode: .serverFailure), for: missing, now: 4000)
        #expect(cache.answer(to: missing, now: 4001) == nil)
    }

    /// Full, the cache keeps what is asked for and replaces what is not, at once (it used to
    /// scan every entry for each answer stored past its capacity).
    @Test func aFullCacheKeepsTheAnswersAskedFor() throws {
        let cache = AnswerCache(capacity: 2)
        func query(_ name: DomainName) -> DNSMessage { DNSMessage.query(id: 1, name: name, type: .a) }
        func answer(_ name: DomainName) -> DNSMessage {
            var answer = query(name).response()
            answer.answers = [ResourceRecord(name: name, ttl: 300, data: .a([10, 0, 0, 1]))]
            return answer
        }
        for name in ["a.example.", "b.example."] as [DomainName] { cache.store(answer(name), for: query(name), now: 0) }
        #expect(cache.answer(to: query("a.example."), now: 1) != nil)
        cache.store(answer("c.example."), for: query("c.example."), now: 2)
        #expect(cache.count == 2)
        #expect(cache.answer(to: query("a.example."), now: 3) != nil, "the answer asked for was dropped")
        #expect(cache.answer(to: query("b.example."), now: 3) == nil)
        #expect(cache.answer(to: query("c.example."), now: 3) != nil)
    }

    /// A router's DNS on an IPv6 link-local address (`nameserver fe80::1%eth0`) is reached
    /// through its interface: asked with the scope it answers, asked without it the send fails.
    /// Over a real socket to this machine's own link-local address; skipped on a machine with
    /// none.
    @Test func aLinkLocalServerIsAskedThroughItsInterface() async throws {
        // An IPv6 link-local address of this machine (fe80::/10) and its interface.
        guard let (interface, address, _) = LocalNetworks.interfaces().first(where: { $0.address.isIPv6 && $0.address.bytes[0] == 0xFE && $0.address.bytes[1] & 0xC0 == 0x80 }) else {
            print("skipped aLinkLocalServerIsAskedThroughItsInterface: no interface here has an IPv6 link-local address")
            return
        }
        let group = MultiThreadedEventLoopGroup.singleton
        let server = try await DNSServer.bind(host: "::", port: 0, group: group, responder: ResponderBox(Resolver()))
        let client = try await DNSClient.make(group: group)
        try await afterwards({
            await server.close()
            await client.close()
        }) {
            let query = DNSMessage.query(id: 1, name: "www.example.test.", type: .a)
            let scoped = Endpoint(address: address, port: server.address.port!, scope: interface)
            let answer = try await client.query(query, server: try scoped.socketAddress(), timeout: .seconds(5))
            #expect(answer.rcode == .noError && answer.answers.count == 1, "\(scoped)")
            let unscoped = Endpoint(address: address, port: server.address.port!)
            await #expect(throws: (any Error).self, "\(unscoped) answered without its interface") {
                _ = try await client.query(query, server: try unscoped.socketAddress(), timeout: .seconds(2))
            }
            #expect(throws: EndpointError.self) { try Endpoint(address: address, port: 53, scope: "no-such-interface0").socketAddress() }
        }
    }

    /// A stock resolver's stand-in: answers A for www.example.test. and records what it saw.
    final class Resolver: DNSResponder {
        let seen = Mutex<[DNSMessage]>([])
        func respond(to request: DNSRequest) -> DNSReply {
            seen.withLock { $0.append(request.message) }
            var answer = request.message.response(rcode: .noError)
            answer.header.authenticData = request.message.header.authenticData
            answer.header.checkingDisabled = request.message.header.checkingDisabled
            answer.answers = [ResourceRecord(name: request.question.name, ttl: 120, data: .a([10, 1, 2, 3]))]
            return .reply(Reply(answer, answering: request.message))
        }
    }

    /// A proxy with no CUG rows in front of `resolvers` (the hierarchy's names to `kms`), serving
    /// DNS on an ephemeral 127.0.0.1 port.
    static func proxy(kms: Endpoint, resolvers: [Endpoint], client: DNSClient, timeout: TimeAmount, group: any EventLoopGroup) async throws -> DNSServer {
        let forwarding = Forwarding(hierarchy: ["xx."], kms: kms, forwardZones: [], resolvers: resolvers)
        let proxy = DNSProxy(
            forwarding: forwarding, client: client, cug: CUGTable(rows: []), pool: InterceptPool(addresses: [], lifetime: 1), poolV6: nil,
            fetchers: [:], timeout: timeout, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        return try await DNSServer.bind(host: "127.0.0.1", port: 0, group: group, responder: ResponderBox(proxy))
    }

    /// A client, and a proxy with no KMS in front of `resolvers` (loopback ports), for `body`;
    /// both closed after it.
    static func withProxy(
        resolvers: [SocketAddress], timeout: TimeAmount, _ body: (DNSClient, SocketAddress) async throws -> Void
    ) async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let client = try await DNSClient.make(group: group)
        let server = try await proxy(
            kms: Endpoint("127.0.0.1:9")!, resolvers: resolvers.map { Endpoint("127.0.0.1:\($0.port!)")! }, client: client, timeout: timeout,
            group: group)
        try await afterwards({
            await server.close()
            await client.close()
        }) {
            try await body(client, server.address)
        }
    }

    /// www.example.test. A with RD, as a stub asks it, through `proxy`.
    static func askForWWW(_ client: DNSClient, via proxy: SocketAddress) async throws -> DNSMessage {
        var query = DNSMessage.query(id: 1, name: "www.example.test.", type: .a)
        query.header.recursionDesired = true
        return try await client.query(query, server: proxy, timeout: .seconds(10))
    }

    /// A resolver that is up but never answers (a hung process, a firewall that drops).
    final class SilentResolver: DNSResponder {
        let asked = Mutex(0)
        func respond(to request: DNSRequest) -> DNSReply {
            asked.withLock { $0 += 1 }
            return .drop
        }
    }

    /// With one resolver, a query whose datagram is lost on the way is sent again within the
    /// proxy's time-out, as a stub resolver would, and the application gets its answer
    /// instead of SERVFAIL.
    @Test func aLostDatagramToTheOnlyResolverIsSentAgain() async throws {
        let resolverServer = try await DNSServer.bind(
            host: "127.0.0.1", port: 0, group: MultiThreadedEventLoopGroup.singleton, responder: ResponderBox(Resolver()))
        let relay = try await LossyRelay.start(to: resolverServer.address, dropping: 1)
        try await afterwards({
            await relay.close()
            await resolverServer.close()
        }) {
            try await Self.withProxy(resolvers: [relay.address], timeout: .seconds(3)) { client, proxy in
                let reply = try await Self.askForWWW(client, via: proxy)
                #expect(reply.rcode == .noError, "\(reply.extendedErrors)")
                #expect(reply.answers.first?.data == .a([10, 1, 2, 3]))
                #expect(relay.dropped == 1 && relay.seen.count == 2, "\(relay.seen.count) datagrams")
            }
        }
    }

    /// With the first resolver silent, the second is asked a second later, not after the
    /// proxy's whole time-out (20 s here): the stub (its own time-out 10 s here, 5 s in glibc)
    /// gets its answer. Asked strictly in turn, it never did.
    @Test func aSilentFirstResolverDoesNotHoldUpTheSecond() async throws {
        let group = MultiThreadedEventLoopGroup.singleton
        let silent = SilentResolver()
        let silentServer = try await DNSServer.bind(host: "127.0.0.1", port: 0, group: group, responder: ResponderBox(silent))
        let resolverServer = try await DNSServer.bind(host: "127.0.0.1", port: 0, group: group, responder: ResponderBox(Resolver()))
        try await afterwards({
            await resolverServer.close()
            await silentServer.close()
        }) {
            try await Self.withProxy(resolvers: [silentServer.address, resolverServer.address], timeout: .seconds(20)) { client, proxy in
                let reply = try await Self.askForWWW(client, via: proxy)
                #expect(reply.rcode == .noError)
                #expect(reply.answers.first?.data == .a([10, 1, 2, 3]))
                #expect(silent.asked.withLock { $0 } == 1, "the first resolver is still asked first")
            }
        }
        #expect(DNSProxy.stagger(timeout: .seconds(5), servers: 2) == .seconds(1))
        #expect(DNSProxy.stagger(timeout: .seconds(1), servers: 4) == .milliseconds(250))
    }

    @Test func namesOutsideTheHierarchyGoToTheResolversWithTheirBitsAndAreCached() async throws {
        let hierarchy = try await TestHierarchy()
        let resolver = Resolver()
        let resolverServer = try await DNSServer.bind(host: "127.0.0.1", port: 0, group: hierarchy.group, responder: ResponderBox(resolver))
        let client = try await DNSClient.make(group: hierarchy.group)
        let server = try await Self.proxy(
            kms: hierarchy.endpoints["b.a.xx."]!, resolvers: [Endpoint("127.0.0.1:9")!, Endpoint("127.0.0.1:\(resolverServer.address.port!)")!],
            client: client, timeout: .milliseconds(500), group: hierarchy.group)
        try await afterwards({
            await server.close()
            await resolverServer.close()
            await client.close()
            await hierarchy.shutdown()
        }) {
            // Nothing listens on the first resolver's port: the second answers, DO/AD/CD and EDNS
            // passed through.
            var query = DNSMessage.query(id: 1, name: "www.example.test.", type: .a)
            query.header.recursionDesired = true
            query.header.checkingDisabled = true
            query.header.authenticData = true
            query.edns = EDNS()
            query.edns!.dnssecOK = true
            let reply = try await client.query(query, server: server.address, timeout: .seconds(5))
            #expect(reply.rcode == .noError)
            #expect(reply.answers.first?.data == .a([10, 1, 2, 3]))
            #expect(reply.header.checkingDisabled && reply.header.authenticData)
            let seen = try #require(resolver.seen.withLock { $0.first })
            #expect(seen.edns?.dnssecOK == true && seen.header.checkingDisabled && seen.header.recursionDesired)
            // Asked again: from the cache, with the TTL counted (not above 120).
            let again = try await client.query(query, server: server.address, timeout: .seconds(5))
            #expect(again.answers.first?.data == .a([10, 1, 2, 3]))
            #expect((again.answers.first?.ttl ?? 999) <= 120)
            #expect(resolver.seen.withLock { $0.count } == 1)
            // A hierarchy name still goes to the KMS.
            var own = DNSMessage.query(id: 2, name: "hosta.b.a.xx.", type: .a)
            own.header.recursionDesired = true
            #expect(try await client.query(own, server: server.address, timeout: .seconds(5)).answers.first?.data == .a([127, 0, 0, 11]))
            #expect(resolver.seen.withLock { $0.count } == 1)
            // Every resolver down (nothing listens on their ports): SERVFAIL naming them, at
            // once, never a made-up answer.
            await resolverServer.close()
            var other = DNSMessage.query(id: 3, name: "mail.example.test.", type: .a)
            other.edns = EDNS()
            let failed = try await client.query(other, server: server.address, timeout: .seconds(5))
            #expect(failed.rcode == .serverFailure)
            #expect(failed.extendedErrors.first?.infoCode == .noReachableAuthority)
            #expect(failed.extendedErrors.first?.text.contains("127.0.0.1:9 unreachable: connection refused") == true, "\(failed.extendedErrors)")
        }
    }

    /// A resolver whose zone has service bindings: HTTPS with an `ipv4hint` (RFC 9460), and an
    /// ANY answer carrying A, HTTPS and TXT.
    final class ServiceResolver: DNSResponder {
        /// HTTPS 1 . alpn=h3 ipv4hint=10.1.2.3
        static let httpsRDATA: [UInt8] = [0, 1, 0, 0, 1, 0, 3, 2, 0x68, 0x33, 0, 4, 0, 4, 10, 1, 2, 3]
        func respond(to request: DNSRequest) -> DNSReply {
            let name = request.question.name
            var answer = request.message.response(rcode: .noError)
            let https = ResourceRecord(name: name, ttl: 120, data: .other(.https, Self.httpsRDATA))
            switch request.question.type {
            case .https: answer.answers = [https]
            case .any: answer.answers = [ResourceRecord(name: name, ttl: 120, data: .a([10, 1, 2, 3])), https, ResourceRecord(name: name, ttl: 120, data: .txt([Array("v=1".utf8)]))]
            default: break
            }
            return .reply(Reply(answer, answering: request.message))
        }
    }

    /// A group peer's service binding could send a browser to its real address in clear (the
    /// address hints) or over QUIC, which the encrypted path does not carry: the proxy answers
    /// a matched name's HTTPS with no data, and strips service bindings and addresses from
    /// any other answer for it. Other names keep theirs.
    @Test func aGroupPeersServiceBindingsAreWithheld() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let resolverServer = try await DNSServer.bind(host: "127.0.0.1", port: 0, group: group, responder: ResponderBox(ServiceResolver()))
        let client = try await DNSClient.make(group: group)
        let forwarding = Forwarding(
            hierarchy: ["xx."], kms: Endpoint("127.0.0.1:9")!, forwardZones: [],
            resolvers: [Endpoint(address: IPAddress("127.0.0.1")!, port: resolverServer.address.port!)])
        let cug = try CUGTable(
            file: try ConfigFile(path: "cug.conf", text: "*.friends.test  tls  default  AES-256-GCM\n"), identities: ["default"])
        let proxy = DNSProxy(
            forwarding: forwarding, client: client, cug: cug, pool: InterceptPool(addresses: [], lifetime: 1), poolV6: nil,
            fetchers: [:], timeout: .milliseconds(500), logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        let server = try await DNSServer.bind(host: "127.0.0.1", port: 0, group: group, responder: ResponderBox(proxy))
        try await afterwards({
            await server.close()
            await resolverServer.close()
            await client.close()
            try? await group.shutdownGracefully()
        }) {
            func ask(_ name: DomainName, _ type: RRType) async throws -> DNSMessage {
                var query = DNSMessage.query(id: 5, name: name, type: type)
                query.header.recursionDesired = true
                return try await client.query(query, server: server.address, timeout: .seconds(5))
            }
            let peer = try await ask("www.friends.test.", .https)
            #expect(peer.rcode == .noError && peer.answers.isEmpty, "\(peer.presentation)")
            let any = try await ask("www.friends.test.", .any)
            #expect(any.answers.map(\.type) == [.txt], "\(any.presentation)")
            // Not in the group: as the resolver said.
            let other = try await ask("www.example.test.", .https)
            #expect(other.answers.map(\.data) == [.other(.https, ServiceResolver.httpsRDATA)])
            #expect(try await ask("www.example.test.", .any).answers.count == 3)
        }
    }
}
