import DNSTransport
import DNSWire
import Foundation
import KMSCrypto
import KMSTestSupport
import Logging
import NIOCore
import NIOPosix
import Synchronization
import KMSClient
import KMSProtocol
import KMSSettings
import Testing

@testable import KMSProxy

/// A TCP server standing for host B's application: answers "echo:" + what it got.
final class EchoServer: Sendable {
    let channel: any Channel
    let received = Mutex<[UInt8]>([])
    var port: Int { channel.localAddress!.port! }

    init(host: String) async throws {
        let box = Box()
        channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Echo(box: box)) }
            }
            .bind(host: host, port: 0).get()
        box.server.withLock { $0 = self }
    }

    final class Box: Sendable { let server = Mutex<EchoServer?>(nil) }

    final class Echo: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let box: Box
        init(box: Box) { self.box = box }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = unwrapInboundIn(data)
            box.server.withLock { $0 }?.received.withLock { $0 += bytes.readableBytesView }
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "echo:" + String(buffer: bytes))), promise: nil)
        }
    }
}

/// A TCP server standing for an application that reads a whole request, up to the end of its
/// input (the client's half-close), then answers "got N bytes" and closes.
func countingServer(host: String) async throws -> any Channel {
    final class Count: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        var count = 0
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { count += unwrapInboundIn(data).readableBytes }
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            guard case ChannelEvent.inputClosed? = event as? ChannelEvent else { return }
            let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
            context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "got \(count) bytes"))).whenComplete { _ in
                bound.value.close(promise: nil)
            }
        }
    }
    return try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .childChannelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Count()) }
        }
        .bind(host: host, port: 0).get()
}

/// Sends `text`, closes the sending direction, and reads the reply until the server closes.
func sendThenHalfClose(_ text: String, host: String, port: Int) async throws -> String {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .channelOption(ChannelOptions.allowRemoteHalfClosure, value: true)
        .connect(host: host, port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                    wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
            }
        }
    // If the half-close never arrives the server never answers: give up after 10 s (and fail).
    let guardTimer = channel.channel.eventLoop.scheduleTask(in: .seconds(10)) { channel.channel.close(promise: nil) }
    defer { guardTimer.cancel() }
    return try await channel.executeThenClose { inbound, outbound in
        try await outbound.write(ByteBuffer(string: text))
        outbound.finish()
        var got = ""
        for try await chunk in inbound { got += String(buffer: chunk) }
        return got
    }
}

/// Connects, sends, and returns what comes back before the connection closes or `timeout`.
func exchange(_ text: String, host: String, port: Int, timeout: TimeAmount = .seconds(5)) async throws -> String {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: host, port: port) { channel in
            channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
        }
    return try await channel.executeThenClose { inbound, outbound in
        try await outbound.write(ByteBuffer(string: text))
        let deadline = ContinuousClock.now + .milliseconds(timeout.nanoseconds / 1_000_000)
        var got = ""
        var iterator = inbound.makeAsyncIterator()
        while ContinuousClock.now < deadline, !got.hasSuffix(text) {
            guard let chunk = try await iterator.next() else { break }
            got += String(buffer: chunk)
        }
        return got
    }
}

@Suite struct ProxyIntegrationTests {
    struct Setup {
        let hierarchy: TestHierarchy
        let server: EchoServer
        let proxyA: ProxyService
        let proxyB: ProxyService

        func resolve(_ name: DomainName, type: RRType = .a) async throws -> DNSMessage {
            var query = DNSMessage.query(id: 1, name: name, type: type)
            query.header.recursionDesired = true  // as a stub resolver asks
            return try await hierarchy.client.query(query, server: proxyA.dnsAddress, timeout: .seconds(10))
        }

        func shutdown() async {
            await proxyA.stop()
            await proxyB.stop()
            try? await server.channel.close()
            await hierarchy.shutdown()
        }
    }

    /// Host B (127.0.0.12): an application on 127.0.0.12 and a receiving endpoint letting in
    /// `inbound` callers. Host A (127.0.0.11): a proxy whose CUG table says `*.c.a.xx.`.
    func setUp(
        inbound: String = "*.b.a.xx.", rotateHostB: Bool = false, anchorsA: [DomainName] = ["xx."], extraPort: Int? = nil,
        extraA: String = "", extraB: String = ""
    ) async throws -> Setup {
        let hierarchy = try await TestHierarchy()
        let server = try await EchoServer(host: "127.0.0.12")
        let ports = [server.port] + (extraPort.map { [$0] } ?? [])
        let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
        let group = MultiThreadedEventLoopGroup.singleton
        let hostB = try hierarchy.hostConfiguration("hostb.c.a.xx.")
        let cugB = try hierarchy.write("", to: "cug-b.conf")
        let inboundB = try hierarchy.write("\(inbound) \(ports.map(String.init).joined(separator: " "))\n", to: "inbound-b.conf")
        let proxyB = try await ProxyService.start(
            try ProxyConfiguration(path: try hierarchy.write("""
                dns 127.0.0.12:0
                identity default \(hostB)
                cug \(cugB)
                pool 127.101.0.1 2
                endpoint 127.0.0.12:0
                inbound \(inboundB)
                forward 127.0.0.12
                \(extraB)
                """, to: "proxy-b.conf")), group: group, logger: logger)
        if rotateHostB {
            // The hierarchy now vouches for another key than the one B's endpoint presents.
            try hierarchy.nodes["c.a.xx."]!.register(
                name: "hostb.c.a.xx.", key: try PrivateKey(generating: .ed25519).publicKey, addresses: [IPAddress("127.0.0.12")!])
        }
        let hostA = try hierarchy.hostConfiguration("hosta.b.a.xx.", anchors: anchorsA)
        let cugA = try hierarchy.write("*.c.a.xx. tls default AES-256-GCM\n", to: "cug-a.conf")
        let poolBase = Int.random(in: 1...250)
        let proxyA = try await ProxyService.start(
            try ProxyConfiguration(path: try hierarchy.write("""
                dns 127.0.0.11:0
                upstream \(hierarchy.endpoints["b.a.xx."]!)
                identity default \(hostA)
                cug \(cugA)
                pool 127.100.\(poolBase).1 4
                lifetime 120s
                ports \(ports.map(String.init).joined(separator: " "))
                intercept-bind each
                tunnel-port \(proxyB.endpointAddress!.port!)
                \(extraA)
                """, to: "proxy-a.conf")), group: group, logger: logger)
        return Setup(hierarchy: hierarchy, server: server, proxyA: proxyA, proxyB: proxyB)
    }

    @Test func aCUGNameIsCarriedEncryptedToHostB() async throws {
        let setup = try await setUp()
        try await afterwards({ await setup.shutdown() }) {
            let reply = try await setup.resolve("hostb.c.a.xx.")
            #expect(reply.rcode == .noError)
            guard case .a(let bytes)? = reply.answers.first?.data, let intercept = IPAddress(bytes: bytes) else {
                Issue.record("no intercept address: \(reply.presentation)")
                return
            }
            #expect(intercept.description.hasPrefix("127.100."))
            #expect(intercept.description != "127.0.0.12")  // never the real address
            #expect(reply.answers[0].ttl <= 120)
            // The same peer keeps its address.
            #expect(try await setup.resolve("hostb.c.a.xx.").answers.first?.data == reply.answers[0].data)

            let answer = try await exchange("hello B", host: intercept.description, port: setup.server.port)
            #expect(answer == "echo:hello B")
            #expect(setup.server.received.withLock { String(decoding: $0, as: UTF8.self) } == "hello B")
            let status = setup.proxyA.status()
            #expect(status.mappings.first?.peer == "hostb.c.a.xx.")
            #expect(status.mappings.first?.path.contains("AES-256-GCM") == true)
        }
    }

    @Test func halfCloseCrossesTheTunnelBothWays() async throws {
        let counting = try await countingServer(host: "127.0.0.12")
        defer { counting.close(promise: nil) }
        let setup = try await setUp(extraPort: counting.localAddress!.port!)
        try await afterwards({ await setup.shutdown() }) {
            let reply = try await setup.resolve("hostb.c.a.xx.")
            guard case .a(let bytes)? = reply.answers.first?.data, let intercept = IPAddress(bytes: bytes) else {
                Issue.record("no intercept address: \(reply.presentation)")
                return
            }
            // The server answers only once its input has ended: the client's half-close must travel
            // through the tunnel (TCP FIN → TLS close_notify → TCP FIN), and the answer must still
            // come back the other way.
            let answer = try await sendThenHalfClose(String(repeating: "x", count: 100_000), host: intercept.description, port: counting.localAddress!.port!)
            #expect(answer == "got 100000 bytes")
        }
    }

    /// A caller that completes the TLS handshake and then says nothing holds B's endpoint no
    /// longer than its time-out: the handshake and the header line share one deadline.
    @Test func aCallerThatSendsNoHeaderIsClosedAtTheTimeOut() async throws {
        let setup = try await setUp(extraB: "timeout 1s")
        try await afterwards({ await setup.shutdown() }) {
            let keyB = try #require(setup.hierarchy.keys["hostb.c.a.xx."]).publicKey
            let context = try TLSContext(
                role: .client, identity: try TLSIdentity(name: "hosta.b.a.xx.", key: try PrivateKey(generating: .ed25519)))
            let started = ContinuousClock.now
            let caller = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(to: try #require(setup.proxyB.endpointAddress)) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try TLSChannel.wrap(
                            channel, connection: try TLSConnection(context: context, pinnedKey: keyB, serverName: "hostb.c.a.xx."), isClient: true)
                    }
                }
            // The test's own limit, far past B's.
            let guardTimer = caller.channel.channel.eventLoop.scheduleTask(in: .seconds(10)) { caller.channel.channel.close(promise: nil) }
            defer { guardTimer.cancel() }
            _ = try await caller.handshake.get()
            try await caller.channel.executeThenClose { inbound, _ in
                for try await _ in inbound {}
            }
            let held = ContinuousClock.now - started
            #expect(held < .seconds(6), "B held a silent caller for \(held)")
        }
    }

    /// `dns-allow`: a client outside it is REFUSED with the reason, before anything is looked
    /// up; one inside it is answered. Without it, this host and its networks may ask.
    @Test func onlyTheClientsDnsAllowNamesAreAnswered() async throws {
        let setup = try await setUp(extraA: "dns-allow 127.0.0.99 10.0.0.0/8")
        try await afterwards({ await setup.shutdown() }) {
            #expect(setup.proxyA.summary.contains { $0.hasPrefix("clients    127.0.0.99/32 10.0.0.0/8 (dns-allow)") }, "\(setup.proxyA.summary)")
            var asked = DNSMessage.query(id: 7, name: "example.c.a.xx.", type: .a)
            asked.header.recursionDesired = true
            let query = try asked.wire()
            let outside = try DNSMessage(wire: try #require(try await RawUDP.exchange(query, with: setup.proxyA.dnsAddress, from: "127.0.0.1")))
            #expect(outside.rcode == .refused && outside.extendedErrors.first?.infoCode == .prohibited, "\(outside.rcode)")
            #expect(outside.extendedErrors.first?.text.contains("dns-allow") == true)
            let inside = try DNSMessage(wire: try #require(try await RawUDP.exchange(query, with: setup.proxyA.dnsAddress, from: "127.0.0.99")))
            #expect(inside.rcode == .nameError, "\(inside.rcode) \(inside.extendedErrors.map(\.text))")
        }
        // The default: this host (loopback) and the networks of its interfaces.
        #expect(IPAddress("127.0.0.1")!.isIn(LocalNetworks.current()) && IPAddress("::1")!.isIn(LocalNetworks.current()))
        #expect(!LocalNetworks.current().contains { $0.length == 0 }, "the default lets everyone in")
    }

    @Test func aBrokenDnsAllowNamesItsLine() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("dns-allow-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("proxy.conf").path
        try "dns 127.0.0.1:5300\ndns-allow 10.0.0.0/33\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(throws: ConfigError.self) { try ProxyConfiguration(path: path) }
        do { _ = try ProxyConfiguration(path: path) } catch {
            #expect("\(error)" == "\(path):2: dns-allow: '10.0.0.0/33' is not ADDRESS/LENGTH with a length of 0-32", "\(error)")
        }
    }

    @Test func aNonCUGNameGetsItsRealAddress() async throws {
        let setup = try await setUp()
        try await afterwards({ await setup.shutdown() }) {
            var query = DNSMessage.query(id: 1, name: "hosta.b.a.xx.", type: .a)
            query.header.recursionDesired = true
            let reply = try await setup.hierarchy.client.query(query, server: setup.proxyA.dnsAddress, timeout: .seconds(10))
            #expect(reply.answers.first?.data == .a([127, 0, 0, 11]))
            #expect(setup.proxyA.status().mappings.isEmpty)
            // The same over TCP.
            let overTCP = try await setup.hierarchy.client.queryOverTCP(query, server: setup.proxyA.dnsAddress, timeout: .seconds(10))
            #expect(overTCP.answers.first?.data == .a([127, 0, 0, 11]))
        }
    }

    /// Ways the connection to host B must end without carrying anything: the hierarchy vouches
    /// for another key than the one B's endpoint presents (A's pinned TLS fails), A is not in
    /// B's inbound table (B refuses), or B's endpoint is down (the connect fails; this one used
    /// to crash the proxy with a leaked promise).
    enum Refusal: String, CaseIterable, Sendable { case wrongPeerKey, callerOutsideInboundCUG, peerEndpointDown }

    @Test(arguments: Refusal.allCases)
    func theConnectionIsRefused(_ refusal: Refusal) async throws {
        let setup = try await setUp(
            inbound: refusal == .callerOutsideInboundCUG ? "*.elsewhere.xx." : "*.b.a.xx.", rotateHostB: refusal == .wrongPeerKey)
        try await afterwards({ await setup.shutdown() }) {
            if refusal == .peerEndpointDown { await setup.proxyB.stop() }
            let reply = try await setup.resolve("hostb.c.a.xx.")
            guard case .a(let bytes)? = reply.answers.first?.data, let intercept = IPAddress(bytes: bytes) else {
                Issue.record("no intercept address: \(reply.presentation)")
                return
            }
            for _ in 0..<3 {
                let answer = (try? await exchange("secret", host: intercept.description, port: setup.server.port)) ?? ""
                #expect(answer.isEmpty)
            }
            #expect(setup.server.received.withLock { $0.isEmpty })
            // The proxy goes on serving every application.
            let other = try await setup.resolve("hosta.b.a.xx.")
            #expect(other.answers.first?.data == .a([127, 0, 0, 11]))
            #expect(try await setup.resolve("hostb.c.a.xx.").answers.first?.data == reply.answers.first?.data)
        }
    }

    /// SIGHUP: the CUG table is read again; a name the new table matches is encrypted from
    /// then on, and live mappings stay.
    @Test func reloadPutsANewCUGTableInForce() async throws {
        let setup = try await setUp()
        try await afterwards({ await setup.shutdown() }) {
            let before = try await setup.resolve("hostb.c.a.xx.")
            #expect(setup.proxyA.status().mappings.count == 1)
            #expect(try await setup.resolve("hosta.b.a.xx.").answers.first?.data == .a([127, 0, 0, 11]))
            _ = try setup.hierarchy.write("hosta.b.a.xx. tls default AES-256-GCM\n*.c.a.xx. tls default AES-256-GCM\n", to: "cug-a.conf")
            let lines = setup.proxyA.reload()
            #expect(lines.first == "cug: 2 rows", "\(lines)")
            // hosta.b.a.xx. is now a group peer: no more its real address.
            let after = try await setup.resolve("hosta.b.a.xx.")
            #expect(after.answers.first?.data != .a([127, 0, 0, 11]), "\(after.presentation)")
            #expect(try await setup.resolve("hostb.c.a.xx.").answers.first?.data == before.answers.first?.data)
            // A broken table keeps the one in force.
            _ = try setup.hierarchy.write("*.c.a.xx. tls default DES\n", to: "cug-a.conf")
            #expect(setup.proxyA.reload().first?.hasPrefix("kept the tables in force") == true)
            #expect(setup.proxyA.dnsProxy.cug.value.rows.count == 2)
        }
    }

    /// Issue 11: host B's key is rotated while A has it cached at every level and a tunnel
    /// pinned to it is open. A's key watch sees the new key, closes that tunnel (never letting a
    /// byte through in clear), and the next connection is pinned to the new key: refused while
    /// B's endpoint still shows the old one, carried once B shows the new one.
    @Test func aRotatedPeerKeyClosesItsTunnelsAndTheNextIsPinnedToTheNewKey() async throws {
        let setup = try await setUp()
        var restartedB: ProxyService?
        try await afterwards({
            await restartedB?.stop()
            await setup.shutdown()
        }) {
            let reply = try await setup.resolve("hostb.c.a.xx.")
            guard case .a(let bytes)? = reply.answers.first?.data, let intercept = IPAddress(bytes: bytes) else {
                Issue.record("no intercept address: \(reply.presentation)")
                return
            }
            #expect(await setup.proxyA.refreshKeys().isEmpty)  // nothing changed yet
            let application = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: intercept.description, port: setup.server.port) { channel in
                    channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
                }
            try await application.executeThenClose { inbound, outbound in
                var iterator = inbound.makeAsyncIterator()
                try await outbound.write(ByteBuffer(string: "one"))
                var got = ""
                while !got.hasSuffix("one"), let chunk = try await iterator.next() { got += String(buffer: chunk) }
                #expect(got == "echo:one")
                // `kms-proxy status`: the tunnel, its pinned key, and the bytes each way.
                let out = setup.proxyA.status().sessions.filter { $0.direction == "out" }
                #expect(out.count == 1)
                #expect(out.first?.key == KeyField.encode(setup.hierarchy.keys["hostb.c.a.xx."]!.publicKey))
                #expect(out.first?.bytesSent == 3 && out.first?.bytesReceived == 8, "\(out)")
                let mapping = setup.proxyA.status().mappings.first
                #expect(mapping?.liveConnections == 1 && mapping?.identity == "default", "\(String(describing: mapping))")
                #expect((mapping?.keyValidUntil ?? 0) > Int64(Date().timeIntervalSince1970), "\(String(describing: mapping))")
                let incoming = setup.proxyB.status().sessions.filter { $0.direction == "in" }
                #expect(incoming.first?.bytesReceived == 3 && incoming.first?.bytesSent == 8, "\(incoming)")

                // The rotation, cached before at c.a.xx., a.xx. and b.a.xx.; the revocations sent.
                let rotated = try PrivateKey(generating: .ed25519)
                try setup.hierarchy.nodes["c.a.xx."]!.register(
                    name: "hostb.c.a.xx.", key: rotated.publicKey, addresses: [IPAddress("127.0.0.12")!])
                // Down the fetch path, so each hop has sent its news before the next is awaited.
                for zone in ["c.a.xx.", "a.xx.", "b.a.xx.", "xx."] as [DomainName] { await setup.hierarchy.nodes[zone]!.revocationsSent() }
                #expect(await setup.proxyA.refreshKeys() == [.rotated("hostb.c.a.xx.", closed: 1)])
                // The application sees its connection end (a guard closes it after 10 s, so a
                // tunnel left open fails the test instead of hanging it).
                final class Flag: Sendable { let fired = Mutex(false) }
                let flag = Flag()
                let channel = application.channel
                let guardTimer = channel.eventLoop.scheduleTask(in: .seconds(10)) {
                    flag.fired.withLock { $0 = true }
                    channel.close(promise: nil)
                }
                let after = try? await iterator.next()
                guardTimer.cancel()
                #expect(after == nil && !flag.fired.withLock { $0 }, "the tunnel pinned to the old key stayed open")

                // B's endpoint still shows the old key: the next connection is refused, in clear never.
                let refused = (try? await exchange("two", host: intercept.description, port: setup.server.port)) ?? ""
                #expect(refused.isEmpty)
                #expect(setup.server.received.withLock { String(decoding: $0, as: UTF8.self) } == "one")

                // B restarts with its new key (same endpoint): A's tunnel, pinned to it, carries.
                let endpoint = setup.proxyB.endpointAddress!.port!
                await setup.proxyB.stop()
                try KeyFile.write(rotated, prefix: setup.hierarchy.keyPrefix("hostb.c.a.xx."), force: true)
                let path = setup.hierarchy.directory.appendingPathComponent("proxy-b.conf").path
                let text = try String(contentsOfFile: path, encoding: .utf8)
                    .replacingOccurrences(of: "endpoint 127.0.0.12:0", with: "endpoint 127.0.0.12:\(endpoint)")
                restartedB = try await ProxyService.start(
                    try ProxyConfiguration(path: try setup.hierarchy.write(text, to: "proxy-b2.conf")), group: MultiThreadedEventLoopGroup.singleton,
                    logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
                #expect(try await exchange("three", host: intercept.description, port: setup.server.port) == "echo:three")
                #expect(setup.proxyA.status().mappings.first?.key == KeyField.encode(rotated.publicKey))
            }
        }
    }

    /// Issue 12, part 3: a restarted proxy takes back the mappings it had handed out, so no
    /// peer is given an address another peer held (which applications may still be dialling).
    @Test func mappingsSurviveARestart() async throws {
        let setup = try await setUp(extraA: "store state/proxy-a.sqlite")
        var restarted: ProxyService?
        try await afterwards({
            await restarted?.stop()
            await setup.shutdown()
        }) {
            func intercept(_ reply: DNSMessage) -> IPAddress? {
                guard case .a(let bytes)? = reply.answers.first?.data else { return nil }
                return IPAddress(bytes: bytes)
            }
            let b = try #require(intercept(try await setup.resolve("hostb.c.a.xx.")))
            let c = try #require(intercept(try await setup.resolve("hostc.c.a.xx.")))
            await setup.proxyA.stop()
            let path = setup.hierarchy.directory.appendingPathComponent("proxy-a.conf").path
            let again = try await ProxyService.start(
                try ProxyConfiguration(path: path), group: MultiThreadedEventLoopGroup.singleton,
                logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
            restarted = again
            #expect(again.status().mappings.count == 2)
            // Host C asks first this time; a fresh pool would give it host B's old address.
            var query = DNSMessage.query(id: 1, name: "hostc.c.a.xx.", type: .a)
            query.header.recursionDesired = true
            let cAgain = intercept(try await setup.hierarchy.client.query(query, server: again.dnsAddress, timeout: .seconds(10)))
            query = DNSMessage.query(id: 2, name: "hostb.c.a.xx.", type: .a)
            query.header.recursionDesired = true
            let bAgain = intercept(try await setup.hierarchy.client.query(query, server: again.dnsAddress, timeout: .seconds(10)))
            #expect(cAgain == c && bAgain == b, "before: b \(b) c \(c); after: b \(String(describing: bAgain)) c \(String(describing: cAgain))")
            // And the restored mapping carries: the tunnel to host B works at its old address.
            #expect(try await exchange("again", host: b.description, port: setup.server.port) == "echo:again")
        }
    }

    /// `kms-proxy ping`: every step to the peer, timed, and the peer endpoint's own verdict.
    @Test func pingReportsEachStepAndThePeersVerdict() async throws {
        let setup = try await setUp(extraA: "control state/proxy-a.control")
        try await afterwards({ await setup.shutdown() }) {
            let control = setup.hierarchy.directory.appendingPathComponent("state/proxy-a.control").path
            let group = MultiThreadedEventLoopGroup.singleton
            let report = try await ProxyService.ping("hostb.c.a.xx.", control: control, group: group)
            #expect(report.steps.map(\.step) == ["resolve", "key", "tunnel", "endpoint"], "\(report)")
            #expect(report.ok, "\(report)")
            #expect(report.steps.last?.detail.contains("ports=\(setup.server.port)") == true, "\(report)")
            // Not a group peer: said so, and no tunnel.
            let plain = try await ProxyService.ping("hosta.b.a.xx.", control: control, group: group)
            #expect(!plain.ok && plain.steps.map(\.step) == ["resolve", "cug"] && plain.steps[1].detail.contains("not a CUG peer"), "\(plain)")
        }
        // Host B's endpoint does not let A in: the verdict says why.
        let refusing = try await setUp(inbound: "*.elsewhere.xx.", extraA: "control state/proxy-a.control")
        try await afterwards({ await refusing.shutdown() }) {
            let control = refusing.hierarchy.directory.appendingPathComponent("state/proxy-a.control").path
            let report = try await ProxyService.ping("hostb.c.a.xx.", control: control, group: MultiThreadedEventLoopGroup.singleton)
            #expect(!report.ok)
            #expect(report.steps.last?.step == "endpoint" && report.steps.last?.ok == false)
            #expect(report.steps.last?.detail.contains("not in the inbound CUG table") == true, "\(report)")
        }
    }

    /// A removed peer: its tunnels close and its intercept address takes no new connection.
    @Test func aRemovedPeerLosesItsTunnels() async throws {
        let setup = try await setUp()
        try await afterwards({ await setup.shutdown() }) {
            let reply = try await setup.resolve("hostb.c.a.xx.")
            guard case .a(let bytes)? = reply.answers.first?.data, let intercept = IPAddress(bytes: bytes) else {
                Issue.record("no intercept address: \(reply.presentation)")
                return
            }
            #expect(try await exchange("before", host: intercept.description, port: setup.server.port) == "echo:before")
            try setup.hierarchy.nodes["c.a.xx."]!.remove(name: "hostb.c.a.xx.")
            // Down the fetch path, so each hop has sent its news before the next is awaited.
                for zone in ["c.a.xx.", "a.xx.", "b.a.xx.", "xx."] as [DomainName] { await setup.hierarchy.nodes[zone]!.revocationsSent() }
            // (The first connection may still be winding down: how many were closed varies.)
            let changes = await setup.proxyA.refreshKeys()
            guard changes.count == 1, case .revoked(let peer, _) = changes[0], peer == "hostb.c.a.xx." else {
                Issue.record("expected host B revoked, got \(changes)")
                return
            }
            let answer = (try? await exchange("after", host: intercept.description, port: setup.server.port)) ?? ""
            #expect(answer.isEmpty)
            #expect(setup.server.received.withLock { String(decoding: $0, as: UTF8.self) } == "before")
        }
    }

    @Test func aKeyThatCannotBeVerifiedFailsClosed() async throws {
        // Host A trusts only a.xx. under another key than a.xx.'s real one: nothing verifies.
        let setup = try await setUp(anchorsA: ["b.a.xx."])
        try await afterwards({ await setup.shutdown() }) {
            let reply = try await setup.resolve("hostb.c.a.xx.")
            #expect(reply.rcode == .serverFailure)
            #expect(reply.answers.isEmpty)
            #expect(reply.extendedErrors.first?.text.contains("CUG peer") == true, "\(reply.presentation)")
        }
    }
}

/// `policy server`: the verdict comes from the home KMS, signed, and nothing else will do.
@Suite struct ServerPolicyTests {
    func proxy(_ hierarchy: TestHierarchy) async throws -> ProxyService {
        let hostA = try hierarchy.hostConfiguration("hosta.b.a.xx.")
        return try await ProxyService.start(
            try ProxyConfiguration(path: try hierarchy.write("""
                dns 127.0.0.11:0
                identity default \(hostA)
                policy server
                pool 127.102.\(Int.random(in: 1...250)).1 4
                """, to: "proxy-server.conf")),
            group: MultiThreadedEventLoopGroup.singleton, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
    }

    func resolve(_ name: DomainName, _ proxy: ProxyService, _ hierarchy: TestHierarchy, type: RRType = .a) async throws -> DNSMessage {
        var query = DNSMessage.query(id: 1, name: name, type: type)
        query.header.recursionDesired = true
        return try await hierarchy.client.query(query, server: proxy.dnsAddress, timeout: .seconds(10))
    }

    @Test func theHomeKMSsSignedVerdictDecides() async throws {
        let policy = FileManager.default.temporaryDirectory.appendingPathComponent("policy-\(UUID().uuidString).conf").path
        try "client 127.0.0.0/8 t1\nt1 *.c.a.xx. tls default AES-128-GCM\n".write(toFile: policy, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: policy) }
        let hierarchy = try await TestHierarchy(extra: ["b.a.xx.": "policy \(policy)"])
        let proxy = try await proxy(hierarchy)
        try await afterwards({ await proxy.stop(); await hierarchy.shutdown() }) {
            let encrypted = try await resolve("hostb.c.a.xx.", proxy, hierarchy)
            guard case .a(let bytes)? = encrypted.answers.first?.data else {
                Issue.record("no answer: \(encrypted.presentation)")
                return
            }
            #expect(bytes[0] == 127 && bytes[1] == 102)  // an intercept address
            let normal = try await resolve("hosta.b.a.xx.", proxy, hierarchy)
            #expect(normal.answers.first?.data == .a([127, 0, 0, 11]))
            // ANY reaches c.a.xx., which answers with B's addresses (RFC 8482), but no verdict
            // comes with it: the proxy hands out no address it has no verdict for.
            let any = try await resolve("hostb.c.a.xx.", proxy, hierarchy, type: RRType(rawValue: 255))
            #expect(any.rcode == .noError && any.answers.allSatisfy { $0.type != .a && $0.type != .aaaa }, "\(any.presentation)")
        }
    }

    @Test func noVerdictFailsClosed() async throws {
        let hierarchy = try await TestHierarchy()  // b.a.xx. keeps no policy: it sends no verdict
        let proxy = try await proxy(hierarchy)
        try await afterwards({ await proxy.stop(); await hierarchy.shutdown() }) {
            let reply = try await resolve("hostb.c.a.xx.", proxy, hierarchy)
            #expect(reply.rcode == .serverFailure)
            #expect(reply.answers.isEmpty)
            #expect(reply.extendedErrors.first?.text.contains("no kms1:cug verdict") == true)
        }
    }

    /// Every verdict the proxy must refuse, and the one it must take. Each bad verdict parses,
    /// so each refusal comes from the check it is named for (the tampered one used to fail at
    /// parsing and never reached the signature check).
    @Test func onlyASignedVerdictBoundToThisQueryIsAccepted() async throws {
        let home = try PrivateKey(generating: .ed25519)
        let stranger = try PrivateKey(generating: .ed25519)
        // Only for its fetcher: an encrypted verdict names an identity the proxy must have.
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let client = hierarchy.client
            let dnsProxy = DNSProxy(
                forwarding: .kmsOnly(Endpoint("127.0.0.1:9")!), client: client, cug: CUGTable(rows: []),
                pool: InterceptPool(addresses: [], lifetime: 1), poolV6: nil, fetchers: ["default": try hierarchy.fetcher("hosta.b.a.xx.")],
                timeout: .seconds(1), logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }),
                verdictSource: Peer(name: "b.a.xx.", endpoint: Endpoint("127.0.0.1:9")!, key: home.publicKey))
            let question = Question(name: "hostb.c.a.xx.", type: .a)
            func answer(_ record: KMSRecord) -> DNSMessage {
                var message = DNSMessage.query(id: 1, name: "hostb.c.a.xx.", type: .a).response()
                message.answers = [ResourceRecord(name: "hostb.c.a.xx.", ttl: 60, data: .a([10, 0, 0, 2]))]
                message.additionals = [record.resourceRecord()]
                return message
            }
            let now = UnixTime(Date().timeIntervalSince1970)
            let ours = try Nonce.random()
            enum Kind { case normal, encrypted }
            func verdict(_ kind: Kind, nonce: Nonce = ours, client: String = "127.0.0.1", time: UnixTime = now) throws -> KMSRecord {
                let path = kind == .normal ? nil : PathSettings(pathProtocol: .tls, identity: .default, cipher: .aes256gcm)
                return try CUGVerdict(target: "hostb.c.a.xx.", path: path, client: IPAddress(client)!, from: "b.a.xx.", nonce: nonce, time: time)
                    .record()
            }
            func refusal(_ record: KMSRecord) -> String? {
                if case .refused(let why) = dnsProxy.decide(question, answer: answer(record), nonce: ours) { return why }
                return nil
            }
            // Signed by the home KMS, bound to this query: accepted, both kinds.
            if case .normal = dnsProxy.decide(question, answer: answer(try verdict(.normal).signed(by: home)), nonce: ours) {} else {
                Issue.record("a good normal verdict was not accepted")
            }
            if case .encrypted = dnsProxy.decide(question, answer: answer(try verdict(.encrypted).signed(by: home)), nonce: ours) {} else {
                Issue.record("a good encrypted verdict was not accepted")
            }
            // Tampered: "encrypted" turned into a well-formed "normal" after signing.
            var strings = try verdict(.encrypted).signed(by: home).strings
            strings[2] = Array("verdict=normal".utf8)
            strings[3] = Array("protocol=".utf8)
            strings[4] = Array("identity=".utf8)
            strings[5] = Array("cipher=".utf8)
            let tampered = try #require(try KMSRecord(owner: "hostb.c.a.xx.", strings: strings))
            _ = try CUGVerdict(tampered)  // it parses: the refusal must come from the signature
            #expect(refusal(tampered)?.contains("bad signature") == true, "\(refusal(tampered) ?? "accepted")")
            // Signed by someone else.
            #expect(refusal(try verdict(.normal).signed(by: stranger))?.contains("bad signature") == true)
            // Unsigned: the same strings without sig=.
            var unsigned = answer(try verdict(.normal).signed(by: home))
            unsigned.additionals = [ResourceRecord(name: "hostb.c.a.xx.", ttl: 0, data: .txt(try verdict(.normal).unsignedStrings))]
            if case .refused(let why) = dnsProxy.decide(question, answer: unsigned, nonce: ours) {
                #expect(why.contains("missing sig="))
            } else {
                Issue.record("an unsigned verdict was accepted")
            }
            // Replayed: validly signed "normal" verdicts obtained for other queries, another client's
            // or a plain query's (no nonce). Either would let the traffic go out in clear.
            let replayed = try verdict(.normal, nonce: try Nonce.random(), client: "10.9.9.9").signed(by: home)
            #expect(refusal(replayed)?.contains("not bound to this query") == true, "\(refusal(replayed) ?? "accepted")")
            #expect(refusal(try verdict(.normal, nonce: .empty).signed(by: home))?.contains("not bound to this query") == true)
            // Stale: signed, bound, but not now.
            #expect(refusal(try verdict(.normal, time: now - 1000).signed(by: home))?.contains("stale") == true)
        }
    }

    /// Over the wire: the home KMS echoes the proxy's nonce and names the client it decided for.
    @Test func theHomeKMSBindsItsVerdictToTheQuery() async throws {
        let policy = FileManager.default.temporaryDirectory.appendingPathComponent("policy-\(UUID().uuidString).conf").path
        try "client 127.0.0.0/8 t1\nt1 *.c.a.xx. tls default AES-128-GCM\n".write(toFile: policy, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: policy) }
        let hierarchy = try await TestHierarchy(extra: ["b.a.xx.": "policy \(policy)"])
        try await afterwards({ await hierarchy.shutdown() }) {
            var records: [CUGVerdict] = []
            for _ in 0..<2 {
                let nonce = try Nonce.random()
                var query = DNSMessage.query(id: 1, name: "hostb.c.a.xx.", type: .a)
                query.header.recursionDesired = true
                query.edns = EDNS(options: [VerdictNonce.option(nonce)])
                let reply = try await hierarchy.send(query, to: "b.a.xx.")
                let record = try #require(try reply.kmsRecord())
                try record.verifySignature(by: hierarchy.keys["b.a.xx."]!.publicKey, signer: "b.a.xx.")
                let verdict = try CUGVerdict(record)
                #expect(verdict.nonce == nonce)
                #expect(verdict.client == IPAddress("127.0.0.1")!)
                records.append(verdict)
            }
            #expect(records.count == 2)
            // Without the option (dig): a verdict with an empty nonce, which no proxy accepts.
            var plain = DNSMessage.query(id: 3, name: "hostb.c.a.xx.", type: .a)
            plain.header.recursionDesired = true
            plain.edns = EDNS()
            let unbound = try CUGVerdict(try #require(try await hierarchy.send(plain, to: "b.a.xx.").kmsRecord()))
            #expect(unbound.nonce.isEmpty)
            // A malformed option (8 bytes, not 16): no verdict at all.
            var malformed = plain
            malformed.edns = EDNS(options: [EDNS.Option(code: VerdictNonce.optionCode, data: Array(repeating: 7, count: 8))])
            let none = try await hierarchy.send(malformed, to: "b.a.xx.")
            #expect(none.answers.first?.data == .a([127, 0, 0, 12]))
            #expect(try none.kmsRecord() == nil)
        }
    }
}
