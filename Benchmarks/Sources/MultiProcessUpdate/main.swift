import BenchmarkSupport
import CarbonModel
import CarbonStore
import CarbonStoreTestSupport
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

// Issue 9's row "8 processes updating one user, against 1 process": N copies of this program
// each append K transactions, one update at a time, to the same W1 user in the same `path:` folder
// (locking=local: the user's `flock` serialises the processes, the fence checks every write). The
// parent seeds the user, starts the N workers together, and reports the total throughput, the
// per-update latency and the lock wait (from `StoreEvents.lockAcquired`), the processor time and
// context switches per update (`getrusage` of every worker), then checks that every update
// landed. Run from the Benchmarks folder:
//
//     swift run -c release MultiProcessUpdate                        # N = 1 and 8, K = 200
//     swift run -c release MultiProcessUpdate --processes 1,2,8 --updates 500
//     swift run -c release MultiProcessUpdate --total 1600 --lock-release both
//     swift run -c release MultiProcessUpdate --total 1600 --lock-release both --sync-delay 500
//     swift run -c release MultiProcessUpdate --total 3200 --exclusive-runs 32
//
// `--total T` gives every run the same T updates, split between its processes (so that each run
// compacts the file as often), instead of K per process. `--lock-release early` (the default) is
// the engine's default: an appending update lets the user's lock go while its frame is made
// durable (`StoreOptions.releasesLockBeforeSync`); `late` holds it through the fdatasync; `both`
// runs each process count with `late`, then with `early`. `--sync-delay U` makes every fsync and
// fdatasync of the workers U microseconds slower (the thread sleeps after the real call, holding
// what it holds): a volume whose writes reach stable storage over a network, such as a cloud block
// volume, emulated on the local disk (`PathStorage.withSlowSync` of the test support).
// `--exclusive-runs R` is an experiment, not a mode of the engine: each worker holds a `flock` of
// a file beside the store (not one of the engine's) around R of its updates in a row, so that the
// user's lock passes from one process to another at most once in R updates instead of at almost
// every one (in practice far less often: `flock` does not hand the file to a waiter, and the
// process that lets it go usually takes it again at once). It is not fair (see the fastest/slowest
// column), and every update still takes the engine's locks. The time spent waiting for that file
// counts in the update's latency, and as a sample of its own in the lock wait.
//
// Files go under `.build/bench-data` (or `CARBONSTORE_BENCH_DIR`), removed after each run.

/// One worker's figures, sent to the parent as one JSON line on its standard output.
struct WorkerReport: Codable {
    var index: Int
    /// Monotonic clock (CLOCK_MONOTONIC, shared by the processes) at the first update's start and
    /// the last update's end, in nanoseconds.
    var start: UInt64
    var end: UInt64
    /// Wall clock of each update, and how long each waited for the user's lock, in nanoseconds.
    var latencies: [UInt64]
    var waits: [UInt64]
    /// Updates that wrote a whole new snapshot (more than 4 kB written: an appended frame of one
    /// transaction is about a hundred bytes, a W1 snapshot tens of kilobytes).
    var compactions: Int
    var bytesWritten: Int
    /// Version checks that found frames appended by the other processes (applied to the cached
    /// record), and whole reads of the file during the updates (after such a check, every so
    /// often, or when the file changed otherwise).
    var appendedChecks: Int
    var wholeReads: Int
    /// Processor time (user and system) and context switches (voluntary: the process waited;
    /// involuntary: it was preempted) from the first update's start to the last one's end
    /// (`getrusage`), in microseconds and counts.
    var cpuMicroseconds: Int
    var voluntarySwitches: Int
    var involuntarySwitches: Int
}

/// The storage of a store, counting what the updates read: version checks that found appended
/// frames, and whole reads.
final class CountingStorage: ObjectStorage, @unchecked Sendable {
    let base: any ObjectStorage
    private let lock = NSLock()
    private var appended = 0
    private var whole = 0

    init(_ base: any ObjectStorage) { self.base = base }

    var counts: (appended: Int, whole: Int) { lock.withLock { (appended, whole) } }
    func reset() { lock.withLock { (appended, whole) = (0, 0) } }

    func get(_ key: String) async throws -> StoredObject? {
        lock.withLock { whole += 1 }
        return try await base.get(key)
    }
    func getBytes(_ key: String) async throws -> [UInt8]? {
        lock.withLock { whole += 1 }
        return try await base.getBytes(key)
    }
    func put(_ key: String, bytes: [UInt8], condition: WriteCondition) async throws -> ObjectVersion {
        try await base.put(key, bytes: bytes, condition: condition)
    }
    func delete(_ key: String, condition: WriteCondition) async throws -> Bool {
        try await base.delete(key, condition: condition)
    }
    func list(prefix: String, startAfter: String?, limit: Int) async throws -> ObjectListing {
        try await base.list(prefix: prefix, startAfter: startAfter, limit: limit)
    }
    func location(of key: String) -> String { base.location(of: key) }
    func getIfChanged(_ key: String, cached: ObjectVersion) async throws -> ConditionalRead {
        let read = try await base.getIfChanged(key, cached: cached)
        if case .appended = read { lock.withLock { appended += 1 } }
        // A file changed otherwise is read whole by `getIfChanged` itself.
        if case .changed = read { lock.withLock { whole += 1 } }
        return read
    }
    var appendsInPlace: Bool { base.appendsInPlace }
    var cancelsOnlyBeforeWriting: Bool { base.cancelsOnlyBeforeWriting }
    func withOperation<T>(on key: String, _ body: () async throws -> T) async throws -> T {
        try await base.withOperation(on: key, body)
    }
    func append(_ key: String, bytes: [UInt8], expected: ObjectVersion?) async throws -> ObjectVersion {
        try await base.append(key, bytes: bytes, expected: expected)
    }
    func append(
        _ key: String, bytes: [UInt8], expected: ObjectVersion?, whenWritten: () -> Void
    ) async throws -> ObjectVersion {
        try await base.append(key, bytes: bytes, expected: expected, whenWritten: whenWritten)
    }
    func confirmDurable(_ key: String, version: ObjectVersion) async throws -> Bool {
        try await base.confirmDurable(key, version: version)
    }
}

struct UsageError: Error, CustomStringConvertible {
    let description: String
}

func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func nanoseconds(_ d: Duration) -> UInt64 {
    let (s, a) = d.components
    return UInt64(max(0, s)) * 1_000_000_000 + UInt64(max(0, a) / 1_000_000_000)
}

/// `--name value` from the arguments.
func option(_ name: String, in args: [String]) -> String? {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}

let userID = "w1"

/// A store on `dir` with the default options (locking=local, group commit, cache), reporting lock
/// waits and bytes written.
func makeStore(
    dir: String, waits: Recorder?, written: Recorder?, early: Bool = true, syncDelay: Duration = .zero
) async throws -> Store {
    var options = StoreOptions()
    options.releasesLockBeforeSync = early
    options.events = StoreEvents(
        lockAcquired: { _, waited in waits?.add(nanoseconds(waited)) },
        bytesWritten: { _, count in written?.add(UInt64(count)) })
    let store = try await StoreFactory(options: options).makeStore("path:" + dir + "/store")
    guard syncDelay > .zero else { return store }
    // The same store on a volume whose syncs take `syncDelay` longer (`--sync-delay`).
    let slow = try PathStorage.withSlowSync(root: dir + "/store", delay: syncDelay)
    return Store(storage: slow, locks: FileLockService(storage: slow), keys: store.keys, options: options)
}

/// Values that callbacks on any thread may add.
final class Recorder: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [UInt64] = []
    func add(_ v: UInt64) { lock.withLock { values.append(v) } }
    func take() -> [UInt64] {
        lock.withLock {
            defer { values = [] }; return values
        }
    }
}

// MARK: Worker

func runWorker(_ args: [String]) async throws {
    guard let dir = option("--dir", in: args), let updates = option("--updates", in: args).flatMap(Int.init),
        let index = option("--index", in: args).flatMap(Int.init)
    else { throw UsageError(description: "worker needs --dir DIR --updates K --index I") }
    let waits = Recorder()
    let written = Recorder()
    let delay = option("--sync-delay", in: args).flatMap(Int.init).map { Duration.microseconds($0) } ?? .zero
    let runs = option("--exclusive-runs", in: args).flatMap(Int.init) ?? 0
    let runsLock =
        runs > 0 ? Glibc.open(dir + "/exclusive-runs.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o600) : -1
    guard runs == 0 || runsLock >= 0 else {
        throw UsageError(
            description: "worker \(index): cannot open \(dir)/exclusive-runs.lock: errno \(errno)")
    }
    let plain = try await makeStore(
        dir: dir, waits: waits, written: written, early: !args.contains("--late"), syncDelay: delay)
    let counting = CountingStorage(plain.storage)
    let store = Store(storage: counting, locks: plain.locks, keys: plain.keys, options: plain.options)
    // As a long-running process would have it: the user read once (and cached).
    guard try await store.read(userID) != nil else {
        throw UsageError(description: "no user \(userID) in \(dir)")
    }
    FileHandle.standardOutput.write(Data("ready\n".utf8))
    guard readLine() == "go" else { throw UsageError(description: "worker \(index): no go from the parent") }

    counting.reset()
    var latencies: [UInt64] = []
    latencies.reserveCapacity(updates)
    let before = ProcessUsage.now()
    let start = monotonicNanoseconds()
    for k in 0..<updates {
        let t0 = monotonicNanoseconds()
        if runs > 0 && k % runs == 0 {
            guard flock(runsLock, LOCK_EX) == 0 else {
                throw UsageError(description: "worker \(index): flock of exclusive-runs.lock: errno \(errno)")
            }
            waits.add(monotonicNanoseconds() - t0)
        }
        try await store.update(userID) {
            try $0.upsert(Fixtures.appended(index * 1_000_000 + k, label: "p\(index)"))
        }
        latencies.append(monotonicNanoseconds() - t0)
        if runs > 0 && (k % runs == runs - 1 || k == updates - 1) { _ = flock(runsLock, LOCK_UN) }
    }
    let end = monotonicNanoseconds()
    let after = ProcessUsage.now()
    let sizes = written.take()
    let counts = counting.counts
    let report = WorkerReport(
        index: index, start: start, end: end, latencies: latencies, waits: waits.take(),
        compactions: sizes.filter { $0 > 4096 }.count, bytesWritten: Int(sizes.reduce(0, +)),
        appendedChecks: counts.appended, wholeReads: counts.whole,
        cpuMicroseconds: after.processorMicroseconds - before.processorMicroseconds,
        voluntarySwitches: after.voluntarySwitches - before.voluntarySwitches,
        involuntarySwitches: after.involuntarySwitches - before.involuntarySwitches)
    FileHandle.standardOutput.write(try JSONEncoder().encode(report) + Data("\n".utf8))
}

// MARK: Parent

/// Reads one line (without its newline) from `handle`; nil at end of file.
func readLine(from handle: FileHandle) -> String? {
    var bytes: [UInt8] = []
    while let chunk = try? handle.read(upToCount: 1), let byte = chunk.first {
        if byte == UInt8(ascii: "\n") { return String(decoding: bytes, as: UTF8.self) }
        bytes.append(byte)
    }
    return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self)
}

func percentile(_ sorted: [UInt64], _ p: Double) -> UInt64 {
    guard !sorted.isEmpty else { return 0 }
    return sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
}

func micros(_ ns: UInt64) -> String { String(format: "%.0f", Double(ns) / 1000) }

struct RunResult {
    var processes: Int
    var updates: Int
    var seconds: Double
    var perSecond: Double
    var latency: [UInt64]
    var wait: [UInt64]
    var compactions: Int
    var bytesWritten: Int
    var slowestShare: Double
    var appendedChecks: Int
    var wholeReads: Int
    var cpuMicroseconds: Int
    var voluntarySwitches: Int
    var involuntarySwitches: Int
}

func runParent(
    processes: Int, total: Int, early: Bool, syncDelay: Int, exclusiveRuns: Int, executable: String
) async throws -> RunResult {
    let dir = Fixtures.directory("multiprocess-\(processes)")
    try? FileManager.default.removeItem(atPath: dir)
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let seeder = try await makeStore(dir: dir, waits: nil, written: nil)
    try await Fixtures.seed(seeder, userID, with: Fixtures.w1)

    var workers: [(process: Process, input: Pipe, output: Pipe)] = []
    for i in 0..<processes {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        // The first `total % processes` workers take one update more.
        let updates = total / processes + (i < total % processes ? 1 : 0)
        process.arguments =
            ["worker", "--dir", dir, "--updates", String(updates), "--index", String(i)]
            + (early ? [] : ["--late"]) + (syncDelay > 0 ? ["--sync-delay", String(syncDelay)] : [])
            + (exclusiveRuns > 0 ? ["--exclusive-runs", String(exclusiveRuns)] : [])
        let input = Pipe()
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.standardError
        try process.run()
        workers.append((process, input, output))
    }
    for (i, w) in workers.enumerated() {
        guard readLine(from: w.output.fileHandleForReading) == "ready" else {
            throw UsageError(description: "worker \(i) did not start (see its error above)")
        }
    }
    for w in workers { try w.input.fileHandleForWriting.write(contentsOf: Array("go\n".utf8)) }
    var reports: [WorkerReport] = []
    for (i, w) in workers.enumerated() {
        guard let line = readLine(from: w.output.fileHandleForReading) else {
            throw UsageError(description: "worker \(i) ended without a report (see its error above)")
        }
        reports.append(try JSONDecoder().decode(WorkerReport.self, from: Data(line.utf8)))
        w.process.waitUntilExit()
        guard w.process.terminationStatus == 0 else {
            throw UsageError(description: "worker \(i) exited with status \(w.process.terminationStatus)")
        }
    }

    // Every update landed: the seeded transactions plus N x K.
    let checker = try await makeStore(dir: dir, waits: nil, written: nil)
    let count = try await checker.get(userID).transactions.count
    let expected = Fixtures.w1.transactions.count + total
    guard count == expected else {
        throw UsageError(description: "lost updates: \(count) transactions, expected \(expected)")
    }

    let start = reports.map(\.start).min()!
    let end = reports.map(\.end).max()!
    let seconds = Double(end - start) / 1e9
    let slowest = reports.map { Double($0.end - $0.start) }.max()!
    let fastest = reports.map { Double($0.end - $0.start) }.min()!
    return RunResult(
        processes: processes, updates: total, seconds: seconds, perSecond: Double(total) / seconds,
        latency: reports.flatMap(\.latencies).sorted(), wait: reports.flatMap(\.waits).sorted(),
        compactions: reports.map(\.compactions).reduce(0, +),
        bytesWritten: reports.map(\.bytesWritten).reduce(0, +), slowestShare: fastest / slowest,
        appendedChecks: reports.map(\.appendedChecks).reduce(0, +),
        wholeReads: reports.map(\.wholeReads).reduce(0, +),
        cpuMicroseconds: reports.map(\.cpuMicroseconds).reduce(0, +),
        voluntarySwitches: reports.map(\.voluntarySwitches).reduce(0, +),
        involuntarySwitches: reports.map(\.involuntarySwitches).reduce(0, +))
}

let args = Array(CommandLine.arguments.dropFirst())
do {
    if args.first == "worker" {
        try await runWorker(args)
    } else {
        let counts = (option("--processes", in: args) ?? "1,8").split(separator: ",").compactMap { Int($0) }
        let updates = option("--updates", in: args).flatMap(Int.init) ?? 200
        let total = option("--total", in: args).flatMap(Int.init)
        let release = option("--lock-release", in: args) ?? "early"
        let syncDelay = option("--sync-delay", in: args).flatMap(Int.init) ?? 0
        let exclusiveRuns = option("--exclusive-runs", in: args).flatMap(Int.init) ?? 0
        let modes: [Bool]? = ["early": [true], "late": [false], "both": [false, true]][release]
        guard !counts.isEmpty, counts.allSatisfy({ $0 > 0 }), updates > 0, total.map({ $0 > 0 }) ?? true,
            syncDelay >= 0, exclusiveRuns >= 0,
            let modes
        else {
            throw UsageError(
                description:
                    "usage: MultiProcessUpdate [--processes 1,8] [--updates K | --total T] [--lock-release early|late|both] [--sync-delay MICROSECONDS] [--exclusive-runs R]"
            )
        }
        let executable = Bundle.main.executablePath ?? CommandLine.arguments[0]
        print(
            "W1 user (\(Fixtures.w1.transactions.count) transactions), path: locking=local, "
                + (total.map { "\($0) updates in each run, split between its processes" }
                    ?? "\(updates) updates per process") + ", one at a time"
                + (syncDelay > 0
                    ? "; every fsync and fdatasync made \(syncDelay) µs slower (a network block volume, emulated)"
                    : "")
                + (exclusiveRuns > 0
                    ? "; each process keeps a lock of its own around \(exclusiveRuns) of its updates in a row (hand-overs rare, not fair)"
                    : "")
        )
        print(
            "processes | lock released | updates | seconds | updates/s | vs 1st | latency p50 / p90 / p99 / max (µs) | lock wait p50 / p90 / p99 / max (µs) | compactions | bytes written per update | fastest/slowest process | others' frames applied | whole reads | processor time per update (µs, every worker) | context switches per update (voluntary / involuntary)"
        )
        // Other processes share the cores: the load average says how much.
        func loadAverage() -> String {
            ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "?")
                .split(separator: " ").prefix(3).joined(separator: " ")
        }
        print("load average before: \(loadAverage())")
        defer { print("load average after: \(loadAverage())") }
        // The first process count's throughput, for each setting: "vs 1st" compares like with like.
        var first: [Bool: Double] = [:]
        for n in counts {
            for early in modes {
                let r = try await runParent(
                    processes: n, total: total ?? n * updates, early: early, syncDelay: syncDelay,
                    exclusiveRuns: exclusiveRuns, executable: executable)
                let base = first[early] ?? r.perSecond
                first[early] = base
                let lat = [0.5, 0.9, 0.99, 1.0].map { micros(percentile(r.latency, $0)) }.joined(
                    separator: " / ")
                let wait = [0.5, 0.9, 0.99, 1.0].map { micros(percentile(r.wait, $0)) }.joined(
                    separator: " / ")
                print(
                    "\(n) | \(early ? "before the sync" : "after the sync") | \(r.updates) | \(String(format: "%.2f", r.seconds)) | \(String(format: "%.0f", r.perSecond)) | \(String(format: "%.2fx", r.perSecond / base)) | \(lat) | \(wait) | \(r.compactions) | \(r.bytesWritten / r.updates) | \(String(format: "%.2f", r.slowestShare)) | \(r.appendedChecks) | \(r.wholeReads) | \(r.cpuMicroseconds / r.updates) | \(String(format: "%.1f / %.1f", Double(r.voluntarySwitches) / Double(r.updates), Double(r.involuntarySwitches) / Double(r.updates)))"
                )
            }
        }
    }
} catch {
    FileHandle.standardError.write(Data("MultiProcessUpdate: \(error)\n".utf8))
    exit(1)
}
