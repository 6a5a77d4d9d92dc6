// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "CarbonStore",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "CarbonModel", targets: ["CarbonModel"]),
        .library(name: "CarbonFormat", targets: ["CarbonFormat"]),
        .library(name: "CarbonStore", targets: ["CarbonStore"]),
        .library(name: "AWSSigning", targets: ["AWSSigning"]),
        .library(name: "AWSClient", targets: ["AWSClient"]),
        .library(name: "CarbonStoreAWS", targets: ["CarbonStoreAWS"]),
        .library(name: "CarbonStoreTestSupport", targets: ["CarbonStoreTestSupport"]),
        .library(name: "CarbonServer", targets: ["CarbonServer"]),
        .executable(name: "carbonstore", targets: ["carbonstore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
    ],
    targets: [
        .target(name: "CarbonModel"),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .target(name: "CHardwareCRC"),
        .target(name: "CSystemCalls"),
        .target(name: "CarbonFormat", dependencies: ["CarbonModel", "CZlib", "CHardwareCRC"]),
        .target(
            name: "CarbonStore",
            dependencies: [
                "CarbonModel", "CarbonFormat", "CSystemCalls",
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .target(name: "AWSSigning", dependencies: [.product(name: "Crypto", package: "swift-crypto")]),
        .target(
            name: "AWSClient",
            dependencies: [
                "AWSSigning",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .target(name: "CarbonStoreAWS", dependencies: ["CarbonStore", "AWSClient"]),
        .target(name: "CarbonTorture", dependencies: ["CarbonModel", "CarbonStore"]),
        .target(
            name: "CarbonStoreTestSupport",
            dependencies: [
                "CarbonModel", "CarbonFormat", "CarbonStore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        // The HTTP service (`carbonstore serve`): routes, auth, limits, logs and metrics over a Store.
        .target(
            name: "CarbonServer",
            dependencies: [
                "CarbonModel", "CarbonFormat", "CarbonStore",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "NIOHTTPTypesHTTP1", package: "swift-nio-extras"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            resources: [.embedInCode("openapi.json")]
        ),
        .target(
            name: "CarbonStoreCLI",
            dependencies: [
                "CarbonModel", "CarbonFormat", "CarbonStore", "CarbonStoreAWS", "AWSClient", "CarbonServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(name: "carbonstore", dependencies: ["CarbonStoreCLI"]),
        // The carbonstore commands with the reliability tests' hooks, and the torture test: built for
        // the tests, never shipped (it is no product).
        .executableTarget(
            name: "carbonstore-testhost",
            dependencies: [
                "CarbonStoreCLI", "CarbonStore", "CarbonTorture", "CarbonStoreTestSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "CarbonBench",
            dependencies: [
                "CarbonModel", "CarbonFormat", "CarbonStore", "CarbonStoreAWS", "AWSClient",
                "CarbonStoreTestSupport",
            ]
        ),
        .testTarget(name: "CarbonModelTests", dependencies: ["CarbonModel", "CarbonStoreTestSupport"]),
        .testTarget(
            name: "CarbonFormatTests", dependencies: ["CarbonFormat", "CarbonStoreTestSupport"],
            exclude: ["FuzzRegressions"]),
        .testTarget(
            name: "CarbonStoreTests",
            dependencies: ["CarbonStore", "CarbonStoreTestSupport", "carbonstore", "carbonstore-testhost"]
        ),
        .testTarget(name: "AWSSigningTests", dependencies: ["AWSSigning"]),
        .testTarget(name: "AWSClientTests", dependencies: ["AWSClient", "CarbonStoreTestSupport"]),
        .testTarget(
            name: "CarbonStoreAWSTests",
            dependencies: [
                "CarbonStoreAWS", "AWSClient", "CarbonStoreTestSupport", "carbonstore",
                "carbonstore-testhost",
            ]
        ),
        .testTarget(
            name: "TortureTests",
            dependencies: [
                "CarbonTorture", "CarbonStore", "CarbonStoreAWS", "AWSClient", "CarbonStoreTestSupport",
                "carbonstore", "carbonstore-testhost",
            ]
        ),
        .testTarget(
            name: "CarbonServerTests",
            dependencies: [
                "CarbonServer", "CarbonStore", "CarbonModel", "CarbonFormat", "CarbonStoreTestSupport",
                "carbonstore",
                "carbonstore-testhost",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
        .testTarget(
            name: "CLITests",
            dependencies: ["carbonstore", "carbonstore-testhost", "CarbonStore", "CarbonStoreTestSupport"]
        ),
    ]
)
