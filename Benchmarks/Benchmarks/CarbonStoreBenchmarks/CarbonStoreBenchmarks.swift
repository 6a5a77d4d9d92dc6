import Benchmark
import BenchmarkSupport
import CarbonFormat
import CarbonModel
import CarbonStore
import CarbonStoreTestSupport
import Foundation

/// The figures of issue 9's Goals table, each with its peer in the same run (docs/BENCHMARKS.md,
/// "Issue 9 results"). Run from the Benchmarks folder:
///
///     swift package benchmark
///
/// Every benchmark name starts with the row of the table it belongs to. Updates append one new
/// transaction per iteration, so a user grows by one transaction per iteration (at most about
/// 1,000 on W1's 1,000, 300 on W2's 20,000), CarbonStore and SQLite alike. The row of 8 processes
/// updating one user is the `MultiProcessUpdate` executable of this package. Files are written under
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

    // Steady state: the store's cache holds the user from the seeding on, and compactions happen
    // at their natural rate (`CompactionPolicy()`, the default): W1 runs enough appends to pass
    // several compactions, which then sit in its p99 and in "updates per compaction". W2's
    // threshold (half its snapshot) is beyond its run; its compaction cost is measured below.
    let appendBytes = BenchmarkMetric.custom("append bytes (compactions excluded)", useScalingFactor: false)
    let perCompaction = BenchmarkMetric.custom("updates per compaction", useScalingFactor: false)
    for (name, record, iterations) in [("W1", Fixtures.w1, 1000), ("W2", Fixtures.w2, 300)] {
        let label = name.lowercased()
        let storeDir = "\(label)-update"
        Benchmark(
            "\(name) append update: Store.update (path:, locking=local)",
            configuration: config(
                writing + [fileBytes, appendBytes, perCompaction], iterations: iterations, seconds: 60)
        ) { (benchmark: Benchmark, state: StoreState) async throws in
            let n = state.counter.next()
            let before = state.written.value
            let reservedBefore = state.reserved
            try await state.store.update(label) { try $0.upsert(Fixtures.appended(n)) }
            // The frame or snapshot, and the zeros an append that did not fit wrote to reserve room.
            let written = state.written.value - before + (state.reserved - reservedBefore)
            benchmark.measurement(fileBytes, written)
            // A compaction writes the whole file anew (a snapshot and no frames); an append
            // writes a frame into a longer file.
            if written < Fixtures.fileSize(state.file) {
                benchmark.measurement(appendBytes, written)
            } else if let since = state.compactions.compacted(at: n) {
                benchmark.measurement(perCompaction, since)
            }
        } setup: {
            let dir = try Fixtures.makeDirectory(storeDir)
            let written = ByteCounter()
            let store = try await Fixtures.makeStore(dir: dir, written: written)
            try await Fixtures.seed(store, label, with: record)
            return try StoreState(store: store, written: written, dir: dir)
        } teardown: {
            Fixtures.removeDirectory(storeDir)
        }

        // The cost of one compaction update: the same append, with a policy that compacts every
        // time (a new snapshot through temp file, fsync, rename; the record comes from the cache).
        let compactDir = "\(label)-compact"
        Benchmark(
            "\(name) compaction update: Store.update writing a new snapshot (forced on every update)",
            configuration: config(
                writing + [fileBytes], iterations: name == "W1" ? 200 : 30, warmup: name == "W1" ? 5 : 2)
        ) { (benchmark: Benchmark, state: StoreState) async throws in
            let n = state.counter.next()
            let before = state.written.value
            try await state.store.update(label) { try $0.upsert(Fixtures.appended(n)) }
            benchmark.measurement(fileBytes, state.written.value - before)
        } setup: {
            let dir = try Fixtures.makeDirectory(compactDir)
            let written = ByteCounter()
            let store = try await Fixtures.makeStore(dir: dir, written: written) {
                $0.compaction = CompactionPolicy(tailFraction: 0, minimumTailBytes: 0)
            }
            try await Fixtures.seed(store, label, with: record)
            return try StoreState(store: store, written: written, dir: dir)
        } teardown: {
            Fixtures.removeDirectory(compactDir)
        }

        let sqliteDir = "\(label)-sqlite"
        Benchmark(
            "\(name) append update: SQLite WAL synchronous=FULL (GRDB), peer",
            configuration: config(writing + [walBytes], iterations: iterations, seconds: 60)
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
        // The W1 file exactly as the store wrote it (a version-2 snapshot, no frames).
        let store = try await Fixtures.makeStore(dir: dir, written: ByteCounter())
        try await Fixtures.seed(store, "w1", with: Fixtures.w1)
        guard let file = Fixtures.userFile(in: dir) else {
            throw BenchmarkSetupError("no user file in \(dir)")
        }
        return RawState(dir: dir, bytes: Array(try Data(contentsOf: URL(fileURLWithPath: file))))
    } teardown: {
        Fixtures.removeDirectory("w1-raw")
    }

    // MARK: Encode and decode W1, against Foundation JSON

    // What the store writes (a version-2 snapshot) and reads (a file: snapshot and frames; here a
    // snapshot alone), with the store's default codec.
    Benchmark("W1 encode: RecordCodec.encodeSnapshot", configuration: config(timing, iterations: 300)) {
        benchmark in
        let codec = RecordCodec()
        let id = WriteID.random()
        for _ in benchmark.scaledIterations { blackHole(try codec.encodeSnapshot(Fixtures.w1, fileID: id)) }
    }
    Benchmark("W1 encode: Foundation JSONEncoder, peer", configuration: config(timing, iterations: 300)) {
        benchmark in
        let encoder = JSONEncoder()
        for _ in benchmark.scaledIterations { blackHole(try encoder.encode(Fixtures.w1)) }
    }
    Benchmark("W1 decode: RecordCodec.decodeFile", configuration: config(timing, iterations: 300)) {
        (benchmark: Benchmark, bytes: [UInt8]) in
        let codec = RecordCodec()
        for _ in benchmark.scaledIterations { blackHole(try codec.decodeFile(bytes)) }
    } setup: {
        try RecordCodec().encodeSnapshot(Fixtures.w1, fileID: .random()).bytes
    }
    Benchmark("W1 decode: Foundation JSONDecoder, peer", configuration: config(timing, iterations: 300)) {
        (benchmark: Benchmark, json: Data) in
        let decoder = JSONDecoder()
        for _ in benchmark.scaledIterations { blackHole(try decoder.decode(UserRecord.self, from: json)) }
    } setup: {
        try JSONEncoder().encode(Fixtures.w1)
    }

    // MARK: 8 concurrent updates of one user in one process, against 1 writer

    // Each iteration is 8 appends to one W1 user: 8 tasks at once (group commit coalesces them),
    // or one task doing them in turn. Updates per second = 8 / wall clock of an iteration.
    for (title, concurrent) in [("8 concurrent tasks", true), ("1 writer, 8 in turn, baseline", false)] {
        let dirName = concurrent ? "w1-c8" : "w1-c1"
        Benchmark(
            "W1 8 updates of one user: \(title)",
            configuration: config(writing + [fileBytes], iterations: 100, warmup: 2, seconds: 30)
        ) { (benchmark: Benchmark, state: StoreState) async throws in
            let before = state.written.value
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
            benchmark.measurement(fileBytes, state.written.value - before)
        } setup: {
            let dir = try Fixtures.makeDirectory(dirName)
            let written = ByteCounter()
            let store = try await Fixtures.makeStore(dir: dir, written: written)
            try await Fixtures.seed(store, "w1", with: Fixtures.w1)
            return try StoreState(store: store, written: written, dir: dir)
        } teardown: {
            Fixtures.removeDirectory(dirName)
        }
    }

    // MARK: Store.read of an unchanged user (cache hit), and after a change (cache miss)

    Benchmark(
        "W1 Store.read of an unchanged user (path:, cache hit)",
        configuration: config(timing, iterations: 1000)
    ) { (_: Benchmark, state: StoreState) async throws in
        blackHole(try await state.store.read("w1"))
    } setup: {
        let dir = try Fixtures.makeDirectory("w1-read")
        let store = try await Fixtures.makeStore(dir: dir, written: ByteCounter())
        try await Fixtures.seed(store, "w1", with: Fixtures.w1)
        return try StoreState(store: store, written: ByteCounter(), dir: dir)
    } teardown: {
        Fixtures.removeDirectory("w1-read")
    }

    // Another store on the same folder (as another process would) appends one transaction, not
    // measured; then the reader's `Store.read` finds its cached version stale and reads and
    // decodes the whole file (snapshot and frames; compactions at the default policy's rate).
    Benchmark(
        "W1 Store.read after another writer's append (path:, cache miss)",
        configuration: config(timing, iterations: 300)
    ) { (benchmark: Benchmark, state: ReadMissState) async throws in
        let n = state.counter.next()
        try await state.writer.update("w1") { try $0.upsert(Fixtures.appended(n)) }
        benchmark.startMeasurement()
        blackHole(try await state.reader.read("w1"))
    } setup: {
        let dir = try Fixtures.makeDirectory("w1-read-miss")
        let writer = try await Fixtures.makeStore(dir: dir, written: ByteCounter())
        try await Fixtures.seed(writer, "w1", with: Fixtures.w1)
        let reader = try await Fixtures.makeStore(dir: dir, written: ByteCounter())
        _ = try await reader.read("w1")
        return ReadMissState(writer: writer, reader: reader, counter: AppendCounter())
    } teardown: {
        Fixtures.removeDirectory("w1-read-miss")
    }
}

struct StoreState: Sendable {
    let store: Store
    let written: ByteCounter
    let counter = AppendCounter()
    /// The user's file (the store holds one user).
    let file: String
    let compactions = CompactionCounter()
    /// The zeros the store's appends have written to reserve room (not in `written`).
    var reserved: Int { (store.storage as? PathStorage)?.reservedByteCount ?? 0 }

    init(store: Store, written: ByteCounter, dir: String) throws {
        guard let file = Fixtures.userFile(in: dir) else {
            throw BenchmarkSetupError("no user file in \(dir)")
        }
        self.store = store
        self.written = written
        self.file = file
    }
}

struct ReadMissState: Sendable {
    let writer: Store
    let reader: Store
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

/// The appends between compactions: the update number of the last one.
final class CompactionCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var last: Int?

    /// Notes a compaction at update `n`; the number of updates since the one before (nil for the
    /// first, whose start is the seeding, not a compaction).
    func compacted(at n: Int) -> Int? {
        lock.withLock {
            defer { last = n }
            return last.map { n - $0 }
        }
    }
}

struct BenchmarkSetupError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
