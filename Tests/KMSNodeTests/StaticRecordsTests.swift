import DNSTransport
import DNSWire
import Foundation
import KMSClient
import KMSCrypto
@testable import KMSNode
import KMSProtocol
import KMSTestSupport
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// Countersignatures as static zone data: published by the authoritative KMS, readable from
/// any DNS server, trusted only through the anchor; withdrawn at once on rotation; transferred
/// only to listed secondaries.
@Suite struct StaticRecordsTests {
    static func resolver(_ hierarchy: TestHierarchy, _ zone: DomainName) -> SocketAddress {
        hierarchy.servers[zone]!.address
    }

    static func serial(_ hierarchy: TestHierarchy, _ zone: DomainName) async throws -> UInt32 {
        let reply = try await hierarchy.send(DNSMessage.query(id: 9, name: zone, type: .soa), to: zone)
        return try #require(ZoneTests.soaFields(reply.answers.first)).serial
    }

    /// A resolver that refuses every query.
    final class Refuser: DNSResponder {
        func respond(to request: DNSRequest) -> DNSReply {
            .reply(Reply(request.message.response(rcode: .refused), answering: request.message))
        }
    }

    @Test func aPublishedKeyIsReadFromDNSAndVerifiedWithTheAnchorAlone() async throws {
        let hierarchy = try await TestHierarchy(extra: ["c.a.xx.": "secondary 127.0.0.1"])
        try await afterwards({ await hierarchy.shutdown() }) {
            let node = hierarchy.nodes["c.a.xx."]!
            let before = try await Self.serial(hierarchy, "c.a.xx.")
            // Both hosts of c.a.xx., countersigned by the default signer xx. (a sigreq up the chain).
            #expect(await node.publishStaticRecords() == 2)
            #expect(node.staticRecordsPending == 0)
            #expect(try await Self.serial(hierarchy, "c.a.xx.") > before, "publishing moves the serial")

            let reply = try await hierarchy.send(DNSMessage.query(id: 1, name: "_kms1.hostb.c.a.xx.", type: .txt), to: "c.a.xx.")
            #expect(reply.rcode == .noError && reply.header.isAuthoritative && reply.answers.count == 1)
            guard case .txt(let strings)? = reply.answers.first?.data else { throw Failure("no TXT") }
            #expect(strings.first == Array("kms1-static".utf8))
            // Host A reads it with --via-dns from the KMS's own DNS server as from any other,
            // and trusts it because xx. signed it.
            let fetched = try await hierarchy.fetcher("hosta.b.a.xx.").fetchViaDNS("hostb.c.a.xx.", resolvers: [Self.resolver(hierarchy, "c.a.xx.")])
            #expect(fetched.key == hierarchy.keys["hostb.c.a.xx."]!.publicKey)
            #expect(fetched.countersignature.signer == "xx.")
            // As /etc/resolv.conf lists them: a first nameserver that is down, and one that
            // refuses, are passed over for the next.
            let probe = try await DatagramBootstrap(group: hierarchy.group).bind(host: "127.0.0.1", port: 0).get()
            let down = probe.localAddress!
            try await probe.close()
            let refuser = try await DNSServer.bind(host: "127.0.0.1", port: 0, group: hierarchy.group, responder: ResponderBox(Refuser()))
            try await afterwards({ await refuser.close() }) {
                let resolvers = [down, refuser.address, Self.resolver(hierarchy, "c.a.xx.")]
                let inTurn = try await hierarchy.fetcher("hosta.b.a.xx.").fetchViaDNS("hostb.c.a.xx.", resolvers: resolvers)
                #expect(inTurn.key == hierarchy.keys["hostb.c.a.xx."]!.publicKey)
                // None usable: each is named.
                do {
                    _ = try await hierarchy.fetcher("hosta.b.a.xx.").fetchViaDNS("hostb.c.a.xx.", resolvers: Array(resolvers.prefix(2)))
                    Issue.record("a key from resolvers that cannot give one")
                } catch let error as FetchError {
                    #expect(error.message.contains("resolver \(down.endpointText): connection refused"), "\(error)")
                    #expect(error.message.contains("resolver \(refuser.address.endpointText) answered REFUSED"), "\(error)")
                }
            }

            // The zone transfer carries it: SOA first (a listed secondary, over TCP).
            let axfr = try await hierarchy.client.queryOverTCP(
                DNSMessage.query(id: 2, name: "c.a.xx.", type: RRType(rawValue: 252)), server: Self.resolver(hierarchy, "c.a.xx."),
                timeout: .seconds(5))
            #expect(axfr.rcode == .noError && axfr.answers.first?.type == .soa)
            #expect(axfr.answers.contains { $0.name == "_kms1.hostb.c.a.xx." && $0.type == .txt })
            #expect(axfr.answers.contains { $0.name == "hostb.c.a.xx." && $0.data == .a([127, 0, 0, 12]) })
        }
    }

    @Test func aRotationWithdrawsTheOldKeyAtOnceAndPublishesTheNewOne() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let node = hierarchy.nodes["c.a.xx."]!
            await node.publishStaticRecords()
            let rotated = try PrivateKey(generating: .ed25519).publicKey
            let before = try await Self.serial(hierarchy, "c.a.xx.")
            try node.register(name: "hostb.c.a.xx.", key: rotated, addresses: [IPAddress("127.0.0.12")!])
            // Withdrawn before anything is published again: NODATA, never the old key.
            let gone = try await hierarchy.send(DNSMessage.query(id: 1, name: "_kms1.hostb.c.a.xx.", type: .txt), to: "c.a.xx.")
            #expect(gone.answers.isEmpty && gone.authorities.last?.type == .soa)
            #expect(try await Self.serial(hierarchy, "c.a.xx.") > before)
            #expect(await node.publishStaticRecords() == 1)
            let fetched = try await hierarchy.fetcher("hosta.b.a.xx.").fetchViaDNS("hostb.c.a.xx.", resolvers: [Self.resolver(hierarchy, "c.a.xx.")])
            #expect(fetched.key == rotated)
        }
    }

    /// `--via-dns` asks as a stub resolver does: a query whose datagram is lost is sent again
    /// (the same bytes) within the time-out, instead of the resolver counting as silent.
    @Test func aLostDatagramOnTheWayToTheResolverIsSentAgain() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            #expect(await hierarchy.nodes["c.a.xx."]!.publishStaticRecords() == 2)
            let relay = try await LossyRelay.start(to: Self.resolver(hierarchy, "c.a.xx."), dropping: 1)
            try await afterwards({ await relay.close() }) {
                let fetched = try await hierarchy.fetcher("hosta.b.a.xx.", timeout: "3s").fetchViaDNS("hostb.c.a.xx.", resolvers: [relay.address])
                #expect(fetched.key == hierarchy.keys["hostb.c.a.xx."]!.publicKey)
                #expect(relay.dropped == 1 && relay.seen.count == 2 && relay.seen[0] == relay.seen[1], "\(relay.seen.count) datagrams")
            }
        }
    }

    /// A node answers an inquiry for its own host from the countersignature it publishes, with
    /// no sigreq up the chain (so with the signer refusing everything), until a rotation
    /// withdraws it: then it asks the signer again and never hands out the old key.
    @Test func anInquiryForAPublishedHostIsAnsweredWithoutAskingTheSigner() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let node = hierarchy.nodes["c.a.xx."]!
            #expect(await node.publishStaticRecords() == 2)
            // What publishing left in the key caches on the way (c.a.xx. and a.xx. verified
            // and kept xx.'s answer) goes, and xx. now refuses every sigreq.
            for zone: DomainName in ["a.xx.", "c.a.xx."] { hierarchy.nodes[zone]!.flush(name: nil) }
            hierarchy.boxes["xx."]!.responder = Refuser()

            let fetched = try await hierarchy.fetcher("hosta.b.a.xx.").fetch("hostb.c.a.xx.", trace: true)
            #expect(fetched.key == hierarchy.keys["hostb.c.a.xx."]!.publicKey)
            #expect(fetched.countersignature.signer == "xx.")
            let trace = fetched.trace.joined(separator: "\n")
            #expect(trace.contains("c.a.xx. hostb.c.a.xx. registered here; xx.'s countersignature is published in c.a.xx."), "\(trace)")
            #expect(!trace.contains("asking a.xx."), "\(trace)")

            let rotated = try PrivateKey(generating: .ed25519).publicKey
            try node.register(name: "hostb.c.a.xx.", key: rotated, addresses: [IPAddress("127.0.0.12")!])
            for zone: DomainName in ["a.xx.", "b.a.xx."] { hierarchy.nodes[zone]!.flush(name: nil) }
            do {
                let after = try await hierarchy.fetcher("hosta.b.a.xx.").fetch("hostb.c.a.xx.", trace: true)
                Issue.record("a key with the signer refusing and the record withdrawn: \(after.key == rotated ? "new" : "old") key")
            } catch let error as FetchError {
                #expect(error.kind == .refused, "\(error)")
            }
        }
    }

    /// A server that answers `_kms1` questions with a record its operator forged: a key for
    /// host B "countersigned by xx." with a key that is not xx.'s.
    final class Forger: DNSResponder {
        let record: ResourceRecord
        init(record: ResourceRecord) { self.record = record }
        func respond(to request: DNSRequest) -> DNSReply {
            var message = request.message.response(rcode: .noError)
            message.answers = [record]
            return .reply(Reply(message, answering: request.message))
        }
    }

    @Test func aForgedRecordFromAnyServerIsRefused() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let now = UnixTime(Date().timeIntervalSince1970)
            let forged = try Countersignature.issue(
                target: "hostb.c.a.xx.", key: try PrivateKey(generating: .ed25519).publicKey, signer: "xx.",
                signerKey: try PrivateKey(generating: .ed25519), notBefore: now - 60, notAfter: now + 3600)
            let box = ResponderBox(Forger(record: try #require(StaticCountersignature(forged).record(ttl: 60))))
            let server = try await DNSServer.bind(host: "127.0.0.1", port: 0, group: hierarchy.group, responder: box)
            try await afterwards({ await server.close() }) {
                let fetcher = try hierarchy.fetcher("hosta.b.a.xx.")
                do {
                    _ = try await fetcher.fetchViaDNS("hostb.c.a.xx.", resolvers: [server.address])
                    Issue.record("accepted a forged static record")
                } catch let error as FetchError {
                    #expect(error.kind == .verificationFailed, "\(error)")
                    #expect(error.message.contains("nothing countersigned by xx. verifies"), "\(error)")
                }
            }
        }
    }

    @Test func anUnlistedAddressMayNotTransferTheZone() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            for type in [RRType(rawValue: 252), RRType(rawValue: 251)] {
                let refused = try await hierarchy.client.queryOverTCP(
                    DNSMessage.query(id: 3, name: "c.a.xx.", type: type), server: Self.resolver(hierarchy, "c.a.xx."), timeout: .seconds(5))
                #expect(refused.rcode == .refused && refused.extendedErrors.first?.infoCode == .prohibited)
            }
        }
    }

    struct Failure: Error {
        let text: String
        init(_ text: String) { self.text = text }
    }

    /// Renewal: a sweep queues the hosts whose records have used half their validity, and only
    /// those (xx. issues countersignatures valid one second past the replay window here).
    @Test func aSweepQueuesWhatHasUsedHalfItsValidity() async throws {
        let fresh = try await TestHierarchy()
        try await afterwards({ await fresh.shutdown() }) {
            await fresh.nodes["c.a.xx."]!.publishStaticRecords()
            await fresh.nodes["c.a.xx."]!.sweepStaticRecords()
            #expect(fresh.nodes["c.a.xx."]!.staticRecordsPending == 0, "a day's validity: nothing due")
        }
        let shortLived = try await TestHierarchy(extra: ["xx.": "countersig-validity 1s"])
        try await afterwards({ await shortLived.shutdown() }) {
            let node = shortLived.nodes["c.a.xx."]!
            #expect(await node.publishStaticRecords() == 2)
            await node.sweepStaticRecords()
            #expect(node.staticRecordsPending == 2, "both past half their validity: queued for renewal")
        }
    }

    /// After a restart, what was published comes back from the store, verified again: the
    /// signer is not asked (its log does not grow), even with the key cache emptied, and the
    /// records read back are not held to the pace of those that must be signed.
    @Test func aRestartRepublishesFromTheStoreWithoutAskingTheSigner() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let signerLog = LogMonitor(
                signer: .init(name: "xx.", key: hierarchy.keys["xx."]!.publicKey), server: hierarchy.servers["xx."]!.address,
                client: hierarchy.client)
            #expect(await hierarchy.nodes["c.a.xx."]!.publishStaticRecords() == 2)
            try hierarchy.nodes["c.a.xx."]!.store.flush()  // the received countersignatures are written
            let issued = try await signerLog.head().size

            try hierarchy.startNode("c.a.xx.")  // a new node on the same store
            let node = hierarchy.nodes["c.a.xx."]!
            #expect(node.staticRecords.publishedCount == 0, "a start publishes nothing by itself")
            node.flush(name: nil)  // not even the cache holds them now
            // Read back, not signed: they do not count against the one signature allowed here.
            #expect(await node.publishStaticRecords(limit: 1) == 2)
            #expect(try await signerLog.head().size == issued, "xx. issued nothing new")
            let reply = try await hierarchy.send(DNSMessage.query(id: 1, name: "_kms1.hostb.c.a.xx.", type: .txt), to: "c.a.xx.")
            #expect(reply.rcode == .noError && reply.answers.count == 1)

            // A rotated key has nothing stored: it is asked for again.
            let rotated = try PrivateKey(generating: .ed25519).publicKey
            try node.register(name: "hostb.c.a.xx.", key: rotated, addresses: [IPAddress("127.0.0.12")!])
            _ = node.staticRecords.take(10)
            #expect(await node.publishStaticRecords() == 0)
            node.staticRecords.queue(["hostb.c.a.xx."])
            #expect(await node.publishStaticRecords() == 1)
            #expect(try await signerLog.head().size == issued + 1, "one sigreq, for the new key")
        }
    }

    /// Runs jobs one at a time, in the order they come: a pool one thread wide, as the
    /// concurrency pool of a node pinned to one CPU is.
    final class SerialTaskExecutor: TaskExecutor {
        private let queue = DispatchQueue(label: "serial-task-executor")
        func enqueue(_ job: consuming ExecutorJob) {
            let job = UnownedJob(job)
            queue.async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
        }

        /// Runs `body` with the executor held: jobs enqueued meanwhile wait, and then run in
        /// the order they came (tasks started in `body` are all queued before any runs).
        func holding<Result>(_ body: () -> Result) -> Result {
            let gate = DispatchSemaphore(value: 0)
            queue.async { gate.wait() }
            defer { gate.signal() }
            return body()
        }
    }

    /// Reading published records back from the store costs a read and a verify a host and
    /// never waits for the network, so a republication is one long job unless it lets others
    /// run: another task on the same thread (one thread, as on a node pinned to one CPU) runs
    /// between two hosts, and sees one published and not the other. It had waited for all of
    /// them, up to 2 000 hosts (0.4 s here): fetches during a restart's republication took
    /// half a second.
    @Test func aRepublicationLetsOtherTasksRunBetweenHosts() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            #expect(await hierarchy.nodes["c.a.xx."]!.publishStaticRecords() == 2)
            try hierarchy.nodes["c.a.xx."]!.store.flush()
            try hierarchy.startNode("c.a.xx.")
            let node = hierarchy.nodes["c.a.xx."]!
            node.flush(name: nil)  // both come from the store, neither from the network

            let executor = SerialTaskExecutor()
            final class Flag: Sendable { let raised = Atomic(false) }
            let finished = Flag()
            // Both queued before either runs, the publication first (else, on a busy machine,
            // the publication could be two hosts in before the second task was even queued).
            let (publication, observer) = executor.holding {
                let publication = Task(executorPreference: executor) { @Sendable in
                    let published = await node.publishStaticRecords()
                    finished.raised.store(true, ordering: .sequentiallyConsistent)
                    return published
                }
                // Another task on the same thread: what it sees each time it gets to run.
                let observer = Task(executorPreference: executor) { @Sendable in
                    var seen: Set<Int> = []
                    while !finished.raised.load(ordering: .sequentiallyConsistent) {
                        seen.insert(node.staticRecords.publishedCount)
                        await Task.yield()
                    }
                    return seen
                }
                return (publication, observer)
            }
            #expect(await publication.value == 2)
            #expect(await observer.value.contains(1), "another task ran between the first host and the second")
        }
    }

    /// A bulk registration is not held as a queue of names: past a page of them the sweep
    /// walks the store for it, and finds every new host; a small one is queued as it is.
    @Test func aBulkRegistrationIsLeftToTheSweep() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let node = hierarchy.nodes["c.a.xx."]!
            #expect(await node.publishStaticRecords() == 2)
            let key = try PrivateKey(generating: .ed25519).publicKey
            func batch(_ range: Range<Int>) throws -> [KMSNode.Registration] {
                try range.map { .init(name: try DomainName("bulk\($0).c.a.xx."), key: key, addresses: [IPAddress("127.0.0.50")!]) }
            }
            try node.register(try batch(0..<3))
            #expect(node.staticRecords.queuedCount == 3, "a small batch is queued")
            #expect(node.staticRecords.sweepPosition == nil)
            _ = node.staticRecords.take(3)

            try node.register(try batch(3..<(KMSNode.sweepPage + 4)))
            #expect(node.staticRecords.queuedCount == 0, "a batch past a page is not queued name by name")
            #expect(node.staticRecords.sweepPosition == 0, "but starts the sweep")
            await node.sweepStaticRecords()
            #expect(node.staticRecords.queuedCount == KMSNode.sweepPage + 4, "every host without records, and only those")
            #expect(node.staticRecords.sweepPosition == nil, "the sweep has seen every row")
        }
    }

    /// A start publishes nothing by itself: until every host's records are back, a listed
    /// secondary asking for the zone is told to wait (SERVFAIL, Not Ready) and is not sent
    /// NOTIFY, so it keeps its complete copy; then it is notified, and the transfer is whole.
    @Test func transfersWaitUntilARestartHasRepublished() async throws {
        let hierarchy = try await TestHierarchy(extra: ["c.a.xx.": "secondary 127.0.0.1"])
        try await afterwards({ await hierarchy.shutdown() }) {
            #expect(await hierarchy.nodes["c.a.xx."]!.publishStaticRecords() == 2)
            try hierarchy.nodes["c.a.xx."]!.store.flush()
            let (secondary, channel) = try await NotifyCatcher.listening(on: hierarchy.group)
            defer { channel.close(promise: nil) }
            try hierarchy.writeConfiguration("c.a.xx.", extra: "secondary 127.0.0.1\nnotify 127.0.0.1:\(channel.localAddress!.port!)")
            try hierarchy.startNode("c.a.xx.")
            let node = hierarchy.nodes["c.a.xx."]!
            func transfer() async throws -> DNSMessage {
                try await hierarchy.client.queryOverTCP(
                    DNSMessage.query(id: 5, name: "c.a.xx.", type: RRType(rawValue: 252)), server: Self.resolver(hierarchy, "c.a.xx."),
                    timeout: .seconds(5))
            }
            // Started, and one of the two hosts back: the zone is not whole.
            #expect(node.staticRecords.isRepublishing)
            #expect(await node.publishStaticRecords(limit: 1, localLimit: 1) == 1)
            #expect(node.staticRecords.isRepublishing)
            let held = try await transfer()
            #expect(held.rcode == .serverFailure && held.extendedErrors.first?.infoCode == .notReady, "\(held.rcode) \(held.extendedErrors)")
            #expect(await !node.notifyIfChanged(), "no NOTIFY for a zone a secondary may not take yet")
            // Both back: NOTIFY, and the transfer carries both records.
            #expect(await node.publishStaticRecords() == 1)
            #expect(!node.staticRecords.isRepublishing)
            #expect(await node.notifyIfChanged())
            #expect(secondary.received.withLock { $0.count } == 1)
            let whole = try await transfer()
            #expect(whole.rcode == .noError)
            #expect(whole.answers.filter { $0.name.text.hasPrefix("_kms1.") }.count == 2, "\(whole.answers.map(\.name))")
        }
    }

    /// NOTIFY follows every serial change (here a registration with no static signers), once.
    @Test func aRegistrationAloneIsNotifiedOnce() async throws {
        let hierarchy = try await TestHierarchy()
        try await afterwards({ await hierarchy.shutdown() }) {
            let (secondary, channel) = try await NotifyCatcher.listening(on: hierarchy.group)
            defer { channel.close(promise: nil) }
            try hierarchy.writeConfiguration("c.a.xx.", extra: "static-signers none\nnotify 127.0.0.1:\(channel.localAddress!.port!)")
            try hierarchy.startNode("c.a.xx.")
            let node = hierarchy.nodes["c.a.xx."]!
            #expect(await node.notifyIfChanged(), "the first serial is news")
            #expect(await !node.notifyIfChanged(), "nothing changed since")
            try node.register(name: "hostn.c.a.xx.", key: try PrivateKey(generating: .ed25519).publicKey, addresses: [IPAddress("127.0.0.40")!])
            #expect(await node.notifyIfChanged())
            let received = secondary.received.withLock { $0 }
            #expect(received.count == 2, "one NOTIFY per change, answered at the first try")
            #expect(received.allSatisfy { $0.header.opcode.rawValue == 4 && $0.question?.name == "c.a.xx." && $0.question?.type == .soa })
        }
    }

    /// A secondary's NOTIFY port: answers each NOTIFY as RFC 1996 says, and remembers it.
    final class NotifyCatcher: ChannelInboundHandler, Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        typealias OutboundOut = AddressedEnvelope<ByteBuffer>
        let received = Mutex<[DNSMessage]>([])

        /// A catcher on a UDP port of its own on loopback.
        static func listening(on group: any EventLoopGroup) async throws -> (NotifyCatcher, any Channel) {
            let catcher = NotifyCatcher()
            let channel = try await DatagramBootstrap(group: group)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(catcher) }
                }
                .bind(host: "127.0.0.1", port: 0).get()
            return (catcher, channel)
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            guard let message = try? DNSMessage(wire: Array(envelope.data.readableBytesView)) else { return }
            received.withLock { $0.append(message) }
            var reply = message.response(rcode: .noError)
            reply.answers = []
            guard let bytes = try? reply.wire() else { return }
            context.writeAndFlush(
                wrapOutboundOut(AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: context.channel.allocator.buffer(bytes: bytes))),
                promise: nil)
        }
    }
}
