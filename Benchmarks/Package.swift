// swift-tools-version:6.1
import PackageDescription

// The benchmarks of issue 9, in a package of their own so that the peers' dependencies (GRDB for
// SQLite, package-benchmark) never enter the main package's build or CI. Run from this folder:
//
//     swift package benchmark                      # every in-process benchmark, one run
//     swift run -c release MultiProcessUpdate      # 1 and 8 processes updating one user
//
// (see docs/BENCHMARKS.md, "Issue 9 results").
let package = Package(
    name: "CarbonStoreBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "CarbonStore", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
    ],
    targets: [
        // What the benchmarks and the multi-process driver share: W1 and W2, stores, appended rows.
        .target(
            name: "BenchmarkSupport",
            dependencies: [
                .product(name: "CarbonModel", package: "CarbonStore"),
                .product(name: "CarbonFormat", package: "CarbonStore"),
                .product(name: "CarbonStore", package: "CarbonStore"),
                .product(name: "CarbonStoreTestSupport", package: "CarbonStore"),
            ],
            path: "Sources/BenchmarkSupport"
        ),
        .executableTarget(
            name: "CarbonStoreBenchmarks",
            dependencies: [
                "BenchmarkSupport",
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "CarbonModel", package: "CarbonStore"),
                .product(name: "CarbonFormat", package: "CarbonStore"),
                .product(name: "CarbonStore", package: "CarbonStore"),
                .product(name: "CarbonStoreTestSupport", package: "CarbonStore"),
            ],
            path: "Benchmarks/CarbonStoreBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
        // N processes updating one user on one path: folder (locking=local), against 1 process.
        .executableTarget(
            name: "MultiProcessUpdate",
            dependencies: [
                "BenchmarkSupport",
                .product(name: "CarbonModel", package: "CarbonStore"),
                .product(name: "CarbonStore", package: "CarbonStore"),
                .product(name: "CarbonStoreTestSupport", package: "CarbonStore"),
            ],
            path: "Sources/MultiProcessUpdate"
        ),
        // Many users updated at once in one process on a slow disk: syncs on threads of their own
        // against syncs on the cooperative pool.
        .executableTarget(
            name: "ManyUsersUpdate",
            dependencies: [
                "BenchmarkSupport",
                .product(name: "CarbonModel", package: "CarbonStore"),
                .product(name: "CarbonStore", package: "CarbonStore"),
                .product(name: "CarbonStoreTestSupport", package: "CarbonStore"),
            ],
            path: "Sources/ManyUsersUpdate"
        ),
        // A loop of one codec operation, for a profiler (see its main.swift).
        .executableTarget(
            name: "CodecProfile",
            dependencies: [
                "BenchmarkSupport",
                .product(name: "CarbonModel", package: "CarbonStore"),
                .product(name: "CarbonFormat", package: "CarbonStore"),
                .product(name: "CarbonStore", package: "CarbonStore"),
            ],
            path: "Sources/CodecProfile"
        ),
    ]
)
