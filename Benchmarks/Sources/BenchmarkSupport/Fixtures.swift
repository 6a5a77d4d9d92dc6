import CarbonFormat
import CarbonModel
import CarbonStore
import CarbonStoreTestSupport
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The data the benchmarks and the multi-process driver share: the reference users, their data
/// folders, the stores, and the transactions they append.
public enum Fixtures {
    /// W1 and W2 of docs/ARCHITECTURE.md section 6, with the seed CarbonBench uses.
    public static let w1 = RecordGenerator.workload(.w1, seed: 7)
    public static let w2 = RecordGenerator.workload(.w2, seed: 7)

    /// A new, empty folder for one benchmark: under `CARBONSTORE_BENCH_DIR` if set, else under
    /// `.build/bench-data` of the folder the benchmarks run in (the Benchmarks package, which git
    /// ignores). The disk it is on is the disk measured.
    public static func makeDirectory(_ name: String) throws -> String {
        let dir = directory(name)
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// The folder of benchmark `name` in this process.
    public static func directory(_ name: String) -> String {
        let root =
            ProcessInfo.processInfo.environment["CARBONSTORE_BENCH_DIR"]
            ?? FileManager.default.currentDirectoryPath + "/.build/bench-data"
        return root + "/\(name)-\(getpid())"
    }

    public static func removeDirectory(_ name: String) {
        try? FileManager.default.removeItem(atPath: directory(name))
    }

    /// A `path:` store in `dir` (locking=local, the default), reporting the size of every file it
    /// writes (a whole snapshot) or appends to (a change frame) to `written`. `configure` may change
    /// the default options.
    public static func makeStore(
        dir: String, written: ByteCounter, configure: (inout StoreOptions) -> Void = { _ in }
    ) async throws -> Store {
        var options = StoreOptions()
        options.events = StoreEvents(bytesWritten: { _, count in written.add(count) })
        configure(&options)
        return try await StoreFactory(options: options).makeStore("path:" + dir + "/store")
    }

    /// The one user file under `dir` (a store's folder holding one user), or nil.
    public static func userFile(in dir: String) -> String? {
        guard let walker = FileManager.default.enumerator(atPath: dir) else { return nil }
        for case let relative as String in walker where relative.hasSuffix(".cstore") {
            return dir + "/" + relative
        }
        return nil
    }

    /// The size of the file at `path` (0 if there is none), asked for without the file's time
    /// stamps (`PathStorage.sizeWithoutTimeStamps`). From Linux 6.13 on, a `stat` between two
    /// writes of a file makes the second one stamp a fine-grained change time, which the writer's
    /// next `fdatasync` may then write to disk: a benchmark that looked at a file's size with `stat`
    /// after every update would slow the writer it measures (the engine and SQLite alike).
    public static func fileSize(_ path: String) -> Int {
        PathStorage.sizeWithoutTimeStamps(ofFileAt: path) ?? 0
    }

    /// Gives `userID` the content of `record` through `Store.update`; returns the record as stored.
    @discardableResult
    public static func seed(_ store: Store, _ userID: String, with record: UserRecord) async throws
        -> UserRecord
    {
        try await store.update(userID) { r in
            r.transactions = record.transactions
            r.responses = record.responses
            r.preferences = record.preferences
            r.footprints = record.footprints
            r.savings = record.savings
        }.record
    }

    /// The `n`th appended transaction: a new id, later than every transaction of W1 and W2, the
    /// same row for CarbonStore and for SQLite (as CarbonBench's update table appends).
    public static func appended(_ n: Int, label: String = "bench") -> Transaction {
        Transaction(
            id: "\(label)-\(n)", time: Timestamp(millisecondsSince1970: 1_800_000_000_000 + Int64(n)),
            amount: Money(minorUnits: 1234, currency: CurrencyCode("EUR")!), merchant: "Bench Merchant",
            mcc: 5411)
    }
}

/// A running total that callbacks on any thread may add to.
public final class ByteCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var total = 0

    public init() {}

    public func add(_ n: Int) { lock.withLock { total += n } }
    public var value: Int { lock.withLock { total } }
}

/// The number of the next appended transaction, so that every append is a new one.
public final class AppendCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0

    public init() {}

    public func next() -> Int {
        lock.withLock {
            n += 1
            return n
        }
    }
}
