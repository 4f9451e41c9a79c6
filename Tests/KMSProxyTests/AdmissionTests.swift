import DNSTransport
import DNSWire
import KMSCrypto
import KMSSettings
import KMSTestSupport
import Logging
import NIOCore
import NIOPosix
import Testing

@testable import KMSProxy

/// The KMS node and the proxy sit behind one admission stage: every query that is not one a
/// server should answer gets the same answer from both, from the transport, without reaching
/// the proxy's upstream. (The proxy used to forward any opcode and send FORMERR with no reason.)
@Suite struct AdmissionTests {
    enum Case: String, CaseIterable, Sendable {
        case status, notify, noQuestion, truncated, optionOverrun, twoOPT, optOwnerNotRoot, optInAnswer

        var bytes: [UInt8] {
            switch self {
            // (UPDATE is no longer alike: a KMS takes it for key rotation; the proxy does not.)
            case .status: BadPackets.query(opcode: 2, additionals: [BadPackets.opt()])
            case .notify: BadPackets.query(opcode: 4, additionals: [BadPackets.opt()])
            case .noQuestion: [0x42, 0x42, 0x01, 0x00, 0, 0, 0, 0, 0, 0, 0, 1] + BadPackets.opt()
            case .truncated: Array(BadPackets.query(additionals: [BadPackets.opt(rdata: [0, 10, 0, 8] + Array(repeating: 1, count: 8))]).dropLast(6))
            case .optionOverrun: BadPackets.ednsBreaches[0].bytes
            case .twoOPT: BadPackets.ednsBreaches[1].bytes
            case .optOwnerNotRoot: BadPackets.ednsBreaches[2].bytes
            case .optInAnswer: BadPackets.ednsBreaches[3].bytes
            }
        }

        var expected: RCode {
            switch self {
            case .status, .notify: .notImplemented
            default: .formatError
            }
        }
    }

    /// A hierarchy, and a proxy in front of it whose upstream is a port nobody answers on
    /// (anything it forwarded would time out), both closed after `body`.
    func withNodeAndProxy(_ body: (TestHierarchy, DNSServer, DNSClient) async throws -> Void) async throws {
        let hierarchy = try await TestHierarchy()
        let client = try await DNSClient.make(group: hierarchy.group)
        let proxy = DNSProxy(
            forwarding: .kmsOnly(Endpoint("127.0.0.1:9")!), client: client, cug: CUGTable(rows: []),
            pool: InterceptPool(addresses: [], lifetime: 1), poolV6: nil, fetchers: [:], timeout: .seconds(3),
            logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        let proxyServer = try await DNSServer.bind(host: "127.0.0.1", port: 0, group: hierarchy.group, responder: ResponderBox(proxy))
        try await afterwards({
            await proxyServer.close()
            await client.close()
            await hierarchy.shutdown()
        }) {
            try await body(hierarchy, proxyServer, client)
        }
    }

    /// Every case against one hierarchy and one proxy (a hierarchy per case would only load the
    /// machine): each must get the same answer from both.
    @Test func nodeAndProxyAnswerAlike() async throws {
        try await withNodeAndProxy { hierarchy, proxyServer, _ in
            for badCase in Case.allCases {
                var replies: [DNSMessage] = []
                for server in [hierarchy.servers["b.a.xx."]!.address, proxyServer.address] {
                    let bytes = try #require(
                        try await RawUDP.exchange(badCase.bytes, with: server, timeout: .seconds(2)), "\(badCase): no reply from \(server)")
                    let reply = try DNSMessage(wire: bytes)
                    #expect(reply.header.id == 0x4242)
                    #expect(reply.rcode == badCase.expected, "\(badCase), \(server): \(reply.presentation)")
                    #expect(bytes.count <= max(badCase.bytes.count, Replies.minimumErrorSize), "\(badCase)")
                    replies.append(reply)
                }
                #expect(replies[0].rcode == replies[1].rcode, "\(badCase)")
                #expect(replies[0].extendedErrors == replies[1].extendedErrors, "\(badCase)")
                // A query that carried an OPT record gets the reason as an extended error.
                if badCase != .optInAnswer {
                    #expect(replies[1].extendedErrors.first != nil, "\(badCase): no extended error: \(replies[1].presentation)")
                }
            }
        }
    }

    /// A query for host B padded (EDNS Padding, RFC 7830) to `size` bytes.
    static func padded(to size: Int) -> [UInt8] {
        let bare = BadPackets.query("hostb.c.a.xx.", additionals: [BadPackets.opt()])
        let padding = size - bare.count - 4
        return BadPackets.query("hostb.c.a.xx.", additionals: [
            BadPackets.opt(rdata: [0x00, 0x0C, UInt8(padding >> 8), UInt8(padding & 0xFF)] + Array(repeating: 0, count: padding))
        ])
    }

    /// A UDP query longer than the server reads over UDP arrives cut to its receive slot: it
    /// used to be answered FORMERR "additional section incomplete" though nothing was wrong
    /// with it. Now node and proxy send it to TCP (TC=1, its ID and question), and the node
    /// answers it whole there; one within the limit is answered over UDP.
    @Test func aUDPQueryLongerThanTheServerReadsIsSentToTCP() async throws {
        try await withNodeAndProxy { hierarchy, proxyServer, client in
            let node = hierarchy.servers["c.a.xx."]!.address
            let long = Self.padded(to: 9_000)
            for server in [node, proxyServer.address] {
                let bytes = try #require(try await RawUDP.exchange(long, with: server, timeout: .seconds(2)), "no reply from \(server)")
                let reply = try DNSMessage(wire: bytes)
                #expect(reply.header.id == 0x4242)
                #expect(reply.header.isTruncated, "\(server): \(reply.presentation)")
                #expect(reply.rcode == .noError, "\(server): \(reply.presentation)")
                #expect(reply.question?.name == "hostb.c.a.xx.")
                #expect(reply.answers.isEmpty)
            }
            // One whose question cannot be read from its slot (QDCOUNT 2) gets FORMERR that says why.
            var twoQuestions = long
            twoQuestions[5] = 2
            for server in [node, proxyServer.address] {
                let bytes = try #require(try await RawUDP.exchange(twoQuestions, with: server, timeout: .seconds(2)), "no reply from \(server)")
                let reply = try DNSMessage(wire: bytes)
                #expect(reply.rcode == .formatError, "\(server): \(reply.presentation)")
                #expect(
                    reply.extendedErrors.first?.text.contains("longer than \(DNSServer.largestUDPQuery) bytes") == true,
                    "\(server): \(reply.presentation)")
            }
            // Over TCP the node reads it whole and answers.
            let whole = try DNSMessage(wire: long)
            let overTCP = try await client.queryOverTCP(whole, server: node, timeout: .seconds(3))
            #expect(overTCP.rcode == .noError)
            #expect(overTCP.answers.count == 1, "\(overTCP.presentation)")
            // At the limit, UDP answers it.
            let atLimit = Self.padded(to: DNSServer.largestUDPQuery)
            #expect(atLimit.count == DNSServer.largestUDPQuery)
            let bytes = try #require(try await RawUDP.exchange(atLimit, with: node, timeout: .seconds(2)))
            let reply = try DNSMessage(wire: bytes)
            #expect(!reply.header.isTruncated, "\(reply.presentation)")
            #expect(reply.answers.count == 1, "\(reply.presentation)")
        }
    }
}
