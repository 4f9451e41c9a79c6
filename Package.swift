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
        .library(name: "KMSProtocol", targets: ["KMSProtocol"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // C libraries.
        .systemLibrary(
            name: "CLDNS", pkgConfig: "ldns",
            providers: [.apt(["libldns-dev"])]),
        .systemLibrary(
            name: "COpenSSL", pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]),
        .target(
            name: "COpenSSLShims", dependencies: ["COpenSSL"],
            linkerSettings: [.linkedLibrary("ssl"), .linkedLibrary("crypto")]),

        // Libraries.
        .target(name: "DNSWire", dependencies: ["CLDNS"], swiftSettings: swiftSettings),
        .target(
            name: "KMSCrypto", dependencies: ["COpenSSL", "COpenSSLShims"],
            swiftSettings: swiftSettings),
        .target(
            name: "KMSProtocol", dependencies: ["DNSWire", "KMSCrypto"],
            swiftSettings: swiftSettings),

        // Executables.
        .executableTarget(
            name: "kms",
            dependencies: [
                "KMSCrypto", "KMSProtocol",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: executableSettings),

        // Tests.
        .testTarget(name: "DNSWireTests", dependencies: ["DNSWire"], swiftSettings: swiftSettings),
        .testTarget(
            name: "KMSCryptoTests", dependencies: ["KMSCrypto"], swiftSettings: swiftSettings),
        .testTarget(
            name: "KMSProtocolTests", dependencies: ["KMSProtocol", "DNSWire", "KMSCrypto"],
            resources: [], swiftSettings: swiftSettings),
    ]
)
