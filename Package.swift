// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "CarbonStore",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "CarbonModel", targets: ["CarbonModel"]),
        .library(name: "CarbonFormat", targets: ["CarbonFormat"]),
        .library(name: "CarbonStore", targets: ["CarbonStore"]),
        .library(name: "CarbonStoreTestSupport", targets: ["CarbonStoreTestSupport"]),
        .executable(name: "carbonstore", targets: ["carbonstore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0")
    ],
    targets: [
        .target(name: "CarbonModel"),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        .target(name: "CarbonFormat", dependencies: ["CarbonModel", "CZlib"]),
        .target(name: "CarbonStore", dependencies: ["CarbonModel", "CarbonFormat"]),
        .target(
            name: "CarbonStoreTestSupport",
            dependencies: ["CarbonModel", "CarbonFormat", "CarbonStore"]
        ),
        .executableTarget(
            name: "carbonstore",
            dependencies: [
                "CarbonModel", "CarbonFormat", "CarbonStore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "CarbonBench",
            dependencies: ["CarbonModel", "CarbonFormat", "CarbonStore", "CarbonStoreTestSupport"]
        ),
        .testTarget(name: "CarbonModelTests", dependencies: ["CarbonModel", "CarbonStoreTestSupport"]),
        .testTarget(name: "CarbonFormatTests", dependencies: ["CarbonFormat", "CarbonStoreTestSupport"]),
        .testTarget(name: "CarbonStoreTests", dependencies: ["CarbonStore", "CarbonStoreTestSupport"]),
        .testTarget(
            name: "CLITests",
            dependencies: ["carbonstore", "CarbonStore", "CarbonStoreTestSupport"]
        ),
    ]
)
