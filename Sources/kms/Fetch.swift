import ArgumentParser
import DNSTransport
import DNSWire
import Foundation
import KMSClient
import KMSCrypto
import KMSProtocol
import KMSSettings
import NIOCore
import NIOPosix

struct Fetch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fetch a host's public key through the KMS hierarchy, verified.",
        discussion: """
            Sends a signed kms1:inquiry to this host's home KMS and accepts the answer only if \
            the home KMS's signature, the nonce, the countersignature by the chosen trust anchor \
            and the validity all check out. The countersigner is the trust anchor closest above \
            NAME unless --signer says otherwise. Verified keys are cached in the host's store.

            With --via-dns the key is read from DNS instead, as static zone data \
            (_kms1.NAME TXT, published by the authoritative KMS and held by any secondary or \
            resolver): from --resolver, or the nameservers of /etc/resolv.conf in turn. Only \
            the countersignature by the trust anchor makes it trustworthy; no KMS is asked.

            With --audit the key is also checked against the countersigner's transparency \
            log: the answer must carry an inclusion proof that leads to a tree head signed by \
            the countersigner, or the key is refused (exit 2). The host cache is bypassed. \
            Follow the log itself with `kms monitor`.

            Examples (after `make run`):
              kms fetch hostb.c.a.xx. --host hierarchy/hosta.conf --trace
              kms fetch hostb.c.a.xx. --host hierarchy/hosta.conf --audit
              kms fetch hostb.c.a.xx. --host hierarchy/hosta.conf --via-dns --resolver 127.0.0.1:5304

            Exit codes: 0 key printed; 1 no such host (unresolved); 2 verification failed \
            (nothing is printed); 3 time-out (home KMS or one behind it silent); 4 refused or \
            failed by the hierarchy; 5 no trust anchor covers NAME; 64 usage; 78 configuration.
            """)

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case field, pem, json
    }

    @Argument(help: "The host whose key to fetch, e.g. hostb.c.a.xx.")
    var name: String

    @Option(help: "Host configuration (identity, home KMS, trust anchors). Default: $KMS_HOST_CONFIG or /etc/countersign/host.conf.")
    var host: String?

    @Option(help: "Countersigner to ask for (one of the trust anchors). Default: the closest anchor above NAME.")
    var signer: String?

    @Flag(help: "Ask the hierarchy even if the host's cache has a valid key.")
    var noCache = false

    @Option(help: "Output: field (alg:base64, as on the wire), pem, or json.")
    var format: Format = .field

    @Flag(help: "Read the key from DNS (_kms1.NAME TXT) through --resolver instead of asking the home KMS.")
    var viaDNS = false

    @Option(help: "The resolver or secondary for --via-dns, ADDRESS[:PORT]. Default: the nameservers of /etc/resolv.conf, in turn.")
    var resolver: String?

    @Flag(help: "Require an inclusion proof from the countersigner's transparency log, and check it.")
    var audit = false

    @Flag(help: "Show each hop on standard error: who forwarded, who answered, who countersigned, validity, cache hits.")
    var trace = false

    func run() async throws {
        let path = host ?? ProcessInfo.processInfo.environment["KMS_HOST_CONFIG"] ?? "/etc/countersign/host.conf"
        let configuration: HostConfiguration
        do { configuration = try HostConfiguration(path: path) } catch { Self.exit("\(error)", code: 78) }
        let target: DomainName
        do { target = try DomainName(name.hasSuffix(".") ? name : name + ".").lowercased } catch {
            Self.exit("'\(name)' is not a domain name", code: 64)
        }
        var signerName: DomainName?
        if let signer {
            do { signerName = try DomainName(signer.hasSuffix(".") ? signer : signer + ".").lowercased } catch {
                Self.exit("--signer: '\(signer)' is not a domain name", code: 64)
            }
        }
        // Closed before a normal return; the error paths below end the process (`exit`).
        let client = try await DNSClient.make(group: MultiThreadedEventLoopGroup.singleton)
        let fetcher: KeyFetcher
        do { fetcher = try KeyFetcher(configuration: configuration, client: client) } catch {
            Self.exit("\(path): cache: \(error)", code: 78)
        }
        let result: FetchResult
        do {
            if viaDNS {
                result = try await fetcher.fetchViaDNS(target, signer: signerName, resolvers: resolverAddresses())
            } else {
                result = try await fetcher.fetch(target, signer: signerName, useCache: !noCache, trace: trace, audit: audit)
            }
        } catch {
            if trace { Self.printTrace(error.trace) }
            let code: Int32
            switch error.kind {
            case .notFound: code = 1
            case .verificationFailed: code = 2
            case .timeout: code = 3
            case .refused: code = 4
            case .noAnchor: code = 5
            }
            Self.exit(error.message, code: code)
        }
        if trace { Self.printTrace(result.trace) }
        if let proof = result.proof, format != .json {
            FileHandle.standardError.write(Data(
                ";; audit: in \(proof.head.signer)'s log at index \(proof.index) of \(proof.head.size) (tree head verified)\n".utf8))
        }
        await client.close()
        print(try render(result))
    }

    /// --resolver, or every nameserver of /etc/resolv.conf in its order; port 53 unless given.
    func resolverAddresses() -> [SocketAddress] {
        let endpoints: [Endpoint]
        if let text = resolver {
            guard let given = Endpoint(text) ?? Endpoint.scopedAddress(text).map({ Endpoint(address: $0.0, port: 53, scope: $0.1) }) else {
                Self.exit("--resolver: '\(text)' is not ADDRESS[:PORT]", code: 64)
            }
            endpoints = [given]
        } else {
            endpoints = ResolvConf.nameservers()
            guard !endpoints.isEmpty else {
                Self.exit("--via-dns: no --resolver, and no nameserver in /etc/resolv.conf", code: 64)
            }
        }
        do { return try endpoints.map { try $0.socketAddress() } } catch {
            Self.exit("--resolver: \(error)", code: 64)
        }
    }

    func render(_ result: FetchResult) throws -> String {
        let countersignature = result.countersignature
        switch format {
        case .field:
            return KeyField.encode(result.key)
        case .pem:
            return try result.key.pemRepresentation().trimmingCharacters(in: .newlines)
        case .json:
            var object: [String: Any] = [
                "target": countersignature.target.text, "key": KeyField.encode(result.key),
                "signer": countersignature.signer.text, "not_before": countersignature.notBefore,
                "not_after": countersignature.notAfter, "countersig": Base64.encode(countersignature.signature),
                "from_cache": result.fromCache,
            ]
            if let proof = result.proof {
                object["log"] = [
                    "signer": proof.head.signer.text, "index": proof.index, "tree_size": proof.head.size,
                    "root": Base64.encode(proof.head.root), "head_time": proof.head.time, "logged": proof.loggedAt,
                ] as [String: Any]
            }
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
            return String(decoding: data, as: UTF8.self)
        }
    }

    static func printTrace(_ lines: [String]) {
        for line in lines { FileHandle.standardError.write(Data(";; \(line)\n".utf8)) }
    }

    static func exit(_ message: String, code: Int32) -> Never {
        FileHandle.standardError.write(Data("kms fetch: \(message)\n".utf8))
        Foundation.exit(code)
    }
}
