import KMSCrypto
import NIOCore
import NIOEmbedded
import Testing

@testable import TLSTransport

/// Records what reaches the top of a pipeline.
final class Sink: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    var received: [UInt8] = []
    var established: TLSEstablished?
    var inputClosed = false
    var errors: [any Error] = []

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        received += Array(unwrapInboundIn(data).readableBytesView)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSEstablished { established = event }
        if case ChannelEvent.inputClosed? = event as? ChannelEvent { inputClosed = true }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) { errors.append(error) }
}

@Suite struct TLSHandlerTests {
    struct Ends {
        let client: EmbeddedChannel
        let server: EmbeddedChannel
        let clientSink = Sink()
        let serverSink = Sink()

        init(serverKey: PrivateKey, pinned: PublicKey, clientKey: PrivateKey) throws {
            let clientContext = try TLSContext(role: .client, identity: try TLSIdentity(name: "hosta.b.a.xx.", key: clientKey))
            let serverContext = try TLSContext(role: .server, identity: try TLSIdentity(name: "hostb.c.a.xx.", key: serverKey))
            client = EmbeddedChannel()
            server = EmbeddedChannel()
            try client.pipeline.syncOperations.addHandler(
                TLSHandler(connection: try TLSConnection(context: clientContext, pinnedKey: pinned, serverName: "hostb.c.a.xx."), isClient: true))
            try client.pipeline.syncOperations.addHandler(clientSink)
            try server.pipeline.syncOperations.addHandler(TLSHandler(connection: try TLSConnection(context: serverContext), isClient: false))
            try server.pipeline.syncOperations.addHandler(serverSink)
            try client.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            try server.connect(to: try SocketAddress(ipAddress: "127.0.0.1", port: 2)).wait()
        }

        /// Moves written bytes between the two channels until both are quiet.
        func pump() throws {
            for _ in 0..<20 {
                var moved = false
                while let bytes = try client.readOutbound(as: ByteBuffer.self) {
                    try server.writeInbound(bytes)
                    moved = true
                }
                while let bytes = try server.readOutbound(as: ByteBuffer.self) {
                    try client.writeInbound(bytes)
                    moved = true
                }
                if !moved { return }
            }
        }
    }

    @Test func writesHeldDuringTheHandshakeArriveAfterIt() throws {
        let serverKey = try PrivateKey(generating: .ed25519)
        let clientKey = try PrivateKey(generating: .ed25519)
        let ends = try Ends(serverKey: serverKey, pinned: serverKey.publicKey, clientKey: clientKey)
        // Written before the handshake has even started on the server side.
        ends.client.writeAndFlush(ByteBuffer(string: "hello"), promise: nil)
        try ends.pump()
        #expect(ends.clientSink.established?.peerKey == serverKey.publicKey)
        #expect(ends.serverSink.established?.peerKey == clientKey.publicKey)
        #expect(ends.serverSink.established?.peerName == "hosta.b.a.xx.")
        #expect(ends.serverSink.received == Array("hello".utf8))
        ends.server.writeAndFlush(ByteBuffer(string: "world"), promise: nil)
        try ends.pump()
        #expect(ends.clientSink.received == Array("world".utf8))
        // Half-close: the client's close_notify reaches the server as end of input.
        ends.client.close(mode: .output, promise: nil)
        try ends.pump()
        #expect(ends.serverSink.inputClosed)
    }

    @Test func aWrongKeyClosesWithAnError() throws {
        let serverKey = try PrivateKey(generating: .ed25519)
        let other = try PrivateKey(generating: .ed25519)
        let ends = try Ends(serverKey: serverKey, pinned: other.publicKey, clientKey: try PrivateKey(generating: .ed25519))
        ends.client.writeAndFlush(ByteBuffer(string: "secret"), promise: nil)
        try? ends.pump()
        #expect(ends.clientSink.established == nil)
        #expect(ends.clientSink.errors.contains { "\($0)".contains("peer key rejected") })
        #expect(ends.serverSink.received.isEmpty)
    }
}
