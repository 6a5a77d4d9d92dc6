import Benchmark
import CarbonFormat
import CarbonModel
import CarbonStore
import CarbonStoreTestSupport
import Foundation

/// The figures of issue 9's Goals table, each with its peer in the same run (docs/BENCHMARKS.md,
/// "Issue 9 baseline (package-benchmark)"). Run from the Benchmarks folder:
///
///     swift package benchmark
///
/// Every benchmark name starts with the row of the table it belongs to. Updates append one new
/// transaction per iteration, so a user grows by one transaction per iteration (at most 200 on
/// W1's 1,000, 30 on W2's 20,000), CarbonStore and SQLite alike. Files are written under
/// `.build/bench-data` of the folder the run starts in, or `CARBONSTORE_BENCH_DIR`.
let benchmarks: @Sendable () -> Void = {
    // (`cpuTotal` is left out: on Linux it moves in steps of 10 ms, longer than most iterations.)
    let timing: [BenchmarkMetric] = [.wallClock, .mallocCountTotal, .throughput]
    // bytes handed to write(2) (`wchar` of /proc/self/io) and bytes sent to the block device
    // (`write_bytes`), per iteration, for every writer.
    let writing = timing + [.writeBytesLogical, .writeBytesPhysical]
    let fileBytes = BenchmarkMetric.custom("user file bytes written", useScalingFactor: false)
    let walBytes = BenchmarkMetric.custom("WAL growth bytes", useScalingFactor: false)

    func config(_ metrics: [BenchmarkMetric], iterations: Int, warmup: Int = 5, seconds: Int = 10)
        -> Benchmark.Configuration
    {
        // Every figure in one unit (µs; bytes and allocations as counts), so that rows compare.
        .init(
            metrics: metrics, timeUnits: .microseconds,
            units: Dictionary(uniqueKeysWithValues: metrics.filter { $0 != .wallClock }.map { ($0, .count) }),
            warmupIterations: warmup, maxDuration: .seconds(seconds), maxIterations: iterations)
    }

    // MARK: W1 and W2 append update, against SQLite WAL (synchronous=FULL)

    for (name, record, iterations) in [("W1", Fixtures.w1, 200), ("W2", Fixtures.w2, 30)] {
        let label = name.lowercased()
        let storeDir = "\(label)-update"
        Benchmark(
            "\(name) append update: Store.update (path:, locking=local)",
            configuration: config(writing + [fileBytes], iterations: iterations, warmup: name == "W1" ? 5 : 2)
        ) { (benchmark: Benchmark, state: StoreState) async throws in
            let n = state.counter.next()
            let before = state.written.value
            try await state.store.update(label) { try $0.upsert(Fixtures.appended(n)) }
            benchmark.measurement(fileBytes, state.written.value - before)
        } setup: {
            let dir = try Fixtures.makeDirectory(storeDir)
            let written = ByteCounter()
            let store = try await Fixtures.makeStore(dir: dir, written: written)
            try await Fixtures.seed(store, label, with: record)
            return StoreState(store: store, written: written, counter: AppendCounter())
        } teardown: {
            Fixtures.removeDirectory(storeDir)
        }

        let sqliteDir = "\(label)-sqlite"
        Benchmark(
            "\(name) append update: SQLite WAL synchronous=FULL (GRDB), peer",
            configuration: config(writing + [walBytes], iterations: iterations, warmup: name == "W1" ? 5 : 2)
        ) { (benchmark: Benchmark, state: SQLiteState) async throws in
            let n = state.counter.next()
            let before = state.peer.walSize()
            try state.peer.append(
                Fixtures.appended(n), userID: label,
                now: Timestamp(millisecondsSince1970: 1_900_000_000_000 + Int64(n)))
            // The WAL only grows until a checkpoint (every 1,000 pages by default) starts it over;
            // an append after which it did not grow is not counted.
            let growth = state.peer.walSize() - before
            if growth > 0 { benchmark.measurement(walBytes, growth) }
        } setup: {
            let dir = try Fixtures.makeDirectory(sqliteDir)
            let peer = try SQLitePeer.create(path: dir + "/\(label).sqlite", userID: label, record: record)
            return SQLiteState(peer: peer, counter: AppendCounter())
        } teardown: {
            Fixtures.removeDirectory(sqliteDir)
        }
    }

    // MARK: W1 update, against the raw durable rewrite of the whole file

    Benchmark(
        "W1 raw durable rewrite (temp file, write, fsync, rename, fsync dir), baseline",
        configuration: config(writing, iterations: 200)
    ) { (_: Benchmark, state: RawState) async throws in
        RawDurableWrite.replace(state.bytes, in: state.dir)
    } setup: {
        let dir = try Fixtures.makeDirectory("w1-raw")
        // The W1 file exactly as the store writes it.
        let store = try await Fixtures.makeStore(dir: dir, written: ByteCounter())
        let stored = try await Fixtures.seed(store, "w1", with: Fixtures.w1)
        return RawState(dir: dir, bytes: try store.options.codec.encodeChecked(stored))
    } teardown: {
        Fixtures.removeDirectory("w1-raw")
    }

    // MARK: Encode and decode W1, against Foundation JSON

    Benchmark("W1 encode: RecordCodec (zlib sections)", configuration: config(timing, iterations: 300)) {
        benchmark in
        for _ in benchmark.scaledIterations { blackHole(RecordCodec().encode(Fixtures.w1)) }
    }
    Benchmark("W1 encode: Foundation JSONEncoder, peer", configuration: config(timing, iterations: 300)) {
        benchmark in
        let encoder = JSONEncoder()
        for _ in benchmark.scaledIterations { blackHole(try encoder.encode(Fixtures.w1)) }
    }
    let w1Bytes = RecordCodec().encode(Fixtures.w1)
    let w1JSON = try! JSONEncoder().encode(Fixtures.w1)
    Benchmark("W1 decode: RecordCodec (zlib sections)", configuration: config(timing, iterations: 300)) {
        benchmark in
        for _ in benchmark.scaledIterations { blackHole(try RecordCodec().decode(w1Bytes)) }
    }
    Benchmark("W1 decode: Foundation JSONDecoder, peer", configuration: config(timing, iterations: 300)) {
        benchmark in
        let decoder = JSONDecoder()
        for _ in benchmark.scaledIterations { blackHole(try decoder.decode(UserRecord.self, from: w1JSON)) }
    }

    // MARK: 8 concurrent updates of one user in one process, against 1 writer

    // Each iteration is 8 appends to one W1 user: 8 tasks at once, or one task doing them in
    // turn. Updates per second = 8 / wall clock of an iteration (8 x the throughput metric).
    for (title, concurrent) in [("8 concurrent tasks", true), ("1 writer, 8 in turn, baseline", false)] {
        let dirName = concurrent ? "w1-c8" : "w1-c1"
        Benchmark(
            "W1 8 updates of one user: \(title)",
            configuration: config(writing + [fileBytes], iterations: 30, warmup: 2)
        ) { (_: Benchmark, state: StoreState) async throws in
            if concurrent {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<8 {
                        let n = state.counter.next()
                        group.addTask {
                            try await state.store.update("w1") { try $0.upsert(Fixtures.appended(n)) }
                        }
                    }
                    try await group.waitForAll()
                }
            } else {
                for _ in 0..<8 {
                    let n = state.counter.next()
                    try await state.store.update("w1") { try $0.upsert(Fixtures.appended(n)) }
                }
            }
        } setup: {
            let dir = try Fixtures.makeDirectory(dirName)
            let written = ByteCounter()
            let store = try await Fixtures.makeStore(dir: dir, written: written)
            try await Fixtures.seed(store, "w1", with: Fixtures.w1)
            return StoreState(store: store, written: written, counter: AppendCounter())
        } teardown: {
            Fixtures.removeDirectory(dirName)
        }
    }

    // MARK: Store.read of an unchanged user

    Benchmark("W1 Store.read of an unchanged user (path:)", configuration: config(timing, iterations: 300)) {
        (_: Benchmark, state: StoreState) async throws in
        blackHole(try await state.store.read("w1"))
    } setup: {
        let dir = try Fixtures.makeDirectory("w1-read")
        let store = try await Fixtures.makeStore(dir: dir, written: ByteCounter())
        try await Fixtures.seed(store, "w1", with: Fixtures.w1)
        return StoreState(store: store, written: ByteCounter(), counter: AppendCounter())
    } teardown: {
        Fixtures.removeDirectory("w1-read")
    }
}

struct StoreState: Sendable {
    let store: Store
    let written: ByteCounter
    let counter: AppendCounter
}

struct SQLiteState: Sendable {
    let peer: SQLitePeer
    let counter: AppendCounter
}

struct RawState: Sendable {
    let dir: String
    let bytes: [UInt8]
}
