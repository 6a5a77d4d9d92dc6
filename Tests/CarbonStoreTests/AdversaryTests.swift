import CarbonFormat
import CarbonModel
import CarbonStoreTestSupport
import Foundation
import Testing

@testable import CarbonStore

/// Probes of issue 9's engine (group commit, record cache, appends): what an update acknowledges
/// must be what a fresh store reads back, and what the cache serves must be what the file holds.
@Suite struct AdversaryTests {
    static func txn(_ id: String, minor: Int64 = 100, at ms: Int64 = 1_700_000_000_000) -> Transaction {
        Transaction(
            id: id, time: Timestamp(millisecondsSince1970: ms),
            amount: Money(minorUnits: minor, currency: CurrencyCode("EUR")!))
    }

    static func attempt<T>(_ body: () async throws -> T) async -> Result<T, any Error> {
        do { return .success(try await body()) } catch { return .failure(error) }
    }

    enum Backend: String, CaseIterable, Sendable { case memory, path }

    static func storage(_ backend: Backend, _ dir: TemporaryDirectory) throws -> any ObjectStorage {
        switch backend {
        case .memory: MemoryStorage()
        case .path: try PathStorage(root: dir.path)
        }
    }

    /// A second storage on the same data: the memory storage itself, a new `PathStorage` on the
    /// directory.
    static func fresh(_ backend: Backend, _ storage: any ObjectStorage, _ dir: TemporaryDirectory) throws
        -> Store
    {
        var options = StoreOptions()
        options.cacheBytes = 0
        return Store(
            storage: backend == .memory ? storage : try PathStorage(root: dir.path), locks: NoLockService(),
            options: options)
    }

    // MARK: - Values a reader refuses

    /// A mutation that sets a merchant category code the format cannot hold (above 9999) must
    /// fail its call; it must not write a file (or a committed frame) that every reader refuses.
    @Test(arguments: Backend.allCases)
    func aMerchantCodeNoReaderAcceptsIsRefusedNotWritten(backend: Backend) async throws {
        let dir = try TemporaryDirectory("adv-mcc")
        defer { dir.remove() }
        let storage = try Self.storage(backend, dir)
        let store = Store(storage: storage, locks: InProcessLockService())
        try await store.update("alice") { try $0.upsert(Self.txn("t1")) }
        let result = await Self.attempt {
            try await store.update("alice") {
                var t = Self.txn("t2")
                t.mcc = 10_000
                try $0.upsert(t)
            }
        }
        #expect(throws: (any Error).self) { try result.get() }
        // Whatever the update answered, the user's data must still be readable.
        let record = try await Self.fresh(backend, storage, dir).get("alice")
        #expect(record.transactions.map(\.id) == ["t1"])
        // And this process's cache agrees with the file.
        #expect(try await store.get("alice") == record)
    }

    // MARK: - The cache serves what the file holds

    /// A record whose preserved sections the encoder does not write (a known or critical tag) is
    /// written without them; the cache must not keep serving them.
    @Test(arguments: Backend.allCases)
    func theCacheServesWhatTheFileHoldsWhenTheEncoderDropsSomething(backend: Backend) async throws {
        let dir = try TemporaryDirectory("adv-preserved")
        defer { dir.remove() }
        let storage = try Self.storage(backend, dir)
        let store = Store(storage: storage, locks: InProcessLockService())
        try await store.update("alice") { try $0.upsert(Self.txn("t1")) }
        try await store.update("alice") {
            $0.preservedSections.append(PreservedSection(tag: 0x8001, flags: 0, payload: [1, 2, 3]))
            try $0.upsert(Self.txn("t2"))
        }
        let onDisk = try await Self.fresh(backend, storage, dir).get("alice")
        let cached = try await store.get("alice")
        #expect(cached == onDisk, "cached \(cached.preservedSections) vs file \(onDisk.preservedSections)")
    }

    // MARK: - Frames against the limits

    /// Random updates (adds, removals, replacements, preferences) on a codec with small limits and
    /// no compaction: every acknowledged update must be read back as acknowledged by a fresh
    /// store; a refused one must leave the file as it was.
    @Test(arguments: Backend.allCases)
    func framesNearTheLimitsNeverMakeAFileReadersRefuse(backend: Backend) async throws {
        let dir = try TemporaryDirectory("adv-limits")
        defer { dir.remove() }
        var limits = RecordCodec.Limits()
        limits.maxItemCount = 400
        limits.maxDecodedSize = 6_000
        limits.maxFileSize = 9_000
        let codec = RecordCodec(options: .init(compression: .none), limits: limits)
        let storage: any ObjectStorage =
            backend == .memory ? MemoryStorage() : try PathStorage(root: dir.path, maximumFileSize: 9_000)
        var options = StoreOptions(codec: codec)
        options.compaction = CompactionPolicy(tailFraction: 1e9, minimumTailBytes: Int.max / 2)
        let store = Store(storage: storage, locks: InProcessLockService(), options: options)
        var freshOptions = StoreOptions(codec: codec)
        freshOptions.cacheBytes = 0
        let freshStorage: any ObjectStorage =
            backend == .memory ? storage : try PathStorage(root: dir.path, maximumFileSize: 9_000)
        let fresh = Store(storage: freshStorage, locks: NoLockService(), options: freshOptions)
        var rng = SystemRandomNumberGenerator()
        var expected: UserRecord? = nil
        var refused = 0
        for step in 0..<600 {
            let op = Int.random(in: 0..<8, using: &rng)
            let result = await Self.attempt {
                try await store.update("alice") { r in
                    switch op {
                    case 0, 1, 6, 7:
                        var t = Self.txn("s\(step)", at: 1_700_000_000_000 + Int64(step))
                        t.metadata = ["k\(step % 7)": "v\(step)", "z": "w"]
                        t.description = String(repeating: "d", count: Int.random(in: 0..<60))
                        try r.upsert(t)
                    case 2:
                        if let t = r.transactions.randomElement() { _ = r.removeTransaction(id: t.id) }
                    case 3:
                        _ = r.setPreference(
                            "p\(step % 13)", value: "v\(step)",
                            at: Timestamp(millisecondsSince1970: Int64(step)))
                    case 4:
                        if let k = r.preferences.keys.randomElement() { _ = r.removePreference(k) }
                    default:  // 5
                        if !r.transactions.isEmpty {
                            let i = Int.random(in: 0..<r.transactions.count)
                            r.transactions[i].description = "changed \(step)"
                        }
                    }
                }
            }
            switch result {
            case .success(let r):
                if r.committed || expected != nil { expected = r.record }
            case .failure(let error):
                refused += 1
                #expect(error is RecordTooLargeStoreError, "step \(step): \(error)")
            }
            let onDisk = try await fresh.read("alice")
            #expect(onDisk == expected, "step \(step), op \(op)")
            if onDisk != expected { return }
        }
        #expect(refused > 0, "the probe should reach the limits")
    }

    // MARK: - Group commit at scale

    struct Refused: Error {}

    /// Thousands of concurrent callers on one user, and on many users, every seventh of them
    /// throwing: every acknowledged update is in the file once, no refused one is, and each call's
    /// answer is its own.
    @Test(arguments: Backend.allCases)
    func thousandsOfConcurrentCallersLoseNothing(backend: Backend) async throws {
        let dir = try TemporaryDirectory("adv-many")
        defer { dir.remove() }
        let storage = try Self.storage(backend, dir)
        var options = StoreOptions()
        options.lockWait = .seconds(600)
        let store = Store(storage: storage, locks: InProcessLockService(), options: options)
        let users = ["hot"] + (0..<40).map { "u\($0)" }
        let results = await withTaskGroup(of: (String, String, Result<UpdateResult<Int>, any Error>).self) {
            group in
            for i in 0..<2_400 {
                let user = i % 2 == 0 ? "hot" : users[1 + (i / 2) % 40]
                group.addTask {
                    let id = "c\(i)"
                    let r = await Self.attempt {
                        try await store.update(user) { r -> Int in
                            if i % 7 == 3 { throw Refused() }
                            try r.upsert(Self.txn(id, at: 1_700_000_000_000 + Int64(i)))
                            return i
                        }
                    }
                    return (user, id, r)
                }
            }
            var all: [(String, String, Result<UpdateResult<Int>, any Error>)] = []
            for await r in group { all.append(r) }
            return all
        }
        let reader = try Self.fresh(backend, storage, dir)
        for user in users {
            let record = try await reader.get(user)
            let ids = Set(record.transactions.map(\.id))
            #expect(ids.count == record.transactions.count)
            var committed = 0
            for (u, id, r) in results where u == user {
                switch r {
                case .success(let done):
                    committed += 1
                    #expect(done.outcome == .committed)
                    #expect(done.record.transaction(id: id) != nil)
                    #expect(ids.contains(id), "\(user): acknowledged \(id) is missing")
                case .failure(let error):
                    #expect(error is Refused, "\(user) \(id): \(error)")
                    #expect(!ids.contains(id), "\(user): refused \(id) is there")
                }
            }
            #expect(record.transactions.count == committed)
            #expect(record.revision == UInt64(committed))
        }
    }

    /// Cancelling callers (the leader of a batch among them) must not lose or half-commit
    /// anything: each call either succeeds and is in the file, or fails and is not.
    @Test(arguments: [true, false])
    func cancelledCallersGetATruthfulAnswer(groupCommit: Bool) async throws {
        let dir = try TemporaryDirectory("adv-cancel")
        defer { dir.remove() }
        let storage = try PathStorage(root: dir.path)
        var options = StoreOptions()
        options.groupCommit = groupCommit
        options.lockWait = .seconds(600)
        let store = Store(storage: storage, locks: InProcessLockService(), options: options)
        var tasks: [(String, Task<Result<UpdateResult<Void>, any Error>, Never>)] = []
        for i in 0..<300 {
            let id = "c\(i)"
            tasks.append(
                (
                    id,
                    Task {
                        await Self.attempt {
                            try await store.update("alice") { try $0.upsert(Self.txn(id)) }
                        }
                    }
                ))
            if i % 3 == 0 { tasks[Int.random(in: 0...i)].1.cancel() }
        }
        var outcomes: [String: Result<UpdateResult<Void>, any Error>] = [:]
        for (id, t) in tasks { outcomes[id] = await t.value }
        let record = try await Self.fresh(.path, storage, dir).get("alice")
        let ids = Set(record.transactions.map(\.id))
        for (id, r) in outcomes {
            switch r {
            case .success: #expect(ids.contains(id), "acknowledged \(id) is missing")
            case .failure(let error):
                #expect(!ids.contains(id), "\(id) failed (\(error)) but is there")
            }
        }
    }

    /// A conflict makes the batch run again: a mutation that throws only on its second run fails its
    /// own call and leaves nothing of its first run in the file.
    @Test func aMutationThatThrowsOnlyOnTheRetryFailsAloneAndTheRetryIsTruthful() async throws {
        let storage = MemoryStorage()
        let other = Store(storage: storage, locks: NoLockService())
        try await other.update("alice") { try $0.upsert(Self.txn("seed")) }
        let attempts = CarbonStore.Locked(0)
        var options = StoreOptions()
        options.beforeCommit = {
            // The first attempt's write is beaten by another writer: a fence conflict.
            if attempts.withLock({ n -> Int in
                n += 1
                return n
            }) == 1 {
                _ = try? await other.update("alice") { try $0.upsert(Self.txn("other")) }
            }
        }
        let store = Store(storage: storage, locks: InProcessLockService(), options: options)
        let runs = CarbonStore.Locked(0)
        let flaky = await Self.attempt {
            try await store.update("alice") { r in
                if runs.withLock({ n -> Int in
                    n += 1
                    return n
                }) > 1 {
                    throw Refused()
                }
                try r.upsert(Self.txn("flaky"))
            }
        }
        #expect(throws: Refused.self) { try flaky.get() }
        let record = try await Store(storage: storage, locks: NoLockService()).get("alice")
        #expect(record.transaction(id: "flaky") == nil)
        #expect(record.transaction(id: "other") != nil)
    }
}
