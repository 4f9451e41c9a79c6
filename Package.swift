// swift-tools-version: 6.1
//
// Countersign: public keys distributed through a hierarchy of DNS servers (KMS1), and
// encryption set up when an application resolves a name.
//
// Layers, each importing only those below it (see docs/DESIGN.md):
//   CLDNS, COpenSSL(+Shims)  C libraries, each entered by exactly one Swift module
//   DNSWire                  DNS messages over libldns
//   KMSCrypto                keys, signatures (and later TLS) over OpenSSL
//   KMSProtocol              KMS1 records, signature inputs, verification
//   executables              thin argument parsing over the libraries
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

/// Executables import what they use internally; only libraries have a public surface.
let executableSettings: [SwiftSetting] = [.enableUpcomingFeature("ExistentialAny")]

let package = Package(
    name: "Countersign",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "kms", targets: ["kms"]),
        .executable(name: "kmsd", targets: ["kmsd"]),
        .executable(name: "kms-proxy", targets: ["kms-proxy"]),
        .library(name: "KMSProtocol", targets: ["KMSProtocol"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C libraries.
        .systemLibrary(
            name: "CLDNS", pkgConfig: "ldns",
            providers: [.apt(["libldns-dev"])]),
        .systemLibrary(
            name: "CNFTables", pkgConfig: "libnftables",
            providers: [.apt(["libnftables-dev"])]),
        .systemLibrary(
            name: "COpenSSL", pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]),
        .target(
            name: "COpenSSLShims", dependencies: ["COpenSSL"],
            linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]),
        .target(name: "CSystemShims"),

        // Libraries.
        .target(name: "DNSWire", dependencies: ["CLDNS"], swiftSettings: swiftSettings),
        .target(
            name: "KMSCrypto", dependencies: ["COpenSSL", "COpenSSLShims"],
            swiftSettings: swiftSettings),
        .target(
            name: "KMSProtocol", dependencies: ["DNSWire", "KMSCrypto"],
            swiftSettings: swiftSettings),
        .target(
            name: "DNSTransport",
            dependencies: [
                "DNSWire", "CSystemShims",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
            ],
            swiftSettings: swiftSettings),

        .target(
            name: "TLSTransport",
            dependencies: ["KMSCrypto", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: swiftSettings),
        .target(
            name: "ControlSocket",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
            ],
            swiftSettings: swiftSettings),
        .target(
            name: "LogFormat",
            dependencies: [.product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings),
        .target(
            name: "MetricsHTTP",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        .target(
            name: "KMSSettings", dependencies: ["DNSWire", "KMSCrypto", "KMSProtocol"],
            swiftSettings: swiftSettings),
        .target(
            name: "KMSNode",
            dependencies: [
                "DNSWire", "KMSCrypto", "KMSProtocol", "KMSSettings", "DNSTransport", "KMSClient", "ControlSocket", "MetricsHTTP",
                "LogFormat",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings),

        .target(
            name: "KMSClient",
            dependencies: [
                "DNSWire", "KMSCrypto", "KMSProtocol", "KMSSettings", "DNSTransport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "GRDB", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings),

        .target(
            name: "KMSProxy",
            dependencies: [
                "DNSWire", "KMSCrypto", "KMSProtocol", "KMSSettings", "DNSTransport", "KMSClient", "TLSTransport",
                "ControlSocket", "MetricsHTTP", "CNFTables", "LogFormat",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings),

        // Shared by the test targets: the figure 7 hierarchy built in-process.
        .target(
            name: "KMSTestSupport",
            dependencies: [
                "KMSNode", "KMSClient", "KMSProtocol", "KMSSettings", "DNSTransport", "DNSWire", "KMSCrypto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/KMSTestSupport", swiftSettings: swiftSettings),

        // Executables.
        .executableTarget(
            name: "kms",
            dependencies: [
                "KMSCrypto", "KMSProtocol", "KMSClient", "ControlSocket", "KMSSettings", "DNSTransport", "DNSWire", "KMSNode",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: executableSettings),

        .executableTarget(
            name: "kmsd",
            dependencies: [
                "DNSTransport", "KMSNode", "KMSSettings", "LogFormat", "MetricsHTTP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: executableSettings),

        .executableTarget(
            name: "kms-proxy",
            dependencies: [
                "DNSTransport", "KMSProxy", "KMSSettings", "ControlSocket", "LogFormat", "MetricsHTTP",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: executableSettings),

        // Tests.
        // Fuzz targets (docs/FUZZING.md): libFuzzer entry points when built by `make fuzz`
        // (-sanitize=fuzzer,address -D FUZZING), corpus replayers otherwise (`make test`).
        .target(name: "CFuzzer", path: "Fuzz/CFuzzer"),
        .target(name: "FuzzReplay", dependencies: ["CFuzzer"], path: "Fuzz/FuzzReplay", swiftSettings: swiftSettings),
        .executableTarget(
            name: "FuzzDNSMessage", dependencies: ["DNSWire", "FuzzReplay"], path: "Fuzz/FuzzDNSMessage",
            swiftSettings: executableSettings),
        .executableTarget(
            name: "FuzzKMSRecord", dependencies: ["DNSWire", "KMSCrypto", "KMSProtocol", "FuzzReplay"], path: "Fuzz/FuzzKMSRecord",
            swiftSettings: executableSettings),
        .executableTarget(
            name: "FuzzConfig", dependencies: ["KMSSettings", "FuzzReplay"], path: "Fuzz/FuzzConfig",
            swiftSettings: executableSettings),
        .executableTarget(
            name: "FuzzTunnelHeader", dependencies: ["KMSProtocol", "FuzzReplay"], path: "Fuzz/FuzzTunnelHeader",
            swiftSettings: executableSettings),

        .testTarget(name: "DNSWireTests", dependencies: ["DNSWire"], swiftSettings: swiftSettings),
        .testTarget(
            name: "MetricsHTTPTests",
            dependencies: [
                "MetricsHTTP", .product(name: "NIOPosix", package: "swift-nio"), .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "LogFormatTests",
            dependencies: ["LogFormat", .product(name: "Logging", package: "swift-log")], swiftSettings: swiftSettings),
        .testTarget(
            name: "DNSTransportTests",
            dependencies: [
                "DNSTransport", "DNSWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
            ],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "KMSCryptoTests", dependencies: ["KMSCrypto"], swiftSettings: swiftSettings),
        .testTarget(
            name: "KMSProtocolTests", dependencies: ["KMSProtocol", "DNSWire", "KMSCrypto"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "TLSTransportTests",
            dependencies: [
                "TLSTransport", "KMSCrypto",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "KMSProxyTests",
            dependencies: [
                "KMSTestSupport", "KMSProxy", "KMSNode", "KMSClient", "KMSSettings", "KMSCrypto", "KMSProtocol", "DNSWire", "DNSTransport",
                "TLSTransport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "ControlSocketTests",
            dependencies: ["ControlSocket", .product(name: "NIOPosix", package: "swift-nio")],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "KMSSettingsTests", dependencies: ["KMSSettings", "DNSWire", "KMSCrypto"],
            swiftSettings: swiftSettings),
        .testTarget(
            name: "KMSNodeTests",
            dependencies: [
                "KMSTestSupport", "KMSNode", "KMSClient", "KMSProtocol", "KMSSettings", "DNSTransport", "DNSWire", "KMSCrypto", "ControlSocket",
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings),
    ]
)
