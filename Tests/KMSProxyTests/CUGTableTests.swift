import DNSWire
import KMSCrypto
import KMSProtocol
import KMSSettings
import Testing

@testable import KMSProxy

@Suite struct CUGTableTests {
    /// The rows of the seed's figure 2 as far as its text gives them (its 2nd row is
    /// taro.nec.co.jp, its 4th *.myfriends.com) plus the brief's examples. The seed's ciphers
    /// (DES) are refused today, so the rows carry modern ones. `sato.*` comes after
    /// `*.myfriends.com`: the text says sato.myfriends.com falls to the *.myfriends.com row.
    static let figure2 = """
        # pattern         protocol  identity  cipher
        host.example.     tls       default   AES-128-GCM
        taro.nec.co.jp.   tls       10        AES-256-GCM
        *.biglobe.*       tls       default   CHACHA20-POLY1305
        *.myfriends.com   tls       11        AES-256-GCM
        sato.*            tls       default   AES-128-GCM
        """

    func table() throws -> CUGTable {
        try CUGTable(file: try ConfigFile(path: "cug.conf", text: Self.figure2), identities: ["default", "10", "11"])
    }

    @Test func theSeedsStatedResults() throws {
        let table = try table()
        #expect(table.match("taro.nec.co.jp.")?.line == 3)
        #expect(table.match("yamada.myfriends.com.")?.line == 5)
        #expect(table.match("sato.myfriends.com.")?.line == 5)
        #expect(table.match("yamada.myfriends.com.")?.settings.identity == "11")
        #expect(table.match("www.nec.com.") == nil)  // an unmatched name: normal communication
    }

    @Test func eachPatternKind() throws {
        let table = try table()
        #expect(table.match("HOST.Example.")?.line == 2)  // exact, ignoring case
        #expect(table.match("a.host.example.") == nil)
        #expect(table.match("sato.biglobe.ne.jp.")?.line == 4)  // *.biglobe.* before sato.*
        #expect(table.match("www.BIGLOBE.co.jp.")?.line == 4)
        #expect(table.match("sato.example.org.")?.line == 6)  // first label
        #expect(table.match("sato.") == nil)  // sato.* needs a label after sato
        #expect(table.match("myfriends.com.") == nil)  // the suffix itself does not match
        #expect(table.match("a.b.myfriends.com.")?.line == 5)
        #expect(table.match("notbiglobe.com.") == nil)
    }

    @Test func brokenCiphersAndMistakesAreRefusedAtLoadWithTheLine() throws {
        func error(_ text: String) -> String {
            do {
                _ = try CUGTable(file: try ConfigFile(path: "cug.conf", text: text), identities: ["default"])
                return "accepted"
            } catch {
                return "\(error)"
            }
        }
        #expect(error("*.myfriends.com tls default DES").hasPrefix("cug.conf:1: *.myfriends.com: DES is broken and refused"))
        #expect(error("a.\n*.x.com tls default 3DES").contains("cug.conf:1"))
        #expect(error("x.com. tls default 3DES").hasPrefix("cug.conf:1: x.com.: 3DES is broken and refused"))
        #expect(error("x.com. ipsec default AES-128-GCM").contains("neither tls nor kernel"))
        #expect(error("x.com. kernel default AES-128-GCM").contains("needs kernel diversion (divert-port"))
        #expect(error("x.com. tls nobody AES-128-GCM").contains("identity 'nobody' is not one of this host's"))
        #expect(error("a*b.com tls default AES-128-GCM").contains("not a name pattern"))
    }
}

@Suite struct InterceptPoolTests {
    let key = try! PrivateKey(generating: .ed25519).publicKey
    let settings = PathSettings(pathProtocol: .tls, identity: "default", cipher: .aes128gcm)

    func pool(_ count: Int, lifetime: Double = 60) -> InterceptPool {
        InterceptPool(addresses: InterceptPool.addresses(from: IPAddress("127.100.0.1")!, count: count), lifetime: lifetime)
    }

    @Test func addressesCount() {
        let addresses = InterceptPool.addresses(from: IPAddress("127.100.0.254")!, count: 4)
        #expect(addresses.map(\.description) == ["127.100.0.254", "127.100.0.255", "127.100.1.0", "127.100.1.1"])
        #expect(InterceptPool.addresses(from: IPAddress("fd00::ffff")!, count: 2).map(\.description) == ["fd00::ffff", "fd00::1:0"])
    }

    @Test func thePeerKeepsItsAddressWhileTheMappingLives() throws {
        let pool = pool(4)
        let first = try #require(pool.assign(peer: "b.xx.", addresses: [IPAddress("10.0.0.2")!], key: key, settings: settings, now: 0))
        let again = try #require(pool.assign(peer: "b.xx.", addresses: [IPAddress("10.0.0.2")!], key: key, settings: settings, now: 30))
        #expect(first.intercept == again.intercept)
        #expect(again.expiresAt == 90)
        let other = try #require(pool.assign(peer: "c.xx.", addresses: [IPAddress("10.0.0.3")!], key: key, settings: settings, now: 30))
        #expect(other.intercept != first.intercept)
        #expect(pool.lookup(first.intercept, now: 89)?.peer == "b.xx.")
        #expect(pool.lookup(first.intercept, now: 90) == nil)
    }

    @Test func onlyExpiredIdleMappingsAreReused() throws {
        let pool = pool(2)
        let b = try #require(pool.assign(peer: "b.xx.", addresses: [], key: key, settings: settings, now: 0))
        let c = try #require(pool.assign(peer: "c.xx.", addresses: [], key: key, settings: settings, now: 10))
        // Full, and nothing has expired: no address for a third peer.
        #expect(pool.assign(peer: "d.xx.", addresses: [], key: key, settings: settings, now: 20) == nil)
        // b expires at 60 but carries a live connection: it is never reassigned.
        #expect(pool.open(b.intercept, now: 50) != nil)
        let d = try #require(pool.assign(peer: "d.xx.", addresses: [], key: key, settings: settings, now: 100))
        #expect(d.intercept == c.intercept)  // c expired at 70 and was idle
        #expect(pool.lookup(b.intercept, now: 100)?.peer == "b.xx.")  // still b, connection open
        #expect(pool.assign(peer: "e.xx.", addresses: [], key: key, settings: settings, now: 100) == nil)
        pool.close(b.intercept)
        let e = try #require(pool.assign(peer: "e.xx.", addresses: [], key: key, settings: settings, now: 100))
        #expect(e.intercept == b.intercept)
    }
}
