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

func option(_ name: String, in args: [String]) -> String? {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
}

struct UsageError: Error, CustomStringConvertible { var description: String }

/// Updates per second of `users` users, `updates` appends each, all users at once.
func run(users: Int, updates: Int, delay: Duration, offloading: Bool) async throws -> Double {
    let name = "many-users-" + (offloading ? "threads" : "pool")
    let dir = try Fixtures.makeDirectory(name)
    defer { Fixtures.removeDirectory(name) }
    // Seeded on the plain disk: the figure is about the updates.
    let plain = try PathStorage(root: dir)
    let seeder = Store(storage: plain, locks: FileLockService(storage: plain))
    let ids = (0..<users).map { "user-\($0)" }
    for id in ids { try await Fixtures.seed(seeder, id, with: Fixtures.w1) }
    let slow = try PathStorage.withSlowSync(root: dir, delay: delay, offloadingSyncs: offloading)
    let store = Store(storage: slow, locks: FileLockService(storage: slow))
    for id in ids { _ = try await store.read(id) }
    let start = ContinuousClock.now
    try await withThrowingTaskGroup(of: Void.self) { group in
        for (u, id) in ids.enumerated() {
            group.addTask {
                for k in 0..<updates {
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
        guard record.transactions.count == Fixtures.w1.transactions.count + updates else {
            throw UsageError(
                description: "user \(u): \(record.transactions.count) transactions after the run")
        }
    }
    return Double(users * updates) / seconds
}

let args = Array(CommandLine.arguments.dropFirst())
do {
    let users = option("--users", in: args).flatMap(Int.init) ?? 16
    let updates = option("--updates", in: args).flatMap(Int.init) ?? 10
    let delayMicroseconds = option("--sync-delay", in: args).flatMap(Int.init) ?? 5000
    guard users > 0, updates > 0, delayMicroseconds >= 0 else {
        throw UsageError(
            description: "usage: ManyUsersUpdate [--users N] [--updates K] [--sync-delay MICROSECONDS]")
    }
    let delay = Duration.microseconds(delayMicroseconds)
    print(
        "\(users) W1 users at once in one process, \(updates) appends each, every fsync and fdatasync \(delayMicroseconds) µs slower; \(ProcessInfo.processInfo.activeProcessorCount) cores"
    )
    print("syncs made | updates/s")
    let pool = try await run(users: users, updates: updates, delay: delay, offloading: false)
    print("on the updating task's thread (the cooperative pool) | \(String(format: "%.0f", pool))")
    let threads = try await run(users: users, updates: updates, delay: delay, offloading: true)
    print(
        "on threads of their own once slow (the default) | \(String(format: "%.0f", threads)) (\(String(format: "%.1fx", threads / pool)))"
    )
} catch {
    FileHandle.standardError.write(Data("ManyUsersUpdate: \(error)\n".utf8))
    exit(1)
}
