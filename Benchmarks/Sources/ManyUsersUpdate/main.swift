import BenchmarkSupport
import CarbonModel
import CarbonStore
import CarbonStoreTestSupport
import Foundation

// Many users updated at once in one process, on a `path:` folder whose syncs are slow: how many
// updates per second one engine process commits when each `fsync` and `fdatasync` takes
// milliseconds (EFS, NFS, a network block volume), with the syncs handed to threads of their own
// once they are slow (`PathStorage.sync`, the engine's default) and with every sync made on the
// updating task's thread, one of the cooperative pool's (one per core), as before. Run from the
// Benchmarks folder:
//
//     swift run -c release ManyUsersUpdate                                  # 16 users, 5 ms syncs
//     swift run -c release ManyUsersUpdate --users 32 --updates 20 --sync-delay 1000
//
// `--sync-delay U` (microseconds, default 5000) makes each sync that much slower: the thread sleeps
// after the real call, as it would stay blocked in the kernel (`PathStorage.withSlowSync` of the
// test support). Each user is a W1 user (1,000 transactions) appended to `--updates` times (default
// 10), one update at a time per user, all users at once. Files go under `.build/bench-data` (or
// `CARBONSTORE_BENCH_DIR`), removed afterwards.
//
// `--step-delay U` (microseconds) emulates a network file system instead (EFS, NFS): every blocking
// step of an operation (a folder walk and a file opened and read, a lock's first try, an append's
// fence and write, a rename) holds its thread U µs longer, as its round trips to the server would
// (`PathStorage.onSlowVolume`), and syncs are `--sync-delay` slower (default 0 with this option).
// It compares the steps made on the task's thread (syncs leaving it once slow, as before) with
// every step and sync on threads of their own (what the engine does on a network file system).
// With `--reads`, each user is read `--updates` times instead (`Store.read` of a cached user: one
// version check), all users at once.
//
//     swift run -c release ManyUsersUpdate --step-delay 1000 --sync-delay 2000
//     swift run -c release ManyUsersUpdate --step-delay 1000 --reads
//
// With `--readers R` (and `--step-delay`), the users' appends are made while R other cached users
// are read over and over by tasks of their own (a burst of reads beside the writers, every step and
// sync on threads of their own, as on a network file system): it prints the appends per second,
// the p50 and p99 time of one append, and the reads per second, first with no readers, then with
// them. (A writer's steps under its locks go before the readers' on those threads: `LockHold`.)
//
//     swift run -c release ManyUsersUpdate --step-delay 1000 --sync-delay 2000 --readers 64

func option(_ name: String, in args: [String]) -> String? {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}

struct UsageError: Error, CustomStringConvertible { var description: String }

/// How the storage under test is slow, and whether it offloads.
enum Volume {
    /// Slow syncs only (`withSlowSync`); `offloading`: syncs leave the task's thread once slow.
    case slowSyncs(Duration, offloading: Bool)
    /// A network file system (`onSlowVolume`); `offloading`: every step on threads of its own.
    case network(step: Duration, sync: Duration, offloading: Bool)
}

/// Operations per second of `users` users, `updates` appends (or reads) each, all users at once.
func run(users: Int, updates: Int, volume: Volume, reads: Bool = false) async throws -> Double {
    let name = "many-users"
    let dir = try Fixtures.makeDirectory(name)
    defer { Fixtures.removeDirectory(name) }
    // Seeded on the plain disk: the figure is about the updates.
    let plain = try PathStorage(root: dir)
    let seeder = Store(storage: plain, locks: FileLockService(storage: plain))
    let ids = (0..<users).map { "user-\($0)" }
    for id in ids { try await Fixtures.seed(seeder, id, with: Fixtures.w1) }
    let slow: PathStorage
    switch volume {
    case .slowSyncs(let delay, let offloading):
        slow = try PathStorage.withSlowSync(root: dir, delay: delay, offloadingSyncs: offloading)
    case .network(let step, let sync, let offloading):
        slow = try PathStorage.onSlowVolume(
            root: dir, stepDelay: step, syncDelay: sync, offloadingFileWork: offloading)
    }
    let store = Store(storage: slow, locks: FileLockService(storage: slow))
    for id in ids { _ = try await store.read(id) }
    let start = ContinuousClock.now
    try await withThrowingTaskGroup(of: Void.self) { group in
        for (u, id) in ids.enumerated() {
            group.addTask {
                for k in 0..<updates {
                    if reads {
                        guard try await store.read(id) != nil else {
                            throw UsageError(description: "\(id) is gone")
                        }
                        continue
                    }
                    try await store.update(id) {
                        try $0.upsert(Fixtures.appended(u * 1_000_000 + k, label: "m"))
                    }
                }
            }
        }
        try await group.waitForAll()
    }
    let elapsed = ContinuousClock.now - start
    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    for (u, id) in ids.enumerated() {
        let record = try await seeder.get(id)
        guard record.transactions.count == Fixtures.w1.transactions.count + (reads ? 0 : updates) else {
            throw UsageError(
                description: "user \(u): \(record.transactions.count) transactions after the run")
        }
    }
    return Double(users * updates) / seconds
}

/// A value shared by the benchmark's tasks, behind a lock.
final class Shared<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ value: T) { self.value = value }
    func withLock<R>(_ body: (inout T) -> R) -> R {
        lock.lock()
        defer { lock.unlock() }
        return body(&value)
    }
}

/// Appends per second, the p50 and p99 time of one append in milliseconds, and reads per second,
/// of `users` users appended to `updates` times each while `readers` other users are read over and
/// over, on an emulated network file system with every step and sync on threads of their own.
func runBesideReads(
    users: Int, updates: Int, readers: Int, step: Duration, sync: Duration
) async throws -> (updates: Double, p50: Double, p99: Double, reads: Double) {
    let name = "many-users-reads"
    let dir = try Fixtures.makeDirectory(name)
    defer { Fixtures.removeDirectory(name) }
    let plain = try PathStorage(root: dir)
    let seeder = Store(storage: plain, locks: FileLockService(storage: plain))
    let writers = (0..<users).map { "user-\($0)" }
    let read = (0..<readers).map { "reader-\($0)" }
    for id in writers + read { try await Fixtures.seed(seeder, id, with: Fixtures.w1) }
    let slow = try PathStorage.onSlowVolume(root: dir, stepDelay: step, syncDelay: sync)
    let store = Store(storage: slow, locks: FileLockService(storage: slow))
    for id in writers + read { _ = try await store.read(id) }
    let done = Shared(false)
    let readCount = Shared(0)
    let start = ContinuousClock.now
    let times = try await withThrowingTaskGroup(of: [Duration].self) { group in
        for id in read {
            group.addTask {
                while !done.withLock({ $0 }) {
                    guard try await store.read(id) != nil else {
                        throw UsageError(description: "\(id) is gone")
                    }
                    readCount.withLock { $0 += 1 }
                }
                return []
            }
        }
        var times: [Duration] = []
        try await withThrowingTaskGroup(of: [Duration].self) { writing in
            for (u, id) in writers.enumerated() {
                writing.addTask {
                    var times: [Duration] = []
                    for k in 0..<updates {
                        let began = ContinuousClock.now
                        try await store.update(id) {
                            try $0.upsert(Fixtures.appended(u * 1_000_000 + k, label: "r"))
                        }
                        times.append(ContinuousClock.now - began)
                    }
                    return times
                }
            }
            for try await some in writing { times += some }
        }
        done.withLock { $0 = true }
        try await group.waitForAll()
        return times
    }
    func inSeconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }
    let seconds = inSeconds(ContinuousClock.now - start)
    let sorted = times.sorted()
    func ms(_ q: Double) -> Double {
        let index = min(sorted.count - 1, Int(Double(sorted.count) * q))
        return inSeconds(sorted[index]) * 1000
    }
    return (Double(times.count) / seconds, ms(0.5), ms(0.99), Double(readCount.withLock { $0 }) / seconds)
}

let args = Array(CommandLine.arguments.dropFirst())
do {
    let users = option("--users", in: args).flatMap(Int.init) ?? 16
    let updates = option("--updates", in: args).flatMap(Int.init) ?? 10
    let stepMicroseconds = option("--step-delay", in: args).flatMap(Int.init)
    let delayMicroseconds =
        option("--sync-delay", in: args).flatMap(Int.init) ?? (stepMicroseconds == nil ? 5000 : 0)
    let reads = args.contains("--reads")
    guard users > 0, updates > 0, delayMicroseconds >= 0, (stepMicroseconds ?? 0) >= 0,
        !reads || stepMicroseconds != nil
    else {
        throw UsageError(
            description:
                "usage: ManyUsersUpdate [--users N] [--updates K] [--sync-delay MICROSECONDS] [--step-delay MICROSECONDS [--reads]]"
        )
    }
    let delay = Duration.microseconds(delayMicroseconds)
    if let readers = option("--readers", in: args).flatMap(Int.init) {
        guard let stepMicroseconds, readers > 0, !reads else {
            throw UsageError(
                description:
                    "usage: ManyUsersUpdate --step-delay MICROSECONDS --readers N [--users N] [--updates K] [--sync-delay MICROSECONDS]"
            )
        }
        let step = Duration.microseconds(stepMicroseconds)
        print(
            "\(users) W1 users at once in one process, \(updates) appends each, beside \(readers) other users read over and over; every blocking step \(stepMicroseconds) µs and every sync \(delayMicroseconds) µs slower (a network file system, emulated; steps and syncs on threads of their own); \(ProcessInfo.processInfo.activeProcessorCount) cores"
        )
        print("readers | appends/s | append p50 ms | append p99 ms | reads/s")
        for n in [0, readers] {
            let r = try await runBesideReads(
                users: users, updates: updates, readers: n, step: step, sync: delay)
            print(
                "\(n) | \(String(format: "%.0f", r.updates)) | \(String(format: "%.1f", r.p50)) | \(String(format: "%.1f", r.p99)) | \(String(format: "%.0f", r.reads))"
            )
        }
        exit(0)
    }
    if let stepMicroseconds {
        let step = Duration.microseconds(stepMicroseconds)
        print(
            "\(users) W1 users at once in one process, \(updates) \(reads ? "reads" : "appends") each, every blocking step \(stepMicroseconds) µs and every sync \(delayMicroseconds) µs slower (a network file system, emulated); \(ProcessInfo.processInfo.activeProcessorCount) cores"
        )
        print("steps made | \(reads ? "reads" : "updates")/s")
        let pool = try await run(
            users: users, updates: updates, volume: .network(step: step, sync: delay, offloading: false),
            reads: reads)
        print(
            "on the task's thread (the cooperative pool; syncs leave it once slow) | \(String(format: "%.0f", pool))"
        )
        let threads = try await run(
            users: users, updates: updates, volume: .network(step: step, sync: delay, offloading: true),
            reads: reads)
        print(
            "on threads of their own (the default on a network file system) | \(String(format: "%.0f", threads)) (\(String(format: "%.1fx", threads / pool)))"
        )
        exit(0)
    }
    print(
        "\(users) W1 users at once in one process, \(updates) appends each, every fsync and fdatasync \(delayMicroseconds) µs slower; \(ProcessInfo.processInfo.activeProcessorCount) cores"
    )
    print("syncs made | updates/s")
    let pool = try await run(users: users, updates: updates, volume: .slowSyncs(delay, offloading: false))
    print("on the updating task's thread (the cooperative pool) | \(String(format: "%.0f", pool))")
    let threads = try await run(users: users, updates: updates, volume: .slowSyncs(delay, offloading: true))
    print(
        "on threads of their own once slow (the default) | \(String(format: "%.0f", threads)) (\(String(format: "%.1fx", threads / pool)))"
    )
} catch {
    FileHandle.standardError.write(Data("ManyUsersUpdate: \(error)\n".utf8))
    exit(1)
}
